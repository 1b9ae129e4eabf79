//! Who may connect, and how fast a peer may send: the allowlist and trust floor checked
//! on every new connection, and the per-peer inbound token bucket.

use icn_config::{RateLimitConfig, TrustConfig};
use icn_identity::Did;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub struct Gate {
    allowlist: HashSet<String>,
    min_score: f64,
    default_score: f64,
    scores: HashMap<String, f64>,
}

impl Gate {
    pub fn new(config: &TrustConfig) -> Self {
        Self {
            allowlist: config.allowlist.iter().cloned().collect(),
            min_score: config.min_score,
            default_score: config.default_score,
            scores: config.scores.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }

    /// `Err` with the reason, said to the refused peer too.
    pub fn admit(&self, did: &Did) -> Result<(), String> {
        if !self.allowlist.is_empty() && !self.allowlist.contains(did.as_str()) {
            return Err(format!("{did} is not on this node's allowlist"));
        }
        let score = self.scores.get(did.as_str()).copied().unwrap_or(self.default_score);
        if score < self.min_score {
            return Err(format!("{did} has trust {score:.2}, below this node's minimum of {:.2}", self.min_score));
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Since when every message has had to wait, if it has.
    throttled_since: Option<Instant>,
    cut_after: Duration,
}

/// What to do with the next message.
#[derive(Debug, PartialEq)]
pub enum Pace {
    Go,
    /// Wait this long first: the peer is over its rate.
    Wait(Duration),
    /// The peer has been over its rate for longer than allowed.
    Cut,
}

impl TokenBucket {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::at(config, Instant::now())
    }

    fn at(config: &RateLimitConfig, now: Instant) -> Self {
        Self {
            rate: config.messages_per_second,
            burst: config.burst as f64,
            tokens: config.burst as f64,
            last: now,
            throttled_since: None,
            cut_after: config.cut_after,
        }
    }

    pub fn take(&mut self) -> Pace {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> Pace {
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.throttled_since = None;
            return Pace::Go;
        }
        let since = *self.throttled_since.get_or_insert(now);
        if now.duration_since(since) > self.cut_after {
            return Pace::Cut;
        }
        // The token this message needs is taken now and paid for by waiting.
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
        self.tokens -= 1.0;
        Pace::Wait(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;

    fn limits(rate: f64, burst: u32, cut_after_ms: u64) -> RateLimitConfig {
        RateLimitConfig { messages_per_second: rate, burst, cut_after: Duration::from_millis(cut_after_ms) }
    }

    #[test]
    fn a_burst_passes_then_messages_wait_for_the_rate_and_sustained_excess_is_cut() {
        let start = Instant::now();
        let mut bucket = TokenBucket::at(&limits(10.0, 3, 1000), start);
        for _ in 0..3 {
            assert_eq!(bucket.take_at(start), Pace::Go);
        }
        assert_eq!(bucket.take_at(start), Pace::Wait(Duration::from_millis(100)));
        // After waiting as told, the peer is within its rate again.
        let later = start + Duration::from_millis(300);
        assert_eq!(bucket.take_at(later), Pace::Go);
        // Flooding without pause: waits, until the cut.
        let mut t = later;
        let mut outcome = Pace::Go;
        for _ in 0..100 {
            t += Duration::from_millis(20);
            outcome = bucket.take_at(t);
            if outcome == Pace::Cut {
                break;
            }
        }
        assert_eq!(outcome, Pace::Cut);
        assert!(t.duration_since(later) > Duration::from_secs(1));
    }

    #[test]
    fn the_allowlist_and_trust_floor_refuse_with_a_reason() {
        let (friend, stranger) = (NodeIdentity::generate(), NodeIdentity::generate());
        let open = Gate::new(&TrustConfig {
            allowlist: vec![],
            min_score: 0.0,
            default_score: 0.5,
            scores: Default::default(),
        });
        assert!(open.admit(stranger.did()).is_ok());
        let listed = Gate::new(&TrustConfig {
            allowlist: vec![friend.did().to_string()],
            min_score: 0.0,
            default_score: 0.5,
            scores: Default::default(),
        });
        assert!(listed.admit(friend.did()).is_ok());
        assert!(listed.admit(stranger.did()).unwrap_err().contains("allowlist"));
        let floor = Gate::new(&TrustConfig {
            allowlist: vec![],
            min_score: 0.6,
            default_score: 0.5,
            scores: [(friend.did().to_string(), 0.9)].into_iter().collect(),
        });
        assert!(floor.admit(friend.did()).is_ok());
        assert!(floor.admit(stranger.did()).unwrap_err().contains("below this node's minimum"));
    }
}
