//! `make bench`: ICN's figures beside the ceiling measured on the same machine in the
//! same run. Prints a table and writes JSON (`--json`).
//!
//! netd: messages/s and MiB/s between two real netd processes on loopback (gRPC `Send`
//! in, durable queue, QUIC, durable inbound log, `Subscribe` out), next to raw quinn with
//! the same TLS setup on the same loopback; and, in the network lab (root), the time
//! from a partition's heal to the link being up again.

use anyhow::Context;
use clap::Parser;
use icn_proto::net::v1::{PeerState, SendRequest, SubscribeRequest};
use icn_testkit::{Bootstrap, Network, Placement};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    if !args.no_lab {
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
        let ceiling = r.ceiling.as_ref().map(|(n, v)| format!("{v:.0} {} ({n})", r.unit)).unwrap_or_default();
        println!("{:<70} {:>12}  {}", r.name, format!("{:.0} {}", r.value, r.unit), ceiling);
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

/// Two quinn endpoints with netd's own TLS identities: the transport ceiling.
async fn raw_quinn() -> anyhow::Result<(f64, f64)> {
    use icn_netd::tls::TlsIdentity;
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
                client.send(r).await.expect("send");
                sent += 1;
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
    let placements = lab
        .hosts()
        .iter()
        .map(|h| Placement {
            exec_prefix: lab.exec_prefix(h.index),
            data_ip: h.data_ip.clone(),
            control_ip: h.control_ip.clone(),
        })
        .collect();
    let net = Network::builder(2)
        .services(&["netd"])
        .placements(placements)
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
