//! `[network.trust]`: which peers may connect, by DID and by trust score.

use crate::ConfigError;
use serde::{Deserialize, Serialize};

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

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig { allowlist: Vec::new(), min_score: 0.0, default_score: 0.5, scores: Default::default() }
    }
}

impl TrustConfig {
    /// The trust score of `did`: its own entry, else the default. The one lookup that
    /// netd's connection gate and gossip's `MinTrust` ACLs share.
    pub fn score_of(&self, did: &str) -> f64 {
        self.scores.get(did).copied().unwrap_or(self.default_score)
    }

    /// Every score, and the threshold, lies in [0, 1].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let in_unit = |v: f64| (0.0..=1.0).contains(&v);
        if !in_unit(self.min_score) || !in_unit(self.default_score) || !self.scores.values().all(|v| in_unit(*v)) {
            return Err(ConfigError::Invalid { key: "network.trust", problem: "scores must lie in [0, 1]".into() });
        }
        Ok(())
    }
}
