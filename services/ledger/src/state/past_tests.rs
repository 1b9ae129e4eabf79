//! A node whose applied transfers leave memory for its RocksDB store answers every read
//! as a node holding everything does: each transfer's record (status, arrival,
//! application), every account, every account's history page by page, the statistics
//! and forks; after a restart (a replay, then letting go of what the store holds); and
//! after an upgrade from a store written before the past existed; a transfer a
//! recompute undid keeps when it first applied; and a past the disk corrupted fails a
//! load and the committer's reads loudly. Tests only.

use super::tests::{history, CURRENCIES};
use super::{Checked, GroupWrite, Source, State};
use crate::store::{Store, COLUMN_FAMILIES};
use icn_ledger_records::Hash;
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerEntry};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn store(dir: &std::path::Path) -> Store {
    Store::new(icn_storage::Storage::open(dir, COLUMN_FAMILIES).unwrap())
}

/// Everything a reader can ask of one cooperative, as text to compare.
fn reads(state: &State, c: &str, members: &[icn_identity::NodeIdentity], hashes: &[Hash]) -> String {
    let coop = &state.coops[c];
    let mut out = String::new();
    for h in hashes {
        out += &format!("{} {:?}\n", coop.knows(h), coop.knows(h).then(|| coop.record(h)));
    }
    for currency in CURRENCIES {
        for m in members {
            let did = m.did().as_str();
            out += &format!("{:?}\n", coop.account(c, currency, did, 0, usize::MAX));
            // Page by page, three at a time.
            let mut before = 0;
            loop {
                let (page, next) = coop.history(currency, did, before, true, 3).unwrap();
                out += &format!("{:?}\n", page.iter().map(|r| (hex(&r.hash), r.status)).collect::<Vec<_>>());
                match next {
                    Some(p) => before = p,
                    None => break,
                }
            }
            out += &format!("{:?}\n", coop.history(currency, did, 0, false, 1_000).unwrap().0.len());
        }
    }
    out + &format!("{:?}\n{:?}", coop.stats(c, 0), coop.quarantine())
}

/// Equal reads, or the first line that differs.
fn same(got: &str, expected: &str, what: &str) {
    for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
        assert_eq!(g, e, "{what}: line {i} differs");
    }
    assert_eq!(got.lines().count(), expected.lines().count(), "{what}");
}

fn hex(h: &[u8]) -> String {
    h.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_node_that_retires_to_its_store_reads_as_one_holding_everything_and_after_a_restart() {
    for seed in 0..12 {
        let (c, _, members, entries) = history(seed);
        let hashes: Vec<Hash> = entries
            .iter()
            .filter_map(|b| if let Body::Transfer(t) = b { Some(icn_ledger_records::hash(t)) } else { None })
            .collect();
        let mut rng = StdRng::seed_from_u64(seed + 31);
        let mut order = entries.clone();
        order.shuffle(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (mut reference, mut live) = (State::default(), State::default());
        let write = live.attach_past(&store).unwrap();
        assert!(write.past_current, "a new store is marked current");
        store.write(&write).unwrap();
        let mut now = 1_000;
        let mut retired = 0;
        while !order.is_empty() {
            let n = rng.gen_range(1..=order.len().min(8));
            let group: Vec<LedgerEntry> = order.drain(..n).map(|b| LedgerEntry { body: Some(b) }).collect();
            now += rng.gen_range(1..50);
            let mut write = GroupWrite::default();
            reference.apply(Checked::verify_all(group.clone()), Source::Peer { position: 0 }, now, &mut write);
            let mut write = GroupWrite::default();
            live.apply(Checked::verify_all(group), Source::Peer { position: 0 }, now, &mut write);
            live.retire(&mut write);
            retired += write.retired.iter().map(|(_, r, _)| r.applied.len()).sum::<usize>();
            store.write(&write).unwrap();
            assert_eq!(store.take_read_failure(), None);
        }
        assert!(retired > 0, "seed {seed}: transfers were retired");
        // Every entry again, as peers resend them: the retired ones are found in the
        // store (a node skips it only for a transfer above its payer's chain, which
        // cannot be retired), so nothing is journalled twice.
        let mut again = entries.clone();
        again.shuffle(&mut rng);
        let reads_before = store.past_reads().get();
        for group in again.chunks(5) {
            let group: Vec<LedgerEntry> = group.iter().cloned().map(|b| LedgerEntry { body: Some(b) }).collect();
            let mut write = GroupWrite::default();
            live.apply(Checked::verify_all(group), Source::Peer { position: 0 }, now, &mut write);
            let journalled: Vec<_> = write
                .journal
                .iter()
                .filter_map(|(_, r)| match r.entry.as_ref()?.body.as_ref()? {
                    Body::Transfer(t) => Some(hex(&icn_ledger_records::hash(t))),
                    _ => None,
                })
                .collect();
            assert!(journalled.is_empty(), "seed {seed}: transfers stored twice: {journalled:?}");
            live.retire(&mut write);
            store.write(&write).unwrap();
        }
        assert!(store.past_reads().get() > reads_before, "seed {seed}: the retired transfers were looked up");
        let held = live.coops[&c].engine.transfers().count();
        assert!(held < reference.coops[&c].engine.transfers().count(), "seed {seed}: memory holds less");
        let expected = reads(&reference, &c, &members, &hashes);
        same(&reads(&live, &c, &members, &hashes), &expected, &format!("seed {seed}: live"));

        // A restart: loaded from the store, the journal not replayed.
        assert!(store.past_is_current().unwrap());
        let restarted = State::load(&store, now).unwrap();
        assert_eq!(restarted.version, live.version);
        assert_eq!(restarted.coops[&c].engine.transfers().count(), held, "seed {seed}: held as before");
        same(&reads(&restarted, &c, &members, &hashes), &expected, &format!("seed {seed}: restarted"));

        // An upgrade: the same journal in a store without the past's rows.
        let old = tempfile::tempdir().unwrap();
        let upgraded = self::store(old.path());
        let journal = store.journal_after(0, usize::MAX).unwrap();
        let mut write = GroupWrite { version: live.version, ..Default::default() };
        write.journal = journal;
        upgraded.write(&write).unwrap();
        assert!(!upgraded.past_is_current().unwrap());
        // Its journal replayed, as a start-up of a store from before the past does.
        let mut state = State::default();
        for (position, record) in upgraded.journal_after(0, usize::MAX).unwrap() {
            let body = record.entry.and_then(|e| e.body).map(Checked::trusted);
            state.replay_record(position, record.received_at_ms, body, now);
        }
        let write = state.attach_past(&upgraded).unwrap();
        assert!(!write.stored.is_empty() && write.past_current);
        upgraded.write(&write).unwrap();
        assert!(upgraded.past_is_current().unwrap());
        same(&reads(&state, &c, &members, &hashes), &expected, &format!("seed {seed}: upgraded"));
        // And loaded at its next start.
        let loaded = State::load(&upgraded, now).unwrap();
        same(&reads(&loaded, &c, &members, &hashes), &expected, &format!("seed {seed}: upgraded, then loaded"));
    }
}

#[test]
fn a_past_the_disk_corrupted_stops_a_load_with_an_error_and_fails_the_committers_reads() {
    let (c, _, _, entries) = history(3);
    let hashes: Vec<Hash> = entries
        .iter()
        .filter_map(|b| if let Body::Transfer(t) = b { Some(icn_ledger_records::hash(t)) } else { None })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let now = 1_000;
    let (known, (table, data_bytes)): (Vec<&Hash>, (String, usize)) = {
        let storage = icn_storage::Storage::open(dir.path(), COLUMN_FAMILIES).unwrap();
        let store = Store::new(storage.clone());
        let mut live = State::default();
        store.write(&live.attach_past(&store).unwrap()).unwrap();
        for group in entries.chunks(8) {
            let group: Vec<LedgerEntry> = group.iter().map(|b| LedgerEntry { body: Some(b.clone()) }).collect();
            let mut write = GroupWrite::default();
            live.apply(Checked::verify_all(group), Source::Peer { position: 0 }, now, &mut write);
            live.retire(&mut write);
            store.write(&write).unwrap();
        }
        let loaded = State::load(&store, now).expect("a sound store loads");
        let coop = &loaded.coops[&c];
        let known = hashes.iter().filter(|h| coop.knows(h)).collect();
        storage.flush().unwrap();
        let files = storage.db().live_files().unwrap();
        let past: Vec<String> =
            files.into_iter().filter(|f| f.column_family_name == crate::store::past::PAST).map(|f| f.name).collect();
        assert_eq!(past.len(), 1, "one flush, one table of the past");
        // Where its data blocks end (the index, filter and footer follow).
        let cf = storage.cf(crate::store::past::PAST).unwrap();
        let properties = storage.db().property_value_cf(cf, "rocksdb.aggregated-table-properties").unwrap().unwrap();
        let data = properties.split("; ").find_map(|p| p.strip_prefix("data block size=")).unwrap().parse().unwrap();
        (known, (past[0].clone(), data))
    };
    // The disk flips a byte every 256 inside the table's data blocks (its index, filters
    // and footer stay sound, so the store still opens): every row of the past is unreadable.
    let path = dir.path().join(table.trim_start_matches('/'));
    let mut bytes = std::fs::read(&path).unwrap();
    for at in (16..data_bytes.saturating_sub(16)).step_by(256) {
        bytes[at] ^= 0xa5;
    }
    std::fs::write(&path, bytes).unwrap();
    let store = store(dir.path());
    let err = State::load(&store, now).err().expect("a load of a corrupted past fails rather than guessing");
    assert!(err.to_string().to_lowercase().contains("corrupt"), "{err}");

    // The committer's reads: none of a stored transfer's rows can be read, and each such
    // read is remembered (so the group judged meanwhile is not written) rather than
    // answered as "not stored".
    let mut state = State { past: Some(store.clone()), ..State::default() };
    let coop = state.coop_entry(&c);
    assert!(!known.is_empty());
    for hash in &known {
        assert!(!coop.knows(hash), "{}: read from a corrupted block", hex(&hash[..]));
        let failure = store.take_read_failure().unwrap_or_else(|| panic!("{}: no failure remembered", hex(&hash[..])));
        assert!(failure.to_lowercase().contains("corrupt"), "{failure}");
    }
}

#[test]
fn a_transfer_a_recompute_undid_keeps_when_it_first_applied_once_it_applies_again() {
    use icn_ledger_records::{next_transfer, sign, Payment};
    use icn_proto::ledger::v1::CreditLimit;
    let founder = icn_identity::NodeIdentity::generate();
    let members: Vec<_> = (0..3).map(|_| icn_identity::NodeIdentity::generate()).collect();
    let (c, admin) = super::tests::admin_entries(&founder, &members);
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (mut memory, mut retiring) = (State::default(), State::default());
    store.write(&retiring.attach_past(&store).unwrap()).unwrap();
    // Each group to both nodes at the same time; the retiring one writes its past.
    let apply = |memory: &mut State, retiring: &mut State, entries: Vec<Body>, now: i64| {
        let entries: Vec<LedgerEntry> = entries.into_iter().map(|b| LedgerEntry { body: Some(b) }).collect();
        memory.apply(
            Checked::verify_all(entries.clone()),
            Source::Peer { position: 0 },
            now,
            &mut GroupWrite::default(),
        );
        let mut write = GroupWrite::default();
        retiring.apply(Checked::verify_all(entries), Source::Peer { position: 0 }, now, &mut write);
        retiring.retire(&mut write);
        store.write(&write).unwrap();
        assert_eq!(store.take_read_failure(), None);
    };
    apply(&mut memory, &mut retiring, admin, 10);
    let (payer, payee) = (&members[1], &members[2]);
    let account = memory.coops[&c].account(&c, "meals", payer.did().as_str(), 0, 64);
    let payment = Payment {
        coop_id: &c,
        currency: "meals",
        payee: payee.did().as_str(),
        amount: 80,
        memo: "",
        idempotency_id: "",
    };
    let t = next_transfer(payer, &account, &payment, 100);
    let hash = icn_ledger_records::hash(&t);
    let limit = |limit: i64, at: i64| {
        Body::Limit(sign(
            &founder,
            CreditLimit {
                coop_id: c.clone(),
                currency: "meals".into(),
                member: payer.did().to_string(),
                limit,
                created_at_ms: at,
                ..Default::default()
            },
        ))
    };
    let status = |s: &State| s.coops[&c].record(&hash);
    apply(&mut memory, &mut retiring, vec![Body::Transfer(t)], 1_000);
    assert_eq!(status(&retiring).applied_at_ms, 1_000, "applied, then retired to the store");
    // A lower limit, timed before the transfer, undoes it...
    apply(&mut memory, &mut retiring, vec![limit(50, 50)], 2_000);
    let applied = icn_proto::ledger::v1::TransferStatus::Applied as i32;
    assert_ne!(status(&memory).status, applied);
    assert_ne!(status(&retiring).status, applied);
    // ...and a higher one after it applies it again: first applied at 1,000 on both.
    apply(&mut memory, &mut retiring, vec![limit(100, 60)], 3_000);
    for (node, s) in [("memory", &memory), ("retiring", &retiring)] {
        let record = status(s);
        assert_eq!((record.status, record.applied_at_ms), (applied, 1_000), "{node}");
    }
}
