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
                expected: expected.clone(),
                actual: did,
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
        for (seq, bytes) in batch {
            if let Err(e) = stream.write_all(&bytes).await {
                tracing::debug!(peer = %did, error = %e, "message stream closed");
                return;
            }
            cursor = seq;
            let n = bytes.len() as u64;
            link.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
            link.counters.bytes_sent.fetch_add(n, Ordering::Relaxed);
            node.metrics().messages_sent.inc();
            node.metrics().bytes_sent.inc_by(n);
            node.metrics().peer_bytes.with_label_values(&[did.as_str(), "sent"]).inc_by(n);
        }
    }
}

/// Every `network.ack_interval`, tells the peer what has been delivered from it, when
/// that has moved.
async fn ack_loop<H: Host>(node: Arc<H>, did: Did, link: Link) {
    let mut tick = tokio::time::interval(node.config().ack_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acked = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
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

async fn read_messages<H: Host>(node: Arc<H>, did: Did, link: Link) {
    let mut stream = match link.connection.accept_uni().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(peer = %did, "no message stream: {}", describe(&e));
            return;
        }
    };
    let limit = node.config().max_frame_bytes;
    loop {
        match frame::read_frame(&mut stream, limit).await {
            Ok(Some((Frame { body: Some(Body::Message(m)) }, size))) => {
                // One bucket per peer, not per connection: reconnecting buys no new burst.
                let pace_of = |retry: bool| {
                    let mut buckets = node.buckets().lock().expect("lock");
                    let bucket =
                        buckets.entry(did.clone()).or_insert_with(|| TokenBucket::new(&node.config().rate_limit));
                    if retry {
                        bucket.retake()
                    } else {
                        bucket.take()
                    }
                };
                let mut pace = pace_of(false);
                while let Pace::Wait(wait) = pace {
                    // Not reading is the back-pressure: QUIC's flow control stops the
                    // sender once its window is full.
                    node.metrics().rate_limited.with_label_values(&["slowed"]).inc();
                    tokio::time::sleep(wait).await;
                    pace = pace_of(true);
                }
                match pace {
                    Pace::Go | Pace::Wait(_) => {}
                    Pace::Cut => {
                        node.metrics().rate_limited.with_label_values(&["cut"]).inc();
                        let reason = format!(
                            "over the inbound limit of {} messages/s for more than {:?}",
                            node.config().rate_limit.messages_per_second,
                            node.config().rate_limit.cut_after
                        );
                        tracing::warn!(peer = %did, "{reason}; disconnecting");
                        // This message is not recorded, so the sender keeps it and resends.
                        close_with(&link.connection, close::RATE_LIMITED, &reason);
                        return;
                    }
                }
                link.counters.messages_received.fetch_add(1, Ordering::Relaxed);
                link.counters.bytes_received.fetch_add(size as u64, Ordering::Relaxed);
                node.metrics().bytes_received.inc_by(size as u64);
                node.metrics().peer_bytes.with_label_values(&[did.as_str(), "received"]).inc_by(size as u64);
                let payload = if m.sealed {
                    match node.unseal(&m.payload) {
                        Ok(plain) => plain,
                        Err(e) => {
                            node.metrics().frames_rejected.with_label_values(&["unsealable"]).inc();
                            tracing::warn!(peer = %did, seq = m.seq, error = %e, "dropping a sealed message");
                            continue;
                        }
                    }
                } else {
                    m.payload
                };
                let protocol = m.protocol.clone();
                let inbound = InboundMessage {
                    from: did.to_string(),
                    protocol: m.protocol,
                    seq: m.seq,
                    payload,
                    sealed: m.sealed,
                    received_at_ms: now_ms(),
                    trace: m.trace.or(Some(TraceContext::default())),
                    position: 0,
                };
                // The delivery joins the sender's trace (its context travels in the message).
                let span = tracing::info_span!("netd.deliver", peer = %did, protocol = %protocol, seq = inbound.seq);
                if let Some(trace) = &inbound.trace {
                    icn_telemetry::propagation::adopt_fields_parent(&span, &trace.fields);
                }
                let _entered = span.enter();
                match node.inbox().deliver(&did, &link.peer_epoch, inbound) {
                    Ok(Some(_)) => node.metrics().received(&protocol),
                    Ok(None) => node.metrics().duplicates_dropped.inc(),
                    Err(e) => {
                        // Without a record of delivery exactly-once cannot hold: stop
                        // reading; the sender keeps the message and resends it later.
                        tracing::error!(peer = %did, error = %e, "recording a delivery failed");
                        close_with(&link.connection, close::PROTOCOL_ERROR, "receiver storage failure");
                        return;
                    }
                }
            }
            Ok(Some(_)) => {
                reject(&*node, &did, &link, "unexpected-frame", "only message frames belong on the message stream")
            }
            Ok(None) => return,
            Err(e) if e.is_protocol_violation() => {
                reject(&*node, &did, &link, e.kind(), &e.to_string());
                return;
            }
            Err(e) => {
                tracing::debug!(peer = %did, "message stream ended: {}", read_error(e, &link.connection));
                return;
            }
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
}

pub(crate) use icn_runtime::now_ms;
