use icn_netd::api::NetdApi;
use icn_netd::{Node, PEERS_CF};
use icn_proto::net::v1::netd_server::NetdServer;
use icn_runtime::{ServiceDef, Services};

const SERVICE: ServiceDef = ServiceDef { name: "netd", column_families: &[PEERS_CF] };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, |ctx| async move {
        let node = Node::start(ctx).await?;
        Ok(Services::new().add(NetdServer::new(NetdApi::new(node))))
    })
}
