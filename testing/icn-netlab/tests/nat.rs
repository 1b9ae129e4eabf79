//! The lab's routers (`icn_netlab::nat`), checked from outside through the real kernel
//! stacks of the hosts: each router is the kind it is named (RFC 5780-style probes, what
//! every NAT traversal test runs first), a private address is unreachable, a mapping
//! lets the answers in and expires when idle, and a rebooted router maps anew. Run with
//! `make test-lab` (needs root).

use icn_netlab::nat::{Behaviour, DEFAULT_MAPPING_LIFETIME};
use icn_netlab::probe::{Classified, ProbeServer};
use icn_netlab::{Lab, NatKind};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

#[test]
fn every_router_is_the_kind_it_is_named_and_a_public_host_is_none() {
    let lab = Lab::new(6).unwrap();
    for (host, kind) in (2..).zip(NatKind::ALL) {
        lab.behind_nat(host, kind, DEFAULT_MAPPING_LIFETIME).unwrap();
    }
    let probe = ProbeServer::start(&lab, 1).unwrap();
    for (host, kind) in (2..).zip(NatKind::ALL) {
        let found = probe.classify(&lab, host).unwrap();
        assert_eq!(
            found,
            Classified { mapping: kind.mapping(), filtering: kind.filtering() },
            "{kind:?} on host {host}"
        );
        println!("host {host}: {kind:?} probed as {found:?}");
    }
    // No router: the probes see nothing change and nothing filtered (so they can tell a
    // full cone only from its outside address, which the matrix checks separately).
    let open = probe.classify(&lab, 6).unwrap();
    let none = Classified { mapping: Behaviour::EndpointIndependent, filtering: Behaviour::EndpointIndependent };
    assert_eq!(open, none);
    assert!(lab.nat_filtered() > 0, "the restricting routers kept probes out");
}

/// A UDP socket on host `index`, bound to any address.
fn socket_on(lab: &Lab, index: usize, port: u16) -> UdpSocket {
    let socket = lab.on_host(index, || Ok(UdpSocket::bind(("0.0.0.0", port))?)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    socket
}

fn receive(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 1500];
    socket.recv_from(&mut buf).ok().map(|(n, from)| (buf[..n].to_vec(), from))
}

#[test]
fn a_host_behind_a_router_is_reached_only_through_its_mapping_which_expires_and_changes_at_a_reboot() {
    let lab = Lab::new(2).unwrap();
    let lifetime = Duration::from_secs(2);
    lab.behind_nat(2, NatKind::PortRestricted, lifetime).unwrap();
    let server = socket_on(&lab, 1, 4000);
    let inside = socket_on(&lab, 2, 5000);
    let server_addr: SocketAddr = format!("{}:4000", lab.host(1).data_ip).parse().unwrap();

    inside.send_to(b"hello", server_addr).unwrap();
    let (payload, seen) = receive(&server).expect("a host behind a router reaches a public one");
    assert_eq!(payload, b"hello");
    assert_eq!(seen.ip().to_string(), lab.outside_ip(2), "seen at its router's outside address");

    // Its own address is private.
    let private: SocketAddr = format!("{}:5000", lab.host(2).data_ip).parse().unwrap();
    server.send_to(b"direct", private).unwrap();
    assert!(receive(&inside).is_none(), "a private address is unreachable from outside");

    // The answer to its mapping gets in.
    server.send_to(b"answer", seen).unwrap();
    assert_eq!(receive(&inside).map(|(p, _)| p), Some(b"answer".to_vec()));

    // Idle past its lifetime, the mapping is gone and answers are kept out.
    let filtered = lab.nat_filtered();
    std::thread::sleep(lifetime + Duration::from_millis(500));
    server.send_to(b"late", seen).unwrap();
    assert!(receive(&inside).is_none(), "an expired mapping lets nothing in");
    assert!(lab.nat_filtered() > filtered, "the router counted what it kept out");

    // A reboot: the next mapping is at another outside port, the old one lets nothing in.
    inside.send_to(b"again", server_addr).unwrap();
    let (_, before) = receive(&server).unwrap();
    lab.reboot_router(2).unwrap();
    server.send_to(b"after the reboot", before).unwrap();
    assert!(receive(&inside).is_none(), "a rebooted router forgot its mappings");
    inside.send_to(b"once more", server_addr).unwrap();
    let (_, after) = receive(&server).unwrap();
    assert_eq!(after.ip(), before.ip());
    assert_ne!(after.port(), before.port(), "a new outside port after the reboot");
}

/// The direct rung through routers: nodes behind them dial a public node (its address is
/// routable), it answers through their mappings, and durable messages, sealed and plain,
/// flow both ways.
/// Two nodes both behind routers have no rung between them until ICE (issue #13).
#[tokio::test(flavor = "multi_thread")]
async fn nodes_behind_routers_reach_a_public_node_directly_and_messages_flow_both_ways() {
    use icn_proto::net::v1::{Path, PeerState, SendRequest};
    let lab = Lab::new(3).unwrap();
    lab.behind_nat(2, NatKind::PortRestricted, DEFAULT_MAPPING_LIFETIME).unwrap();
    lab.behind_nat(3, NatKind::Symmetric, DEFAULT_MAPPING_LIFETIME).unwrap();
    let net = lab.network(3).services(&["netd"]).start().await.unwrap();
    let public = &net.nodes[0];
    for (i, node) in net.nodes.iter().enumerate().skip(1) {
        let seen = public.wait_peer_state(node.did(), PeerState::Connected, Duration::from_secs(30)).await.unwrap();
        assert_eq!(seen.path, Path::Direct as i32);
        node.wait_peer_state(public.did(), PeerState::Connected, Duration::from_secs(30)).await.unwrap();
        for (way, (from, to)) in [(public, node), (node, public)].into_iter().enumerate() {
            // A protocol per pair and way: an inbox opened later gets what came before.
            let protocol = format!("nat-{i}-{way}");
            let request = SendRequest {
                to: to.did().to_string(),
                protocol: protocol.clone(),
                payload: format!("to node {i}").into_bytes(),
                // Sealed to the receiver's key one way, plain the other.
                sealed: way == 1,
                ..Default::default()
            };
            let mut inbox = to.inbox(&protocol).await.unwrap();
            from.netd().await.unwrap().send(request).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), inbox.message())
                .await
                .expect("delivered through the router within 10 s")
                .unwrap()
                .unwrap();
            assert_eq!(got.payload, format!("to node {i}").into_bytes());
            assert_eq!(got.sealed, way == 1);
        }
    }
    // Peer exchange tells each about the other, at addresses neither can reach.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (a, b) = (&net.nodes[1], &net.nodes[2]);
    match a.peer(b.did()).await {
        Ok(peer) => {
            println!("node 2 sees node 3 as {:?} at {:?}", PeerState::try_from(peer.state), peer.advertised_addresses);
            assert_ne!(peer.state, PeerState::Connected as i32, "no rung yet between two routers: {peer:?}")
        }
        Err(e) => assert!(e.to_string().contains("not found") || e.to_string().contains("NotFound"), "{e:#}"),
    }
}
