//! Entries coming in, from anywhere (a local publish, a peer, a snapshot): verify the
//! record and the author's right to write, then decide under the state lock whether it
//! is known already, held ahead of a gap in its author's sequence, or stored in order
//! (releasing held entries it fills the gap for, and pruning the topic to its size).
//!
//! Every decision and the queueing of its write happen under one lock, so the commit
//! order is the order of decisions. An entry is never stored out of its author's
//! order, and a pruned entry's (author, seq) stays known so it is never stored again.

use super::acl::Reader;
use super::commit::Durable;
use super::layout::{entry_key, head_key, position_key, span_value};
use super::layout::{ENTRIES_CF, EQUIVOCATIONS_CF, HEADS_CF, PENDING_CF, POSITIONS_CF, TOPIC_STATE_CF};
use super::{Applied, State, Store};
use crate::GossipError;
use icn_gossip_records::{self as records, verify_entries, verify_entry};
use icn_proto::gossip::v1::{Entry, Equivocation, RejectionReason, StoredEntry, Topic};
use icn_storage::{StorageError, WriteBatch};
use prost::Message;

impl Store {
    /// Verifies and stores an entry from anywhere (local publish, peer, snapshot); answers
    /// once it is durable.
    pub async fn apply(&self, entry: Entry, now_ms: i64) -> Result<Applied, GossipError> {
        self.recorded(self.prepare(entry, now_ms))?.wait().await
    }

    /// [`Store::apply`] for callers on a blocking thread.
    pub fn apply_blocking(&self, entry: Entry, now_ms: i64) -> Result<Applied, GossipError> {
        self.recorded(self.prepare(entry, now_ms))?.wait_blocking()
    }

    fn prepare(&self, entry: Entry, now_ms: i64) -> Result<Durable<Applied>, GossipError> {
        let topic = self.verify(&entry)?;
        let mut state = self.state.lock().expect("state lock");
        self.prepare_locked(&mut state, entry, &topic, now_ms)
    }

    fn verify(&self, entry: &Entry) -> Result<Topic, GossipError> {
        self.refuse_if_failed()?;
        let author = verify_entry(entry, self.config.max_payload_bytes)?;
        self.writable_topic(&entry.topic, &Reader::Did(author))
    }

    /// What [`Store::apply`] checks before it decides anything — the signed record and
    /// its author's right to write the topic — of many entries, answering for each its
    /// topic or why not, as a check of it alone would; their signatures are checked in
    /// one batch (`icn_gossip_records::verify_entries`). An entry that passes may be sent
    /// on to peers before it is stored ([`Store::apply_checked`]).
    pub fn check_all(&self, entries: &[&Entry]) -> Vec<Result<Topic, GossipError>> {
        verify_entries(entries, self.config.max_payload_bytes)
            .into_iter()
            .zip(entries)
            .map(|(author, entry)| {
                self.refuse_if_failed()?;
                let author = author.map_err(GossipError::from);
                self.recorded(author.and_then(|author| self.writable_topic(&entry.topic, &Reader::Did(author))))
            })
            .collect()
    }

    /// Stores an entry that passed [`Store::check_all`] for `topic`; answers once durable.
    pub async fn apply_checked(&self, entry: Entry, topic: &Topic, now_ms: i64) -> Result<Applied, GossipError> {
        let prepared = {
            let mut state = self.state.lock().expect("state lock");
            self.prepare_locked(&mut state, entry, topic, now_ms)
        };
        self.recorded(prepared)?.wait().await
    }

    /// Whether the store holds `entry`'s place in its author's sequence already (stored,
    /// or stored and pruned): a copy of it is not sent on.
    pub fn holds_place_of(&self, entry: &Entry) -> bool {
        let state = self.state.lock().expect("state lock");
        state.heads.get(&(entry.topic.clone(), entry.author.clone())).is_some_and(|head| entry.seq <= *head)
    }

    /// Whether the store holds this very entry (its place, with the same hash), or held
    /// it and pruned it: a copy needs no check at all. A different entry in a held place
    /// is not "held": it goes through [`Store::apply`], which keeps it as evidence.
    pub fn holds_same(&self, entry: &Entry) -> bool {
        if !self.holds_place_of(entry) {
            return false;
        }
        match self.stored(&entry.topic, &entry.author, entry.seq) {
            Ok(Some(stored)) => stored.entry.is_some_and(|e| e.hash == entry.hash),
            Ok(None) => true,
            Err(_) => false,
        }
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
            let topic = self.writable_topic(topic_name, &Reader::Did(identity.did().clone()))?;
            let mut state = self.state.lock().expect("state lock");
            let head = state.heads.get(&(topic_name.to_string(), identity.did().to_string())).copied().unwrap_or(0);
            let entry =
                records::sign_entry(identity, topic_name, head + 1, payload, self.config.compress_above_bytes, now_ms);
            self.prepare_locked(&mut state, entry, &topic, now_ms)
        })();
        self.recorded(prepared)?.wait().await
    }

    /// Decides what a verified entry of a writable `topic` does to the store.
    fn prepare_locked(
        &self,
        state: &mut State,
        entry: Entry,
        topic: &Topic,
        now_ms: i64,
    ) -> Result<Durable<Applied>, GossipError> {
        let head = state.heads.get(&(entry.topic.clone(), entry.author.clone())).copied().unwrap_or(0);
        if entry.seq <= head {
            return self.known(entry, head, now_ms);
        }
        if entry.seq > head + 1 {
            return self.hold_locked(state, entry);
        }
        self.store_in_order_locked(state, entry, head, topic, now_ms)
    }

    /// An entry at or below its author's head: the same one again is a duplicate; a
    /// different one beside a held entry is an equivocation, whose evidence (both signed
    /// entries) is kept; beside a pruned one, a replay.
    fn known(&self, entry: Entry, head: u64, now_ms: i64) -> Result<Durable<Applied>, GossipError> {
        match self.stored(&entry.topic, &entry.author, entry.seq)? {
            Some(s) if s.entry.as_ref().is_some_and(|e| e.hash == entry.hash) => {
                Ok(Durable::done(Applied::Duplicate(s)))
            }
            Some(StoredEntry { entry: Some(held), .. }) => {
                let (topic, author, seq) = (entry.topic.clone(), entry.author.clone(), entry.seq);
                self.keep_evidence(held, entry, now_ms)?;
                Err(GossipError::Rejected {
                    reason: RejectionReason::Equivocation,
                    why: format!(
                        "{author} signed two different entries at seq {seq} in `{topic}`: both are kept as \
                         evidence (ListEquivocations), the first stays"
                    ),
                })
            }
            _ => Err(GossipError::Rejected {
                reason: RejectionReason::Replay,
                why: format!(
                    "{} already published seq {} in `{}` (holding up to {head})",
                    entry.author, entry.seq, entry.topic
                ),
            }),
        }
    }

    /// Keeps the pair as evidence, once per (topic, author, seq), within
    /// `topics.max_equivocations`; beyond it the equivocation is only counted.
    fn keep_evidence(&self, held: Entry, conflicting: Entry, now_ms: i64) -> Result<(), GossipError> {
        let k = entry_key(&held.topic, &held.author, held.seq);
        let mut kept = self.equivocations.lock().expect("equivocations lock");
        if kept.contains(&k) {
            return Ok(());
        }
        self.metrics.equivocations.inc();
        tracing::warn!(topic = %held.topic, author = %held.author, seq = held.seq,
            "equivocation: the author signed two different entries at one sequence number");
        if kept.len() >= self.config.max_equivocations {
            self.metrics.equivocations_refused.inc();
            return Ok(());
        }
        let evidence = Equivocation { held: Some(held), conflicting: Some(conflicting), detected_at_ms: now_ms };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.storage.cf(EQUIVOCATIONS_CF)?, &k, evidence.encode_to_vec());
        // Not waited for: nobody is answered about evidence, and a crash before it is
        // written loses only what the next copy of the conflicting entry brings back.
        drop(self.queue(batch, Vec::new(), None)?);
        kept.insert(k);
        Ok(())
    }

    /// Holds an entry ahead of a gap in its author's sequence until the gap fills, up to
    /// `topics.max_pending_per_author` per author.
    fn hold_locked(&self, state: &mut State, entry: Entry) -> Result<Durable<Applied>, GossipError> {
        let entry_seq = entry.seq;
        let k = entry_key(&entry.topic, &entry.author, entry.seq);
        let encoded = entry.encode_to_vec();
        let size = encoded.len() as u64;
        let total = state.pending_bytes;
        let held = state.pending.entry((entry.topic.clone(), entry.author.clone())).or_default();
        if held.contains_key(&entry.seq) {
            return Ok(Durable::done(Applied::Held));
        }
        if held.len() >= self.config.max_pending_per_author {
            self.metrics.pending_refused.with_label_values(&["per_author"]).inc();
            return Err(GossipError::ResourceExhausted(format!(
                "{} entries of {} are already waiting for a gap to fill in `{}` (topics.max_pending_per_author)",
                held.len(),
                entry.author,
                entry.topic
            )));
        }
        if total + size > self.config.max_pending_bytes {
            self.metrics.pending_refused.with_label_values(&["total_bytes"]).inc();
            return Err(GossipError::ResourceExhausted(format!(
                "{total} bytes of entries already wait for gaps to fill on this node; {} more would pass \
                 topics.max_pending_bytes ({}): send the missing entries first",
                size, self.config.max_pending_bytes
            )));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.storage.cf(PENDING_CF)?, &k, encoded);
        let committing = self.queue(batch, Vec::new(), Some(k.clone()))?;
        self.held_in_flight.lock().expect("held lock").insert(k, entry);
        held.insert(entry_seq, size);
        state.pending_bytes += size;
        Ok(Durable::committing(Applied::Held, committing))
    }

    /// Stores the entry next after its author's `head`, then every held entry it
    /// releases, then prunes the topic to its size.
    fn store_in_order_locked(
        &self,
        state: &mut State,
        entry: Entry,
        head: u64,
        topic: &Topic,
        now_ms: i64,
    ) -> Result<Durable<Applied>, GossipError> {
        let db = self.storage.db();
        let id = (entry.topic.clone(), entry.author.clone());
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
            span.last_at_ms = now_ms;
            let k = entry_key(&e.topic, &e.author, e.seq);
            new_head = e.seq;
            let s = StoredEntry { entry: Some(e.clone()), position: span.last, received_at_ms: now_ms };
            batch.put_cf(self.storage.cf(ENTRIES_CF)?, &k, s.encode_to_vec());
            batch.put_cf(self.storage.cf(POSITIONS_CF)?, position_key(&e.topic, span.last), &k);
            stored.push(s);
            if held.is_some_and(|h| h.contains_key(&(e.seq + 1))) {
                let after = entry_key(&e.topic, &e.author, e.seq + 1);
                // A held entry whose own write is still queued is not in the store yet.
                let in_flight = self.held_in_flight.lock().expect("held lock").remove(&after);
                next = match in_flight {
                    Some(entry) => Some(entry),
                    None => db
                        .get_cf(self.storage.cf(PENDING_CF)?, &after)
                        .map_err(StorageError::from)?
                        .and_then(|bytes| Entry::decode(bytes.as_slice()).ok()),
                };
                // Deleting after the queued put, in commit order, leaves nothing behind.
                batch.delete_cf(self.storage.cf(PENDING_CF)?, &after);
                released.push(e.seq + 1);
            }
        }
        let max_entries = if topic.max_entries > 0 { topic.max_entries } else { self.config.default_max_entries };
        self.prune(&mut batch, &topic.name, &mut span, max_entries)?;
        batch.put_cf(self.storage.cf(HEADS_CF)?, head_key(&id.0, &id.1), new_head.to_be_bytes());
        batch.put_cf(self.storage.cf(TOPIC_STATE_CF)?, topic.name.as_bytes(), span_value(span.first, span.last));
        // Queued while the state lock is held, so the commit order is the state order.
        let committing = self.queue(batch, stored.clone(), None)?;
        state.heads.insert(id.clone(), new_head);
        state.spans.insert(topic.name.clone(), span);
        if let Some(held) = state.pending.get_mut(&id) {
            for seq in released {
                state.pending_bytes -= held.remove(&seq).unwrap_or(0);
            }
            if held.is_empty() {
                state.pending.remove(&id);
            }
        }
        Ok(Durable::committing(Applied::Stored(stored), committing))
    }

    /// Adds to `batch` the deletion of the oldest entries of `topic` beyond
    /// `max_entries`, moving `span.first` past them. Pruning keeps the heads: pruned
    /// entries stay known, and are never fetched again.
    fn prune(
        &self,
        batch: &mut WriteBatch,
        topic: &str,
        span: &mut super::Span,
        max_entries: u64,
    ) -> Result<(), GossipError> {
        let db = self.storage.db();
        while span.last - span.first + 1 > max_entries {
            let pos_key = position_key(topic, span.first);
            if let Some(k) = db.get_cf(self.storage.cf(POSITIONS_CF)?, &pos_key).map_err(StorageError::from)? {
                batch.delete_cf(self.storage.cf(ENTRIES_CF)?, k);
            }
            batch.delete_cf(self.storage.cf(POSITIONS_CF)?, pos_key);
            span.first += 1;
        }
        Ok(())
    }
}
