//! Who may connect, and how fast a peer may send: the allowlist and trust floor checked
//! on every new connection, the per-peer inbound token bucket, and the paces of what
//! peer exchange may make this node do.

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use icn_config::{RateLimitConfig, TrustConfig};
use icn_identity::Did;
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;

pub struct Gate {
    allowlist: HashSet<String>,
    trust: TrustConfig,
}

impl Gate {
    pub fn new(config: &TrustConfig) -> Self {
        Self { allowlist: config.allowlist.iter().cloned().collect(), trust: config.clone() }
    }

    /// `Err` with the reason, said to the refused peer too.
    pub fn admit(&self, did: &Did) -> Result<(), String> {
        if !self.allowlist.is_empty() && !self.allowlist.contains(did.as_str()) {
            return Err(format!("{did} is not on this node's allowlist"));
        }
        let score = self.trust.score_of(did.as_str());
        if score < self.trust.min_score {
            return Err(format!(
                "{did} has trust {score:.2}, below this node's minimum of {:.2}",
                self.trust.min_score
            ));
        }
        Ok(())
    }
}

/// One peer's inbound pace: a GCRA limiter (`governor`) of `messages_per_second` with
/// `burst`, and how long the peer has been over it. A peer over its rate is slowed (its
/// messages wait, and QUIC's flow control holds the sender back); one that stays over it
/// for longer than `cut_after` is cut.
pub struct TokenBucket<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// Since when every message has had to wait, if it has.
    throttled_since: Option<C::Instant>,
    cut_after: Duration,
}

/// What to do with the next message.
#[derive(Debug, PartialEq)]
pub enum Pace {
    Go,
    /// Wait this long, then ask again: the peer is over its rate.
    Wait(Duration),
    /// The peer has been over its rate for longer than allowed.
    Cut,
}

/// The quota of a rate limit: one message every `1 / messages_per_second`, `burst` at once.
fn quota(config: &RateLimitConfig) -> Quota {
    quota_of(config.messages_per_second, config.burst)
}

/// One event every `1 / per_second`, `burst` at once.
fn quota_of(per_second: f64, burst: u32) -> Quota {
    // The configuration is validated positive, so both fall back only on absurd values.
    let period = Duration::try_from_secs_f64(1.0 / per_second).unwrap_or(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period.max(Duration::from_nanos(1))).expect("a positive period").allow_burst(burst)
}

/// A pace for what is skipped, not waited for, when over it (peer-exchange frames,
/// dials to exchanged peers): `check()` says whether the next one may go.
pub fn pace(per_second: f64, burst: u32) -> governor::DefaultDirectRateLimiter {
    RateLimiter::direct(quota_of(per_second, burst))
}

impl TokenBucket {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> TokenBucket<C> {
    fn with_clock(config: &RateLimitConfig, clock: C) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(quota(config), clock.clone()),
            clock,
            throttled_since: None,
            cut_after: config.cut_after,
        }
    }

    /// A message arrived: takes its place, or says how long to wait before [`Self::retake`].
    /// A peer whose messages keep arriving over its rate for longer than `cut_after` is
    /// cut; one whose message finds a free place is no longer over it.
    pub fn take(&mut self) -> Pace {
        match self.limiter.check() {
            Ok(()) => {
                self.throttled_since = None;
                Pace::Go
            }
            Err(not_until) => {
                let now = self.clock.now();
                let since = *self.throttled_since.get_or_insert(now);
                if Duration::from(now.duration_since(since)) > self.cut_after {
                    return Pace::Cut;
                }
                Pace::Wait(not_until.wait_time_from(now))
            }
        }
    }

    /// After waiting as told: the waiting message's place, or how much longer to wait.
    /// Waiting does not end the peer's time over its rate: only an arrival that finds a
    /// free place does.
    pub fn retake(&mut self) -> Pace {
        match self.limiter.check() {
            Ok(()) => Pace::Go,
            Err(not_until) => Pace::Wait(not_until.wait_time_from(self.clock.now())),
        }
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
        let clock = governor::clock::FakeRelativeClock::default();
        let mut bucket = TokenBucket::with_clock(&limits(10.0, 3, 1000), clock.clone());
        for _ in 0..3 {
            assert_eq!(bucket.take(), Pace::Go);
        }
        assert_eq!(bucket.take(), Pace::Wait(Duration::from_millis(100)));
        // After waiting as told, the peer is within its rate again.
        clock.advance(Duration::from_millis(100));
        assert_eq!(bucket.take(), Pace::Go);
        // Flooding without pause, as the link's reader sees it: each message arrives as the
        // last one got its place, waits as told, and goes; after `cut_after` of that, cut.
        let started = clock.now();
        let mut outcome = Pace::Go;
        for _ in 0..200 {
            outcome = bucket.take();
            while let Pace::Wait(wait) = outcome {
                assert!(wait <= Duration::from_millis(100), "{wait:?}");
                clock.advance(wait);
                outcome = bucket.retake();
            }
            if outcome == Pace::Cut {
                break;
            }
            assert_eq!(outcome, Pace::Go);
        }
        assert_eq!(outcome, Pace::Cut);
        let flooded = Duration::from(clock.now().duration_since(started));
        assert!(flooded > Duration::from_secs(1) && flooded < Duration::from_millis(1200), "{flooded:?}");
        // A peer back within its rate is no longer counted as over it.
        clock.advance(Duration::from_secs(1));
        assert_eq!(bucket.take(), Pace::Go);
        assert_eq!(bucket.take(), Pace::Go);
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
