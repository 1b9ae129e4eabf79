//! What happens to a peer as its links come and go: remembered across restarts, revived
//! when something is sent to it, marked failed, redialled after a close, and told
//! goodbye at shutdown.

use super::*;

impl Inner {
    /// Something is being sent to a peer this node gave up on, or closed: try again.
    pub fn revive(self: &Arc<Self>, did: &Did) {
        let revived = self.peers.with(|t| match t.get_mut(did) {
            Some(r)
                if matches!(r.state, PeerState::Failed { .. } | PeerState::Closed { .. })
                    && !r.addresses.is_empty() =>
            {
                r.set_state(
                    PeerState::Reconnecting {
                        attempt: 0,
                        next_attempt_at: SystemTime::now(),
                        last_error: String::new(),
                    },
                    &self.peers.state_changes,
                );
                true
            }
            _ => false,
        });
        if revived {
            self.remember(did);
            tracing::info!(peer = %did, "message queued for a closed or failed peer; reconnecting");
            self.ctx.spawn(reconnect_loop(self.clone(), did.clone()));
        }
    }

    /// Stores where a connected peer can be reached (clearing any failure mark), so a
    /// restart can dial it again.
    pub fn remember(self: &Arc<Self>, did: &Did) {
        self.store_peer(did, String::new());
    }

    /// Gives up on a peer until something is sent to it or it connects; kept across restarts.
    pub fn mark_failed(self: &Arc<Self>, did: &Did, last_error: &str) {
        self.peers.with(|t| {
            if let Some(r) = t.get_mut(did) {
                if matches!(r.state, PeerState::Reconnecting { .. }) {
                    r.set_state(PeerState::Failed { last_error: last_error.to_string() }, &self.peers.state_changes);
                }
            }
        });
        self.store_peer(did, last_error.to_string());
    }

    fn store_peer(self: &Arc<Self>, did: &Did, failed_error: String) {
        let Some(record) = self.peers.with(|t| t.get(did).map(|r| r.as_known_peer())) else { return };
        let storage = self.ctx.storage.clone();
        self.ctx.spawn(async move {
            if let Err(e) = storage.blocking(move |s| peer_store::save(s, &record, &failed_error)).await {
                tracing::warn!(error = %e, "remembering a peer failed");
            }
        });
    }

    /// A peer's queue gauges while something waits for it; none once it is empty, so
    /// that the series per DID are those of peers with a queue, not every peer ever met.
    pub fn update_queue_metrics(&self, did: &Did) {
        let (messages, bytes) = self.outbox.depth(did);
        let label = did.to_string();
        if messages == 0 {
            let _ = self.metrics.queue_depth.remove_label_values(&[&label]);
            let _ = self.metrics.queue_bytes.remove_label_values(&[&label]);
            return;
        }
        self.metrics.queue_depth.with_label_values(&[&label]).set(messages as i64);
        self.metrics.queue_bytes.with_label_values(&[&label]).set(bytes as i64);
    }

    /// A link ended. Decide, under the table lock, what the peer's state becomes.
    pub fn link_closed(
        self: &Arc<Self>,
        did: &Did,
        link: &crate::peers::Link,
        reason: String,
        goodbye: Option<String>,
    ) {
        let redial = self.peers.with(|t| {
            let record = t.get_mut(did)?;
            match &record.state {
                PeerState::Connected(current) if current.id == link.id => {}
                // A newer link replaced this one; nothing changes.
                _ => return None,
            }
            if self.ctx.shutdown.is_cancelled() {
                record.set_state(
                    PeerState::Closed { reason: "this node is shutting down".into() },
                    &self.peers.state_changes,
                );
                return None;
            }
            if let Some(reason) = goodbye {
                record.set_state(
                    PeerState::Closed { reason: format!("peer closed the connection: {reason}") },
                    &self.peers.state_changes,
                );
                return None;
            }
            if !link.outbound {
                let observed = link.connection.remote_address().to_string();
                let _ = crate::peers::add_addresses(&mut record.addresses, &[observed], self.peers.max_addresses());
            }
            record.set_state(
                PeerState::Reconnecting { attempt: 0, next_attempt_at: SystemTime::now(), last_error: reason.clone() },
                &self.peers.state_changes,
            );
            Some(())
        });
        self.metrics.connected_peers.set(self.peers.connected_count() as i64);
        if self.peers.link(did).is_none() {
            // Series per DID live as long as the connection: a node meets many peers.
            for direction in ["sent", "received"] {
                let _ = self.metrics.peer_bytes.remove_label_values(&[did.as_str(), direction]);
            }
        }
        tracing::info!(peer = %did, reason, "peer disconnected");
        if redial.is_some() {
            self.ctx.spawn(reconnect_loop(self.clone(), did.clone()));
        }
    }
}

/// At shutdown, tells every peer this close is intentional, closes, and waits briefly
/// for the close to reach them.
pub(super) async fn goodbye_at_shutdown(inner: Arc<Inner>, endpoint: quinn::Endpoint) {
    inner.ctx.shutdown.cancelled().await;
    let frame = Frame { body: Some(Body::Goodbye(Goodbye { reason: "node shutting down".into(), intentional: true })) };
    let links = inner.peers.links();
    let goodbyes = links.iter().map(|(_, link)| {
        let inner = inner.clone();
        let frame = frame.clone();
        let link_id = link.id;
        async move {
            let _ = tokio::time::timeout(inner.config.goodbye_grace, inner.send_control(link_id, &frame)).await;
        }
    });
    futures::future::join_all(goodbyes).await;
    for (_, link) in &links {
        link.connection.close(quinn::VarInt::from_u32(close::SHUTDOWN), b"node shutting down");
    }
    endpoint.close(quinn::VarInt::from_u32(close::SHUTDOWN), b"node shutting down");
    let _ = tokio::time::timeout(inner.config.goodbye_grace, endpoint.wait_idle()).await;
    tracing::info!(peers = links.len(), "said goodbye to peers");
}
