//! The life cycle every ICN service shares (seed 003's start-up order, made one function):
//!
//! 1. parse the command line and load the layered configuration (`--print-config` stops here);
//! 2. install logging, tracing and the metrics registry;
//! 3. unlock the node identity, or run in limited mode when there is none;
//! 4. open the service's RocksDB store;
//! 5. let the service build its gRPC handlers and background tasks ([`Context`]);
//! 6. serve gRPC with health and reflection, and `/metrics`, until SIGTERM or SIGINT;
//! 7. stop in reverse: health NOT_SERVING, stop accepting, drain in-flight calls and
//!    tracked tasks within `shutdown.timeout`, flush storage, flush spans, exit 0.
//!
//! A service's `main` is a single call to [`main`].

mod context;
pub mod follow;
mod identity;
mod serve;

pub use context::Context;
pub use identity::IdentityError;
pub use serve::Services;

use clap::Parser;
use icn_config::IcnConfig;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// What the runtime needs to know about a service before it exists.
#[derive(Clone, Copy, Debug)]
pub struct ServiceDef {
    /// Short name: `netd`, `gossip`, … It picks the config section and the data folder.
    pub name: &'static str,
    /// RocksDB column families the service uses.
    pub column_families: &'static [&'static str],
}

/// Exit code when the configuration or command line is wrong.
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(version, about = "An ICN service. Configuration: defaults < --config file < ICN__SECTION__KEY environment.")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "ICN_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

/// Runs the service's whole life and returns the process's exit code.
pub fn main<F, Fut>(def: ServiceDef, build: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<Services>> + Send,
{
    let cli = Cli::parse();
    let config = match IcnConfig::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("icn-{}: {e}", def.name);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.runtime.worker_threads > 0 {
        builder.worker_threads(config.runtime.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("icn-{}: starting the async runtime: {e}", def.name);
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let telemetry = match icn_telemetry::init(def.name, &config.log) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("icn-{}: {e}", def.name);
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let code = match serve::run(def, config, build).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(service = def.name, "{e:#}");
                ExitCode::FAILURE
            }
        };
        telemetry.shutdown();
        code
    });
    // Background blocking work (RocksDB) has been flushed; do not wait for stragglers.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// UNIMPLEMENTED status naming the capability that is not built yet.
pub fn pending(capability: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("not available yet: {capability}"))
}

/// Wall-clock time in Unix milliseconds, as records and APIs carry it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Page sizes of list calls: the size when a request names none, and the largest allowed.
pub mod paging {
    use icn_proto::common::v1::PageRequest;

    pub const DEFAULT_PAGE: u32 = 100;
    pub const MAX_PAGE: u32 = 1000;

    /// The number of items a page holds for this request.
    pub fn limit(page: &Option<PageRequest>) -> usize {
        page.as_ref().map(|p| p.limit).filter(|l| *l > 0).unwrap_or(DEFAULT_PAGE).min(MAX_PAGE) as usize
    }

    /// The request's cursor, empty for the first page.
    pub fn cursor(page: &Option<PageRequest>) -> &str {
        page.as_ref().map(|p| p.cursor.as_str()).unwrap_or_default()
    }
}
