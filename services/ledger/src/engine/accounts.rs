//! Indexes the engine keeps up as transfers apply, so that reads cost what waits, not
//! the whole history: per account, its applied income that no transfer of its own has
//! claimed yet and its own transfers that are not applied (`GetBalance`); per currency,
//! what the applied transfers add up to (`CoopStats`). They change only where the engine
//! applies, learns, forgets or recomputes, and a recompute rebuilds them with the rest.

use foldhash::{HashMap, HashSet};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;
use std::collections::BTreeSet;

type Account = (String, String);

#[derive(Default)]
pub(super) struct AccountIndex {
    /// (currency, payee) → applied incoming transfers that no applied transfer names as
    /// a dep yet, by (created_at_ms, hash): oldest first, as `Account.unclaimed_incoming`
    /// lists them.
    unclaimed: HashMap<Account, BTreeSet<(i64, Hash)>>,
    /// (currency, payer) → the payer's known transfers that are not applied, by
    /// (seq, hash). Held transfers are bounded (`credit.max_unapplied_*`), so is this.
    unapplied: HashMap<Account, BTreeSet<(u64, Hash)>>,
    /// Per currency: what its applied transfers add up to (`CoopStats`).
    totals: HashMap<String, Totals>,
}

/// A currency's applied transfers, counted as they apply.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub transfers: u64,
    pub volume: u64,
    /// Members that paid or were paid.
    pub accounts: HashSet<String>,
}

impl AccountIndex {
    /// A transfer became known (not applied yet).
    pub(super) fn learnt(&mut self, t: &Transfer, hash: Hash) {
        self.unapplied.entry((t.currency.clone(), t.payer.clone())).or_default().insert((t.payer_seq, hash));
    }

    /// A known, unapplied transfer was forgotten.
    pub(super) fn forgotten(&mut self, t: &Transfer, hash: Hash) {
        remove(&mut self.unapplied, (t.currency.clone(), t.payer.clone()), &(t.payer_seq, hash));
    }

    /// `t` applied, claiming `deps` (each with its `created_at_ms`).
    pub(super) fn applied(&mut self, t: &Transfer, hash: Hash, deps: &[(i64, Hash)]) {
        let payer = (t.currency.clone(), t.payer.clone());
        remove(&mut self.unapplied, payer.clone(), &(t.payer_seq, hash));
        for dep in deps {
            remove(&mut self.unclaimed, payer.clone(), dep);
        }
        self.unclaimed.entry((t.currency.clone(), t.payee.clone())).or_default().insert((t.created_at_ms, hash));
        let totals = self.totals.entry(t.currency.clone()).or_default();
        totals.transfers += 1;
        totals.volume += t.amount as u64;
        for member in [&t.payer, &t.payee] {
            if !totals.accounts.contains(member) {
                totals.accounts.insert(member.clone());
            }
        }
    }

    /// Before a recompute: nothing is applied, everything known waits.
    pub(super) fn reset<'a>(&mut self, known: impl Iterator<Item = (&'a Hash, &'a Transfer)>) {
        self.unclaimed.clear();
        self.unapplied.clear();
        self.totals.clear();
        for (hash, t) in known {
            self.learnt(t, *hash);
        }
    }

    pub(super) fn totals(&self) -> &HashMap<String, Totals> {
        &self.totals
    }

    /// Every known transfer that is not applied, of every account.
    pub(super) fn all_unapplied(&self) -> impl Iterator<Item = &Hash> {
        self.unapplied.values().flatten().map(|(_, h)| h)
    }

    pub(super) fn unclaimed(&self, currency: &str, member: &str) -> impl Iterator<Item = &Hash> {
        self.unclaimed.get(&(currency.to_string(), member.to_string())).into_iter().flatten().map(|(_, h)| h)
    }

    pub(super) fn unapplied(&self, currency: &str, payer: &str) -> impl Iterator<Item = &Hash> {
        self.unapplied.get(&(currency.to_string(), payer.to_string())).into_iter().flatten().map(|(_, h)| h)
    }
}

/// Removes `item` from `key`'s set, and the set once empty (accounts come and go; the
/// map holds only those with something in it).
fn remove<T: Ord>(map: &mut HashMap<Account, BTreeSet<T>>, key: Account, item: &T) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(item);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}
