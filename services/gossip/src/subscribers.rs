//! Open `Subscribe` streams on this node, per topic, for `TopicStats.local_subscribers`.
//!
//! A stream counts from the moment its feed starts until the feed ends (the client went
//! away, a read failed, or the service stops): the feed holds a [`Subscription`], whose
//! drop takes it off the count, so no path out of a feed can leave it counted. This
//! module only counts; it never decides who may subscribe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per-topic counts of open streams, shared by the API and its feeds.
#[derive(Clone, Default)]
pub struct Subscribers {
    open: Arc<Mutex<HashMap<String, u32>>>,
}

impl Subscribers {
    /// Counts a stream on `topic` until the returned guard is dropped.
    pub fn open(&self, topic: &str) -> Subscription {
        *self.open.lock().expect("subscribers lock").entry(topic.to_string()).or_default() += 1;
        Subscription { open: self.open.clone(), topic: topic.to_string() }
    }

    /// Streams open on `topic` now.
    pub fn count(&self, topic: &str) -> u32 {
        self.open.lock().expect("subscribers lock").get(topic).copied().unwrap_or(0)
    }
}

/// One open stream, counted while this lives.
pub struct Subscription {
    open: Arc<Mutex<HashMap<String, u32>>>,
    topic: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("subscribers lock");
        if let Some(n) = open.get_mut(&self.topic) {
            *n -= 1;
            // Topics nobody follows any more take no room.
            if *n == 0 {
                open.remove(&self.topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_counts_on_its_topic_only_until_its_guard_is_dropped() {
        let subscribers = Subscribers::default();
        let a1 = subscribers.open("a");
        let a2 = subscribers.open("a");
        assert_eq!((subscribers.count("a"), subscribers.count("b")), (2, 0));
        drop(a1);
        assert_eq!(subscribers.count("a"), 1);
        drop(a2);
        assert_eq!(subscribers.count("a"), 0);
    }
}
