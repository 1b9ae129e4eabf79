//! RTT sampling: each link's measured RTT feeds this node's Vivaldi coordinate, which is
//! sent to every peer.

use super::*;

/// Every keep-alive interval (QUIC refreshes its RTT estimate with each keep-alive):
/// publishes each link's RTT, feeds it to this node's Vivaldi coordinate, and sends the
/// coordinate to every peer.
pub(super) async fn sample_links(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.keep_alive_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sampled: HashSet<Did> = HashSet::new();
    loop {
        tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let links = inner.peers.links();
        let now: HashSet<Did> = links.iter().map(|(did, _)| did.clone()).collect();
        for (did, link) in &links {
            let rtt = link.connection.rtt();
            inner.metrics.peer_rtt_seconds.with_label_values(&[did.as_str()]).set(rtt.as_secs_f64());
            if let Some(remote) = inner.peers.with(|t| t.get(did).and_then(|r| r.coordinate)) {
                inner.vivaldi.lock().expect("vivaldi lock").observe(&remote, rtt);
            }
        }
        let ours = inner.vivaldi.lock().expect("vivaldi lock").coordinate().to_proto();
        for (_, link) in &links {
            let frame = Frame { body: Some(Body::Coordinate(ours.clone())) };
            inner.send_control(link.id, &frame).await;
        }
        // A disconnected peer has no RTT: drop its series rather than show a stale value.
        for gone in sampled.difference(&now) {
            let _ = inner.metrics.peer_rtt_seconds.remove_label_values(&[gone.as_str()]);
        }
        sampled = now;
    }
}
