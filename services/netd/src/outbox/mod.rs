//! Durable per-peer message queues — the logical channel that outlives connections.
//!
//! Sending side ([`Outbox`]): `Send` assigns the next sequence number for that peer and
//! commits the framed message to RocksDB *before* it answers, so an accepted message
//! survives a crash of this process (and, with `network.queue_fsync`, of the machine).
//! Concurrent sends share one synced write (the shared group committer,
//! [`icn_storage::group`], on a dedicated thread). Messages stay stored until the peer
//! acknowledges them; a new connection resends from what the peer says it has delivered.
//!
//! The receiving side is [`crate::inbox`].
//!
//! The newest messages of each queue are also kept in memory (the *tail*, within
//! [`TAIL_BYTES`] for the node, [`Limits::tail_bytes`]), so that a delivery task keeping
//! up with its sends reads them from there once they are committed, not back from
//! RocksDB; after a reconnect, or a burst beyond the bound, it reads the store as before.
//!
//! Overflow policy: a queue over `network.peer_queue_capacity` messages or
//! `network.peer_queue_max_bytes`, or all queues together over
//! `network.outbox_max_bytes`, refuses further sends with RESOURCE_EXHAUSTED; nothing
//! already accepted is ever dropped. The node-wide bound matters because a queue is kept
//! for every peer until it acknowledges: peers that never do would each hold a full
//! queue's bytes.

use crate::NetError;
use icn_identity::Did;
use icn_proto::net::wire::v1::OutboxState;
use icn_storage::group::{write_group, GroupLimits, GroupQueue, QueueError};
use icn_storage::{Storage, StorageError, WriteBatch};
use prost::Message as _;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};

/// Framed messages waiting for a peer: `<did> 0x00 <seq: u64 big-endian>` → wire bytes.
pub const OUTBOX_CF: &str = "outbox";
/// `<did>` → [`OutboxState`].
pub const OUTBOX_STATE_CF: &str = "outbox_state";
/// In the store's meta column family: this node's queue epoch.
const EPOCH_KEY: &[u8] = b"netd.outbox_epoch";

/// Bytes of framed messages kept in memory for every peer together (the tail). A bound
/// on memory, not on what is queued: a message beyond it is read back from the store.
pub const TAIL_BYTES: usize = 64 * 1024 * 1024;

/// A framed message, shared by the commit and the tail.
pub type Framed = Arc<Vec<u8>>;

fn message_key(did: &Did, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(did.as_str().len() + 9);
    key.extend_from_slice(did.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_messages: usize,
    pub max_bytes: usize,
    /// Bytes of every queue together.
    pub max_total_bytes: usize,
    /// Bytes of every queue's in-memory tail together ([`TAIL_BYTES`]).
    pub tail_bytes: usize,
    /// The committer's backlog (`network.commit_backlog`) and group size
    /// (`network.commit_group_max`).
    pub commit: GroupLimits,
}

impl Limits {
    pub fn of(config: &icn_config::NetworkConfig) -> Self {
        Limits {
            max_messages: config.peer_queue_capacity,
            max_bytes: config.peer_queue_max_bytes,
            max_total_bytes: config.outbox_max_bytes,
            tail_bytes: TAIL_BYTES,
            commit: GroupLimits { backlog: config.commit_backlog, max_group: config.commit_group_max },
        }
    }
}

struct Queue {
    next_seq: u64,
    acked_seq: u64,
    /// Stored, unacknowledged messages: (seq, bytes).
    pending: VecDeque<(u64, usize)>,
    bytes: usize,
    notify: Arc<Notify>,
    /// The newest queued messages in memory, consecutive sequence numbers (see
    /// [`TAIL_BYTES`]); only those up to `committed` may be read from here.
    tail: VecDeque<(u64, Framed)>,
    tail_bytes: usize,
    /// Every message up to this one is committed: commits go in sequence order.
    committed: u64,
}

impl Queue {
    fn new(state: OutboxState) -> Self {
        Self {
            next_seq: state.next_seq.max(1),
            acked_seq: state.acked_seq,
            pending: VecDeque::new(),
            bytes: 0,
            notify: Arc::new(Notify::new()),
            tail: VecDeque::new(),
            tail_bytes: 0,
            committed: 0,
        }
    }
}

/// One send's writes.
struct Commit {
    did: Did,
    seq: u64,
    /// The message: its key and framed bytes.
    message: (Vec<u8>, Framed),
    /// The peer's queue state after it: its key and value.
    state: (Vec<u8>, Vec<u8>),
    done: oneshot::Sender<Result<(), String>>,
}

pub struct Outbox {
    storage: Storage,
    epoch: String,
    limits: Limits,
    /// Shared with the committer, which marks what it committed and wakes the delivery.
    queues: Arc<Mutex<HashMap<Did, Queue>>>,
    /// Bytes of every queue together; changed only under the `queues` lock.
    total_bytes: std::sync::atomic::AtomicUsize,
    /// Bytes of every queue's tail; changed only under the `queues` lock.
    tail_bytes: std::sync::atomic::AtomicUsize,
    /// The committer thread; dropping the outbox writes what is queued, then releases it.
    commits: GroupQueue<Commit>,
}

impl Outbox {
    /// Loads every queue from the store and starts the committer thread.
    pub fn open(storage: Storage, limits: Limits, fsync: bool) -> Result<Self, StorageError> {
        let db = storage.db();
        let meta = storage.cf(icn_storage::META_CF)?;
        let epoch = match db.get_cf(meta, EPOCH_KEY)? {
            Some(e) => String::from_utf8_lossy(&e).into_owned(),
            None => {
                let e = format!("{:016x}", rand::random::<u64>());
                db.put_cf_opt(meta, EPOCH_KEY, e.as_bytes(), &Storage::durable())?;
                e
            }
        };
        let mut queues = HashMap::new();
        let mut total_bytes = 0;
        for item in db.iterator_cf(storage.cf(OUTBOX_STATE_CF)?, icn_storage::IteratorMode::Start) {
            let (key, value) = item?;
            let (Ok(did), Ok(state)) =
                (String::from_utf8_lossy(&key).parse::<Did>(), OutboxState::decode(value.as_ref()))
            else {
                continue;
            };
            queues.insert(did, Queue::new(state));
        }
        for item in db.iterator_cf(storage.cf(OUTBOX_CF)?, icn_storage::IteratorMode::Start) {
            let (key, value) = item?;
            // `<did> 0x00 <8-byte seq>`: the separator sits 9 bytes from the end (the
            // sequence bytes themselves may contain zeros).
            let Some(split) = key.len().checked_sub(9).filter(|i| key[*i] == 0) else { continue };
            let Ok(did) = String::from_utf8_lossy(&key[..split]).parse::<Did>() else { continue };
            let seq = u64::from_be_bytes(key[split + 1..].try_into().expect("length checked"));
            if let Some(queue) = queues.get_mut(&did) {
                queue.pending.push_back((seq, value.len()));
                queue.bytes += value.len();
                total_bytes += value.len();
            }
        }
        let committer = storage.clone();
        let queues = Arc::new(Mutex::new(queues));
        let marked = queues.clone();
        let commits = GroupQueue::start(
            "netd-outbox-commit",
            limits.commit,
            |_| 1,
            move |group: Vec<Commit>| {
                // A group's sends are tiny: one merged batch is one write call, where a
                // batch per send would cost a call each (visible with fsync off).
                let merged = || {
                    let (messages, states) = (committer.cf(OUTBOX_CF)?, committer.cf(OUTBOX_STATE_CF)?);
                    let mut batch = WriteBatch::default();
                    for commit in &group {
                        batch.put_cf(messages, &commit.message.0, commit.message.1.as_slice());
                    }
                    // One queue state per peer: commits are in sequence order, so each
                    // peer's last one in the group holds its newest state.
                    let mut last: HashMap<&Did, &(Vec<u8>, Vec<u8>)> = HashMap::new();
                    for commit in &group {
                        last.insert(&commit.did, &commit.state);
                    }
                    for (key, value) in last.into_values() {
                        batch.put_cf(states, key, value);
                    }
                    write_group(&committer, [batch], fsync)
                };
                let result = merged().map_err(|e| e.to_string());
                if result.is_ok() {
                    // Marked here, not by the sender's future, which its caller may drop.
                    let mut notify = Vec::new();
                    let mut queues = marked.lock().expect("outbox lock");
                    for commit in &group {
                        if let Some(queue) = queues.get_mut(&commit.did) {
                            queue.committed = queue.committed.max(commit.seq);
                            notify.push(queue.notify.clone());
                        }
                    }
                    drop(queues);
                    notify.iter().for_each(|n| n.notify_one());
                }
                for waiter in group.into_iter().map(|c| c.done) {
                    let _ = waiter.send(result.clone());
                }
            },
        )?;
        let total_bytes = std::sync::atomic::AtomicUsize::new(total_bytes);
        let tail_bytes = std::sync::atomic::AtomicUsize::new(0);
        Ok(Self { storage, epoch, limits, queues, total_bytes, tail_bytes, commits })
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Stores a message for `did`; `frame` turns the assigned sequence number into the wire
    /// bytes. Answers once the message is committed.
    pub async fn push(self: &Arc<Self>, did: &Did, frame: impl FnOnce(u64) -> Vec<u8>) -> Result<u64, NetError> {
        self.enqueue(did, frame)?.await
    }

    /// [`Outbox::push`] in two steps: the message takes its sequence number and its place
    /// in the committer's queue now; the future answers once it is committed.
    pub fn enqueue(
        self: &Arc<Self>,
        did: &Did,
        frame: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<impl std::future::Future<Output = Result<u64, NetError>> + Send + 'static, NetError> {
        let (seq, done, len) = {
            let mut queues = self.queues.lock().expect("outbox lock");
            let queue = queues.entry(did.clone()).or_insert_with(|| Queue::new(OutboxState::default()));
            if queue.pending.len() >= self.limits.max_messages {
                return Err(NetError::QueueFull {
                    did: did.clone(),
                    bound: "peer_messages",
                    limit: format!("{} messages, `network.peer_queue_capacity`", self.limits.max_messages),
                });
            }
            let seq = queue.next_seq;
            let bytes = frame(seq);
            if queue.bytes + bytes.len() > self.limits.max_bytes && !queue.pending.is_empty() {
                return Err(NetError::QueueFull {
                    did: did.clone(),
                    bound: "peer_bytes",
                    limit: format!("{} bytes, `network.peer_queue_max_bytes`", self.limits.max_bytes),
                });
            }
            let total = self.total_bytes.load(std::sync::atomic::Ordering::Relaxed);
            if total + bytes.len() > self.limits.max_total_bytes && total > 0 {
                return Err(NetError::QueueFull {
                    did: did.clone(),
                    bound: "node_bytes",
                    limit: format!(
                        "every peer's queue together holds {total} bytes of `network.outbox_max_bytes` = {}",
                        self.limits.max_total_bytes
                    ),
                });
            }
            let state = OutboxState { next_seq: seq + 1, acked_seq: queue.acked_seq };
            let len = bytes.len();
            let bytes = Arc::new(bytes);
            let (done, wait) = oneshot::channel();
            let commit = Commit {
                did: did.clone(),
                seq,
                message: (message_key(did, seq), bytes.clone()),
                state: (did.as_str().as_bytes().to_vec(), state.encode_to_vec()),
                done,
            };
            // Queued for the committer while the lock is held, so commit order is
            // sequence order.
            self.commits.try_send(commit).map_err(|e| match e {
                QueueError::Full(n) => NetError::QueueFull {
                    did: did.clone(),
                    bound: "backlog",
                    limit: format!("the node's commit backlog of {n} sends (`network.commit_backlog`)"),
                },
                QueueError::Closed => NetError::Storage("the outbox is closing".into()),
            })?;
            queue.next_seq += 1;
            self.keep_in_tail(queue, seq, bytes);
            queue.pending.push_back((seq, len));
            queue.bytes += len;
            self.total_bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
            (seq, wait, len)
        };
        let (this, did) = (self.clone(), did.clone());
        Ok(async move {
            let committed = done.await.unwrap_or_else(|_| Err("the committer stopped".into()));
            if let Err(e) = committed {
                let mut queues = this.queues.lock().expect("outbox lock");
                if let Some(queue) = queues.get_mut(&did) {
                    // What the tail holds is no longer a run of consecutive messages.
                    this.clear_tail(queue);
                    queue.pending.retain(|(s, _)| *s != seq);
                    queue.bytes -= len;
                    this.total_bytes.fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
                }
                return Err(NetError::Storage(e));
            }
            Ok(seq)
        })
    }

    /// Wakes the delivery task of `did` when a message is stored for it.
    pub fn notifier(&self, did: &Did) -> Arc<Notify> {
        let mut queues = self.queues.lock().expect("outbox lock");
        queues.entry(did.clone()).or_insert_with(|| Queue::new(OutboxState::default())).notify.clone()
    }

    /// Adds a queued message to its queue's tail, or, past [`TAIL_BYTES`], empties that
    /// tail (it must stay a run of consecutive messages).
    fn keep_in_tail(&self, queue: &mut Queue, seq: u64, frame: Framed) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.tail_bytes.load(Relaxed) + frame.len() > self.limits.tail_bytes {
            self.clear_tail(queue);
            return;
        }
        self.tail_bytes.fetch_add(frame.len(), Relaxed);
        queue.tail_bytes += frame.len();
        queue.tail.push_back((seq, frame));
    }

    fn clear_tail(&self, queue: &mut Queue) {
        self.tail_bytes.fetch_sub(queue.tail_bytes, std::sync::atomic::Ordering::Relaxed);
        queue.tail.clear();
        queue.tail_bytes = 0;
    }

    /// Committed messages for `did` after `after_seq`, in order, up to a batch limit: from
    /// the tail when it holds the next one, else from the store.
    pub async fn read_after(&self, did: &Did, after_seq: u64, max: usize) -> Result<Vec<(u64, Framed)>, StorageError> {
        {
            let queues = self.queues.lock().expect("outbox lock");
            if let Some(queue) = queues.get(did) {
                let next = after_seq + 1;
                if queue.tail.front().is_some_and(|(first, _)| *first <= next) {
                    return Ok(queue
                        .tail
                        .iter()
                        .skip_while(|(seq, _)| *seq < next)
                        .take_while(|(seq, _)| *seq <= queue.committed)
                        .take(max)
                        .cloned()
                        .collect());
                }
            }
        }
        let start = message_key(did, after_seq.saturating_add(1));
        let end = message_key(did, u64::MAX);
        self.storage
            .blocking(move |s| {
                let mut read = icn_storage::ReadOptions::default();
                read.set_iterate_upper_bound(end);
                let iter = s.db().iterator_cf_opt(
                    s.cf(OUTBOX_CF)?,
                    read,
                    icn_storage::IteratorMode::From(&start, icn_storage::Direction::Forward),
                );
                let mut out = Vec::new();
                for item in iter.take(max) {
                    let (key, value) = item?;
                    let seq = u64::from_be_bytes(key[key.len() - 8..].try_into().expect("fixed-size key suffix"));
                    out.push((seq, Arc::new(value.into_vec())));
                }
                Ok(out)
            })
            .await
    }

    /// Drops every message up to `seq` for `did`: the peer has them.
    pub async fn ack(&self, did: &Did, seq: u64) -> Result<(), StorageError> {
        let state = {
            let mut queues = self.queues.lock().expect("outbox lock");
            let Some(queue) = queues.get_mut(did) else { return Ok(()) };
            if seq <= queue.acked_seq {
                return Ok(());
            }
            let seq = seq.min(queue.next_seq.saturating_sub(1));
            queue.acked_seq = seq;
            while queue.pending.front().is_some_and(|(s, _)| *s <= seq) {
                let (_, len) = queue.pending.pop_front().expect("front checked");
                queue.bytes -= len;
                self.total_bytes.fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
            }
            while queue.tail.front().is_some_and(|(s, _)| *s <= seq) {
                let (_, frame) = queue.tail.pop_front().expect("front checked");
                queue.tail_bytes -= frame.len();
                self.tail_bytes.fetch_sub(frame.len(), std::sync::atomic::Ordering::Relaxed);
            }
            OutboxState { next_seq: queue.next_seq, acked_seq: seq }
        };
        let did = did.clone();
        self.storage
            .blocking(move |s| {
                let mut batch = WriteBatch::default();
                batch.delete_range_cf(s.cf(OUTBOX_CF)?, message_key(&did, 0), message_key(&did, state.acked_seq + 1));
                batch.put_cf(s.cf(OUTBOX_STATE_CF)?, did.as_str().as_bytes(), state.encode_to_vec());
                Ok(s.db().write(batch)?)
            })
            .await
    }

    /// (messages, bytes) waiting for `did`.
    pub fn depth(&self, did: &Did) -> (usize, usize) {
        let queues = self.queues.lock().expect("outbox lock");
        queues.get(did).map(|q| (q.pending.len(), q.bytes)).unwrap_or_default()
    }

    pub fn acked(&self, did: &Did) -> u64 {
        let queues = self.queues.lock().expect("outbox lock");
        queues.get(did).map(|q| q.acked_seq).unwrap_or_default()
    }

    /// Peers with messages waiting.
    pub fn waiting_peers(&self) -> Vec<Did> {
        let queues = self.queues.lock().expect("outbox lock");
        queues.iter().filter(|(_, q)| !q.pending.is_empty()).map(|(d, _)| d.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
