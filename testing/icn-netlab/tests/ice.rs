//! netd's ICE candidates (`[network.nat]`, webrtc-ice) against a real coturn on a public
//! host, from nodes behind the lab's routers: the reflexive candidate is the router's
//! outside mapping, the relay one an allocation on coturn, and a TURN server that
//! allocates nothing gives a state and a counted reason, never only a log line. Run with
//! `make test-lab` (needs root and coturn).

use icn_netlab::nat::DEFAULT_MAPPING_LIFETIME;
use icn_netlab::turn::Coturn;
use icn_netlab::{Lab, NatKind};
use icn_proto::net::v1::{CandidateKind, StatusRequest, StatusResponse, StunState, TurnState};
use icn_testkit::{Bootstrap, TestNode};
use std::time::Duration;

/// The node's status once it has gathered candidates (`turn.checked_at_ms` is set by the
/// first gathering).
async fn gathered(node: &TestNode) -> StatusResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = node.netd().await.unwrap().status(StatusRequest {}).await.unwrap().into_inner();
        if status.turn.as_ref().is_some_and(|t| t.checked_at_ms > 0) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "no gathering within 30 s: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn addresses(status: &StatusResponse, kind: CandidateKind) -> Vec<String> {
    status.candidates.iter().filter(|c| c.kind == kind as i32).map(|c| c.address.clone()).collect()
}

fn ip_of(address: &str) -> &str {
    address.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(address)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_behind_a_router_learns_its_outside_address_and_a_relay_and_bad_turn_settings_give_a_reason() {
    let lab = Lab::new(4).unwrap();
    lab.behind_nat(2, NatKind::Symmetric, DEFAULT_MAPPING_LIFETIME).unwrap();
    lab.behind_nat(3, NatKind::PortRestricted, DEFAULT_MAPPING_LIFETIME).unwrap();
    lab.behind_nat(4, NatKind::FullCone, DEFAULT_MAPPING_LIFETIME).unwrap();
    let coturn = Coturn::start(&lab, 1, &[("member", "right horse battery")], Duration::from_secs(600)).unwrap();
    let unreachable = format!("{}:3999", lab.host(1).data_ip);
    // The good node reads its password from a file, as an operator would keep it.
    let password_file = std::env::temp_dir().join(format!("icn-turn-password-{}", std::process::id()));
    std::fs::write(&password_file, "right horse battery\n").unwrap();
    let net = lab
        .network(4)
        .services(&["netd"])
        .bootstrap(Bootstrap::None)
        .env("ICN__NETWORK__NAT__STUN_SERVERS", &coturn.address)
        .env("ICN__NETWORK__NAT__TURN_USERNAME", "member")
        .env("ICN__NETWORK__NAT__GATHER_TIMEOUT", "3s")
        .node_env(1, "ICN__NETWORK__NAT__TURN_SERVER", &coturn.address)
        .node_env(1, "ICN__NETWORK__NAT__TURN_PASSWORD_FILE", password_file.to_str().unwrap())
        .node_env(2, "ICN__NETWORK__NAT__TURN_SERVER", &coturn.address)
        .node_env(2, "ICN__NETWORK__NAT__TURN_PASSWORD", "wrong horse battery")
        .node_env(3, "ICN__NETWORK__NAT__STUN_SERVERS", &unreachable)
        .node_env(3, "ICN__NETWORK__NAT__TURN_SERVER", &unreachable)
        .node_env(3, "ICN__NETWORK__NAT__TURN_PASSWORD", "right horse battery")
        .start()
        .await
        .unwrap();

    // Behind a symmetric router, with the right credentials.
    let good = gathered(&net.nodes[1]).await;
    println!("behind a symmetric router: {:?}, TURN {:?}", good.candidates, good.turn);
    assert_eq!(addresses(&good, CandidateKind::Host).iter().filter(|a| ip_of(a) == lab.host(2).data_ip).count(), 1);
    let reflexive = addresses(&good, CandidateKind::ServerReflexive);
    assert!(!reflexive.is_empty() && reflexive.iter().all(|a| ip_of(a) == lab.outside_ip(2)), "{reflexive:?}");
    let relay = addresses(&good, CandidateKind::Relay);
    assert_eq!(relay.len(), 1, "{relay:?}");
    assert_eq!(ip_of(&relay[0]), lab.host(1).data_ip, "allocated on coturn");
    assert_eq!(good.relay_address, relay[0]);
    assert_eq!(good.turn.as_ref().unwrap().state, TurnState::Allocated as i32);
    assert_eq!(good.stun.as_ref().unwrap().state, StunState::Answered as i32);
    assert_eq!(net.nodes[1].metric("netd", "icn_netd_turn_allocations_total").await.unwrap(), 1.0);

    // A wrong password: a failed state with its reason, counted; STUN still answers.
    let wrong = gathered(&net.nodes[2]).await;
    let turn = wrong.turn.clone().unwrap();
    assert_eq!((turn.state, turn.reason.as_str()), (TurnState::Failed as i32, "wrong_credentials"), "{turn:?}");
    assert!(wrong.relay_address.is_empty());
    let reflexive = addresses(&wrong, CandidateKind::ServerReflexive);
    assert!(reflexive.iter().any(|a| ip_of(a) == lab.outside_ip(3)), "{reflexive:?}");
    // Counted at each gathering: the first, and the retries after it (2 s, 4 s, ...).
    let counted = net.nodes[2].metric("netd", "icn_netd_turn_failures_total{reason=\"wrong_credentials\"}").await;
    assert!(counted.unwrap() >= 1.0);

    // No STUN nor TURN server where they are said to be.
    let lost = gathered(&net.nodes[3]).await;
    let turn = lost.turn.clone().unwrap();
    assert_eq!((turn.state, turn.reason.as_str()), (TurnState::Failed as i32, "unreachable"), "{turn:?}");
    let stun = lost.stun.clone().unwrap();
    assert_eq!((stun.state, stun.reason.as_str()), (StunState::Failed as i32, "unreachable"), "{stun:?}");
    assert!(addresses(&lost, CandidateKind::ServerReflexive).is_empty());
    assert!(net.nodes[3].metric("netd", "icn_netd_stun_failures_total").await.unwrap() >= 1.0);
    assert!(net.nodes[3].metric("netd", "icn_netd_turn_failures_total{reason=\"unreachable\"}").await.unwrap() >= 1.0);

    // A public node with no TURN server: TURN OFF, no relay; STUN sees it as it is.
    let public = gathered(&net.nodes[0]).await;
    assert_eq!(public.turn.as_ref().unwrap().state, TurnState::Off as i32);
    assert!(addresses(&public, CandidateKind::Relay).is_empty());
    let reflexive = addresses(&public, CandidateKind::ServerReflexive);
    assert!(reflexive.iter().all(|a| ip_of(a) == lab.host(1).data_ip), "{reflexive:?}");
    drop(coturn);
    let _ = std::fs::remove_file(password_file);
}
