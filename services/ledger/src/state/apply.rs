//! How an entry changes what the node knows: [`State::apply`] takes a group of checked
//! entries (transfers, admin entries, fork reports), hands transfers to the
//! cooperative's engine and admin entries to its model, updates the read indexes, and
//! fills the [`GroupWrite`] the caller stores in one batch.
//!
//! Every entry changes a [`State`] through here (a journal replay only moves `version`
//! to the position it read). It decides nothing about validity on its own: this node's
//! API refusals are asked of `checks`, and whether a transfer applies is the engine's
//! answer. It never writes to storage or the network itself: the batch it fills is the
//! caller's to write before anyone reads the new state.

use super::checks::{rejected, rejection_of};
use super::{AdminOutcome, Checked, CoopState, GroupWrite, HoldBounds, Outcome, Source, State, TransferMeta, Waiting};
use crate::engine::Status;
use crate::error::LedgerError;
use crate::model::AdminEntry;
use icn_ledger_records::coop::coop_of;
use icn_ledger_records::{Hash, SignatureError};
use icn_proto::ledger::v1::{Transfer, TransferRecord, TransferRejection, TransferStatus};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, ForkReport, JournalRecord, LedgerEntry};
use std::sync::Arc;

impl State {
    /// Applies a group of entries. `now` stamps them; the caller writes the returned
    /// batch (unless the source is the journal) before anyone reads the new state.
    pub fn apply(&mut self, entries: Vec<Checked>, source: Source, now: i64, write: &mut GroupWrite) -> Vec<Outcome> {
        let received_at_ms = match source {
            Source::Replay { received_at_ms } => received_at_ms,
            _ => now,
        };
        let replaying = matches!(source, Source::Replay { .. });
        let mut touched: Vec<String> = Vec::new();
        // Cooperatives whose rules changed in this group: evicted transfers may fit now.
        let mut rules_changed: Vec<String> = Vec::new();
        let mut outcomes = Vec::with_capacity(entries.len());
        for checked in entries {
            let coop_id = coop_of(&checked.body).to_string();
            if let (Err(SignatureError::UnknownFormat(_)), Source::Peer { position }) = (&checked.hash, source) {
                if icn_ledger_records::coop::valid_name(&coop_id, icn_ledger_records::coop::MAX_COOP_ID) {
                    // A later release's record: not judged, not lost (`state::hold`).
                    self.coop_entry(&coop_id).evicted(Waiting::Upgrade, position, 0);
                    write.evicted.push(Waiting::Upgrade.label());
                    outcomes.push(Outcome::Dropped);
                    continue;
                }
            }
            if let Some(refusal) = self.coop_refusal(&coop_id, &checked.body, source) {
                write.refused_peer_entries += matches!(refusal, Outcome::Dropped) as u64;
                outcomes.push(refusal);
                continue;
            }
            let skew = self.clock_skew_ms;
            let hold = match (self.bounds, source) {
                (Some(bounds), Source::Peer { position }) => {
                    Some(Hold { bounds, others: self.unapplied_except(&coop_id), position })
                }
                _ => None,
            };
            if !self.coops.contains_key(&coop_id) {
                self.coop_entry(&coop_id);
            }
            let coop = self.coops.get_mut(&coop_id).expect("just made");
            let Checked { body, hash, formed } = checked;
            // The journal takes the entry as it came; a replay writes nothing and moves it.
            let journalled = (!matches!(source, Source::Replay { .. })).then(|| body.clone());
            let transfer = matches!(body, Body::Transfer(_));
            let admin_or_vote = !transfer && !matches!(body, Body::Fork(_));
            let (outcome, stored) = match body {
                Body::Transfer(t) => {
                    coop.transfer(t, (hash.clone(), formed), source, received_at_ms, skew, hold, &mut write.evicted)
                }
                Body::Fork(f) => {
                    coop.peer_reported_fork((f.currency, f.payer, f.payer_seq));
                    (Outcome::Dropped, false)
                }
                Body::Vote(v) => coop.vote(v, hash.clone(), hold, &mut write.evicted),
                admin => {
                    let (outcome, created) = coop.admin(admin, hash.clone(), source, received_at_ms, skew);
                    if created && !rules_changed.contains(&coop_id) {
                        rules_changed.push(coop_id.clone());
                    }
                    (outcome, created)
                }
            };
            coop.stamp_newly_applied(received_at_ms);
            if stored {
                self.version += 1;
                if admin_or_vote && self.past.is_some() {
                    write.entries_at.push((coop_id.clone(), self.version));
                }
                // A stored transfer is one the engine keeps.
                if let (true, Ok(hash)) = (transfer, &hash) {
                    if let Some(t) = coop.engine.transfer(hash) {
                        let looked_up = source == Source::Local;
                        coop.index(&coop_id, &t, *hash, (self.version, received_at_ms), looked_up, write);
                    }
                    if !replaying {
                        write.transfer_events.push((coop_id.clone(), *hash));
                    }
                }
                if let Some(body) = journalled {
                    let local = source == Source::Local;
                    write.local_entries += local as usize;
                    write.journal.push((
                        self.version,
                        JournalRecord { entry: Some(LedgerEntry { body: Some(body) }), received_at_ms, local },
                    ));
                }
                if !touched.contains(&coop_id) {
                    touched.push(coop_id);
                }
            }
            outcomes.push(outcome);
        }
        for coop_id in touched {
            let coop = self.coops.get_mut(&coop_id).expect("touched coops exist");
            coop.changes += 1;
            let changes = if replaying { coop.engine.take_changes_unwritten() } else { coop.engine.take_changes() };
            coop.stamped = (coop.stamped.0, 0);
            if self.voter.as_ref().is_some_and(|me| coop.is_validator(me.did().as_str())) {
                write.applied.extend(changes.applied.iter().map(|h| (coop_id.clone(), *h)));
            }
            // Each transfer once: a set, as a recompute can apply thousands in one group.
            // Nobody watches a replay.
            let mut listed: foldhash::HashSet<Hash> =
                write.transfer_events.iter().filter(|(c, _)| *c == coop_id).map(|(_, h)| *h).collect();
            // Stamped as each entry applied them (`CoopState::stamp_newly_applied`).
            for hash in changes.applied.into_iter().filter(|_| !replaying) {
                if listed.insert(hash) {
                    write.transfer_events.push((coop_id.clone(), hash));
                }
            }
            if !changes.forks.is_empty() && !rules_changed.contains(&coop_id) {
                // A fork's recompute judges held transfers again: as a change of rules.
                rules_changed.push(coop_id.clone());
            }
            for place in changes.forks {
                if coop.forks.contains_key(&place) {
                    continue;
                }
                coop.forks.insert(place.clone(), received_at_ms);
                if self.past.is_some() {
                    write.forks_at.push((coop_id.clone(), place.clone(), received_at_ms));
                }
                write.forks_found += 1;
                if coop.peer_reported.contains(&place) {
                    continue;
                }
                let transfers = coop.engine.forks().get(&place).cloned().unwrap_or_default();
                write.forks.push(ForkReport {
                    coop_id: coop_id.clone(),
                    currency: place.0,
                    payer: place.1,
                    payer_seq: place.2,
                    transfers: transfers.iter().map(|h| h.to_vec()).collect(),
                    detected_at_ms: received_at_ms,
                });
            }
            if !replaying {
                for (currency, member) in changes.accounts {
                    write.accounts.push(coop.row(&coop_id, &currency, &member));
                }
            }
        }
        if let Some(bounds) = self.bounds {
            let total: usize = self.coops.values().map(|c| c.engine.held()).sum();
            for (coop_id, coop) in self.coops.iter_mut().filter(|(_, c)| c.has_evicted()) {
                coop.release(rules_changed.contains(coop_id), bounds, total);
            }
        }
        write.version = self.version;
        // Stored transfers: their status once the whole group is applied.
        for outcome in outcomes.iter_mut().filter(|_| !replaying) {
            if let Outcome::Transfer { record, duplicate: false } = outcome {
                if record.status == TransferStatus::Unspecified as i32 {
                    let coop = record.transfer.as_ref().and_then(|t| self.coops.get(&t.coop_id));
                    if let (Some(coop), Ok(hash)) = (coop, <Hash>::try_from(record.hash.as_slice())) {
                        *record = coop.record(&hash);
                    }
                }
            }
        }
        outcomes
    }
}

impl State {
    /// Applies the journal record at `position` (its entry, unless it is of a cooperative
    /// not replayed) as it was applied when it arrived (`crate::replay`).
    pub fn replay_record(&mut self, position: u64, received_at_ms: i64, entry: Option<Checked>, now: i64) {
        if let Some(checked) = entry {
            // Positions as they were: an entry stored again takes the next one.
            self.version = position.saturating_sub(1);
            // A replay writes nothing: what the group would write is dropped.
            self.apply(vec![checked], Source::Replay { received_at_ms }, now, &mut GroupWrite::default());
        }
        self.version = position;
    }
}

/// A peer's transfer under the node's bounds: the bounds, the unapplied transfers of
/// the node's other cooperatives, and the topic position it came at.
#[derive(Clone, Copy)]
pub(super) struct Hold {
    pub(super) bounds: HoldBounds,
    pub(super) others: usize,
    pub(super) position: u64,
}

impl State {
    /// Unapplied transfers of every cooperative but `coop_id`.
    fn unapplied_except(&self, coop_id: &str) -> usize {
        self.coops.iter().filter(|(id, _)| id.as_str() != coop_id).map(|(_, c)| c.engine.held()).sum()
    }
}

impl CoopState {
    /// Takes a transfer, with its signature's outcome and whether its form was checked
    /// too ([`Checked`]); the flag says whether it is stored (journalled).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn transfer(
        &mut self,
        t: Transfer,
        (hash, formed): (Result<Hash, SignatureError>, bool),
        source: Source,
        now: i64,
        skew: Option<i64>,
        hold: Option<Hold>,
        evictions: &mut Vec<&'static str>,
    ) -> (Outcome, bool) {
        let local = source == Source::Local;
        let hash = match hash {
            Ok(h) => h,
            Err(e @ SignatureError::UnknownFormat(_)) if local => {
                let record = rejected(&t, TransferRejection::Malformed, e.to_string());
                return (Outcome::Transfer { record, duplicate: false }, false);
            }
            Err(e) if local => {
                let record = rejected(&t, TransferRejection::BadSignature, e.to_string());
                return (Outcome::Transfer { record, duplicate: false }, false);
            }
            Err(_) => return (Outcome::Dropped, false),
        };
        if self.knows_transfer(&hash, &t) {
            let outcome = if local {
                Outcome::Transfer { record: self.record(&hash), duplicate: true }
            } else {
                Outcome::Dropped
            };
            return (outcome, false);
        }
        if local {
            if !t.idempotency_id.is_empty() {
                if let Some(first) = self.by_idempotency(&t.currency, &t.payer, &t.idempotency_id) {
                    return (Outcome::Transfer { record: self.record(&first), duplicate: true }, false);
                }
            }
            if let Some(refusal) = self.preflight(&t).or_else(|| clock_refusal(t.created_at_ms, now, skew)) {
                return (Outcome::Transfer { record: rejected(&t, refusal.0, refusal.1), duplicate: false }, false);
            }
        }
        // Shared with the engine from here on: a replay copies no transfer.
        let t = Arc::new(t);
        let status = match source {
            Source::Replay { .. } => self.engine.submit_stored(Arc::clone(&t), hash),
            _ if formed => self.engine.submit_formed(Arc::clone(&t), hash),
            _ => self.engine.submit_shared(Arc::clone(&t), hash),
        };
        // A transfer refused on its merits is forgotten below, never read again.
        let final_refusal = matches!(&status, Status::Refused(r) if !r.is_stateful());
        if let Some(hold) = hold.filter(|_| !final_refusal) {
            let total = hold.others + self.engine.held();
            if let Some(waiting) = self.over_bound(&t, &hash, hold.bounds, total) {
                // Not kept: read again from the topic once what it waits for comes.
                self.engine.forget(&hash);
                evictions.push(waiting.label());
                self.evicted(waiting, hold.position, t.payer_seq);
                return (Outcome::Dropped, false);
            }
        }
        match status {
            Status::Refused(refusal) if local => {
                // Never stored nor sent on: as if it had not been submitted.
                self.engine.forget(&hash);
                let record = rejected(&t, rejection_of(&refusal), refusal.to_string());
                (Outcome::Transfer { record, duplicate: false }, false)
            }
            Status::Refused(refusal) if !refusal.is_stateful() => {
                self.engine.forget(&hash);
                (Outcome::Dropped, false)
            }
            Status::Refused(_) => {
                // A peer's transfer refused for what this node holds now (a limit, a
                // chain head) may be judged again when that changes, as it is on nodes
                // that receive it later: it is kept, like any other.
                self.meta.insert(hash, TransferMeta { position: 0, received_at_ms: now, applied_at_ms: 0 });
                (Outcome::Dropped, true)
            }
            _ => {
                self.meta.insert(hash, TransferMeta { position: 0, received_at_ms: now, applied_at_ms: 0 });
                let outcome = match source {
                    // Nobody waits for a replayed entry's outcome.
                    Source::Replay { .. } => Outcome::Dropped,
                    _ => Outcome::Transfer {
                        record: TransferRecord {
                            hash: hash.to_vec(),
                            transfer: Some(Transfer::clone(&t)),
                            ..Default::default()
                        },
                        duplicate: false,
                    },
                };
                (outcome, true)
            }
        }
    }

    /// A peer reported a fork at `place`: unless this node has found it already, it is
    /// remembered so that this node does not report it again when it finds it.
    fn peer_reported_fork(&mut self, place: (String, String, u64)) {
        if self.forks.contains_key(&place) || self.peer_reported.contains(&place) {
            return;
        }
        if self.peer_reported.len() == super::PEER_REPORTS_KEPT {
            self.peer_reported.pop_front();
        }
        self.peer_reported.push_back(place);
    }

    /// Stamps what the engine applied since it was last looked at. Done after each entry,
    /// not once per group: a transfer that applied and was undone within one group
    /// applied all the same, and a replay, which knows nothing of groups, sees it so
    /// (`state::tests`, `a_replay_of_the_journal_rebuilds_exactly_what_the_node_held`).
    fn stamp_newly_applied(&mut self, at_ms: i64) {
        let (recomputes, len) = {
            let (r, list) = self.engine.newly_applied();
            (r, list.len())
        };
        let from = if self.stamped.0 == recomputes { self.stamped.1.min(len) } else { 0 };
        self.stamped = (recomputes, len);
        for i in from..len {
            let hash = self.engine.newly_applied().1[i];
            self.stamp_applied(&hash, at_ms);
        }
    }

    /// Notes when a transfer first applied, on the transfer and on both its accounts
    /// (`Account.updated_at_ms`: the last time a transfer of the account applied).
    fn stamp_applied(&mut self, hash: &Hash, at_ms: i64) {
        let Some(m) = self.meta.get_mut(hash).filter(|m| m.applied_at_ms == 0) else { return };
        m.applied_at_ms = at_ms;
        let Some(t) = self.engine.transfer(hash) else { return };
        for member in [&t.payer, &t.payee] {
            let at = self.updated.get_mut_or_default(&t.currency, member);
            *at = (*at).max(at_ms);
        }
    }

    pub(super) fn admin(
        &mut self,
        body: Body,
        hash: Result<Hash, SignatureError>,
        source: Source,
        now: i64,
        skew: Option<i64>,
    ) -> (Outcome, bool) {
        let local = source == Source::Local;
        let hash = match hash {
            Ok(h) => h,
            Err(e) => {
                let outcome = if local {
                    Outcome::Admin(Err(LedgerError::InvalidArgument(format!("refused: {e}"))))
                } else {
                    Outcome::Dropped
                };
                return (outcome, false);
            }
        };
        if local {
            let at = match &body {
                Body::Coop(c) => c.created_at_ms,
                Body::Admission(a) => a.created_at_ms,
                Body::Currency(c) => c.created_at_ms,
                Body::Limit(l) => l.created_at_ms,
                Body::Validators(v) => v.created_at_ms,
                Body::Transfer(_) | Body::Fork(_) | Body::Vote(_) => now,
            };
            if let Err(e) = self.check_admin(&body, &hash, at) {
                return (Outcome::Admin(Err(e)), false);
            }
            if let Some((_, why)) = clock_refusal(at, now, skew) {
                return (Outcome::Admin(Err(LedgerError::InvalidArgument(why))), false);
            }
            if let Some(e) = self.before_founding(at) {
                return (Outcome::Admin(Err(e)), false);
            }
        }
        let entry = match body {
            Body::Coop(c) => AdminEntry::Coop(c),
            Body::Admission(a) => AdminEntry::Admission(a),
            Body::Currency(c) => AdminEntry::Currency(c),
            Body::Limit(l) => AdminEntry::Limit(l),
            Body::Validators(v) => AdminEntry::Validators(v),
            Body::Transfer(_) | Body::Fork(_) | Body::Vote(_) => unreachable!("admin entries only"),
        };
        let created = self.model.add(entry, hash);
        if created {
            self.engine.set_rules(self.model.rules());
        }
        let outcome = if local { Outcome::Admin(Ok(AdminOutcome { hash, created })) } else { Outcome::Dropped };
        (outcome, created)
    }
}

/// At this node's API only: an entry timed further than `credit.max_clock_skew` from
/// this node's clock. (Peers' entries are judged by signed data alone.)
fn clock_refusal(at_ms: i64, now_ms: i64, skew: Option<i64>) -> Option<(TransferRejection, String)> {
    let skew = skew?;
    let off = at_ms.saturating_sub(now_ms);
    (off.abs() > skew).then(|| {
        (
            TransferRejection::BadTime,
            format!(
                "BAD_TIME: created_at_ms {at_ms} is {off} ms from this node's clock, beyond credit.max_clock_skew \
                 ({skew} ms): sign it with the current time"
            ),
        )
    })
}
