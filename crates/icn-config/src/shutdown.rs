//! `[shutdown]`: how a service stops after SIGTERM.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight calls and background tasks get to finish after SIGTERM before
    /// they are cut; storage is flushed after that either way.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { timeout: Duration::from_secs(10) }
    }
}
