//! `[network.reconnect]`: how netd retries a lost or failed peer.

use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(10),
            max_attempts: 0,
            permanent_after: 10,
            wake_check_interval: Duration::from_secs(1),
            wake_jump_threshold: Duration::from_secs(5),
            restart_gap: Duration::from_secs(600),
        }
    }
}

impl ReconnectConfig {
    /// A zero base would retry in a tight loop; a cap below the base would never back off.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.base.is_zero() || self.cap < self.base {
            return Err(ConfigError::Invalid {
                key: "network.reconnect",
                problem: "base must be positive and cap at least base".into(),
            });
        }
        Ok(())
    }
}
