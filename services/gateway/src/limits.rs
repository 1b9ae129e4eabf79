//! Protection against overload: token buckets per identity and per client address, and
//! a bound on requests in flight beyond which the gateway answers 429 at once instead of
//! queueing without bound.

use crate::error::GatewayError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Buckets kept before idle, full ones are dropped.
const MAX_BUCKETS: usize = 100_000;

pub struct RateLimiter {
    what: &'static str,
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(what: &'static str, rate: f64, burst: u32) -> Self {
        Self { what, rate, burst: burst as f64, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says when to come back.
    pub fn check(&self, key: &str) -> Result<(), GatewayError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("not poisoned");
        if buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = ((1.0 - *tokens) / self.rate * 1000.0).ceil() as u64;
            Err(GatewayError::Busy(format!(
                "rate limit of {} requests/s per {} reached; retry in {wait_ms} ms",
                self.rate, self.what
            )))
        }
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
}
