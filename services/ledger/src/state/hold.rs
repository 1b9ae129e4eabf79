//! What peers can make a node hold, and how nothing evicted is lost.
//!
//! A peer's transfer that does not apply at once is held (pending, quarantined, or
//! refused for a reason that may change) until what it waits for arrives. Anyone can
//! sign transfers, so holding is bounded, by rules that never make two nodes disagree:
//!
//! - a transfer whose payer or payee is not a member is not held at all: it waits for
//!   the rules to change (an admission);
//! - a member's transfer is held only within `credit.max_unapplied_per_payer` sequence
//!   numbers of its payer's applied chain. One further ahead could not apply before the
//!   chain reaches it anyway, so holding it later decides nothing differently; a chain
//!   stuck at a fork holds nothing more of its payer's;
//! - a third rival at one place is not held: the place is a fork already;
//! - and everything together within `credit.max_unapplied` (the memory backstop: past
//!   it, evicted transfers wait for room, which only applying held ones frees).
//!
//! A transfer beyond a bound is *evicted*: not stored, but remembered by the topic
//! position it came at and what it waits for. When that comes, the cooperative's topic
//! is read again from there, so the evicted transfer is judged again like any late
//! arrival. Until the re-read is done, the gossip cursor the journal keeps stays before
//! the earliest eviction, so a restart reads them again too.
//!
//! Two kinds of transfer are never evicted: one that applies, and the rival that makes a
//! fork (every node must see a fork alike).
//!
//! A peer's record of a later release's format (any kind) is evicted the same way, to
//! wait for this node's upgrade: it is read again at the next start, since the cursor
//! stays before it. So a rolling upgrade loses nothing: old nodes defer what they cannot
//! hash as its signer did, and take it once upgraded.

use super::{CoopState, Evicted, HoldBounds, Waiting, EVICTED_PAYERS_KEPT};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;

impl Waiting {
    /// The label of `icn_ledger_transfers_evicted_total{waits_for}`.
    pub fn label(&self) -> &'static str {
        match self {
            Waiting::Rules => "rules",
            Waiting::Chain { .. } => "chain",
            Waiting::Room => "room",
            Waiting::Upgrade => "upgrade",
        }
    }
}

impl CoopState {
    /// Whether a peer's transfer, just taken in, must be evicted, and what it then waits
    /// for. `total` is the node's count of unapplied transfers, this one included.
    pub(super) fn over_bound(&self, t: &Transfer, hash: &Hash, bounds: HoldBounds, total: usize) -> Option<Waiting> {
        let rivals = self.engine.viable_at(t);
        if self.engine.is_applied(hash) || rivals == 2 {
            return None;
        }
        let rules = self.engine.rules();
        if rivals > 2
            || !rules.is_member_at(&t.payer, t.created_at_ms)
            || !rules.is_member_at(&t.payee, t.created_at_ms)
        {
            return Some(Waiting::Rules);
        }
        let head = self.engine.head(&t.currency, &t.payer).map_or(0, |(seq, _)| seq);
        if t.payer_seq > head.saturating_add(bounds.per_payer as u64) {
            return Some(Waiting::Chain { currency: t.currency.clone(), payer: t.payer.clone() });
        }
        if total > bounds.total {
            return Some(Waiting::Room);
        }
        None
    }

    /// Remembers an evicted transfer's topic position under what it waits for.
    pub(super) fn evicted(&mut self, waiting: Waiting, position: u64, seq: u64) {
        let named = self.evicted.keys().filter(|w| matches!(w, Waiting::Chain { .. })).count();
        let waiting = match waiting {
            Waiting::Chain { .. } if !self.evicted.contains_key(&waiting) && named >= EVICTED_PAYERS_KEPT => {
                Waiting::Room
            }
            other => other,
        };
        let at = self.evicted.entry(waiting).or_insert(Evicted { position, seq });
        at.position = at.position.min(position);
        at.seq = at.seq.min(seq);
    }

    /// After a group: evicted transfers whose wait is over are due to be read again.
    /// `rules_changed` when an admin entry or a fork changed how transfers are judged;
    /// `total` is the node's count of unapplied transfers.
    pub(super) fn release(&mut self, rules_changed: bool, bounds: HoldBounds, total: usize) {
        let due: Vec<Waiting> = self
            .evicted
            .iter()
            .filter(|(w, at)| {
                (rules_changed && **w != Waiting::Upgrade)
                    || match w {
                        Waiting::Rules | Waiting::Upgrade => false,
                        Waiting::Chain { currency, payer } => {
                            let head = self.engine.head(currency, payer).map_or(0, |(seq, _)| seq);
                            at.seq <= head.saturating_add(bounds.per_payer as u64)
                        }
                        // Some slack, so that one freed place does not re-read the topic.
                        Waiting::Room => total < bounds.total - bounds.total / 10,
                    }
            })
            .map(|(w, _)| w.clone())
            .collect();
        for waiting in due {
            let at = self.evicted.remove(&waiting).expect("listed above");
            self.rewind = Some(self.rewind.map_or(at.position, |r| r.min(at.position)));
        }
    }

    /// The first topic position the stored gossip cursor must stay before: evicted
    /// transfers not read again yet.
    pub fn hold_floor(&self) -> Option<u64> {
        self.evicted.values().map(|e| e.position).chain(self.rewind).chain(self.rewinding).min()
    }

    pub(super) fn has_evicted(&self) -> bool {
        !self.evicted.is_empty()
    }

    /// Takes the due re-read, if any: the topic position to read again from.
    pub fn start_rewind(&mut self) -> Option<u64> {
        let from = self.rewind.take()?;
        self.rewinding = Some(self.rewinding.map_or(from, |r| r.min(from)));
        Some(from)
    }

    /// The re-read is done (evictions during it are remembered anew).
    pub fn end_rewind(&mut self) {
        self.rewinding = None;
    }
}
