//! A hand-made peer speaking netd's wire protocol over raw QUIC, for tests that must
//! misbehave on purpose (a malicious peer). It uses netd's TLS identity and framing (a
//! big-endian u32 length, then one protobuf `Frame`), so only the misbehaviour differs
//! from a real node.

use icn_identity::tls::TlsIdentity;
use icn_identity::NodeIdentity;
use icn_proto::net::wire::v1::{frame::Body, Frame, Hello};
use prost::Message as _;
use std::sync::Arc;

pub struct RawPeer {
    pub identity: NodeIdentity,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
}

impl RawPeer {
    pub fn new() -> anyhow::Result<Self> {
        let identity = NodeIdentity::generate();
        let tls = TlsIdentity::new(&identity)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_crypto()?)?;
        let client = quinn::ClientConfig::new(Arc::new(crypto));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        Ok(Self { identity, endpoint, client })
    }

    /// This peer's Hello, speaking only `version`.
    pub fn hello(&self, version: u32) -> Frame {
        Frame {
            body: Some(Body::Hello(Hello {
                protocol_version: version,
                min_protocol_version: version,
                did: self.identity.did().to_string(),
                x25519_public_key: self.identity.x25519_public_key().as_bytes().to_vec(),
                incarnation: "raw".into(),
                ..Default::default()
            })),
        }
    }

    /// Connects to a netd at `address` and completes the Hello exchange with `version`;
    /// the control stream's halves come back with the connection.
    pub async fn connect(
        &self,
        address: &str,
        version: u32,
    ) -> anyhow::Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream)> {
        let conn = self.endpoint.connect_with(self.client.clone(), address.parse()?, "icn")?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(&mut send, &self.hello(version)).await?;
        // The node's own Hello (or nothing, when it refuses this one).
        let mut length = [0u8; 4];
        if recv.read_exact(&mut length).await.is_ok() {
            let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
            let _ = recv.read_exact(&mut body).await;
        }
        Ok((conn, send, recv))
    }
}

/// Writes one frame as netd frames it.
pub async fn write_frame(stream: &mut quinn::SendStream, frame: &Frame) -> anyhow::Result<()> {
    let body = frame.encode_to_vec();
    stream.write_all(&(body.len() as u32).to_be_bytes()).await?;
    stream.write_all(&body).await?;
    Ok(())
}
