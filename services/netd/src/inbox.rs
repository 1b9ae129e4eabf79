//! The receiving side of the durable channels: exactly-once delivery per peer, and the
//! retained inbound log local subscribers read from.
//!
//! For each sender netd keeps the highest sequence number delivered, with the epoch of
//! the sender's queue store. A message at or below it is a resend (after a reconnect, a
//! restart, or a brief overlap of two links) and is dropped. A new message is recorded as
//! delivered and appended to the inbound log in one RocksDB write *before* it reaches any
//! subscriber and before the sender is told (by an ack) that it may forget it; so a crash
//! at any point neither loses it nor delivers it twice.
//!
//! The inbound log gives every delivered message a position. Subscribers resume from a
//! position after a restart of theirs, and one that falls behind the live buffer catches
//! up from the log. The newest `network.inbound_retention` messages are kept, and no more
//! than `network.inbound_retention_bytes` of them: a count alone would let peers fill the
//! disk with a million messages of a megabyte each. Each message's size is kept beside
//! it, and the log's total in the store, so the byte bound needs no scan at start-up.

use icn_identity::Did;
use icn_proto::net::v1::InboundMessage;
use icn_proto::net::wire::v1::InboxState;
use icn_storage::{Storage, StorageError, WriteBatch};
use prost::Message as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// `<did>` → [`InboxState`].
pub const INBOX_CF: &str = "inbox";
/// `<position: u64 big-endian>` → [`InboundMessage`].
pub const RECEIVED_CF: &str = "received";
/// `<position: u64 big-endian>` → the stored message's size in bytes (u64 big-endian).
pub const RECEIVED_SIZES_CF: &str = "received_sizes";
/// In the store's meta column family: the bytes of every sized message in the log.
const BYTES_KEY: &[u8] = b"netd.inbox_bytes";
/// Pruning of the inbound log by count runs once per this many messages.
const PRUNE_EVERY: u64 = 1024;
/// Most messages one delivery prunes, so that no delivery waits on a long walk; a log
/// over its byte bound comes back under it over the next deliveries.
const PRUNE_STEP: usize = 1024;

struct State {
    senders: HashMap<Did, InboxState>,
    /// Position of the newest stored message (0: none yet).
    head: u64,
    /// Bytes of the messages in the log (those stored with their size).
    bytes: u64,
}

/// How much of the inbound log is kept: the newest `messages`, within `bytes`.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub messages: u64,
    pub bytes: u64,
}

pub struct Inbox {
    storage: Storage,
    retention: Retention,
    state: Mutex<State>,
    live: broadcast::Sender<Arc<InboundMessage>>,
    /// Woken at each delivery from a sender (its link's ack loop waits on it).
    arrivals: Mutex<HashMap<Did, Arc<tokio::sync::Notify>>>,
}

impl Inbox {
    pub fn open(storage: Storage, retention: Retention, live_buffer: usize) -> Result<Self, StorageError> {
        let mut senders = HashMap::new();
        for item in storage.db().iterator_cf(storage.cf(INBOX_CF)?, icn_storage::IteratorMode::Start) {
            let (key, value) = item?;
            if let (Ok(did), Ok(state)) =
                (String::from_utf8_lossy(&key).parse::<Did>(), InboxState::decode(value.as_ref()))
            {
                senders.insert(did, state);
            }
        }
        let head = match storage.db().iterator_cf(storage.cf(RECEIVED_CF)?, icn_storage::IteratorMode::End).next() {
            Some(item) => position_of(&item?.0),
            None => 0,
        };
        let bytes = match storage.db().get_cf(storage.cf(icn_storage::META_CF)?, BYTES_KEY)? {
            Some(v) => v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or_default(),
            None => 0,
        };
        let (live, _) = broadcast::channel(live_buffer);
        let retention = Retention { messages: retention.messages.max(1), bytes: retention.bytes.max(1) };
        let arrivals = Mutex::new(HashMap::new());
        Ok(Self { storage, retention, state: Mutex::new(State { senders, head, bytes }), live, arrivals })
    }

    /// (epoch, highest delivered sequence) for `did`.
    pub fn delivered(&self, did: &Did) -> (String, u64) {
        let state = self.state.lock().expect("inbox lock");
        state.senders.get(did).map(|s| (s.epoch.clone(), s.delivered_seq)).unwrap_or_default()
    }

    /// Notified after each message delivered from `did` (a permit is kept when nobody
    /// waits, so no delivery goes unnoticed).
    pub fn arrivals(&self, did: &Did) -> Arc<tokio::sync::Notify> {
        self.arrivals.lock().expect("arrivals lock").entry(did.clone()).or_default().clone()
    }

    pub fn head(&self) -> u64 {
        self.state.lock().expect("inbox lock").head
    }

    /// Live delivered messages, in position order.
    pub fn watch(&self) -> broadcast::Receiver<Arc<InboundMessage>> {
        self.live.subscribe()
    }

    /// Delivers message `message.seq` of `epoch` from `did` unless it already was: records
    /// it, appends it to the log with the next position, and hands it to live subscribers.
    /// `Ok(None)` for a duplicate. The write goes to RocksDB's log without a sync — a
    /// process crash keeps it; only a machine crash could lose it, and then the sender,
    /// not having seen an ack for it yet in most cases, resends it.
    pub fn deliver(&self, did: &Did, epoch: &str, message: InboundMessage) -> Result<Option<u64>, StorageError> {
        Ok(self.deliver_all(did, epoch, vec![message])?.pop().flatten())
    }

    /// [`Inbox::deliver`] for several messages of one sender, in order, in one write: what
    /// a link reads from one buffer of its stream is recorded together. Each message's
    /// position, or `None` for a duplicate.
    pub fn deliver_all(
        &self,
        did: &Did,
        epoch: &str,
        messages: Vec<InboundMessage>,
    ) -> Result<Vec<Option<u64>>, StorageError> {
        let mut state = self.state.lock().expect("inbox lock");
        let mut delivered = match state.senders.get(did) {
            Some(s) if s.epoch == epoch => s.delivered_seq,
            _ => 0,
        };
        let (mut head, mut bytes) = (state.head, state.bytes);
        let mut batch = WriteBatch::default();
        let (received, sizes) = (self.storage.cf(RECEIVED_CF)?, self.storage.cf(RECEIVED_SIZES_CF)?);
        let mut positions = Vec::with_capacity(messages.len());
        let mut stored = Vec::with_capacity(messages.len());
        let mut prune = false;
        let mut writing = Vec::with_capacity(messages.len());
        for mut message in messages {
            if message.seq <= delivered {
                positions.push(None);
                continue;
            }
            delivered = message.seq;
            head += 1;
            message.position = head;
            let encoded = message.encode_to_vec();
            bytes += encoded.len() as u64;
            batch.put_cf(sizes, head.to_be_bytes(), (encoded.len() as u64).to_be_bytes());
            writing.push((head, encoded.len() as u64));
            batch.put_cf(received, head.to_be_bytes(), encoded);
            prune |= head % PRUNE_EVERY == 0 && head > self.retention.messages;
            positions.push(Some(head));
            stored.push(message);
        }
        if stored.is_empty() {
            return Ok(positions);
        }
        let record = InboxState { epoch: epoch.to_string(), delivered_seq: delivered };
        batch.put_cf(self.storage.cf(INBOX_CF)?, did.as_str().as_bytes(), record.encode_to_vec());
        if prune || bytes > self.retention.bytes {
            let keep_from = (head + 1).saturating_sub(self.retention.messages);
            let (cut, freed) = self.prune_point(keep_from, bytes, head, &writing)?;
            if cut > 0 {
                for cf in [RECEIVED_CF, RECEIVED_SIZES_CF] {
                    batch.delete_range_cf(self.storage.cf(cf)?, 0u64.to_be_bytes(), cut.to_be_bytes());
                }
                bytes -= freed;
            }
        }
        batch.put_cf(self.storage.cf(icn_storage::META_CF)?, BYTES_KEY, bytes.to_be_bytes());
        self.storage.db().write(batch)?;
        state.senders.insert(did.clone(), record);
        state.head = head;
        state.bytes = bytes;
        // Sent under the lock so live subscribers see positions in order. No receiver is
        // fine: the messages are in the log.
        for message in stored {
            let _ = self.live.send(Arc::new(message));
        }
        drop(state);
        self.arrivals(did).notify_one();
        Ok(positions)
    }

    /// Where to cut the log (positions below go) and the bytes that frees, so that it
    /// keeps positions from `keep_from` on and, oldest first, at most the byte bound of
    /// `bytes` (which includes `newest`, never cut itself); at most [`PRUNE_STEP`]
    /// messages of the store at a time. `writing` are the (position, size) of the
    /// messages in the write being prepared, after everything stored: a write of a whole
    /// buffer may have to cut into itself.
    fn prune_point(
        &self,
        keep_from: u64,
        bytes: u64,
        newest: u64,
        writing: &[(u64, u64)],
    ) -> Result<(u64, u64), StorageError> {
        let (mut cut, mut freed) = (0, 0);
        let mut first_sized = None;
        let sizes =
            self.storage.db().iterator_cf(self.storage.cf(RECEIVED_SIZES_CF)?, icn_storage::IteratorMode::Start);
        let mut sized = Vec::new();
        for item in sizes.take(PRUNE_STEP) {
            let (key, value) = item?;
            sized.push((position_of(&key), value.as_ref().try_into().map(u64::from_be_bytes).unwrap_or_default()));
        }
        // The messages being written follow the stored ones only if all were read.
        let whole = sized.len() < PRUNE_STEP;
        for (position, size) in sized.into_iter().chain(writing.iter().copied().filter(|_| whole)) {
            first_sized.get_or_insert(position);
            if position >= newest || (position >= keep_from && bytes - freed <= self.retention.bytes) {
                break;
            }
            freed += size;
            cut = position + 1;
        }
        // Messages older than every sized one (logged before sizes were kept) go by
        // count alone: they were never in `bytes`.
        Ok((cut.max(keep_from.min(first_sized.unwrap_or(keep_from))), freed))
    }

    /// Bytes of the messages in the log.
    pub fn bytes(&self) -> u64 {
        self.state.lock().expect("inbox lock").bytes
    }

    /// Stored messages after `position`, oldest first, at most `max`.
    pub async fn read_after(&self, position: u64, max: usize) -> Result<Vec<InboundMessage>, StorageError> {
        self.storage
            .blocking(move |s| {
                let start = (position + 1).to_be_bytes();
                let iter = s.db().iterator_cf(
                    s.cf(RECEIVED_CF)?,
                    icn_storage::IteratorMode::From(&start, icn_storage::Direction::Forward),
                );
                let mut out = Vec::new();
                for item in iter.take(max) {
                    let (_, value) = item?;
                    if let Ok(m) = InboundMessage::decode(value.as_ref()) {
                        out.push(m);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Position of the oldest retained message (head + 1 when the log is empty).
    pub async fn oldest(&self) -> Result<u64, StorageError> {
        let head = self.head();
        self.storage
            .blocking(move |s| {
                Ok(match s.db().iterator_cf(s.cf(RECEIVED_CF)?, icn_storage::IteratorMode::Start).next() {
                    Some(item) => position_of(&item?.0),
                    None => head + 1,
                })
            })
            .await
    }
}

fn position_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;

    fn open(dir: &std::path::Path, retention: u64) -> Inbox {
        open_within(dir, retention, u64::MAX)
    }

    fn open_within(dir: &std::path::Path, messages: u64, bytes: u64) -> Inbox {
        let storage = Storage::open(dir, &[INBOX_CF, RECEIVED_CF, RECEIVED_SIZES_CF]).unwrap();
        Inbox::open(storage, Retention { messages, bytes }, 16).unwrap()
    }

    fn message(seq: u64) -> InboundMessage {
        InboundMessage { seq, protocol: "t".into(), payload: format!("m{seq}").into_bytes(), ..Default::default() }
    }

    #[tokio::test]
    async fn each_sequence_is_delivered_once_per_epoch_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let sender = NodeIdentity::generate().did().clone();
        {
            let inbox = open(dir.path(), 100);
            assert_eq!(inbox.deliver(&sender, "e1", message(1)).unwrap(), Some(1));
            assert_eq!(inbox.deliver(&sender, "e1", message(2)).unwrap(), Some(2));
            assert_eq!(inbox.deliver(&sender, "e1", message(2)).unwrap(), None);
        }
        let inbox = open(dir.path(), 100);
        assert_eq!(inbox.delivered(&sender), ("e1".to_string(), 2));
        assert_eq!(inbox.deliver(&sender, "e1", message(1)).unwrap(), None);
        assert_eq!(inbox.deliver(&sender, "e1", message(3)).unwrap(), Some(3));
        // A sender whose queue store was wiped starts a new epoch from 1.
        assert_eq!(inbox.deliver(&sender, "e2", message(1)).unwrap(), Some(4));
        let log: Vec<u64> = inbox.read_after(0, 10).await.unwrap().iter().map(|m| m.position).collect();
        assert_eq!(log, [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn one_write_records_a_buffer_of_messages_once_each_and_prunes_across_it() {
        let dir = tempfile::tempdir().unwrap();
        let sender = NodeIdentity::generate().did().clone();
        let inbox = open(dir.path(), 100);
        // A resend inside the batch and one of a message already delivered: dropped.
        assert_eq!(inbox.deliver(&sender, "e", message(1)).unwrap(), Some(1));
        let got = inbox.deliver_all(&sender, "e", [1, 2, 3, 3, 4].map(message).to_vec()).unwrap();
        assert_eq!(got, [None, Some(2), Some(3), None, Some(4)]);
        assert_eq!(inbox.delivered(&sender), ("e".to_string(), 4));
        let seqs: Vec<u64> = inbox.read_after(0, 10).await.unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        // A batch that crosses a pruning point prunes, as single deliveries would.
        let rest: Vec<InboundMessage> = (5..=PRUNE_EVERY + 10).map(message).collect();
        inbox.deliver_all(&sender, "e", rest).unwrap();
        assert_eq!(inbox.head(), PRUNE_EVERY + 10);
        assert_eq!(inbox.oldest().await.unwrap(), PRUNE_EVERY + 10 - 100 + 1, "the newest 100 are kept");
    }

    #[tokio::test]
    async fn the_log_keeps_the_newest_messages_within_retention() {
        let dir = tempfile::tempdir().unwrap();
        let sender = NodeIdentity::generate().did().clone();
        let inbox = open(dir.path(), 100);
        for seq in 1..=PRUNE_EVERY {
            inbox.deliver(&sender, "e", message(seq)).unwrap();
        }
        let oldest = inbox.oldest().await.unwrap();
        assert_eq!(oldest, PRUNE_EVERY - 100 + 1);
        assert_eq!(inbox.read_after(0, 1).await.unwrap()[0].position, oldest);
        assert_eq!(inbox.read_after(PRUNE_EVERY - 1, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_log_keeps_no_more_bytes_than_its_bound_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let sender = NodeIdentity::generate().did().clone();
        let big =
            |seq: u64| InboundMessage { seq, protocol: "t".into(), payload: vec![7; 10_000], ..Default::default() };
        let size = big(1).encoded_len() as u64 + 8; // with its position, set at delivery
        {
            let inbox = open_within(dir.path(), 1_000_000, 50_000);
            for seq in 1..=20 {
                inbox.deliver(&sender, "e", big(seq)).unwrap();
                assert!(inbox.bytes() <= 50_000, "after {seq}: {} bytes", inbox.bytes());
            }
            let kept = inbox.read_after(0, 100).await.unwrap();
            assert_eq!(kept.first().map(|m| m.position), Some(20 - kept.len() as u64 + 1), "the newest are kept");
            assert!(kept.len() as u64 >= 50_000 / size - 1, "{} kept", kept.len());
        }
        // The total is read back, not recomputed: the bound holds on.
        let inbox = open_within(dir.path(), 1_000_000, 50_000);
        let before = inbox.bytes();
        assert!(before > 0 && before <= 50_000);
        inbox.deliver(&sender, "e", big(21)).unwrap();
        assert!(inbox.bytes() <= 50_000);
        let kept: u64 = inbox.read_after(0, 100).await.unwrap().iter().map(|m| m.encoded_len() as u64).sum();
        assert_eq!(kept, inbox.bytes(), "the total is the log's own");
        // One message larger than the whole bound is still delivered and kept.
        let huge = InboundMessage { seq: 22, protocol: "t".into(), payload: vec![1; 80_000], ..Default::default() };
        assert!(inbox.deliver(&sender, "e", huge).unwrap().is_some());
        assert_eq!(inbox.read_after(0, 100).await.unwrap().last().unwrap().seq, 22);
    }
}
