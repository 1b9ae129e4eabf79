//! icn-gossip: topic pub/sub between nodes. Start-up, serving and shutdown are the
//! shared runtime's; this binary opens the topic store and serves its API.

use icn_gossip::api::GossipApi;
use icn_gossip::store::{Store, COLUMN_FAMILIES};
use icn_proto::gossip::v1::gossip_server::GossipServer;
use icn_runtime::{Context, ServiceDef, Services};
use std::sync::Arc;

const SERVICE: ServiceDef = ServiceDef { name: "gossip", column_families: COLUMN_FAMILIES };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

async fn build(ctx: Context) -> anyhow::Result<Services> {
    let (storage, topics, trust) = (ctx.storage.clone(), ctx.config.topics.clone(), ctx.config.network.trust.clone());
    let rejections = icn_telemetry::metrics::register(
        &ctx.metrics,
        prometheus::IntCounterVec::new(
            prometheus::Opts::new("gossip_rejections_total", "Entries and topics refused, by reason"),
            &["reason"],
        )?,
    );
    let store = Arc::new(tokio::task::spawn_blocking(move || Store::open(storage, topics, trust, rejections)).await??);
    let metrics = icn_gossip::replicate::ReplicationMetrics::new(&ctx.metrics);
    icn_gossip::replicate::start(&ctx, store.clone(), metrics.clone())?;
    Ok(Services::new().add(GossipServer::new(GossipApi::new(ctx, store, metrics))))
}
