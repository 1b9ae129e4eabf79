//! The durable topic store: topics, entries, each topic's version vector and arrival
//! order, and entries waiting for a gap to fill. Every change (an entry stored or held,
//! a topic) goes through one committer thread ([`icn_storage::group`]), which makes
//! concurrent changes durable with one synced write; nobody is answered before theirs
//! is durable, so an acknowledged entry survives any crash, and no RocksDB write runs on
//! an async worker.
//!
//! Layout (column families):
//! - `topics`: `<name>` → `Topic`
//! - `entries`: `<topic> 0 <author> 0 <seq: u64 BE>` → `StoredEntry`
//! - `positions`: `<topic> 0 <position: u64 BE>` → the entry's key
//! - `heads`: `<topic> 0 <author>` → highest contiguous seq (u64 BE): the version vector
//! - `pending`: like `entries`, for entries ahead of a gap → `Entry`
//! - `topic_state`: `<topic>` → first and last position (2 × u64 BE)

use crate::GossipError;
use icn_config::{TopicsConfig, TrustConfig};
use icn_gossip_records::{self as entry, verify_entry};
use icn_identity::Did;
use icn_proto::gossip::v1::{acl, Entry, RejectionReason, StoredEntry, Topic};
use icn_storage::group::{write_group, GroupLimits, GroupQueue, QueueError};
use icn_storage::{IteratorMode, Storage, WriteBatch};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

pub const TOPICS_CF: &str = "topics";
pub const ENTRIES_CF: &str = "entries";
pub const POSITIONS_CF: &str = "positions";
pub const HEADS_CF: &str = "heads";
pub const PENDING_CF: &str = "pending";
pub const TOPIC_STATE_CF: &str = "topic_state";
pub const COLUMN_FAMILIES: &[&str] = &[TOPICS_CF, ENTRIES_CF, POSITIONS_CF, HEADS_CF, PENDING_CF, TOPIC_STATE_CF];

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn entry_key(topic: &str, author: &str, seq: u64) -> Vec<u8> {
    key(&[topic.as_bytes(), author.as_bytes(), &seq.to_be_bytes()])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or_default()
}

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

#[derive(Default, Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
}

/// Who is reading, for ACL checks on every read path.
#[derive(Clone, Debug)]
pub enum Reader {
    Did(Did),
    /// No identity to read as (a node in limited mode): public topics only.
    Anonymous,
}

/// The store's counters, registered once by the service.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Entries and topics refused, by reason, from every path (API, peers, snapshots).
    pub rejections: prometheus::IntCounterVec,
    /// Entries made durable, from every path: local publishes, peers, restores.
    pub stored: prometheus::IntCounter,
}

impl StoreMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        use icn_telemetry::metrics::register;
        Self {
            rejections: register(
                registry,
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new("gossip_rejections_total", "Entries and topics refused, by reason"),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            stored: register(
                registry,
                prometheus::IntCounter::new(
                    "gossip_entries_stored_total",
                    "Entries stored, from anywhere: local publishes, peers and restores",
                )
                .expect("valid metric"),
            ),
        }
    }
}

pub struct Store {
    storage: Storage,
    metrics: StoreMetrics,
    config: TopicsConfig,
    trust: TrustConfig,
    topics: RwLock<HashMap<String, Topic>>,
    /// Serialises writes: an entry's position, head and pending set change together.
    state: Mutex<State>,
    live: broadcast::Sender<Arc<StoredEntry>>,
    /// The committer thread, which makes changes durable in groups, in the order queued.
    commits: GroupQueue<Commit>,
    held_in_flight: HeldInFlight,
    /// Set when a commit failed: memory is then ahead of disk, and only a restart
    /// (which reloads from disk) makes the store trustworthy again.
    failed: Arc<std::sync::atomic::AtomicBool>,
}

/// One change's writes, and the entries to announce once they are durable.
struct Commit {
    batch: WriteBatch,
    stored: Vec<StoredEntry>,
    /// The key of an entry held ahead of a gap, kept in memory until its write is durable.
    held: Option<Vec<u8>>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Held entries whose write is queued but not yet durable, by key: an entry that fills
/// the gap meanwhile releases them from here, as the store cannot show them yet.
type HeldInFlight = Arc<Mutex<HashMap<Vec<u8>, Entry>>>;

/// A change decided under the store's locks: its outcome, and (when it wrote anything)
/// the commit to wait for before anyone is told.
struct Durable<T> {
    outcome: T,
    committing: Option<tokio::sync::oneshot::Receiver<Result<(), String>>>,
}

impl<T> Durable<T> {
    fn done(outcome: T) -> Self {
        Self { outcome, committing: None }
    }

    async fn wait(self) -> Result<T, GossipError> {
        if let Some(done) = self.committing {
            done.await
                .map_err(|_| GossipError::CommitFailed("the committer stopped".into()))?
                .map_err(GossipError::CommitFailed)?;
        }
        Ok(self.outcome)
    }

    fn wait_blocking(self) -> Result<T, GossipError> {
        if let Some(done) = self.committing {
            done.blocking_recv()
                .map_err(|_| GossipError::CommitFailed("the committer stopped".into()))?
                .map_err(GossipError::CommitFailed)?;
        }
        Ok(self.outcome)
    }
}

/// The committer's work on one group: write it with one sync, then announce the stored
/// entries to live subscribers in order, then answer.
fn commit_group(
    storage: &Storage,
    group: Vec<Commit>,
    live: &broadcast::Sender<Arc<StoredEntry>>,
    failed: &std::sync::atomic::AtomicBool,
    stored_total: &prometheus::IntCounter,
    held_in_flight: &HeldInFlight,
) {
    let (batches, commits): (Vec<_>, Vec<_>) = group.into_iter().map(|c| (c.batch, (c.stored, c.held, c.done))).unzip();
    let result = write_group(storage, batches, true).map_err(|e| e.to_string());
    if result.is_err() {
        failed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    for (stored, held, done) in commits {
        if let (Some(key), Ok(())) = (held, &result) {
            held_in_flight.lock().expect("held lock").remove(&key);
        }
        if result.is_ok() {
            stored_total.inc_by(stored.len() as u64);
            for s in stored {
                let _ = live.send(Arc::new(s));
            }
        }
        let _ = done.send(result.clone());
    }
}

#[derive(Default)]
struct State {
    heads: HashMap<(String, String), u64>,
    spans: HashMap<String, Span>,
    /// Sequence numbers held ahead of a gap, per (topic, author): bounded by
    /// `topics.max_pending_per_author`, and known here so that no read of the store is
    /// needed to tell whether an entry is held or released.
    pending: HashMap<(String, String), BTreeSet<u64>>,
}

impl Store {
    pub fn open(
        storage: Storage,
        config: TopicsConfig,
        trust: TrustConfig,
        metrics: StoreMetrics,
    ) -> Result<Self, GossipError> {
        let db = storage.db();
        let mut topics = HashMap::new();
        for item in db.iterator_cf(storage.cf(TOPICS_CF)?, IteratorMode::Start) {
            let (_, v) = item.map_err(icn_storage::StorageError::from)?;
            if let Ok(t) = Topic::decode(v.as_ref()) {
                topics.insert(t.name.clone(), t);
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
            state
                .spans
                .insert(String::from_utf8_lossy(&k).into_owned(), Span { first: u64_at(&v, 0), last: u64_at(&v, 8) });
        }
        for item in db.iterator_cf(storage.cf(PENDING_CF)?, IteratorMode::Start) {
            let (k, _) = item.map_err(icn_storage::StorageError::from)?;
            let parts: Vec<&[u8]> = k.splitn(2, |b| *b == 0).collect();
            if let [topic, rest] = parts[..] {
                if let Some(end) = rest.len().checked_sub(9) {
                    let id = (
                        String::from_utf8_lossy(topic).into_owned(),
                        String::from_utf8_lossy(&rest[..end]).into_owned(),
                    );
                    state.pending.entry(id).or_default().insert(u64_at(rest, end + 1));
                }
            }
        }
        let (live, _) = broadcast::channel(config.subscriber_buffer);
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held_in_flight = HeldInFlight::default();
        let commits = {
            let (storage, live, failed, stored, held) =
                (storage.clone(), live.clone(), failed.clone(), metrics.stored.clone(), held_in_flight.clone());
            GroupQueue::start(
                "gossip-commit",
                GroupLimits { backlog: config.commit_backlog, max_group: config.commit_group_max },
                |_| 1,
                move |group| commit_group(&storage, group, &live, &failed, &stored, &held),
            )?
        };
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
        })
    }

    pub fn config(&self) -> &TopicsConfig {
        &self.config
    }

    pub fn watch(&self) -> broadcast::Receiver<Arc<StoredEntry>> {
        self.live.subscribe()
    }

    /// Local subscriptions currently following live entries (all topics).
    pub fn subscriber_count(&self) -> usize {
        self.live.receiver_count()
    }

    // ----- topics -----

    /// Stores a verified topic; answers once it is durable. Same topic again: `Ok(false)`.
    /// Another topic under the name: ALREADY_EXISTS.
    pub async fn put_topic(&self, topic: Topic) -> Result<bool, GossipError> {
        self.create_topic(topic)?.wait().await
    }

    fn create_topic(&self, topic: Topic) -> Result<Durable<bool>, GossipError> {
        self.recorded(entry::verify_topic(&topic).map_err(GossipError::from))?;
        let mut topics = self.topics.write().expect("topics lock");
        if let Some(existing) = topics.get(&topic.name) {
            let same = |t: &Topic| (t.acl.clone(), t.max_entries, t.scope, t.creator.clone());
            if same(existing) == same(&topic) {
                return Ok(Durable::done(false));
            }
            return Err(GossipError::AlreadyExists(format!(
                "topic `{}` exists with another creator or settings",
                topic.name
            )));
        }
        self.persist_topic(&mut topics, topic)
    }

    /// Queues the topic's write and takes it into memory, both under the topics lock so
    /// that writes land in the order of changes.
    fn persist_topic(&self, topics: &mut HashMap<String, Topic>, topic: Topic) -> Result<Durable<bool>, GossipError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.storage.cf(TOPICS_CF)?, topic.name.as_bytes(), topic.encode_to_vec());
        let committing = self.queue(batch, Vec::new(), None)?;
        topics.insert(topic.name.clone(), topic);
        Ok(Durable { outcome: true, committing: Some(committing) })
    }

    /// Takes a topic from a peer or an ACL update: new topics are stored; a known one is
    /// replaced only by a higher revision signed by the same creator. `Ok(true)` when
    /// something changed; answers once it is durable.
    pub async fn upsert_topic(&self, topic: Topic) -> Result<bool, GossipError> {
        self.replace_topic(topic)?.wait().await
    }

    /// [`Store::upsert_topic`] for callers on a blocking thread.
    pub fn upsert_topic_blocking(&self, topic: Topic) -> Result<bool, GossipError> {
        self.replace_topic(topic)?.wait_blocking()
    }

    fn replace_topic(&self, topic: Topic) -> Result<Durable<bool>, GossipError> {
        self.recorded(entry::verify_topic(&topic).map_err(GossipError::from))?;
        self.refuse_if_failed()?;
        let mut topics = self.topics.write().expect("topics lock");
        if let Some(existing) = topics.get(&topic.name) {
            if existing.creator != topic.creator {
                self.record_rejection(RejectionReason::AclViolation);
                return Err(GossipError::Rejected {
                    reason: RejectionReason::AclViolation,
                    why: format!("only the creator {} may change topic `{}`", existing.creator, topic.name),
                });
            }
            if topic.revision <= existing.revision {
                return Ok(Durable::done(false));
            }
        }
        self.persist_topic(&mut topics, topic)
    }

    /// Hands a change to the committer; never waits, so it may be called under a lock
    /// (changes are queued in the order the locks decided them).
    fn queue(
        &self,
        batch: WriteBatch,
        stored: Vec<StoredEntry>,
        held: Option<Vec<u8>>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), String>>, GossipError> {
        let (done, committing) = tokio::sync::oneshot::channel();
        self.commits.try_send(Commit { batch, stored, held, done }).map_err(|e| match e {
            QueueError::Full(_) => GossipError::ResourceExhausted(format!(
                "{e}: the disk is behind; retry (`topics.commit_backlog` sets the bound)"
            )),
            QueueError::Closed => GossipError::CommitFailed("the store is closing".into()),
        })?;
        Ok(committing)
    }

    fn refuse_if_failed(&self) -> Result<(), GossipError> {
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GossipError::CommitFailed("an earlier write to the store failed; restart the service".into()));
        }
        Ok(())
    }

    /// The topic, if `reader` may see it. A private topic is NOT_FOUND to others, so its
    /// existence does not leak.
    pub fn topic(&self, name: &str, reader: &Reader) -> Result<Topic, GossipError> {
        let topics = self.topics.read().expect("topics lock");
        match topics.get(name) {
            Some(t) if self.may_read(t, reader) => Ok(t.clone()),
            _ => Err(GossipError::NotFound(format!("no topic `{name}` is known to this node"))),
        }
    }

    pub fn topics(&self, reader: &Reader) -> Vec<Topic> {
        let topics = self.topics.read().expect("topics lock");
        let mut list: Vec<Topic> = topics.values().filter(|t| self.may_read(t, reader)).cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Whether the node `did` may hold and read `topic` (decides where entries are sent).
    pub fn readable_by(&self, topic: &Topic, did: &Did) -> bool {
        self.may_read(topic, &Reader::Did(did.clone()))
    }

    /// Entries of `author` in `topic` with sequence numbers in `from..=to` that are held.
    pub fn entries_of(&self, topic: &str, author: &str, from: u64, to: u64) -> Result<Vec<Entry>, GossipError> {
        let db = self.storage.db();
        let start = entry_key(topic, author, from);
        let mut out = Vec::new();
        for item in
            db.iterator_cf(self.storage.cf(ENTRIES_CF)?, IteratorMode::From(&start, icn_storage::Direction::Forward))
        {
            let (k, v) = item.map_err(icn_storage::StorageError::from)?;
            let prefix_len = topic.len() + 1 + author.len() + 1;
            if k.len() != prefix_len + 8 || !k.starts_with(&entry_key(topic, author, 0)[..prefix_len]) {
                break;
            }
            if u64_at(&k, prefix_len) > to {
                break;
            }
            if let Some(e) = StoredEntry::decode(v.as_ref()).ok().and_then(|s| s.entry) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// A value kept in the store's meta column family (bookkeeping such as cursors).
    pub fn meta(&self, key: &str) -> Result<Option<u64>, GossipError> {
        Ok(self.storage.meta_u64(key)?)
    }

    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), GossipError> {
        Ok(self.storage.put_meta_u64(key, value)?)
    }

    fn may_read(&self, topic: &Topic, reader: &Reader) -> bool {
        match topic.acl.as_ref().and_then(|a| a.rule.as_ref()) {
            None | Some(acl::Rule::Public(_)) => true,
            Some(acl::Rule::MinTrust(m)) => matches!(reader, Reader::Did(d) if self.trust_of(d) >= m.score),
            Some(acl::Rule::Participants(p)) => {
                matches!(reader, Reader::Did(d) if p.dids.iter().any(|x| x == d.as_str()))
            }
        }
    }

    fn trust_of(&self, did: &Did) -> f64 {
        self.trust.scores.get(did.as_str()).copied().unwrap_or(self.trust.default_score)
    }

    // ----- entries -----

    /// Verifies and stores an entry from anywhere (local publish, peer, snapshot); answers
    /// once it is durable.
    pub async fn apply(&self, entry: Entry, now_ms: i64) -> Result<Applied, GossipError> {
        self.recorded(self.prepare(entry, now_ms))?.wait().await
    }

    /// [`Store::apply`] for callers on a blocking thread.
    pub fn apply_blocking(&self, entry: Entry, now_ms: i64) -> Result<Applied, GossipError> {
        self.recorded(self.prepare(entry, now_ms))?.wait_blocking()
    }

    /// Counts a rejection, whatever was being checked.
    fn recorded<T>(&self, result: Result<T, GossipError>) -> Result<T, GossipError> {
        if let Err(GossipError::Rejected { reason, .. }) = &result {
            self.metrics.rejections.with_label_values(&[reason.as_str_name()]).inc();
        }
        result
    }

    /// Counts a refusal decided outside [`Store::apply`] (an oversize payload at the API).
    pub fn record_rejection(&self, reason: RejectionReason) {
        self.metrics.rejections.with_label_values(&[reason.as_str_name()]).inc();
    }

    pub fn rejections(&self, reason: RejectionReason) -> u64 {
        self.metrics.rejections.with_label_values(&[reason.as_str_name()]).get()
    }

    /// Entries made durable since the process started, from every path.
    pub fn stored_total(&self) -> u64 {
        self.metrics.stored.get()
    }

    fn prepare(&self, entry: Entry, now_ms: i64) -> Result<Durable<Applied>, GossipError> {
        self.refuse_if_failed()?;
        let author = verify_entry(&entry, self.config.max_payload_bytes)?;
        let topic = self.writable_topic(&entry.topic, &author)?;
        let mut state = self.state.lock().expect("state lock");
        self.prepare_locked(&mut state, entry, &topic, now_ms)
    }

    /// A new entry by this node: the sequence number is taken, the entry signed and
    /// prepared under one lock, so concurrent publishes never sign the same number.
    pub async fn publish_local(
        &self,
        identity: &icn_identity::NodeIdentity,
        topic_name: &str,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Applied, GossipError> {
        let prepared = (|| {
            self.refuse_if_failed()?;
            let topic = self.writable_topic(topic_name, identity.did())?;
            let mut state = self.state.lock().expect("state lock");
            let head = state.heads.get(&(topic_name.to_string(), identity.did().to_string())).copied().unwrap_or(0);
            let entry =
                entry::sign_entry(identity, topic_name, head + 1, payload, self.config.compress_above_bytes, now_ms);
            self.prepare_locked(&mut state, entry, &topic, now_ms)
        })();
        self.recorded(prepared)?.wait().await
    }

    /// The topic `author` may publish to, or why not.
    fn writable_topic(&self, name: &str, author: &Did) -> Result<Topic, GossipError> {
        let topic = {
            let topics = self.topics.read().expect("topics lock");
            topics.get(name).cloned().ok_or_else(|| GossipError::Rejected {
                reason: RejectionReason::UnknownTopic,
                why: format!("no topic `{name}` is known to this node"),
            })?
        };
        let may_write = match topic.acl.as_ref().and_then(|a| a.rule.as_ref()) {
            None | Some(acl::Rule::Public(_)) => true,
            Some(acl::Rule::MinTrust(m)) => self.trust_of(author) >= m.score,
            Some(acl::Rule::Participants(p)) => p.dids.iter().any(|d| d == author.as_str()),
        };
        if !may_write {
            return Err(GossipError::Rejected {
                reason: RejectionReason::AclViolation,
                why: format!("{author} may not publish to `{}`", topic.name),
            });
        }
        Ok(topic)
    }

    fn prepare_locked(
        &self,
        state: &mut State,
        entry: Entry,
        topic: &Topic,
        now_ms: i64,
    ) -> Result<Durable<Applied>, GossipError> {
        let id = (entry.topic.clone(), entry.author.clone());
        let head = state.heads.get(&id).copied().unwrap_or(0);
        if entry.seq <= head {
            let stored = self.stored(&entry.topic, &entry.author, entry.seq)?;
            return match stored {
                Some(s) if s.entry.as_ref().is_some_and(|e| e.hash == entry.hash) => {
                    Ok(Durable::done(Applied::Duplicate(s)))
                }
                _ => Err(GossipError::Rejected {
                    reason: RejectionReason::Replay,
                    why: format!(
                        "{} already published seq {} in `{}` (holding up to {head})",
                        entry.author, entry.seq, entry.topic
                    ),
                }),
            };
        }
        let db = self.storage.db();
        if entry.seq > head + 1 {
            let entry_seq = entry.seq;
            let k = entry_key(&entry.topic, &entry.author, entry.seq);
            let held = state.pending.entry(id).or_default();
            if held.contains(&entry.seq) {
                return Ok(Durable::done(Applied::Held));
            }
            if held.len() >= self.config.max_pending_per_author {
                return Err(GossipError::ResourceExhausted(format!(
                    "{} entries of {} are already waiting for a gap to fill in `{}`",
                    held.len(),
                    entry.author,
                    entry.topic
                )));
            }
            let mut batch = WriteBatch::default();
            batch.put_cf(self.storage.cf(PENDING_CF)?, &k, entry.encode_to_vec());
            let committing = self.queue(batch, Vec::new(), Some(k.clone()))?;
            self.held_in_flight.lock().expect("held lock").insert(k, entry);
            held.insert(entry_seq);
            return Ok(Durable { outcome: Applied::Held, committing: Some(committing) });
        }
        // In order: store it, then every held entry it releases.
        let mut batch = WriteBatch::default();
        let mut span = state.spans.get(&entry.topic).copied().unwrap_or_default();
        let mut stored = Vec::new();
        let mut next = Some(entry);
        let mut new_head = head;
        let mut released = Vec::new();
        let held = state.pending.get(&id);
        while let Some(e) = next.take() {
            span.last += 1;
            if span.first == 0 {
                span.first = 1;
            }
            let k = entry_key(&e.topic, &e.author, e.seq);
            new_head = e.seq;
            let s = StoredEntry { entry: Some(e.clone()), position: span.last, received_at_ms: now_ms };
            batch.put_cf(self.storage.cf(ENTRIES_CF)?, &k, s.encode_to_vec());
            batch.put_cf(self.storage.cf(POSITIONS_CF)?, key(&[e.topic.as_bytes(), &span.last.to_be_bytes()]), &k);
            stored.push(s);
            if held.is_some_and(|h| h.contains(&(e.seq + 1))) {
                let after = entry_key(&e.topic, &e.author, e.seq + 1);
                // A held entry whose own write is still queued is not in the store yet.
                let in_flight = self.held_in_flight.lock().expect("held lock").remove(&after);
                next = match in_flight {
                    Some(entry) => Some(entry),
                    None => db
                        .get_cf(self.storage.cf(PENDING_CF)?, &after)
                        .map_err(icn_storage::StorageError::from)?
                        .and_then(|bytes| Entry::decode(bytes.as_slice()).ok()),
                };
                // Deleting after the queued put, in commit order, leaves nothing behind.
                batch.delete_cf(self.storage.cf(PENDING_CF)?, &after);
                released.push(e.seq + 1);
            }
        }
        let topic_name = topic.name.clone();
        let max_entries = if topic.max_entries > 0 { topic.max_entries } else { self.config.default_max_entries };
        // Pruning keeps the head: pruned entries stay known, and are never fetched again.
        while span.last - span.first + 1 > max_entries {
            let pos_key = key(&[topic_name.as_bytes(), &span.first.to_be_bytes()]);
            if let Some(k) =
                db.get_cf(self.storage.cf(POSITIONS_CF)?, &pos_key).map_err(icn_storage::StorageError::from)?
            {
                batch.delete_cf(self.storage.cf(ENTRIES_CF)?, k);
            }
            batch.delete_cf(self.storage.cf(POSITIONS_CF)?, pos_key);
            span.first += 1;
        }
        batch.put_cf(self.storage.cf(HEADS_CF)?, key(&[id.0.as_bytes(), id.1.as_bytes()]), new_head.to_be_bytes());
        let mut span_bytes = span.first.to_be_bytes().to_vec();
        span_bytes.extend_from_slice(&span.last.to_be_bytes());
        batch.put_cf(self.storage.cf(TOPIC_STATE_CF)?, topic_name.as_bytes(), span_bytes);
        // Queued while the state lock is held, so the commit order is the state order.
        let committing = self.queue(batch, stored.clone(), None)?;
        state.heads.insert(id.clone(), new_head);
        state.spans.insert(topic_name, span);
        if let Some(held) = state.pending.get_mut(&id) {
            for seq in released {
                held.remove(&seq);
            }
        }
        Ok(Durable { outcome: Applied::Stored(stored), committing: Some(committing) })
    }

    fn stored(&self, topic: &str, author: &str, seq: u64) -> Result<Option<StoredEntry>, GossipError> {
        let bytes = self
            .storage
            .db()
            .get_cf(self.storage.cf(ENTRIES_CF)?, entry_key(topic, author, seq))
            .map_err(icn_storage::StorageError::from)?;
        Ok(bytes.and_then(|b| StoredEntry::decode(b.as_slice()).ok()))
    }

    /// Entries of `topic` after `position`, in arrival order, at most `max`.
    pub fn entries_after(&self, topic: &str, position: u64, max: usize) -> Result<Vec<StoredEntry>, GossipError> {
        let db = self.storage.db();
        let start = key(&[topic.as_bytes(), &(position + 1).to_be_bytes()]);
        let prefix_len = topic.len() + 1;
        let mut out = Vec::new();
        for item in
            db.iterator_cf(self.storage.cf(POSITIONS_CF)?, IteratorMode::From(&start, icn_storage::Direction::Forward))
        {
            let (k, v) = item.map_err(icn_storage::StorageError::from)?;
            if k.len() != prefix_len + 8 || &k[..topic.len()] != topic.as_bytes() || k[topic.len()] != 0 {
                break;
            }
            if let Some(bytes) = db.get_cf(self.storage.cf(ENTRIES_CF)?, &v).map_err(icn_storage::StorageError::from)? {
                if let Ok(s) = StoredEntry::decode(bytes.as_slice()) {
                    out.push(s);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// The topic's version vector: author → highest contiguous seq held.
    pub fn version_vector(&self, topic: &str) -> BTreeMap<String, u64> {
        let state = self.state.lock().expect("state lock");
        state.heads.iter().filter(|((t, _), _)| t == topic).map(|((_, a), h)| (a.clone(), *h)).collect()
    }

    /// (first, last) position held for `topic`; (0, 0) when empty.
    pub fn span(&self, topic: &str) -> (u64, u64) {
        let state = self.state.lock().expect("state lock");
        state.spans.get(topic).map(|s| (s.first, s.last)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_gossip_records::{sign_entry, sign_topic};
    use icn_identity::NodeIdentity;
    use icn_proto::gossip::v1::Acl;

    fn open(dir: &std::path::Path) -> Store {
        let config = icn_config::IcnConfig::default();
        let metrics = StoreMetrics::new(&prometheus::Registry::new());
        Store::open(Storage::open(dir, COLUMN_FAMILIES).unwrap(), config.topics, config.network.trust, metrics).unwrap()
    }

    fn topic(creator: &NodeIdentity, name: &str, acl: acl::Rule, max_entries: u64) -> Topic {
        sign_topic(
            creator,
            Topic {
                name: name.into(),
                acl: Some(Acl { rule: Some(acl) }),
                max_entries,
                revision: 1,
                ..Default::default()
            },
        )
    }

    fn public() -> acl::Rule {
        acl::Rule::Public(acl::Public {})
    }

    #[test]
    fn entries_arriving_out_of_order_are_held_until_the_gap_fills_then_stored_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let author = NodeIdentity::generate();
        futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 0))).unwrap();
        let e = |seq| sign_entry(&author, "t", seq, format!("e{seq}").as_bytes(), 1024, 0);
        assert_eq!(store.apply_blocking(e(3), 0).unwrap(), Applied::Held);
        assert_eq!(store.apply_blocking(e(2), 0).unwrap(), Applied::Held);
        assert_eq!(store.version_vector("t").get(author.did().as_str()), None);
        let Applied::Stored(stored) = store.apply_blocking(e(1), 0).unwrap() else { panic!("stored") };
        let order: Vec<(u64, u64)> = stored.iter().map(|s| (s.entry.as_ref().unwrap().seq, s.position)).collect();
        assert_eq!(order, [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(store.version_vector("t")[author.did().as_str()], 3);
        assert!(matches!(store.apply_blocking(e(2), 0).unwrap(), Applied::Duplicate(_)));
    }

    #[test]
    fn a_different_entry_at_a_known_sequence_is_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let author = NodeIdentity::generate();
        futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 0))).unwrap();
        store.apply_blocking(sign_entry(&author, "t", 1, b"first", 1024, 0), 0).unwrap();
        let err = store.apply_blocking(sign_entry(&author, "t", 1, b"second", 1024, 0), 0).unwrap_err();
        assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::Replay, .. }), "{err}");
    }

    #[test]
    fn everything_survives_reopening_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let author = NodeIdentity::generate();
        {
            let store = open(dir.path());
            futures::executor::block_on(store.put_topic(topic(&author, "t", public(), 3))).unwrap();
            for seq in 1..=5 {
                store.apply_blocking(sign_entry(&author, "t", seq, b"x", 1024, 0), 0).unwrap();
            }
            store.apply_blocking(sign_entry(&author, "t", 7, b"held", 1024, 0), 0).unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.span("t"), (3, 5));
        assert_eq!(store.version_vector("t")[author.did().as_str()], 5);
        let kept: Vec<u64> =
            store.entries_after("t", 0, 10).unwrap().iter().map(|s| s.entry.as_ref().unwrap().seq).collect();
        assert_eq!(kept, [3, 4, 5]);
        // The held entry survived too: filling the gap releases it.
        let Applied::Stored(stored) = store.apply_blocking(sign_entry(&author, "t", 6, b"x", 1024, 0), 0).unwrap()
        else {
            panic!()
        };
        assert_eq!(stored.len(), 2);
        // A pruned entry is still known: it is not stored again.
        assert!(store.apply_blocking(sign_entry(&author, "t", 1, b"x", 1024, 0), 0).is_err());
    }

    #[test]
    fn private_topics_are_invisible_and_unwritable_to_non_participants() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (a, b, c) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
        let participants =
            acl::Rule::Participants(acl::Participants { dids: vec![a.did().to_string(), b.did().to_string()] });
        futures::executor::block_on(store.put_topic(topic(&a, "private", participants, 0))).unwrap();
        assert!(store.topic("private", &Reader::Did(b.did().clone())).is_ok());
        assert!(matches!(store.topic("private", &Reader::Did(c.did().clone())), Err(GossipError::NotFound(_))));
        assert!(store.topic("private", &Reader::Anonymous).is_err());
        assert!(store.topics(&Reader::Did(c.did().clone())).is_empty());
        let err = store.apply_blocking(sign_entry(&c, "private", 1, b"let me in", 1024, 0), 0).unwrap_err();
        assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::AclViolation, .. }), "{err}");
        let err = store.apply_blocking(sign_entry(&a, "nowhere", 1, b"x", 1024, 0), 0).unwrap_err();
        assert!(matches!(err, GossipError::Rejected { reason: RejectionReason::UnknownTopic, .. }), "{err}");
    }
}
