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

use icn_identity::Did;
use icn_ledger_records::signed::{self, SignatureError};
use icn_ledger_records::transfer::{MAX_AMOUNT, MAX_DEPS, MAX_IDEMPOTENCY_ID_BYTES, MAX_MEMO_BYTES};
use icn_ledger_records::{hex, Hash};
use icn_proto::ledger::v1::Transfer;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Why a transfer can never apply, whatever arrives later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the signature is not the payer's over this transfer")]
    BadSignature,
    #[error("`{0}` is not a DID")]
    BadDid(String),
    #[error("the amount must be positive, got {0}")]
    NonPositiveAmount(i64),
    #[error("the amount {0} exceeds the largest amount, {MAX_AMOUNT} minor units")]
    AmountTooLarge(i64),
    #[error("{0}")]
    Malformed(String),
    #[error("a payer cannot pay itself")]
    SelfTransfer,
    #[error("unknown currency `{0}`")]
    UnknownCurrency(String),
    #[error("payer_seq starts at 1")]
    ZeroSequence,
    #[error("prev_hash does not name the payer's transfer number {0}")]
    BadChainLink(u64),
    #[error("dep {0} does not pay this payer in this currency")]
    DepNotIncoming(String),
    #[error("dep {0} is already counted by an earlier transfer of the payer")]
    DepClaimed(String),
    #[error("the payer's balance would be {balance}, below its floor of {floor}")]
    Overdraft { balance: i128, floor: i128 },
}

impl Refusal {
    /// Refusals that depend on what else is applied or on the rules in force (a credit
    /// limit, a chain head); judged again after a recompute, so a node keeps the
    /// transfers refused for them.
    pub fn is_stateful(&self) -> bool {
        matches!(
            self,
            Refusal::BadChainLink(_) | Refusal::DepClaimed(_) | Refusal::Overdraft { .. } | Refusal::DepNotIncoming(_)
        )
    }
}

/// Where a transfer stands on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Applied,
    /// Waiting for the payer's previous transfer, deps, the currency or an admission.
    Pending(Vec<String>),
    /// Part of a fork: another transfer has the same payer, currency and sequence.
    Quarantined,
    Refused(Refusal),
}

/// One change of a credit limit, effective for transfers signed at or after `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LimitChange {
    pub at_ms: i64,
    /// Orders changes with the same time alike on every node (the admin entry's hash).
    pub tie: Hash,
    pub limit: i64,
}

/// A currency's rules, as far as transfers need them.
///
/// The limit that judges a transfer is the one in force at the transfer's
/// `created_at_ms`, so a limit change arriving late changes the outcome nowhere but
/// everywhere alike, and lowering a limit never undoes transfers signed before it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurrencyRules {
    /// The currency's own default, before any change.
    pub default_credit_limit: i64,
    /// Changes of the default, sorted.
    pub default_changes: Vec<LimitChange>,
    /// Changes of one account's limit, sorted.
    pub account_changes: HashMap<String, Vec<LimitChange>>,
}

impl CurrencyRules {
    pub fn flat(limit: i64) -> Self {
        Self { default_credit_limit: limit, ..Default::default() }
    }

    /// The credit limit of `account` for a transfer signed at `at_ms`.
    pub fn limit(&self, account: &str, at_ms: i64) -> i64 {
        let in_force = |changes: &[LimitChange]| changes.iter().rev().find(|c| c.at_ms <= at_ms).map(|c| c.limit);
        self.account_changes
            .get(account)
            .and_then(|c| in_force(c))
            .or_else(|| in_force(&self.default_changes))
            .unwrap_or(self.default_credit_limit)
    }

    fn floor(&self, account: &str, at_ms: i64) -> i128 {
        -(self.limit(account, at_ms) as i128)
    }
}

/// What the cooperative's admin entries decide for transfers: who is a member, which
/// currencies exist and their limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    pub members: HashSet<String>,
    pub currencies: HashMap<String, CurrencyRules>,
}

/// One cooperative's transfers on one node.
#[derive(Default)]
pub struct Ledger {
    rules: Rules,
    known: HashMap<Hash, Transfer>,
    /// (currency, payer, seq) → transfers claiming that place.
    slots: HashMap<(String, String, u64), BTreeSet<Hash>>,
    /// dep → transfers that list it.
    waiters: HashMap<Hash, Vec<Hash>>,
    applied: BTreeSet<Hash>,
    /// Per (currency, payer): applied transfers by seq.
    chains: HashMap<(String, String), BTreeMap<u64, Hash>>,
    /// dep → (the transfer that counted it, its sequence number).
    claimed: HashMap<Hash, (Hash, u64)>,
    /// Per (currency, payer): after each applied sequence number, the balance its chain
    /// and deps show.
    checked: HashMap<(String, String), BTreeMap<u64, i128>>,
    balances: HashMap<(String, String), i128>,
    refused: HashMap<Hash, Refusal>,
    /// Accounts whose balance or chain changed since the last [`Ledger::take_changes`].
    dirty: BTreeSet<(String, String)>,
    /// Transfers applied since the last [`Ledger::take_changes`].
    newly_applied: Vec<Hash>,
    /// Forks found since the last [`Ledger::take_changes`].
    new_forks: Vec<(String, String, u64)>,
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

    /// Replaces the cooperative's rules and judges every transfer again.
    pub fn set_rules(&mut self, rules: Rules) {
        if rules != self.rules {
            self.rules = rules;
            self.recompute();
        }
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
        if self.known.contains_key(&hash) || self.refused.contains_key(&hash) {
            return self.status(&hash);
        }
        if let Err(refusal) = check_form(&t) {
            self.refused.insert(hash, refusal.clone());
            return Status::Refused(refusal);
        }
        for dep in &t.deps {
            if let Ok(dep) = <Hash>::try_from(dep.as_slice()) {
                self.waiters.entry(dep).or_default().push(hash);
            }
        }
        let slot = (t.currency.clone(), t.payer.clone(), t.payer_seq);
        self.known.insert(hash, t.clone());
        self.slots.entry(slot).or_default().insert(hash);
        // Judged alone at its place first: a transfer refused on its merits is no rival.
        if let Err(refusal) = self.try_apply(&hash, &t) {
            self.refused.insert(hash, refusal);
        } else if self.viable_in_slot(&t).len() > 1 {
            // A fork may un-apply what was applied: recompute from what is known.
            self.new_forks.push((t.currency.clone(), t.payer.clone(), t.payer_seq));
            self.recompute();
        } else {
            self.settle(vec![hash]);
        }
        self.status(&hash)
    }

    /// Drops a transfer nobody else has seen (refused at this node's API), as if it had
    /// never been submitted.
    pub fn forget(&mut self, hash: &Hash) {
        if self.applied.contains(hash) {
            return;
        }
        self.refused.remove(hash);
        if let Some(t) = self.known.remove(hash) {
            if let Some(holders) = self.slots.get_mut(&(t.currency.clone(), t.payer.clone(), t.payer_seq)) {
                holders.remove(hash);
            }
            for dep in &t.deps {
                if let Some(w) = <Hash>::try_from(dep.as_slice()).ok().and_then(|d| self.waiters.get_mut(&d)) {
                    w.retain(|h| h != hash);
                }
            }
        }
    }

    /// Transfers at `t`'s place that are not refused on their own merits.
    fn viable_in_slot(&self, t: &Transfer) -> Vec<Hash> {
        self.slots
            .get(&(t.currency.clone(), t.payer.clone(), t.payer_seq))
            .map(|h| h.iter().filter(|x| !self.refused.contains_key(*x)).copied().collect())
            .unwrap_or_default()
    }

    fn quarantined(&self, t: &Transfer) -> bool {
        self.viable_in_slot(t).len() > 1
    }

    /// What still blocks `t`, or `Ok(Ok(()))` when it applies now, or the final refusal.
    fn try_apply(&self, hash: &Hash, t: &Transfer) -> Result<Result<(), Vec<String>>, Refusal> {
        let mut missing = Vec::new();
        let Some(rules) = self.rules.currencies.get(&t.currency) else {
            return Ok(Err(vec![format!("currency `{}` is not known yet", t.currency)]));
        };
        for party in [&t.payer, &t.payee] {
            if !self.rules.members.contains(party.as_str()) {
                missing.push(format!("admission of {party}"));
            }
        }
        let key = (t.currency.clone(), t.payer.clone());
        let chain = self.chains.get(&key);
        // Judged as if alone at its place: against the payer's applied transfer just before.
        if t.payer_seq == 1 {
            if !t.prev_hash.is_empty() {
                return Err(Refusal::BadChainLink(0));
            }
        } else {
            match chain.and_then(|c| c.get(&(t.payer_seq - 1))) {
                Some(prev) if t.prev_hash.as_slice() == prev => {}
                Some(_) => return Err(Refusal::BadChainLink(t.payer_seq - 1)),
                None => missing.push(format!("payer transfer #{}", t.payer_seq - 1)),
            }
        }
        let mut incoming: i128 = 0;
        for dep in &t.deps {
            let dep_hex = hex(dep);
            let Ok(dep_hash) = <Hash>::try_from(dep.as_slice()) else { return Err(Refusal::DepNotIncoming(dep_hex)) };
            match self.known.get(&dep_hash) {
                Some(d) if d.payee != t.payer || d.currency != t.currency => {
                    return Err(Refusal::DepNotIncoming(dep_hex))
                }
                Some(d) if self.applied.contains(&dep_hash) => {
                    // Claimed by an earlier transfer of the payer (not by a rival at this place).
                    if self.claimed.get(&dep_hash).is_some_and(|(c, seq)| c != hash && *seq < t.payer_seq) {
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
        let before = self.checked.get(&key).and_then(|c| c.get(&(t.payer_seq - 1))).copied().unwrap_or(0);
        let balance = before + incoming - t.amount as i128;
        let floor = rules.floor(&t.payer, t.created_at_ms);
        if balance < floor {
            return Err(Refusal::Overdraft { balance, floor });
        }
        Ok(Ok(()))
    }

    /// Applies whatever `start` unblocks, transitively.
    fn settle(&mut self, start: Vec<Hash>) {
        let mut work = start;
        while let Some(hash) = work.pop() {
            if self.applied.contains(&hash) || self.refused.contains_key(&hash) {
                continue;
            }
            let Some(t) = self.known.get(&hash).cloned() else { continue };
            match self.try_apply(&hash, &t) {
                Err(refusal) => {
                    self.refused.insert(hash, refusal);
                    // A rival at this place may now stand alone.
                    work.extend(self.viable_in_slot(&t));
                }
                Ok(Err(_missing)) => {}
                Ok(Ok(())) if self.quarantined(&t) => {}
                Ok(Ok(())) => {
                    self.apply(hash, &t);
                    // What may now apply: the payer's next transfers, and transfers that
                    // list this one as a dep.
                    if let Some(next) = self.slots.get(&(t.currency.clone(), t.payer.clone(), t.payer_seq + 1)) {
                        work.extend(next.iter().copied());
                    }
                    if let Some(waiting) = self.waiters.get(&hash) {
                        work.extend(waiting.iter().copied());
                    }
                }
            }
        }
    }

    fn apply(&mut self, hash: Hash, t: &Transfer) {
        let key = (t.currency.clone(), t.payer.clone());
        let mut incoming: i128 = 0;
        for dep in &t.deps {
            let dep_hash = <Hash>::try_from(dep.as_slice()).expect("checked in try_apply");
            self.claimed.insert(dep_hash, (hash, t.payer_seq));
            incoming += self.known[&dep_hash].amount as i128;
        }
        let checked = self.checked.entry(key.clone()).or_default();
        let before = checked.get(&(t.payer_seq - 1)).copied().unwrap_or(0);
        checked.insert(t.payer_seq, before + incoming - t.amount as i128);
        self.chains.entry(key.clone()).or_default().insert(t.payer_seq, hash);
        let payee = (t.currency.clone(), t.payee.clone());
        *self.balances.entry(key.clone()).or_default() -= t.amount as i128;
        *self.balances.entry(payee.clone()).or_default() += t.amount as i128;
        self.dirty.insert(key);
        self.dirty.insert(payee);
        self.applied.insert(hash);
        self.newly_applied.push(hash);
    }

    /// Rebuilds the applied set from every known transfer (after a fork or new rules).
    fn recompute(&mut self) {
        self.dirty.extend(self.balances.keys().cloned());
        self.applied.clear();
        self.chains.clear();
        self.claimed.clear();
        self.checked.clear();
        self.balances.clear();
        // Refusals of stateful rules are judged again; refusals of form stay.
        self.refused.retain(|_, r| !r.is_stateful());
        let mut roots: Vec<Hash> = self.known.iter().filter(|(_, t)| t.payer_seq == 1).map(|(h, _)| *h).collect();
        roots.sort();
        self.settle(roots);
        // Rivals that were never judged because their place was already taken.
        let mut rest: Vec<Hash> = self
            .known
            .keys()
            .filter(|h| !self.applied.contains(*h) && !self.refused.contains_key(*h))
            .copied()
            .collect();
        rest.sort();
        for hash in rest {
            let t = self.known[&hash].clone();
            if let Err(refusal) = self.try_apply(&hash, &t) {
                self.refused.insert(hash, refusal);
            }
        }
        self.dirty.extend(self.balances.keys().cloned());
    }

    pub fn status(&self, hash: &Hash) -> Status {
        if let Some(r) = self.refused.get(hash) {
            return Status::Refused(r.clone());
        }
        let Some(t) = self.known.get(hash) else { return Status::Pending(vec!["unknown".into()]) };
        if self.applied.contains(hash) {
            return Status::Applied;
        }
        match self.try_apply(hash, t) {
            Ok(_) if self.quarantined(t) => Status::Quarantined,
            Ok(Err(missing)) => Status::Pending(missing),
            Err(r) => Status::Refused(r),
            Ok(Ok(())) => Status::Pending(Vec::new()),
        }
    }

    pub fn transfer(&self, hash: &Hash) -> Option<&Transfer> {
        self.known.get(hash)
    }

    pub fn transfers(&self) -> impl Iterator<Item = (&Hash, &Transfer)> {
        self.known.iter()
    }

    pub fn is_applied(&self, hash: &Hash) -> bool {
        self.applied.contains(hash)
    }

    /// Whether an applied transfer has been named as a dep by an applied transfer.
    pub fn is_claimed(&self, hash: &Hash) -> bool {
        self.claimed.contains_key(hash)
    }

    /// The payer account's last applied sequence number and transfer hash.
    pub fn head(&self, currency: &str, account: &str) -> Option<(u64, Hash)> {
        self.chains
            .get(&(currency.to_string(), account.to_string()))
            .and_then(|c| c.last_key_value())
            .map(|(seq, h)| (*seq, *h))
    }

    pub fn balance(&self, currency: &str, account: &str) -> i128 {
        self.balances.get(&(currency.to_string(), account.to_string())).copied().unwrap_or(0)
    }

    pub fn balances(&self) -> &HashMap<(String, String), i128> {
        &self.balances
    }

    pub fn applied(&self) -> &BTreeSet<Hash> {
        &self.applied
    }

    /// Accounts and transfers changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        Changes {
            accounts: std::mem::take(&mut self.dirty),
            applied: std::mem::take(&mut self.newly_applied),
            forks: std::mem::take(&mut self.new_forks),
        }
    }

    /// Hashes of the transfers in forks: places held by two or more viable transfers.
    pub fn quarantine(&self) -> Vec<Hash> {
        let mut q: Vec<Hash> = self.forks().into_values().flatten().collect();
        q.sort();
        q
    }

    /// Forks by place: (currency, payer, seq) → the viable transfers holding it.
    pub fn forks(&self) -> BTreeMap<(String, String, u64), Vec<Hash>> {
        self.slots
            .iter()
            .map(|(k, h)| (k.clone(), h.iter().filter(|x| !self.refused.contains_key(*x)).copied().collect::<Vec<_>>()))
            .filter(|(_, viable)| viable.len() > 1)
            .collect()
    }

    /// The balances a replay of the applied transfers gives (RecomputeBalances compares).
    pub fn replay(&self) -> HashMap<(String, String), i128> {
        let mut out: HashMap<(String, String), i128> = HashMap::new();
        for h in &self.applied {
            let t = &self.known[h];
            *out.entry((t.currency.clone(), t.payer.clone())).or_default() -= t.amount as i128;
            *out.entry((t.currency.clone(), t.payee.clone())).or_default() += t.amount as i128;
        }
        out
    }
}

/// The payer's signature over the transfer's hash.
pub fn verify(t: &Transfer, hash: &Hash) -> Result<(), Refusal> {
    match signed::verify(t) {
        Ok(signed) if signed == *hash => Ok(()),
        Err(SignatureError::BadSigner(did)) => Err(Refusal::BadDid(did)),
        _ => Err(Refusal::BadSignature),
    }
}

/// What a transfer alone decides, beyond its signature: amounts, parties, sequence.
pub fn check_form(t: &Transfer) -> Result<(), Refusal> {
    // Syntax only: the payer's key is checked with its signature, and a payee's key
    // never has to verify anything.
    Did::check_syntax(&t.payer).map_err(|_| Refusal::BadDid(t.payer.clone()))?;
    Did::check_syntax(&t.payee).map_err(|_| Refusal::BadDid(t.payee.clone()))?;
    if t.amount <= 0 {
        return Err(Refusal::NonPositiveAmount(t.amount));
    }
    if t.amount > MAX_AMOUNT {
        return Err(Refusal::AmountTooLarge(t.amount));
    }
    if t.memo.len() > MAX_MEMO_BYTES {
        return Err(Refusal::Malformed(format!("the memo has {} bytes, more than {MAX_MEMO_BYTES}", t.memo.len())));
    }
    if t.idempotency_id.len() > MAX_IDEMPOTENCY_ID_BYTES {
        return Err(Refusal::Malformed(format!("the idempotency id is longer than {MAX_IDEMPOTENCY_ID_BYTES} bytes")));
    }
    if t.deps.len() > MAX_DEPS {
        return Err(Refusal::Malformed(format!("{} deps, more than {MAX_DEPS}", t.deps.len())));
    }
    if t.deps.iter().any(|d| d.len() != 32) || !(t.prev_hash.is_empty() || t.prev_hash.len() == 32) {
        return Err(Refusal::Malformed("prev_hash and deps are 32-byte hashes".into()));
    }
    let mut deps = t.deps.clone();
    deps.sort();
    deps.dedup();
    if deps.len() != t.deps.len() {
        return Err(Refusal::Malformed("a dep is named twice".into()));
    }
    if t.payer == t.payee {
        return Err(Refusal::SelfTransfer);
    }
    if t.payer_seq == 0 {
        return Err(Refusal::ZeroSequence);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;
    use icn_ledger_records::sign as sign_transfer;
    use icn_ledger_records::signed::hash as transfer_hash;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    const CURRENCY: &str = "hours";
    const LIMIT: i64 = 100;

    fn ledger(members: &[&NodeIdentity]) -> Ledger {
        Ledger::new(Rules {
            members: members.iter().map(|m| m.did().to_string()).collect(),
            currencies: [(CURRENCY.to_string(), CurrencyRules::flat(LIMIT))].into(),
        })
    }

    fn transfer(
        payer: &NodeIdentity,
        payee: &NodeIdentity,
        amount: i64,
        seq: u64,
        prev: Option<Hash>,
        deps: Vec<Hash>,
        memo: &str,
    ) -> Transfer {
        sign_transfer(
            payer,
            Transfer {
                coop_id: "coop".into(),
                currency: CURRENCY.into(),
                payee: payee.did().to_string(),
                amount,
                memo: memo.into(),
                payer_seq: seq,
                prev_hash: prev.map(|h| h.to_vec()).unwrap_or_default(),
                deps: deps.into_iter().map(|h| h.to_vec()).collect(),
                ..Default::default()
            },
        )
    }

    /// A random history as members would write it: each payer follows its own chain and
    /// names the incoming transfers it has seen as deps. Some payers overdraw, some sign
    /// two transfers with one sequence number, some signatures are forged.
    fn history(seed: u64) -> (Vec<NodeIdentity>, Vec<Transfer>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let members: Vec<NodeIdentity> = (0..5).map(|_| NodeIdentity::generate()).collect();
        let mut truth = ledger(&members.iter().collect::<Vec<_>>());
        let mut last: HashMap<usize, (u64, Option<Hash>)> = HashMap::new();
        let mut unclaimed: HashMap<usize, Vec<Hash>> = HashMap::new();
        let mut all = Vec::new();
        for k in 0..60 {
            let p = rng.gen_range(0..members.len());
            let q = (p + rng.gen_range(1..members.len())) % members.len();
            let (seq, prev) = last.get(&p).copied().unwrap_or((0, None));
            let deps = unclaimed.get(&p).cloned().unwrap_or_default();
            let amount = rng.gen_range(1..90);
            let mut t = transfer(&members[p], &members[q], amount, seq + 1, prev, deps.clone(), &format!("t{k}"));
            if rng.gen_bool(0.05) {
                t.signature[0] ^= 1;
            }
            let hash = transfer_hash(&t);
            all.push(t.clone());
            if rng.gen_bool(0.06) {
                // A fork: the same place in the chain, another payee.
                all.push(transfer(
                    &members[p],
                    &members[(q + 1) % members.len()],
                    amount,
                    seq + 1,
                    prev,
                    deps,
                    &format!("fork{k}"),
                ));
            }
            if truth.submit(t) == Status::Applied {
                last.insert(p, (seq + 1, Some(hash)));
                unclaimed.remove(&p);
                unclaimed.entry(q).or_default().push(hash);
            }
        }
        (members, all)
    }

    fn deliver(members: &[NodeIdentity], transfers: &[Transfer], rng: &mut StdRng) -> Ledger {
        let mut order: Vec<Transfer> = transfers.to_vec();
        // Duplicates: some transfers arrive twice.
        for t in transfers {
            if rng.gen_bool(0.3) {
                order.push(t.clone());
            }
        }
        order.shuffle(rng);
        let mut l = ledger(&members.iter().collect::<Vec<_>>());
        for t in order {
            l.submit(t);
        }
        l
    }

    #[test]
    fn replicas_agree_whatever_the_order_and_the_invariants_hold() {
        for seed in 0..100 {
            let (members, transfers) = history(seed);
            let mut rng = StdRng::seed_from_u64(seed + 1000);
            let replicas: Vec<Ledger> = (0..3).map(|_| deliver(&members, &transfers, &mut rng)).collect();
            let reference = &replicas[0];
            assert!(!reference.applied().is_empty(), "seed {seed}: something applies");
            for (i, r) in replicas.iter().enumerate() {
                assert_eq!(r.applied(), reference.applied(), "seed {seed}: replica {i} applied another set");
                assert_eq!(r.quarantine(), reference.quarantine(), "seed {seed}: replica {i}");
                // A stored balance equals a replay of the journal, each transfer once.
                let replay = r.replay();
                let nonzero = |m: &HashMap<(String, String), i128>| {
                    m.iter().filter(|(_, v)| **v != 0).map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>()
                };
                assert_eq!(nonzero(&replay), nonzero(r.balances()), "seed {seed}");
                assert_eq!(nonzero(r.balances()), nonzero(reference.balances()), "seed {seed}");
                // Mutual credit: balances sum to zero; nobody is below the floor.
                assert_eq!(r.balances().values().sum::<i128>(), 0, "seed {seed}");
                for m in &members {
                    assert!(r.balance(CURRENCY, m.did().as_str()) >= -(LIMIT as i128), "seed {seed}");
                }
                // Nothing in a fork moved a balance.
                for q in r.quarantine() {
                    assert!(!r.applied().contains(&q), "seed {seed}");
                }
            }
        }
    }

    #[test]
    fn a_fork_quarantines_both_transfers_on_every_node_and_moves_nothing() {
        let (a, b, c) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
        let to_b = transfer(&a, &b, 10, 1, None, vec![], "one");
        let to_c = transfer(&a, &c, 10, 1, None, vec![], "the same place, twice");
        for order in [[to_b.clone(), to_c.clone()], [to_c.clone(), to_b.clone()]] {
            let mut l = ledger(&[&a, &b, &c]);
            assert_eq!(l.submit(order[0].clone()), Status::Applied, "alone, the first one applies");
            assert_eq!(l.submit(order[1].clone()), Status::Quarantined);
            assert_eq!(l.status(&transfer_hash(&order[0])), Status::Quarantined, "the applied one is undone");
            assert!(l.balances().values().all(|v| *v == 0));
            assert_eq!(l.quarantine().len(), 2);
        }
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        let mut l = ledger(&[&a, &b]);
        let first = transfer(&a, &b, 60, 1, None, vec![], "ok");
        assert_eq!(l.submit(first.clone()), Status::Applied);
        let overdraft = transfer(&a, &b, 50, 2, Some(transfer_hash(&first)), vec![], "too much");
        assert!(matches!(l.submit(overdraft), Status::Refused(Refusal::Overdraft { balance: -110, floor: -100 })));
        let wrong_link = transfer(&a, &b, 1, 2, Some([7; 32]), vec![], "bad link");
        assert_eq!(l.submit(wrong_link), Status::Refused(Refusal::BadChainLink(1)));
        // Refused transfers do not hold their place: the payer signs another in its stead.
        let retry = transfer(&a, &b, 40, 2, Some(transfer_hash(&first)), vec![], "within the limit");
        assert_eq!(l.submit(retry), Status::Applied);
        assert!(l.quarantine().is_empty());
        let mut forged = transfer(&b, &a, 1, 1, None, vec![], "forged");
        forged.signature[5] ^= 0xff;
        assert_eq!(l.submit(forged), Status::Refused(Refusal::BadSignature));
        assert_eq!(
            l.submit(transfer(&b, &a, 0, 1, None, vec![], "zero")),
            Status::Refused(Refusal::NonPositiveAmount(0))
        );
        assert_eq!(
            l.submit(transfer(&b, &a, -5, 1, None, vec![], "negative")),
            Status::Refused(Refusal::NonPositiveAmount(-5))
        );
        assert_eq!(l.submit(transfer(&b, &b, 5, 1, None, vec![], "self")), Status::Refused(Refusal::SelfTransfer));
        let mut other = transfer(&b, &a, 5, 1, None, vec![], "other currency");
        other.currency = "euro".into();
        let other = sign_transfer(&b, other);
        // A currency this node has not heard of may still arrive: the transfer waits.
        assert!(matches!(l.submit(other), Status::Pending(why) if why[0].contains("euro")));
        // b may spend what a paid it, by naming it as a dep, and only once.
        let spend = transfer(&b, &a, 150, 1, None, vec![transfer_hash(&first)], "spend the income");
        // b has received 60 + 40 but named only the first as a dep: 60 - 150 = -90.
        assert_eq!(l.submit(spend.clone()), Status::Applied);
        let again = transfer(&b, &a, 10, 2, Some(transfer_hash(&spend)), vec![transfer_hash(&first)], "count it twice");
        assert!(matches!(l.submit(again), Status::Refused(Refusal::DepClaimed(_))));
    }

    #[test]
    fn a_transfer_waits_for_its_deps_and_applies_when_they_arrive() {
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        let income = transfer(&a, &b, 80, 1, None, vec![], "income");
        let spend = transfer(&b, &a, 150, 1, None, vec![transfer_hash(&income)], "relies on it");
        let mut l = ledger(&[&a, &b]);
        assert!(matches!(l.submit(spend.clone()), Status::Pending(missing) if missing.len() == 1));
        assert_eq!(l.submit(income), Status::Applied);
        assert_eq!(l.status(&transfer_hash(&spend)), Status::Applied);
        assert_eq!(l.balance(CURRENCY, b.did().as_str()), 80 - 150);
    }
}
