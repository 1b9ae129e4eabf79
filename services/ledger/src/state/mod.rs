//! What a ledger node knows, in memory: every cooperative's model, its transfer engine
//! and the indexes reads need. It is rebuilt at start-up by replaying the journal, and
//! changed only by [`State::apply`], which also says what to write in one batch.
//!
//! Entries arrive from three places, with one difference: what comes through this
//! node's API (`Source::Local`) is checked against what the node knows first, so a
//! member hears at once that a transfer can never apply, and such a transfer is never
//! stored or sent on. Peers' entries and the journal's own are taken as they are: the
//! engine's rules decide, the same on every node.
//!
//! Files by job:
//! - `mod.rs` (here): the state itself ([`State`], [`CoopState`]) and what goes in and
//!   out of [`State::apply`] ([`Checked`], [`Source`], [`Outcome`], [`GroupWrite`]);
//! - `apply`: how an entry changes the state: transfers, admin entries, fork reports,
//!   and the batch a group writes;
//! - `checks`: what this node's API refuses before anything changes, and the rule name
//!   each refusal carries;
//! - `hold`: what peers can make a node hold, and how nothing evicted is lost;
//! - `votes`: the validators' votes a node takes, and those it casts itself;
//! - `views`: what reads see: transfer records, accounts, history, forks, statistics.
//!
//! Whether a transfer applies is not decided here: that is the engine's rule
//! ([`crate::engine`]), the same on every node.

mod apply;
mod checks;
#[cfg(test)]
mod form_tests;
mod hold;
#[cfg(test)]
mod hold_tests;
mod past;
#[cfg(test)]
mod past_tests;
#[cfg(test)]
mod tests;
mod views;
mod votes;
#[cfg(test)]
mod votes_tests;

pub use checks::unbound_coop;

pub use crate::store::group::{GroupWrite, StoredTransfer};

use crate::engine::Ledger;
use crate::error::LedgerError;
use crate::model::CoopModel;
use crate::store::past::CoopPast;
use foldhash::HashMap;
use icn_ledger_records::{Hash, SignatureError};
use icn_proto::ledger::v1::{CoopStatsResponse, Transfer, TransferRecord};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerEntry};
use std::collections::BTreeMap;

/// Where an entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This node's API.
    Local,
    /// A peer, through the cooperative's gossip topic, at this position of it: where it
    /// is read again if it is evicted.
    Peer { position: u64 },
    /// This node's journal, at start-up.
    Replay { received_at_ms: i64 },
}

/// An entry with the outcome of checking its signature (done off the state lock).
pub struct Checked {
    pub body: Body,
    pub hash: Result<Hash, SignatureError>,
    /// A transfer whose form passed [`crate::engine::check_form`] here too, so the
    /// committer does not judge it again: parsing two DIDs per transfer was a twentieth
    /// of the committer's time, and these checks run on every core.
    pub formed: bool,
}

impl Checked {
    /// Verifies the signature of every entry, on every core.
    pub fn verify_all(entries: Vec<LedgerEntry>) -> Vec<Checked> {
        use icn_ledger_records::{verify, verify_all};
        let bodies: Vec<Body> = entries.into_iter().filter_map(|e| e.body).collect();
        // Transfers are the many; they go through the parallel path together.
        let transfers: Vec<Transfer> =
            bodies.iter().filter_map(|b| if let Body::Transfer(t) = b { Some(t.clone()) } else { None }).collect();
        let mut transfer_hashes = verify_all(&transfers).into_iter();
        bodies
            .into_iter()
            .map(|body| {
                let mut formed = false;
                let hash = match &body {
                    Body::Transfer(t) => {
                        let hash = transfer_hashes.next().expect("one result per transfer");
                        formed = hash.is_ok() && crate::engine::check_form(t).is_ok();
                        hash
                    }
                    Body::Coop(c) => verify(c),
                    Body::Admission(a) => verify(a),
                    Body::Currency(c) => verify(c),
                    Body::Limit(l) => verify(l),
                    Body::Validators(v) => verify(v),
                    Body::Vote(v) => verify(v),
                    // A report is signed by the gossip entry around it; its evidence is
                    // checked when the transfers themselves arrive.
                    Body::Fork(_) => Ok([0; 32]),
                };
                Checked { body, hash, formed }
            })
            .collect()
    }

    /// Entries whose signature needs no checking: the journal holds only checked ones
    /// (and no transfer refused on its form).
    pub fn trusted(body: Body) -> Checked {
        let hash = match &body {
            Body::Transfer(t) => icn_ledger_records::hash(t),
            Body::Coop(c) => icn_ledger_records::hash(c),
            Body::Admission(a) => icn_ledger_records::hash(a),
            Body::Currency(c) => icn_ledger_records::hash(c),
            Body::Limit(l) => icn_ledger_records::hash(l),
            Body::Validators(v) => icn_ledger_records::hash(v),
            Body::Vote(v) => icn_ledger_records::hash(v),
            Body::Fork(_) => [0; 32],
        };
        Checked { body, hash: Ok(hash), formed: true }
    }
}

/// What became of one entry.
// Nearly every outcome is a transfer's: boxing its record would allocate once per
// transfer to save space on the rare others.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    Transfer {
        record: TransferRecord,
        duplicate: bool,
    },
    Admin(Result<AdminOutcome, LedgerError>),
    /// A peer's entry that is refused or was known; nothing to answer.
    Dropped,
}

#[derive(Debug, Clone)]
pub struct AdminOutcome {
    pub hash: Hash,
    /// False when this exact entry was known.
    pub created: bool,
}

struct TransferMeta {
    position: u64,
    received_at_ms: i64,
    applied_at_ms: i64,
}

/// One cooperative on this node.
#[derive(Default)]
pub struct CoopState {
    pub model: CoopModel,
    pub engine: Ledger,
    meta: HashMap<Hash, TransferMeta>,
    /// (currency, member) → when a transfer of the account last applied.
    updated: ByAccount<i64>,
    /// (currency, member) → transfers in or out, in journal order.
    history: ByAccount<Vec<Hash>>,
    /// (currency, payer, idempotency id) → the first transfer that used it.
    idempotency: HashMap<(String, String, String), Hash>,
    /// Forks found, by place, with when.
    forks: BTreeMap<(String, String, u64), i64>,
    /// Places peers reported forks at before this node found them, oldest first: a fork
    /// found here later is not reported again (one report per fork, not one per node).
    /// Bounded by [`PEER_REPORTS_KEPT`]: peers' reports are their word, not evidence.
    peer_reported: std::collections::VecDeque<(String, String, u64)>,
    /// Peers' transfers evicted (not kept) at a bound, by what they wait for, with the
    /// earliest topic position among them: read again from there once it comes.
    evicted: BTreeMap<Waiting, Evicted>,
    /// Where a re-read of the cooperative's topic must start, once requested; and the
    /// one under way. Until both are done the gossip cursor stays before them, so a
    /// restart reads the evicted transfers again too.
    rewind: Option<u64>,
    rewinding: Option<u64>,
    /// How far the engine's newly applied transfers are stamped: (its recomputes, the
    /// length of its list) when last looked at (`CoopState::stamp_newly_applied`).
    stamped: (u64, usize),
    /// Groups that changed this cooperative; keys the statistics cache.
    changes: u64,
    /// Where what applied goes once written, and the read indexes read from when the
    /// node has one (`store::past`); `None` holds everything in memory (a replay,
    /// `RecomputeBalances`, the tests of the rules). With one, `meta` and `idempotency`
    /// hold only the transfers the engine holds, and `history` nothing.
    past: Option<CoopPast>,
    /// CoopStats is public; it reads the engine's totals and every waiting transfer's
    /// status, computed once per change.
    stats_cache: std::sync::Mutex<Option<(u64, CoopStatsResponse)>>,
}

/// How many peers' transfers a node holds unapplied (`credit.max_unapplied_*`).
#[derive(Clone, Copy, Debug)]
pub struct HoldBounds {
    pub per_payer: usize,
    pub total: usize,
}

/// What an evicted transfer waits for before it is read again.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Waiting {
    /// The cooperative's rules to change: an admission (its payer or payee is not a
    /// member yet), a currency, a limit, or a fork's recompute.
    Rules,
    /// This payer's chain in this currency to come within `credit.max_unapplied_per_payer`
    /// of the transfer's sequence number.
    Chain { currency: String, payer: String },
    /// Room under the node-wide bound (also where chains go beyond
    /// [`EVICTED_PAYERS_KEPT`]).
    Room,
    /// This node's upgrade: a record of a later release's format. Read again at the
    /// next start (the gossip cursor stays before it), by then perhaps upgraded.
    Upgrade,
}

/// Where evicted transfers are read again from, and (for a chain) the lowest sequence
/// number among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evicted {
    pub position: u64,
    pub seq: u64,
}

/// Payers' chains whose evicted transfers are remembered by name, per cooperative.
pub const EVICTED_PAYERS_KEPT: usize = 1024;

#[derive(Default)]
pub struct State {
    pub coops: BTreeMap<String, CoopState>,
    /// The journal's last position: it moves with every stored entry.
    pub version: u64,
    /// `credit.max_clock_skew`, for entries through this node's API only; `None` checks
    /// no clock (a replay, the tests of the rules themselves).
    pub clock_skew_ms: Option<i64>,
    /// Bounds on peers' transfers held unapplied; `None` holds them all (a replay).
    pub bounds: Option<HoldBounds>,
    /// This node's identity, when it votes for the transfers of the cooperatives that
    /// name it a validator; `None` votes for nothing (a replay).
    pub voter: Option<std::sync::Arc<icn_identity::NodeIdentity>>,
    /// The store each cooperative's past is read from (`CoopState::past`).
    past: Option<crate::store::Store>,
}

/// Places of peers' fork reports remembered per cooperative.
pub const PEER_REPORTS_KEPT: usize = 1024;

/// Balances are exact in the engine (i128); the API's i64 holds any balance a
/// cooperative of fewer than 1,024 members at the largest credit limit can reach.
pub fn clamp(balance: i128) -> i64 {
    balance.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Values per account (currency, member), found by `&str` without building a key: a
/// replay touched these maps for both accounts of every transfer, and building their
/// keys was a tenth of its time.
pub(crate) struct ByAccount<V>(HashMap<String, HashMap<String, V>>);

impl<V> Default for ByAccount<V> {
    fn default() -> Self {
        Self(HashMap::default())
    }
}

impl<V: Default> ByAccount<V> {
    pub(crate) fn get(&self, currency: &str, member: &str) -> Option<&V> {
        self.0.get(currency)?.get(member)
    }

    /// The account's value, made (default) the first time.
    pub(crate) fn get_mut_or_default(&mut self, currency: &str, member: &str) -> &mut V {
        if !self.0.contains_key(currency) {
            self.0.insert(currency.to_string(), HashMap::default());
        }
        let members = self.0.get_mut(currency).expect("just made");
        if !members.contains_key(member) {
            members.insert(member.to_string(), V::default());
        }
        members.get_mut(member).expect("just made")
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}
