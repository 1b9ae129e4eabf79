//! The outbox's queues, bounds and in-memory tail against a real RocksDB.

use super::*;
use icn_identity::NodeIdentity;

fn store(dir: &std::path::Path) -> Storage {
    Storage::open(dir, &[OUTBOX_CF, OUTBOX_STATE_CF]).unwrap()
}

const LIMITS: Limits = Limits {
    max_messages: 3,
    max_bytes: 1 << 20,
    max_total_bytes: 1 << 30,
    tail_bytes: 1 << 20,
    commit: GroupLimits { backlog: 16, max_group: 16 },
};

#[tokio::test]
async fn queued_messages_and_sequence_numbers_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let peer = NodeIdentity::generate().did().clone();
    let epoch = {
        let outbox = Arc::new(Outbox::open(store(dir.path()), LIMITS, true).unwrap());
        assert_eq!(outbox.push(&peer, |seq| format!("m{seq}").into_bytes()).await.unwrap(), 1);
        assert_eq!(outbox.push(&peer, |seq| format!("m{seq}").into_bytes()).await.unwrap(), 2);
        outbox.ack(&peer, 1).await.unwrap();
        outbox.epoch().to_string()
    };
    let outbox = Arc::new(Outbox::open(store(dir.path()), LIMITS, true).unwrap());
    assert_eq!(outbox.epoch(), epoch);
    assert_eq!(outbox.depth(&peer), (1, 2));
    assert_eq!(outbox.read_after(&peer, 0, 10).await.unwrap(), vec![(2, Arc::new(b"m2".to_vec()))]);
    assert_eq!(outbox.push(&peer, |seq| format!("m{seq}").into_bytes()).await.unwrap(), 3);
}

#[tokio::test]
async fn a_full_queue_refuses_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(store(dir.path()), LIMITS, false).unwrap());
    let peer = NodeIdentity::generate().did().clone();
    for _ in 0..3 {
        outbox.push(&peer, |_| b"x".to_vec()).await.unwrap();
    }
    let err = outbox.push(&peer, |_| b"x".to_vec()).await.unwrap_err();
    assert!(matches!(err, NetError::QueueFull { .. }), "{err}");
    assert_eq!(outbox.read_after(&peer, 0, 10).await.unwrap().len(), 3);
    outbox.ack(&peer, 2).await.unwrap();
    assert_eq!(outbox.push(&peer, |_| b"x".to_vec()).await.unwrap(), 4);
}

#[tokio::test]
async fn peers_that_never_acknowledge_fill_no_more_than_the_node_wide_bound() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_messages: 1000, max_bytes: 1000, max_total_bytes: 2500, ..LIMITS };
    let outbox = Arc::new(Outbox::open(store(dir.path()), limits, false).unwrap());
    let peers: Vec<Did> = (0..3).map(|_| NodeIdentity::generate().did().clone()).collect();
    // Two peers take 1,000 bytes each, within their own bound; the third gets 500.
    for peer in &peers[..2] {
        for _ in 0..10 {
            outbox.push(peer, |_| vec![0; 100]).await.unwrap();
        }
    }
    for _ in 0..5 {
        outbox.push(&peers[2], |_| vec![0; 100]).await.unwrap();
    }
    let err = outbox.push(&peers[2], |_| vec![0; 100]).await.unwrap_err();
    assert!(matches!(err, NetError::QueueFull { bound: "node_bytes", .. }), "{err}");
    assert!(err.to_string().contains("network.outbox_max_bytes"), "{err}");
    // Nothing accepted was dropped; an acknowledgement makes room, also after reopening.
    assert_eq!(outbox.read_after(&peers[2], 0, 100).await.unwrap().len(), 5);
    outbox.ack(&peers[0], 3).await.unwrap();
    for _ in 0..3 {
        outbox.push(&peers[2], |_| vec![0; 100]).await.unwrap();
    }
    // The total is read back at open: still full.
    drop(outbox);
    let outbox = Arc::new(Outbox::open(store(dir.path()), limits, false).unwrap());
    assert!(matches!(
        outbox.push(&peers[0], |_| vec![0; 100]).await,
        Err(NetError::QueueFull { bound: "node_bytes", .. })
    ));
}

#[tokio::test]
async fn committed_messages_are_read_from_the_tail_and_from_the_store_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    // Room in memory for two messages of 10 bytes.
    let limits = Limits { max_messages: 100, tail_bytes: 25, ..LIMITS };
    let outbox = Arc::new(Outbox::open(store(dir.path()), limits, false).unwrap());
    let peer = NodeIdentity::generate().did().clone();
    let frame = |seq: u64| format!("message {seq:02}").into_bytes();
    for _ in 0..2 {
        outbox.push(&peer, frame).await.unwrap();
    }
    let tail = |outbox: &Outbox| {
        let queues = outbox.queues.lock().unwrap();
        let q = &queues[&peer];
        (q.tail.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), q.committed)
    };
    // The committer marked both committed; both are in memory.
    assert_eq!(tail(&outbox), (vec![1, 2], 2));
    let all: Vec<(u64, Framed)> = (1..=2).map(|s| (s, Arc::new(frame(s)))).collect();
    assert_eq!(outbox.read_after(&peer, 0, 10).await.unwrap(), all);
    // A third does not fit: the tail empties (it must stay a run), and reads go to the
    // store, which holds every message.
    outbox.push(&peer, frame).await.unwrap();
    assert_eq!(tail(&outbox).0, Vec::<u64>::new());
    assert_eq!(outbox.read_after(&peer, 0, 10).await.unwrap().len(), 3);
    // The tail fills again from the next one; a reader behind it still reads the store.
    outbox.push(&peer, frame).await.unwrap();
    assert_eq!(tail(&outbox).0, vec![4]);
    let read: Vec<u64> = outbox.read_after(&peer, 1, 10).await.unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(read, [2, 3, 4]);
    assert_eq!(outbox.read_after(&peer, 3, 10).await.unwrap(), vec![(4, Arc::new(frame(4)))]);
    // An acknowledgement drops what it covers from memory too.
    outbox.ack(&peer, 4).await.unwrap();
    assert_eq!(tail(&outbox).0, Vec::<u64>::new());
    assert!(outbox.read_after(&peer, 4, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_group_of_sends_to_one_peer_stores_its_newest_queue_state() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_messages: 100, commit: GroupLimits { backlog: 64, max_group: 64 }, ..LIMITS };
    let peer = NodeIdentity::generate().did().clone();
    {
        let outbox = Arc::new(Outbox::open(store(dir.path()), limits, true).unwrap());
        // Queued before any is awaited, so the committer takes them in few groups.
        let waits: Vec<_> = (0..20).map(|_| outbox.enqueue(&peer, |seq| vec![seq as u8]).unwrap()).collect();
        for (i, wait) in waits.into_iter().enumerate() {
            assert_eq!(wait.await.unwrap(), i as u64 + 1);
        }
    }
    let outbox = Arc::new(Outbox::open(store(dir.path()), limits, true).unwrap());
    assert_eq!(outbox.depth(&peer), (20, 20));
    assert_eq!(outbox.push(&peer, |seq| vec![seq as u8]).await.unwrap(), 21, "numbering goes on after the last");
}
