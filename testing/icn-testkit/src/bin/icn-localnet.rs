//! `make run`: a local ICN network of N nodes × 5 services on loopback, state under one
//! data folder (kept between runs, so identities and data survive), stopped cleanly with
//! Ctrl-C. Prints each node's DID and endpoints and writes them to `<data>/network.json`.

use clap::Parser;
use icn_testkit::{Network, SERVICES};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Start a local ICN network on loopback")]
struct Args {
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Data folder; each node gets `<data>/nodeN`.
    #[arg(long, default_value = ".data/localnet")]
    data: PathBuf,
    /// Node i (from 0) uses ports base + 100*i: QUIC +0, gRPC +1..+5, metrics +11..+15.
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data)?;
    let data = std::fs::canonicalize(&args.data)?;
    eprintln!("starting {} nodes under {} ...", args.nodes, data.display());
    let mut network = Network::builder(args.nodes).root(&data).base_port(args.base_port).start().await?;
    network.wait_full_mesh(Duration::from_secs(30)).await?;

    let mut description = Vec::new();
    for node in &network.nodes {
        println!("\n{}  {}", node.name, node.did());
        println!("  quic     udp {}", node.quic_address());
        let mut services = serde_json::Map::new();
        for svc in SERVICES {
            println!("  {svc:<8} {}   metrics {}", node.endpoint(svc), node.metrics_url(svc));
            services.insert(
                svc.into(),
                serde_json::json!({ "grpc": node.endpoint(svc), "metrics": node.metrics_url(svc) }),
            );
        }
        println!("  http     {}/   (dashboard; REST under /v1, /v1/openapi.json)", node.http_url());
        description.push(serde_json::json!({
            "name": node.name, "did": node.did().to_string(), "data_dir": node.dir,
            "quic": node.quic_address(), "services": services, "http": node.http_url(),
            "logs": node.dir.join("logs"),
        }));
    }
    let file = data.join("network.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&serde_json::json!({ "nodes": description }))?)?;
    println!("\nall {} nodes connected; written to {}", args.nodes, file.display());
    println!("try: icnctl --endpoint {} peers      (Ctrl-C stops the network)", network.nodes[0].endpoint("netd"));

    // Ctrl-C at a terminal, SIGTERM from a supervisor: either stops every service.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = terminate.recv() => {}
    }
    eprintln!("\nstopping ...");
    let codes = network.stop().await?;
    let unclean: Vec<_> = codes.iter().filter(|(_, _, c)| *c != Some(0)).collect();
    if unclean.is_empty() {
        eprintln!("stopped {} services cleanly", codes.len());
        Ok(())
    } else {
        anyhow::bail!("services that did not exit 0: {unclean:?}")
    }
}
