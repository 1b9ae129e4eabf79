//! icn-ledger: the mutual-credit ledger of the node's cooperatives. Start-up, serving
//! and shutdown are the shared runtime's; this binary replays the journal, starts the
//! committer and replication, and serves the API.

use icn_ledger::api::LedgerApi;
use icn_ledger::commit::LedgerNode;
use icn_ledger::replicate::{self, Gossip};
use icn_ledger::store::COLUMN_FAMILIES;
use icn_proto::ledger::v1::ledger_server::LedgerServer;
use icn_runtime::{Context, ServiceDef, Services};

const SERVICE: ServiceDef = ServiceDef { name: "ledger", column_families: COLUMN_FAMILIES };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

async fn build(ctx: Context) -> anyhow::Result<Services> {
    let node = LedgerNode::open(&ctx).await?;
    let gossip = Gossip::new(icn_telemetry::propagation::traced_channel(&ctx.config.endpoints.gossip)?);
    replicate::start(&ctx, node.clone(), gossip.clone());
    Ok(Services::new().serve(LedgerServer::new(LedgerApi::new(ctx, node, gossip))))
}
