//! `[network.rate_limit]`: how many messages one peer may send this node.

use crate::check::above_zero;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { messages_per_second: 20_000.0, burst: 40_000, cut_after: Duration::from_secs(10) }
    }
}

impl RateLimitConfig {
    /// A bucket that never fills would refuse every message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !above_zero(self.messages_per_second) || self.burst == 0 {
            return Err(ConfigError::Invalid {
                key: "network.rate_limit",
                problem: "messages_per_second and burst must be positive".into(),
            });
        }
        Ok(())
    }
}
