//! Layered configuration for every ICN binary: built-in defaults < `icn.toml` <
//! environment (`ICN__SECTION__KEY`, lists comma-separated), then [`IcnConfig::validate`].
//!
//! Every interval, limit and threshold a service uses lives here with its default and
//! a comment, so an operator can find and change it; `--print-config` shows the result.
//! No secret is ever part of this struct: passphrases and tokens are read from files
//! named here, or from the environment, by the code that needs them.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of environment overrides: `ICN__NETWORK__LISTEN=0.0.0.0:7000`.
pub const ENV_PREFIX: &str = "ICN";
/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["network.bootstrap", "network.advertise", "network.trust.allowlist", "api.admins"];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcnConfig {
    pub node: NodeConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
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

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// A label for logs and tools; the node's real name is its DID.
    pub name: String,
    /// Root of the node's state: the keystore and one folder per service.
    pub data_dir: PathBuf,
    /// Keystore file; empty means `<data_dir>/keystore.json`.
    pub keystore: PathBuf,
    /// File holding the keystore passphrase; empty means the `ICN_PASSPHRASE` variable.
    pub passphrase_file: PathBuf,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,icn_netd=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight calls and background tasks get to finish after SIGTERM before
    /// they are cut; storage is flushed after that either way.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// UDP address of the QUIC endpoint.
    pub listen: String,
    /// Addresses other nodes should dial to reach this one (`host:port`). Empty: the
    /// listen address, when it is not a wildcard.
    #[serde(default)]
    pub advertise: Vec<String>,
    /// Peers to dial at start-up: `host:port`, or `did:icn:…@host:port` to also pin the
    /// identity expected there.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Most peers named in one Hello or peer-exchange frame.
    pub peer_exchange_max: usize,
    /// How often connected peers re-announce the peers they know.
    #[serde(with = "humantime_serde")]
    pub peer_exchange_interval: Duration,
    /// Most connections this node keeps; dials beyond it are skipped.
    pub max_peers: usize,
    /// Largest message payload `Send` accepts, in bytes.
    pub max_message_bytes: usize,
    /// Largest frame read from a peer; larger ones close the connection with an error.
    /// Must exceed `max_message_bytes` by the frame's envelope.
    pub max_frame_bytes: usize,
    /// Messages stored for one peer (sent or not, until it acknowledges them) before
    /// `Send` answers RESOURCE_EXHAUSTED. Accepted messages are never dropped.
    pub peer_queue_capacity: usize,
    /// Bytes stored for one peer before `Send` answers RESOURCE_EXHAUSTED.
    pub peer_queue_max_bytes: usize,
    /// Sync queued messages to disk before `Send` answers, so a power cut loses none.
    /// Without it a process crash still loses nothing (RocksDB's log is written), a
    /// machine crash may.
    pub queue_fsync: bool,
    /// How often a receiver acknowledges delivered messages to their sender.
    #[serde(with = "humantime_serde")]
    pub ack_interval: Duration,
    /// Inbound messages buffered in memory for live subscribers; one that falls further
    /// behind catches up from the stored inbound log instead of slowing peers down.
    pub subscriber_buffer: usize,
    /// Delivered inbound messages kept in the inbound log for subscribers to resume from.
    pub inbound_retention: u64,
    /// QUIC handshake plus Hello exchange must finish within this.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// QUIC keep-alive interval; keeps NAT bindings open and detects dead peers.
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// A connection with no traffic (keep-alives included) for this long is dead.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub reconnect: ReconnectConfig,
    pub trust: TrustConfig,
    pub rate_limit: RateLimitConfig,
    pub vivaldi: VivaldiSettings,
}

/// Vivaldi network coordinates (Dabek et al., 2004), for RTT estimates to unmeasured peers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VivaldiSettings {
    /// Weight of a new sample in the node's error estimate (the paper's c_e), in (0, 1].
    pub ce: f64,
    /// Fraction of the way a coordinate moves per sample (the paper's c_c), in (0, 1].
    pub cc: f64,
    /// Smallest height (access-link delay) a coordinate keeps.
    #[serde(with = "humantime_serde")]
    pub min_height: Duration,
    /// RTT samples above this are ignored as outliers.
    #[serde(with = "humantime_serde")]
    pub max_rtt: Duration,
}

/// Who may connect. Both checks run on every new connection, in either direction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// DIDs allowed to connect; empty allows every DID (subject to `min_score`).
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Peers whose trust score is below this are refused.
    pub min_score: f64,
    /// Score of a DID with no entry in `scores`.
    pub default_score: f64,
    /// Trust scores by DID, in [0, 1]. (The trust graph published on gossip will feed
    /// these once it exists; until then they are set here.)
    #[serde(default)]
    pub scores: std::collections::BTreeMap<String, f64>,
}

/// Per-peer limit on inbound messages: a token bucket. A peer over it is slowed (netd
/// stops reading, so QUIC flow control pushes back on the sender); one still over it
/// after `cut_after` is disconnected.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained messages per second from one peer.
    pub messages_per_second: f64,
    /// Messages a peer may send at once above the sustained rate.
    pub burst: u32,
    #[serde(with = "humantime_serde")]
    pub cut_after: Duration,
}

/// Gossip topics and entries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Largest entry payload, in bytes, after decompression.
    pub max_payload_bytes: usize,
    /// Payloads larger than this are LZ4-compressed when this node signs them.
    pub compress_above_bytes: usize,
    /// Entries a topic keeps when it names no `max_entries` of its own; older ones are
    /// pruned (their (author, seq) stay known, so they are never fetched again).
    pub default_max_entries: u64,
    /// Entries ahead of a gap held per topic and author, waiting for the gap to fill.
    pub max_pending_per_author: usize,
    /// Live entries buffered per subscriber; one further behind catches up from the store.
    pub subscriber_buffer: usize,
    /// Peers a newly stored entry is pushed to at once (chosen at random among those
    /// allowed to read its topic).
    pub fanout: usize,
    /// How often each topic's version vector goes to `anti_entropy_peers` random peers,
    /// which answer with what this node lacks.
    #[serde(with = "humantime_serde")]
    pub anti_entropy_interval: Duration,
    pub anti_entropy_peers: usize,
    /// Pushes gather entries for up to this long, or up to `push_batch_bytes`.
    #[serde(with = "humantime_serde")]
    pub push_linger: Duration,
    pub push_batch_bytes: usize,
    /// Wait before reconnecting to this node's netd after losing it.
    #[serde(with = "humantime_serde")]
    pub netd_retry: Duration,
}

/// The mutual-credit ledger (icn-ledger). The rules transfers follow are the protocol's
/// and the same on every node; these settings only shape how this node works.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreditConfig {
    /// Most transfers one `SubmitTransfers` call may carry.
    pub max_batch: usize,
    /// Most entries one commit group takes: concurrent submissions waiting while a
    /// group is written join the next one, up to this many, and share its fsync.
    pub group_max_entries: usize,
    /// Submissions waiting for the committer; callers beyond it wait their turn.
    pub queue: usize,
    /// Largest gossip payload the ledger publishes (one batch of entries); the ledger
    /// uses `topics.max_payload_bytes` instead when that is smaller.
    pub publish_max_bytes: usize,
    /// How often the ledger looks for cooperatives' topics it does not follow yet.
    #[serde(with = "humantime_serde")]
    pub discover_interval: Duration,
    /// Wait before retrying gossip after a failure.
    #[serde(with = "humantime_serde")]
    pub gossip_retry: Duration,
    /// Tries `RecomputeBalances` makes to write a repair before it gives up (ABORTED)
    /// because the journal kept moving under it.
    pub recompute_attempts: u32,
    /// Transfers buffered for each `Watch` stream; a watcher further behind is cut.
    pub watch_buffer: usize,
}

/// The gateway's public API (icn-gateway): REST and server-sent events over HTTP, auth,
/// protection against overload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// HTTP address of REST under `/v1`, events, the OpenAPI document and the dashboard.
    pub http_listen: String,
    /// File holding the token-signing secret (at least 32 bytes). Empty means
    /// `<data_dir>/gateway/token-secret`, created with a random secret at first start
    /// (mode 0600). The secret is never logged.
    pub token_secret_file: PathBuf,
    /// How long a token is valid.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// How long a login challenge may be answered.
    #[serde(with = "humantime_serde")]
    pub challenge_ttl: Duration,
    /// DIDs granted the `admin` scope when they log in.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Requests per second, and burst, allowed per authenticated identity.
    pub identity_rate: f64,
    pub identity_burst: u32,
    /// Requests per second, and burst, allowed per client address.
    pub address_rate: f64,
    pub address_burst: u32,
    /// Requests handled at once; more are answered 429 / RESOURCE_EXHAUSTED at once
    /// rather than queued.
    pub max_in_flight: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// A request not answered within this is cut (504).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Events kept for streams resuming with `Last-Event-ID`.
    pub event_retention: usize,
    /// Comment lines sent on an idle event stream so proxies keep it open.
    #[serde(with = "humantime_serde")]
    pub event_keep_alive: Duration,
    /// How often the gateway polls netd for peer changes and gossip for new topics.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

/// Exponential backoff with full jitter between reconnection attempts to one peer:
/// attempt n waits a uniformly random time in `[0, min(cap, base * 2^n))`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// 0 means unlimited.
    pub max_attempts: u32,
    /// After this many consecutive failures of the same kind (say, no answer at the
    /// address) the peer is marked permanently failed and no longer dialled, until
    /// something is sent to it or it connects. 0 disables the mark.
    pub permanent_after: u32,
    /// How often the node checks for a wake from sleep (a clock jump).
    #[serde(with = "humantime_serde")]
    pub wake_check_interval: Duration,
    /// A check that comes this much later than due means the machine slept: every
    /// backoff restarts from its first step.
    #[serde(with = "humantime_serde")]
    pub wake_jump_threshold: Duration,
    /// After a restart following this long a gap since the node was last active,
    /// permanent-failure marks are cleared and every known peer is dialled afresh.
    #[serde(with = "humantime_serde")]
    pub restart_gap: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub netd: String,
    pub gossip: String,
    pub ledger: String,
    pub compute: String,
    pub gateway: String,
}

/// What every service process listens on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// gRPC API, health and reflection.
    pub grpc_listen: String,
    /// Prometheus `/metrics` over HTTP.
    pub metrics_listen: String,
}

impl Default for IcnConfig {
    fn default() -> Self {
        let service = |grpc: u16, metrics: u16| ServiceConfig {
            grpc_listen: format!("127.0.0.1:{grpc}"),
            metrics_listen: format!("127.0.0.1:{metrics}"),
        };
        Self {
            node: NodeConfig {
                name: "node".into(),
                data_dir: PathBuf::from("./data"),
                keystore: PathBuf::new(),
                passphrase_file: PathBuf::new(),
            },
            log: LogConfig { format: LogFormat::Pretty, level: "info".into() },
            shutdown: ShutdownConfig { timeout: Duration::from_secs(10) },
            network: NetworkConfig {
                listen: "0.0.0.0:7000".into(),
                advertise: Vec::new(),
                bootstrap: Vec::new(),
                peer_exchange_max: 32,
                peer_exchange_interval: Duration::from_secs(30),
                max_peers: 128,
                max_message_bytes: 1024 * 1024,
                max_frame_bytes: 1024 * 1024 + 64 * 1024,
                peer_queue_capacity: 100_000,
                peer_queue_max_bytes: 256 * 1024 * 1024,
                queue_fsync: true,
                ack_interval: Duration::from_millis(20),
                subscriber_buffer: 8192,
                inbound_retention: 1_000_000,
                handshake_timeout: Duration::from_secs(10),
                keep_alive_interval: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(30),
                reconnect: ReconnectConfig {
                    base: Duration::from_millis(500),
                    cap: Duration::from_secs(10),
                    max_attempts: 0,
                    permanent_after: 10,
                    wake_check_interval: Duration::from_secs(1),
                    wake_jump_threshold: Duration::from_secs(5),
                    restart_gap: Duration::from_secs(600),
                },
                trust: TrustConfig {
                    allowlist: Vec::new(),
                    min_score: 0.0,
                    default_score: 0.5,
                    scores: Default::default(),
                },
                vivaldi: VivaldiSettings {
                    ce: 0.25,
                    cc: 0.25,
                    min_height: Duration::from_micros(10),
                    max_rtt: Duration::from_secs(10),
                },
                rate_limit: RateLimitConfig {
                    messages_per_second: 20_000.0,
                    burst: 40_000,
                    cut_after: Duration::from_secs(10),
                },
            },
            topics: TopicsConfig {
                max_payload_bytes: 256 * 1024,
                compress_above_bytes: 1024,
                default_max_entries: 1_000_000,
                max_pending_per_author: 10_000,
                subscriber_buffer: 4096,
                fanout: 4,
                anti_entropy_interval: Duration::from_secs(1),
                anti_entropy_peers: 2,
                push_linger: Duration::from_millis(2),
                push_batch_bytes: 256 * 1024,
                netd_retry: Duration::from_millis(500),
            },
            credit: CreditConfig {
                max_batch: 1000,
                group_max_entries: 4096,
                queue: 1024,
                publish_max_bytes: 192 * 1024,
                discover_interval: Duration::from_secs(1),
                gossip_retry: Duration::from_millis(500),
                recompute_attempts: 5,
                watch_buffer: 4096,
            },
            api: ApiConfig {
                http_listen: "127.0.0.1:8080".into(),
                token_secret_file: PathBuf::new(),
                token_ttl: Duration::from_secs(3600),
                challenge_ttl: Duration::from_secs(60),
                admins: Vec::new(),
                identity_rate: 50.0,
                identity_burst: 100,
                address_rate: 100.0,
                address_burst: 200,
                max_in_flight: 256,
                max_body_bytes: 1024 * 1024,
                request_timeout: Duration::from_secs(10),
                event_retention: 10_000,
                event_keep_alive: Duration::from_secs(15),
                poll_interval: Duration::from_secs(1),
            },
            endpoints: Endpoints {
                netd: "http://127.0.0.1:7100".into(),
                gossip: "http://127.0.0.1:7200".into(),
                ledger: "http://127.0.0.1:7300".into(),
                compute: "http://127.0.0.1:7400".into(),
                gateway: "http://127.0.0.1:7500".into(),
            },
            netd: service(7100, 9100),
            gossip: service(7200, 9200),
            ledger: service(7300, 9300),
            compute: service(7400, 9400),
            gateway: service(7500, 9500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
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
            &mut self.api.admins,
        ] {
            list.retain(|s| !s.trim().is_empty());
            for s in list.iter_mut() {
                *s = s.trim().to_string();
            }
        }
    }

    /// Checks what serde cannot: addresses parse, limits are coherent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let addr = |key: &'static str, value: &str| {
            value
                .parse::<SocketAddr>()
                .map(|_| ())
                .map_err(|_| ConfigError::Invalid { key, problem: format!("must be ip:port, got `{value}`") })
        };
        addr("network.listen", &self.network.listen)?;
        for (name, svc) in self.services() {
            let (grpc, metrics) = match name {
                "netd" => ("netd.grpc_listen", "netd.metrics_listen"),
                "gossip" => ("gossip.grpc_listen", "gossip.metrics_listen"),
                "ledger" => ("ledger.grpc_listen", "ledger.metrics_listen"),
                "compute" => ("compute.grpc_listen", "compute.metrics_listen"),
                _ => ("gateway.grpc_listen", "gateway.metrics_listen"),
            };
            addr(grpc, &svc.grpc_listen)?;
            addr(metrics, &svc.metrics_listen)?;
        }
        let n = &self.network;
        let positive = |key: &'static str, v: usize| {
            if v == 0 {
                Err(ConfigError::Invalid { key, problem: "must be greater than 0".into() })
            } else {
                Ok(())
            }
        };
        positive("network.max_message_bytes", n.max_message_bytes)?;
        positive("network.peer_queue_capacity", n.peer_queue_capacity)?;
        positive("network.peer_queue_max_bytes", n.peer_queue_max_bytes)?;
        positive("network.subscriber_buffer", n.subscriber_buffer)?;
        positive("network.max_peers", n.max_peers)?;
        if n.max_frame_bytes < n.max_message_bytes + 1024 {
            return Err(ConfigError::Invalid {
                key: "network.max_frame_bytes",
                problem: format!(
                    "must exceed network.max_message_bytes ({}) by at least 1024 bytes of envelope",
                    n.max_message_bytes
                ),
            });
        }
        if n.reconnect.base.is_zero() || n.reconnect.cap < n.reconnect.base {
            return Err(ConfigError::Invalid {
                key: "network.reconnect",
                problem: "base must be positive and cap at least base".into(),
            });
        }
        if !(n.rate_limit.messages_per_second > 0.0) || n.rate_limit.burst == 0 {
            return Err(ConfigError::Invalid {
                key: "network.rate_limit",
                problem: "messages_per_second and burst must be positive".into(),
            });
        }
        let in_unit = |v: f64| (0.0..=1.0).contains(&v);
        if !in_unit(n.trust.min_score)
            || !in_unit(n.trust.default_score)
            || !n.trust.scores.values().all(|v| in_unit(*v))
        {
            return Err(ConfigError::Invalid { key: "network.trust", problem: "scores must lie in [0, 1]".into() });
        }
        addr("api.http_listen", &self.api.http_listen)?;
        let a = &self.api;
        positive("api.max_in_flight", a.max_in_flight)?;
        positive("api.max_body_bytes", a.max_body_bytes)?;
        positive("api.event_retention", a.event_retention)?;
        if !(a.identity_rate > 0.0) || !(a.address_rate > 0.0) || a.identity_burst == 0 || a.address_burst == 0 {
            return Err(ConfigError::Invalid { key: "api", problem: "rates and bursts must be positive".into() });
        }
        if a.token_ttl.is_zero() || a.challenge_ttl.is_zero() || a.request_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "api",
                problem: "token_ttl, challenge_ttl and request_timeout must be positive".into(),
            });
        }
        let c = &self.credit;
        positive("credit.max_batch", c.max_batch)?;
        positive("credit.group_max_entries", c.group_max_entries)?;
        positive("credit.queue", c.queue)?;
        positive("credit.recompute_attempts", c.recompute_attempts as usize)?;
        positive("credit.watch_buffer", c.watch_buffer)?;
        if c.publish_max_bytes < 4096 {
            return Err(ConfigError::Invalid {
                key: "credit.publish_max_bytes",
                problem: "must be at least 4096: one transfer with its deps must fit".into(),
            });
        }
        if n.idle_timeout <= n.keep_alive_interval {
            return Err(ConfigError::Invalid {
                key: "network.idle_timeout",
                problem: "must be longer than network.keep_alive_interval".into(),
            });
        }
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
        if self.node.keystore.as_os_str().is_empty() {
            self.node.data_dir.join("keystore.json")
        } else {
            self.node.keystore.clone()
        }
    }

    /// The effective configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configuration always serialises to toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "[network]\nlisten = \"127.0.0.1:7777\"\nbootstrap = [\"a:1\"]\n[netd]\ngrpc_listen = \"127.0.0.1:1\"\n[shutdown]\ntimeout = \"3s\"\n",
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
