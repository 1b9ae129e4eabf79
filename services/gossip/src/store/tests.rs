//! The store on its own, on a temporary RocksDB: ordering, replays, pruning, reopening
//! and ACLs, without processes or a network.

use super::*;
use crate::GossipError;
use icn_gossip_records::{sign_entry, sign_topic};
use icn_identity::NodeIdentity;
use icn_proto::gossip::v1::{acl, Acl, RejectionReason, TopicScope};

fn open(dir: &std::path::Path) -> Store {
    let config = icn_config::IcnConfig::default();
    let metrics = StoreMetrics::new(&prometheus::Registry::new());
    Store::open(Storage::open(dir, COLUMN_FAMILIES).unwrap(), config.topics, config.network.trust, metrics).unwrap()
}

fn topic(creator: &NodeIdentity, name: &str, acl: acl::Rule, max_entries: u64) -> Topic {
    sign_topic(
        creator,
        Topic { name: name.into(), acl: Some(Acl { rule: Some(acl) }), max_entries, revision: 1, ..Default::default() },
    )
}

fn public() -> acl::Rule {
    acl::Rule::Public(acl::Public {})
}

#[test]
fn entries_arriving_out_of_order_are_held_until_the_gap_fills_then_stored_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let author = NodeIdentity::generate();
    futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 0))).unwrap();
    let e = |seq| sign_entry(&author, "t", seq, format!("e{seq}").as_bytes(), 1024, 0);
    assert_eq!(store.apply_blocking(e(3), 0).unwrap(), Applied::Held);
    assert_eq!(store.apply_blocking(e(2), 0).unwrap(), Applied::Held);
    assert_eq!(store.version_vector("t").get(author.did().as_str()), None);
    let Applied::Stored(stored) = store.apply_blocking(e(1), 0).unwrap() else { panic!("stored") };
    let order: Vec<(u64, u64)> = stored.iter().map(|s| (s.entry.as_ref().unwrap().seq, s.position)).collect();
    assert_eq!(order, [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(store.version_vector("t")[author.did().as_str()], 3);
    assert!(matches!(store.apply_blocking(e(2), 0).unwrap(), Applied::Duplicate(_)));
}

#[test]
fn a_different_entry_at_a_held_sequence_is_kept_as_evidence_and_at_a_pruned_one_is_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let author = NodeIdentity::generate();
    {
        let store = open(dir.path());
        futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 2))).unwrap();
        store.apply_blocking(sign_entry(&author, "t", 1, b"first", 1024, 0), 0).unwrap();
        let err = store.apply_blocking(sign_entry(&author, "t", 1, b"second", 1024, 0), 7).unwrap_err();
        assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::Equivocation, .. }), "{err}");
        // Entries 2 and 3 prune entry 1 (the topic keeps two): a rival of a pruned entry
        // cannot be proven against it, and is a replay.
        for seq in [2, 3] {
            store.apply_blocking(sign_entry(&author, "t", seq, b"x", 1024, 0), 0).unwrap();
        }
        let err = store.apply_blocking(sign_entry(&author, "t", 1, b"third", 1024, 0), 0).unwrap_err();
        assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::Replay, .. }), "{err}");
    }
    // The evidence survives reopening, whole.
    let store = open(dir.path());
    let (kept, _) = store.equivocations("t", &[], 10).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].held.as_ref().unwrap().payload, b"first");
    assert_eq!(kept[0].conflicting.as_ref().unwrap().payload, b"second");
    assert_eq!(kept[0].detected_at_ms, 7);
    assert!(store.equivocations("other", &[], 10).unwrap().0.is_empty());
}

#[test]
fn evidence_is_kept_up_to_its_bound_and_counted_beyond() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = icn_config::IcnConfig::default();
    config.topics.max_equivocations = 2;
    let metrics = StoreMetrics::new(&prometheus::Registry::new());
    let store =
        Store::open(Storage::open(dir.path(), COLUMN_FAMILIES).unwrap(), config.topics, config.network.trust, metrics)
            .unwrap();
    let author = NodeIdentity::generate();
    futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 0))).unwrap();
    for seq in 1..=3 {
        store.apply_blocking(sign_entry(&author, "t", seq, b"a", 1024, 0), 0).unwrap();
        assert!(store.apply_blocking(sign_entry(&author, "t", seq, b"b", 1024, 0), 0).is_err());
    }
    assert_eq!(store.equivocations("t", &[], 10).unwrap().0.len(), 2);
    assert_eq!(store.metrics.equivocations.get(), 3);
    assert_eq!(store.metrics.equivocations_refused.get(), 1);
}

#[test]
fn everything_survives_reopening_and_pruning_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let author = NodeIdentity::generate();
    {
        let store = open(dir.path());
        futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 3))).unwrap();
        for seq in 1..=5 {
            store.apply_blocking(sign_entry(&author, "t", seq, b"x", 1024, 0), 0).unwrap();
        }
        store.apply_blocking(sign_entry(&author, "t", 7, b"held", 1024, 0), 0).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.span("t"), (3, 5));
    assert_eq!(store.version_vector("t")[author.did().as_str()], 5);
    let kept: Vec<u64> =
        store.entries_after("t", 0, 10).unwrap().iter().map(|s| s.entry.as_ref().unwrap().seq).collect();
    assert_eq!(kept, [3, 4, 5]);
    // The held entry survived too: filling the gap releases it.
    let Applied::Stored(stored) = store.apply_blocking(sign_entry(&author, "t", 6, b"x", 1024, 0), 0).unwrap() else {
        panic!()
    };
    assert_eq!(stored.len(), 2);
    // A pruned entry is still known: it is not stored again.
    assert!(store.apply_blocking(sign_entry(&author, "t", 1, b"x", 1024, 0), 0).is_err());
}

#[test]
fn private_topics_are_invisible_and_unwritable_to_non_participants() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b, c) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
    let participants =
        acl::Rule::Participants(acl::Participants { dids: vec![a.did().to_string(), b.did().to_string()] });
    futures::executor::block_on(store.put_topic(topic(&a, "private", participants, 0))).unwrap();
    assert!(store.topic("private", &Reader::Did(b.did().clone())).is_ok());
    assert!(matches!(store.topic("private", &Reader::Did(c.did().clone())), Err(GossipError::NotFound(_))));
    assert!(store.topic("private", &Reader::Anonymous).is_err());
    assert!(store.topics(&Reader::Did(c.did().clone())).is_empty());
    let err = store.apply_blocking(sign_entry(&c, "private", 1, b"let me in", 1024, 0), 0).unwrap_err();
    assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::AclViolation, .. }), "{err}");
    let err = store.apply_blocking(sign_entry(&a, "nowhere", 1, b"x", 1024, 0), 0).unwrap_err();
    assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::UnknownTopic, .. }), "{err}");
}

#[test]
fn a_peers_copy_of_a_reserved_topic_is_taken_only_with_its_pinned_settings_and_never_replaces_one() {
    // The path peers' announcements and snapshot restores take (upsert), beside the
    // API's (put), which the gateway's trust tests attack through a real node.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (node, mallory) = (NodeIdentity::generate(), NodeIdentity::generate());
    let pinned = |who: &NodeIdentity| {
        sign_topic(
            who,
            Topic {
                name: "ledger/bakery-x".into(),
                acl: Some(Acl { rule: Some(public()) }),
                max_entries: u64::MAX,
                scope: TopicScope::Network as i32,
                revision: 1,
                ..Default::default()
            },
        )
    };
    let squat = topic(&mallory, "ledger/bakery-x", public(), 1);
    let err = store.upsert_topic_blocking(squat).unwrap_err();
    assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::ReservedTopic, .. }), "{err}");
    assert!(store.upsert_topic_blocking(pinned(&node)).unwrap());
    // Another signer's identical copy is the same topic: no change, no refusal.
    assert!(!store.upsert_topic_blocking(pinned(&mallory)).unwrap());
    let held = store.topic("ledger/bakery-x", &Reader::Anonymous).unwrap();
    assert_eq!((held.creator.as_str(), held.max_entries), (node.did().as_str(), u64::MAX));
    assert_eq!(store.rejections(RejectionReason::ReservedTopic), 1);
}

#[test]
fn a_repair_reads_an_authors_history_in_chunks_of_bounded_bytes() {
    // What a digest with empty heads asks for: the whole history. It is read a chunk
    // at a time, each stopping at the byte bound, and the chunks cover it exactly.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let author = NodeIdentity::generate();
    futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 0))).unwrap();
    for seq in 1..=50 {
        store.apply_blocking(sign_entry(&author, "t", seq, &[seq as u8; 1000], usize::MAX, 0), 0).unwrap();
    }
    let (mut next, mut chunks, mut seen) = (1, 0, Vec::new());
    while next <= 50 {
        let chunk = store.entries_of("t", author.did().as_str(), next, 50, 4096).unwrap();
        let bytes: usize = chunk.iter().map(|e| e.encoded_len()).sum();
        assert!(bytes < 4096 + 1200, "a chunk stops at the entry that reaches the bound: {bytes}");
        next = chunk.last().unwrap().seq + 1;
        seen.extend(chunk.iter().map(|e| e.seq));
        chunks += 1;
    }
    assert_eq!(seen, (1..=50).collect::<Vec<u64>>());
    assert!(chunks >= 10, "{chunks} chunks");
    // A bound smaller than one entry still makes progress.
    assert_eq!(store.entries_of("t", author.did().as_str(), 7, 50, 1).unwrap().len(), 1);
}
