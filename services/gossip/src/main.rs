//! icn-gossip: topic pub/sub between nodes. Start-up, serving and shutdown are the
//! shared runtime's; this binary opens the topic store and serves its API.

use icn_gossip::api::GossipApi;
use icn_gossip::store::{Store, StoreMetrics, COLUMN_FAMILIES};
use icn_proto::gossip::v1::gossip_server::GossipServer;
use icn_runtime::{Context, ServiceDef, Services};
use std::sync::Arc;

const SERVICE: ServiceDef = ServiceDef { name: "gossip", column_families: COLUMN_FAMILIES };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

async fn build(ctx: Context) -> anyhow::Result<Services> {
    let (storage, topics, trust) = (ctx.storage.clone(), ctx.config.topics.clone(), ctx.config.network.trust.clone());
    let metrics = StoreMetrics::new(&ctx.metrics);
    let store = Arc::new(tokio::task::spawn_blocking(move || Store::open(storage, topics, trust, metrics)).await??);
    let metrics = icn_gossip::replicate::ReplicationMetrics::new(&ctx.metrics);
    let peers = icn_gossip::replicate::start(&ctx, store.clone(), metrics.clone())?;
    Ok(Services::new().serve(GossipServer::new(GossipApi::new(ctx, store, metrics, peers))))
}
