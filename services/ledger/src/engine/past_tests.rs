//! An engine that retires what applied agrees with one that holds everything: same
//! status for every transfer, same balances, heads and forks, whatever the order, with
//! duplicates, forks and forged signatures — so a node's memory can shrink to what a new
//! transfer is judged against without changing a single outcome. Tests only: the past
//! here is a map, where the node's is its RocksDB store (`store::past`).

use super::tests::{deliver_to, history, ledger, transfer, CURRENCY};
use super::*;
use icn_identity::NodeIdentity;
use icn_ledger_records::signed::hash as transfer_hash;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap as StdMap;
use std::sync::Mutex;

/// A past as a store would keep it: stored transfers stay; what retirements wrote is
/// dropped on a wipe.
#[derive(Default)]
struct Kept {
    stored: StdMap<Hash, Arc<Transfer>>,
    applied: HashSet<Hash>,
    claims: StdMap<Hash, (Hash, u64)>,
    links: StdMap<(String, String, u64), Link>,
    unclaimed: std::collections::BTreeSet<(String, String, i64, Hash)>,
}

#[derive(Clone, Default)]
struct MapPast(Arc<Mutex<Kept>>);

impl Past for MapPast {
    fn applied(&self, hash: &Hash) -> Option<Arc<Transfer>> {
        let kept = self.0.lock().unwrap();
        kept.applied.contains(hash).then(|| Arc::clone(&kept.stored[hash]))
    }
    fn is_applied(&self, hash: &Hash) -> bool {
        self.0.lock().unwrap().applied.contains(hash)
    }
    fn claim(&self, dep: &Hash) -> Option<(Hash, u64)> {
        self.0.lock().unwrap().claims.get(dep).copied()
    }
    fn link(&self, currency: &str, payer: &str, seq: u64) -> Option<Link> {
        self.0.lock().unwrap().links.get(&(currency.to_string(), payer.to_string(), seq)).copied()
    }
    fn unclaimed(&self, currency: &str, member: &str) -> Vec<(i64, Hash)> {
        let kept = self.0.lock().unwrap();
        let of = |(c, m, _, _): &&(String, String, i64, Hash)| c == currency && m == member;
        kept.unclaimed.iter().filter(of).map(|(_, _, at, h)| (*at, *h)).collect()
    }
    fn each_stored(&self, f: &mut dyn FnMut(Hash, Arc<Transfer>)) {
        let stored: Vec<_> = self.0.lock().unwrap().stored.iter().map(|(h, t)| (*h, Arc::clone(t))).collect();
        for (h, t) in stored {
            f(h, t);
        }
    }
}

impl MapPast {
    /// What the node does after each group: write what the engine retired.
    fn write(&self, l: &mut Ledger) -> Retired {
        let retired = l.retire();
        let mut kept = self.0.lock().unwrap();
        if retired.wipe {
            kept.applied.clear();
            kept.claims.clear();
            kept.links.clear();
            kept.unclaimed.clear();
        }
        for row in &retired.unclaimed {
            kept.unclaimed.insert(row.clone());
        }
        for row in &retired.claimed {
            assert!(kept.unclaimed.remove(row), "a claimed row was stored: {row:?}");
        }
        for (hash, t) in &retired.applied {
            kept.stored.insert(*hash, Arc::clone(t));
            kept.applied.insert(*hash);
        }
        for (dep, by, seq) in &retired.claims {
            kept.claims.insert(*dep, (*by, *seq));
        }
        for (currency, payer, seq, link) in &retired.links {
            kept.links.insert((currency.clone(), payer.clone(), *seq), *link);
        }
        retired
    }
}

fn with_past(members: &[&NodeIdentity]) -> (Ledger, MapPast) {
    let mut l = ledger(members);
    let past = MapPast::default();
    l.attach_past(Box::new(past.clone()));
    (l, past)
}

/// What a reader sees of an engine, for every transfer of a history.
fn seen(l: &Ledger, members: &[NodeIdentity], transfers: &[Transfer]) -> String {
    let mut out = String::new();
    for t in transfers {
        out += &format!("{:?}\n", l.status(&transfer_hash(t)));
    }
    for m in members {
        let did = m.did().to_string();
        out += &format!("{} {:?} {}\n", l.balance(CURRENCY, &did), l.head(CURRENCY, &did), l.unapplied_of(&did));
        out += &format!("{:?}\n", l.unclaimed(CURRENCY, &did));
    }
    out + &format!("{:?} {:?} {}", l.forks(), l.quarantine(), l.held())
}

#[test]
fn an_engine_that_retires_what_applied_agrees_with_one_that_holds_everything() {
    let mut retired_something = 0;
    let mut wiped = 0;
    for seed in 0..100 {
        let (members, transfers) = history(seed);
        let mut rng = StdRng::seed_from_u64(seed + 7000);
        let mut order: Vec<Transfer> = transfers.clone();
        order.extend(transfers.iter().filter(|_| rng.gen_bool(0.3)).cloned());
        order.shuffle(&mut rng);
        let reference = deliver_to(ledger(&members.iter().collect::<Vec<_>>()), &order);
        let (mut l, past) = with_past(&members.iter().collect::<Vec<_>>());
        for t in &order {
            // Stored as a node stores it: what the engine keeps (not refused on its form).
            let hash = transfer_hash(t);
            if !matches!(l.submit(t.clone()), Status::Refused(r) if !r.is_stateful()) {
                past.0.lock().unwrap().stored.entry(hash).or_insert_with(|| Arc::new(t.clone()));
            }
            // Groups of random size, as a committer makes them.
            if rng.gen_bool(0.4) {
                let r = past.write(&mut l);
                retired_something += !r.applied.is_empty() as usize;
                wiped += r.wipe as usize;
            }
        }
        past.write(&mut l);
        assert_eq!(seen(&l, &members, &order), seen(&reference, &members, &order), "seed {seed}");
        assert!(l.known.values().all(|k| !k.applied), "seed {seed}: nothing applied is held once retired");
    }
    assert!(retired_something > 100, "transfers were retired ({retired_something} groups)");
    assert!(wiped > 5, "recomputes took the past back ({wiped})");
}

#[test]
fn a_fork_at_a_retired_place_takes_the_past_back_and_undoes_it() {
    let (a, b, c) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
    let (mut l, past) = with_past(&[&a, &b, &c]);
    let one = transfer(&a, &b, 10, 1, None, vec![], "one");
    let two = transfer(&a, &b, 10, 2, Some(transfer_hash(&one)), vec![], "two");
    let three = transfer(&a, &b, 10, 3, Some(transfer_hash(&two)), vec![], "three");
    for t in [&one, &two, &three] {
        past.0.lock().unwrap().stored.insert(transfer_hash(t), Arc::new(t.clone()));
        assert_eq!(l.submit(t.clone()), Status::Applied);
    }
    let r = past.write(&mut l);
    assert_eq!(r.applied.len(), 3);
    assert_eq!(r.links.len(), 3, "every link is written, the head too");
    assert_eq!(l.books[l.ids.get(CURRENCY, a.did().as_str()).unwrap() as usize].chain.len(), 1, "the head stays");
    assert!(l.known.is_empty());
    assert_eq!(l.head(CURRENCY, a.did().as_str()), Some((3, transfer_hash(&three))));
    assert_eq!(l.status(&transfer_hash(&one)), Status::Applied, "read from the past");
    // b spends what it was paid, naming a retired transfer as a dep; then tries twice.
    let spend = transfer(&b, &c, 105, 1, None, vec![transfer_hash(&one)], "spend");
    assert_eq!(l.submit(spend.clone()), Status::Applied);
    past.write(&mut l);
    let again = transfer(&b, &c, 5, 2, Some(transfer_hash(&spend)), vec![transfer_hash(&one)], "twice");
    assert!(matches!(l.submit(again), Status::Refused(Refusal::DepClaimed(_))), "the claim is read from the past");
    // A rival at a's retired second place: a fork, found and judged from the past.
    let rival = transfer(&a, &c, 10, 2, Some(transfer_hash(&one)), vec![], "rival");
    past.0.lock().unwrap().stored.insert(transfer_hash(&rival), Arc::new(rival.clone()));
    assert_eq!(l.submit(rival.clone()), Status::Quarantined);
    assert_eq!(l.status(&transfer_hash(&two)), Status::Quarantined, "the retired transfer is undone");
    assert_eq!(l.status(&transfer_hash(&three)), Status::Pending(vec!["payer transfer #2".into()]));
    assert_eq!(l.head(CURRENCY, a.did().as_str()), Some((1, transfer_hash(&one))));
    assert_eq!(l.balance(CURRENCY, b.did().as_str()), 10 - 105);
    let r = past.write(&mut l);
    assert!(r.wipe, "what the past held is dropped and written anew");
    assert_eq!(l.status(&transfer_hash(&two)), Status::Quarantined);
    assert_eq!(l.head(CURRENCY, a.did().as_str()), Some((1, transfer_hash(&one))));
    assert_eq!(l.status(&transfer_hash(&one)), Status::Applied);
}
