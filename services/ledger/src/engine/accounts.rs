//! Indexes the engine keeps up as transfers apply, so that reads cost what waits, not
//! the whole history: per account, its applied income that no transfer of its own has
//! claimed yet and its own transfers that are not applied (`GetBalance`); per currency,
//! what the applied transfers add up to (`CoopStats`). They change only where the engine
//! applies, learns, forgets or recomputes, and a recompute rebuilds them with the rest.
//!
//! With a past (`past`), unclaimed income is the store's rows plus what this index holds:
//! what became unclaimed since the last retirement, and which stored rows were claimed
//! since (`gone`); a retirement hands both over to be written and starts afresh.

use super::ids::AccountId;
use foldhash::{HashMap, HashSet};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;
use std::collections::BTreeSet;

/// Unclaimed income: (payee's account, created_at_ms, hash).
pub(super) type Income = (AccountId, i64, Hash);

#[derive(Default)]
pub(super) struct AccountIndex {
    /// Payee's account → applied incoming transfers that no applied transfer names as
    /// a dep yet, by (created_at_ms, hash): oldest first, as `Account.unclaimed_incoming`
    /// lists them.
    unclaimed: HashMap<AccountId, BTreeSet<(i64, Hash)>>,
    /// Payer's account → the payer's known transfers that are not applied, by
    /// (seq, hash). Held transfers are bounded (`credit.max_unapplied_*`), so is this.
    unapplied: HashMap<AccountId, BTreeSet<(u64, Hash)>>,
    /// Per currency: what its applied transfers add up to (`CoopStats`).
    totals: HashMap<String, Totals>,
    /// Unclaimed income in the past that was claimed since the last retirement:
    /// (payee's account, created_at_ms, hash). Kept only while the past counts.
    gone: Vec<Income>,
    gone_hashes: HashSet<Hash>,
}

/// A currency's applied transfers, counted as they apply.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub transfers: u64,
    pub volume: u64,
    /// Accounts (members, in this currency) that paid or were paid.
    accounts: HashSet<AccountId>,
}

impl Totals {
    /// Members that paid or were paid.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }
}

impl AccountIndex {
    /// A transfer became known (not applied yet).
    pub(super) fn learnt(&mut self, payer: AccountId, seq: u64, hash: Hash) {
        self.unapplied.entry(payer).or_default().insert((seq, hash));
    }

    /// A known, unapplied transfer was forgotten.
    pub(super) fn forgotten(&mut self, payer: AccountId, seq: u64, hash: Hash) {
        remove(&mut self.unapplied, payer, &(seq, hash));
    }

    /// `t` applied, claiming `deps` (each with its `created_at_ms`); `past` says whether
    /// a dep not held here is a row of the past to drop.
    pub(super) fn applied(
        &mut self,
        t: &Transfer,
        (payer, payee): (AccountId, AccountId),
        hash: Hash,
        deps: &[(i64, Hash)],
        past: bool,
    ) {
        remove(&mut self.unapplied, payer, &(t.payer_seq, hash));
        for dep in deps {
            if !remove(&mut self.unclaimed, payer, dep) && past && self.gone_hashes.insert(dep.1) {
                self.gone.push((payer, dep.0, dep.1));
            }
        }
        self.unclaimed.entry(payee).or_default().insert((t.created_at_ms, hash));
        if !self.totals.contains_key(&t.currency) {
            self.totals.insert(t.currency.clone(), Totals::default());
        }
        let totals = self.totals.get_mut(&t.currency).expect("just made");
        totals.transfers += 1;
        totals.volume += t.amount as u64;
        totals.accounts.insert(payer);
        totals.accounts.insert(payee);
    }

    /// Before a recompute: nothing is applied. What still waits after it is learnt
    /// again then ([`AccountIndex::learnt`]): nothing reads the index meanwhile, and
    /// listing a million transfers only to take most of them off was a tenth of it.
    pub(super) fn reset(&mut self) {
        self.unclaimed.clear();
        self.unapplied.clear();
        self.totals.clear();
        self.gone.clear();
        self.gone_hashes.clear();
    }

    /// At a retirement: the unclaimed income added since the last, and the stored rows
    /// claimed since, to write; this index keeps neither any longer.
    pub(super) fn retire(&mut self) -> (Vec<Income>, Vec<Income>) {
        let added = std::mem::take(&mut self.unclaimed)
            .into_iter()
            .flat_map(|(id, set)| set.into_iter().map(move |(at, h)| (id, at, h)))
            .collect();
        self.gone_hashes.clear();
        (added, std::mem::take(&mut self.gone))
    }

    /// Whether a stored row of unclaimed income was claimed since the last retirement.
    pub(super) fn is_gone(&self, hash: &Hash) -> bool {
        self.gone_hashes.contains(hash)
    }

    /// At a load: a currency's totals as stored, and the accounts they moved.
    pub(super) fn load_totals(&mut self, currency: &str, transfers: u64, volume: u64) {
        let totals = self.totals.entry(currency.to_string()).or_default();
        totals.transfers = transfers;
        totals.volume = volume;
    }

    pub(super) fn load_moved(&mut self, currency: &str, account: AccountId) {
        self.totals.entry(currency.to_string()).or_default().accounts.insert(account);
    }

    pub(super) fn totals(&self) -> &HashMap<String, Totals> {
        &self.totals
    }

    /// Every known transfer that is not applied, of every account.
    pub(super) fn all_unapplied(&self) -> impl Iterator<Item = &Hash> {
        self.unapplied.values().flatten().map(|(_, h)| h)
    }

    pub(super) fn unclaimed(&self, account: Option<AccountId>) -> impl Iterator<Item = &(i64, Hash)> {
        account.and_then(|a| self.unclaimed.get(&a)).into_iter().flatten()
    }

    pub(super) fn unapplied(&self, account: Option<AccountId>) -> impl Iterator<Item = &Hash> {
        account.and_then(|a| self.unapplied.get(&a)).into_iter().flatten().map(|(_, h)| h)
    }
}

/// Removes `item` from `key`'s set, and the set once empty (accounts come and go; the
/// map holds only those with something in it). Whether it was there.
fn remove<T: Ord>(map: &mut HashMap<AccountId, BTreeSet<T>>, key: AccountId, item: &T) -> bool {
    let Some(set) = map.get_mut(&key) else { return false };
    let was = set.remove(item);
    if set.is_empty() {
        map.remove(&key);
    }
    was
}
