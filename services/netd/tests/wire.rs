//! A hand-made peer speaking raw QUIC to a real netd: what happens when it breaks the
//! protocol. The peer is this test's own code (it has to misbehave on purpose), built from
//! netd's TLS and framing so only the misbehaviour differs from a real node.

use icn_identity::NodeIdentity;
use icn_netd::{close, frame, PROTOCOL_VERSION};
use icn_proto::net::wire::v1::{frame::Body, Frame, KnownPeer, PeerExchange};
use icn_testkit::raw_peer::RawPeer;
use icn_testkit::{Bootstrap, Network};
use std::time::Duration;

/// Connects `peer` and completes the Hello exchange, keeping the control stream open for
/// the test's lifetime.
async fn connect(peer: &RawPeer, address: &str, version: u32) -> (quinn::Connection, quinn::RecvStream) {
    let (conn, send, recv) = peer.connect(address, version).await.unwrap();
    std::mem::forget(send);
    (conn, recv)
}

/// A peer-exchange frame naming `peers` fresh DIDs, each at `addresses` addresses on
/// hosts the sender chose (here, closed loopback ports).
fn exchange(peers: usize, addresses: usize) -> Frame {
    let named = (0..peers)
        .map(|_| KnownPeer {
            did: NodeIdentity::generate().did().to_string(),
            addresses: (0..addresses).map(|i| format!("127.0.0.1:{}", 9 + i)).collect(),
            x25519_public_key: vec![7; 32],
            coordinate: None,
        })
        .collect();
    Frame { body: Some(Body::PeerExchange(PeerExchange { peers: named })) }
}

async fn closed_with(conn: &quinn::Connection) -> (u64, String) {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.expect("closed within 10 s") {
        quinn::ConnectionError::ApplicationClosed(c) => {
            (c.error_code.into_inner(), String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}

async fn rejected(node: &icn_testkit::TestNode, reason: &str) -> f64 {
    let body = icn_testkit::http_get(&node.metrics_url("netd")).await.unwrap();
    body.lines()
        .find(|l| l.starts_with("icn_netd_frames_rejected_total") && l.contains(&format!("reason=\"{reason}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_frames_close_that_connection_not_the_process() {
    let net = Network::builder(1).services(&["netd"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let node = &net.nodes[0];
    let peer = RawPeer::new().unwrap();

    let (conn, _control) = connect(&peer, &node.quic_address(), PROTOCOL_VERSION).await;
    let mut messages = conn.open_uni().await.unwrap();
    // Announce a 512 MiB frame; netd must refuse it from the length alone.
    messages.write_all(&(512u32 << 20).to_be_bytes()).await.unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::PROTOCOL_ERROR as u64);
    assert!(reason.contains("exceeds the limit"), "{reason}");
    assert_eq!(rejected(node, "oversized").await, 1.0);

    let (conn, _control) = connect(&peer, &node.quic_address(), PROTOCOL_VERSION).await;
    let mut messages = conn.open_uni().await.unwrap();
    messages.write_all(&4u32.to_be_bytes()).await.unwrap();
    messages.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::PROTOCOL_ERROR as u64);
    assert!(reason.contains("malformed"), "{reason}");
    assert_eq!(rejected(node, "malformed").await, 1.0);

    // The process is fine and still answers.
    node.wait_healthy("netd", Duration::from_secs(5)).await.unwrap();
    let status = node.netd().await.unwrap().status(icn_proto::net::v1::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.info.unwrap().did, node.did().to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_with_an_incompatible_protocol_version_is_told_why() {
    let net = Network::builder(1).services(&["netd"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let node = &net.nodes[0];
    let peer = RawPeer::new().unwrap();
    let (conn, _control) = connect(&peer, &node.quic_address(), PROTOCOL_VERSION + 100).await;
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::INCOMPATIBLE_VERSION as u64);
    assert!(reason.contains("incompatible protocol"), "{reason}");
    assert!(node.connected_peers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_flooding_peer_exchange_fills_no_table_and_steers_no_dials() {
    let net = Network::builder(1)
        .services(&["netd"])
        .bootstrap(Bootstrap::None)
        .env("ICN__NETWORK__EXCHANGE__MAX_KNOWN_PEERS", "20")
        .env("ICN__NETWORK__EXCHANGE__MAX_ADDRESSES_PER_PEER", "2")
        .env("ICN__NETWORK__EXCHANGE__FRAMES_PER_SECOND", "0.01")
        .env("ICN__NETWORK__EXCHANGE__FRAMES_BURST", "3")
        .env("ICN__NETWORK__EXCHANGE__DIALS_PER_SECOND", "0.01")
        .env("ICN__NETWORK__EXCHANGE__DIALS_BURST", "2")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let mallory = RawPeer::new().unwrap();
    let (conn, mut control, _recv) = mallory.connect(&node.quic_address(), PROTOCOL_VERSION).await.unwrap();
    // Ten frames of 32 peers with 5 addresses each: 320 peers, 1,600 addresses to dial.
    for _ in 0..10 {
        frame::write_frame(&mut control, &exchange(32, 5)).await.unwrap();
    }
    let refused = "icn_netd_exchange_refused_total";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.metric("netd", &format!("{refused}{{bound=\"frames\"}}")).await.unwrap() < 7.0 {
        assert!(tokio::time::Instant::now() < deadline, "the frames over the pace were never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        node.metric("netd", &format!("{refused}{{bound=\"frames\"}}")).await.unwrap(),
        7.0,
        "three frames taken, seven ignored"
    );
    assert!(node.metric("netd", &format!("{refused}{{bound=\"known_peers\"}}")).await.unwrap() >= 32.0 * 3.0 - 20.0);
    assert!(node.metric("netd", &format!("{refused}{{bound=\"addresses\"}}")).await.unwrap() >= 1.0);
    assert!(node.metric("netd", &format!("{refused}{{bound=\"dials\"}}")).await.unwrap() >= 1.0);
    // What the node holds: at most 20 peers, Mallory among them, and no more dials
    // under way than the burst allows.
    let peers = node.netd().await.unwrap().list_peers(icn_proto::net::v1::ListPeersRequest {}).await.unwrap();
    let peers = peers.into_inner().peers;
    assert!(peers.len() <= 20, "{} peers held", peers.len());
    let dialled = peers.iter().filter(|p| p.state != icn_proto::net::v1::PeerState::Unspecified as i32).count();
    assert!(dialled <= 1 + 2, "Mallory plus at most two dials: {peers:?}");
    // The node serves, and Mallory's connection is still up (nothing she did was a
    // protocol violation; it was just ignored).
    assert!(conn.close_reason().is_none());
    node.wait_healthy("netd", Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_connections_beyond_max_peers_are_closed_and_counted() {
    let net = Network::builder(1)
        .services(&["netd"])
        .bootstrap(Bootstrap::None)
        .env("ICN__NETWORK__MAX_PEERS", "1")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let (first, second) = (RawPeer::new().unwrap(), RawPeer::new().unwrap());
    let (kept, _control) = connect(&first, &node.quic_address(), PROTOCOL_VERSION).await;
    let (refused, _control) = connect(&second, &node.quic_address(), PROTOCOL_VERSION).await;
    let (code, reason) = closed_with(&refused).await;
    assert_eq!(code, close::TOO_MANY_PEERS as u64);
    assert!(reason.contains("network.max_peers"), "{reason}");
    assert_eq!(node.metric("netd", "icn_netd_connections_refused_total{reason=\"max_peers\"}").await.unwrap(), 1.0);
    assert!(kept.close_reason().is_none(), "the first peer keeps its connection");
    assert_eq!(node.connected_peers().await.unwrap(), vec![first.identity.did().to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealing_key_named_by_a_third_peer_is_never_used() {
    // Node 2 is real but not connected; Mallory tells node 1 that node 2 seals with her
    // key (at an address where nothing answers, so node 1 cannot meet node 2 and learn
    // better). Before, node 1 took the first key it heard and sealed node 2's messages
    // to Mallory.
    let net = Network::builder(2).services(&["netd"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let mallory = RawPeer::new().unwrap();
    let (_conn, mut control, _recv) = mallory.connect(&n1.quic_address(), PROTOCOL_VERSION).await.unwrap();
    let lie = KnownPeer {
        did: n2.did().to_string(),
        addresses: vec!["127.0.0.1:9".into()],
        x25519_public_key: mallory.identity.x25519_public_key().as_bytes().to_vec(),
        coordinate: None,
    };
    frame::write_frame(&mut control, &Frame { body: Some(Body::PeerExchange(PeerExchange { peers: vec![lie] })) })
        .await
        .unwrap();
    let mut netd = n1.netd().await.unwrap();
    let send = icn_proto::net::v1::SendRequest {
        to: n2.did().to_string(),
        protocol: "test".into(),
        payload: b"for node 2 only".to_vec(),
        sealed: true,
        ..Default::default()
    };
    // Node 1 knows of node 2 once the frame is read: the send is no longer UNKNOWN_PEER,
    // and it is refused for want of node 2's own key, not sealed to Mallory's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = netd.send(send.clone()).await.unwrap_err();
        if status.code() != tonic::Code::NotFound || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("no x25519 key is known"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_gets_two_message_streams_and_no_more_and_its_best_effort_frames_reach_only_live_subscribers() {
    use icn_proto::net::v1::SubscribeBestEffortRequest;
    use icn_proto::net::wire::v1::Message;
    let net = Network::builder(1).services(&["netd"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let node = &net.nodes[0];
    let mut fast = node
        .netd()
        .await
        .unwrap()
        .subscribe_best_effort(SubscribeBestEffortRequest { protocols: vec![] })
        .await
        .unwrap()
        .into_inner();
    let peer = RawPeer::new().unwrap();
    let (conn, _control) = connect(&peer, &node.quic_address(), PROTOCOL_VERSION).await;
    let message = |payload: &[u8]| Message { protocol: "raw".into(), payload: payload.to_vec(), ..Default::default() };
    // Either stream may carry either kind; the class is the frame's.
    let mut first = conn.open_uni().await.unwrap();
    let mut second = conn.open_uni().await.unwrap();
    frame::write_frame(&mut second, &Frame { body: Some(Body::BestEffort(message(b"quick"))) }).await.unwrap();
    frame::write_frame(&mut first, &Frame { body: Some(Body::Message(Message { seq: 1, ..message(b"kept") })) })
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), fast.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(
        (batch.messages[0].payload.as_slice(), batch.messages[0].from.as_str()),
        (&b"quick"[..], peer.identity.did().as_str())
    );
    let mut log = node.inbox("raw").await.unwrap();
    let logged = tokio::time::timeout(Duration::from_secs(10), log.message()).await.unwrap().unwrap().unwrap();
    assert_eq!((logged.payload.as_slice(), logged.seq), (&b"kept"[..], 1), "only the durable frame is logged");
    // A third stream gets no credit from QUIC: opening it waits for ever.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), conn.open_uni()).await.is_err(),
        "netd must not let a peer open more than two message streams"
    );
    assert!(conn.close_reason().is_none(), "asking for a stream is no offence");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_flooding_best_effort_frames_is_slowed_then_cut_like_any_other() {
    use icn_proto::net::wire::v1::Message;
    let net = Network::builder(1)
        .services(&["netd"])
        .bootstrap(Bootstrap::None)
        .env("ICN__NETWORK__RATE_LIMIT__MESSAGES_PER_SECOND", "100")
        .env("ICN__NETWORK__RATE_LIMIT__BURST", "100")
        .env("ICN__NETWORK__RATE_LIMIT__CUT_AFTER", "1s")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let peer = RawPeer::new().unwrap();
    let (conn, _control) = connect(&peer, &node.quic_address(), PROTOCOL_VERSION).await;
    let mut stream = conn.open_uni().await.unwrap();
    let flood = Message { protocol: "flood".into(), payload: vec![0; 16], ..Default::default() };
    let frame = Frame { body: Some(Body::BestEffort(flood)) };
    // Nothing of this class is stored, yet it pays the same per-peer limit: the node stops
    // reading (QUIC's flow control then stalls the writer), then cuts the peer.
    let flooding = async { while frame::write_frame(&mut stream, &frame).await.is_ok() {} };
    tokio::time::timeout(Duration::from_secs(20), flooding).await.expect("the node cut the flooding peer");
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::RATE_LIMITED as u64, "{reason}");
    assert!(node.metric("netd", "icn_netd_rate_limited_total{action=\"slowed\"").await.unwrap() > 0.0);
    assert!(node.metric("netd", "icn_netd_rate_limited_total{action=\"cut\"").await.unwrap() >= 1.0);
    node.wait_healthy("netd", Duration::from_secs(5)).await.unwrap();
}
