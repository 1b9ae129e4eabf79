//! gossip's measurements: entries one node accepts durably, and propagation across
//! nodes (beside gossipsub, in `main`).

use anyhow::Context;
use icn_testkit::{Bootstrap, Network};
use std::time::{Duration, Instant};

pub(crate) fn gossip_publish(topic: &str, payload: Vec<u8>) -> icn_proto::gossip::v1::PublishRequest {
    use icn_proto::gossip::v1::*;
    PublishRequest { signing: Some(publish_request::Signing::Payload(PublishPayload { topic: topic.into(), payload })) }
}

pub(crate) async fn gossip_topic(node: &icn_testkit::TestNode, name: &str) -> anyhow::Result<()> {
    use icn_proto::gossip::v1::*;
    let spec = TopicSpec {
        name: name.into(),
        acl: Some(Acl { rule: Some(acl::Rule::Public(acl::Public {})) }),
        ..Default::default()
    };
    gossip_client::GossipClient::new(node.channel("gossip").await?)
        .create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Spec(spec)) })
        .await?;
    Ok(())
}

/// Entries/s one node signs, stores durably and acknowledges, with the machine's
/// Ed25519 sign+verify rate on one core beside it.
pub async fn gossip_accept(seconds: u64, publishers: usize) -> anyhow::Result<(f64, f64)> {
    use icn_proto::gossip::v1::gossip_client::GossipClient;
    let net = Network::builder(1)
        .services(&["netd", "gossip"])
        .bootstrap(Bootstrap::None)
        .env("ICN__LOG__LEVEL", "warn")
        .start()
        .await?;
    gossip_topic(&net.nodes[0], "bench").await?;
    let client = GossipClient::new(net.nodes[0].channel("gossip").await?);
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                client.publish(gossip_publish("bench", vec![7u8; 256])).await.expect("publish");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let id = icn_identity::NodeIdentity::generate();
    let did = id.did().clone();
    let signs = 20_000;
    let t = Instant::now();
    for i in 0..signs {
        let msg = (i as u64).to_be_bytes();
        let sig = id.sign_for(icn_identity::Purpose::GossipEntry, &msg).to_bytes();
        assert!(did.verify_for(icn_identity::Purpose::GossipEntry, &msg, &sig));
    }
    Ok((rate, signs as f64 / t.elapsed().as_secs_f64()))
}

/// What one gossip propagation run measured.
pub struct Propagation {
    /// Publish acknowledged at the origin → visible to a subscriber on the last node.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Publish rate achieved, and the rate at which entries reached every node.
    pub published: f64,
    pub delivered: f64,
    /// CPU of every node's netd and gossip together while publishing, in cores, and per
    /// entry per node.
    pub cores: f64,
    pub cpu_us_per_entry_node: f64,
    /// CPU of the same processes, in cores, before anything is published.
    pub idle_cores: f64,
    /// Entries sent to peers (pushes, duplicates and repairs) per entry published.
    pub sent_per_entry: f64,
}

/// CPU seconds used so far by the netd and gossip processes of `net`.
fn gossip_cpu(net: &Network) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for node in &net.nodes {
        for service in ["netd", "gossip"] {
            let pid = node.pid(service).context("a service exited")?;
            total += crate::ledger::cpu_seconds(&pid.to_string())?;
        }
    }
    Ok(total)
}

/// Entries all of `net`'s gossip services have sent to peers.
async fn entries_sent(net: &Network) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for node in &net.nodes {
        total += node.metric("gossip", "icn_gossip_entries_sent_total").await?;
    }
    Ok(total)
}

/// Publishes at `rate` entries/s from node 1 for `seconds`, one entry per call, and
/// measures the time until each is visible to a subscriber on every other node.
pub async fn gossip_propagation(nodes: usize, rate: u64, seconds: u64, workers: usize) -> anyhow::Result<Propagation> {
    use icn_proto::gossip::v1::{gossip_client::GossipClient, subscribe_request, GetTopicRequest, SubscribeRequest};
    // `workers` async workers per process (`--gossip-workers`; 0, one per core, unless
    // told otherwise).
    let net = Network::builder(nodes)
        .services(&["netd", "gossip"])
        .env("ICN__LOG__LEVEL", "warn")
        .env("ICN__RUNTIME__WORKER_THREADS", &workers.to_string())
        .start()
        .await?;
    net.wait_full_mesh(Duration::from_secs(60)).await?;
    gossip_topic(&net.nodes[0], "spread").await?;
    for node in &net.nodes[1..] {
        let mut c = GossipClient::new(node.channel("gossip").await?);
        while c.get_topic(GetTopicRequest { name: "spread".into(), reader: String::new() }).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let total = rate * seconds / 8 * 8;
    let mut receivers = Vec::new();
    for node in &net.nodes[1..] {
        let mut stream = GossipClient::new(node.channel("gossip").await?)
            .subscribe(SubscribeRequest {
                topic: "spread".into(),
                reader: String::new(),
                start: Some(subscribe_request::Start::AfterPosition(0)),
            })
            .await?
            .into_inner();
        receivers.push(tokio::spawn(async move {
            let mut arrivals = std::collections::HashMap::new();
            while (arrivals.len() as u64) < total {
                let s = tokio::time::timeout(Duration::from_secs(60), stream.message())
                    .await
                    .expect("propagation stalled")
                    .expect("stream")
                    .expect("open");
                arrivals.insert(s.entry.expect("entry").seq, Instant::now());
            }
            arrivals
        }));
    }
    // Several publishers share the rate, so one slow acknowledgement does not hold the
    // schedule back; each entry's clock starts when its publish is acknowledged.
    const PUBLISHERS: u64 = 8;
    let publisher = GossipClient::new(net.nodes[0].channel("gossip").await?);
    // The nodes' CPU with nothing published, beside what publishing costs.
    let idle_from = (gossip_cpu(&net)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cores = (gossip_cpu(&net)? - idle_from.0) / idle_from.1.elapsed().as_secs_f64();
    let (cpu_before, sent_before) = (gossip_cpu(&net)?, entries_sent(&net).await?);
    let start = Instant::now();
    let interval = Duration::from_secs_f64(PUBLISHERS as f64 / rate as f64);
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let mut publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..total / PUBLISHERS {
                let due = start + interval * i as u32 + interval * p as u32 / PUBLISHERS as u32;
                tokio::time::sleep_until(due.into()).await;
                let r =
                    publisher.publish(gossip_publish("spread", vec![1u8; 256])).await.expect("publish").into_inner();
                sent.push((r.entry.and_then(|e| e.entry).map(|e| e.seq).expect("stored"), Instant::now()));
            }
            sent
        }));
    }
    let mut sent_at = std::collections::HashMap::new();
    for t in tasks {
        sent_at.extend(t.await?);
    }
    let published = total as f64 / start.elapsed().as_secs_f64();
    let mut all_held_at: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    for r in receivers {
        for (seq, at) in r.await? {
            let e = all_held_at.entry(seq).or_insert(at);
            if at > *e {
                *e = at;
            }
        }
    }
    let last = all_held_at.values().max().copied().unwrap_or(start);
    let busy = last.duration_since(start).as_secs_f64();
    let cpu = gossip_cpu(&net)? - cpu_before;
    let sent = entries_sent(&net).await? - sent_before;
    let mut latencies: Vec<f64> =
        all_held_at.iter().map(|(seq, at)| at.duration_since(sent_at[seq]).as_secs_f64() * 1000.0).collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok(Propagation {
        p50_ms: p(0.5),
        p99_ms: p(0.99),
        published,
        delivered: total as f64 / busy,
        cores: cpu / busy,
        idle_cores,
        cpu_us_per_entry_node: cpu * 1e6 / total as f64 / nodes as f64,
        sent_per_entry: sent / total as f64,
    })
}
