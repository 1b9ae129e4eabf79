//! icn-compute: task placement, WebAssembly execution and stateful actors. Start-up,
//! serving and shutdown are the shared runtime's; this binary only names the service and
//! its API.

mod api;

use icn_proto::compute::v1::compute_server::ComputeServer;
use icn_runtime::{Context, ServiceDef, Services};

const SERVICE: ServiceDef = ServiceDef { name: "compute", column_families: &[] };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

/// The service's gRPC API, given everything the runtime set up.
async fn build(ctx: Context) -> anyhow::Result<Services> {
    Ok(Services::new().serve(ComputeServer::new(api::ComputeApi::new(ctx))))
}
