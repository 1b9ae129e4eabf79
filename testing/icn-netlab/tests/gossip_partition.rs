//! Gossip across a partition of namespaced hosts: both sides keep publishing, and after
//! the heal every node holds the same entries, once each.

use icn_netlab::Lab;
use icn_proto::gossip::v1::gossip_client::GossipClient;
use icn_proto::gossip::v1::*;
use icn_testkit::TestNode;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

async fn gossip(node: &TestNode) -> GossipClient<Channel> {
    GossipClient::new(node.channel("gossip").await.unwrap())
}

async fn vector(node: &TestNode) -> BTreeMap<String, u64> {
    let r = gossip(node)
        .await
        .get_version_vector(GetVersionVectorRequest { topic: "ledger-ish".into(), reader: String::new() })
        .await;
    r.map(|r| r.into_inner().vector.unwrap_or_default().heads.into_iter().collect()).unwrap_or_default()
}

async fn entry_keys(node: &TestNode) -> Vec<(String, u64)> {
    let mut keys = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = gossip(node)
            .await
            .get_entries(GetEntriesRequest {
                topic: "ledger-ish".into(),
                page: Some(icn_proto::common::v1::PageRequest { limit: 500, cursor }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        keys.extend(page.entries.iter().map(|s| s.entry.as_ref().map(|e| (e.author.clone(), e.seq)).unwrap()));
        if page.next_cursor.is_empty() {
            return keys;
        }
        cursor = page.next_cursor;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_2_3_partition_where_both_sides_published_all_five_nodes_converge_without_duplicates() {
    let lab = Lab::new(5).unwrap();
    let net = lab
        .network(5)
        .services(&["netd", "gossip"])
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let spec = TopicSpec {
        name: "ledger-ish".into(),
        acl: Some(Acl { rule: Some(acl::Rule::Public(acl::Public {})) }),
        ..Default::default()
    };
    gossip(&net.nodes[0])
        .await
        .create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Spec(spec)) })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &net.nodes {
        while gossip(node)
            .await
            .get_topic(GetTopicRequest { name: "ledger-ish".into(), reader: String::new() })
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "{} never learnt the topic", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    lab.partition(&[1, 2], &[3, 4, 5]).unwrap();
    for i in 0..20 {
        for publisher in [0usize, 3] {
            let r = PublishRequest {
                signing: Some(publish_request::Signing::Payload(PublishPayload {
                    topic: "ledger-ish".into(),
                    payload: format!("{i} from node{}", publisher + 1).into_bytes(),
                })),
            };
            gossip(&net.nodes[publisher]).await.publish(r).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // During the partition, each side holds only its own side's entries.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        vector(&net.nodes[1]).await.get(net.nodes[3].did().as_str()),
        None,
        "node2 cannot have node4's entries yet"
    );

    lab.heal().unwrap();
    let healed = Instant::now();
    let want: BTreeMap<String, u64> =
        [(net.nodes[0].did().to_string(), 20), (net.nodes[3].did().to_string(), 20)].into_iter().collect();
    for node in &net.nodes {
        while vector(node).await != want {
            assert!(
                healed.elapsed() < Duration::from_secs(60),
                "{} did not converge: {:?}",
                node.name,
                vector(node).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("all 5 nodes identical {} ms after the heal", healed.elapsed().as_millis());
    let reference = {
        let mut k = entry_keys(&net.nodes[0]).await;
        k.sort();
        k
    };
    assert_eq!(reference.len(), 40);
    for node in &net.nodes {
        let keys = entry_keys(node).await;
        assert_eq!(keys.len(), 40, "{}: no duplicates", node.name);
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, reference, "{} holds the same entries", node.name);
    }
}
