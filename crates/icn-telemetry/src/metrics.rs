//! Prometheus metrics: one registry per process, served as text on `/metrics`.

use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// Serves `registry` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move { render(&registry) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

fn render(registry: &Registry) -> (http::StatusCode, [(http::HeaderName, String); 1], Vec<u8>) {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    let status = match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => http::StatusCode::OK,
        Err(e) => {
            body = format!("encoding metrics failed: {e}\n").into_bytes();
            http::StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, [(http::header::CONTENT_TYPE, encoder.format_type().to_string())], body)
}

/// Registers `metric` and hands it back, for one-line metric construction.
/// Registration only fails on a duplicate name, which is a programming error.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry.register(Box::new(metric.clone())).expect("each metric is registered once per process");
    metric
}
