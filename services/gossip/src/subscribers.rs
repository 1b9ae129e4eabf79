//! Open `Subscribe` streams on this node: the feed each one runs ([`feed`]), and their
//! count per topic, for `TopicStats.local_subscribers`.
//!
//! A stream counts from the moment its feed starts until the feed ends (the client went
//! away, a read failed, its reader lost access, or the service stops): the feed holds a
//! [`Subscription`], whose drop takes it off the count, so no path out of a feed can
//! leave it counted. Who may subscribe is the store's ACL check, asked again here at
//! every entry.

use crate::store::{Reader, Store};
use icn_proto::gossip::v1::StoredEntry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

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

/// Feeds one subscriber of `topic`: the store from `after` until caught up, then live
/// entries, back to the store whenever it falls behind the live buffer (the shared
/// [`icn_storage::feed`]). Entries at or below `skip[author]` (a resume by version vector)
/// are passed over. Store reads run on the blocking pool.
#[allow(clippy::too_many_arguments)]
pub async fn feed(
    store: Arc<Store>,
    topic: String,
    reader: Reader,
    live: broadcast::Receiver<Arc<StoredEntry>>,
    after: u64,
    skip: std::collections::HashMap<String, u64>,
    out: mpsc::Sender<Result<StoredEntry, Status>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let feed = icn_storage::feed::Feed {
        position: |s: &StoredEntry| s.position,
        live,
        after,
        out,
        page: store.config().catch_up_page,
        shutdown,
    };
    let read_topic = topic.clone();
    let access = store.clone();
    let read_after = move |after: u64, max: usize| {
        let (store, topic) = (store.clone(), read_topic.clone());
        async move {
            tokio::task::spawn_blocking(move || store.entries_after(&topic, after, max))
                .await
                .map_err(|e| Status::internal(format!("reading the topic: {e}")))?
                .map_err(Status::from)
        }
    };
    icn_storage::feed::run(
        feed,
        read_after,
        |s| s.entry.as_ref().is_some_and(|e| e.topic == topic),
        // Access is asked again at every entry: an ACL update that leaves the reader out
        // ends its stream (NOT_FOUND, as for a topic it may not see) at the next entry.
        |s| {
            access.may_read(&topic, &reader).map_err(Status::from)?;
            Ok(s.entry.as_ref().is_some_and(|e| e.seq > skip.get(&e.author).copied().unwrap_or(0)))
        },
        || {},
    )
    .await
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
