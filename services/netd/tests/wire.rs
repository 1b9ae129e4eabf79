//! A hand-made peer speaking raw QUIC to a real netd: what happens when it breaks the
//! protocol. The peer is this test's own code (it has to misbehave on purpose), built from
//! netd's TLS and framing so only the misbehaviour differs from a real node.

use icn_identity::tls::TlsIdentity;
use icn_identity::NodeIdentity;
use icn_netd::{close, frame, PROTOCOL_VERSION};
use icn_proto::net::wire::v1::{frame::Body, Frame, Hello, KnownPeer, PeerExchange};
use icn_testkit::{Bootstrap, Network};
use std::sync::Arc;
use std::time::Duration;

struct RawPeer {
    identity: NodeIdentity,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
}

impl RawPeer {
    fn new() -> Self {
        let identity = NodeIdentity::generate();
        let tls = TlsIdentity::new(&identity).unwrap();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_crypto().unwrap()).unwrap();
        let client = quinn::ClientConfig::new(Arc::new(crypto));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        Self { identity, endpoint, client }
    }

    fn hello(&self, version: u32) -> Frame {
        Frame {
            body: Some(Body::Hello(Hello {
                protocol_version: version,
                min_protocol_version: version,
                did: self.identity.did().to_string(),
                x25519_public_key: self.identity.x25519_public_key().as_bytes().to_vec(),
                incarnation: "raw".into(),
                ..Default::default()
            })),
        }
    }

    /// Connects and completes the Hello exchange with `version`.
    async fn connect(&self, address: &str, version: u32) -> (quinn::Connection, quinn::RecvStream) {
        let (conn, send, recv) = self.connect_with_control(address, version).await;
        std::mem::forget(send); // keep the control stream open for the test's lifetime
        (conn, recv)
    }

    /// [`RawPeer::connect`], keeping the control stream's sending half to write more.
    async fn connect_with_control(
        &self,
        address: &str,
        version: u32,
    ) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
        let conn =
            self.endpoint.connect_with(self.client.clone(), address.parse().unwrap(), "icn").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        frame::write_frame(&mut send, &self.hello(version)).await.unwrap();
        let _ = frame::read_frame(&mut recv, 1 << 20).await;
        (conn, send, recv)
    }
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
    let peer = RawPeer::new();

    let (conn, _control) = peer.connect(&node.quic_address(), PROTOCOL_VERSION).await;
    let mut messages = conn.open_uni().await.unwrap();
    // Announce a 512 MiB frame; netd must refuse it from the length alone.
    messages.write_all(&(512u32 << 20).to_be_bytes()).await.unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::PROTOCOL_ERROR as u64);
    assert!(reason.contains("exceeds the limit"), "{reason}");
    assert_eq!(rejected(node, "oversized").await, 1.0);

    let (conn, _control) = peer.connect(&node.quic_address(), PROTOCOL_VERSION).await;
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
    let peer = RawPeer::new();
    let (conn, _control) = peer.connect(&node.quic_address(), PROTOCOL_VERSION + 100).await;
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
    let mallory = RawPeer::new();
    let (conn, mut control, _recv) = mallory.connect_with_control(&node.quic_address(), PROTOCOL_VERSION).await;
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
    let (first, second) = (RawPeer::new(), RawPeer::new());
    let (kept, _control) = first.connect(&node.quic_address(), PROTOCOL_VERSION).await;
    let (refused, _control) = second.connect(&node.quic_address(), PROTOCOL_VERSION).await;
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
    let mallory = RawPeer::new();
    let (_conn, mut control, _recv) = mallory.connect_with_control(&n1.quic_address(), PROTOCOL_VERSION).await;
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
