use icn_netd::api::NetdApi;
use icn_netd::{Node, COLUMN_FAMILIES};
use icn_proto::net::v1::netd_server::NetdServer;
use icn_runtime::{ServiceDef, Services};

const SERVICE: ServiceDef = ServiceDef { name: "netd", column_families: COLUMN_FAMILIES };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, |ctx| async move {
        let node = Node::start(ctx).await?;
        Ok(Services::new().serve(NetdServer::new(NetdApi::new(node))))
    })
}
