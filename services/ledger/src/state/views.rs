//! What reads see of the state: a transfer as this node holds it, an account with its
//! pending and unclaimed transfers, an account's history, forks, members and the
//! cooperative's statistics; and the account row the store keeps.
//!
//! Reads never change what the node knows (the statistics cache, behind its own lock,
//! is the one thing they write). A refusal shown here carries the rule name `checks`
//! gives it.

use super::checks::rejection_of;
use super::{clamp, CoopState, State};
use crate::engine::Status;
use crate::error::LedgerError;
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::{
    Account, Coop, CoopStatsResponse, CurrencyStats, Fork, Member, Transfer, TransferRecord, TransferStatus,
};
use std::collections::BTreeMap;

impl State {
    /// A cooperative as reads may see it: one whose founding entry is here. A peer's
    /// entry can create an empty `CoopState` before that entry arrives.
    pub fn coop(&self, id: &str) -> Result<&CoopState, LedgerError> {
        self.coops
            .get(id)
            .filter(|c| c.model.coop().is_some())
            .ok_or_else(|| LedgerError::NotFound(format!("no cooperative `{id}` here")))
    }
}

impl CoopState {
    /// A transfer as this node holds it.
    pub fn record(&self, hash: &Hash) -> TransferRecord {
        let Some(t) = self.engine.transfer(hash) else {
            return TransferRecord { hash: hash.to_vec(), ..Default::default() };
        };
        let (_, received_at_ms, applied_at_ms) = self.meta_of(hash).unwrap_or_default();
        let mut record = TransferRecord {
            hash: hash.to_vec(),
            transfer: Some(Transfer::clone(&t)),
            received_at_ms,
            ..Default::default()
        };
        match self.engine.status(hash) {
            Status::Applied => {
                record.status = TransferStatus::Applied as i32;
                record.applied_at_ms = applied_at_ms;
            }
            Status::Pending(missing) => {
                record.status = TransferStatus::PendingDeps as i32;
                record.detail = format!("waiting for {}", missing.join(", "));
                record.missing_deps = t
                    .deps
                    .iter()
                    .filter(|d| <Hash>::try_from(d.as_slice()).is_ok_and(|d| !self.engine.is_applied(&d)))
                    .cloned()
                    .collect();
            }
            Status::Quarantined if self.engine.slot_winner(&t).is_some() => {
                record.status = TransferStatus::Quarantined as i32;
                record.detail = format!(
                    "the payer signed another transfer with sequence number {}, and validators certified that one: \
                     this one is evidence against the payer and never applies",
                    t.payer_seq
                );
            }
            Status::Quarantined => {
                record.status = TransferStatus::Quarantined as i32;
                record.detail = format!(
                    "the payer signed another transfer with sequence number {}: a fork, neither applies",
                    t.payer_seq
                );
            }
            Status::Refused(r) => {
                record.status = TransferStatus::Rejected as i32;
                record.rejection = rejection_of(&r) as i32;
                record.detail = r.to_string();
            }
        }
        self.fill_certificate(hash, &mut record);
        record
    }

    /// What the store keeps of an account: balance, chain head, and when a transfer of
    /// it last applied (what a start-up loads: `state::past`).
    pub(super) fn row(&self, coop_id: &str, currency: &str, member: &str) -> Account {
        let (seq, head) = self.engine.head(currency, member).unwrap_or((0, [0; 32]));
        Account {
            coop_id: coop_id.to_string(),
            currency: currency.to_string(),
            member: member.to_string(),
            balance: clamp(self.engine.balance(currency, member)),
            seq,
            head_hash: if seq == 0 { Vec::new() } else { head.to_vec() },
            updated_at_ms: self.updated.get(currency, member).copied().unwrap_or_default(),
            ..Default::default()
        }
    }

    /// One account as it stands; `max_deps` caps its unclaimed incoming transfers. It
    /// reads the engine's per-account indexes, never the account's history: what it
    /// costs grows with the transfers the account has waiting, not with those applied.
    pub fn account(&self, coop_id: &str, currency: &str, member: &str, now: i64, max_deps: usize) -> Account {
        let (seq, head) = self.engine.head(currency, member).unwrap_or((0, [0; 32]));
        let limit = self.engine.rules().currencies.get(currency).map(|r| r.limit(member, now)).unwrap_or_default();
        let mut pending = 0;
        let (mut tip_seq, mut tip_hash) = (seq, head);
        // Incoming transfers a waiting transfer of the account already names.
        let mut named = std::collections::HashSet::new();
        for hash in self.engine.waiting(currency, member) {
            let Some(t) = self.engine.transfer(hash) else { continue };
            if matches!(self.engine.status(hash), Status::Pending(_)) {
                pending += 1;
                if t.payer_seq > tip_seq {
                    (tip_seq, tip_hash) = (t.payer_seq, *hash);
                }
                named.extend(t.deps.iter().cloned());
            }
        }
        // None asked (a page of accounts): not read at all, from memory or the store.
        let unclaimed = if max_deps == 0 { Vec::new() } else { self.engine.unclaimed(currency, member) };
        let unclaimed: Vec<Vec<u8>> = unclaimed
            .into_iter()
            .filter(|h| !named.contains(h.as_slice()))
            .take(max_deps)
            .map(|h| h.to_vec())
            .collect();
        let updated_at_ms = self.updated.get(currency, member).copied().unwrap_or_default();
        let hash_or_empty = |seq: u64, hash: Hash| if seq == 0 { Vec::new() } else { hash.to_vec() };
        Account {
            coop_id: coop_id.to_string(),
            currency: currency.to_string(),
            member: member.to_string(),
            balance: clamp(self.engine.balance(currency, member)),
            credit_limit: limit,
            seq,
            head_hash: hash_or_empty(seq, head),
            pending,
            updated_at_ms,
            unclaimed_incoming: unclaimed,
            tip_seq,
            tip_hash: hash_or_empty(tip_seq, tip_hash),
        }
    }

    /// Transfers in and out of an account, newest first, from before `before` (a journal
    /// position; 0 for the newest), and the position to ask from for more, if any. It
    /// reads the store when the node has one (`store::past`): it may block, briefly.
    pub fn history(
        &self,
        currency: &str,
        member: &str,
        before: u64,
        include_unapplied: bool,
        limit: usize,
    ) -> Result<(Vec<TransferRecord>, Option<u64>), LedgerError> {
        let mut out = Vec::new();
        let (mut last, mut more) = (None, false);
        self.each_in_history(currency, member, before, |position, hash| {
            if !include_unapplied && !self.engine.is_applied(&hash) {
                return true;
            }
            if out.len() == limit {
                more = true;
                return false;
            }
            out.push(self.record(&hash));
            last = Some(position);
            true
        })?;
        Ok((out, last.filter(|_| more)))
    }

    /// Members of the cooperative.
    pub fn members(&self) -> Vec<Member> {
        self.model.members().cloned().collect()
    }

    pub fn coop_record(&self) -> Option<&Coop> {
        self.model.coop()
    }

    /// Forks found here, oldest place first.
    pub fn quarantine(&self) -> Vec<Fork> {
        let forks = self.engine.forks();
        self.forks
            .iter()
            .filter_map(|(place, detected)| {
                let hashes = forks.get(place)?;
                Some(Fork {
                    coop_id: self.model.coop().map(|c| c.id.clone()).unwrap_or_default(),
                    currency: place.0.clone(),
                    payer: place.1.clone(),
                    payer_seq: place.2,
                    transfers: hashes.iter().map(|h| self.record(h)).collect(),
                    detected_at_ms: *detected,
                })
            })
            .collect()
    }

    /// The cooperative's public figures, computed at most once per change.
    pub fn stats(&self, coop_id: &str, now: i64) -> CoopStatsResponse {
        let mut cache = self.stats_cache.lock().expect("not poisoned");
        if let Some((at, stats)) = cache.as_ref() {
            if *at == self.changes {
                return stats.clone();
            }
        }
        let stats = self.compute_stats(coop_id, now);
        *cache = Some((self.changes, stats.clone()));
        stats
    }

    fn compute_stats(&self, coop_id: &str, now: i64) -> CoopStatsResponse {
        let mut per: BTreeMap<String, CurrencyStats> = self
            .model
            .currencies()
            .map(|c| {
                (
                    c.symbol.clone(),
                    CurrencyStats { symbol: c.symbol.clone(), decimals: c.decimals, ..Default::default() },
                )
            })
            .collect();
        // From the engine's running totals and what waits: never a walk of every transfer.
        for (currency, totals) in self.engine.totals() {
            if let Some(s) = per.get_mut(currency) {
                s.transfer_count = totals.transfers;
                s.volume = totals.volume;
                s.accounts = totals.accounts() as u64;
            }
        }
        for hash in self.engine.all_waiting() {
            let Some(t) = self.engine.transfer(hash) else { continue };
            let Some(s) = per.get_mut(&t.currency) else { continue };
            match self.engine.status(hash) {
                Status::Pending(_) => s.pending_transfers += 1,
                Status::Quarantined => s.quarantined_transfers += 1,
                _ => {}
            }
        }
        for ((currency, _), balance) in self.engine.balances() {
            if let Some(s) = per.get_mut(&currency) {
                if balance < 0 {
                    s.outstanding_credit += (-balance).min(u64::MAX as i128) as u64;
                }
            }
        }
        let currencies: Vec<CurrencyStats> = per.into_values().collect();
        CoopStatsResponse {
            coop_id: coop_id.to_string(),
            name: self.model.coop().map(|c| c.name.clone()).unwrap_or_default(),
            members: self.model.members().count() as u64,
            transfer_count: currencies.iter().map(|c| c.transfer_count).sum(),
            currencies,
            computed_at_ms: now,
        }
    }
}
