//! A hand-made peer speaking raw QUIC to a real netd: what happens when it breaks the
//! protocol. The peer is this test's own code (it has to misbehave on purpose), built from
//! netd's TLS and framing so only the misbehaviour differs from a real node.

use icn_identity::tls::TlsIdentity;
use icn_identity::NodeIdentity;
use icn_netd::{close, frame, PROTOCOL_VERSION};
use icn_proto::net::wire::v1::{frame::Body, Frame, Hello};
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
        let conn =
            self.endpoint.connect_with(self.client.clone(), address.parse().unwrap(), "icn").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        frame::write_frame(&mut send, &self.hello(version)).await.unwrap();
        std::mem::forget(send); // keep the control stream open for the test's lifetime
        let _ = frame::read_frame(&mut recv, 1 << 20).await;
        (conn, recv)
    }
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
