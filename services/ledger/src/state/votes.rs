//! Payee finality on a node: the votes it takes from peers, and the votes it casts
//! itself when a cooperative names it a validator.
//!
//! A validator votes for each transfer it applies, at most once per place (currency,
//! payer, sequence number): its own votes are in the engine like everyone's, journalled
//! with the group that applied the transfer (so a restart never lets it vote twice at a
//! place) and published like any entry of this node. It votes only while it is in the
//! cooperative's latest validator set and in the one in force at the transfer's time: a
//! validator that has been replaced stops voting as soon as it learns so. Whether a
//! transfer is certified is the engine's rule, from signed data alone.
//!
//! What peers can make a node hold: a vote is kept only when its signer is named by some
//! validator set of the cooperative (else it waits for the rules, like a non-member's
//! transfer), at most two per validator and place, and votes for transfers the node does
//! not know count with the unapplied transfers under `credit.max_unapplied` (past it
//! they wait for room).

use super::apply::Hold;
use super::{Checked, CoopState, GroupWrite, Outcome, Source, State, Waiting};
use crate::engine::VoteAdded;
use icn_identity::NodeIdentity;
use icn_ledger_records::{Hash, SignatureError};
use icn_proto::ledger::v1::{TransferRecord, TransferVote};
use icn_proto::ledger::wire::v1::ledger_entry::Body;

impl CoopState {
    /// Takes a vote; the flag says whether it is stored (journalled).
    pub(super) fn vote(
        &mut self,
        v: TransferVote,
        hash: Result<Hash, SignatureError>,
        hold: Option<Hold>,
        evictions: &mut Vec<&'static str>,
    ) -> (Outcome, bool) {
        let (Ok(_), Ok(transfer)) = (hash, <Hash>::try_from(v.transfer.as_slice())) else {
            return (Outcome::Dropped, false);
        };
        if let Some(hold) = hold {
            let waiting = if !self.engine.rules().names_validator(&v.validator) {
                Some(Waiting::Rules)
            } else if self.engine.transfer(&transfer).is_none() && hold.others + self.engine.held() >= hold.bounds.total
            {
                Some(Waiting::Room)
            } else {
                None
            };
            if let Some(waiting) = waiting {
                evictions.push(waiting.label());
                self.evicted(waiting, hold.position, 0);
                return (Outcome::Dropped, false);
            }
        }
        let added = self.engine.add_vote(transfer, &v.validator, (v.currency, v.payer, v.payer_seq));
        (Outcome::Dropped, added == VoteAdded::Added)
    }

    /// Whether the cooperative's latest validator set names `did`: only then does this
    /// node vote here (and only then is an applied transfer worth a look).
    pub(super) fn is_validator(&self, did: &str) -> bool {
        self.engine.rules().latest_validators().is_some_and(|v| v.validators.contains(did))
    }

    /// Fills a transfer record's votes, quorum and whether they certify it.
    pub(super) fn fill_certificate(&self, hash: &Hash, record: &mut TransferRecord) {
        if let Some((votes, quorum)) = self.engine.certificate(hash) {
            (record.votes, record.quorum, record.certified) = (votes, quorum, votes >= quorum);
        }
    }

    /// This node's vote for an applied transfer, if it is to cast one.
    fn my_vote(&self, me: &NodeIdentity, hash: &Hash, now: i64) -> Option<TransferVote> {
        let did = me.did().as_str();
        if !self.is_validator(did) || !self.engine.is_applied(hash) {
            return None;
        }
        let t = self.engine.transfer(hash)?;
        if !self.engine.rules().validators_at(t.created_at_ms)?.validators.contains(did)
            || self.engine.has_voted(did, &(t.currency.clone(), t.payer.clone(), t.payer_seq))
        {
            return None;
        }
        Some(icn_ledger_records::finality::vote(me, &t, hash, now))
    }
}

impl State {
    /// Casts this node's votes for the transfers applied in `write`'s group, as entries
    /// of this node in the same group. Votes can complete a certificate that changes
    /// which transfer wins a fork, which applies more: repeated until nothing is new.
    pub fn cast_votes(&mut self, now: i64, write: &mut GroupWrite) {
        let Some(me) = self.voter.clone() else { return };
        loop {
            let applied = std::mem::take(&mut write.applied);
            let votes: Vec<Checked> = applied
                .iter()
                .filter_map(|(coop_id, hash)| self.coops.get(coop_id)?.my_vote(&me, hash, now))
                .map(|v| Checked { hash: Ok(icn_ledger_records::hash(&v)), body: Body::Vote(v), formed: false })
                .collect();
            if votes.is_empty() {
                return;
            }
            self.apply(votes, Source::Local, now, write);
        }
    }

    /// Fills a transfer record's votes from what the state holds now.
    pub fn refresh_certificate(&self, record: &mut TransferRecord) {
        let Some(t) = record.transfer.as_ref() else { return };
        let (Some(coop), Ok(hash)) = (self.coops.get(&t.coop_id), <Hash>::try_from(record.hash.as_slice())) else {
            return;
        };
        coop.fill_certificate(&hash, record);
    }

    /// At start-up: the votes this node did not cast for applied transfers (a crash
    /// between applying and writing, a validator set that arrived in a replay). Queued
    /// in `write` as applied transfers, for [`State::cast_votes`].
    pub fn missed_votes(&self, write: &mut GroupWrite) -> Result<(), crate::store::StoreError> {
        let Some(me) = self.voter.as_ref() else { return Ok(()) };
        for (coop_id, coop) in &self.coops {
            if !coop.is_validator(me.did().as_str()) {
                continue;
            }
            // In hash order, so every start casts them alike; those retired to the
            // store too (a load holds none in memory).
            let mut applied: Vec<Hash> = coop.engine.applied().iter().copied().collect();
            applied.extend(coop.retired_applied()?);
            applied.sort_unstable();
            applied.dedup();
            write.applied.extend(applied.into_iter().map(|h| (coop_id.clone(), h)));
        }
        Ok(())
    }
}
