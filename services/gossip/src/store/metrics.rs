//! The store's counters: entries and topics refused, by reason, and entries made
//! durable. They count every path into the store (API, peers, snapshots) because every
//! path goes through it; this module only counts, it never decides anything.

use super::Store;
use crate::GossipError;
use icn_proto::gossip::v1::RejectionReason;

/// The store's counters, registered once by the service.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Entries and topics refused, by reason, from every path (API, peers, snapshots).
    pub rejections: prometheus::IntCounterVec,
    /// Entries made durable, from every path: local publishes, peers, restores.
    pub stored: prometheus::IntCounter,
    /// Entries ahead of a gap refused at a bound (`per_author`, `total_bytes`).
    pub pending_refused: prometheus::IntCounterVec,
    /// New topics refused at a bound (`total`, `per_creator`).
    pub topics_refused: prometheus::IntCounterVec,
    /// Authors found signing two entries at one sequence number.
    pub equivocations: prometheus::IntCounter,
    /// Equivocations not kept as evidence: `topics.max_equivocations` were kept already.
    pub equivocations_refused: prometheus::IntCounter,
}

impl StoreMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        use icn_telemetry::metrics::register;
        Self {
            rejections: register(
                registry,
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new("gossip_rejections_total", "Entries and topics refused, by reason"),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            stored: register(
                registry,
                prometheus::IntCounter::new(
                    "gossip_entries_stored_total",
                    "Entries stored, from anywhere: local publishes, peers and restores",
                )
                .expect("valid metric"),
            ),
            pending_refused: register(
                registry,
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new(
                        "gossip_pending_refused_total",
                        "Entries ahead of a gap refused at a bound, by bound",
                    ),
                    &["bound"],
                )
                .expect("valid metric"),
            ),
            equivocations: register(
                registry,
                prometheus::IntCounter::new(
                    "gossip_equivocations_total",
                    "Authors found signing two different entries at one sequence number of a topic",
                )
                .expect("valid metric"),
            ),
            equivocations_refused: register(
                registry,
                prometheus::IntCounter::new(
                    "gossip_equivocations_not_kept_total",
                    "Equivocations whose evidence was not kept: topics.max_equivocations were kept already",
                )
                .expect("valid metric"),
            ),
            topics_refused: register(
                registry,
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new("gossip_topics_refused_total", "New topics refused at a bound, by bound"),
                    &["bound"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

impl Store {
    /// Counts a rejection, whatever was being checked.
    pub(super) fn recorded<T>(&self, result: Result<T, GossipError>) -> Result<T, GossipError> {
        if let Err(GossipError::Rejected { reason, .. }) = &result {
            self.metrics.rejections.with_label_values(&[reason.as_str_name()]).inc();
        }
        result
    }

    /// Counts a refusal decided outside [`Store::apply`] (an oversize payload at the API).
    pub fn record_rejection(&self, reason: RejectionReason) {
        self.metrics.rejections.with_label_values(&[reason.as_str_name()]).inc();
    }

    pub fn rejections(&self, reason: RejectionReason) -> u64 {
        self.metrics.rejections.with_label_values(&[reason.as_str_name()]).get()
    }

    /// Entries made durable since the process started, from every path.
    pub fn stored_total(&self) -> u64 {
        self.metrics.stored.get()
    }
}
