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
    GossipClient::new(
        node.channel("gossip").await.unwrap_or_else(|e| panic!("{}: no gossip channel: {e:#}", node.name)),
    )
}

async fn vector(node: &TestNode) -> Result<BTreeMap<String, u64>, tonic::Status> {
    let r = gossip(node)
        .await
        .get_version_vector(GetVersionVectorRequest { topic: "ledger-ish".into(), reader: String::new() })
        .await?;
    Ok(r.into_inner().vector.unwrap_or_default().heads.into_iter().collect())
}

/// Polls `node`'s version vector until `done` holds and returns it. An RPC error is
/// retried like a vector that is not there yet; at `deadline` the test fails with the
/// last answer, error or vector.
async fn wait_for_vector(
    node: &TestNode,
    deadline: Instant,
    what: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> BTreeMap<String, u64> {
    loop {
        let last = vector(node).await;
        if let Ok(v) = &last {
            if done(v) {
                return v.clone();
            }
        }
        assert!(Instant::now() < deadline, "{}: no {what} by the deadline; last answer: {last:?}", node.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
            .unwrap_or_else(|e| panic!("{}: GetEntries failed: {e}", node.name))
            .into_inner();
        keys.extend(page.entries.iter().map(|s| s.entry.as_ref().map(|e| (e.author.clone(), e.seq)).unwrap()));
        if page.next_cursor.is_empty() {
            return keys;
        }
        cursor = page.next_cursor;
    }
}

/// Node 1 creates the public topic; every node learns it within 20 s.
async fn create_topic_everywhere(nodes: &[TestNode]) {
    let spec = TopicSpec {
        name: "ledger-ish".into(),
        acl: Some(Acl { rule: Some(acl::Rule::Public(acl::Public {})) }),
        ..Default::default()
    };
    gossip(&nodes[0])
        .await
        .create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Spec(spec)) })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in nodes {
        // NOT_FOUND until the topic has spread; any error still there at the deadline is
        // the failure.
        while let Err(e) =
            gossip(node).await.get_topic(GetTopicRequest { name: "ledger-ish".into(), reader: String::new() }).await
        {
            assert!(Instant::now() < deadline, "{} never learnt the topic: {e}", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// 20 entries from each of `publishers` (node indexes), one round every 100 ms.
async fn publish_rounds(nodes: &[TestNode], publishers: [usize; 2]) {
    for i in 0..20 {
        for publisher in publishers {
            let r = PublishRequest {
                signing: Some(publish_request::Signing::Payload(PublishPayload {
                    topic: "ledger-ish".into(),
                    payload: format!("{i} from node{}", publisher + 1).into_bytes(),
                })),
            };
            gossip(&nodes[publisher]).await.publish(r).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After `healed`, every node converges within 60 s on the publishers' 20 entries each,
/// and holds the same 40 entries, once each.
async fn converged(nodes: &[TestNode], publishers: [usize; 2], healed: Instant) {
    let want: BTreeMap<String, u64> = publishers.iter().map(|p| (nodes[*p].did().to_string(), 20)).collect();
    for node in nodes {
        wait_for_vector(node, healed + Duration::from_secs(60), "convergence", |v| *v == want).await;
    }
    println!("all {} nodes identical {} ms after the heal", nodes.len(), healed.elapsed().as_millis());
    let reference = {
        let mut k = entry_keys(&nodes[0]).await;
        k.sort();
        k
    };
    assert_eq!(reference.len(), 40);
    for node in nodes {
        let mut keys = entry_keys(node).await;
        assert_eq!(keys.len(), 40, "{}: no duplicates", node.name);
        keys.sort();
        assert_eq!(keys, reference, "{} holds the same entries", node.name);
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
    create_topic_everywhere(&net.nodes).await;

    lab.partition(&[1, 2], &[3, 4, 5]).unwrap();
    publish_rounds(&net.nodes, [0, 3]).await;
    // During the partition, each side holds its own side's entries and none of the
    // other side's: node2 (with node1) and node5 (with node4).
    let deadline = Instant::now() + Duration::from_secs(10);
    for (reader, own, other) in [(1usize, 0usize, 3usize), (4, 3, 0)] {
        let (own, other) = (net.nodes[own].did().to_string(), net.nodes[other].did().to_string());
        let v =
            wait_for_vector(&net.nodes[reader], deadline, "20 entries from its own side", |v| v.get(&own) == Some(&20))
                .await;
        assert_eq!(v.get(&other), None, "{} holds entries from across the partition: {v:?}", net.nodes[reader].name);
    }

    lab.heal().unwrap();
    converged(&net.nodes, [0, 3], Instant::now()).await;
}

/// The same behind routers, on the direct rung only: node1 is public, nodes 2–5 each sit
/// behind a router of another kind, so every entry travels through node1 (two nodes
/// behind routers have no rung between them until ICE). node1 is cut from nodes 4 and 5
/// while nodes 2 and 4 publish, until node1's links to them die; after the heal nodes 4
/// and 5 dial node1 again through their routers (node1 cannot dial them), and all five
/// converge without duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn behind_routers_a_partition_from_the_public_node_heals_and_all_five_converge() {
    use icn_netlab::nat::DEFAULT_MAPPING_LIFETIME;
    use icn_netlab::NatKind;
    use icn_proto::net::v1::PeerState;
    let lab = Lab::new(5).unwrap();
    for (host, kind) in (2..).zip(NatKind::ALL) {
        lab.behind_nat(host, kind, DEFAULT_MAPPING_LIFETIME).unwrap();
    }
    let net = lab
        .network(5)
        .services(&["netd", "gossip"])
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .start()
        .await
        .unwrap();
    let hub = &net.nodes[0];
    for node in &net.nodes[1..] {
        hub.wait_peer_state(node.did(), PeerState::Connected, Duration::from_secs(30)).await.unwrap();
    }
    create_topic_everywhere(&net.nodes).await;

    lab.partition(&[1], &[4, 5]).unwrap();
    publish_rounds(&net.nodes, [1, 3]).await;
    // node3 (behind a router, on node1's side) holds node2's entries, through node1, and
    // none of node4's.
    let (own, other) = (net.nodes[1].did().to_string(), net.nodes[3].did().to_string());
    let v = wait_for_vector(&net.nodes[2], Instant::now() + Duration::from_secs(10), "node2's 20 entries", |v| {
        v.get(&own) == Some(&20)
    })
    .await;
    assert_eq!(v.get(&other), None, "node3 holds entries from across the partition: {v:?}");
    for node in &net.nodes[3..] {
        hub.wait_peer_state(node.did(), PeerState::Reconnecting, Duration::from_secs(15)).await.unwrap();
    }

    lab.heal().unwrap();
    converged(&net.nodes, [1, 3], Instant::now()).await;
}
