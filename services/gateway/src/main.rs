//! icn-gateway: the node's public API. Start-up, serving and shutdown are the shared
//! runtime's; this binary sets up auth, the backing services and the event hub, serves
//! REST and events on `api.http_listen`, and the gRPC twin through the runtime.

use icn_gateway::api::GatewayApi;
use icn_gateway::auth::{Auth, REVOKED_CF};
use icn_gateway::backend::Backend;
use icn_gateway::events::{self, Hub};
use icn_gateway::limits::Limits;
use icn_gateway::{rest, Gateway};
use icn_proto::gateway::v1::gateway_server::GatewayServer;
use icn_runtime::{Context, ServiceDef, Services};
use std::net::SocketAddr;
use std::sync::Arc;

const SERVICE: ServiceDef = ServiceDef { name: "gateway", column_families: &[REVOKED_CF] };

fn main() -> std::process::ExitCode {
    icn_runtime::main(SERVICE, build)
}

async fn build(ctx: Context) -> anyhow::Result<Services> {
    let node = ctx.identity.as_ref().map(|i| i.did().clone());
    let backend = Backend::new(&ctx.config)?;
    let hub = Hub::new(ctx.config.api.event_retention);
    let gateway = Arc::new(Gateway {
        config: ctx.config.api.clone(),
        auth: Auth::new(&ctx.config, node, ctx.storage.clone(), &ctx.metrics)?,
        backend: backend.clone(),
        hub: hub.clone(),
        limits: Limits::new(&ctx.config.api),
        shutdown: ctx.shutdown.clone(),
    });
    events::start(&ctx, hub, backend);
    let listener = tokio::net::TcpListener::bind(&ctx.config.api.http_listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding api.http_listen {}: {e}", ctx.config.api.http_listen))?;
    tracing::info!(address = %ctx.config.api.http_listen, "REST API, events and dashboard listening");
    let app = rest::router(gateway.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = ctx.shutdown.clone();
    ctx.spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "the REST API stopped");
        }
    });
    // The gRPC face takes what REST takes: bodies up to `api.max_body_bytes`, answers
    // within `api.request_timeout`.
    let (max_body, timeout) = (ctx.config.api.max_body_bytes, ctx.config.api.request_timeout);
    let grpc = GatewayServer::new(GatewayApi::new(gateway)).max_decoding_message_size(max_body);
    Ok(Services::new().serve(grpc).with_request_timeout(timeout))
}
