//! Layered configuration for every ICN binary: built-in defaults < `icn.toml` <
//! environment (`ICN__SECTION__KEY`, lists comma-separated), then [`IcnConfig::validate`].
//!
//! Every interval, limit and threshold a service uses lives here with its default and
//! a comment, so an operator can find and change it; `--print-config` shows the result.
//! No secret is ever part of this struct: passphrases and tokens are read from files
//! named here, or from the environment, by the code that needs them.
//!
//! Each section of the file has a module holding its struct, the struct's defaults and
//! its checks; this file owns the whole: loading the layers, and validating every section.

mod api;
mod check;
mod credit;
mod error;
mod log;
mod network;
mod node;
mod runtime;
mod services;
mod shutdown;
mod topics;

pub use api::ApiConfig;
pub use credit::CreditConfig;
pub use error::ConfigError;
pub use log::{LogConfig, LogFormat};
pub use network::{
    CandidateKind, ExchangeConfig, NatConfig, NetworkConfig, RateLimitConfig, ReconnectConfig, TrustConfig,
    VivaldiConfig,
};
pub use node::NodeConfig;
pub use runtime::RuntimeConfig;
pub use services::{Endpoints, ServiceConfig};
pub use shutdown::ShutdownConfig;
pub use topics::TopicsConfig;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Prefix of environment overrides: `ICN__NETWORK__LISTEN=0.0.0.0:7000`.
pub const ENV_PREFIX: &str = "ICN";
/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "network.bootstrap",
    "network.advertise",
    "network.trust.allowlist",
    "network.nat.stun_servers",
    "network.nat.candidates",
    "api.admins",
];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcnConfig {
    pub node: NodeConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub runtime: RuntimeConfig,
    pub network: NetworkConfig,
    pub topics: TopicsConfig,
    pub credit: CreditConfig,
    pub api: ApiConfig,
    /// Where this node's services reach each other.
    pub endpoints: Endpoints,
    pub netd: ServiceConfig,
    pub gossip: ServiceConfig,
    pub ledger: ServiceConfig,
    pub compute: ServiceConfig,
    pub gateway: ServiceConfig,
}

impl Default for IcnConfig {
    fn default() -> Self {
        Self {
            node: NodeConfig::default(),
            log: LogConfig::default(),
            shutdown: ShutdownConfig::default(),
            runtime: RuntimeConfig::default(),
            network: NetworkConfig::default(),
            topics: TopicsConfig::default(),
            credit: CreditConfig::default(),
            api: ApiConfig::default(),
            endpoints: Endpoints::default(),
            netd: ServiceConfig::loopback(7100, 9100),
            gossip: ServiceConfig::loopback(7200, 9200),
            ledger: ServiceConfig::loopback(7300, 9300),
            compute: ServiceConfig::loopback(7400, 9400),
            gateway: ServiceConfig::loopback(7500, 9500),
        }
    }
}

impl IcnConfig {
    /// Defaults, then `file` if given (it must exist), then `ICN__…` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`IcnConfig::load`] with an explicit environment, so tests need not touch the
    /// process's own.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let defaults = config::Config::try_from(&IcnConfig::default()).map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File { path: path.into(), reason: "no such file".into() });
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env: config::Map<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__"))).collect();
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(env));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let built = builder.add_source(environment).build().map_err(|e| match file {
            Some(path) => ConfigError::File { path: path.into(), reason: e.to_string() },
            None => ConfigError::Load(e.to_string()),
        })?;
        let mut config: IcnConfig = built.try_deserialize().map_err(|e| ConfigError::Load(e.to_string()))?;
        config.normalise();
        config.validate()?;
        Ok(config)
    }

    /// An empty list variable (`ICN__NETWORK__BOOTSTRAP=`) means "none", not one empty entry.
    fn normalise(&mut self) {
        for list in [
            &mut self.network.bootstrap,
            &mut self.network.advertise,
            &mut self.network.trust.allowlist,
            &mut self.network.nat.stun_servers,
            &mut self.api.admins,
        ] {
            list.retain(|s| !s.trim().is_empty());
            for s in list.iter_mut() {
                *s = s.trim().to_string();
            }
        }
    }

    /// Checks what serde cannot: addresses parse, limits are coherent. Each section
    /// checks its own keys; the first refusal is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.network.validate()?;
        for (name, service) in self.services() {
            service.validate(name)?;
        }
        self.api.validate()?;
        self.topics.validate()?;
        self.credit.validate()?;
        Ok(())
    }

    /// The service sections by name.
    pub fn services(&self) -> [(&'static str, &ServiceConfig); 5] {
        [
            ("netd", &self.netd),
            ("gossip", &self.gossip),
            ("ledger", &self.ledger),
            ("compute", &self.compute),
            ("gateway", &self.gateway),
        ]
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services().into_iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    pub fn keystore_path(&self) -> PathBuf {
        self.node.keystore_path()
    }

    /// The effective configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configuration always serialises to toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_alone_are_valid() {
        let c = IcnConfig::load_with_env(None, env(&[])).unwrap();
        assert_eq!(c, IcnConfig::default());
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("icn.toml");
        std::fs::write(
            &path,
            "[network]\nlisten = \"127.0.0.1:7777\"\nbootstrap = [\"a:1\"]\n[netd]\ngrpc_listen = \"127.0.0.1:1\"\n[shutdown]\ntimeout = \"3s\"\n[runtime]\nworker_threads = 1\n",
        )
        .unwrap();
        let c = IcnConfig::load_with_env(
            Some(&path),
            env(&[
                ("ICN__NETD__GRPC_LISTEN", "127.0.0.1:2"),
                ("ICN__NETWORK__BOOTSTRAP", "b:1, c:2"),
                ("ICN__NETWORK__PEER_EXCHANGE_MAX", "5"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.network.listen, "127.0.0.1:7777");
        assert_eq!(c.netd.grpc_listen, "127.0.0.1:2");
        // Keys of a section the file names but does not set keep their defaults.
        assert_eq!(c.netd.metrics_listen, "127.0.0.1:9100");
        assert_eq!(c.network.bootstrap, vec!["b:1", "c:2"]);
        assert_eq!(c.network.peer_exchange_max, 5);
        assert_eq!(c.shutdown.timeout, Duration::from_secs(3));
        assert_eq!(c.runtime.worker_threads, 1);
    }

    #[test]
    fn an_empty_list_variable_means_no_entries() {
        let c = IcnConfig::load_with_env(None, env(&[("ICN__NETWORK__BOOTSTRAP", "")])).unwrap();
        assert!(c.network.bootstrap.is_empty());
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let err = IcnConfig::load_with_env(None, env(&[("ICN__NETD__GRPC_LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("netd.grpc_listen"), "{err}");
        let err = IcnConfig::load_with_env(None, env(&[("ICN__NETWORK__MAX_FRAME_BYTES", "10")])).unwrap_err();
        assert!(err.to_string().contains("network.max_frame_bytes"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("icn.toml");
        std::fs::write(&path, "[network]\nlisten_typo = 1\n").unwrap();
        let err = IcnConfig::load_with_env(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("listen_typo"), "{err}");
        let err = IcnConfig::load_with_env(Some(&dir.path().join("missing.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn printed_config_loads_back_to_the_same_values() {
        let mut c = IcnConfig::default();
        c.network.bootstrap = vec!["x:1".into()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("icn.toml");
        std::fs::write(&path, c.to_toml()).unwrap();
        assert_eq!(IcnConfig::load_with_env(Some(&path), env(&[])).unwrap(), c);
    }
}
