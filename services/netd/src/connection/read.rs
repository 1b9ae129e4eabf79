//! Reading a link's message streams: durable messages recorded exactly once in the
//! inbox, best-effort ones handed to live subscribers, both under the peer's inbound
//! rate limit.

use super::*;

/// Unidirectional streams a peer opens on a link: the durable messages, then (protocol
/// version 2 on) the best-effort ones. QUIC's stream limit (set in the endpoint's
/// transport) keeps a peer from opening more.
pub(crate) const MESSAGE_STREAMS: u32 = 2;

/// Accepts the peer's message streams and reads each in its own task.
pub(super) async fn read_messages<H: Host>(node: Arc<H>, did: Did, link: Link) {
    for _ in 0..MESSAGE_STREAMS {
        match link.connection.accept_uni().await {
            Ok(stream) => {
                node.ctx().tasks.spawn(read_stream(node.clone(), did.clone(), link.clone(), stream));
            }
            Err(e) => {
                tracing::debug!(peer = %did, "no message stream: {}", describe(&e));
                return;
            }
        }
    }
}

/// Takes one message off the peer's inbound rate limit, waiting while it is over;
/// false when the peer stayed over it too long and the link was cut.
async fn paced<H: Host>(node: &H, did: &Did, link: &Link) -> bool {
    // One bucket per peer, not per connection: reconnecting buys no new burst.
    let pace_of = |retry: bool| {
        let mut buckets = node.buckets().lock().expect("lock");
        let bucket = buckets.entry(did.clone()).or_insert_with(|| TokenBucket::new(&node.config().rate_limit));
        if retry {
            bucket.retake()
        } else {
            bucket.take()
        }
    };
    let mut pace = pace_of(false);
    while let Pace::Wait(wait) = pace {
        // Not reading is the back-pressure: QUIC's flow control stops the sender once
        // its window is full.
        node.metrics().rate_limited.with_label_values(&["slowed"]).inc();
        tokio::time::sleep(wait).await;
        pace = pace_of(true);
    }
    if let Pace::Cut = pace {
        node.metrics().rate_limited.with_label_values(&["cut"]).inc();
        let reason = format!(
            "over the inbound limit of {} messages/s for more than {:?}",
            node.config().rate_limit.messages_per_second,
            node.config().rate_limit.cut_after
        );
        tracing::warn!(peer = %did, "{reason}; disconnecting");
        // This message is not recorded, so a durable sender keeps it and resends.
        close_with(&link.connection, close::RATE_LIMITED, &reason);
        return false;
    }
    true
}

/// Reads one message stream: durable messages are recorded exactly once in the inbox,
/// best-effort ones handed to live subscribers.
async fn read_stream<H: Host>(node: Arc<H>, did: Did, link: Link, mut stream: quinn::RecvStream) {
    let limit = node.config().max_frame_bytes;
    loop {
        let (m, size, durable) = match frame::read_frame(&mut stream, limit).await {
            Ok(Some((Frame { body: Some(Body::Message(m)) }, size))) => (m, size, true),
            Ok(Some((Frame { body: Some(Body::BestEffort(m)) }, size))) => (m, size, false),
            Ok(Some(_)) => {
                reject(&*node, &did, &link, "unexpected-frame", "only message frames belong on a message stream");
                return;
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
        };
        if !paced(&*node, &did, &link).await {
            return;
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
            seq: if durable { m.seq } else { 0 },
            payload,
            sealed: m.sealed,
            received_at_ms: now_ms(),
            trace: m.trace.or(Some(TraceContext::default())),
            position: 0,
        };
        if !durable {
            node.metrics().received(&protocol);
            node.best_effort().deliver(inbound);
            continue;
        }
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
}
