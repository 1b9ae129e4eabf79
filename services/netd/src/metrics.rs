//! netd's Prometheus metrics (names are prefixed `icn_` by the runtime's registry).

use icn_telemetry::metrics::register;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Distinct protocol names a peer's messages are counted under; the protocol is the
/// sender's choice, so beyond this the rest count as `other`.
const MAX_PROTOCOL_LABELS: usize = 32;

#[derive(Clone)]
pub struct NetMetrics {
    pub connected_peers: IntGauge,
    pub state_changes: IntCounterVec,
    pub peer_rtt_seconds: prometheus::GaugeVec,
    pub peer_bytes: IntCounterVec,
    pub connections: IntCounterVec,
    pub dials: IntCounterVec,
    pub messages_queued: IntCounterVec,
    pub messages_sent: IntCounter,
    pub duplicates_dropped: IntCounter,
    pub acks_received: IntCounter,
    pub queue_depth: IntGaugeVec,
    pub queue_bytes: IntGaugeVec,
    pub messages_received: IntCounterVec,
    /// Protocol labels in use on `messages_received`.
    protocols_seen: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    pub bytes_sent: IntCounter,
    pub bytes_received: IntCounter,
    pub frames_rejected: IntCounterVec,
    pub sends_refused: IntCounterVec,
    pub reconnect_attempts: IntCounter,
    pub wakes_detected: IntCounter,
    pub rate_limited: IntCounterVec,
    pub connections_refused: IntCounterVec,
    pub exchange_refused: IntCounterVec,
    pub subscribers_lagged: IntCounter,
    pub best_effort_dropped: IntCounterVec,
}

impl NetMetrics {
    pub fn new(registry: &Registry) -> Self {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| register(registry, IntCounter::new(name, help).expect("valid metric"));
        Self {
            connected_peers: register(
                registry,
                IntGauge::new("netd_connected_peers", "Peers with a live connection").expect("valid metric"),
            ),
            state_changes: counter_vec(
                "netd_peer_state_changes_total",
                "Peer state changes, by the state entered",
                &["state"],
            ),
            peer_rtt_seconds: register(
                registry,
                prometheus::GaugeVec::new(
                    Opts::new("netd_peer_rtt_seconds", "QUIC's smoothed RTT to each connected peer"),
                    &["peer"],
                )
                .expect("valid metric"),
            ),
            peer_bytes: counter_vec(
                "netd_peer_bytes_total",
                "Frame bytes per peer and direction",
                &["peer", "direction"],
            ),
            connections: counter_vec("netd_connections_total", "Connections established, by direction", &["direction"]),
            dials: counter_vec("netd_dials_total", "Dial attempts, by result", &["result"]),
            messages_queued: counter_vec(
                "netd_messages_queued_total",
                "Messages accepted by Send and stored for a peer",
                &["protocol"],
            ),
            messages_sent: counter("netd_messages_sent_total", "Messages written to peers (resends included)"),
            duplicates_dropped: counter(
                "netd_duplicates_dropped_total",
                "Messages received again after a reconnect or restart and not delivered twice",
            ),
            acks_received: counter("netd_acks_received_total", "Acknowledgements received from peers"),
            queue_depth: register(
                registry,
                IntGaugeVec::new(Opts::new("netd_queue_messages", "Messages stored for a peer"), &["peer"])
                    .expect("valid metric"),
            ),
            queue_bytes: register(
                registry,
                IntGaugeVec::new(Opts::new("netd_queue_bytes", "Bytes stored for a peer"), &["peer"])
                    .expect("valid metric"),
            ),
            messages_received: counter_vec("netd_messages_received_total", "Messages read from peers", &["protocol"]),
            protocols_seen: Default::default(),
            bytes_sent: counter("netd_bytes_sent_total", "Frame bytes written to peers"),
            bytes_received: counter("netd_bytes_received_total", "Frame bytes read from peers"),
            frames_rejected: counter_vec(
                "netd_frames_rejected_total",
                "Frames from peers refused, by reason; each closes its connection",
                &["reason"],
            ),
            sends_refused: counter_vec("netd_sends_refused_total", "Send calls refused, by reason", &["reason"]),
            reconnect_attempts: counter("netd_reconnect_attempts_total", "Reconnection attempts"),
            wakes_detected: counter("netd_wakes_detected_total", "Wakes from sleep detected (backoff reset)"),
            rate_limited: counter_vec(
                "netd_rate_limited_total",
                "Inbound messages delayed for a peer over its rate limit, and peers cut for staying over it",
                &["action"],
            ),
            connections_refused: counter_vec(
                "netd_connections_refused_total",
                "Connections refused after the handshake, by reason",
                &["reason"],
            ),
            exchange_refused: counter_vec(
                "netd_exchange_refused_total",
                "What peer exchange named and this node did not take, by bound: known_peers, addresses, frames, dials",
                &["bound"],
            ),
            subscribers_lagged: counter(
                "netd_subscribers_lagged_total",
                "Times a local subscriber fell behind the live buffer and caught up from the log",
            ),
            best_effort_dropped: counter_vec(
                "netd_best_effort_dropped_total",
                "Best-effort messages not delivered, by reason: not_connected, full, link_closed, \
                 no_subscriber, subscriber_lagged",
                &["reason"],
            ),
        }
    }
}

impl NetMetrics {
    /// Counts a message received for `protocol`, under a label set that peers cannot
    /// grow without bound.
    pub fn received(&self, protocol: &str) {
        self.received_many(protocol, 1);
    }

    /// [`NetMetrics::received`] of `n` messages at once.
    pub fn received_many(&self, protocol: &str, n: u64) {
        let label = {
            let mut seen = self.protocols_seen.lock().expect("protocol labels lock");
            if seen.contains(protocol) || (seen.len() < MAX_PROTOCOL_LABELS && seen.insert(protocol.to_string())) {
                protocol
            } else {
                "other"
            }
        };
        self.messages_received.with_label_values(&[label]).inc_by(n);
    }
}
