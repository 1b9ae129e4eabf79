//! Reading a link's message streams: durable messages recorded exactly once in the
//! inbox, best-effort ones handed to live subscribers, both under the peer's inbound
//! rate limit.

use super::*;
use tokio::io::AsyncBufReadExt;

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
/// false when the peer stayed over it too long and the link was cut. `before_waiting`
/// runs once before the first wait (the reader records what it holds, so that nothing
/// read waits unrecorded behind the limit); false from it ends the reading too.
async fn paced<H: Host>(node: &H, did: &Did, link: &Link, before_waiting: impl FnOnce() -> bool) -> bool {
    // One bucket per peer, not per connection: reconnecting buys no new burst.
    let pace_of = |retry: bool| {
        let mut buckets = node.buckets().lock().expect("lock");
        // Looked up before inserting: an entry would copy the DID once per message.
        if !buckets.contains_key(did) {
            buckets.insert(did.clone(), TokenBucket::new(&node.config().rate_limit));
        }
        let bucket = buckets.get_mut(did).expect("inserted above");
        if retry {
            bucket.retake()
        } else {
            bucket.take()
        }
    };
    let mut pace = pace_of(false);
    let mut before_waiting = Some(before_waiting);
    while let Pace::Wait(wait) = pace {
        if before_waiting.take().is_some_and(|f| !f()) {
            return false;
        }
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

/// Bytes read from a message stream at a time. Each read takes the connection's lock in
/// quinn, so frames are read out of a buffer rather than three reads per frame; and the
/// durable messages found whole in one buffer are recorded in one write.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Whether `buffered` holds a whole frame: reading it then needs no wait on the network.
fn whole_frame(buffered: &[u8]) -> bool {
    buffered.len() >= 4 && buffered.len() - 4 >= u32::from_be_bytes(buffered[..4].try_into().expect("4 bytes")) as usize
}

/// Reads one message stream: durable messages are recorded exactly once in the inbox,
/// best-effort ones handed to live subscribers.
async fn read_stream<H: Host>(node: Arc<H>, did: Did, link: Link, stream: quinn::RecvStream) {
    let limit = node.config().max_frame_bytes;
    let mut stream = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    // Durable messages read but not recorded yet: recorded once no whole frame is left
    // in the buffer (or the stream ends), so a burst costs one write, and a lone message
    // is recorded as soon as it is read.
    let mut durable = Vec::new();
    let mut tally = Tally { metrics: node.metrics(), did: &did, bytes: 0, best_effort: Vec::new() };
    loop {
        if !whole_frame(stream.buffer()) {
            tally.flush();
            if !durable.is_empty() && !record(&*node, &did, &link, &mut durable) {
                return;
            }
        }
        let next = match frame::take_buffered(stream.buffer(), limit) {
            Some(taken) => taken.inspect(|(_, size)| stream.consume(*size)).map(Some),
            None => frame::read_frame(&mut stream, limit).await,
        };
        let (m, size, is_durable) = match next {
            Ok(Some((Frame { body: Some(Body::Message(m)) }, size))) => (m, size, true),
            Ok(Some((Frame { body: Some(Body::BestEffort(m)) }, size))) => (m, size, false),
            Ok(Some(_)) => {
                reject(&*node, &did, &link, "unexpected-frame", "only message frames belong on a message stream");
                return;
            }
            Ok(None) => {
                record(&*node, &did, &link, &mut durable);
                return;
            }
            Err(e) if e.is_protocol_violation() => {
                reject(&*node, &did, &link, e.kind(), &e.to_string());
                return;
            }
            Err(e) => {
                tracing::debug!(peer = %did, "message stream ended: {}", read_error(e, &link.connection));
                record(&*node, &did, &link, &mut durable);
                return;
            }
        };
        if !paced(&*node, &did, &link, || record(&*node, &did, &link, &mut durable)).await {
            return;
        }
        link.counters.messages_received.fetch_add(1, Ordering::Relaxed);
        link.counters.bytes_received.fetch_add(size as u64, Ordering::Relaxed);
        node.metrics().bytes_received.inc_by(size as u64);
        tally.bytes += size as u64;
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
        let inbound = InboundMessage {
            from: did.to_string(),
            protocol: m.protocol,
            seq: if is_durable { m.seq } else { 0 },
            payload,
            sealed: m.sealed,
            received_at_ms: now_ms(),
            trace: m.trace.or(Some(TraceContext::default())),
            position: 0,
        };
        if is_durable {
            durable.push(inbound);
        } else {
            tally.best_effort(&inbound.protocol);
            node.best_effort().deliver(inbound);
        }
    }
}

/// What a message stream counts per message under labels (its peer's bytes, best-effort
/// messages by protocol), added to the metrics once per buffer read rather than once per
/// message: a label lookup hashes and locks, and a profile of 1 KiB messages found it a
/// visible share of the receiving node. Whatever is left is added when the reader ends.
struct Tally<'a> {
    metrics: &'a crate::metrics::NetMetrics,
    did: &'a Did,
    bytes: u64,
    /// Best-effort messages received, per run of one protocol.
    best_effort: Vec<(String, u64)>,
}

impl Tally<'_> {
    fn best_effort(&mut self, protocol: &str) {
        match self.best_effort.last_mut() {
            Some((last, n)) if last == protocol => *n += 1,
            _ => self.best_effort.push((protocol.to_string(), 1)),
        }
    }

    fn flush(&mut self) {
        if self.bytes > 0 {
            self.metrics.peer_bytes.with_label_values(&[self.did.as_str(), "received"]).inc_by(self.bytes);
            self.bytes = 0;
        }
        for (protocol, n) in self.best_effort.drain(..) {
            self.metrics.received_many(&protocol, n);
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Records the durable messages read, in one write; false (the link closed) when the
/// write failed.
fn record<H: Host>(node: &H, did: &Did, link: &Link, messages: &mut Vec<InboundMessage>) -> bool {
    if messages.is_empty() {
        return true;
    }
    let messages = std::mem::take(messages);
    // Each delivery joins its sender's trace (its context travels in the message).
    let spans: Vec<_> = messages
        .iter()
        .map(|m| {
            let span = tracing::info_span!("netd.deliver", peer = %did, protocol = %m.protocol, seq = m.seq);
            if let Some(trace) = &m.trace {
                icn_telemetry::propagation::adopt_fields_parent(&span, &trace.fields);
            }
            (span, m.protocol.clone())
        })
        .collect();
    match node.inbox().deliver_all(did, &link.peer_epoch, messages) {
        Ok(positions) => {
            for (position, (_span, protocol)) in positions.into_iter().zip(spans) {
                match position {
                    Some(_) => node.metrics().received(&protocol),
                    None => node.metrics().duplicates_dropped.inc(),
                }
            }
            true
        }
        Err(e) => {
            // Without a record of delivery exactly-once cannot hold: stop reading; the
            // sender keeps the messages and resends them later.
            tracing::error!(peer = %did, error = %e, "recording a delivery failed");
            close_with(&link.connection, close::PROTOCOL_ERROR, "receiver storage failure");
            false
        }
    }
}
