//! `[api]`: the gateway's public API: where it listens, its tokens, and its protection
//! against overload.

use crate::check::{above_zero, positive, socket_addr};
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Login challenges outstanding at once, node-wide: issued within `challenge_ttl`,
    /// answered or not. One more is refused (429 / RESOURCE_EXHAUSTED,
    /// `TOO_MANY_CHALLENGES`, counted in `icn_gateway_challenges_refused_total`).
    pub max_challenges: usize,
    /// Unanswered login challenges one DID may hold at once; one more is refused likewise.
    pub challenges_per_did: usize,
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
    /// How often a live event stream asks again whether its token still holds (not
    /// revoked) and what its caller may read; expiry ends a stream at once.
    #[serde(with = "humantime_serde")]
    pub stream_recheck: Duration,
    /// How often the gateway polls netd for peer changes and gossip for new topics.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long `/v1/health` and `NodeStatus` wait for each service's health answer
    /// before reporting it NOT_SERVING.
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            http_listen: "127.0.0.1:8080".into(),
            token_secret_file: PathBuf::new(),
            token_ttl: Duration::from_secs(3600),
            challenge_ttl: Duration::from_secs(60),
            max_challenges: 10_000,
            challenges_per_did: 4,
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
            stream_recheck: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(2),
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        socket_addr("api.http_listen", &self.http_listen)?;
        positive("api.max_in_flight", self.max_in_flight)?;
        positive("api.max_body_bytes", self.max_body_bytes)?;
        positive("api.event_retention", self.event_retention)?;
        positive("api.max_challenges", self.max_challenges)?;
        positive("api.challenges_per_did", self.challenges_per_did)?;
        if !above_zero(self.identity_rate)
            || !above_zero(self.address_rate)
            || self.identity_burst == 0
            || self.address_burst == 0
        {
            return Err(ConfigError::Invalid { key: "api", problem: "rates and bursts must be positive".into() });
        }
        if self.token_ttl.is_zero()
            || self.challenge_ttl.is_zero()
            || self.request_timeout.is_zero()
            || self.stream_recheck.is_zero()
        {
            return Err(ConfigError::Invalid {
                key: "api",
                problem: "token_ttl, challenge_ttl, request_timeout and stream_recheck must be positive".into(),
            });
        }
        Ok(())
    }
}
