//! What one group of entries writes, in one atomic batch: the state fills it
//! (`state::apply`, `state::past`), the store writes it ([`super::Store::write`]).

use crate::engine::Retired;
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::{Account, Transfer};
use icn_proto::ledger::wire::v1::{ForkReport, JournalRecord};
use std::sync::Arc;

/// What one group of applied entries writes, in one atomic batch.
#[derive(Default, Debug)]
pub struct GroupWrite {
    pub journal: Vec<(u64, JournalRecord)>,
    /// (coop, account) → the account as it now stands.
    pub accounts: Vec<Account>,
    /// Gossip positions processed, per cooperative.
    pub cursors: Vec<(String, u64)>,
    /// The journal version after this group.
    pub version: u64,
    /// Forks found in this group, to report (those no peer reported first).
    pub forks: Vec<ForkReport>,
    /// Forks found in this group, reported or not.
    pub forks_found: u64,
    /// Entries submitted through this node's API, to publish.
    pub local_entries: usize,
    /// Transfers stored or newly applied in this group, for watchers: (coop, hash).
    pub transfer_events: Vec<(String, Hash)>,
    /// Peers' entries refused before reaching a cooperative (a malformed id, a founding
    /// record its id is not bound to).
    pub refused_peer_entries: u64,
    /// Peers' transfers (and votes) evicted at a bound in this group, by what they
    /// wait for.
    pub evicted: Vec<&'static str>,
    /// Transfers applied in this group, (coop, hash): what this node votes for if it
    /// is a validator (`state::votes`).
    pub applied: Vec<(String, Hash)>,
    /// Transfers stored in this group, for the past's read indexes (`store::past`).
    pub stored: Vec<StoredTransfer>,
    /// Idempotency ids first used in this group: (coop, currency, payer, id, transfer).
    pub idempotency: Vec<(String, String, String, String, Hash)>,
    /// What each cooperative's engine retired, with when each retired transfer applied.
    pub retired: Vec<(String, Retired, Vec<i64>)>,
    /// The past's rows match the journal once this batch is written (a migration's).
    pub past_current: bool,
    /// Journal positions of admin entries and votes stored in this group, per
    /// cooperative: what a start-up reads of the journal (`state::past`).
    pub entries_at: Vec<(String, u64)>,
    /// Forks found in this group: (coop, place, detected_at_ms).
    pub forks_at: Vec<(String, (String, String, u64), i64)>,
}

/// A transfer as the past's read indexes keep it.
#[derive(Debug)]
pub struct StoredTransfer {
    pub coop: String,
    pub hash: Hash,
    pub transfer: Arc<Transfer>,
    pub position: u64,
    pub received_at_ms: i64,
}

impl GroupWrite {
    pub fn is_empty(&self) -> bool {
        self.journal.is_empty()
            && self.accounts.is_empty()
            && self.cursors.is_empty()
            && self.retired.is_empty()
            && !self.past_current
    }
}
