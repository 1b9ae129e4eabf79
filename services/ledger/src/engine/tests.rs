//! The engine's properties over random histories: replicas that receive the same
//! transfers in any order, with duplicates, forks and forged signatures, apply the same
//! set, and no balance leaves its floor; and each rule refuses with its own reason.
//!
//! Tests only: nothing here is compiled into the service.

use super::*;
use icn_identity::NodeIdentity;
use icn_ledger_records::sign as sign_transfer;
use icn_ledger_records::signed::hash as transfer_hash;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};

pub(super) const CURRENCY: &str = "hours";
const LIMIT: i64 = 100;

pub(super) fn ledger(members: &[&NodeIdentity]) -> Ledger {
    Ledger::new(Rules {
        members: members.iter().map(|m| m.did().to_string()).collect(),
        currencies: [(CURRENCY.to_string(), CurrencyRules::flat(LIMIT))].into_iter().collect(),
        founded_at_ms: 0,
        membership: Default::default(),
        validators: Vec::new(),
    })
}

pub(super) fn transfer(
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
pub(super) fn history(seed: u64) -> (Vec<NodeIdentity>, Vec<Transfer>) {
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
    deliver_to(ledger(&members.iter().collect::<Vec<_>>()), &order)
}

/// `l` after taking `order`, one by one.
pub(super) fn deliver_to(mut l: Ledger, order: &[Transfer]) -> Ledger {
    for t in order {
        l.submit(t.clone());
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
            let nonzero = |m: &foldhash::HashMap<(String, String), i128>| {
                m.iter().filter(|(_, v)| **v != 0).map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>()
            };
            assert_eq!(nonzero(&replay), nonzero(&r.balances()), "seed {seed}");
            assert_eq!(nonzero(&r.balances()), nonzero(&reference.balances()), "seed {seed}");
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
    assert_eq!(l.submit(transfer(&b, &a, 0, 1, None, vec![], "zero")), Status::Refused(Refusal::NonPositiveAmount(0)));
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

#[test]
fn time_rises_along_a_payers_chain_and_nothing_precedes_the_founding() {
    let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
    let mut l = Ledger::new(Rules {
        members: [a.did().to_string(), b.did().to_string()].into_iter().collect(),
        currencies: [(CURRENCY.to_string(), CurrencyRules::flat(LIMIT))].into_iter().collect(),
        founded_at_ms: 1_000,
        membership: Default::default(),
        validators: Vec::new(),
    });
    let at = |t: Transfer, ms: i64| {
        let mut t = t;
        t.created_at_ms = ms;
        sign_transfer(&a, t)
    };
    // Backdated to before the cooperative existed (where an older, higher limit might
    // have been sought): refused.
    let early = at(transfer(&a, &b, 10, 1, None, vec![], "early"), 999);
    assert_eq!(l.submit(early), Status::Refused(Refusal::BeforeFounding { at: 999, founded: 1_000 }));
    let first = at(transfer(&a, &b, 10, 1, None, vec![], "first"), 2_000);
    assert_eq!(l.submit(first.clone()), Status::Applied);
    // The next one reaches back before the first: refused, whatever arrives later.
    let back = at(transfer(&a, &b, 10, 2, Some(transfer_hash(&first)), vec![], "back"), 1_500);
    assert_eq!(l.submit(back), Status::Refused(Refusal::TimeBeforePrevious { at: 1_500, previous: 2_000 }));
    // The same time, or later, is fine.
    let same = at(transfer(&a, &b, 10, 2, Some(transfer_hash(&first)), vec![], "same"), 2_000);
    assert_eq!(l.submit(same), Status::Applied);
}

#[test]
fn junk_forks_in_the_name_of_a_non_member_cost_nothing_until_it_is_admitted() {
    let (a, b, stranger) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
    let mut l = ledger(&[&a, &b]);
    l.take_changes();
    // Two transfers at one place, signed by a key that is no member: both wait (an
    // admission may still come), neither is a fork, nothing is reported.
    let one = transfer(&stranger, &b, 10, 1, None, vec![], "one");
    let two = transfer(&stranger, &b, 10, 1, None, vec![], "two");
    assert!(matches!(l.submit(one.clone()), Status::Pending(_)));
    assert!(matches!(l.submit(two.clone()), Status::Pending(_)));
    assert!(l.forks().is_empty() && l.quarantine().is_empty());
    assert!(l.take_changes().forks.is_empty());
    // Admitted, the stranger's two transfers are a fork like any member's, found once.
    let mut rules = l.rules().clone();
    rules.members.insert(stranger.did().to_string());
    l.set_rules(rules);
    assert_eq!(l.status(&transfer_hash(&one)), Status::Quarantined);
    assert_eq!(l.take_changes().forks, vec![(CURRENCY.to_string(), stranger.did().to_string(), 1)]);
}

#[test]
fn admitting_members_and_currencies_late_settles_what_waits_as_a_full_recompute_would() {
    let nonzero = |l: &Ledger| -> BTreeMap<(String, String), i128> {
        l.balances().iter().filter(|(_, v)| **v != 0).map(|(k, v)| (k.clone(), *v)).collect()
    };
    for seed in 0..100 {
        let (members, transfers) = history(seed);
        let mut rng = StdRng::seed_from_u64(seed + 2000);
        let mut order = transfers.clone();
        order.shuffle(&mut rng);
        // Two members are admitted only after every transfer arrived, one at a time; on
        // odd seeds the currency comes last too.
        let mut l = ledger(&members[..3].iter().collect::<Vec<_>>());
        let currency = l.rules().currencies.clone();
        if seed % 2 == 1 {
            let mut rules = l.rules().clone();
            rules.currencies.clear();
            l.set_rules(rules);
        }
        for t in order {
            l.submit(t);
        }
        for m in &members[3..] {
            let mut rules = l.rules().clone();
            rules.members.insert(m.did().to_string());
            assert!(l.rules().only_added_to_by(&rules), "seed {seed}: an admission only widens");
            l.set_rules(rules);
        }
        let mut rules = l.rules().clone();
        rules.currencies = currency.clone();
        l.set_rules(rules);
        // The same as a node that knew every member and the currency from the start…
        let full = deliver(&members, &transfers, &mut rng);
        assert!(!full.applied().is_empty(), "seed {seed}");
        assert_eq!(l.applied(), full.applied(), "seed {seed}");
        assert_eq!(l.quarantine(), full.quarantine(), "seed {seed}");
        assert_eq!(nonzero(&l), nonzero(&full), "seed {seed}");
        // …and as a full recompute of its own.
        l.recompute();
        assert_eq!(l.applied(), full.applied(), "seed {seed}: recomputed");
        assert_eq!(nonzero(&l), nonzero(&full), "seed {seed}: recomputed");
    }
    // What may undo applied transfers is no widening: a member's removal, a new limit.
    let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
    let before = ledger(&[&a, &b]).rules().clone();
    let mut removed = before.clone();
    removed.membership.insert(a.did().to_string(), vec![(0, 10)]);
    assert!(!before.only_added_to_by(&removed));
    let mut lowered = before.clone();
    lowered.currencies.get_mut(CURRENCY).unwrap().default_credit_limit = 1;
    assert!(!before.only_added_to_by(&lowered));
}

#[test]
fn a_recompute_reports_only_what_it_newly_applied() {
    let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
    let mut l = ledger(&[&a, &b]);
    let first = transfer(&a, &b, 10, 1, None, vec![], "one");
    assert_eq!(l.submit(first.clone()), Status::Applied);
    let over = transfer(&a, &b, 200, 2, Some(transfer_hash(&first)), vec![], "below the floor of -100");
    assert!(matches!(l.submit(over.clone()), Status::Refused(Refusal::Overdraft { .. })));
    l.take_changes();
    // A higher limit: every transfer is judged again, and only the one it lets through
    // is news; the one applied before is not reported again.
    let mut rules = l.rules().clone();
    rules.currencies.insert(CURRENCY.into(), CurrencyRules::flat(1_000));
    assert!(!l.rules().only_added_to_by(&rules));
    l.set_rules(rules);
    assert_eq!(l.status(&transfer_hash(&over)), Status::Applied);
    assert_eq!(l.take_changes().applied, vec![transfer_hash(&over)]);
}

/// Validators `v`, of which `quorum` certify, from time 0 on.
fn with_validators(mut l: Ledger, v: &[&NodeIdentity], quorum: u32) -> Ledger {
    let mut rules = l.rules().clone();
    rules.validators = vec![ValidatorSet {
        at_ms: 0,
        tie: [0; 32],
        validators: v.iter().map(|v| v.did().to_string()).collect(),
        quorum,
    }];
    l.set_rules(rules);
    l
}

fn place(t: &Transfer) -> Place {
    (t.currency.clone(), t.payer.clone(), t.payer_seq)
}

/// What reaches a node: a transfer, or a validator's vote for one.
#[derive(Clone)]
enum Event {
    Transfer(Transfer),
    Vote(String, Hash, Place),
}

fn take(l: &mut Ledger, e: Event) {
    match e {
        Event::Transfer(t) => {
            l.submit(t);
        }
        Event::Vote(v, h, p) => {
            l.add_vote(h, &v, p);
        }
    }
}

#[test]
fn a_certified_transfer_keeps_its_place_whatever_its_payer_signs_later_and_in_any_order() {
    let (a, b, c) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
    let vs: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
    let paid = transfer(&a, &b, 10, 1, None, vec![], "paid to b");
    let rival = transfer(&a, &c, 10, 1, None, vec![], "the claw-back");
    let next = transfer(&a, &b, 5, 2, Some(transfer_hash(&paid)), vec![], "after the certified one");
    let vote = |i: usize, t: &Transfer| Event::Vote(vs[i].did().to_string(), transfer_hash(t), place(t));
    let events = vec![
        Event::Transfer(paid.clone()),
        vote(0, &paid),
        vote(1, &paid),
        Event::Transfer(rival.clone()),
        Event::Transfer(next.clone()),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..40 {
        let mut order = events.clone();
        if round > 0 {
            order.shuffle(&mut rng);
        }
        let mut l = with_validators(ledger(&[&a, &b, &c]), &vs.iter().collect::<Vec<_>>(), 2);
        for e in order {
            take(&mut l, e);
        }
        assert_eq!(l.status(&transfer_hash(&paid)), Status::Applied, "round {round}: the certified one stands");
        assert!(l.is_certified(&transfer_hash(&paid)));
        assert_eq!(l.status(&transfer_hash(&rival)), Status::Quarantined, "round {round}: the rival moves nothing");
        assert_eq!(l.status(&transfer_hash(&next)), Status::Applied, "round {round}: the chain goes on");
        assert_eq!(l.balance(CURRENCY, b.did().as_str()), 15);
        assert_eq!(l.balance(CURRENCY, c.did().as_str()), 0);
        assert_eq!(l.quarantine(), vec![transfer_hash(&rival)], "round {round}");
        assert_eq!(l.forks().len(), 1, "the rival is still evidence of a fork");
    }
}

#[test]
fn votes_count_only_from_the_set_at_the_transfers_place_and_never_twice() {
    let (a, b, c) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
    let vs: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
    let outsider = NodeIdentity::generate();
    let paid = transfer(&a, &b, 10, 1, None, vec![], "paid");
    let rival = transfer(&a, &c, 10, 1, None, vec![], "rival");
    let (hp, hr) = (transfer_hash(&paid), transfer_hash(&rival));
    let mut l = with_validators(ledger(&[&a, &b, &c]), &vs.iter().collect::<Vec<_>>(), 2);
    l.submit(paid.clone());
    l.submit(rival.clone());
    assert_eq!(l.status(&hp), Status::Quarantined, "no certificate: a fork as before");
    // An outsider's vote, and a validator's vote naming another place, count for nothing.
    assert_eq!(l.add_vote(hp, outsider.did().as_str(), place(&paid)), VoteAdded::Added);
    let elsewhere = (CURRENCY.to_string(), a.did().to_string(), 9);
    l.add_vote(hp, vs[0].did().as_str(), elsewhere);
    assert_eq!(l.certificate(&hp), Some((0, 2)));
    // A validator that votes for both rivals counts for neither.
    l.add_vote(hp, vs[1].did().as_str(), place(&paid));
    l.add_vote(hr, vs[1].did().as_str(), place(&rival));
    assert_eq!(l.add_vote(hp, vs[1].did().as_str(), place(&paid)), VoteAdded::Known);
    let third = transfer(&a, &b, 11, 1, None, vec![], "a third");
    assert_eq!(l.add_vote(transfer_hash(&third), vs[1].did().as_str(), place(&third)), VoteAdded::Excess);
    l.add_vote(hp, vs[2].did().as_str(), place(&paid));
    assert_eq!(l.certificate(&hp), Some((1, 2)), "only the honest validator's vote counts");
    assert_eq!(l.status(&hp), Status::Quarantined);
    // One more honest vote (vs[0] at the right place) certifies it: it now applies.
    l.add_vote(hp, vs[0].did().as_str(), place(&paid));
    assert_eq!(l.certificate(&hp), Some((2, 2)));
    assert_eq!(l.status(&hp), Status::Applied);
    assert_eq!(l.status(&hr), Status::Quarantined);
    // A set that starts after the transfer's time certifies nothing of it.
    let mut later = l.rules().clone();
    later.validators[0].at_ms = 1;
    l.set_rules(later);
    assert_eq!(l.certificate(&hp), None);
    assert_eq!(l.status(&hp), Status::Quarantined, "without its certificate, a fork as before");
}

#[test]
fn replicas_agree_with_votes_and_forks_in_any_order() {
    let vs: Vec<NodeIdentity> = (0..4).map(|_| NodeIdentity::generate()).collect();
    let mut won = 0;
    for seed in 0..60 {
        let (members, transfers) = history(seed);
        let mut rng = StdRng::seed_from_u64(seed + 5000);
        // Validators vote for what they saw first at each place; one of them is
        // dishonest and sometimes votes for a rival too.
        let mut events: Vec<Event> = transfers.iter().cloned().map(Event::Transfer).collect();
        let mut first_at: HashMap<Place, Hash> = HashMap::new();
        for t in &transfers {
            first_at.entry(place(t)).or_insert(transfer_hash(t));
        }
        for t in &transfers {
            let h = transfer_hash(t);
            for (i, v) in vs.iter().enumerate() {
                let honest_choice = first_at[&place(t)] == h;
                if (honest_choice && rng.gen_bool(0.8)) || (i == 3 && rng.gen_bool(0.3)) {
                    events.push(Event::Vote(v.did().to_string(), h, place(t)));
                }
            }
        }
        let replicas: Vec<Ledger> = (0..3)
            .map(|_| {
                let mut order = events.clone();
                order.shuffle(&mut rng);
                let mut l =
                    with_validators(ledger(&members.iter().collect::<Vec<_>>()), &vs.iter().collect::<Vec<_>>(), 3);
                for e in order {
                    take(&mut l, e);
                }
                l
            })
            .collect();
        let reference = &replicas[0];
        won += reference.forks().values().filter(|h| h.iter().any(|h| reference.is_applied(h))).count();
        for (i, r) in replicas.iter().enumerate() {
            assert_eq!(r.applied(), reference.applied(), "seed {seed}: replica {i}");
            assert_eq!(r.quarantine(), reference.quarantine(), "seed {seed}: replica {i}");
            assert_eq!(r.balances().values().sum::<i128>(), 0, "seed {seed}");
            for m in &members {
                assert!(r.balance(CURRENCY, m.did().as_str()) >= -(LIMIT as i128), "seed {seed}");
            }
            // At most one transfer per place applies.
            let mut places = std::collections::HashSet::new();
            for h in r.applied() {
                assert!(places.insert(place(&r.transfer(&h).unwrap())), "seed {seed}: two applied at one place");
            }
        }
    }
    assert!(won > 0, "some forks were won by a certified transfer");
}
