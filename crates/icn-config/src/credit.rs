//! `[credit]`: how this node's ledger service batches, commits and publishes transfers.

use crate::check::positive;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The mutual-credit ledger (icn-ledger). The rules transfers follow are the protocol's
/// and the same on every node; these settings only shape how this node works.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreditConfig {
    /// Most transfers one `SubmitTransfers` call may carry.
    pub max_batch: usize,
    /// Most entries one commit group takes: concurrent submissions waiting while a
    /// group is written join the next one, up to this many, and share its fsync.
    pub group_max_entries: usize,
    /// Submissions waiting for the committer; callers beyond it wait their turn.
    pub queue: usize,
    /// Largest gossip payload the ledger publishes (one batch of entries); the ledger
    /// uses `topics.max_payload_bytes` instead when that is smaller.
    pub publish_max_bytes: usize,
    /// How often the ledger looks for cooperatives' topics it does not follow yet.
    #[serde(with = "humantime_serde")]
    pub discover_interval: Duration,
    /// Wait before retrying gossip after a failure.
    #[serde(with = "humantime_serde")]
    pub gossip_retry: Duration,
    /// Tries `RecomputeBalances` makes to write a repair before it gives up (ABORTED)
    /// because the journal kept moving under it.
    pub recompute_attempts: u32,
    /// Transfers buffered for each `Watch` stream; a watcher further behind is cut.
    pub watch_buffer: usize,
    /// At this node's API only: a transfer or admin entry whose `created_at_ms` is
    /// further than this from the node's clock is refused (`BAD_TIME`). Peers' entries are
    /// never judged by a node's clock: that would make the applied set depend on when
    /// and where an entry arrived.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// How far ahead of its payer's applied chain (in sequence numbers, per currency) a
    /// peer's transfer is held; one further ahead is not kept (counted in
    /// `icn_ledger_transfers_evicted_total{waits_for="chain"}`) and is read again from
    /// the cooperative's topic once the chain comes within this. A payer holds at most
    /// this many unapplied transfers (and the two of a fork) per currency.
    pub max_unapplied_per_payer: usize,
    /// Peers' transfers held unapplied on this node, every cooperative together; beyond
    /// it they are evicted (`{waits_for="room"}`) until applying held ones makes room.
    pub max_unapplied: usize,
    /// Where applied transfers are kept. `false` (the default) holds every transfer in
    /// memory and replays the journal at start-up: the ledger's fastest write path, and
    /// memory and start-up time that grow with the journal (1.5 GB and 5 s at a million
    /// transfers). `true` moves what applied to the store once written and loads a
    /// checkpoint at start-up (under a second, about 80 MB, at a million) for about half
    /// the batch throughput (docs/BENCHMARKS.md, eleventh session). Switching back and
    /// forth is safe: a store left by `false` is brought up to date once, at the first
    /// start with `true`.
    pub history_in_store: bool,
}

impl Default for CreditConfig {
    fn default() -> Self {
        CreditConfig {
            max_batch: 1000,
            group_max_entries: 4096,
            queue: 1024,
            publish_max_bytes: 192 * 1024,
            discover_interval: Duration::from_secs(1),
            gossip_retry: Duration::from_millis(500),
            recompute_attempts: 5,
            watch_buffer: 4096,
            max_clock_skew: Duration::from_secs(300),
            max_unapplied_per_payer: 1_000,
            max_unapplied: 100_000,
            history_in_store: false,
        }
    }
}

impl CreditConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("credit.max_batch", self.max_batch)?;
        positive("credit.group_max_entries", self.group_max_entries)?;
        positive("credit.queue", self.queue)?;
        positive("credit.recompute_attempts", self.recompute_attempts as usize)?;
        positive("credit.watch_buffer", self.watch_buffer)?;
        positive("credit.max_unapplied_per_payer", self.max_unapplied_per_payer)?;
        positive("credit.max_unapplied", self.max_unapplied)?;
        if self.max_clock_skew.is_zero() {
            return Err(ConfigError::Invalid {
                key: "credit.max_clock_skew",
                problem: "must be positive: no clock agrees with another to the millisecond".into(),
            });
        }
        if self.publish_max_bytes < 4096 {
            return Err(ConfigError::Invalid {
                key: "credit.publish_max_bytes",
                problem: "must be at least 4096: one transfer with its deps must fit".into(),
            });
        }
        Ok(())
    }
}
