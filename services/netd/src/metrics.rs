//! netd's Prometheus metrics (names are prefixed `icn_` by the runtime's registry).

use icn_telemetry::metrics::register;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct NetMetrics {
    pub connected_peers: IntGauge,
    pub connections: IntCounterVec,
    pub dials: IntCounterVec,
    pub messages_sent: IntCounterVec,
    pub messages_received: IntCounterVec,
    pub bytes_sent: IntCounter,
    pub bytes_received: IntCounter,
    pub frames_rejected: IntCounterVec,
    pub sends_refused: IntCounterVec,
    pub reconnect_attempts: IntCounter,
    pub subscribers_lagged: IntCounter,
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
            connections: counter_vec("netd_connections_total", "Connections established, by direction", &["direction"]),
            dials: counter_vec("netd_dials_total", "Dial attempts, by result", &["result"]),
            messages_sent: counter_vec("netd_messages_sent_total", "Messages written to peers", &["protocol"]),
            messages_received: counter_vec("netd_messages_received_total", "Messages read from peers", &["protocol"]),
            bytes_sent: counter("netd_bytes_sent_total", "Frame bytes written to peers"),
            bytes_received: counter("netd_bytes_received_total", "Frame bytes read from peers"),
            frames_rejected: counter_vec(
                "netd_frames_rejected_total",
                "Frames from peers refused, by reason; each closes its connection",
                &["reason"],
            ),
            sends_refused: counter_vec("netd_sends_refused_total", "Send calls refused, by reason", &["reason"]),
            reconnect_attempts: counter("netd_reconnect_attempts_total", "Reconnection attempts"),
            subscribers_lagged: counter(
                "netd_subscribers_lagged_total",
                "Local subscribers ended because they fell behind",
            ),
        }
    }
}
