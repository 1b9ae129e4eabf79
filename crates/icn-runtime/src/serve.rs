//! Serving: gRPC (service handlers + health + reflection), `/metrics`, signals, and the
//! ordered stop.

use crate::{identity, Context, ServiceDef};
use anyhow::Context as _;
use icn_config::IcnConfig;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::server::NamedService;
use tonic_health::ServingStatus;

/// The gRPC services one process serves, collected by the service's `build` step.
pub struct Services {
    routes: tonic::service::RoutesBuilder,
    names: Vec<&'static str>,
    /// Most time a call may take before it answers (its stream, if any, may go on).
    request_timeout: Option<std::time::Duration>,
}

impl Default for Services {
    fn default() -> Self {
        Self::new()
    }
}

impl Services {
    pub fn new() -> Self {
        Self { routes: tonic::service::RoutesBuilder::default(), names: Vec::new(), request_timeout: None }
    }

    /// Answers any call that takes longer than `timeout` to answer with CANCELLED (a
    /// client's shorter `grpc-timeout` wins): for a public face, where a slow backend
    /// must not hold callers' connections open for ever.
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Serves `svc` (a tonic service) beside the others, reported healthy by its name.
    pub fn serve<S>(mut self, svc: S) -> Self
    where
        S: tower_service::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(svc);
        self.names.push(S::NAME);
        self
    }
}

pub(crate) async fn run<F, Fut>(def: ServiceDef, config: IcnConfig, build: F) -> anyhow::Result<()>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Services>>,
{
    // Handlers first: a SIGTERM that arrives once the service answers must find them
    // installed, or the default action kills the process without the orderly stop.
    let signals = Signals::install()?;
    let service_config = config
        .service(def.name)
        .with_context(|| format!("no configuration section for service `{}`", def.name))?
        .clone();
    let identity = identity::unlock(&config)?;
    match &identity {
        Some(id) => tracing::info!(did = %id.did(), "node identity unlocked"),
        None => tracing::warn!(
            keystore = %config.keystore_path().display(),
            "no node identity: running in limited mode (health, metrics and read-only calls only); \
             create one with `icnctl id init` and restart"
        ),
    }
    let data_dir = config.node.data_dir.join(def.name);
    let storage = {
        let dir = data_dir.clone();
        let cfs = def.column_families;
        tokio::task::spawn_blocking(move || icn_storage::Storage::open(&dir, cfs)).await??
    };
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let ctx = Context {
        service: def.name,
        config: Arc::new(config),
        identity,
        storage: storage.clone(),
        metrics: prometheus::Registry::new_custom(Some("icn".into()), None)?,
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        started_at: SystemTime::now(),
    };
    // Bind before building so a port clash is reported before any work starts.
    let grpc_listener = tokio::net::TcpListener::bind(&service_config.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC on {}", service_config.grpc_listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(&service_config.metrics_listen)
        .await
        .with_context(|| format!("binding metrics on {}", service_config.metrics_listen))?;
    let shutdown_timeout = ctx.config.shutdown.timeout;
    let metrics_registry = ctx.metrics.clone();
    let workers = prometheus::IntGauge::new(
        "runtime_workers",
        "Threads running this service's async tasks (runtime.worker_threads; one per core when 0)",
    )?;
    workers.set(tokio::runtime::Handle::current().metrics().num_workers() as i64);
    metrics_registry.register(Box::new(workers))?;
    let services = build(ctx).await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    for name in &services.names {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    // Both reflection versions: v1 is current, but widespread tools (grpcurl 1.8 among
    // them) still ask v1alpha only.
    let reflection_builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(icn_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in &services.names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection = reflection_builder().build_v1().context("building the reflection service")?;
    let reflection_v1alpha = reflection_builder().build_v1alpha().context("building the reflection service")?;
    let mut routes = services.routes;
    routes.add_service(health_service).add_service(reflection).add_service(reflection_v1alpha);

    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;
    let service_name = def.name;
    let mut builder = tonic::transport::Server::builder();
    if let Some(timeout) = services.request_timeout {
        builder = builder.timeout(timeout);
    }
    let server = builder
        .trace_fn(move |request| {
            let span = tracing::info_span!("grpc", service = service_name, path = %request.uri().path());
            icn_telemetry::propagation::adopt_http_parent(&span, request.headers());
            span
        })
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            // Small request/response exchanges must not wait on Nagle's algorithm (which,
            // with delayed ACKs, adds ~40 ms to a unary call).
            tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(grpc_listener), |stream| {
                if let Ok(s) = &stream {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set on a gRPC connection");
                    }
                }
                stream
            }),
            shutdown.clone().cancelled_owned(),
        );
    let server = tokio::spawn(server);
    let metrics = tokio::spawn(icn_telemetry::metrics::serve(metrics_listener, metrics_registry, shutdown.clone()));
    tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, services = ?services.names, "ready");

    let signal = signals.next().await;
    tracing::info!(signal, timeout = ?shutdown_timeout, "shutting down");
    health.set_service_status("", ServingStatus::NotServing).await;
    for name in &services.names {
        health.set_service_status(*name, ServingStatus::NotServing).await;
    }
    shutdown.cancel();
    tasks.close();
    let drained = tokio::time::timeout(shutdown_timeout, async {
        match server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "gRPC server task failed"),
            Ok(Ok(())) => {}
        }
        let _ = metrics.await;
        tasks.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(timeout = ?shutdown_timeout, "in-flight work did not finish in time; stopping it");
    }
    tokio::task::spawn_blocking(move || storage.flush()).await??;
    tracing::info!("stopped");
    Ok(())
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn next(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
