//! `make bench`: ICN's figures beside the ceiling measured on the same machine in the
//! same run. Prints a table and writes JSON (`--json`).
//!
//! netd ([`netd`]): messages/s and MiB/s between two real netd processes on loopback —
//! durable (gRPC `Send` in, durable queue, QUIC, durable inbound log, `Subscribe` out) and
//! both classes through one stream in (`SendStream`, one message per item, and
//! `SendBatches`, 64) and batched subscriptions out — next to raw quinn with
//! the same TLS setup on the same loopback; and, in the network lab (root), the time
//! from a partition's heal to the link being up again.
//!
//! gossip ([`gossip`]): entries/s one node accepts durably, and propagation across 5 and
//! 10 nodes at 100 and 1,000 entries/s (durable-visible latency at the last node, CPU per
//! entry, entries sent per entry), beside rust-libp2p gossipsub on the same layout in the
//! same run ([`gossipsub`]).
//!
//! ledger ([`ledger`]): signed transfers/s one node commits durably, unary and in
//! batches, with latency, next to the machine's Ed25519 verification rate and to a plain
//! PostgreSQL double-entry ledger run in the same sitting ([`postgres`]).
//!
//! restart ([`restart`]): each service's time from start to serving correct reads with
//! a million transfers and a million gossip entries stored, and its memory at rest.

use anyhow::Context;
use clap::Parser;
use serde_json::json;

mod gossip;
mod gossipsub;
mod ledger;
mod netd;
mod postgres;
mod restart;

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
    /// Transfers the ledger holds when its restart is timed.
    #[arg(long, default_value_t = 1_000_000)]
    restart_transfers: usize,
    /// Entries gossip holds (on one topic, besides the ledger's) when its restart is timed.
    #[arg(long, default_value_t = 1_000_000)]
    restart_entries: usize,
    /// Run one section only: `netd`, `gossip`, `ledger` or `restart`; `netd-1k` runs only
    /// netd's 1 KiB stream rows and raw quinn (what a profile of the per-message path needs),
    /// `gossip-10` only ICN's 10-node gossip row at `--gossip-rate` (what a profile of
    /// gossip needs).
    #[arg(long)]
    only: Option<String>,
    /// Entries/s of the `gossip-10` row.
    #[arg(long, default_value_t = 1000)]
    gossip_rate: u64,
    /// Async workers per ICN process in the gossip rows (`runtime.worker_threads`; 0, the
    /// default, is one per core, as a node runs unless told otherwise). The gossipsub peer
    /// runs each process on one thread; 1 here measured no different (BENCHMARKS.md).
    #[arg(long, default_value_t = 0)]
    gossip_workers: usize,
}

struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    ceiling: Option<(String, f64)>,
}

/// Messages per `SendBatches` item in the netd rows that batch.
const BENCH_SEND_BATCH: usize = 64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();

    let run = |section: &str| args.only.as_deref().is_none_or(|o| o == section);
    let small_only = args.only.as_deref() == Some("netd-1k");
    if run("netd") || small_only {
        // Raw quinn before and after netd's loads, the higher of each as the ceiling:
        // this machine's speed drifts within minutes, and a ceiling taken in a slow
        // minute would flatter netd.
        let (raw_msgs, raw_mib) = netd::raw_quinn().await?;
        // Large durable messages are bound by the disk as much as by QUIC: their ceiling
        // is the lower of raw quinn and the disk's synced writes, halved.
        let disk = netd::disk_ceiling(args.seconds.min(5)).await?;
        let mut ceiling_msgs = ("raw quinn, 1 KiB frames, one stream".to_string(), raw_msgs);
        let mut ceiling_mib = ("raw quinn, one stream".to_string(), raw_mib);
        let first = rows.len();
        for fsync in [true, false].into_iter().filter(|_| !small_only) {
            let label = if fsync { "fsync on (default)" } else { "fsync off" };
            let (msgs, _) = netd::netd_load(1024, 32, args.seconds, fsync).await?;
            rows.push(Row {
                name: format!("netd messages/s, 1 KiB, {label}"),
                value: msgs,
                unit: "msg/s",
                ceiling: Some(ceiling_msgs.clone()),
            });
            let (_, mib) = netd::netd_load(256 * 1024, 8, args.seconds, fsync).await?;
            rows.push(Row {
                name: format!("netd MiB/s, 256 KiB messages, {label}"),
                value: mib,
                unit: "MiB/s",
                ceiling: Some(ceiling_mib.clone()),
            });
        }
        use icn_proto::net::v1::DeliveryClass;
        for (class, label) in
            [(DeliveryClass::Durable, "durable, fsync on"), (DeliveryClass::BestEffort, "best effort")]
        {
            // One message per stream item (SendStream), then 64 (SendBatches).
            for (batch, how) in [(1, "one send stream"), (BENCH_SEND_BATCH, "batches of 64")] {
                let (msgs, _, refused) = netd::netd_stream(1024, args.seconds, class, batch).await?;
                rows.push(Row {
                    name: format!("netd messages/s delivered, 1 KiB, {label}, {how}"),
                    value: msgs,
                    unit: "msg/s",
                    ceiling: Some(ceiling_msgs.clone()),
                });
                rows.push(row(format!("netd sends refused (queue full), 1 KiB, {label}, {how}"), refused, "%"));
            }
            if small_only {
                continue;
            }
            let (_, mib, _) = netd::netd_stream(256 * 1024, args.seconds, class, 1).await?;
            rows.push(Row {
                name: format!("netd MiB/s delivered, 256 KiB messages, {label}, one send stream"),
                value: mib,
                unit: "MiB/s",
                ceiling: Some(ceiling_mib.clone()),
            });
            if class == DeliveryClass::Durable {
                rows.push(Row {
                    name: format!("netd MiB/s delivered, 256 KiB messages, {label}, one send stream, vs disk"),
                    value: mib,
                    unit: "MiB/s",
                    ceiling: Some(("256 KiB synced appends, halved: two nodes, one disk".into(), disk)),
                });
            }
        }
        let (again_msgs, again_mib) = netd::raw_quinn().await?;
        rows.push(row("raw quinn 1 KiB frames/s, before netd's loads".into(), raw_msgs, "frames/s"));
        rows.push(row("raw quinn 1 KiB frames/s, after netd's loads".into(), again_msgs, "frames/s"));
        rows.push(row("raw quinn MiB/s, before netd's loads".into(), raw_mib, "MiB/s"));
        rows.push(row("raw quinn MiB/s, after netd's loads".into(), again_mib, "MiB/s"));
        rows.push(row("disk: 256 KiB appends, each synced, halved".into(), disk, "MiB/s"));
        ceiling_msgs.1 = raw_msgs.max(again_msgs);
        ceiling_mib.1 = raw_mib.max(again_mib);
        for r in &mut rows[first..] {
            match &mut r.ceiling {
                Some((name, value)) if *name == ceiling_msgs.0 => *value = ceiling_msgs.1,
                Some((name, value)) if *name == ceiling_mib.0 => *value = ceiling_mib.1,
                _ => {}
            }
        }
    }
    // `gossip-10` runs only ICN's 10-node row, at `--gossip-rate`, without the peer: what
    // a profile of gossip's per-entry cost needs.
    let gossip_10_only = args.only.as_deref() == Some("gossip-10");
    let one_layout = [(10, args.gossip_rate)];
    if run("gossip") || gossip_10_only {
        if !gossip_10_only {
            let (accepted, ceiling_signs) = gossip::gossip_accept(args.seconds, args.publishers).await?;
            rows.push(Row {
                name: format!("gossip entries/s accepted durably by one node, {} publishers", args.publishers),
                value: accepted,
                unit: "entries/s",
                ceiling: Some(("Ed25519 sign+verify on one core".into(), ceiling_signs)),
            });
        }
        let layouts: &[(usize, u64)] = if gossip_10_only { &one_layout } else { &[(5, 100), (10, 100), (10, 1000)] };
        for &(nodes, rate) in layouts {
            let icn = gossip::gossip_propagation(nodes, rate, args.seconds, args.gossip_workers).await?;
            let label = format!("{nodes} nodes, {rate}/s");
            if !gossip_10_only {
                let peer = gossipsub::run(nodes, rate, args.seconds).await.context("the gossipsub peer")?;
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
                    row(format!("ICN gossip p99 ÷ gossipsub p99, {label}"), icn.p99_ms / peer.p99_ms, "×"),
                ]);
            }
            rows.extend([
                row(format!("gossip publish rate achieved (target {rate}/s), {label}"), icn.published, "entries/s"),
                row(format!("gossip durable-visible p50 at the last of {label}"), icn.p50_ms, "ms"),
                row(format!("gossip durable-visible p99 at the last of {label}"), icn.p99_ms, "ms"),
                row(format!("gossip entries/s fully delivered, {label}"), icn.delivered, "entries/s"),
                row(
                    format!("gossip CPU of all {nodes} nodes (netd + gossip) while publishing, {label}"),
                    icn.cores,
                    "cores",
                ),
                row(format!("gossip CPU per entry per node, {label}"), icn.cpu_us_per_entry_node, "µs"),
                row(format!("gossip CPU of all {nodes} nodes idle (nothing published)"), icn.idle_cores, "cores"),
                row(format!("gossip entries sent per entry published, {label}"), icn.sent_per_entry, "entries"),
            ]);
        }
    }
    if run("ledger") {
        rows.extend(ledger::run(args.seconds).await?);
    }
    if run("restart") {
        rows.extend(restart::run(args.restart_transfers, args.restart_entries).await?);
    }
    if run("netd") && !args.no_lab {
        let ms =
            netd::reconnect_after_heal().await.context("the reconnection measurement needs root (or pass --no-lab)")?;
        rows.push(Row {
            name: "netd reconnect after a partition heals (backoff cap 1 s), median of 3".into(),
            value: ms,
            unit: "ms",
            ceiling: None,
        });
    }

    println!("\n{:<70} {:>12}  ceiling on this machine", "measurement", "value");
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
