//! Crashes under load: SIGKILL of a relaying node and of the publishing node while
//! entries are published at 1,000 a second, with real netd and gossip processes. Relays
//! send entries on before storing them and pushes travel best-effort, so this is where
//! "nothing acknowledged is lost, nothing is signed twice" must hold.

use icn_proto::common::v1::PageRequest;
use icn_proto::gossip::v1::gossip_client::GossipClient;
use icn_proto::gossip::v1::*;
use icn_testkit::Network;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "under-load";
/// Entries per second from all publishers together.
const RATE: u64 = 1000;
const PUBLISHERS: u64 = 8;

async fn client(endpoint: &str) -> Option<GossipClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .ok()?;
    Some(GossipClient::new(channel))
}

/// Every entry of `author` in `TOPIC` that `endpoint` holds: seq → hash.
async fn held(endpoint: &str, author: &str) -> HashMap<u64, Vec<u8>> {
    let mut gossip = client(endpoint).await.expect("gossip answers");
    let mut out = HashMap::new();
    let mut cursor = String::new();
    loop {
        let page = gossip
            .get_entries(GetEntriesRequest {
                topic: TOPIC.into(),
                reader: String::new(),
                author: author.into(),
                page: Some(PageRequest { limit: 1000, cursor }),
            })
            .await
            .expect("reading entries")
            .into_inner();
        for s in page.entries {
            let e = s.entry.expect("entry");
            out.insert(e.seq, e.hash);
        }
        if page.next_cursor.is_empty() {
            return out;
        }
        cursor = page.next_cursor;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_a_relay_and_of_the_origin_at_1000_entries_per_second_loses_nothing_acknowledged() {
    let mut net = Network::builder(4)
        .services(&["netd", "gossip"])
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    net.nodes[0].create_public_topic(TOPIC).await.unwrap();
    for node in &net.nodes[1..] {
        let mut gossip = node.gossip().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while gossip.get_topic(GetTopicRequest { name: TOPIC.into(), reader: String::new() }).await.is_err() {
            assert!(Instant::now() < deadline, "{} never learnt the topic", node.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Publishers on node 0 at a steady rate; each acknowledged entry is recorded with its
    // hash. While node 0's gossip is down they retry.
    let acknowledged: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::default();
    let origin = net.nodes[0].endpoint("gossip");
    let start = Instant::now();
    let run_for = Duration::from_millis(3500);
    let interval = Duration::from_secs_f64(PUBLISHERS as f64 / RATE as f64);
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (origin, acknowledged) = (origin.clone(), acknowledged.clone());
        publishers.push(tokio::spawn(async move {
            let mut gossip = None;
            let mut i = 0u32;
            while start.elapsed() < run_for {
                let due = start + interval * i + interval * p as u32 / PUBLISHERS as u32;
                tokio::time::sleep_until(due.into()).await;
                i += 1;
                if gossip.is_none() {
                    gossip = client(&origin).await;
                }
                let Some(g) = gossip.as_mut() else { continue };
                let request = PublishRequest {
                    signing: Some(publish_request::Signing::Payload(PublishPayload {
                        topic: TOPIC.into(),
                        payload: vec![p as u8; 256],
                    })),
                };
                match g.publish(request).await {
                    Ok(r) => {
                        let e = r.into_inner().entry.and_then(|s| s.entry).expect("an acknowledged entry");
                        let previous = acknowledged.lock().unwrap().insert(e.seq, e.hash.clone());
                        assert!(previous.is_none(), "seq {} acknowledged twice: signed twice", e.seq);
                    }
                    Err(_) => gossip = None,
                }
            }
        }));
    }

    // A relay (netd and gossip) dies at 1 s and comes back; the origin's gossip dies at
    // 2 s, mid-publish, and comes back.
    tokio::time::sleep_until((start + Duration::from_secs(1)).into()).await;
    net.nodes[1].kill("gossip").await.unwrap();
    net.nodes[1].kill("netd").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.nodes[1].start("netd").await.unwrap();
    net.nodes[1].start("gossip").await.unwrap();
    tokio::time::sleep_until((start + Duration::from_secs(2)).into()).await;
    let before_kill = acknowledged.lock().unwrap().len();
    net.nodes[0].kill("gossip").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    net.nodes[0].start("gossip").await.unwrap();
    for p in publishers {
        p.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(before_kill > 1000, "publishing ran at load before the origin died: {before_kill} acknowledged");
    assert!(acknowledged.len() > before_kill + 500, "publishing went on after the origin restarted");

    // Every node ends up holding every acknowledged entry, the very one acknowledged.
    let author = net.nodes[0].did().to_string();
    for node in &net.nodes {
        let endpoint = node.endpoint("gossip");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let holds = held(&endpoint, &author).await;
            let missing = acknowledged.keys().filter(|seq| !holds.contains_key(seq)).count();
            if missing == 0 {
                for (seq, hash) in &acknowledged {
                    assert_eq!(&holds[seq], hash, "{} holds another entry at seq {seq}", node.name);
                }
                break;
            }
            assert!(Instant::now() < deadline, "{} still lacks {missing} acknowledged entries", node.name);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let evidence = client(&endpoint)
            .await
            .unwrap()
            .list_equivocations(ListEquivocationsRequest { topic: TOPIC.into(), page: None })
            .await
            .unwrap()
            .into_inner();
        assert!(evidence.equivocations.is_empty(), "{} saw the origin sign twice", node.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_netd_restarts_under_a_running_gossip_pushes_flow_again_without_waiting_for_repair() {
    // Anti-entropy every 5 s: entries seen within 2 s of publishing came by push, and the
    // origin's repair counter shows it sent none.
    let mut net = Network::builder(2)
        .services(&["netd", "gossip"])
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "5s")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    net.nodes[0].create_public_topic(TOPIC).await.unwrap();
    let mut reader = net.nodes[1].gossip().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reader.get_topic(GetTopicRequest { name: TOPIC.into(), reader: String::new() }).await.is_err() {
        assert!(Instant::now() < deadline, "node 2 never learnt the topic");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // netd dies under node 1's gossip and comes back; gossip reopens its streams to it.
    net.nodes[0].kill("netd").await.unwrap();
    net.nodes[0].start("netd").await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let repaired = "icn_gossip_entries_repaired_total";
    let repaired_before = net.nodes[0].metric("gossip", repaired).await.unwrap();
    let mut origin = net.nodes[0].gossip().await.unwrap();
    for i in 0..20u8 {
        let request = PublishRequest {
            signing: Some(publish_request::Signing::Payload(PublishPayload { topic: TOPIC.into(), payload: vec![i] })),
        };
        origin.publish(request).await.unwrap();
    }
    let author = net.nodes[0].did().to_string();
    let endpoint = net.nodes[1].endpoint("gossip");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let holds = held(&endpoint, &author).await;
        if holds.len() == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 20 entries pushed after netd came back", holds.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        net.nodes[0].metric("gossip", repaired).await.unwrap(),
        repaired_before,
        "the entries came by push, not by repair"
    );
}
