//! The whole state's property: nodes that receive the same admin entries and transfers
//! in any order and in groups of any size, with duplicates, forks and forged
//! signatures, end with the same applied set and balances, every balance at or above
//! the floor in force when its transfers were signed.
//!
//! Tests only: nothing here is compiled into the service.

use super::{Checked, GroupWrite, Source, State};
use icn_identity::NodeIdentity;
use icn_ledger_records::{next_transfer, sign, Payment};
use icn_proto::ledger::v1::{Coop, CreditLimit, Currency, MemberAdmission, MemberRole};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerEntry};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const CURRENCIES: [&str; 2] = ["hours", "meals"];
const LIMIT: i64 = 100;

/// The cooperative's admin entries, with an outsider's attempt at taking it over mixed
/// in: a backdated founding record of the same id signed by the outsider (what took over
/// a cooperative before ids were bound), its admission of itself as an admin and its
/// own currency with a far lower floor. None of it may count, in any order.
fn admin_entries(founder: &NodeIdentity, members: &[NodeIdentity]) -> (String, Vec<Body>) {
    let genesis = icn_ledger_records::coop::found(founder, "c", "C", 0).unwrap();
    let c = genesis.id.clone();
    let outsider = NodeIdentity::generate();
    let mut out = vec![
        Body::Coop(genesis.clone()),
        Body::Coop(sign(&outsider, Coop { created_at_ms: 0, signature: Vec::new(), ..genesis })),
        Body::Admission(sign(
            &outsider,
            MemberAdmission {
                coop_id: c.clone(),
                member: outsider.did().to_string(),
                role: MemberRole::Admin as i32,
                ..Default::default()
            },
        )),
        Body::Currency(sign(
            &outsider,
            Currency {
                coop_id: c.clone(),
                symbol: "hours".into(),
                default_credit_limit: 1 << 40,
                ..Default::default()
            },
        )),
    ];
    for m in members {
        out.push(Body::Admission(sign(
            founder,
            MemberAdmission {
                coop_id: c.clone(),
                member: m.did().to_string(),
                role: MemberRole::Member as i32,
                ..Default::default()
            },
        )));
    }
    for symbol in CURRENCIES {
        out.push(Body::Currency(sign(
            founder,
            Currency { coop_id: c.clone(), symbol: symbol.into(), default_credit_limit: LIMIT, ..Default::default() },
        )));
    }
    // A limit raised for member 0 in "hours" from t = 500 on.
    out.push(Body::Limit(sign(
        founder,
        CreditLimit {
            coop_id: c.clone(),
            currency: "hours".into(),
            member: members[0].did().to_string(),
            limit: 300,
            created_at_ms: 500,
            ..Default::default()
        },
    )));
    (c, out)
}

/// A random history as members' clients write it, judged by one node that sees
/// everything in order, plus forks and forged signatures.
fn history(seed: u64) -> (String, NodeIdentity, Vec<NodeIdentity>, Vec<Body>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let founder = NodeIdentity::generate();
    let members: Vec<NodeIdentity> = (0..5).map(|_| NodeIdentity::generate()).collect();
    let (c, mut entries) = admin_entries(&founder, &members);
    let mut truth = State::default();
    let checked = entries.iter().cloned().map(Checked::trusted).collect();
    truth.apply(checked, Source::Peer, 0, &mut GroupWrite::default());
    for k in 0..80 {
        let p = rng.gen_range(0..members.len());
        let q = (p + rng.gen_range(1..members.len())) % members.len();
        let currency = CURRENCIES[rng.gen_range(0..2)];
        let coop = &truth.coops[&c];
        let account = coop.account(&c, currency, members[p].did().as_str(), 0, 64);
        let payment = Payment {
            coop_id: &c,
            currency,
            payee: members[q].did().as_str(),
            amount: rng.gen_range(1..90),
            memo: "",
            idempotency_id: "",
        };
        let mut t = next_transfer(&members[p], &account, &payment, k * 10);
        if rng.gen_bool(0.04) {
            t.signature[3] ^= 1;
        }
        if rng.gen_bool(0.05) {
            let mut rival = t.clone();
            rival.memo = format!("fork {k}");
            entries.push(Body::Transfer(sign(&members[p], rival)));
        }
        entries.push(Body::Transfer(t.clone()));
        let checked = Checked::verify_all(vec![LedgerEntry { body: Some(Body::Transfer(t)) }]);
        truth.apply(checked, Source::Peer, 0, &mut GroupWrite::default());
    }
    (c, founder, members, entries)
}

fn deliver(entries: &[Body], rng: &mut StdRng) -> State {
    let mut order: Vec<Body> = entries.to_vec();
    for e in entries {
        if rng.gen_bool(0.3) {
            order.push(e.clone());
        }
    }
    order.shuffle(rng);
    let mut state = State::default();
    // Peers' entries arrive in groups of random size.
    while !order.is_empty() {
        let n = rng.gen_range(1..=order.len().min(8));
        let group: Vec<LedgerEntry> = order.drain(..n).map(|b| LedgerEntry { body: Some(b) }).collect();
        state.apply(Checked::verify_all(group), Source::Peer, 0, &mut GroupWrite::default());
    }
    state
}

#[test]
fn nodes_agree_whatever_the_order_of_admin_entries_and_transfers() {
    for seed in 0..40 {
        let (c, founder, members, entries) = history(seed);
        let mut rng = StdRng::seed_from_u64(seed + 7);
        let replicas: Vec<State> = (0..3).map(|_| deliver(&entries, &mut rng)).collect();
        let reference = &replicas[0].coops[&c];
        assert!(!reference.engine.applied().is_empty(), "seed {seed}: transfers apply");
        for r in &replicas {
            let coop = &r.coops[&c];
            assert_eq!(coop.model.coop().map(|g| g.founder.as_str()), Some(founder.did().as_str()), "seed {seed}");
            assert_eq!(coop.model.members().count(), members.len() + 1, "seed {seed}: the outsider is not one");
            assert_eq!(coop.engine.applied(), reference.engine.applied(), "seed {seed}");
            assert_eq!(coop.engine.quarantine(), reference.engine.quarantine(), "seed {seed}");
            for currency in CURRENCIES {
                let sum: i128 = members.iter().map(|m| coop.engine.balance(currency, m.did().as_str())).sum();
                assert_eq!(sum, 0, "seed {seed}: {currency} sums to zero");
                for (i, m) in members.iter().enumerate() {
                    let floor = if i == 0 && currency == "hours" { -300 } else { -LIMIT } as i128;
                    let balance = coop.engine.balance(currency, m.did().as_str());
                    assert!(balance >= floor, "seed {seed}: {balance} below {floor}");
                    assert_eq!(balance, reference.engine.balance(currency, m.did().as_str()), "seed {seed}");
                }
            }
            // Applied once each: the replay of the applied set gives the balances.
            let replay = coop.engine.replay();
            for ((currency, member), b) in coop.engine.balances() {
                assert_eq!(replay.get(&(currency.clone(), member.clone())).copied().unwrap_or(0), *b, "seed {seed}");
            }
        }
    }
}
