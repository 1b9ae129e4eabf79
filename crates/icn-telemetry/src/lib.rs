//! Logs, traces and metrics, set up the same way in every ICN process.
//!
//! - [`init`] installs the tracing subscriber (pretty or JSON) and, when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set, an OpenTelemetry OTLP exporter.
//! - [`propagation`] carries W3C trace context across gRPC metadata and inside netd
//!   messages, so one trace spans every hop.
//! - [`metrics`] serves a Prometheus registry on `/metrics`.

pub mod metrics;
pub mod propagation;

use icn_config::{LogConfig, LogFormat};
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Standard OpenTelemetry variable naming the collector; exporting is off without it.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log filter `{filter}`: {reason}")]
    Filter { filter: String, reason: String },
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Otlp { endpoint: String, reason: String },
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes buffered spans when dropped at the end of `main`.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TelemetryGuard {
    pub fn shutdown(mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.force_flush() {
                eprintln!("flushing spans failed: {e}");
            }
            if let Err(e) = provider.shutdown() {
                eprintln!("stopping the span exporter failed: {e}");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Installs logging and, when configured, trace export for `service`. Must run inside
/// a Tokio runtime (the span exporter batches on it).
pub fn init(service: &str, log: &LogConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter_text = std::env::var("RUST_LOG").unwrap_or_else(|_| log.level.clone());
    let filter = EnvFilter::try_new(&filter_text)
        .map_err(|e| TelemetryError::Filter { filter: filter_text.clone(), reason: e.to_string() })?;
    let fmt = match log.format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr).boxed()
        }
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
    };
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let (otel, provider) = match std::env::var(OTLP_ENDPOINT_VAR).ok().filter(|v| !v.is_empty()) {
        None => (None, None),
        Some(endpoint) => {
            let provider = otlp_provider(service, &endpoint)?;
            let tracer = provider.tracer(service.to_string());
            opentelemetry::global::set_tracer_provider(provider.clone());
            (Some(tracing_opentelemetry::layer().with_tracer(tracer)), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(service: &str, endpoint: &str) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Otlp { endpoint: endpoint.into(), reason: e.to_string() })?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(format!("icn-{service}")).build();
    // The batch processor exports from its own thread; the tonic exporter it drives was
    // built here, inside the service's Tokio runtime, and sends on that runtime.
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
