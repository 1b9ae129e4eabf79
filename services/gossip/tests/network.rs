//! Gossip between nodes: real netd and gossip processes per node, on loopback.

use icn_proto::gossip::v1::gossip_client::GossipClient;
use icn_proto::gossip::v1::*;
use icn_testkit::{Network, TestNode};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

async fn gossip(node: &TestNode) -> GossipClient<Channel> {
    GossipClient::new(node.channel("gossip").await.unwrap())
}

fn spec(name: &str, rule: acl::Rule) -> CreateTopicRequest {
    CreateTopicRequest {
        signing: Some(create_topic_request::Signing::Spec(TopicSpec {
            name: name.into(),
            acl: Some(Acl { rule: Some(rule) }),
            ..Default::default()
        })),
    }
}

fn publish(topic: &str, payload: &[u8]) -> PublishRequest {
    PublishRequest {
        signing: Some(publish_request::Signing::Payload(PublishPayload {
            topic: topic.into(),
            payload: payload.to_vec(),
        })),
    }
}

async fn wait_for_topic(node: &TestNode, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = gossip(node).await;
    while client.get_topic(GetTopicRequest { name: name.into(), reader: String::new() }).await.is_err() {
        assert!(Instant::now() < deadline, "{} never learnt topic {name}", node.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn network(nodes: usize) -> icn_testkit::NetworkBuilder {
    Network::builder(nodes).services(&["netd", "gossip"]).env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_published_on_one_of_five_nodes_reaches_all_and_propagation_is_reported() {
    let net = network(5).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let mut origin = gossip(&net.nodes[0]).await;
    origin.create_topic(spec("town-square", acl::Rule::Public(acl::Public {}))).await.unwrap();
    for node in &net.nodes[1..] {
        wait_for_topic(node, "town-square").await;
    }
    let mut collectors = Vec::new();
    for node in &net.nodes[1..] {
        let mut stream = gossip(node)
            .await
            .subscribe(SubscribeRequest {
                topic: "town-square".into(),
                reader: String::new(),
                start: Some(subscribe_request::Start::AfterPosition(0)),
            })
            .await
            .unwrap()
            .into_inner();
        collectors.push(tokio::spawn(async move {
            let mut arrivals = HashMap::new();
            while arrivals.len() < 50 {
                let s = tokio::time::timeout(Duration::from_secs(30), stream.message())
                    .await
                    .expect("entries keep coming")
                    .unwrap()
                    .unwrap();
                let seq = s.entry.unwrap().seq;
                assert!(arrivals.insert(seq, Instant::now()).is_none(), "seq {seq} delivered twice");
            }
            arrivals
        }));
    }
    let mut sent_at = HashMap::new();
    for i in 1..=50u64 {
        sent_at.insert(i, Instant::now());
        origin.publish(publish("town-square", format!("announcement {i}").as_bytes())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::new();
    for c in collectors {
        let arrivals = c.await.unwrap();
        assert_eq!(arrivals.len(), 50);
        for (seq, at) in arrivals {
            latencies.push(at.duration_since(sent_at[&seq]));
        }
    }
    latencies.sort();
    println!(
        "propagation to all of 5 nodes: p50 {:?}, p99 {:?}, max {:?} ({} deliveries)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        latencies.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_topic_travels_only_to_participant_nodes_also_across_restarts() {
    let mut net = network(3).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let participants = vec![net.nodes[0].did().to_string(), net.nodes[1].did().to_string()];
    let mut a = gossip(&net.nodes[0]).await;
    a.create_topic(spec("board", acl::Rule::Participants(acl::Participants { dids: participants }))).await.unwrap();
    wait_for_topic(&net.nodes[1], "board").await;
    a.publish(publish("board", b"from a")).await.unwrap();
    gossip(&net.nodes[1]).await.publish(publish("board", b"from b")).await.unwrap();

    for round in 0..2 {
        // Both participants hold both entries.
        for node in &net.nodes[..2] {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let entries = gossip(node)
                    .await
                    .get_entries(GetEntriesRequest { topic: "board".into(), ..Default::default() })
                    .await
                    .unwrap()
                    .into_inner()
                    .entries;
                if entries.len() == 2 {
                    break;
                }
                assert!(Instant::now() < deadline, "round {round}: {} holds {} entries", node.name, entries.len());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // The third node never received the topic or any entry of it. It is asked as a
        // participant would ask (reader = node 0's DID), so a held copy would be shown:
        // NOT_FOUND on every read path means it holds nothing.
        let c = &net.nodes[2];
        let participant = net.nodes[0].did().to_string();
        let mut gc = gossip(c).await;
        let not_found = |what: &str, result: Result<(), tonic::Status>| match result {
            Err(e) if e.code() == tonic::Code::NotFound => {}
            other => panic!("round {round}: {what} on the non-participant: {other:?}"),
        };
        not_found(
            "GetTopic",
            gc.get_topic(GetTopicRequest { name: "board".into(), reader: participant.clone() }).await.map(|_| ()),
        );
        not_found(
            "GetEntries",
            gc.get_entries(GetEntriesRequest {
                topic: "board".into(),
                reader: participant.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        );
        not_found(
            "Subscribe",
            gc.subscribe(SubscribeRequest {
                topic: "board".into(),
                reader: participant.clone(),
                start: Some(subscribe_request::Start::AfterPosition(0)),
            })
            .await
            .map(|_| ()),
        );
        let listed = gc
            .list_topics(ListTopicsRequest { page: None, reader: participant.clone() })
            .await
            .expect("ListTopics answers")
            .into_inner();
        assert!(listed.topics.iter().all(|t| t.name != "board"), "round {round}: {:?}", listed.topics);
        let stats = gc.stats(StatsRequest::default()).await.expect("Stats answers").into_inner();
        assert!(stats.topics.iter().all(|t| t.topic != "board"), "round {round}: {:?}", stats.topics);
        // Every stored entry counts, whatever its path: the participants' counters move,
        // the non-participant's stays at zero.
        assert_eq!(stats.entries_received, 0, "round {round}");
        assert_eq!(c.metric("gossip", "icn_gossip_entries_stored_total").await.unwrap(), 0.0, "round {round}");
        if round == 0 {
            for node in &net.nodes[..2] {
                let stored = node.metric("gossip", "icn_gossip_entries_stored_total").await.unwrap();
                assert_eq!(stored, 2.0, "{} stored its own entry and the other participant's", node.name);
                let received = gossip(node)
                    .await
                    .stats(StatsRequest::default())
                    .await
                    .expect("Stats")
                    .into_inner()
                    .entries_received;
                assert_eq!(received, 2, "{}", node.name);
            }
        }
        // Every node restarts, netd and gossip both.
        for node in net.nodes.iter_mut() {
            for svc in ["gossip", "netd"] {
                node.stop(svc, Duration::from_secs(10)).await.unwrap();
            }
            for svc in ["netd", "gossip"] {
                node.start(svc).await.unwrap();
                node.wait_healthy(svc, Duration::from_secs(20)).await.unwrap();
            }
        }
        net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acl_change_by_the_creator_spreads_and_applies_to_every_read() {
    let net = network(2).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let (alice, bob) = (icn_identity::NodeIdentity::generate(), icn_identity::NodeIdentity::generate());
    let members = |dids: Vec<String>| acl::Rule::Participants(acl::Participants { dids });
    let mut ga = gossip(a).await;
    ga.create_topic(spec("club", members(vec![a.did().to_string(), b.did().to_string(), alice.did().to_string()])))
        .await
        .unwrap();
    wait_for_topic(b, "club").await;
    assert!(read(b, alice.did().to_string()).await.is_ok());
    assert_eq!(read(b, bob.did().to_string()).await, Err(tonic::Code::NotFound));

    // Only the creator's node may change it; the change reaches the other node.
    let update = |dids: Vec<String>| UpdateTopicAclRequest {
        signing: Some(update_topic_acl_request::Signing::NodeSigned(update_topic_acl_request::NodeSigned {
            topic: "club".into(),
            acl: Some(Acl { rule: Some(members(dids)) }),
        })),
    };
    let err = gossip(b).await.update_topic_acl(update(vec![b.did().to_string()])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let updated = ga
        .update_topic_acl(update(vec![a.did().to_string(), b.did().to_string(), bob.did().to_string()]))
        .await
        .unwrap();
    assert_eq!(updated.into_inner().topic.unwrap().revision, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while read(b, bob.did().to_string()).await.is_err() {
        assert!(Instant::now() < deadline, "the new revision never reached node 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in [a, b] {
        assert_eq!(
            read(node, alice.did().to_string()).await,
            Err(tonic::Code::NotFound),
            "{}: alice was removed",
            node.name
        );
    }
}

async fn read(node: &TestNode, reader: String) -> Result<(), tonic::Code> {
    gossip(node)
        .await
        .get_entries(GetEntriesRequest { topic: "club".into(), reader, ..Default::default() })
        .await
        .map(|_| ())
        .map_err(|e| e.code())
}

fn icnctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(icn_testkit::binary("icnctl").unwrap())
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn icnctl_creates_publishes_follows_and_reads_topics_across_nodes() {
    let net = network(2).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (e1, e2) = (net.nodes[0].endpoint("gossip"), net.nodes[1].endpoint("gossip"));
    let out = icnctl(&e1, &["topic", "create", "coop-news"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created topic coop-news"));
    wait_for_topic(&net.nodes[1], "coop-news").await;
    let follower = {
        let e2 = e2.clone();
        tokio::task::spawn_blocking(move || {
            icnctl(&e2, &["--json", "topic", "subscribe", "coop-news", "--after", "0", "--count", "2"])
        })
    };
    for text in ["first", "second"] {
        let out = icnctl(&e1, &["topic", "publish", "coop-news", "--payload", text]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = tokio::time::timeout(Duration::from_secs(30), follower).await.unwrap().unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|l| l["payload"].as_str().unwrap()).collect::<Vec<_>>(), ["first", "second"]);
    assert_eq!(lines[0]["author"], net.nodes[0].did().as_str());
    let listed = icnctl(&e2, &["--json", "topics"]);
    let topics: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(topics[0]["name"], "coop-news");
    let entries = icnctl(&e2, &["topic", "entries", "coop-news"]);
    assert_eq!(String::from_utf8_lossy(&entries.stdout).lines().count(), 2);
    let missing = icnctl(&e2, &["topic", "entries", "no-such-topic"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no topic `no-such-topic`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_stats_count_the_connected_peers_each_topic_travels_to() {
    let net = network(3).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let mut ga = gossip(a).await;
    ga.create_topic(spec("everyone", acl::Rule::Public(acl::Public {}))).await.unwrap();
    let pair = acl::Rule::Participants(acl::Participants { dids: vec![a.did().to_string(), b.did().to_string()] });
    ga.create_topic(spec("pair", pair)).await.unwrap();
    let local = TopicSpec {
        name: "here-only".into(),
        acl: Some(Acl { rule: Some(acl::Rule::Public(acl::Public {})) }),
        scope: TopicScope::Local as i32,
        ..Default::default()
    };
    ga.create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Spec(local)) }).await.unwrap();
    let want = [("everyone", 2), ("pair", 1), ("here-only", 0)];
    // Replication lists its peers at least once per anti-entropy interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = ga.stats(StatsRequest::default()).await.unwrap().into_inner();
        let got: Vec<(&str, u32)> = want
            .iter()
            .map(|(name, _)| (*name, stats.topics.iter().find(|t| t.topic == *name).unwrap().peers))
            .collect();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "peers per topic: {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
