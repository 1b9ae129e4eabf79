//! icn-gossip: topic pub/sub between nodes, on top of netd. Start-up, serving and
//! shutdown are the shared runtime's; this binary only names the service and its API.

mod api;

use icn_proto::gossip::v1::gossip_server::GossipServer;
use icn_runtime::{Context, ServiceDef, Services};

const SERVICE: ServiceDef = ServiceDef { name: "gossip", column_families: &[] };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

/// The service's gRPC API, given everything the runtime set up.
async fn build(ctx: Context) -> anyhow::Result<Services> {
    Ok(Services::new().add(GossipServer::new(api::GossipApi::new(ctx))))
}
