//! The store on its own, on a temporary RocksDB: ordering, replays, pruning, reopening
//! and ACLs, without processes or a network.

use super::*;
use crate::GossipError;
use icn_gossip_records::{sign_entry, sign_topic};
use icn_identity::NodeIdentity;
use icn_proto::gossip::v1::{acl, Acl, RejectionReason};

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
fn a_different_entry_at_a_known_sequence_is_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let author = NodeIdentity::generate();
    futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 0))).unwrap();
    store.apply_blocking(sign_entry(&author, "t", 1, b"first", 1024, 0), 0).unwrap();
    let err = store.apply_blocking(sign_entry(&author, "t", 1, b"second", 1024, 0), 0).unwrap_err();
    assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::Replay, .. }), "{err}");
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
