//! Exponential backoff with full jitter: attempt `n` (from 0) waits a uniformly random
//! duration in `[0, min(cap, base * 2^n))`. Full jitter spreads the retries of many
//! nodes that lost the same peer at the same moment.

use icn_config::ReconnectConfig;
use rand::Rng;
use std::time::Duration;

/// The upper bound of the wait before attempt `attempt`.
pub fn ceiling(config: &ReconnectConfig, attempt: u32) -> Duration {
    doubling(config.base, config.cap, attempt)
}

/// `base * 2^attempt`, at most `cap`.
pub fn doubling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

pub fn delay(config: &ReconnectConfig, attempt: u32) -> Duration {
    let ceiling = ceiling(config, attempt);
    Duration::from_nanos(rand::thread_rng().gen_range(0..=ceiling.as_nanos() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ReconnectConfig {
        ReconnectConfig {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(10),
            ..icn_config::IcnConfig::default().network.reconnect
        }
    }

    #[test]
    fn the_ceiling_doubles_until_the_cap() {
        let c = config();
        let ceilings: Vec<u128> = (0..8).map(|n| ceiling(&c, n).as_millis()).collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
        assert_eq!(ceiling(&c, u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let c = config();
        let samples: Vec<Duration> = (0..200).map(|_| delay(&c, 3)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(4)));
        let distinct: std::collections::HashSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "full jitter draws different delays");
    }
}
