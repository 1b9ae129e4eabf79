//! Protection against overload: token buckets per identity and per client address, and
//! a bound on requests in flight beyond which the gateway answers 429 at once instead of
//! queueing without bound.

use crate::error::GatewayError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Keys kept before those whose state is the same as a fresh key's (idle long enough to
/// be full again) are dropped: callers that come and go cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

/// A GCRA limit (`governor`) of `rate` requests per second and `burst` at once, per key.
pub struct RateLimiter {
    what: &'static str,
    rate: f64,
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimiter {
    pub fn new(what: &'static str, rate: f64, burst: u32) -> Self {
        // The configuration is validated positive; the fallbacks only guard absurd values.
        let period = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::from_nanos(1));
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self { what, rate, limiter: DefaultKeyedRateLimiter::keyed(quota), clock: DefaultClock::default() }
    }

    /// Takes one request's place for `key`, or says when to come back.
    pub fn check(&self, key: &str) -> Result<(), GatewayError> {
        if self.limiter.len() >= MAX_KEYS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            GatewayError::Busy(format!(
                "rate limit of {} requests/s per {} reached; retry in {} ms",
                self.rate,
                self.what,
                wait.as_millis().max(1)
            ))
        })
    }

    /// Keys currently tracked.
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }
}

pub struct Limits {
    pub identity: RateLimiter,
    pub address: RateLimiter,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Limits {
    pub fn new(config: &icn_config::ApiConfig) -> Self {
        Self {
            identity: RateLimiter::new("identity", config.identity_rate, config.identity_burst),
            address: RateLimiter::new("address", config.address_rate, config.address_burst),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            max_in_flight: config.max_in_flight,
        }
    }

    /// A slot for one request, held until it is answered; none when the gateway is full.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, GatewayError> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            GatewayError::Busy(format!(
                "the gateway is handling {} requests (api.max_in_flight); retry shortly",
                self.max_in_flight
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = RateLimiter::new("identity", 1000.0, 3);
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        assert!(matches!(l.check("a"), Err(GatewayError::Busy(_))));
        l.check("b").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        l.check("a").unwrap();
    }

    #[test]
    fn callers_that_come_and_go_do_not_grow_memory_without_bound() {
        let l = RateLimiter::new("address", 1_000_000.0, 1);
        for i in 0..(MAX_KEYS + 10_000) {
            l.check(&format!("10.0.{}.{}", i / 256, i % 256)).unwrap();
        }
        // Each key refills within a microsecond, so the sweep at the bound drops them.
        assert!(l.keys() <= MAX_KEYS, "{} keys kept", l.keys());
    }
}
