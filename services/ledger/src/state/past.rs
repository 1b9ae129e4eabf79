//! The state's side of the past (`engine::past`, `store::past`): after each group the
//! node retires what applied, and with it the transfer's read indexes leave memory
//! (`meta`, `idempotency`; `history` is never held once there is a past); reads find
//! them in the store.
//!
//! At start-up, [`State::load`] reads what memory held when the last group was written:
//! the admin entries and votes (from the journal, by position), each account's row and
//! chain head, the totals, the transfers held and the forks found — never the whole
//! journal. A store written before the past existed is replayed once instead, and
//! [`State::attach_past`] writes its past.

use super::{Checked, CoopState, GroupWrite, State, StoredTransfer, TransferMeta};
use crate::error::LedgerError;
use crate::store::past::CoopPast;
use crate::store::{Store, StoreError};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;
use icn_proto::ledger::wire::v1::ledger_entry::Body;
use std::sync::Arc;

impl State {
    /// The state as the last written group left it, read from `store` (whose past is
    /// current): what a start-up needs instead of a replay.
    pub fn load(store: &Store, now: i64) -> Result<State, LedgerError> {
        let mut state = State::default();
        let reader = store.live();
        let coops = crate::store::past::coops(store)?;
        // Admin entries and votes first, in journal order, into engines that hold no
        // transfer yet (so new rules judge nothing again).
        for coop_id in &coops {
            for position in CoopPast::new(store.clone(), coop_id).entries()? {
                let record = reader.journal_at(position)?.ok_or_else(|| missing(position))?;
                let entry = record.entry.and_then(|e| e.body).map(Checked::trusted);
                state.replay_record(position, record.received_at_ms, entry, now);
            }
        }
        state.past = Some(store.clone());
        for coop_id in &coops {
            let past = CoopPast::new(store.clone(), coop_id);
            let coop = state.coop_entry(coop_id);
            if coop.past.is_none() {
                coop.engine.attach_past(Box::new(past.clone()));
                coop.past = Some(past.clone());
            }
            for row in reader.accounts(coop_id, None)? {
                let head = past.head(&row.currency, &row.member, row.seq)?;
                coop.engine.load_account(&row.currency, &row.member, row.seq, head, row.balance as i128);
                *coop.updated.get_mut_or_default(&row.currency, &row.member) = row.updated_at_ms;
            }
            for (currency, transfers, volume) in past.totals()? {
                coop.engine.load_totals(&currency, transfers, volume);
            }
            let mut held = Vec::new();
            for (hash, position, received_at_ms) in past.held()? {
                let record = reader.journal_at(position)?.ok_or_else(|| missing(position))?;
                let Some(Body::Transfer(t)) = record.entry.and_then(|e| e.body) else { return Err(missing(position)) };
                coop.meta.insert(hash, TransferMeta { position, received_at_ms, applied_at_ms: 0 });
                held.push((hash, Arc::new(t)));
            }
            coop.engine.load_held(held);
            // Nothing applies at a load: the group that wrote them had settled them.
            coop.engine.take_changes_unwritten();
            coop.forks.extend(past.forks()?);
        }
        state.version = reader.version()?;
        if let Some(failure) = store.take_read_failure() {
            return Err(LedgerError::CommitFailed(failure));
        }
        Ok(state)
    }

    /// Gives every cooperative, and those to come, its past in `store`, and returns the
    /// batch that writes it: everything this state (a replay of a store from before the
    /// past) holds, and the mark that the past is current.
    pub fn attach_past(&mut self, store: &Store) -> Result<GroupWrite, StoreError> {
        self.past = Some(store.clone());
        let mut write = GroupWrite { past_current: true, version: self.version, ..Default::default() };
        // Where each cooperative's admin entries and votes are, for later loads.
        store.live().for_each_record(self.version, |position, record| {
            let Some(body) = record.entry.and_then(|e| e.body) else { return };
            if !matches!(body, Body::Transfer(_) | Body::Fork(_)) {
                write.entries_at.push((icn_ledger_records::coop::coop_of(&body).to_string(), position));
            }
        })?;
        for (coop_id, coop) in &mut self.coops {
            let past = CoopPast::new(store.clone(), coop_id);
            coop.engine.attach_past(Box::new(past.clone()));
            coop.past = Some(past);
            coop.write_indexes(coop_id, &mut write);
            // Every account's row as a load reads it (rows of older releases stamped the
            // time they were written, not when a transfer last applied).
            for (currency, member) in coop.engine.balances().into_keys() {
                write.accounts.push(coop.row(coop_id, &currency, &member));
            }
            write.forks_at.extend(coop.forks.iter().map(|(place, at)| (coop_id.clone(), place.clone(), *at)));
            coop.retire(coop_id, &mut write);
            coop.history.clear();
        }
        Ok(write)
    }

    /// Retires what each cooperative's engine applied, into this group's batch.
    pub fn retire(&mut self, write: &mut GroupWrite) {
        for (coop_id, coop) in &mut self.coops {
            coop.retire(coop_id, write);
        }
    }

    /// A cooperative, made (with its past) the first time an entry names it.
    pub(super) fn coop_entry(&mut self, coop_id: &str) -> &mut CoopState {
        if !self.coops.contains_key(coop_id) {
            let mut coop = CoopState::default();
            if let Some(store) = &self.past {
                let past = CoopPast::new(store.clone(), coop_id);
                coop.engine.attach_past(Box::new(past.clone()));
                coop.past = Some(past);
            }
            self.coops.insert(coop_id.to_string(), coop);
        }
        self.coops.get_mut(coop_id).expect("just made")
    }
}

impl CoopState {
    /// Applied transfers retired to the store (a validator's votes owed, at start-up).
    pub(super) fn retired_applied(&self) -> Result<Vec<Hash>, StoreError> {
        self.past.as_ref().map_or(Ok(Vec::new()), |p| p.applied_hashes())
    }

    /// Moves what the engine applied out of memory, with its read indexes.
    fn retire(&mut self, coop_id: &str, write: &mut GroupWrite) {
        if self.past.is_none() {
            return;
        }
        let retired = self.engine.retire();
        if retired.is_empty() {
            return;
        }
        // After a recompute, most of what retires again was retired before.
        let before: foldhash::HashMap<Hash, i64> = match retired.wipe {
            true => self.past_read(|p| p.applied_times().map(Some)).unwrap_or_default().into_iter().collect(),
            false => Default::default(),
        };
        let applied_at = retired
            .applied
            .iter()
            .map(|(hash, t)| {
                if !t.idempotency_id.is_empty() {
                    let idem = (t.currency.clone(), t.payer.clone(), t.idempotency_id.clone());
                    if self.idempotency.get(&idem) == Some(hash) {
                        self.idempotency.remove(&idem);
                    }
                }
                match self.meta.remove(hash) {
                    Some(m) => m.applied_at_ms,
                    // Taken back from the past by a recompute: as its row says (read
                    // before this batch writes it anew).
                    None => before.get(hash).copied().unwrap_or_default(),
                }
            })
            .collect();
        // A recompute undid some of what had retired: held in memory again until it
        // applies anew, each keeps when it first applied (its applied row goes with this
        // batch), as a node holding everything keeps it.
        for hash in &retired.held {
            let Some(applied_at_ms) = before.get(hash).copied().filter(|_| !self.meta.contains_key(hash)) else {
                continue;
            };
            let Some((position, received_at_ms)) = self.past_read(|p| p.stored(hash)) else { continue };
            self.meta.insert(*hash, TransferMeta { position, received_at_ms, applied_at_ms });
        }
        write.retired.push((coop_id.to_string(), retired, applied_at));
    }

    /// The read indexes of every transfer held, for a store written before the past.
    fn write_indexes(&self, coop_id: &str, write: &mut GroupWrite) {
        let mut stored: Vec<(&Hash, &TransferMeta)> = self.meta.iter().collect();
        stored.sort_by_key(|(_, m)| m.position);
        for (hash, m) in stored {
            let Some(transfer) = self.engine.transfer(hash) else { continue };
            write.stored.push(StoredTransfer {
                coop: coop_id.to_string(),
                hash: *hash,
                transfer,
                position: m.position,
                received_at_ms: m.received_at_ms,
            });
        }
        for ((currency, payer, id), hash) in &self.idempotency {
            write.idempotency.push((coop_id.to_string(), currency.clone(), payer.clone(), id.clone(), *hash));
        }
    }

    /// Records a transfer stored in this group in the read indexes: in memory, and in
    /// the batch when there is a past.
    /// `looked_up`: the caller found the idempotency id unused already (this node's API).
    pub(super) fn index(
        &mut self,
        coop_id: &str,
        t: &std::sync::Arc<Transfer>,
        hash: Hash,
        (position, received_at_ms): (u64, i64),
        looked_up: bool,
        write: &mut GroupWrite,
    ) {
        if let Some(m) = self.meta.get_mut(&hash) {
            m.position = position;
            m.received_at_ms = received_at_ms;
        }
        let idem = || (t.currency.clone(), t.payer.clone(), t.idempotency_id.clone());
        let first_use = !t.idempotency_id.is_empty()
            && match looked_up {
                // Unless a transfer of this group used it since (held in memory).
                true => !self.idempotency.contains_key(&idem()),
                false => self.by_idempotency(&t.currency, &t.payer, &t.idempotency_id).is_none(),
            };
        if first_use {
            self.idempotency.insert((t.currency.clone(), t.payer.clone(), t.idempotency_id.clone()), hash);
        }
        if self.past.is_none() {
            for member in [&t.payer, &t.payee] {
                self.history.get_mut_or_default(&t.currency, member).push(hash);
            }
            return;
        }
        write.stored.push(StoredTransfer {
            coop: coop_id.to_string(),
            hash,
            transfer: std::sync::Arc::clone(t),
            position,
            received_at_ms,
        });
        if first_use {
            let id = t.idempotency_id.clone();
            write.idempotency.push((coop_id.to_string(), t.currency.clone(), t.payer.clone(), id, hash));
        }
    }

    /// A read of the past where none may fail the caller (the committer's): a failure
    /// is logged and remembered by the store, and reads as nothing.
    fn past_read<T>(&self, read: impl FnOnce(&CoopPast) -> Result<Option<T>, StoreError>) -> Option<T> {
        let past = self.past.as_ref()?;
        read(past).unwrap_or_else(|e| {
            past.failed(&e);
            None
        })
    }

    /// Whether this transfer is stored here.
    pub fn knows(&self, hash: &Hash) -> bool {
        self.meta.contains_key(hash) || self.past_read(|p| p.stored(hash)).is_some()
    }

    /// Whether the transfer `t` (whose hash is `hash`) is stored here. Only one that may
    /// be retired is looked for in the store (`engine::past`, `Ledger::may_be_retired`):
    /// most transfers extend their payer's chain, and that lookup was an eighth of the
    /// committer's time with the history in the store (docs/BENCHMARKS.md, thirteenth
    /// session).
    pub(super) fn knows_transfer(&self, hash: &Hash, t: &Transfer) -> bool {
        self.meta.contains_key(hash)
            || self.engine.holds(hash)
            || (self.engine.may_be_retired(t) && self.past_read(|p| p.stored(hash)).is_some())
    }

    /// A stored transfer's (journal position, arrival, first application) times.
    pub(super) fn meta_of(&self, hash: &Hash) -> Option<(u64, i64, i64)> {
        if let Some(m) = self.meta.get(hash) {
            return Some((m.position, m.received_at_ms, m.applied_at_ms));
        }
        let (position, received_at_ms) = self.past_read(|p| p.stored(hash))?;
        Some((position, received_at_ms, self.past_read(|p| p.applied_at(hash)).unwrap_or_default()))
    }

    /// Finds a transfer by its payer's idempotency id.
    pub fn by_idempotency(&self, currency: &str, payer: &str, id: &str) -> Option<Hash> {
        let key = (currency.to_string(), payer.to_string(), id.to_string());
        self.idempotency.get(&key).copied().or_else(|| self.past_read(|p| p.idempotency(currency, payer, id)))
    }

    /// Transfers of an account before `before` (0: the newest), newest first, with
    /// their journal positions, to `f` while it answers true.
    pub(super) fn each_in_history(
        &self,
        currency: &str,
        member: &str,
        before: u64,
        mut f: impl FnMut(u64, Hash) -> bool,
    ) -> Result<(), StoreError> {
        if let Some(past) = &self.past {
            return past.history(currency, member, before, f);
        }
        let Some(hashes) = self.history.get(currency, member) else { return Ok(()) };
        for hash in hashes.iter().rev() {
            let position = self.meta.get(hash).map(|m| m.position).unwrap_or_default();
            if before != 0 && position >= before {
                continue;
            }
            if !f(position, *hash) {
                break;
            }
        }
        Ok(())
    }
}

fn missing(position: u64) -> LedgerError {
    LedgerError::CommitFailed(format!(
        "the journal has no transfer or entry at {position}, which the ledger's past names"
    ))
}
