//! Peer exchange: which known peers a Hello or an exchange names, taking in the peers
//! others name (and dialling new ones), and telling peers about a new link.

use super::*;

impl Inner {
    pub(super) fn known_peers(&self, exclude: Option<&Did>) -> Vec<KnownPeer> {
        self.peers.with(|t| {
            t.values()
                .filter(|r| r.state.link().is_some() && Some(&r.did) != exclude && !r.addresses.is_empty())
                .take(self.config.peer_exchange_max)
                .map(|r| r.as_known_peer())
                .collect()
        })
    }

    /// Dials peers named by another node, unless already connected, being redialled, or
    /// closed on purpose; all within `[network.exchange]`'s bounds, each refusal counted.
    pub fn learn_peers(self: &Arc<Self>, peers: &[KnownPeer]) {
        let refused = |bound: &str| self.metrics.exchange_refused.with_label_values(&[bound]).inc();
        for known in peers.iter().take(self.config.peer_exchange_max) {
            let Ok(did) = known.did.parse::<Did>() else { continue };
            if &did == self.did() || known.addresses.is_empty() {
                continue;
            }
            let wanted = self.peers.with(|t| match t.get(&did).map(|r| &r.state) {
                None | Some(PeerState::Known) | Some(PeerState::Failed { .. }) => true,
                Some(_) => false,
            });
            if let Err(bound) = self.peers.learn(&did, &known.addresses) {
                refused(bound.label());
                if bound == crate::peers::ExchangeBound::KnownPeers {
                    continue;
                }
            }
            if let Some(c) = known.coordinate.as_ref().and_then(Coordinate::from_proto) {
                self.peers.with(|t| {
                    if let Some(r) = t.get_mut(&did).filter(|r| r.state.link().is_none()) {
                        r.coordinate = Some(c);
                    }
                });
            }
            if wanted && self.peers.connected_count() < self.config.max_peers {
                if self.exchange_dials.check().is_err() {
                    // Known now; dialled when some peer names it again.
                    refused("dials");
                    continue;
                }
                let inner = self.clone();
                let address = known.addresses[0].clone();
                self.ctx.spawn(async move {
                    if let Err(e) = inner.dial(&address, Some(did)).await {
                        tracing::debug!(address, error = %e, "dialling an exchanged peer failed");
                    }
                });
            }
        }
    }

    /// Tells the other connected peers about a newly connected one.
    pub fn announce(self: &Arc<Self>, did: &Did) {
        let Some(known) = self.peers.with(|t| t.get(did).map(|r| r.as_known_peer())) else { return };
        if known.addresses.is_empty() {
            return;
        }
        let frame = Frame { body: Some(Body::PeerExchange(PeerExchange { peers: vec![known] })) };
        for (other, link) in self.peers.links() {
            if &other != did {
                let inner = self.clone();
                let frame = frame.clone();
                self.ctx.spawn(async move { inner.send_control(link.id, &frame).await });
            }
        }
    }
}

/// Every `peer_exchange_interval`, tells each peer about the others.
pub(super) async fn exchange_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.peer_exchange_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (did, link) in inner.peers.links() {
            let peers = inner.known_peers(Some(&did));
            if !peers.is_empty() {
                let frame = Frame { body: Some(Body::PeerExchange(PeerExchange { peers })) };
                inner.send_control(link.id, &frame).await;
            }
        }
    }
}
