//! One connection's life: QUIC handshake, identity check, Hello exchange, admission to
//! the peer table, then three tasks (writer, message reader, control reader) until it
//! closes. Nothing here is sent to a peer before its DID has been checked.

use crate::frame::{self, FrameError};
use crate::gate::{Pace, TokenBucket};
use crate::host::Host;
use crate::peers::{Admission, Link, LinkCounters, PeerHello};
use crate::NetError;
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use icn_identity::tls;
use icn_identity::Did;
use icn_proto::common::v1::TraceContext;
use icn_proto::net::v1::InboundMessage;
use icn_proto::net::wire::v1::{frame::Body, Ack, Frame, Hello};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

mod read;
use read::read_messages;
pub(crate) use read::MESSAGE_STREAMS;

/// QUIC application close codes; the reason text travels with them.
pub mod close {
    pub const NORMAL: u32 = 0;
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const IDENTITY_MISMATCH: u32 = 2;
    pub const DUPLICATE: u32 = 3;
    pub const PROTOCOL_ERROR: u32 = 4;
    pub const SHUTDOWN: u32 = 5;
    pub const SELF_CONNECTION: u32 = 6;
    /// Closed on purpose by an operator (`Disconnect` with `intentional`): do not reconnect.
    pub const INTENTIONAL: u32 = 7;
    /// Reset by an operator (`Disconnect` without `intentional`): reconnect as after a failure.
    pub const RESET: u32 = 8;
    /// The peer is not allowed by this node's allowlist or trust floor.
    pub const NOT_ALLOWED: u32 = 9;
    /// The peer stayed over its inbound rate limit for too long.
    pub const RATE_LIMITED: u32 = 10;
    /// This node has `network.max_peers` connections already.
    pub const TOO_MANY_PEERS: u32 = 11;

    /// Close codes that mean "do not reconnect".
    pub fn is_goodbye(code: u32) -> bool {
        code == SHUTDOWN || code == INTENTIONAL
    }
}

pub(crate) fn close_with(conn: &quinn::Connection, code: u32, reason: &str) {
    conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
}

/// Turns a failed read or handshake into the reason a person needs: when the peer closed
/// the connection on purpose, its own words.
fn describe(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => String::from_utf8_lossy(&close.reason).into_owned(),
        other => other.to_string(),
    }
}

fn read_error(e: FrameError, conn: &quinn::Connection) -> String {
    match (&e, conn.close_reason()) {
        (FrameError::Io(_), Some(reason)) => describe(&reason),
        _ => e.to_string(),
    }
}

/// Handshakes a connection that QUIC has just established, in either direction, and
/// returns the peer's DID once the link is admitted and running.
pub(crate) async fn establish<H: Host>(
    node: &Arc<H>,
    conn: quinn::Connection,
    outbound: bool,
    address: &str,
    expected: Option<&Did>,
) -> Result<Did, NetError> {
    let refused = |reason: String| NetError::Refused { address: address.to_string(), reason };
    let did = tls::peer_did(conn.peer_identity()).map_err(|reason| {
        close_with(&conn, close::PROTOCOL_ERROR, &reason);
        refused(reason)
    })?;
    if &did == node.did() {
        close_with(&conn, close::SELF_CONNECTION, "connected to itself");
        return Err(refused("that address is this node itself".into()));
    }
    if let Some(expected) = expected {
        if expected != &did {
            close_with(&conn, close::IDENTITY_MISMATCH, &format!("expected {expected}, you are {did}"));
            return Err(NetError::IdentityMismatch {
                address: address.to_string(),
                expected: Box::new(expected.clone()),
                actual: Box::new(did),
            });
        }
    }
    if let Err(reason) = node.gate().admit(&did) {
        node.metrics().connections_refused.with_label_values(&["not_allowed"]).inc();
        close_with(&conn, close::NOT_ALLOWED, &reason);
        return Err(refused(reason));
    }
    let limit = node.config().max_frame_bytes;
    let (mut control_send, mut control_recv) = if outbound {
        conn.open_bi().await.map_err(|e| refused(describe(&e)))?
    } else {
        conn.accept_bi().await.map_err(|e| refused(describe(&e)))?
    };
    frame::write_frame(&mut control_send, &Frame { body: Some(Body::Hello(node.hello(Some(&did)))) })
        .await
        .map_err(|e| refused(read_error(e, &conn)))?;
    let hello = match frame::read_frame(&mut control_recv, limit).await {
        Ok(Some((Frame { body: Some(Body::Hello(hello)) }, _))) => hello,
        Ok(_) => {
            close_with(&conn, close::PROTOCOL_ERROR, "expected a hello frame first");
            return Err(refused("the peer did not start with a hello".into()));
        }
        Err(e) => return Err(refused(read_error(e, &conn))),
    };
    if let Err(reason) = check_hello(&hello, &did) {
        let code = if hello.did != did.as_str() { close::IDENTITY_MISMATCH } else { close::INCOMPATIBLE_VERSION };
        close_with(&conn, code, &reason);
        return Err(refused(reason));
    }

    let link = Link {
        id: node.peers().next_link_id(),
        connection: conn.clone(),
        outbound,
        dialer: if outbound { node.did().clone() } else { did.clone() },
        hello: PeerHello {
            x25519_public_key: hello.x25519_public_key.clone(),
            incarnation: hello.incarnation.clone(),
            listen_addresses: hello.listen_addresses.clone(),
        },
        peer_epoch: hello.outbox_epoch.clone(),
        connected_at: SystemTime::now(),
        counters: Arc::new(LinkCounters::default()),
        protocol_version: hello.protocol_version,
    };
    // Dials stop at `max_peers`; inbound connections of new peers stop there too. A peer
    // already connected may replace its link (it restarted).
    if !outbound && node.peers().link(&did).is_none() && node.peers().connected_count() >= node.config().max_peers {
        node.metrics().connections_refused.with_label_values(&["max_peers"]).inc();
        let reason = format!("this node keeps at most {} connections (network.max_peers)", node.config().max_peers);
        close_with(&conn, close::TOO_MANY_PEERS, &reason);
        return Err(refused(reason));
    }
    let dial_address = outbound.then_some(address);
    match node.peers().admit(&did, link.clone(), dial_address) {
        Admission::Duplicate => {
            close_with(&conn, close::DUPLICATE, "a connection between us already exists");
            return Ok(did);
        }
        Admission::Admitted { replaced } => {
            if let Some(old) = replaced {
                close_with(&old.connection, close::DUPLICATE, "replaced by a newer connection");
            }
        }
    }
    let direction = if outbound { "outbound" } else { "inbound" };
    node.metrics().connections.with_label_values(&[direction]).inc();
    node.metrics().connected_peers.set(node.peers().connected_count() as i64);
    tracing::info!(peer = %did, address, direction, "peer connected");
    node.remember(&did);
    node.learn_peers(&hello.known_peers);

    // Resume where the peer says it stands: what it already delivered of our current
    // queue epoch is acknowledged; everything after is (re)sent in order.
    let resume_after = if hello.delivered_epoch == node.outbox().epoch() {
        if let Err(e) = node.outbox().ack(&did, hello.delivered_seq).await {
            tracing::warn!(peer = %did, error = %e, "pruning acknowledged messages failed");
        }
        node.update_queue_metrics(&did);
        hello.delivered_seq
    } else {
        node.outbox().acked(&did)
    };
    let messages = conn.open_uni().await.map_err(|e| refused(describe(&e)))?;
    let tasks = &node.ctx().tasks;
    tasks.spawn(deliver_loop(node.clone(), did.clone(), link.clone(), messages, resume_after));
    if link.protocol_version >= crate::BEST_EFFORT_VERSION {
        let best_effort = conn.open_uni().await.map_err(|e| refused(describe(&e)))?;
        tasks.spawn(best_effort_loop(node.clone(), did.clone(), link.clone(), best_effort));
    }
    tasks.spawn(ack_loop(node.clone(), did.clone(), link.clone()));
    tasks.spawn(read_messages(node.clone(), did.clone(), link.clone()));
    tasks.spawn(read_control(node.clone(), did.clone(), link.clone(), control_recv));
    tasks.spawn(watch_close(node.clone(), did.clone(), link, control_send));
    node.announce(&did);
    Ok(did)
}

fn check_hello(hello: &Hello, did: &Did) -> Result<(), String> {
    if hello.did != did.as_str() {
        return Err(format!("hello names {} but the certificate proves {did}", hello.did));
    }
    if hello.protocol_version < MIN_PROTOCOL_VERSION || hello.min_protocol_version > PROTOCOL_VERSION {
        return Err(format!(
            "incompatible protocol: peer speaks versions {}..={}, this node {}..={}",
            hello.min_protocol_version, hello.protocol_version, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
        ));
    }
    if hello.x25519_public_key.len() != 32 {
        return Err("hello carries no valid x25519 key".into());
    }
    Ok(())
}

/// Sends the peer's stored messages in order, from `cursor` on, and waits for more.
/// Messages stay stored until the peer acknowledges them (see [`crate::outbox`]).
async fn deliver_loop<H: Host>(node: Arc<H>, did: Did, link: Link, mut stream: quinn::SendStream, mut cursor: u64) {
    /// Messages read from the store per round trip to it.
    const BATCH: usize = 256;
    let notify = node.outbox().notifier(&did);
    loop {
        let batch = match node.outbox().read_after(&did, cursor, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(peer = %did, error = %e, "reading the queue failed");
                close_with(&link.connection, close::PROTOCOL_ERROR, "sender storage failure");
                return;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = notify.notified() => continue,
                _ = link.connection.closed() => return,
            }
        }
        let count = batch.len() as u64;
        cursor = batch.last().map(|(seq, _)| *seq).expect("not empty");
        let bytes = batch.iter().map(|(_, frame)| frame.len() as u64).sum();
        // The outbox keeps its in-memory tail until acknowledged: quinn gets shared views.
        let mut frames: Vec<bytes::Bytes> =
            batch.into_iter().map(|(_, frame)| bytes::Bytes::from_owner(SharedFrame(frame))).collect();
        if let Err(e) = write_frames(&mut stream, &mut frames).await {
            tracing::debug!(peer = %did, error = %e, "message stream closed");
            return;
        }
        count_sent(&*node, &did, &link, count, bytes);
    }
}

/// Writes frames to a link's stream in one call, handing quinn the frames themselves:
/// one call because each write takes the connection's lock in quinn, and the frames
/// themselves because joining them first copied every byte once more (a profile of 1 KiB
/// messages found copies the largest single cost of both nodes).
async fn write_frames(stream: &mut quinn::SendStream, frames: &mut [bytes::Bytes]) -> Result<(), quinn::WriteError> {
    stream.write_all_chunks(frames).await
}

/// A stored frame the outbox still holds, lent to quinn without a copy.
struct SharedFrame(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Counts messages written to a link, on the link and in the node's metrics.
fn count_sent<H: Host>(node: &H, did: &Did, link: &Link, messages: u64, bytes: u64) {
    link.counters.messages_sent.fetch_add(messages, Ordering::Relaxed);
    link.counters.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    node.metrics().messages_sent.inc_by(messages);
    node.metrics().bytes_sent.inc_by(bytes);
    node.metrics().peer_bytes.with_label_values(&[did.as_str(), "sent"]).inc_by(bytes);
}

/// Writes the peer's best-effort messages as they are queued, all that wait in one
/// write; nothing is kept once written (see [`crate::best_effort`]).
async fn best_effort_loop<H: Host>(node: Arc<H>, did: Did, link: Link, mut stream: quinn::SendStream) {
    let notify = node.best_effort().notifier(&did);
    loop {
        let frames = node.best_effort().take(&did);
        if frames.is_empty() {
            tokio::select! {
                _ = notify.notified() => continue,
                _ = link.connection.closed() => return,
            }
        }
        let count = frames.len() as u64;
        let bytes = frames.iter().map(|f| f.len() as u64).sum();
        let mut frames: Vec<bytes::Bytes> = frames.into_iter().map(bytes::Bytes::from).collect();
        if let Err(e) = write_frames(&mut stream, &mut frames).await {
            node.best_effort().drop_counted("link_closed", count);
            tracing::debug!(peer = %did, error = %e, "best-effort stream closed");
            return;
        }
        count_sent(&*node, &did, &link, count, bytes);
    }
}

/// Tells the peer what has been delivered from it: `network.ack_interval` after a
/// delivery (so one ack covers what arrives meanwhile), and never while nothing arrives —
/// an idle link costs no wake-ups.
async fn ack_loop<H: Host>(node: Arc<H>, did: Did, link: Link) {
    let arrivals = node.inbox().arrivals(&did);
    let mut acked = 0u64;
    loop {
        tokio::select! {
            _ = arrivals.notified() => {}
            _ = link.connection.closed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(node.config().ack_interval) => {}
            _ = link.connection.closed() => return,
        }
        let (epoch, delivered) = node.inbox().delivered(&did);
        if delivered > acked && epoch == link.peer_epoch {
            let frame = Frame { body: Some(Body::Ack(Ack { epoch, seq: delivered })) };
            node.send_control(link.id, &frame).await;
            acked = delivered;
        }
    }
}

/// A peer that breaks the framing loses its connection, not the process.
fn reject<H: Host>(node: &H, did: &Did, link: &Link, kind: &str, reason: &str) {
    node.metrics().frames_rejected.with_label_values(&[kind]).inc();
    tracing::warn!(peer = %did, reason, "closing connection after a bad frame");
    close_with(&link.connection, close::PROTOCOL_ERROR, reason);
}

async fn read_control<H: Host>(node: Arc<H>, did: Did, link: Link, mut stream: quinn::RecvStream) {
    let limit = node.config().max_frame_bytes;
    let exchange = &node.config().exchange;
    let exchange_pace = crate::gate::pace(exchange.frames_per_second, exchange.frames_burst);
    loop {
        match frame::read_frame(&mut stream, limit).await {
            Ok(Some((Frame { body: Some(Body::PeerExchange(px)) }, _))) => {
                if exchange_pace.check().is_ok() {
                    node.learn_peers(&px.peers);
                } else {
                    node.metrics().exchange_refused.with_label_values(&["frames"]).inc();
                }
            }
            Ok(Some((Frame { body: Some(Body::Coordinate(c)) }, _))) => {
                match crate::vivaldi::Coordinate::from_proto(&c) {
                    Some(c) => node.peers().with(|t| {
                        if let Some(r) = t.get_mut(&did) {
                            r.coordinate = Some(c);
                        }
                    }),
                    None => tracing::debug!(peer = %did, "ignoring an invalid coordinate"),
                }
            }
            Ok(Some((Frame { body: Some(Body::Ack(ack)) }, _))) => {
                if ack.epoch == node.outbox().epoch() {
                    node.metrics().acks_received.inc();
                    if let Err(e) = node.outbox().ack(&did, ack.seq).await {
                        tracing::warn!(peer = %did, error = %e, "applying an ack failed");
                    }
                    node.update_queue_metrics(&did);
                }
            }
            Ok(Some((Frame { body: Some(Body::Goodbye(bye)) }, _))) => {
                tracing::info!(peer = %did, reason = %bye.reason, intentional = bye.intentional, "peer said goodbye");
                node.goodbyes().lock().expect("lock").insert(link.id, bye.reason);
            }
            Ok(Some(_)) => reject(&*node, &did, &link, "unexpected-frame", "unexpected frame on the control stream"),
            Ok(None) => return,
            Err(e) if e.is_protocol_violation() => {
                reject(&*node, &did, &link, e.kind(), &e.to_string());
                return;
            }
            Err(_) => return,
        }
    }
}

/// Keeps the control stream's sending half for peer exchange and goodbye, and cleans up
/// when the connection ends for any reason.
async fn watch_close<H: Host>(node: Arc<H>, did: Did, link: Link, control: quinn::SendStream) {
    node.controls().lock().expect("lock").insert(link.id, Arc::new(tokio::sync::Mutex::new(control)));
    let reason = link.connection.closed().await;
    node.controls().lock().expect("lock").remove(&link.id);
    // A peer shutting down or disconnecting on purpose closes with SHUTDOWN or
    // INTENTIONAL; that counts as a goodbye even when the close overtook the frame.
    let goodbye = node.goodbyes().lock().expect("lock").remove(&link.id).or_else(|| match &reason {
        quinn::ConnectionError::ApplicationClosed(c)
            if u32::try_from(c.error_code.into_inner()).is_ok_and(close::is_goodbye) =>
        {
            Some(String::from_utf8_lossy(&c.reason).into_owned())
        }
        _ => None,
    });
    node.link_closed(&did, &link, describe(&reason), goodbye);
    if node.peers().link(&did).is_none() {
        node.best_effort().link_closed(&did);
    }
}

pub(crate) use icn_runtime::now_ms;
