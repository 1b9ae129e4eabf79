//! Sending: the durable class through the outbox, the best-effort class through its
//! in-memory queues, both behind one validation (see [`crate::outbox`] and
//! [`crate::best_effort`]).

use super::*;

impl Node {
    /// Sends one message to `to` in `class`. Durable: stored, answered with its sequence
    /// number once durable, delivered whenever the peer is reachable (see
    /// [`crate::outbox`]). Best effort: queued in memory for a connected peer, answered
    /// at once with 0 (see [`crate::best_effort`]).
    pub async fn send(
        &self,
        to: &Did,
        protocol: &str,
        payload: Vec<u8>,
        sealed: bool,
        class: api::DeliveryClass,
    ) -> Result<u64, NetError> {
        self.start_send(to, protocol, payload, sealed, class)?.await
    }

    /// [`Node::send`] in two steps: the message takes its place in the peer's queue
    /// before this returns (so sends started one after another keep their order), and
    /// the returned future answers once it is durable.
    pub fn start_send(
        &self,
        to: &Did,
        protocol: &str,
        payload: Vec<u8>,
        sealed: bool,
        class: api::DeliveryClass,
    ) -> Result<impl std::future::Future<Output = Result<u64, NetError>> + Send + 'static, NetError> {
        let refused = |e: NetError| {
            let reason = match &e {
                // Which bound: peer_messages, peer_bytes, node_bytes, backlog, best_effort_*.
                NetError::QueueFull { bound, .. } => bound,
                NetError::UnknownPeer(_) => "unknown_peer",
                NetError::NotConnected(_) => "not_connected",
                NetError::NoBestEffort { .. } => "no_best_effort",
                NetError::InvalidArgument(_) => "invalid",
                _ => "storage",
            };
            self.inner.metrics.sends_refused.with_label_values(&[reason]).inc();
            e
        };
        self.require_identity().map_err(refused)?;
        validate_protocol(protocol).map_err(refused)?;
        if payload.len() > self.inner.config.max_message_bytes {
            return Err(refused(NetError::InvalidArgument(format!(
                "payload of {} bytes exceeds network.max_message_bytes ({})",
                payload.len(),
                self.inner.config.max_message_bytes
            ))));
        }
        let committing = match class {
            api::DeliveryClass::Durable => Some(self.inner.enqueue(to, protocol, payload, sealed).map_err(refused)?),
            api::DeliveryClass::BestEffort => {
                self.inner.send_best_effort(to, protocol, payload, sealed).map_err(refused)?;
                None
            }
        };
        let node = self.clone();
        Ok(async move {
            let Some(committing) = committing else { return Ok(0) };
            committing.await.inspect_err(|_| {
                node.inner.metrics.sends_refused.with_label_values(&["storage"]).inc();
            })
        })
    }
}

impl Inner {
    /// The payload as it travels to `to`: sealed to its key when asked. Only a peer this
    /// node has met, or been told about, can ever be reached.
    fn outgoing_payload(&self, to: &Did, payload: Vec<u8>, sealed: bool) -> Result<Vec<u8>, NetError> {
        // The key is copied only for a payload sealed with it.
        let Some(sealing_key) =
            self.peers.with(|t| t.get(to).map(|r| r.sealing_key.as_ref().filter(|_| sealed).cloned()))
        else {
            return Err(NetError::UnknownPeer(to.clone()));
        };
        if !sealed {
            return Ok(payload);
        }
        let key = sealing_key.ok_or_else(|| {
            NetError::InvalidArgument(format!(
                "no x25519 key is known for {to} yet: it must connect once before messages can be sealed to it"
            ))
        })?;
        icn_identity::seal(&key, &payload).map_err(|e| NetError::InvalidArgument(e.to_string()))
    }

    /// Queues a durable message for `to` (its sequence number is taken now); the future
    /// answers once the message is committed.
    fn enqueue(
        self: &Arc<Self>,
        to: &Did,
        protocol: &str,
        payload: Vec<u8>,
        sealed: bool,
    ) -> Result<impl std::future::Future<Output = Result<u64, NetError>> + Send + 'static, NetError> {
        let payload = self.outgoing_payload(to, payload, sealed)?;
        self.revive(to);
        let protocol_name = protocol.to_string();
        let committing = self.outbox.enqueue(to, move |seq| {
            frame::encode(&Frame { body: Some(Body::Message(message(protocol_name, seq, payload, sealed))) })
        })?;
        let (inner, to, protocol) = (self.clone(), to.clone(), protocol.to_string());
        Ok(async move {
            let seq = committing.await?;
            inner.metrics.messages_queued.with_label_values(&[&protocol]).inc();
            inner.update_queue_metrics(&to);
            Ok(seq)
        })
    }

    /// Queues a best-effort message for `to`, which must be connected over a link that
    /// carries the class.
    fn send_best_effort(&self, to: &Did, protocol: &str, payload: Vec<u8>, sealed: bool) -> Result<(), NetError> {
        self.best_effort.check_room(to, payload.len())?;
        // One look at the peer, copying nothing: per message, cloning its link and key
        // showed in a profile of 1 KiB sends.
        match self.peers.with(|t| t.get(to).map(|r| r.state.link().map(|l| l.protocol_version))) {
            None => return Err(NetError::UnknownPeer(to.clone())),
            Some(None) => {
                self.best_effort.drop_counted("not_connected", 1);
                return Err(NetError::NotConnected(to.clone()));
            }
            Some(Some(version)) if version < crate::BEST_EFFORT_VERSION => {
                return Err(NetError::NoBestEffort { did: to.clone(), version })
            }
            Some(Some(_)) => {}
        }
        let payload = if sealed { self.outgoing_payload(to, payload, true)? } else { payload };
        let frame =
            frame::encode(&Frame { body: Some(Body::BestEffort(message(protocol.to_string(), 0, payload, sealed))) });
        self.best_effort.push(to, frame)?;
        self.metrics.messages_queued.with_label_values(&[protocol]).inc();
        Ok(())
    }
}

/// A message as it goes on the wire, carrying the caller's trace context (the receiver's
/// spans join it) and the time it was sent; `seq` is 0 in the best-effort class.
fn message(protocol: String, seq: u64, payload: Vec<u8>, sealed: bool) -> Message {
    let trace = TraceContext { fields: icn_telemetry::propagation::current_fields() };
    Message { protocol, seq, payload, sealed, trace: Some(trace), sent_at_ms: now_ms() }
}
