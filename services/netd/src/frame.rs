//! Length-prefixed protobuf frames on QUIC streams: a big-endian `u32` length, then one
//! encoded `icn.net.wire.v1.Frame`. The length is checked against the configured cap
//! *before* any allocation, so a peer cannot make this node buffer an oversized frame.

use icn_proto::net::wire::v1::Frame;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::Oversized { .. } => "oversized",
            FrameError::Malformed(_) => "malformed",
            FrameError::Truncated => "truncated",
            FrameError::Io(_) => "io",
        }
    }

    /// True when the peer broke the protocol (as opposed to the stream simply failing).
    pub fn is_protocol_violation(&self) -> bool {
        matches!(self, FrameError::Oversized { .. } | FrameError::Malformed(_) | FrameError::Truncated)
    }
}

/// Encodes one frame with its length prefix.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let len = frame.encoded_len();
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    frame.encode(&mut buf).expect("a Vec grows to fit");
    buf
}

pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &Frame) -> Result<usize, FrameError> {
    let buf = encode(frame);
    writer.write_all(&buf).await?;
    Ok(buf.len())
}

/// Reads the next frame; `Ok(None)` when the stream ends cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut len = [0u8; 4];
    if reader.read(&mut len[..1]).await? == 0 {
        return Ok(None);
    }
    read_exact(reader, &mut len[1..]).await?;
    let size = u32::from_be_bytes(len) as usize;
    if size > limit {
        return Err(FrameError::Oversized { size, limit });
    }
    let mut body = vec![0u8; size];
    read_exact(reader, &mut body).await?;
    Ok(Some((Frame::decode(body.as_slice())?, size + 4)))
}

/// The frame at the start of `buffered` when it is there whole: the frame and the bytes
/// it took. A reader that has the frame in its buffer decodes it in place, rather than
/// zeroing a body, copying the frame into it and copying the payload out once more.
pub fn take_buffered(buffered: &[u8], limit: usize) -> Option<Result<(Frame, usize), FrameError>> {
    let len: [u8; 4] = buffered.get(..4)?.try_into().expect("4 bytes");
    let size = u32::from_be_bytes(len) as usize;
    if size > limit {
        return Some(Err(FrameError::Oversized { size, limit }));
    }
    let body = buffered.get(4..4 + size)?;
    Some(Frame::decode(body).map(|frame| (frame, size + 4)).map_err(FrameError::from))
}

async fn read_exact<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    reader.read_exact(buf).await.map(|_| ()).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_proto::net::wire::v1::{frame::Body, Goodbye, Message as WireMessage};

    fn message(payload: &[u8]) -> Frame {
        Frame {
            body: Some(Body::Message(WireMessage {
                protocol: "test".into(),
                seq: 7,
                payload: payload.to_vec(),
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_a_clean_end_is_none() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &message(b"hello")).await.unwrap();
        let bye = Frame { body: Some(Body::Goodbye(Goodbye { reason: "done".into(), intentional: true })) };
        write_frame(&mut a, &bye).await.unwrap();
        drop(a);
        let (first, _) = read_frame(&mut b, 1024).await.unwrap().unwrap();
        assert_eq!(first, message(b"hello"));
        assert_eq!(read_frame(&mut b, 1024).await.unwrap().unwrap().0, bye);
        assert!(read_frame(&mut b, 1024).await.unwrap().is_none());
    }

    #[test]
    fn a_buffered_frame_is_taken_whole_or_not_at_all() {
        let mut buffered = encode(&message(b"hello"));
        let whole = buffered.len();
        buffered.extend_from_slice(&encode(&message(b"next"))[..3]);
        let (frame, size) = take_buffered(&buffered, 1024).unwrap().unwrap();
        assert_eq!((frame, size), (message(b"hello"), whole));
        // What follows is not whole yet: nothing is taken.
        assert!(take_buffered(&buffered[whole..], 1024).is_none());
        assert!(take_buffered(&buffered[..whole - 1], 1024).is_none());
        // The length is judged before the body is waited for.
        let oversized = take_buffered(&buffered, 4);
        assert!(matches!(oversized, Some(Err(FrameError::Oversized { limit: 4, .. }))), "{oversized:?}");
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_the_body() {
        let (mut a, mut b) = tokio::io::duplex(64);
        // Announce 1 GiB and send nothing more: the reader must not wait for or allocate it.
        a.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
        let err = read_frame(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::Oversized { size, limit: 1024 } if size == 1 << 30), "{err}");
    }

    #[tokio::test]
    async fn garbage_and_truncated_frames_are_errors_not_panics() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(&[0xff, 0xff, 0xff]).await.unwrap();
        assert!(matches!(read_frame(&mut b, 1024).await, Err(FrameError::Malformed(_))));
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(&[1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(read_frame(&mut b, 1024).await, Err(FrameError::Truncated)));
    }
}
