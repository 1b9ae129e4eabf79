//! Reading the store: a topic's entries in arrival order or by author, its version
//! vector and span, and bookkeeping values in the meta column family.
//!
//! Reads take what is durable on disk, or the in-memory state that mirrors it; they
//! never check ACLs (callers look the topic up as their reader first) and never change
//! an entry or a topic.

use super::layout::{entry_key, position_key, u64_at, ENTRIES_CF, POSITIONS_CF};
use super::Store;
use crate::GossipError;
use icn_proto::gossip::v1::{Entry, StoredEntry};
use icn_storage::{Direction, IteratorMode, Storage, StorageError};
use prost::Message;
use std::collections::BTreeMap;

/// The entry stored at `position` of `topic`, if it is still there.
pub(super) fn stored_at(storage: &Storage, topic: &str, position: u64) -> Result<Option<StoredEntry>, GossipError> {
    let db = storage.db();
    let Some(k) = db.get_cf(storage.cf(POSITIONS_CF)?, position_key(topic, position)).map_err(StorageError::from)?
    else {
        return Ok(None);
    };
    let bytes = db.get_cf(storage.cf(ENTRIES_CF)?, k).map_err(StorageError::from)?;
    Ok(bytes.and_then(|b| StoredEntry::decode(b.as_slice()).ok()))
}

impl Store {
    /// The stored entry `seq` of `author` in `topic`, if it is still there.
    pub(super) fn stored(&self, topic: &str, author: &str, seq: u64) -> Result<Option<StoredEntry>, GossipError> {
        let bytes = self
            .storage
            .db()
            .get_cf(self.storage.cf(ENTRIES_CF)?, entry_key(topic, author, seq))
            .map_err(StorageError::from)?;
        Ok(bytes.and_then(|b| StoredEntry::decode(b.as_slice()).ok()))
    }

    /// Entries of `topic` after `position`, in arrival order, at most `max`.
    pub fn entries_after(&self, topic: &str, position: u64, max: usize) -> Result<Vec<StoredEntry>, GossipError> {
        let db = self.storage.db();
        let start = position_key(topic, position + 1);
        let prefix_len = topic.len() + 1;
        let mut out = Vec::new();
        for item in db.iterator_cf(self.storage.cf(POSITIONS_CF)?, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(StorageError::from)?;
            if k.len() != prefix_len + 8 || &k[..topic.len()] != topic.as_bytes() || k[topic.len()] != 0 {
                break;
            }
            if let Some(bytes) = db.get_cf(self.storage.cf(ENTRIES_CF)?, &v).map_err(StorageError::from)? {
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

    /// Entries of `author` in `topic` with sequence numbers in `from..=to` that are held,
    /// oldest first, stopping after the entry that reaches `max_bytes` (encoded): at
    /// least one, whatever its size.
    pub fn entries_of(
        &self,
        topic: &str,
        author: &str,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, GossipError> {
        let db = self.storage.db();
        let start = entry_key(topic, author, from);
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in db.iterator_cf(self.storage.cf(ENTRIES_CF)?, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(StorageError::from)?;
            let prefix_len = topic.len() + 1 + author.len() + 1;
            if k.len() != prefix_len + 8 || !k.starts_with(&entry_key(topic, author, 0)[..prefix_len]) {
                break;
            }
            if u64_at(&k, prefix_len) > to {
                break;
            }
            if let Some(e) = StoredEntry::decode(v.as_ref()).ok().and_then(|s| s.entry) {
                bytes += e.encoded_len();
                out.push(e);
                if bytes >= max_bytes {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Equivocations kept as evidence, of `topic` (all when empty), after the key
    /// `after` (a cursor; empty from the start), at most `max`; with the last key read.
    pub fn equivocations(
        &self,
        topic: &str,
        after: &[u8],
        max: usize,
    ) -> Result<(Vec<icn_proto::gossip::v1::Equivocation>, Vec<u8>), GossipError> {
        let db = self.storage.db();
        let prefix = if topic.is_empty() { Vec::new() } else { super::layout::key(&[topic.as_bytes(), b""]) };
        let start = if after.is_empty() { prefix.clone() } else { after.to_vec() };
        let mut out = Vec::new();
        let mut last = Vec::new();
        let iter = db.iterator_cf(
            self.storage.cf(super::layout::EQUIVOCATIONS_CF)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(StorageError::from)?;
            if !k.starts_with(&prefix) || out.len() == max {
                break;
            }
            if k.as_ref() == after {
                continue;
            }
            if let Ok(e) = icn_proto::gossip::v1::Equivocation::decode(v.as_ref()) {
                out.push(e);
            }
            last = k.to_vec();
        }
        Ok((out, last))
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

    /// When this node stored `topic`'s newest entry (its `received_at_ms`); 0 when the
    /// topic has none.
    pub fn last_entry_at_ms(&self, topic: &str) -> i64 {
        let state = self.state.lock().expect("state lock");
        state.spans.get(topic).map(|s| s.last_at_ms).unwrap_or_default()
    }

    /// A value kept in the store's meta column family (bookkeeping such as cursors).
    pub fn meta(&self, key: &str) -> Result<Option<u64>, GossipError> {
        Ok(self.storage.meta_u64(key)?)
    }

    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), GossipError> {
        Ok(self.storage.put_meta_u64(key, value)?)
    }
}
