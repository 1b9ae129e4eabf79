//! icn-gateway: the node's public API. Start-up, serving and shutdown are the shared
//! runtime's; this binary only names the service and its API.

mod api;

use icn_proto::gateway::v1::gateway_server::GatewayServer;
use icn_runtime::{Context, ServiceDef, Services};

const SERVICE: ServiceDef = ServiceDef { name: "gateway", column_families: &[] };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

/// The service's gRPC API, given everything the runtime set up.
async fn build(ctx: Context) -> anyhow::Result<Services> {
    Ok(Services::new().add(GatewayServer::new(api::GatewayApi::new(ctx))))
}
