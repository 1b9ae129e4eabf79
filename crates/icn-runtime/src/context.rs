//! What a service receives from the runtime: configuration, identity, storage, metrics,
//! and the shutdown token and task tracker that tie its background work to the process.

use icn_config::IcnConfig;
use icn_identity::NodeIdentity;
use icn_storage::Storage;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Context {
    pub service: &'static str,
    pub config: Arc<IcnConfig>,
    /// `None` in limited mode: the node has no keystore yet.
    pub identity: Option<Arc<NodeIdentity>>,
    pub storage: Storage,
    pub metrics: prometheus::Registry,
    /// Fires at SIGTERM/SIGINT. Long-lived work (streams, loops) ends when it does.
    pub shutdown: CancellationToken,
    /// Background tasks the runtime awaits, within the shutdown timeout, before flushing.
    pub tasks: TaskTracker,
    pub started_at: SystemTime,
}

impl Context {
    /// The node identity, or the FAILED_PRECONDITION an identity-bound call answers in
    /// limited mode, telling the operator what to do.
    pub fn require_identity(&self) -> Result<&Arc<NodeIdentity>, tonic::Status> {
        self.identity.as_ref().ok_or_else(|| {
            tonic::Status::failed_precondition(format!(
                "this call needs the node identity, and icn-{} runs in limited mode because \
                 there is no keystore at {}: create one with `icnctl id init --keystore {}` \
                 (passphrase from ICN_PASSPHRASE) and restart the service",
                self.service,
                self.config.keystore_path().display(),
                self.config.keystore_path().display(),
            ))
        })
    }

    /// Runs `task` in the background; shutdown waits for it (it should watch `shutdown`).
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task)
    }

    pub fn service_info(&self) -> icn_proto::common::v1::ServiceInfo {
        icn_proto::common::v1::ServiceInfo {
            service: self.service.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            did: self.identity.as_ref().map(|i| i.did().to_string()).unwrap_or_default(),
            limited_mode: self.identity.is_none(),
            started_at_ms: self
                .started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
        }
    }
}
