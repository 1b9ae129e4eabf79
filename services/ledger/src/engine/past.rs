//! The settled past: applied transfers the engine no longer holds in memory.
//!
//! Holding every transfer ever applied made memory grow with the journal (1.5 GB at a
//! million) and start-up replay it all. Once a group is written, the node *retires*
//! what applied: the transfer leaves `known`, its chain links below the payer's head
//! leave the account's book, the deps it claimed leave `claimed`, and the caller writes
//! them to its store (the [`Retired`] it is handed) in the same batch as the group.
//! When the rule later needs one of them — a dep named long after, a rival at an old
//! place, a transfer arriving twice — it asks [`Past`], a read-only lookup the node
//! gives the engine. So the engine still never touches storage itself, and it holds what
//! a new transfer is judged against (each account's head and balance), what waits, and
//! what applied since the last retirement.
//!
//! Nothing applied is beyond undoing (a fork at an old place, or a limit timed back,
//! changes the fixpoint: docs/SECURITY.md, "Time"), so a recompute first takes every
//! stored transfer back from the past ([`Ledger::rehydrate`]), judges all as before, and
//! the next retirement tells the caller to drop what the past held (`wipe`) before it
//! writes it anew. Until then the past is not asked: what it holds may be undone.
//!
//! The rule reads the same facts from memory or from the past, so a retired engine and
//! one that holds everything agree on every status and balance (`past_tests`).

use super::ids::AccountId;
use super::{Known, Ledger, Link};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;
use std::sync::Arc;

/// What the node's store answers about retired transfers of one cooperative. Reads
/// only: what it holds is written by the caller from each [`Retired`].
pub trait Past: Send + Sync {
    /// A retired (so applied) transfer.
    fn applied(&self, hash: &Hash) -> Option<Arc<Transfer>>;
    /// Whether a transfer is retired, without reading it.
    fn is_applied(&self, hash: &Hash) -> bool;
    /// The retired transfer that claimed `dep`, with its sequence number.
    fn claim(&self, dep: &Hash) -> Option<(Hash, u64)>;
    /// The payer's retired chain link at `seq`.
    fn link(&self, currency: &str, payer: &str, seq: u64) -> Option<Link>;
    /// The account's retired unclaimed income: (created_at_ms, hash).
    fn unclaimed(&self, currency: &str, member: &str) -> Vec<(i64, Hash)>;
    /// Every stored transfer of the cooperative (those in memory too: they are skipped).
    fn each_stored(&self, f: &mut dyn FnMut(Hash, Arc<Transfer>));
}

/// What one retirement hands the caller to write, in the group's batch.
#[derive(Debug, Default)]
pub struct Retired {
    /// What the past held no longer counts: drop it first (a recompute took it back).
    pub wipe: bool,
    /// Transfers now retired: applied, and no longer held in memory.
    pub applied: Vec<(Hash, Arc<Transfer>)>,
    /// (dep, the retired transfer that claimed it, its sequence number).
    pub claims: Vec<(Hash, Hash, u64)>,
    /// (currency, payer, seq, link): chain links applied since, each payer's head too
    /// (which also stays in memory).
    pub links: Vec<(String, String, u64, Link)>,
    /// Unclaimed income (currency, payee, created_at_ms, hash) that is new, and stored
    /// rows of it that were claimed.
    pub unclaimed: Vec<(String, String, i64, Hash)>,
    pub claimed: Vec<(String, String, i64, Hash)>,
    /// Per currency: (transfers applied, volume), when anything applied.
    pub totals: Vec<(String, u64, u64)>,
    /// After a wipe, every transfer still held (none of which is applied).
    pub held: Vec<Hash>,
}

impl Retired {
    pub fn is_empty(&self) -> bool {
        !self.wipe
            && self.applied.is_empty()
            && self.claims.is_empty()
            && self.links.is_empty()
            && self.unclaimed.is_empty()
            && self.claimed.is_empty()
    }
}

impl Ledger {
    /// Gives the engine its past. From here on, [`Ledger::retire`] moves what applied out
    /// of memory.
    pub fn attach_past(&mut self, past: Box<dyn Past>) {
        self.past = Some(past);
    }

    /// The past, when what it holds counts.
    pub(super) fn past(&self) -> Option<&dyn Past> {
        self.past.as_deref().filter(|_| !self.past_stale)
    }

    /// Moves what applied out of memory, returning what the caller must write (in the
    /// same batch as the group that applied it, so a restart finds both or neither).
    /// Nothing without a past.
    pub fn retire(&mut self) -> Retired {
        if self.past.is_none() {
            return Retired::default();
        }
        let mut out = Retired { wipe: std::mem::take(&mut self.past_stale), ..Default::default() };
        let applied: Vec<Hash> = self.known.iter().filter(|(_, k)| k.applied).map(|(h, _)| *h).collect();
        for hash in applied {
            let Some(Known { t, .. }) = self.known.remove(&hash) else { continue };
            // Transfers waiting for its deps no longer include it.
            for dep in &t.deps {
                let Ok(dep) = <Hash>::try_from(dep.as_slice()) else { continue };
                if let Some(w) = self.waiters.get_mut(&dep) {
                    w.retain(|h| *h != hash);
                    if w.is_empty() {
                        self.waiters.remove(&dep);
                    }
                }
            }
            out.applied.push((hash, t));
        }
        let known = &self.known;
        self.claimed.retain(|dep, (by, seq)| {
            let live = known.contains_key(by);
            if !live {
                out.claims.push((*dep, *by, *seq));
            }
            live
        });
        let mut grown = std::mem::take(&mut self.grown);
        grown.sort_unstable();
        grown.dedup();
        for id in grown {
            let book = &mut self.books[id as usize];
            let Some(head) = book.chain.len().checked_sub(1) else { continue };
            let (currency, payer) = self.ids.owned_name(id);
            for (i, link) in book.chain.iter().enumerate() {
                let seq = book.base + 1 + i as u64;
                if seq > book.written {
                    out.links.push((currency.clone(), payer.clone(), seq, *link));
                }
            }
            book.chain.drain(..head);
            book.base += head as u64;
            book.written = book.base + 1;
        }
        let (added, gone) = self.accounts.retire();
        for (list, rows) in [(&mut out.unclaimed, added), (&mut out.claimed, gone)] {
            list.extend(rows.into_iter().map(|(id, at, h)| {
                let (currency, member) = self.ids.owned_name(id);
                (currency, member, at, h)
            }));
        }
        if !out.applied.is_empty() || out.wipe {
            out.totals = self.accounts.totals().iter().map(|(c, t)| (c.clone(), t.transfers, t.volume)).collect();
        }
        if out.wipe {
            out.held = self.known.keys().copied().collect();
        }
        out
    }

    /// At a load: an account as stored (its chain's head link and its balance). It keeps
    /// its number for good, as the transfers that moved it would have.
    pub fn load_account(&mut self, currency: &str, member: &str, seq: u64, head: Option<Link>, balance: i128) {
        let id = self.ids.hold(currency, member);
        self.books.resize_with(self.ids.len(), Default::default);
        let book = &mut self.books[id as usize];
        book.balance = balance;
        if let (Some(head), true) = (head, seq > 0) {
            book.base = seq - 1;
            book.written = seq;
            book.chain = vec![head];
        }
        if seq > 0 || balance != 0 {
            self.accounts.load_moved(currency, id);
        }
    }

    /// At a load: a currency's totals as stored.
    pub fn load_totals(&mut self, currency: &str, transfers: u64, volume: u64) {
        self.accounts.load_totals(currency, transfers, volume);
    }

    /// At a load: the transfers held (none applied when they were written), judged
    /// together against the loaded accounts and the past, as after the group that
    /// wrote them.
    pub fn load_held(&mut self, held: Vec<(Hash, Arc<Transfer>)>) {
        let mut hashes = Vec::with_capacity(held.len());
        for (hash, t) in held {
            let known = self.hold_unapplied(hash, t);
            self.accounts.learnt(known.payer, known.t.payer_seq, hash);
            hashes.push(hash);
        }
        hashes.sort_unstable();
        self.settle(hashes);
        let orphans = self.votes.iter().filter(|(h, _)| !self.known.contains_key(*h) && !self.is_retired(h));
        self.orphan_votes = orphans.map(|(_, v)| v.len()).sum();
    }

    /// Before a recompute: takes every stored transfer back into memory (as applied, as
    /// it was when retired), since the recompute may undo any of them. The past is not
    /// asked again until the next retirement has rewritten it.
    pub(super) fn rehydrate(&mut self) {
        if self.past_stale {
            // Taken back already, since the last retirement.
            return;
        }
        let Some(past) = self.past.take() else { return };
        let mut back: Vec<(Hash, Arc<Transfer>)> = Vec::new();
        past.each_stored(&mut |hash, t| {
            if !self.known.contains_key(&hash) {
                back.push((hash, t));
            }
        });
        self.past = Some(past);
        self.past_stale = true;
        for (hash, t) in back {
            // Its accounts kept their numbers: an applied transfer is never forgotten.
            let payer = self.account_of(&t.currency, &t.payer);
            let payee = self.account_of(&t.currency, &t.payee);
            self.wait_for_deps(hash, &t);
            self.known.insert(hash, Known { t, payer, payee, applied: true, was_applied: true });
        }
        self.books.resize_with(self.ids.len(), Default::default);
    }

    /// The number of an account a retired transfer names (held since it was taken in).
    fn account_of(&mut self, currency: &str, member: &str) -> AccountId {
        match self.ids.get(currency, member) {
            Some(id) => id,
            None => self.ids.hold(currency, member),
        }
    }

    /// The payer's applied transfer at `seq`, in memory or retired.
    pub(super) fn link(&self, payer: AccountId, seq: u64) -> Option<Link> {
        let book = &self.books[payer as usize];
        if seq == 0 {
            return None;
        }
        if seq <= book.base {
            let (currency, member) = self.ids.name(payer);
            return self.past()?.link(currency, member, seq);
        }
        book.chain.get(usize::try_from(seq - book.base - 1).ok()?).copied()
    }

    /// A transfer known in memory or retired: (it, applied).
    pub(super) fn find(&self, hash: &Hash) -> Option<(Arc<Transfer>, bool)> {
        match self.known.get(hash) {
            Some(k) => Some((Arc::clone(&k.t), k.applied)),
            None => Some((self.past()?.applied(hash)?, true)),
        }
    }

    /// Whether a transfer is held in memory (known, applied or not).
    pub fn holds(&self, hash: &Hash) -> bool {
        self.known.contains_key(hash)
    }

    /// Whether `t` may be in the past, or is surely not. Only applied transfers retire,
    /// an applied transfer's place is at or below its payer's head, and a recompute
    /// takes every retired transfer back into memory before it can un-apply one
    /// ([`Ledger::rehydrate`]); so a transfer above its payer's applied chain, or of an
    /// account no transfer ever moved (an applied one keeps its number), is not retired.
    pub fn may_be_retired(&self, t: &Transfer) -> bool {
        if self.past().is_none() {
            return false;
        }
        let Some(id) = self.ids.get(&t.currency, &t.payer) else { return false };
        let book = &self.books[id as usize];
        t.payer_seq <= book.base + book.chain.len() as u64
    }

    /// Whether `hash` is retired.
    pub(super) fn is_retired(&self, hash: &Hash) -> bool {
        !self.known.contains_key(hash) && self.past().is_some_and(|p| p.is_applied(hash))
    }

    /// The transfer that claimed `dep`, in memory or retired.
    pub(super) fn claimer(&self, dep: &Hash) -> Option<(Hash, u64)> {
        self.claimed.get(dep).copied().or_else(|| self.past()?.claim(dep))
    }

    /// Brings the payer's retired links from `seq` up back into its book: a place at or
    /// below the retired part of a chain is applied again (only a recompute does that,
    /// and it takes the whole past back first; this keeps the book whole regardless).
    pub(super) fn unretire_links(&mut self, payer: AccountId, seq: u64) {
        let base = self.books[payer as usize].base;
        if seq > base {
            return;
        }
        let (currency, member) = self.ids.owned_name(payer);
        let back: Vec<Link> =
            (seq..=base).map(|s| self.past().and_then(|p| p.link(&currency, &member, s)).unwrap_or_default()).collect();
        let book = &mut self.books[payer as usize];
        book.chain.splice(0..0, back);
        book.base = seq - 1;
    }
}
