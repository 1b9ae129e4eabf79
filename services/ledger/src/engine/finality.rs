//! Payee finality in the engine: validators' votes, the certificate they make, and the
//! one rule that reads it: at a fork, the one certified viable transfer wins its place
//! (its rivals stay quarantined, as evidence). Votes are signed data: which transfer wins
//! is a function of what is known, the same on every node in any order
//! (`icn_ledger_records::finality` has the records and the quorum rule).
//!
//! Owns the vote indexes (`votes`, `ballots`, `orphan_votes` of [`Ledger`]); the fixpoint
//! in `mod.rs` asks it whether a transfer is quarantined and which one wins a place.

use super::{Ledger, Place};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;

/// What became of a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteAdded {
    Added,
    /// This validator's vote for this transfer was known.
    Known,
    /// The validator already voted for two transfers at this place: its votes there
    /// count for nothing, and more of them are not kept.
    Excess,
}

impl Ledger {
    /// Whether `t` is held back by a fork at its place: it is, unless it is the place's
    /// one certified transfer.
    pub(super) fn quarantined(&self, hash: &Hash, t: &Transfer) -> bool {
        self.rules.members.contains(&t.payer)
            && self.ids.get(&t.currency, &t.payer).is_some_and(|id| self.viable_count((id, t.payer_seq)) > 1)
            && self.winner(t).is_none_or(|w| w != *hash)
    }

    /// The one certified viable transfer at `t`'s place, if exactly one is.
    pub(super) fn winner(&self, t: &Transfer) -> Option<Hash> {
        let mut certified = self.viable_in_slot(t).into_iter().filter(|h| self.is_certified(h));
        let first = certified.next()?;
        certified.next().is_none().then_some(first)
    }

    /// The certified transfer that wins `t`'s place, when that place is a fork.
    pub fn slot_winner(&self, t: &Transfer) -> Option<Hash> {
        (self.viable_in_slot(t).len() > 1).then(|| self.winner(t)).flatten()
    }

    /// [`Ledger::slot_winner`] of a place, named by the place.
    fn winner_at(&self, place: &Place) -> Option<Hash> {
        let id = self.ids.get(&place.0, &place.1)?;
        let first = *self.viable_in_place((id, place.2)).first()?;
        self.slot_winner(&*self.transfer(&first)?)
    }

    /// Takes a validator's vote (its signature checked by the caller) for `transfer` at
    /// `place`. When it changes which transfer wins a fork, everything is judged again.
    pub fn add_vote(&mut self, transfer: Hash, validator: &str, place: Place) -> VoteAdded {
        let key = (validator.to_string(), place);
        let ballot = self.ballots.entry(key.clone()).or_default();
        if ballot.contains(&transfer) {
            return VoteAdded::Known;
        }
        if ballot.len() >= 2 {
            return VoteAdded::Excess;
        }
        let before = self.winner_at(&key.1);
        self.ballots.get_mut(&key).expect("just made").push(transfer);
        let place = key.1.clone();
        self.votes.entry(transfer).or_default().insert(key);
        if !self.known.contains_key(&transfer) && !self.is_retired(&transfer) {
            self.orphan_votes += 1;
        }
        if self.winner_at(&place) != before {
            self.recompute();
        }
        VoteAdded::Added
    }

    /// The votes counted for a known transfer and the quorum of the set in force at its
    /// time; `None` when no set is. A vote counts when its validator is in that set,
    /// names the transfer's own place and voted for nothing else there.
    pub fn certificate(&self, hash: &Hash) -> Option<(u32, u32)> {
        let t = self.transfer(hash)?;
        let set = self.rules.validators_at(t.created_at_ms)?;
        let counted = self.votes.get(hash).map_or(0, |votes| {
            votes
                .iter()
                .filter(|(v, place)| {
                    place.0 == t.currency
                        && place.1 == t.payer
                        && place.2 == t.payer_seq
                        && set.validators.contains(v)
                        && self.ballots.get(&(v.clone(), place.clone())).is_some_and(|b| b.len() == 1)
                })
                .count()
        });
        Some((counted as u32, set.quorum))
    }

    pub fn is_certified(&self, hash: &Hash) -> bool {
        self.certificate(hash).is_some_and(|(votes, quorum)| votes >= quorum)
    }

    /// Whether `validator` has voted at `place` (for any transfer).
    pub fn has_voted(&self, validator: &str, place: &Place) -> bool {
        self.ballots.contains_key(&(validator.to_string(), place.clone()))
    }

    /// Votes kept for transfers this node does not know.
    pub fn orphan_votes(&self) -> usize {
        self.orphan_votes
    }
}
