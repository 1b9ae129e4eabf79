//! How the store lays its data out in RocksDB: the column families, and how keys and
//! values are encoded in them. Every key the store writes or scans is built here, so
//! the layout described below is the only one on disk.
//!
//! - `topics`: `<name>` → `Topic`
//! - `entries`: `<topic> 0 <author> 0 <seq: u64 BE>` → `StoredEntry`
//! - `positions`: `<topic> 0 <position: u64 BE>` → the entry's key
//! - `heads`: `<topic> 0 <author>` → highest contiguous seq (u64 BE): the version vector
//! - `pending`: like `entries`, for entries ahead of a gap → `Entry`
//! - `topic_state`: `<topic>` → first and last position (2 × u64 BE)
//! - `equivocations`: like `entries` → `Equivocation` (the held and the conflicting entry)
//!
//! This module only encodes and decodes; it never reads or writes the database.

pub const TOPICS_CF: &str = "topics";
pub const ENTRIES_CF: &str = "entries";
pub const POSITIONS_CF: &str = "positions";
pub const HEADS_CF: &str = "heads";
pub const PENDING_CF: &str = "pending";
pub const TOPIC_STATE_CF: &str = "topic_state";
pub const EQUIVOCATIONS_CF: &str = "equivocations";
pub const COLUMN_FAMILIES: &[&str] =
    &[TOPICS_CF, ENTRIES_CF, POSITIONS_CF, HEADS_CF, PENDING_CF, TOPIC_STATE_CF, EQUIVOCATIONS_CF];

/// Joins key parts with a 0 byte, which topic names and DIDs never contain; numbers are
/// fixed-width and come last, so a key splits back unambiguously.
pub(super) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// Key of an entry in `entries` (and of a held one in `pending`).
pub(super) fn entry_key(topic: &str, author: &str, seq: u64) -> Vec<u8> {
    key(&[topic.as_bytes(), author.as_bytes(), &seq.to_be_bytes()])
}

/// Key of a position in `positions`.
pub(super) fn position_key(topic: &str, position: u64) -> Vec<u8> {
    key(&[topic.as_bytes(), &position.to_be_bytes()])
}

/// Key of an author's head in `heads`.
pub(super) fn head_key(topic: &str, author: &str) -> Vec<u8> {
    key(&[topic.as_bytes(), author.as_bytes()])
}

/// Value of a topic in `topic_state`: its first and last position.
pub(super) fn span_value(first: u64, last: u64) -> Vec<u8> {
    let mut bytes = first.to_be_bytes().to_vec();
    bytes.extend_from_slice(&last.to_be_bytes());
    bytes
}

/// The big-endian u64 at `at`, or 0 when the bytes are too short.
pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or_default()
}
