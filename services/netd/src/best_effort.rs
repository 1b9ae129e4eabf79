//! The best-effort class: messages for traffic that repairs itself (gossip's pushes,
//! which anti-entropy repairs), carried beside the durable channels of [`crate::outbox`]
//! and [`crate::inbox`] without touching the disk on either side.
//!
//! Sending: `Send` with `DELIVERY_CLASS_BEST_EFFORT` frames the message and puts it on
//! the peer's queue in memory, which the link's writer drains onto the link's second
//! unidirectional stream (so a burst of durable resends never delays it, nor it them).
//! Order is kept per peer; nothing is acknowledged or resent. A peer with no live link
//! gets nothing (UNAVAILABLE); a full queue refuses (RESOURCE_EXHAUSTED); what is still
//! queued when the link ends is dropped. Receiving: a message goes straight to the live
//! `SubscribeBestEffort` subscribers; one that lags loses what it missed.
//!
//! Every message not delivered for one of those reasons is counted in
//! `icn_netd_best_effort_dropped_total{reason}` — `not_connected`, `full`,
//! `link_closed`, `no_subscriber`, `subscriber_lagged` — so an operator sees what the
//! repair path has to make up.

use crate::NetError;
use icn_identity::Did;
use icn_proto::net::v1::InboundMessage;
use prometheus::IntCounterVec;
// foldhash, as the peer table (`crate::peers`) uses.
use foldhash::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Notify};

/// Bounds of one peer's queue (`network.best_effort_queue_messages`, `_bytes`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    notify: Arc<Notify>,
}

pub struct BestEffort {
    limits: Limits,
    queues: Mutex<HashMap<Did, Queue>>,
    live: broadcast::Sender<Arc<InboundMessage>>,
    dropped: IntCounterVec,
}

impl BestEffort {
    /// `live_buffer`: messages held for subscribers that have not read them yet.
    pub fn new(limits: Limits, live_buffer: usize, dropped: IntCounterVec) -> Self {
        let (live, _) = broadcast::channel(live_buffer.max(1));
        Self { limits, queues: Mutex::new(HashMap::default()), live, dropped }
    }

    /// Counts `n` messages not delivered, by why.
    pub fn drop_counted(&self, reason: &str, n: u64) {
        self.dropped.with_label_values(&[reason]).inc_by(n);
    }

    /// Queues one framed message for `did`, which the caller found connected.
    pub fn push(&self, did: &Did, frame: Vec<u8>) -> Result<(), NetError> {
        let mut queues = self.queues.lock().expect("best-effort lock");
        // Looked up before inserting: an entry would copy the DID once per message.
        if !queues.contains_key(did) {
            queues.insert(did.clone(), Queue::default());
        }
        let queue = queues.get_mut(did).expect("inserted above");
        let full = self.full(queue, frame.len());
        if let Some((bound, limit)) = full {
            drop(queues);
            self.drop_counted("full", 1);
            return Err(NetError::QueueFull { did: did.clone(), bound, limit });
        }
        queue.bytes += frame.len();
        queue.frames.push_back(frame);
        queue.notify.notify_one();
        Ok(())
    }

    /// Refuses at once, as [`BestEffort::push`] would, a message of about `bytes` for
    /// `did` whose queue is full: a sender that outruns the link is refused before its
    /// message is sealed and framed for nothing (under a flood, most of what it sends).
    pub fn check_room(&self, did: &Did, bytes: usize) -> Result<(), NetError> {
        let queues = self.queues.lock().expect("best-effort lock");
        let Some((bound, limit)) = queues.get(did).and_then(|queue| self.full(queue, bytes)) else { return Ok(()) };
        drop(queues);
        self.drop_counted("full", 1);
        Err(NetError::QueueFull { did: did.clone(), bound, limit })
    }

    /// Which bound a message of `bytes` would pass in `queue`, if any.
    fn full(&self, queue: &Queue, bytes: usize) -> Option<(&'static str, String)> {
        if queue.frames.len() >= self.limits.max_messages {
            Some((
                "best_effort_messages",
                format!("{} messages, `network.best_effort_queue_messages`", self.limits.max_messages),
            ))
        } else if queue.bytes + bytes > self.limits.max_bytes && !queue.frames.is_empty() {
            Some(("best_effort_bytes", format!("{} bytes, `network.best_effort_queue_bytes`", self.limits.max_bytes)))
        } else {
            None
        }
    }

    /// Wakes the writer of `did`'s link when something is queued for it.
    pub fn notifier(&self, did: &Did) -> Arc<Notify> {
        self.queues.lock().expect("best-effort lock").entry(did.clone()).or_default().notify.clone()
    }

    /// Everything queued for `did`, oldest first, taken off the queue.
    pub fn take(&self, did: &Did) -> Vec<Vec<u8>> {
        let mut queues = self.queues.lock().expect("best-effort lock");
        match queues.get_mut(did) {
            Some(queue) => {
                queue.bytes = 0;
                queue.frames.drain(..).collect()
            }
            None => Vec::new(),
        }
    }

    /// The link to `did` ended: what waits for it is dropped (counted), as the class keeps
    /// nothing for absent peers.
    pub fn link_closed(&self, did: &Did) {
        let dropped = self.take(did).len() as u64;
        if dropped > 0 {
            self.drop_counted("link_closed", dropped);
        }
    }

    /// (messages, bytes) queued for `did`.
    #[cfg(test)]
    fn depth(&self, did: &Did) -> (usize, usize) {
        let queues = self.queues.lock().expect("best-effort lock");
        queues.get(did).map(|q| (q.frames.len(), q.bytes)).unwrap_or_default()
    }

    /// Hands a received message to the live subscribers.
    pub fn deliver(&self, message: InboundMessage) {
        if self.live.send(Arc::new(message)).is_err() {
            self.drop_counted("no_subscriber", 1);
        }
    }

    pub fn watch(&self) -> broadcast::Receiver<Arc<InboundMessage>> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;

    fn lane(max_messages: usize, max_bytes: usize) -> BestEffort {
        let dropped = IntCounterVec::new(prometheus::Opts::new("d", "d"), &["reason"]).unwrap();
        BestEffort::new(Limits { max_messages, max_bytes }, 4, dropped)
    }

    #[test]
    fn a_queue_keeps_order_refuses_beyond_its_bounds_and_counts_what_it_drops() {
        let lane = lane(3, 10);
        let peer = NodeIdentity::generate().did().clone();
        lane.push(&peer, b"aaaa".to_vec()).unwrap();
        lane.push(&peer, b"bbbb".to_vec()).unwrap();
        // 8 bytes held: 4 more would pass the 10-byte bound.
        let err = lane.push(&peer, b"cccc".to_vec()).unwrap_err();
        assert!(matches!(err, NetError::QueueFull { bound: "best_effort_bytes", .. }), "{err}");
        lane.push(&peer, b"c".to_vec()).unwrap();
        let err = lane.push(&peer, b"d".to_vec()).unwrap_err();
        assert!(err.to_string().contains("network.best_effort_queue_messages"), "{err}");
        // The check before framing refuses what the push would, counted alike.
        let err = lane.check_room(&peer, 1).unwrap_err();
        assert!(matches!(err, NetError::QueueFull { bound: "best_effort_messages", .. }), "{err}");
        assert_eq!(lane.dropped.with_label_values(&["full"]).get(), 3);
        assert_eq!(lane.take(&peer), vec![b"aaaa".to_vec(), b"bbbb".to_vec(), b"c".to_vec()]);
        assert_eq!(lane.depth(&peer), (0, 0));
        // Taken frees the bound; a closed link drops what waits, counted.
        lane.check_room(&peer, 1).unwrap();
        lane.push(&peer, b"e".to_vec()).unwrap();
        lane.push(&peer, b"f".to_vec()).unwrap();
        lane.link_closed(&peer);
        assert_eq!(lane.dropped.with_label_values(&["link_closed"]).get(), 2);
        assert!(lane.take(&peer).is_empty());
    }

    #[test]
    fn a_message_nobody_subscribes_to_is_counted_and_a_lagging_subscriber_learns_it_lagged() {
        let lane = lane(8, 1 << 20);
        lane.deliver(InboundMessage::default());
        assert_eq!(lane.dropped.with_label_values(&["no_subscriber"]).get(), 1);
        let mut rx = lane.watch();
        for seq in 0..6 {
            lane.deliver(InboundMessage { seq, ..Default::default() });
        }
        // A buffer of 4: the two oldest are gone, and the receiver is told how many.
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(2))));
        assert_eq!(rx.try_recv().unwrap().seq, 2);
    }
}
