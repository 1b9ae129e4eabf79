//! `[network.vivaldi]`: how fast netd's Vivaldi network coordinate moves.
//!
//! netd's `vivaldi` module runs the algorithm with this config and checks it when it
//! starts, against the coordinate bounds of its protocol (`MAX_COORDINATE_SECS`, 100 s),
//! which every node must agree on and so are not configuration.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Vivaldi network coordinates (Dabek et al., 2004), for RTT estimates to unmeasured
/// peers. The defaults are the constants the paper found to converge quickly without
/// oscillating.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VivaldiConfig {
    /// The paper's c_e: how much one sample moves our error estimate, scaled by our
    /// share of the combined error. Default 0.25. In (0, 1].
    pub ce: f64,
    /// The paper's c_c: the fraction of a sample's prediction error that one update
    /// corrects when we are entirely unsure and the peer entirely sure. Default 0.25;
    /// larger converges faster but oscillates. In (0, 1].
    pub cc: f64,
    /// The floor for our height (the access-link delay a coordinate keeps). Default
    /// 10 µs ([`VivaldiConfig::DEFAULT_MIN_HEIGHT`]). At most 100 s.
    #[serde(with = "humantime_serde")]
    pub min_height: Duration,
    /// RTT samples above this are outliers (a stalled peer, a retransmission) and are
    /// ignored. Default 10 s. Above zero, at most 100 s.
    #[serde(with = "humantime_serde")]
    pub max_rtt: Duration,
}

impl VivaldiConfig {
    /// The default height floor, and the height of a fresh coordinate: about what a
    /// host's own network stack adds, so that no node claims to be nearer than that to
    /// anything.
    pub const DEFAULT_MIN_HEIGHT: Duration = Duration::from_micros(10);
}

impl Default for VivaldiConfig {
    fn default() -> Self {
        VivaldiConfig {
            ce: 0.25,
            cc: 0.25,
            min_height: VivaldiConfig::DEFAULT_MIN_HEIGHT,
            max_rtt: Duration::from_secs(10),
        }
    }
}
