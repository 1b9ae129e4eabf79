//! The durable channel between two nodes' netd, as users would break it: processes killed
//! with messages queued, receivers restarted, peers gone for good, disconnects on purpose,
//! and sealed payloads at rest.

use icn_proto::net::v1::{DisconnectRequest, InboundMessage, PeerState, SendRequest, SubscribeRequest};
use icn_testkit::{Network, TestNode};
use std::collections::HashSet;
use std::time::Duration;
use tonic::Streaming;

const NETD: &[&str] = &["netd"];

fn request(to: &TestNode, payload: &str, sealed: bool) -> SendRequest {
    SendRequest {
        to: to.did().to_string(),
        protocol: "test".into(),
        payload: payload.as_bytes().to_vec(),
        sealed,
        ..Default::default()
    }
}

async fn collect(stream: &mut Streaming<InboundMessage>, n: usize, timeout: Duration) -> Vec<InboundMessage> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(m))) => got.push(m),
            other => panic!("after {} of {n} messages: {other:?}", got.len()),
        }
    }
    got
}

/// Fast failure detection for tests that kill processes.
fn quick(builder: icn_testkit::NetworkBuilder) -> icn_testkit::NetworkBuilder {
    builder
        .env("ICN__NETWORK__KEEP_ALIVE_INTERVAL", "200ms")
        .env("ICN__NETWORK__IDLE_TIMEOUT", "1s")
        .env("ICN__NETWORK__HANDSHAKE_TIMEOUT", "500ms")
        .env("ICN__NETWORK__RECONNECT__BASE", "100ms")
        .env("ICN__NETWORK__RECONNECT__CAP", "800ms")
        .env("ICN__LOG__FORMAT", "json")
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_queued_for_a_down_peer_survive_a_sigkill_of_the_sender() {
    let mut net = quick(Network::builder(2).services(NETD)).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    net.nodes[1].kill("netd").await.unwrap();

    let mut a = net.nodes[0].netd().await.unwrap();
    for i in 1..=50u64 {
        let sent = a.send(request(&net.nodes[1], &format!("m{i}"), false)).await.unwrap().into_inner();
        assert_eq!(sent.seq, i);
    }
    net.nodes[0].kill("netd").await.unwrap();

    // The receiver comes back first and listens; then the sender, which finds its queue.
    net.nodes[1].start("netd").await.unwrap();
    net.nodes[1].wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    let mut inbox = net.nodes[1].inbox("test").await.unwrap();
    net.nodes[0].start("netd").await.unwrap();
    let got = collect(&mut inbox, 50, Duration::from_secs(30)).await;
    let payloads: Vec<String> = got.iter().map(|m| String::from_utf8_lossy(&m.payload).into_owned()).collect();
    let expected: Vec<String> = (1..=50).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, expected, "every accepted message, in order, once");
    assert!(got.iter().all(|m| m.from == net.nodes[0].did().to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_restarted_by_sigkill_or_sigterm_gets_each_message_once() {
    let mut net = quick(Network::builder(2).services(NETD)).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let mut a = net.nodes[0].netd().await.unwrap();
    let mut next = 1u64;
    for round in 0..2 {
        for _ in 0..15 {
            a.send(request(&net.nodes[1], &format!("m{next}"), false)).await.unwrap();
            next += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Mid-stream: the receiver dies (first by SIGKILL, then by SIGTERM) and comes back
        // while the sender keeps going.
        if round == 0 {
            net.nodes[1].kill("netd").await.unwrap();
        } else {
            net.nodes[1].stop("netd", Duration::from_secs(10)).await.unwrap();
        }
        for _ in 0..15 {
            a.send(request(&net.nodes[1], &format!("m{next}"), false)).await.unwrap();
            next += 1;
        }
        net.nodes[1].start("netd").await.unwrap();
        net.nodes[1].wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    }
    let total = (next - 1) as usize;
    let mut inbox = net.nodes[1].inbox("test").await.unwrap();
    let got = collect(&mut inbox, total, Duration::from_secs(30)).await;
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "each message once, in order");
    let positions: HashSet<u64> = got.iter().map(|m| m.position).collect();
    assert_eq!(positions.len(), total);
    // Nothing more arrives: no late duplicate.
    assert!(tokio::time::timeout(Duration::from_secs(1), inbox.message()).await.is_err());
    // The same log in batches, from its start and from the middle: the same messages,
    // in the same order, once.
    for from in [0, got[total / 2].position] {
        let request = SubscribeRequest { protocols: vec!["test".into()], after_position: Some(from) };
        let mut batches = net.nodes[1].netd().await.unwrap().subscribe_batches(request).await.unwrap().into_inner();
        let expected: Vec<(u64, u64)> = got.iter().filter(|m| m.position > from).map(|m| (m.seq, m.position)).collect();
        let mut read = Vec::new();
        while read.len() < expected.len() {
            let batch =
                tokio::time::timeout(Duration::from_secs(10), batches.message()).await.unwrap().unwrap().unwrap();
            assert!(!batch.messages.is_empty(), "no empty batch");
            read.extend(batch.messages.iter().map(|m| (m.seq, m.position)));
        }
        assert_eq!(read, expected, "batches from position {from}");
        assert!(tokio::time::timeout(Duration::from_millis(500), batches.message()).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_intentional_disconnect_is_not_retried_but_a_crash_is_with_growing_jittered_delays() {
    let mut net = quick(Network::builder(2).services(NETD))
        .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "0")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    a.netd()
        .await
        .unwrap()
        .disconnect(DisconnectRequest { did: b.did().to_string(), intentional: true })
        .await
        .unwrap();
    a.wait_peer_state(b.did(), PeerState::Closed, Duration::from_secs(5)).await.unwrap();
    b.wait_peer_state(a.did(), PeerState::Closed, Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (node, other) in [(a, b), (b, a)] {
        assert_eq!(node.peer(other.did()).await.unwrap().state, PeerState::Closed as i32, "{} stays closed", node.name);
        assert_eq!(node.metric("netd", "icn_netd_reconnect_attempts_total").await.unwrap(), 0.0);
    }

    // Talking again reopens; then the peer crashes and the survivor redials with backoff.
    a.netd().await.unwrap().send(request(b, "hello again", false)).await.unwrap();
    a.wait_peer_state(b.did(), PeerState::Connected, Duration::from_secs(10)).await.unwrap();
    let is_redial = |l: &serde_json::Value, did: &str| {
        l["fields"]["message"] == "reconnect scheduled" && l["fields"]["peer"] == did
    };
    // The send above scheduled one redial of its own; only what follows the crash counts.
    let earlier = a.json_logs("netd").iter().filter(|l| is_redial(l, b.did().as_str())).count();
    net.nodes[1].kill("netd").await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let attempts: Vec<(u64, u64, u64)> = a
        .json_logs("netd")
        .iter()
        .filter(|l| is_redial(l, b.did().as_str()))
        .skip(earlier)
        .map(|l| {
            let f = &l["fields"];
            (f["attempt"].as_u64().unwrap(), f["delay_ms"].as_u64().unwrap(), f["ceiling_ms"].as_u64().unwrap())
        })
        .collect();
    assert!(attempts.len() >= 6, "several attempts in 6 s: {attempts:?}");
    let ceilings: Vec<u64> = attempts.iter().take(6).map(|a| a.2).collect();
    assert_eq!(ceilings, [100, 200, 400, 800, 800, 800], "doubling up to the 800 ms cap");
    assert!(attempts.iter().all(|(_, delay, ceiling)| delay <= ceiling), "{attempts:?}");
    let delays: HashSet<u64> = attempts.iter().map(|a| a.1).collect();
    assert!(delays.len() > attempts.len() / 2, "jittered, not fixed: {attempts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_keeps_failing_the_same_way_is_marked_failed_until_something_is_sent() {
    let mut net = quick(Network::builder(2).services(NETD))
        .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "3")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    net.nodes[1].kill("netd").await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let failed = a.wait_peer_state(b.did(), PeerState::Failed, Duration::from_secs(20)).await.unwrap();
    assert!(failed.last_error.contains("no handshake within"), "{}", failed.last_error);
    let attempts = a.metric("netd", "icn_netd_reconnect_attempts_total").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.metric("netd", "icn_netd_reconnect_attempts_total").await.unwrap(), attempts, "no more dials");

    // A new Send clears the mark; the message waits and arrives once the peer is back.
    a.netd().await.unwrap().send(request(b, "are you back?", false)).await.unwrap();
    let state = a.peer(b.did()).await.unwrap().state;
    assert!(state == PeerState::Reconnecting as i32 || state == PeerState::Connected as i32, "{state}");
    net.nodes[1].start("netd").await.unwrap();
    net.nodes[1].wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    let mut inbox = net.nodes[1].inbox("test").await.unwrap();
    let got = collect(&mut inbox, 1, Duration::from_secs(20)).await;
    assert_eq!(got[0].payload, b"are you back?");
    net.nodes[0].wait_peer_state(net.nodes[1].did(), PeerState::Connected, Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_messages_are_unreadable_at_rest_and_open_only_at_the_recipient() {
    let mut net = quick(Network::builder(2).services(NETD)).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    net.nodes[1].kill("netd").await.unwrap();
    let mut a = net.nodes[0].netd().await.unwrap();
    a.send(request(&net.nodes[1], "SEALED-SECRET-4711", true)).await.unwrap();
    a.send(request(&net.nodes[1], "PLAIN-CONTROL-4711", false)).await.unwrap();
    assert_eq!(net.nodes[0].stop("netd", Duration::from_secs(10)).await.unwrap().code(), Some(0));

    // Both wait in the sender's store; only the unsealed one is readable there.
    let store = net.nodes[0].dir.join("netd");
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&store).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"PLAIN-CONTROL-4711"), "the scan sees stored payloads");
    assert!(!contains(b"SEALED-SECRET-4711"), "a sealed payload is not stored in clear");

    net.nodes[1].start("netd").await.unwrap();
    net.nodes[1].wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    let mut inbox = net.nodes[1].inbox("test").await.unwrap();
    net.nodes[0].start("netd").await.unwrap();
    let got = collect(&mut inbox, 2, Duration::from_secs(20)).await;
    assert_eq!(got[0].payload, b"SEALED-SECRET-4711");
    assert!(got[0].sealed);
    assert_eq!(got[1].payload, b"PLAIN-CONTROL-4711");
    assert!(!got[1].sealed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_from_sleep_restarts_the_backoff() {
    let mut net = quick(Network::builder(2).services(NETD))
        .env("ICN__NETWORK__RECONNECT__CAP", "30s")
        .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "0")
        .env("ICN__NETWORK__RECONNECT__WAKE_CHECK_INTERVAL", "200ms")
        .env("ICN__NETWORK__RECONNECT__WAKE_JUMP_THRESHOLD", "2s")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    net.nodes[1].kill("netd").await.unwrap();
    let a = &net.nodes[0];
    let b_did = net.nodes[1].did().clone();
    // Let the backoff grow past a few attempts.
    a.wait_peer_state(&b_did, PeerState::Reconnecting, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = a.peer(&b_did).await.unwrap().attempt;
    assert!(before >= 3, "attempt {before}");

    // A stopped process is what a sleeping laptop looks like from inside: time jumps.
    a.signal("netd", libc::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.signal("netd", libc::SIGCONT).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.metric("netd", "icn_netd_wakes_detected_total").await.unwrap(), 1.0);
    let after = a.peer(&b_did).await.unwrap().attempt;
    assert!(after < before, "backoff restarted: attempt {after} after {before}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_dials_to_one_peer_share_one_attempt() {
    use icn_proto::net::v1::DialRequest;
    let net = Network::builder(2).services(NETD).bootstrap(icn_testkit::Bootstrap::None).start().await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let client = a.netd().await.unwrap();
    let dials = (0..10).map(|_| {
        let mut c = client.clone();
        let address = b.quic_address();
        tokio::spawn(async move { c.dial(DialRequest { address, did: String::new() }).await })
    });
    for dial in futures_join(dials).await {
        assert_eq!(dial.unwrap().into_inner().did, b.did().to_string());
    }
    assert_eq!(a.metric("netd", "icn_netd_dials_total").await.unwrap(), 1.0, "ten callers, one dial");
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_shut_down_gracefully_is_not_redialled() {
    let mut net = quick(Network::builder(2).services(NETD)).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    assert_eq!(net.nodes[1].stop("netd", Duration::from_secs(10)).await.unwrap().code(), Some(0));
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let closed = a.wait_peer_state(b.did(), PeerState::Closed, Duration::from_secs(5)).await.unwrap();
    assert!(closed.last_error.contains("shutting down"), "{}", closed.last_error);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.metric("netd", "icn_netd_reconnect_attempts_total").await.unwrap(), 0.0);
    assert_eq!(a.peer(b.did()).await.unwrap().state, PeerState::Closed as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_mark_survives_a_quick_restart_but_not_a_long_gap() {
    let mut net = quick(Network::builder(2).services(NETD))
        .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "2")
        .env("ICN__NETWORK__RECONNECT__WAKE_CHECK_INTERVAL", "100ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    net.nodes[1].kill("netd").await.unwrap();
    let b_did = net.nodes[1].did().clone();
    net.nodes[0].wait_peer_state(&b_did, PeerState::Failed, Duration::from_secs(20)).await.unwrap();

    // A quick restart keeps the mark: the peer is not dialled.
    net.nodes[0].stop("netd", Duration::from_secs(10)).await.unwrap();
    net.nodes[0].start("netd").await.unwrap();
    net.nodes[0].wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    assert_eq!(net.nodes[0].peer(&b_did).await.unwrap().state, PeerState::Failed as i32);
    assert_eq!(net.nodes[0].metric("netd", "icn_netd_dials_total").await.unwrap(), 0.0);

    // After a gap longer than `restart_gap` the mark is stale: the peer is dialled again.
    net.nodes[0].stop("netd", Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    net.nodes[0].env.push(("ICN__NETWORK__RECONNECT__RESTART_GAP".into(), "1s".into()));
    net.nodes[1].start("netd").await.unwrap();
    net.nodes[0].start("netd").await.unwrap();
    net.nodes[0].wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    net.nodes[0].wait_peer_state(&b_did, PeerState::Connected, Duration::from_secs(20)).await.unwrap();
    assert!(net.nodes[0].json_logs("netd").iter().any(|l| l["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("long gap since this node was last active"))));
}
