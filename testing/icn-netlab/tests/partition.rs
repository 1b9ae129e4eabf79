//! Partitions between nodes on hosts of their own (network namespaces), through the real
//! kernel network stack. Run with `make test-lab` (needs root).

use icn_netlab::Lab;
use icn_proto::net::v1::{PeerState, SendRequest};
use icn_testkit::Network;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn after_a_30_second_partition_every_accepted_message_arrives_once_and_in_order() {
    let lab = Lab::new(2).unwrap();
    let net = Network::builder(2)
        .services(&["netd"])
        .placements(lab.placements())
        // The connection must die inside the partition, so the heal exercises a reconnect.
        .env("ICN__NETWORK__IDLE_TIMEOUT", "10s")
        .env("ICN__NETWORK__RECONNECT__CAP", "2s")
        .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "0")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);

    let to = b.did().to_string();
    let mut sender = a.netd().await.unwrap();
    let send_for = |duration: Duration| {
        let mut sender = sender.clone();
        let to = to.clone();
        async move {
            let mut accepted = Vec::new();
            let end = Instant::now() + duration;
            while Instant::now() < end {
                let payload = format!("m{}", Instant::now().elapsed().as_nanos()).into_bytes();
                let r = SendRequest {
                    to: to.clone(),
                    protocol: "lab".into(),
                    payload,
                    sealed: false,
                    ..Default::default()
                };
                accepted.push(sender.send(r).await.expect("send is accepted while partitioned too").into_inner().seq);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            accepted
        }
    };
    let mut accepted = send_for(Duration::from_secs(2)).await;
    lab.partition(&[1], &[2]).unwrap();
    accepted.extend(send_for(Duration::from_secs(30)).await);
    let during = a.peer(b.did()).await.unwrap();
    assert_ne!(during.state, PeerState::Connected as i32, "the link died during the partition: {during:?}");
    lab.heal().unwrap();
    let healed = Instant::now();
    a.wait_peer_state(b.did(), PeerState::Connected, Duration::from_secs(30)).await.unwrap();
    println!("reconnected {} ms after the heal", healed.elapsed().as_millis());
    accepted.extend(send_for(Duration::from_secs(2)).await);
    sender
        .send(SendRequest {
            to: to.clone(),
            protocol: "lab".into(),
            payload: b"last".to_vec(),
            sealed: false,
            ..Default::default()
        })
        .await
        .unwrap();

    let mut inbox = b.inbox("lab").await.unwrap();
    let mut seqs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = tokio::time::timeout_at(deadline, inbox.message())
            .await
            .expect("all messages within 60 s")
            .unwrap()
            .unwrap();
        if m.payload == b"last" {
            break;
        }
        seqs.push(m.seq);
    }
    assert_eq!(seqs, accepted, "every accepted message, once, in order");
    assert!(accepted.len() > 500, "{} messages sent", accepted.len());
    assert!(tokio::time::timeout(Duration::from_secs(1), inbox.message()).await.is_err(), "nothing arrives twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lab_cut_stops_traffic_and_a_heal_restores_it() {
    let lab = Lab::new(3).unwrap();
    let net = Network::builder(3)
        .services(&["netd"])
        .placements(lab.placements())
        .env("ICN__NETWORK__KEEP_ALIVE_INTERVAL", "200ms")
        .env("ICN__NETWORK__IDLE_TIMEOUT", "1s")
        .env("ICN__NETWORK__RECONNECT__CAP", "500ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    // Only the 1-2 link is cut: 1-3 and 2-3 stay up.
    lab.cut(1, 2).unwrap();
    let (n1, n2, n3) = (&net.nodes[0], &net.nodes[1], &net.nodes[2]);
    n1.wait_peer_state(n2.did(), PeerState::Reconnecting, Duration::from_secs(10)).await.unwrap();
    assert_eq!(n1.peer(n3.did()).await.unwrap().state, PeerState::Connected as i32);
    assert_eq!(n2.peer(n3.did()).await.unwrap().state, PeerState::Connected as i32);
    lab.heal().unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn under_20_percent_packet_loss_every_message_still_arrives_once_and_in_order() {
    let lab = Lab::new(2).unwrap();
    let net = Network::builder(2)
        .services(&["netd"])
        .placements(lab.placements())
        .env("ICN__NETWORK__RECONNECT__CAP", "500ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    lab.loss(1, 20).unwrap();
    lab.loss(2, 20).unwrap();
    let mut sender = a.netd().await.unwrap();
    for i in 0..200u32 {
        let r = SendRequest {
            to: b.did().to_string(),
            protocol: "lossy".into(),
            payload: i.to_be_bytes().to_vec(),
            sealed: false,
            ..Default::default()
        };
        sender.send(r).await.unwrap();
    }
    let mut inbox = b.inbox("lossy").await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 200 {
        let m = tokio::time::timeout(Duration::from_secs(60), inbox.message())
            .await
            .expect("delivery under loss")
            .unwrap()
            .unwrap();
        seqs.push(m.seq);
    }
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>(), "QUIC and the queue recover every loss, in order");
    assert!(lab.dropped() > 0, "the wire did drop packets");
    lab.heal().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_delay_shows_in_the_rtt_netd_measures() {
    use icn_proto::net::v1::EstimateRttRequest;
    let lab = Lab::new(2).unwrap();
    let net = Network::builder(2)
        .services(&["netd"])
        .placements(lab.placements())
        .env("ICN__NETWORK__KEEP_ALIVE_INTERVAL", "100ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let mut netd = a.netd().await.unwrap();
    let before = netd.estimate_rtt(EstimateRttRequest { did: b.did().to_string() }).await.unwrap().into_inner().rtt_us;
    assert!(before < 10_000, "no delay yet: {before} µs");
    lab.delay(1, Duration::from_millis(20)).unwrap();
    lab.delay(2, Duration::from_millis(30)).unwrap();
    // QUIC's smoothed RTT moves towards new samples over a few keep-alives.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = netd.estimate_rtt(EstimateRttRequest { did: b.did().to_string() }).await.unwrap().into_inner().rtt_us;
    assert!((45_000..80_000).contains(&after), "20 ms + 30 ms of delay: measured {after} µs");
    lab.heal().unwrap();
}
