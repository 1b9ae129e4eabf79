//! The login challenges a gateway has handed out and not yet seen answered, bounded
//! node-wide and per DID (`api.max_challenges`, `api.challenges_per_did`).
//!
//! Challenges expire in the order they were issued (one TTL for all), so expiry is a
//! queue popped from the front: no scan of the whole set per request. The node-wide bound
//! counts every challenge issued within the TTL, answered or not, so the queue itself is
//! bounded too.

use std::collections::{HashMap, VecDeque};

/// Which bound refused a challenge (the metric's `bound` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Total,
    PerDid,
}

impl Bound {
    pub fn label(self) -> &'static str {
        match self {
            Bound::Total => "total",
            Bound::PerDid => "per_did",
        }
    }
}

pub struct Challenges {
    max_total: usize,
    max_per_did: usize,
    /// nonce → (did, expires at ms), for challenges not yet answered.
    open: HashMap<Vec<u8>, (String, i64)>,
    /// (expires at ms, nonce) in issue order, answered or not.
    issued: VecDeque<(i64, Vec<u8>)>,
    /// Unanswered challenges per DID.
    per_did: HashMap<String, usize>,
}

impl Challenges {
    pub fn new(max_total: usize, max_per_did: usize) -> Self {
        Self { max_total, max_per_did, open: HashMap::new(), issued: VecDeque::new(), per_did: HashMap::new() }
    }

    /// Records a new challenge for `did`, unless a bound is reached.
    pub fn issue(&mut self, nonce: Vec<u8>, did: &str, expires_ms: i64, now_ms: i64) -> Result<(), Bound> {
        self.expire(now_ms);
        if self.issued.len() >= self.max_total {
            return Err(Bound::Total);
        }
        let held = self.per_did.get(did).copied().unwrap_or(0);
        if held >= self.max_per_did {
            return Err(Bound::PerDid);
        }
        self.per_did.insert(did.to_string(), held + 1);
        self.open.insert(nonce.clone(), (did.to_string(), expires_ms));
        self.issued.push_back((expires_ms, nonce));
        Ok(())
    }

    /// Takes the challenge out (a challenge is answered once); its DID and expiry.
    pub fn take(&mut self, nonce: &[u8]) -> Option<(String, i64)> {
        let (did, expires) = self.open.remove(nonce)?;
        self.release(&did);
        Some((did, expires))
    }

    fn expire(&mut self, now_ms: i64) {
        while let Some((expires, _)) = self.issued.front() {
            if *expires > now_ms {
                break;
            }
            let (_, nonce) = self.issued.pop_front().expect("a front exists");
            if let Some((did, _)) = self.open.remove(&nonce) {
                self.release(&did);
            }
        }
    }

    fn release(&mut self, did: &str) {
        if let Some(n) = self.per_did.get_mut(did) {
            *n -= 1;
            if *n == 0 {
                self.per_did.remove(did);
            }
        }
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize) {
        (self.open.len(), self.issued.len(), self.per_did.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bounds_hold_and_everything_is_released_at_expiry() {
        let mut c = Challenges::new(5, 2);
        assert_eq!(c.issue(b"a1".to_vec(), "a", 100, 0), Ok(()));
        assert_eq!(c.issue(b"a2".to_vec(), "a", 100, 0), Ok(()));
        assert_eq!(c.issue(b"a3".to_vec(), "a", 100, 0), Err(Bound::PerDid));
        // Answering one frees its DID's place, not the node-wide one until it expires.
        assert_eq!(c.take(b"a1"), Some(("a".into(), 100)));
        assert_eq!(c.take(b"a1"), None, "answered once");
        assert_eq!(c.issue(b"a3".to_vec(), "a", 100, 0), Ok(()));
        assert_eq!(c.issue(b"b1".to_vec(), "b", 100, 0), Ok(()));
        assert_eq!(c.issue(b"c1".to_vec(), "c", 100, 0), Ok(()));
        assert_eq!(c.issue(b"d1".to_vec(), "d", 100, 0), Err(Bound::Total));
        // At expiry every place comes back, and nothing is left behind.
        assert_eq!(c.issue(b"d1".to_vec(), "d", 200, 100), Ok(()));
        assert_eq!(c.sizes(), (1, 1, 1));
        assert_eq!(c.take(b"a2"), None, "expired");
    }
}
