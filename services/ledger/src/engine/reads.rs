//! What readers ask of the engine: a transfer's status, the applied set, balances,
//! chain heads, an account's unclaimed income and waiting transfers, forks, and the
//! balances a replay of the applied transfers gives. Nothing here changes the engine.

use super::{Changes, Ledger, Status};
use foldhash::{HashMap, HashMapExt, HashSet};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;
use std::collections::BTreeMap;

impl Ledger {
    /// What peers made this cooperative hold that applies nothing (yet): unapplied
    /// transfers and votes for unknown transfers, which `credit.max_unapplied` bounds.
    pub fn held(&self) -> usize {
        self.unapplied_total + self.orphan_votes
    }

    /// Known transfers of `payer` that are not applied.
    pub fn unapplied_of(&self, payer: &str) -> usize {
        self.unapplied.get(payer).copied().unwrap_or(0)
    }

    /// Accounts the engine holds a number for: those a known transfer names.
    pub fn accounts_held(&self) -> usize {
        self.ids.held()
    }

    /// Known transfers that are not applied, of every payer.
    pub fn unapplied_total(&self) -> usize {
        self.unapplied_total
    }

    /// Viable transfers (not refused on their merits) at `t`'s place, `t` included if
    /// known: 2 means `t` is the rival that makes a fork.
    pub fn viable_at(&self, t: &Transfer) -> usize {
        self.ids.get(&t.currency, &t.payer).map_or(0, |id| self.viable_count((id, t.payer_seq)))
    }

    pub fn status(&self, hash: &Hash) -> Status {
        if let Some(r) = self.refused.get(hash) {
            return Status::Refused(r.clone());
        }
        let Some(known) = self.known.get(hash) else {
            if self.is_retired(hash) {
                return Status::Applied;
            }
            return Status::Pending(vec!["unknown".into()]);
        };
        if known.applied {
            return Status::Applied;
        }
        match self.try_apply(hash, known) {
            Ok(_) if self.quarantined(hash, &known.t) => Status::Quarantined,
            Ok(Err(missing)) => Status::Pending(missing),
            Err(r) => Status::Refused(r),
            Ok(Ok(())) => Status::Pending(Vec::new()),
        }
    }

    /// A known transfer, held in memory or retired, shared without copying.
    pub fn transfer(&self, hash: &Hash) -> Option<std::sync::Arc<Transfer>> {
        self.find(hash).map(|(t, _)| t)
    }

    /// The transfers held in memory (not those retired to the past).
    pub fn transfers(&self) -> impl Iterator<Item = (&Hash, &Transfer)> {
        self.known.iter().map(|(h, k)| (h, &*k.t))
    }

    pub fn is_applied(&self, hash: &Hash) -> bool {
        match self.known.get(hash) {
            Some(k) => k.applied,
            None => self.is_retired(hash),
        }
    }

    /// Applied transfers paying `member` in `currency` that no applied transfer names as
    /// a dep yet, oldest first: held here, and (with a past) stored.
    pub fn unclaimed(&self, currency: &str, member: &str) -> Vec<Hash> {
        let mut all: Vec<(i64, Hash)> = self.accounts.unclaimed(self.ids.get(currency, member)).copied().collect();
        if let Some(past) = self.past() {
            all.extend(past.unclaimed(currency, member).into_iter().filter(|(_, h)| !self.accounts.is_gone(h)));
            all.sort_unstable();
        }
        all.into_iter().map(|(_, h)| h).collect()
    }

    /// Per currency: the applied transfers, their volume and the accounts they moved.
    pub fn totals(&self) -> &HashMap<String, super::Totals> {
        self.accounts.totals()
    }

    /// Every known transfer that is not applied.
    pub fn all_waiting(&self) -> impl Iterator<Item = &Hash> {
        self.accounts.all_unapplied()
    }

    /// Known transfers of `payer` in `currency` that are not applied, by sequence number.
    pub fn waiting(&self, currency: &str, payer: &str) -> impl Iterator<Item = &Hash> {
        self.accounts.unapplied(self.ids.get(currency, payer))
    }

    /// Whether an applied transfer has been named as a dep by an applied transfer.
    pub fn is_claimed(&self, hash: &Hash) -> bool {
        self.claimer(hash).is_some()
    }

    /// The payer account's last applied sequence number and transfer hash.
    pub fn head(&self, currency: &str, account: &str) -> Option<(u64, Hash)> {
        let id = self.ids.get(currency, account)?;
        let book = &self.books[id as usize];
        let seq = book.base + book.chain.len() as u64;
        self.link(id, seq).map(|link| (seq, link.hash))
    }

    pub fn balance(&self, currency: &str, account: &str) -> i128 {
        self.ids.get(currency, account).map_or(0, |id| self.books[id as usize].balance)
    }

    /// (currency, member) → balance, of every account an applied transfer moved.
    pub fn balances(&self) -> HashMap<(String, String), i128> {
        self.moved_accounts().map(|id| (self.ids.owned_name(id), self.books[id as usize].balance)).collect()
    }

    /// Transfers applied since the last [`Ledger::take_changes`] as the list stands, and
    /// the count of recomputes, each of which rebuilds the list.
    pub fn newly_applied(&self) -> (u64, &[Hash]) {
        (self.recomputes, &self.newly_applied)
    }

    /// Every applied transfer held in memory (all of them, until a retirement).
    pub fn applied(&self) -> HashSet<Hash> {
        self.known.iter().filter(|(_, k)| k.applied).map(|(h, _)| *h).collect()
    }

    /// [`Ledger::take_changes`] for a replay, which writes no account rows: the
    /// accounts changed are not named.
    pub fn take_changes_unwritten(&mut self) -> Changes {
        self.dirty.clear();
        self.take_changes()
    }

    /// Accounts and transfers changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        Changes {
            accounts: std::mem::take(&mut self.dirty).into_iter().map(|id| self.ids.owned_name(id)).collect(),
            applied: std::mem::take(&mut self.newly_applied),
            forks: {
                let mut forks = std::mem::take(&mut self.new_forks);
                forks.sort();
                forks.dedup();
                forks
            },
        }
    }

    /// Hashes of the transfers quarantined in forks: places held by two or more viable
    /// transfers, but for a place's certified winner.
    pub fn quarantine(&self) -> Vec<Hash> {
        let mut q: Vec<Hash> = self
            .forks()
            .into_values()
            .flatten()
            .filter(|h| self.known.get(h).is_some_and(|k| self.quarantined(h, &k.t)))
            .collect();
        q.sort();
        q
    }

    /// Forks by place: (currency, payer, seq) → the viable transfers holding it. Only a
    /// member's: anyone can sign two transfers with one sequence number in the name of a
    /// key that pays nothing, and such junk must cost no recompute and no report.
    pub fn forks(&self) -> BTreeMap<(String, String, u64), Vec<Hash>> {
        self.slots
            .iter()
            .filter(|(place, _)| self.viable_count(**place) > 1)
            .filter(|((id, _), _)| self.rules.members.contains(self.ids.name(*id).1))
            .map(|(&(id, seq), _)| {
                let (currency, payer) = self.ids.owned_name(id);
                ((currency, payer, seq), self.viable_in_place((id, seq)))
            })
            .collect()
    }

    /// The balances a replay of the applied transfers gives (RecomputeBalances compares,
    /// on an engine it rebuilt, which has retired nothing).
    pub fn replay(&self) -> HashMap<(String, String), i128> {
        let mut out: HashMap<(String, String), i128> = HashMap::new();
        for t in self.known.values().filter(|k| k.applied).map(|k| &k.t) {
            *out.entry((t.currency.clone(), t.payer.clone())).or_default() -= t.amount as i128;
            *out.entry((t.currency.clone(), t.payee.clone())).or_default() += t.amount as i128;
        }
        out
    }
}
