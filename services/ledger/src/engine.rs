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
use icn_proto::ledger::v1::Transfer;
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub type Hash = [u8; 32];

/// SHA-256 of the transfer's encoding with `signature` empty: what the payer signs, and
/// the transfer's name in `prev_hash` and `deps`.
pub fn transfer_hash(t: &Transfer) -> Hash {
    let unsigned = Transfer { signature: Vec::new(), ..t.clone() };
    Sha256::digest(unsigned.encode_to_vec()).into()
}

/// Signs a transfer as its payer.
pub fn sign_transfer(payer: &icn_identity::NodeIdentity, mut t: Transfer) -> Transfer {
    t.payer = payer.did().to_string();
    t.signature = Vec::new();
    t.signature = payer.sign(&transfer_hash(&t)).to_bytes().to_vec();
    t
}

/// Why a transfer can never apply, whatever arrives later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the signature is not the payer's over this transfer")]
    BadSignature,
    #[error("`{0}` is not a DID")]
    BadDid(String),
    #[error("the amount must be positive, got {0}")]
    NonPositiveAmount(i64),
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

/// Where a transfer stands on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Applied,
    /// Waiting for the payer's previous transfer or for deps (hashes, hex).
    Pending(Vec<String>),
    /// Part of a fork: another transfer has the same payer, currency and sequence.
    Quarantined,
    Refused(Refusal),
}

/// A currency's rules, as far as transfers need them.
#[derive(Clone, Debug)]
pub struct CurrencyRules {
    /// How far below zero an account may go, unless an account has its own limit.
    pub default_credit_limit: i64,
    pub limits: HashMap<String, i64>,
}

impl CurrencyRules {
    fn floor(&self, account: &str) -> i128 {
        -(self.limits.get(account).copied().unwrap_or(self.default_credit_limit) as i128)
    }
}

/// One currency's ledger on one node.
#[derive(Default)]
pub struct Ledger {
    currencies: HashMap<String, CurrencyRules>,
    known: HashMap<Hash, Transfer>,
    /// (currency, payer, seq) → transfers claiming that place.
    slots: HashMap<(String, String, u64), BTreeSet<Hash>>,
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
}

impl Ledger {
    pub fn add_currency(&mut self, symbol: &str, rules: CurrencyRules) {
        self.currencies.insert(symbol.to_string(), rules);
    }

    /// Takes a transfer from anywhere (a member, a peer, a replay); returns its status.
    /// A transfer already known keeps the status it has.
    pub fn submit(&mut self, t: Transfer) -> Status {
        let hash = transfer_hash(&t);
        if self.known.contains_key(&hash) {
            return self.status(&hash);
        }
        if let Err(refusal) = self.check_form(&t, &hash) {
            self.refused.insert(hash, refusal.clone());
            return Status::Refused(refusal);
        }
        let slot = (t.currency.clone(), t.payer.clone(), t.payer_seq);
        self.known.insert(hash, t);
        let holders = self.slots.entry(slot).or_default();
        holders.insert(hash);
        if holders.len() > 1 {
            // A possible fork may un-apply what was applied: recompute from what is known.
            self.recompute();
        } else {
            self.settle(vec![hash]);
        }
        self.status(&hash)
    }

    /// Checks what a transfer alone decides: signature, amounts, parties, currency.
    fn check_form(&self, t: &Transfer, hash: &Hash) -> Result<(), Refusal> {
        let payer: Did = t.payer.parse().map_err(|_| Refusal::BadDid(t.payer.clone()))?;
        t.payee.parse::<Did>().map_err(|_| Refusal::BadDid(t.payee.clone()))?;
        let signature = <[u8; 64]>::try_from(t.signature.as_slice()).map_err(|_| Refusal::BadSignature)?;
        if !payer.verify(hash, &ed25519_dalek::Signature::from_bytes(&signature)) {
            return Err(Refusal::BadSignature);
        }
        if t.amount <= 0 {
            return Err(Refusal::NonPositiveAmount(t.amount));
        }
        if t.payer == t.payee {
            return Err(Refusal::SelfTransfer);
        }
        if !self.currencies.contains_key(&t.currency) {
            return Err(Refusal::UnknownCurrency(t.currency.clone()));
        }
        if t.payer_seq == 0 {
            return Err(Refusal::ZeroSequence);
        }
        Ok(())
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

    /// What still blocks `t`, or `Ok(true)` when it applies now, or the final refusal.
    fn try_apply(&self, hash: &Hash, t: &Transfer) -> Result<Result<(), Vec<String>>, Refusal> {
        let key = (t.currency.clone(), t.payer.clone());
        let chain = self.chains.get(&key);
        let mut missing = Vec::new();
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
        let rules = &self.currencies[&t.currency];
        let before = self.checked.get(&key).and_then(|c| c.get(&(t.payer_seq - 1))).copied().unwrap_or(0);
        let balance = before + incoming - t.amount as i128;
        let floor = rules.floor(&t.payer);
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
                    work.extend(
                        self.known
                            .iter()
                            .filter(|(_, o)| {
                                (o.payer == t.payer && o.currency == t.currency && o.payer_seq == t.payer_seq + 1)
                                    || o.deps.iter().any(|d| d.as_slice() == hash)
                            })
                            .map(|(h, _)| *h),
                    );
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
        self.chains.entry(key).or_default().insert(t.payer_seq, hash);
        *self.balances.entry((t.currency.clone(), t.payer.clone())).or_default() -= t.amount as i128;
        *self.balances.entry((t.currency.clone(), t.payee.clone())).or_default() += t.amount as i128;
        self.applied.insert(hash);
    }

    /// Rebuilds the applied set from every known transfer (after a fork).
    fn recompute(&mut self) {
        self.applied.clear();
        self.chains.clear();
        self.claimed.clear();
        self.checked.clear();
        self.balances.clear();
        // Refusals of stateful rules are judged again; refusals of form stay.
        self.refused.retain(|_, r| {
            !matches!(
                r,
                Refusal::BadChainLink(_)
                    | Refusal::DepClaimed(_)
                    | Refusal::Overdraft { .. }
                    | Refusal::DepNotIncoming(_)
            )
        });
        let mut roots: Vec<Hash> = self.known.iter().filter(|(_, t)| t.payer_seq == 1).map(|(h, _)| *h).collect();
        roots.sort();
        self.settle(roots);
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

    pub fn balance(&self, currency: &str, account: &str) -> i128 {
        self.balances.get(&(currency.to_string(), account.to_string())).copied().unwrap_or(0)
    }

    pub fn balances(&self) -> &HashMap<(String, String), i128> {
        &self.balances
    }

    pub fn applied(&self) -> &BTreeSet<Hash> {
        &self.applied
    }

    /// Hashes of the transfers in forks: places held by two or more viable transfers.
    pub fn quarantine(&self) -> Vec<Hash> {
        let mut q: Vec<Hash> = self
            .slots
            .values()
            .map(|h| h.iter().filter(|x| !self.refused.contains_key(*x)).copied().collect::<Vec<_>>())
            .filter(|viable| viable.len() > 1)
            .flatten()
            .collect();
        q.sort();
        q
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    const CURRENCY: &str = "hours";
    const LIMIT: i64 = 100;

    fn ledger() -> Ledger {
        let mut l = Ledger::default();
        l.add_currency(CURRENCY, CurrencyRules { default_credit_limit: LIMIT, limits: HashMap::new() });
        l
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
        let mut truth = ledger();
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

    fn deliver(transfers: &[Transfer], rng: &mut StdRng) -> Ledger {
        let mut order: Vec<Transfer> = transfers.to_vec();
        // Duplicates: some transfers arrive twice.
        for t in transfers {
            if rng.gen_bool(0.3) {
                order.push(t.clone());
            }
        }
        order.shuffle(rng);
        let mut l = ledger();
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
            let replicas: Vec<Ledger> = (0..3).map(|_| deliver(&transfers, &mut rng)).collect();
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
            let mut l = ledger();
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
        let mut l = ledger();
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
        assert_eq!(l.submit(other), Status::Refused(Refusal::UnknownCurrency("euro".into())));
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
        let mut l = ledger();
        assert!(matches!(l.submit(spend.clone()), Status::Pending(missing) if missing.len() == 1));
        assert_eq!(l.submit(income), Status::Applied);
        assert_eq!(l.status(&transfer_hash(&spend)), Status::Applied);
        assert_eq!(l.balance(CURRENCY, b.did().as_str()), 80 - 150);
    }
}
