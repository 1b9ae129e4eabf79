//! icn-ledger: the mutual-credit ledger of the node's cooperatives. Start-up, serving
//! and shutdown are the shared runtime's; this binary only names the service and its API.

mod api;

use icn_proto::ledger::v1::ledger_server::LedgerServer;
use icn_runtime::{Context, ServiceDef, Services};

const SERVICE: ServiceDef = ServiceDef { name: "ledger", column_families: &[] };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

/// The service's gRPC API, given everything the runtime set up.
async fn build(ctx: Context) -> anyhow::Result<Services> {
    Ok(Services::new().add(LedgerServer::new(api::LedgerApi::new(ctx))))
}
