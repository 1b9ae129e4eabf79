//! The ledger's rule, as a deterministic state machine that every node runs alike.
//!
//! A transfer is *applied* when all of these hold:
//! - its payer's signature covers it, and the amount is positive and not to oneself;
//! - it is the payer's next transfer in that currency: `payer_seq` is one more than the
//!   last, and `prev_hash` names that last transfer (a per-account hash chain);
//! - every transfer in `deps` is applied, pays this payer in this currency, and is not
//!   already claimed by an earlier transfer of the payer;
//! - the payer's balance *as its own chain and deps show it* (incoming deps minus
//!   outgoing amounts, all the way back to its first transfer) stays at or above its
//!   floor (minus its credit limit).
//!
//! Nothing else counts, so whether a transfer applies never depends on what else a node
//! happens to have received: the applied set is the least fixpoint of these rules over
//! the transfers known, the same on every node whatever the order of arrival. Payments
//! need no consensus (the approach of FastPay and AT2).
//!
//! Two different transfers with one (payer, currency, sequence) are a provable fork:
//! both are quarantined, and neither (nor anything that relies on them) moves a balance.
//! The real balance of an account is never below the floor its owner's transfers
//! checked, because it counts every applied incoming transfer, deps or not.
//!
//! Unless one of them is *certified*: when the cooperative names validators, each
//! votes for the one transfer it applied at a place, and a transfer with votes from a
//! quorum of the set in force at its time wins its place. Its rivals are quarantined as
//! evidence and move nothing, so a payee holding a certified transfer keeps it whatever
//! its payer signs later (payee finality, [`icn_ledger_records::finality`]). Votes are
//! signed data like the rest: which transfer wins is a function of what is known, the
//! same on every node. A validator that votes for two transfers at one place counts for
//! neither; two certified rivals (more dishonest validators than the quorum tolerates)
//! win nothing, and the place is quarantined as before.
//!
//! Files by job:
//! - `mod.rs` (here): [`Ledger`], the fixpoint itself: taking transfers in, judging
//!   each against what is applied (chain link, deps), applying what it unblocks;
//! - `recompute`: judging again after new rules, a fork or a vote that changes a winner;
//! - `ids`: accounts by number, held while a known transfer names them;
//! - `places`: which transfers hold a payer's place, and which of them are viable;
//! - `form`: what a transfer alone decides (signature, fields);
//! - `rules`: the cooperative's rules as transfers need them, and the balance floor;
//! - `accounts`: each account's unclaimed income and waiting transfers, kept up as
//!   transfers apply so reading an account never walks its history;
//! - `reads`: what readers ask of it (status, balances, heads, forks);
//! - `finality`: validators' votes, and which transfer a certificate makes win a fork;
//! - `refusal`: a transfer's [`Status`] and the [`Refusal`] it may get;
//! - `past`: what applied leaves memory once written ([`Ledger::retire`]) and is read
//!   back through the node's [`Past`] when the rule needs it.
//!
//! The engine never touches storage, the network or the clock (its past is a read-only
//! lookup the node hands it): the same transfers and rules give the same result on
//! every node.

mod accounts;
mod finality;
mod form;
#[cfg(test)]
mod held_tests;
mod ids;
mod past;
#[cfg(test)]
mod past_tests;
mod places;
mod reads;
mod recompute;
mod refusal;
mod rules;
#[cfg(test)]
mod tests;

pub use accounts::Totals;
pub use finality::VoteAdded;
pub use form::{check_form, verify};
pub use past::{Past, Retired};
pub use refusal::{Refusal, Status};
pub use rules::{CurrencyRules, LimitChange, Rules, ValidatorSet};

use icn_ledger_records::signed;
use icn_ledger_records::{hex, Hash};
use icn_proto::ledger::v1::Transfer;
// foldhash: seeded per process like std's SipHash, so an outsider cannot aim transfers
// at one bucket, at a fraction of its cost (SipHash was an eighth of a replay's time).
use foldhash::{HashMap, HashSet};
use ids::{AccountId, AccountIds};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A payer's place: (currency, payer, sequence number).
pub type Place = (String, String, u64);

/// One cooperative's transfers on one node.
#[derive(Default)]
pub struct Ledger {
    rules: Rules,
    /// Shared with the node's read indexes and settled without copying: a replay spent a
    /// quarter of its time cloning transfers.
    known: HashMap<Hash, Known>,
    /// Accounts by number (`ids`), and what the engine holds per account, by number.
    ids: AccountIds,
    books: Vec<Book>,
    /// (payer's account, seq) → the known transfers claiming that place that are not
    /// applied, in order; the applied one is the payer's chain link there. Most places
    /// hold none: a million applied transfers made a million entries here before.
    slots: HashMap<(AccountId, u64), Vec<Hash>>,
    /// While a recompute applies everything again, `slots` keeps what applies and is
    /// swept once at the end (a million removals one by one were a fifth of it).
    sweep_places_later: bool,
    /// dep → transfers that list it.
    waiters: HashMap<Hash, Vec<Hash>>,
    /// dep → (the transfer that counted it, its sequence number).
    claimed: HashMap<Hash, (Hash, u64)>,
    refused: HashMap<Hash, Refusal>,
    /// Accounts whose balance or chain changed since the last [`Ledger::take_changes`].
    dirty: HashSet<AccountId>,
    /// Transfers applied since the last [`Ledger::take_changes`].
    newly_applied: Vec<Hash>,
    /// Recomputes so far: each rebuilds `newly_applied`.
    recomputes: u64,
    /// Forks found since the last [`Ledger::take_changes`].
    new_forks: Vec<(String, String, u64)>,
    /// Known transfers not applied (pending, quarantined, refused for a reason that may
    /// change), per payer and in all: what the node's bounds on held transfers count.
    unapplied: HashMap<String, usize>,
    unapplied_total: usize,
    /// Transfer → the validators that voted for it, with the place each vote names.
    votes: HashMap<Hash, BTreeSet<(String, Place)>>,
    /// (validator, place) → the transfers it voted for there; a second is evidence that
    /// it equivocated, and no third is kept.
    ballots: HashMap<(String, Place), Vec<Hash>>,
    /// Votes for transfers this node does not know (yet): what the node's bound on
    /// held votes counts.
    orphan_votes: usize,
    accounts: accounts::AccountIndex,
    /// Where applied transfers go once written (`past`), and whether what it holds is
    /// stale: a recompute took it all back, and the next retirement rewrites it.
    past: Option<Box<dyn Past>>,
    past_stale: bool,
    /// Accounts whose chain grew since the last retirement.
    grown: Vec<AccountId>,
}

/// A known transfer with the numbers of its payer's and payee's accounts, and whether it
/// is applied (a flag here, not a set of a million hashes beside).
#[derive(Clone)]
struct Known {
    t: Arc<Transfer>,
    payer: AccountId,
    payee: AccountId,
    applied: bool,
    /// Whether it was applied when the last recompute began: what that recompute
    /// reports as newly applied is what was not (in the struct's padding, no memory).
    was_applied: bool,
}

/// An applied transfer in its payer's chain: what the payer's next transfer is judged
/// against, at hand without looking the transfer up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Link {
    pub hash: Hash,
    /// The balance the chain and its deps show after it.
    pub balance: i128,
    pub created_at_ms: i64,
}

/// What the engine holds per account.
#[derive(Default)]
struct Book {
    /// Links retired to the past: the chain here starts at `base + 1`.
    base: u64,
    /// Links written to the past (retired, or the head kept here as well) up to here.
    written: u64,
    /// The account's applied transfers as payer, by sequence number (at `seq - base - 1`:
    /// a chain applies without gaps); once retired, only the head.
    chain: Vec<Link>,
    /// Every applied transfer in and out.
    balance: i128,
}

/// What changed since the last time a caller asked: the accounts to write and the
/// transfers that became applied.
#[derive(Debug, Default)]
pub struct Changes {
    pub accounts: BTreeSet<(String, String)>,
    pub applied: Vec<Hash>,
    /// Places (currency, payer, seq) that became forks.
    pub forks: Vec<(String, String, u64)>,
}

impl Ledger {
    pub fn new(rules: Rules) -> Self {
        Self { rules, ..Default::default() }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Checks the payer's signature, then [`Ledger::submit_verified`].
    pub fn submit(&mut self, t: Transfer) -> Status {
        let hash = signed::hash(&t);
        if !self.known.contains_key(&hash) {
            if let Err(refusal) = verify(&t, &hash) {
                self.refused.insert(hash, refusal.clone());
                return Status::Refused(refusal);
            }
        }
        self.submit_verified(t, hash)
    }

    /// Takes a transfer whose signature the caller checked (a member, a peer, a replay);
    /// returns its status. A transfer already known keeps the status it has.
    pub fn submit_verified(&mut self, t: Transfer, hash: Hash) -> Status {
        self.take_in(Arc::new(t), hash, true, true)
    }

    /// [`Ledger::submit_verified`] of a transfer the caller keeps too, and knows is not
    /// retired: the node looked it up in its store already (`CoopState::knows`), so the
    /// past is not asked again.
    pub fn submit_shared(&mut self, t: Arc<Transfer>, hash: Hash) -> Status {
        self.take_in(t, hash, true, false)
    }

    /// [`Ledger::submit_shared`] of a transfer whose form the caller checked already
    /// ([`check_form`], with its signature, off the committer).
    pub fn submit_formed(&mut self, t: Arc<Transfer>, hash: Hash) -> Status {
        self.take_in(t, hash, false, false)
    }

    /// Takes a transfer from this node's journal: its signature and form were checked
    /// before it was stored (one refused on its form is never stored), so only the rules
    /// that depend on what else is known are judged again. A replay spent a twentieth of
    /// its time checking the same DIDs' syntax again.
    pub fn submit_stored(&mut self, t: Arc<Transfer>, hash: Hash) -> Status {
        self.take_in(t, hash, false, false)
    }

    /// `ask_past`: whether the transfer may be retired already (the caller did not look).
    fn take_in(&mut self, t: Arc<Transfer>, hash: Hash, check_form_first: bool, ask_past: bool) -> Status {
        if self.known.contains_key(&hash) || self.refused.contains_key(&hash) || (ask_past && self.is_retired(&hash)) {
            return self.status(&hash);
        }
        if let Some(refusal) = check_form_first.then(|| check_form(&t).err()).flatten() {
            self.refused.insert(hash, refusal.clone());
            return Status::Refused(refusal);
        }
        self.orphan_votes -= self.votes.get(&hash).map_or(0, BTreeSet::len);
        let known = self.hold_unapplied(hash, Arc::clone(&t));
        let (payer, place) = (known.payer, (known.payer, t.payer_seq));
        // Judged alone at its place first: a transfer refused on its merits is no rival.
        if let Err(refusal) = self.try_apply(&hash, &known) {
            self.refused.insert(hash, refusal);
        } else if self.rules.members.contains(&t.payer) && self.viable_count(place) > 1 {
            self.new_forks.push((t.currency.clone(), t.payer.clone(), t.payer_seq));
            match self.winner(&t) {
                // A rival of a certified, applied transfer: evidence that moves nothing.
                Some(w) if w != hash && self.is_applied(&w) => {}
                // A fork may un-apply what was applied: recompute from what is known.
                _ => self.recompute(),
            }
        } else {
            self.settle(vec![hash]);
        }
        // Listed as waiting only when it does: most transfers apply at once, and nothing
        // above reads the list (a recompute rebuilds it from `known`).
        if !self.is_applied(&hash) {
            self.accounts.learnt(payer, t.payer_seq, hash);
        }
        self.status(&hash)
    }

    /// Holds a transfer that is not applied (yet): as a waiter on its deps, with its
    /// accounts' numbers, at its place, and in the counts the node's bounds read. Taking
    /// a transfer in and loading the held ones share it.
    fn hold_unapplied(&mut self, hash: Hash, t: Arc<Transfer>) -> Known {
        self.wait_for_deps(hash, &t);
        let payer = self.ids.hold(&t.currency, &t.payer);
        let payee = self.ids.hold(&t.currency, &t.payee);
        self.books.resize_with(self.ids.len(), Book::default);
        match self.unapplied.get_mut(&t.payer) {
            Some(n) => *n += 1,
            None => {
                self.unapplied.insert(t.payer.clone(), 1);
            }
        }
        self.unapplied_total += 1;
        self.hold_place((payer, t.payer_seq), hash);
        let known = Known { t, payer, payee, applied: false, was_applied: false };
        self.known.insert(hash, known.clone());
        known
    }

    /// Lists `hash` as waiting for each of its deps.
    fn wait_for_deps(&mut self, hash: Hash, t: &Transfer) {
        for dep in &t.deps {
            if let Ok(dep) = <Hash>::try_from(dep.as_slice()) {
                self.waiters.entry(dep).or_default().push(hash);
            }
        }
    }

    /// Drops a transfer nobody else has seen (refused at this node's API), as if it had
    /// never been submitted; with it go its place and account numbers once nothing else
    /// holds them, so what an outsider made the node learn leaves nothing behind.
    pub fn forget(&mut self, hash: &Hash) {
        if self.is_applied(hash) {
            return;
        }
        self.refused.remove(hash);
        let Some(Known { t, payer, payee, .. }) = self.known.remove(hash) else { return };
        self.accounts.forgotten(payer, t.payer_seq, *hash);
        self.orphan_votes += self.votes.get(hash).map_or(0, BTreeSet::len);
        self.count_unapplied(&t.payer, -1);
        self.leave_place((payer, t.payer_seq), hash);
        for dep in &t.deps {
            let Ok(dep) = <Hash>::try_from(dep.as_slice()) else { continue };
            if let Some(w) = self.waiters.get_mut(&dep) {
                w.retain(|h| h != hash);
                if w.is_empty() {
                    self.waiters.remove(&dep);
                }
            }
        }
        for id in [payer, payee] {
            if self.ids.release(id) {
                self.books[id as usize] = Book::default();
            }
        }
    }

    /// What still blocks `t`, or `Ok(Ok(()))` when it applies now, or the final refusal.
    fn try_apply(&self, hash: &Hash, known: &Known) -> Result<Result<(), Vec<String>>, Refusal> {
        let t = &*known.t;
        let mut missing = Vec::new();
        let Some(rules) = self.rules.currencies.get(&t.currency) else {
            return Ok(Err(vec![format!("currency `{}` is not known yet", t.currency)]));
        };
        for party in [&t.payer, &t.payee] {
            if !self.rules.is_member_at(party, t.created_at_ms) {
                missing.push(format!("admission of {party}"));
            }
        }
        if t.created_at_ms < self.rules.founded_at_ms {
            return Err(Refusal::BeforeFounding { at: t.created_at_ms, founded: self.rules.founded_at_ms });
        }
        // Judged as if alone at its place: against the payer's applied transfer just before.
        // Time only rises along a payer's chain: the limit that judges a transfer is the
        // one in force at its time, so a payer must not reach back past its own history.
        let previous = self.link(known.payer, t.payer_seq.wrapping_sub(1));
        if t.payer_seq == 1 {
            if !t.prev_hash.is_empty() {
                return Err(Refusal::BadChainLink(0));
            }
        } else {
            match previous {
                Some(link) if t.prev_hash.as_slice() == link.hash => {
                    let previous = link.created_at_ms;
                    if t.created_at_ms < previous {
                        return Err(Refusal::TimeBeforePrevious { at: t.created_at_ms, previous });
                    }
                }
                Some(_) => return Err(Refusal::BadChainLink(t.payer_seq - 1)),
                None => missing.push(format!("payer transfer #{}", t.payer_seq.wrapping_sub(1))),
            }
        }
        let mut incoming: i128 = 0;
        for dep in &t.deps {
            let dep_hex = hex(dep);
            let Ok(dep_hash) = <Hash>::try_from(dep.as_slice()) else { return Err(Refusal::DepNotIncoming(dep_hex)) };
            match self.find(&dep_hash) {
                Some((d, _)) if d.payee != t.payer || d.currency != t.currency => {
                    return Err(Refusal::DepNotIncoming(dep_hex))
                }
                Some((d, true)) => {
                    // Claimed by an earlier transfer of the payer (not by a rival at this place).
                    if self.claimer(&dep_hash).is_some_and(|(c, seq)| c != *hash && seq < t.payer_seq) {
                        return Err(Refusal::DepClaimed(dep_hex));
                    }
                    incoming += d.amount as i128;
                }
                _ => missing.push(dep_hex),
            }
        }
        if !missing.is_empty() {
            return Ok(Err(missing));
        }
        let before = previous.map_or(0, |link| link.balance);
        let balance = before + incoming - t.amount as i128;
        rules.check_floor(&t.payer, t.created_at_ms, balance)?;
        Ok(Ok(()))
    }

    /// Applies whatever `start` unblocks, transitively.
    fn settle(&mut self, start: Vec<Hash>) {
        let mut work = start;
        while let Some(hash) = work.pop() {
            let Some(known) = self.known.get(&hash).cloned() else { continue };
            if known.applied || self.refused.contains_key(&hash) {
                continue;
            }
            match self.try_apply(&hash, &known) {
                Err(refusal) => {
                    self.refused.insert(hash, refusal);
                    // A rival at this place may now stand alone.
                    work.extend(self.viable_in_place((known.payer, known.t.payer_seq)));
                }
                Ok(Err(_missing)) => {}
                Ok(Ok(())) if self.quarantined(&hash, &known.t) => {}
                Ok(Ok(())) => {
                    self.apply(hash, &known);
                    // What may now apply: the payer's next transfers, and transfers that
                    // list this one as a dep.
                    if let Some(next) = self.slots.get(&(known.payer, known.t.payer_seq + 1)) {
                        work.extend(next.iter().copied());
                    }
                    if let Some(waiting) = self.waiters.get(&hash) {
                        work.extend(waiting.iter().copied());
                    }
                }
            }
        }
    }

    fn apply(&mut self, hash: Hash, known: &Known) {
        let t = &*known.t;
        self.count_unapplied(&t.payer, -1);
        let mut incoming: i128 = 0;
        let mut deps = Vec::with_capacity(t.deps.len());
        for dep in &t.deps {
            let dep_hash = <Hash>::try_from(dep.as_slice()).expect("checked in try_apply");
            self.claimed.insert(dep_hash, (hash, t.payer_seq));
            let (d, _) = self.find(&dep_hash).expect("found in try_apply");
            incoming += d.amount as i128;
            deps.push((d.created_at_ms, dep_hash));
        }
        let past = self.past().is_some();
        self.accounts.applied(t, (known.payer, known.payee), hash, &deps, past);
        let before = self.link(known.payer, t.payer_seq.wrapping_sub(1)).map_or(0, |link| link.balance);
        let link = Link { hash, balance: before + incoming - t.amount as i128, created_at_ms: t.created_at_ms };
        if !self.sweep_places_later {
            self.leave_place((known.payer, t.payer_seq), &hash);
        }
        self.unretire_links(known.payer, t.payer_seq);
        self.grown.push(known.payer);
        let book = &mut self.books[known.payer as usize];
        let chain = &mut book.chain;
        // try_apply found the link before this one (or this is the first): the chain has
        // no gap. A place is applied once (its rivals are quarantined); were one applied
        // again, it takes the place as it would in a map.
        let index = (t.payer_seq - book.base - 1) as usize;
        if index < chain.len() {
            chain[index] = link;
        } else {
            chain.push(link);
        }
        self.books[known.payer as usize].balance -= t.amount as i128;
        self.books[known.payee as usize].balance += t.amount as i128;
        self.dirty.insert(known.payer);
        self.dirty.insert(known.payee);
        self.known.get_mut(&hash).expect("a known transfer applies").applied = true;
        self.newly_applied.push(hash);
    }

    fn count_unapplied(&mut self, payer: &str, by: isize) {
        if let Some(n) = self.unapplied.get_mut(payer) {
            *n = n.saturating_add_signed(by);
            if *n == 0 {
                self.unapplied.remove(payer);
            }
        }
        self.unapplied_total = self.unapplied_total.saturating_add_signed(by);
    }
}
