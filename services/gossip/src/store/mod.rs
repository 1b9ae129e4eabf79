//! The durable topic store: topics, entries, each topic's version vector and arrival
//! order, and entries waiting for a gap to fill. Every change (an entry stored or held,
//! a topic) goes through one committer thread ([`icn_storage::group`]), which makes
//! concurrent changes durable with one synced write; nobody is answered before theirs
//! is durable, so an acknowledged entry survives any crash, and no RocksDB write runs on
//! an async worker.
//!
//! This file holds the [`Store`] and opens it, reloading what is kept in memory from
//! disk. The store's jobs live beside it:
//! - `layout`: the column families and how keys and values are encoded;
//! - `acl`: the one rule deciding who may read and write a topic;
//! - `topics`: creating, replacing and listing topics;
//! - `apply`: verifying entries, holding those ahead of a gap, storing in order, pruning;
//! - `reads`: entries, version vectors, spans and bookkeeping values;
//! - `commit`: the committer thread and waiting until a change is durable;
//! - `metrics`: the store's counters.
//!
//! Nothing outside the store writes its column families, and nothing here talks to
//! peers or clients.

mod acl;
mod apply;
mod commit;
mod layout;
mod metrics;
mod reads;
mod topics;

pub use acl::Reader;
pub use layout::COLUMN_FAMILIES;
pub use metrics::StoreMetrics;

use crate::GossipError;
use commit::{Commit, HeldInFlight};
use icn_config::{TopicsConfig, TrustConfig};
use icn_proto::gossip::v1::{StoredEntry, Topic};
use icn_storage::group::GroupQueue;
use icn_storage::{IteratorMode, Storage};
use layout::{u64_at, HEADS_CF, PENDING_CF, TOPICS_CF, TOPIC_STATE_CF};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// What applying an entry did.
#[derive(Debug, PartialEq)]
pub enum Applied {
    /// Stored, with the positions of it and of any held entries it released, in order.
    Stored(Vec<StoredEntry>),
    /// Already held: nothing changed.
    Duplicate(StoredEntry),
    /// Ahead of a gap in its author's sequence: held until the gap fills.
    Held,
}

/// A topic's positions, and when its newest entry arrived.
#[derive(Default, Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
    /// `received_at_ms` of the entry at `last`; kept in memory only (read back from that
    /// entry at open), as the on-disk span holds positions alone.
    last_at_ms: i64,
}

pub struct Store {
    storage: Storage,
    metrics: StoreMetrics,
    config: TopicsConfig,
    trust: TrustConfig,
    topics: RwLock<topics::TopicTable>,
    /// Serialises writes: an entry's position, head and pending set change together.
    state: Mutex<State>,
    live: broadcast::Sender<Arc<StoredEntry>>,
    /// The committer thread, which makes changes durable in groups, in the order queued.
    commits: GroupQueue<Commit>,
    held_in_flight: HeldInFlight,
    /// Set when a commit failed: memory is then ahead of disk, and only a restart
    /// (which reloads from disk) makes the store trustworthy again.
    failed: Arc<AtomicBool>,
    /// Keys of the equivocations kept as evidence, bounded by `topics.max_equivocations`.
    equivocations: Mutex<std::collections::HashSet<Vec<u8>>>,
}

#[derive(Default)]
struct State {
    heads: HashMap<(String, String), u64>,
    spans: HashMap<String, Span>,
    /// Sequence numbers held ahead of a gap, per (topic, author), with each held entry's
    /// encoded size: bounded by `topics.max_pending_per_author`, and known here so that no
    /// read of the store is needed to tell whether an entry is held or released.
    pending: HashMap<(String, String), BTreeMap<u64, u64>>,
    /// Bytes of every held entry, bounded by `topics.max_pending_bytes`.
    pending_bytes: u64,
}

impl Store {
    pub fn open(
        storage: Storage,
        config: TopicsConfig,
        trust: TrustConfig,
        metrics: StoreMetrics,
    ) -> Result<Self, GossipError> {
        let db = storage.db();
        let mut topics = topics::TopicTable::default();
        for item in db.iterator_cf(storage.cf(TOPICS_CF)?, IteratorMode::Start) {
            let (_, v) = item.map_err(icn_storage::StorageError::from)?;
            if let Ok(t) = Topic::decode(v.as_ref()) {
                // Held before: kept even when beyond a bound lowered since.
                topics.insert(t);
            }
        }
        let mut state = State::default();
        for item in db.iterator_cf(storage.cf(HEADS_CF)?, IteratorMode::Start) {
            let (k, v) = item.map_err(icn_storage::StorageError::from)?;
            if let Some(split) = k.iter().position(|b| *b == 0) {
                let topic = String::from_utf8_lossy(&k[..split]).into_owned();
                let author = String::from_utf8_lossy(&k[split + 1..]).into_owned();
                state.heads.insert((topic, author), u64_at(&v, 0));
            }
        }
        for item in db.iterator_cf(storage.cf(TOPIC_STATE_CF)?, IteratorMode::Start) {
            let (k, v) = item.map_err(icn_storage::StorageError::from)?;
            let topic = String::from_utf8_lossy(&k).into_owned();
            let (first, last) = (u64_at(&v, 0), u64_at(&v, 8));
            let last_at_ms = reads::stored_at(&storage, &topic, last)?.map(|s| s.received_at_ms).unwrap_or_default();
            state.spans.insert(topic, Span { first, last, last_at_ms });
        }
        for item in db.iterator_cf(storage.cf(PENDING_CF)?, IteratorMode::Start) {
            let (k, v) = item.map_err(icn_storage::StorageError::from)?;
            let parts: Vec<&[u8]> = k.splitn(2, |b| *b == 0).collect();
            if let [topic, rest] = parts[..] {
                if let Some(end) = rest.len().checked_sub(9) {
                    let id = (
                        String::from_utf8_lossy(topic).into_owned(),
                        String::from_utf8_lossy(&rest[..end]).into_owned(),
                    );
                    state.pending.entry(id).or_default().insert(u64_at(rest, end + 1), v.len() as u64);
                    state.pending_bytes += v.len() as u64;
                }
            }
        }
        let mut equivocations = std::collections::HashSet::new();
        for item in db.iterator_cf(storage.cf(layout::EQUIVOCATIONS_CF)?, IteratorMode::Start) {
            let (k, _) = item.map_err(icn_storage::StorageError::from)?;
            equivocations.insert(k.to_vec());
        }
        let (live, _) = broadcast::channel(config.subscriber_buffer);
        let failed = Arc::new(AtomicBool::new(false));
        let held_in_flight = HeldInFlight::default();
        let commits = commit::start(&storage, &config, &live, &failed, &metrics, &held_in_flight)?;
        Ok(Self {
            storage,
            metrics,
            config,
            trust,
            topics: RwLock::new(topics),
            state: Mutex::new(state),
            live,
            commits,
            held_in_flight,
            failed,
            equivocations: Mutex::new(equivocations),
        })
    }

    pub fn config(&self) -> &TopicsConfig {
        &self.config
    }

    /// Every entry as it becomes durable, of all topics, in commit order.
    pub fn watch(&self) -> broadcast::Receiver<Arc<StoredEntry>> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests;
