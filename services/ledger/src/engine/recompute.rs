//! Judging everything again. New rules that only widen what applies (a member admitted,
//! a currency added) settle what waits; any other change of rules, a fork found, or a
//! vote that changes which transfer wins a place may undo what applied, and the applied
//! set is rebuilt from every known transfer: the same fixpoint, found from scratch.

use super::ids::AccountId;
use super::{Book, Known, Ledger, Rules};
use icn_ledger_records::Hash;

impl Ledger {
    /// Replaces the cooperative's rules and judges again what they change. New members
    /// and new currencies only let more apply (nothing applied could involve them), so
    /// the transfers that wait are settled under the new rules, which costs what waits;
    /// any other change (a removal, a limit, validators) may undo what applied, and
    /// every transfer is judged again.
    pub fn set_rules(&mut self, rules: Rules) {
        if rules == self.rules {
            return;
        }
        let widens = self.rules.only_added_to_by(&rules);
        self.rules = rules;
        if widens {
            self.settle_waiting();
        } else {
            self.recompute();
        }
    }

    /// Settles every transfer that waits (after rules that only widen), and finds the
    /// forks they make now: a new member's junk rivals become a member's fork.
    fn settle_waiting(&mut self) {
        let mut waiting: Vec<Hash> =
            self.accounts.all_unapplied().filter(|h| !self.refused.contains_key(*h)).copied().collect();
        waiting.sort();
        for hash in &waiting {
            let Known { t, payer, .. } = &self.known[hash];
            if self.rules.members.contains(&t.payer) && self.viable_count((*payer, t.payer_seq)) > 1 {
                self.new_forks.push((t.currency.clone(), t.payer.clone(), t.payer_seq));
            }
        }
        self.settle(waiting);
    }

    /// Accounts with an applied transfer (a chain or a balance): those whose rows a
    /// recompute writes again.
    pub(super) fn moved_accounts(&self) -> impl Iterator<Item = AccountId> + '_ {
        let moved = |(_, b): &(usize, &Book)| b.base > 0 || !b.chain.is_empty() || b.balance != 0;
        self.books.iter().enumerate().filter(moved).map(|(id, _)| id as AccountId)
    }

    /// Rebuilds the applied set from every known transfer (after a fork, or rules that
    /// may undo what applied).
    pub(super) fn recompute(&mut self) {
        // What was retired may be undone too: all of it is judged again.
        self.rehydrate();
        self.recomputes += 1;
        let moved: Vec<AccountId> = self.moved_accounts().collect();
        self.dirty.extend(moved);
        // Reported as newly applied afterwards: what was not applied before (not the
        // whole history again, which watchers and validators would hear about anew).
        self.known.values_mut().for_each(|k| (k.was_applied, k.applied) = (k.applied, false));
        let reported = std::mem::take(&mut self.newly_applied);
        self.unapplied.clear();
        for known in self.known.values() {
            *self.unapplied.entry(known.t.payer.clone()).or_default() += 1;
        }
        self.unapplied_total = self.known.len();
        self.accounts.reset();
        // Emptied, not freed: the chains grow back to about the length they had.
        self.books.iter_mut().for_each(|b| {
            b.base = 0;
            b.written = 0;
            b.chain.clear();
            b.balance = 0;
        });
        // Nothing is applied: every known transfer waits at its place, in hash order.
        let mut places: Vec<((AccountId, u64), Hash)> =
            self.known.iter().map(|(h, k)| ((k.payer, k.t.payer_seq), *h)).collect();
        places.sort_unstable();
        self.slots.clear();
        for (place, hash) in places {
            self.slots.entry(place).or_default().push(hash);
        }
        self.sweep_places_later = true;
        self.claimed.clear();
        // Refusals of stateful rules are judged again; refusals of form stay.
        self.refused.retain(|_, r| !r.is_stateful());
        let mut roots: Vec<Hash> = self.known.iter().filter(|(_, k)| k.t.payer_seq == 1).map(|(h, _)| *h).collect();
        roots.sort();
        self.settle(roots);
        // Rivals that were never judged because their place was already taken.
        let mut rest: Vec<Hash> =
            self.known.keys().filter(|h| !self.is_applied(h) && !self.refused.contains_key(*h)).copied().collect();
        rest.sort();
        for hash in rest {
            let known = self.known[&hash].clone();
            if let Err(refusal) = self.try_apply(&hash, &known) {
                self.refused.insert(hash, refusal);
            }
        }
        self.sweep_places_later = false;
        let known = &self.known;
        self.slots.retain(|_, held| {
            held.retain(|h| !known[h].applied);
            !held.is_empty()
        });
        for (hash, k) in self.known.iter().filter(|(_, k)| !k.applied) {
            self.accounts.learnt(k.payer, k.t.payer_seq, *hash);
        }
        let moved: Vec<AccountId> = self.moved_accounts().collect();
        self.dirty.extend(moved);
        let redone = std::mem::take(&mut self.newly_applied);
        self.newly_applied = reported
            .into_iter()
            .filter(|h| self.is_applied(h))
            .chain(redone.into_iter().filter(|h| !self.known[h].was_applied))
            .collect();
        // Forks that exist now, such as those of a payer just admitted: the caller
        // reports each place once, whoever found it first.
        self.new_forks.extend(self.forks().into_keys());
    }
}
