//! netd between real processes: messages, peer views, identity checks, bad input.

use icn_identity::NodeIdentity;
use icn_proto::net::v1::{DialRequest, DisconnectRequest, GetPeerRequest, PeerState, SendRequest, SubscribeRequest};
use icn_testkit::{Bootstrap, Network};
use std::time::Duration;
use tonic::Code;

const NETD_ONLY: &[&str] = &["netd"];

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_on_node1_reaches_a_subscriber_on_node3_and_peers_show_rtts() {
    // netd alone: other services send on the same links (gossip's mesh grafts), and this
    // test counts the link's sequence numbers.
    let net = Network::builder(3).services(NETD_ONLY).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (n1, n3) = (&net.nodes[0], &net.nodes[2]);

    let mut inbox = n3
        .netd()
        .await
        .unwrap()
        .subscribe(SubscribeRequest { protocols: vec!["test".into()], after_position: None })
        .await
        .unwrap()
        .into_inner();
    let mut n1_netd = n1.netd().await.unwrap();
    // Another protocol first: the subscriber must not see it.
    n1_netd
        .send(SendRequest {
            to: n3.did().to_string(),
            protocol: "other".into(),
            payload: b"skip".to_vec(),
            sealed: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let sent = n1_netd
        .send(SendRequest {
            to: n3.did().to_string(),
            protocol: "test".into(),
            payload: b"hello node3".to_vec(),
            sealed: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(10), inbox.message())
        .await
        .expect("message within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(got.payload, b"hello node3");
    assert_eq!(got.from, n1.did().to_string());
    assert_eq!(got.protocol, "test");
    assert_eq!(got.seq, sent.seq);
    assert_eq!(sent.seq, 2, "sequence numbers count every message on the link");

    let peers = n1_netd.list_peers(icn_proto::net::v1::ListPeersRequest {}).await.unwrap().into_inner().peers;
    let connected: Vec<_> = peers.iter().filter(|p| p.state == PeerState::Connected as i32).collect();
    assert_eq!(connected.len(), 2, "{peers:?}");
    for p in connected {
        assert!(p.rtt_us > 0, "rtt measured for {}", p.did);
        assert_eq!(p.x25519_public_key.len(), 64);
        assert!(!p.incarnation.is_empty());
    }
    let n3_view = n1_netd.get_peer(GetPeerRequest { did: n3.did().to_string() }).await.unwrap().into_inner();
    assert_eq!(n3_view.messages_sent, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_proving_another_did_than_the_one_dialled_is_refused() {
    let net = Network::builder(2).services(NETD_ONLY).bootstrap(Bootstrap::None).start().await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let impostor = NodeIdentity::generate();
    let mut netd = n1.netd().await.unwrap();

    let err = netd.dial(DialRequest { address: n2.quic_address(), did: impostor.did().to_string() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains(&impostor.did().to_string()) && err.message().contains(&n2.did().to_string()),
        "{}",
        err.message()
    );
    assert!(n1.connected_peers().await.unwrap().is_empty());
    assert!(n2.connected_peers().await.unwrap().is_empty(), "the refused side holds no connection either");

    let peer =
        netd.dial(DialRequest { address: n2.quic_address(), did: n2.did().to_string() }).await.unwrap().into_inner();
    assert_eq!(peer.did, n2.did().to_string());
    assert_eq!(peer.state, PeerState::Connected as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_specific_statuses_and_the_node_keeps_serving() {
    let net = Network::builder(2).services(NETD_ONLY).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let mut netd = n1.netd().await.unwrap();
    let send = |to: String, protocol: &str, payload: Vec<u8>, sealed: bool| SendRequest {
        to,
        protocol: protocol.into(),
        payload,
        sealed,
        ..Default::default()
    };
    let to = n2.did().to_string();

    let cases = [
        (send("did:example:123".into(), "test", vec![], false), Code::InvalidArgument, "did:icn:"),
        (send(String::new(), "test", vec![], false), Code::InvalidArgument, "`to` is required"),
        (send(to.clone(), "Not Valid!", vec![], false), Code::InvalidArgument, "`protocol`"),
        (send(to.clone(), "test", vec![0; 1024 * 1024 + 1], false), Code::InvalidArgument, "max_message_bytes"),
        (send(NodeIdentity::generate().did().to_string(), "test", vec![], false), Code::NotFound, "no peer"),
        (send(NodeIdentity::generate().did().to_string(), "test", b"x".to_vec(), true), Code::NotFound, "no peer"),
    ];
    for (request, code, needle) in cases {
        let err = netd.send(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle), "`{}` should mention `{needle}`", err.message());
    }
    let err = netd
        .disconnect(DisconnectRequest { did: NodeIdentity::generate().did().to_string(), intentional: true })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = netd.dial(DialRequest { address: "127.0.0.1:1".into(), did: String::new() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err =
        netd.dial(DialRequest { address: "no-such-host.invalid:7000".into(), did: String::new() }).await.unwrap_err();
    assert!(err.message().contains("cannot resolve"), "{err:?}");

    // Still serving, still connected.
    netd.send(send(to, "test", b"after".to_vec(), false)).await.unwrap();
    assert_eq!(n1.connected_peers().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_state_changes_rtt_and_bytes_per_peer() {
    let net = Network::builder(2)
        .services(NETD_ONLY)
        .env("ICN__NETWORK__KEEP_ALIVE_INTERVAL", "200ms")
        .env("ICN__NETWORK__IDLE_TIMEOUT", "2s")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    n1.netd()
        .await
        .unwrap()
        .send(SendRequest {
            to: n2.did().to_string(),
            protocol: "test".into(),
            payload: vec![9; 1000],
            sealed: false,
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let peer = n2.did().as_str();
    assert!(n1.metric("netd", "icn_netd_peer_state_changes_total{state=\"connected\"}").await.unwrap() >= 1.0);
    let rtt = n1.metric("netd", &format!("icn_netd_peer_rtt_seconds{{peer=\"{peer}\"}}")).await.unwrap();
    assert!(rtt > 0.0 && rtt < 0.5, "rtt {rtt}");
    let sent =
        n1.metric("netd", &format!("icn_netd_peer_bytes_total{{direction=\"sent\",peer=\"{peer}\"}}")).await.unwrap();
    assert!(sent >= 1000.0, "bytes sent to the peer: {sent}");
    assert_eq!(n1.metric("netd", "icn_netd_messages_queued_total{protocol=\"test\"}").await.unwrap(), 1.0);
}
