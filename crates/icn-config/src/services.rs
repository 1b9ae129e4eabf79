//! `[netd]`, `[gossip]`, `[ledger]`, `[compute]`, `[gateway]` and `[endpoints]`: where
//! each service process listens, and where the node's services reach each other.
//!
//! Each service's default ports are set in [`crate::IcnConfig`]'s `Default`: gRPC on
//! 7x00 and metrics on 9x00 (netd 71, gossip 72, ledger 73, compute 74, gateway 75);
//! [`Endpoints`] defaults to the same gRPC ports on this host.

use crate::check::socket_addr;
use crate::ConfigError;
use serde::{Deserialize, Serialize};

/// What every service process listens on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// gRPC API, health and reflection.
    pub grpc_listen: String,
    /// Prometheus `/metrics` over HTTP.
    pub metrics_listen: String,
}

impl ServiceConfig {
    /// A service's default: both listeners on the loopback interface, so a fresh node
    /// exposes nothing beyond this host.
    pub(crate) fn loopback(grpc_port: u16, metrics_port: u16) -> Self {
        ServiceConfig {
            grpc_listen: format!("127.0.0.1:{grpc_port}"),
            metrics_listen: format!("127.0.0.1:{metrics_port}"),
        }
    }

    /// Both listen addresses parse; errors name them under the service's section, one
    /// of [`crate::IcnConfig::services`].
    pub fn validate(&self, service: &str) -> Result<(), ConfigError> {
        let (grpc, metrics) = match service {
            "netd" => ("netd.grpc_listen", "netd.metrics_listen"),
            "gossip" => ("gossip.grpc_listen", "gossip.metrics_listen"),
            "ledger" => ("ledger.grpc_listen", "ledger.metrics_listen"),
            "compute" => ("compute.grpc_listen", "compute.metrics_listen"),
            _ => ("gateway.grpc_listen", "gateway.metrics_listen"),
        };
        socket_addr(grpc, &self.grpc_listen)?;
        socket_addr(metrics, &self.metrics_listen)?;
        Ok(())
    }
}

/// Where this node's services reach each other (gRPC URLs).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub netd: String,
    pub gossip: String,
    pub ledger: String,
    pub compute: String,
    pub gateway: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            netd: "http://127.0.0.1:7100".into(),
            gossip: "http://127.0.0.1:7200".into(),
            ledger: "http://127.0.0.1:7300".into(),
            compute: "http://127.0.0.1:7400".into(),
            gateway: "http://127.0.0.1:7500".into(),
        }
    }
}
