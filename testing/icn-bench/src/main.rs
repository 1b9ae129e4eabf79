//! `make bench`: ICN's figures beside the ceiling measured on the same machine in the
//! same run. Prints a table and writes JSON (`--json`).
//!
//! netd: messages/s and MiB/s between two real netd processes on loopback (gRPC `Send`
//! in, durable queue, QUIC, durable inbound log, `Subscribe` out), next to raw quinn with
//! the same TLS setup on the same loopback; and, in the network lab (root), the time
//! from a partition's heal to the link being up again.
//!
//! gossip: entries/s one node accepts durably, and propagation across 5 and 10 nodes,
//! beside rust-libp2p gossipsub on the same layout in the same run ([`gossipsub`]).
//!
//! ledger ([`ledger`]): signed transfers/s one node commits durably, unary and in
//! batches, with latency, next to the machine's Ed25519 verification rate and to a plain
//! PostgreSQL double-entry ledger run in the same sitting ([`postgres`]).

use anyhow::Context;
use clap::Parser;
use icn_proto::net::v1::{PeerState, SendRequest, SubscribeRequest};
use icn_testkit::{Bootstrap, Network};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod gossipsub;
mod ledger;
mod postgres;

#[derive(Parser)]
struct Args {
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Seconds each netd load runs.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Skip the network-lab measurement (it needs root).
    #[arg(long)]
    no_lab: bool,
    /// Concurrent publishers in the gossip accept measurement.
    #[arg(long, default_value_t = 16)]
    publishers: usize,
    /// Run one section only: `netd`, `gossip` or `ledger`.
    #[arg(long)]
    only: Option<String>,
}

struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    ceiling: Option<(String, f64)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();

    let run = |section: &str| args.only.as_deref().is_none_or(|o| o == section);
    if run("netd") {
        let (raw_msgs, raw_mib) = raw_quinn().await?;
        let ceiling_msgs = ("raw quinn, 1 KiB frames, one stream".to_string(), raw_msgs);
        let ceiling_mib = ("raw quinn, one stream".to_string(), raw_mib);
        for fsync in [true, false] {
            let label = if fsync { "fsync on (default)" } else { "fsync off" };
            let (msgs, _) = netd_load(1024, 32, args.seconds, fsync).await?;
            rows.push(Row {
                name: format!("netd messages/s, 1 KiB, {label}"),
                value: msgs,
                unit: "msg/s",
                ceiling: Some(ceiling_msgs.clone()),
            });
            let (_, mib) = netd_load(256 * 1024, 8, args.seconds, fsync).await?;
            rows.push(Row {
                name: format!("netd MiB/s, 256 KiB messages, {label}"),
                value: mib,
                unit: "MiB/s",
                ceiling: Some(ceiling_mib.clone()),
            });
        }
    }
    if run("gossip") {
        let (accepted, ceiling_signs) = gossip_accept(args.seconds, args.publishers).await?;
        rows.push(Row {
            name: format!("gossip entries/s accepted durably by one node, {} publishers", args.publishers),
            value: accepted,
            unit: "entries/s",
            ceiling: Some(("Ed25519 sign+verify on one core".into(), ceiling_signs)),
        });
        for (nodes, rate) in [(5usize, 100u64), (10, 100)] {
            let (p50, p99, published, delivered) = gossip_propagation(nodes, rate, args.seconds).await?;
            let peer = gossipsub::run(nodes, rate, args.seconds).await.context("the gossipsub peer")?;
            let label = format!("{nodes} nodes, {rate}/s");
            rows.extend([
                row(
                    format!("gossipsub (rust-libp2p, QUIC, defaults) receipt p50 at the last of {label}"),
                    peer.p50_ms,
                    "ms",
                ),
                row(format!("gossipsub receipt p99 at the last of {label}"), peer.p99_ms, "ms"),
                row(format!("gossipsub messages published, {label}"), peer.published as f64, "messages"),
                row(format!("gossipsub messages reaching all of {label}"), peer.delivered * 100.0, "%"),
                row(format!("gossipsub CPU of all {nodes} processes while publishing"), peer.cores, "cores"),
                row(format!("ICN gossip p99 ÷ gossipsub p99, {label}"), p99 / peer.p99_ms, "×"),
            ]);
            rows.push(Row {
                name: format!("gossip publish rate achieved (target {rate}/s), {nodes} nodes"),
                value: published,
                unit: "entries/s",
                ceiling: None,
            });
            rows.push(Row {
                name: format!("gossip propagation p50 to all of {nodes} nodes"),
                value: p50,
                unit: "ms",
                ceiling: None,
            });
            rows.push(Row {
                name: format!("gossip propagation p99 to all of {nodes} nodes"),
                value: p99,
                unit: "ms",
                ceiling: None,
            });
            rows.push(Row {
                name: format!("gossip entries/s fully delivered to {nodes} nodes"),
                value: delivered,
                unit: "entries/s",
                ceiling: None,
            });
        }
    }
    if run("ledger") {
        rows.extend(ledger::run(args.seconds).await?);
    }
    if run("netd") && !args.no_lab {
        let ms = reconnect_after_heal().await.context("the reconnection measurement needs root (or pass --no-lab)")?;
        rows.push(Row {
            name: "netd reconnect after a partition heals (backoff cap 1 s), median of 3".into(),
            value: ms,
            unit: "ms",
            ceiling: None,
        });
    }

    println!("\n{:<70} {:>12}  {}", "measurement", "value", "ceiling on this machine");
    for r in &rows {
        let ceiling = r.ceiling.as_ref().map(|(n, v)| format!("{} {} ({n})", figure(*v), r.unit)).unwrap_or_default();
        println!("{:<70} {:>12}  {}", r.name, format!("{} {}", figure(r.value), r.unit), ceiling);
    }
    if let Some(path) = args.json {
        let doc: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({ "name": r.name, "value": r.value, "unit": r.unit,
                             "ceiling": r.ceiling.as_ref().map(|(n, v)| json!({ "name": n, "value": v })) })
            })
            .collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
        println!("\nwritten to {}", path.display());
    }
    Ok(())
}

/// A row with no ceiling beside it.
fn row(name: String, value: f64, unit: &'static str) -> Row {
    Row { name, value, unit, ceiling: None }
}

/// A figure with three significant digits below 100 (latencies of a few ms), whole above.
fn figure(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// Two quinn endpoints with netd's own TLS identities: the transport ceiling.
async fn raw_quinn() -> anyhow::Result<(f64, f64)> {
    use icn_identity::tls::TlsIdentity;
    let server_tls = TlsIdentity::new(&icn_identity::NodeIdentity::generate())?;
    let client_tls = TlsIdentity::new(&icn_identity::NodeIdentity::generate())?;
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(
        server_tls.server_crypto()?,
    )?));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let address = server.local_addr()?;
    let client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let client_config = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(
        client_tls.client_crypto()?,
    )?));
    let accept = tokio::spawn(async move {
        let conn = server.accept().await.expect("incoming").await.expect("handshake");
        let mut results = Vec::new();
        for _ in 0..2 {
            let mut stream = conn.accept_uni().await.expect("stream");
            let start = Instant::now();
            let mut total = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            while let Some(n) = stream.read(&mut buf).await.expect("read") {
                total += n;
            }
            results.push((total, start.elapsed()));
        }
        results
    });
    let conn = client.connect_with(client_config, address, "icn")?.await?;
    // 1 KiB frames, as many as fit in ~3 s at the expected rate.
    let frames = 400_000usize;
    let frame = vec![7u8; 1024];
    let mut s = conn.open_uni().await?;
    for _ in 0..frames {
        s.write_all(&frame).await?;
    }
    s.finish()?;
    let bulk = 1024usize * 1024 * 1024;
    let chunk = vec![7u8; 1 << 16];
    let mut s = conn.open_uni().await?;
    for _ in 0..bulk / chunk.len() {
        s.write_all(&chunk).await?;
    }
    s.finish()?;
    let results = accept.await?;
    let msgs = frames as f64 / results[0].1.as_secs_f64();
    let mib = (results[1].0 as f64 / (1024.0 * 1024.0)) / results[1].1.as_secs_f64();
    Ok((msgs, mib))
}

/// `senders` concurrent gRPC clients send `size`-byte messages for `seconds` from node 1
/// to node 2; the rate counts messages until the last one is delivered to node 2's
/// subscriber. Returns (messages/s, MiB/s).
async fn netd_load(size: usize, senders: usize, seconds: u64, fsync: bool) -> anyhow::Result<(f64, f64)> {
    let net = Network::builder(2)
        .services(&["netd"])
        .bootstrap(Bootstrap::Star)
        .env("ICN__NETWORK__QUEUE_FSYNC", if fsync { "true" } else { "false" })
        .env("ICN__LOG__LEVEL", "warn")
        .start()
        .await?;
    net.wait_full_mesh(Duration::from_secs(20)).await?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let mut inbox = b
        .netd()
        .await?
        .subscribe(SubscribeRequest { protocols: vec!["bench".into()], after_position: None })
        .await?
        .into_inner();
    let client = a.netd().await?;
    let to = b.did().to_string();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let mut client = client.clone();
        let to = to.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < end {
                let r =
                    SendRequest { to: to.clone(), protocol: "bench".into(), payload: vec![1u8; size], sealed: false };
                match client.send(r).await {
                    Ok(_) => sent += 1,
                    // A full queue is netd's back-pressure: wait for it to drain, as any
                    // client should.
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(status) => panic!("send: {status}"),
                }
            }
            sent
        }));
    }
    let mut sent = 0u64;
    for t in tasks {
        sent += t.await?;
    }
    let mut received = 0u64;
    while received < sent {
        tokio::time::timeout(Duration::from_secs(60), inbox.message())
            .await
            .context("delivery stalled")??
            .context("stream ended")?;
        received += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let msgs = received as f64 / elapsed;
    Ok((msgs, msgs * size as f64 / (1024.0 * 1024.0)))
}

/// In the lab: cut the link long enough for the connection to die, heal, time until the
/// peer is connected again.
async fn reconnect_after_heal() -> anyhow::Result<f64> {
    let lab = icn_netlab::Lab::new(2)?;
    let net = Network::builder(2)
        .services(&["netd"])
        .placements(lab.placements())
        .env("ICN__NETWORK__KEEP_ALIVE_INTERVAL", "500ms")
        .env("ICN__NETWORK__IDLE_TIMEOUT", "2s")
        .env("ICN__NETWORK__RECONNECT__CAP", "1s")
        .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "0")
        .start()
        .await?;
    net.wait_full_mesh(Duration::from_secs(20)).await?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let mut samples = Vec::new();
    for _ in 0..3 {
        lab.partition(&[1], &[2])?;
        a.wait_peer_state(b.did(), PeerState::Reconnecting, Duration::from_secs(20)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        lab.heal()?;
        let healed = Instant::now();
        a.wait_peer_state(b.did(), PeerState::Connected, Duration::from_secs(30)).await?;
        samples.push(healed.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    Ok(samples[1])
}

fn gossip_publish(topic: &str, payload: Vec<u8>) -> icn_proto::gossip::v1::PublishRequest {
    use icn_proto::gossip::v1::*;
    PublishRequest { signing: Some(publish_request::Signing::Payload(PublishPayload { topic: topic.into(), payload })) }
}

async fn gossip_topic(node: &icn_testkit::TestNode, name: &str) -> anyhow::Result<()> {
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
async fn gossip_accept(seconds: u64, publishers: usize) -> anyhow::Result<(f64, f64)> {
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

/// Publishes at `rate` entries/s from node 1 for `seconds`; returns the p50 and p99 time
/// until an entry is held by every other node, the publish rate achieved, and the rate at
/// which entries were delivered to all of them.
async fn gossip_propagation(nodes: usize, rate: u64, seconds: u64) -> anyhow::Result<(f64, f64, f64, f64)> {
    use icn_proto::gossip::v1::{gossip_client::GossipClient, subscribe_request, GetTopicRequest, SubscribeRequest};
    let net = Network::builder(nodes).services(&["netd", "gossip"]).env("ICN__LOG__LEVEL", "warn").start().await?;
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
    let mut latencies: Vec<f64> =
        all_held_at.iter().map(|(seq, at)| at.duration_since(sent_at[seq]).as_secs_f64() * 1000.0).collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let last = all_held_at.values().max().copied().unwrap_or(start);
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok((p(0.5), p(0.99), published, total as f64 / last.duration_since(start).as_secs_f64()))
}
