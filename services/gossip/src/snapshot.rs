//! Snapshots of the topic store for backups: `ExportSnapshot` streams a header, data
//! chunks of whole length-delimited records (topics first, then entries in each author's
//! order), and a trailer with the chunk count, byte count and SHA-256 of all data.
//!
//! `RestoreSnapshot` reads the whole stream and checks version, chunk order, counts and
//! checksum before it changes anything. It then merges: every topic and entry goes
//! through the same verification as one from a peer (signature, creator, ACL), and a
//! private topic this node may not hold is skipped. A snapshot therefore cannot smuggle
//! in data the node would refuse from the network.

use crate::store::{Applied, Reader, Store};
use crate::GossipError;
use icn_identity::Did;
use icn_proto::gossip::v1::{
    snapshot_chunk::Part, RejectionReason, SnapshotChunk, SnapshotHeader, SnapshotTrailer, Topic,
};
use icn_proto::gossip::wire::v1::{snapshot_record::Item, SnapshotRecord};
use prost::Message;
use sha2::{Digest, Sha256};

/// Format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Data bytes per chunk, roughly (a record is never split).
const CHUNK_BYTES: usize = 256 * 1024;

/// Builds the chunks of a snapshot of `topics` (all when empty), as `reader` sees them.
pub fn export(
    store: &Store,
    reader: &Reader,
    node: &str,
    topics: &[String],
    now_ms: i64,
) -> Result<Vec<SnapshotChunk>, GossipError> {
    let selected: Vec<Topic> =
        store.topics(reader).into_iter().filter(|t| topics.is_empty() || topics.contains(&t.name)).collect();
    let mut records: Vec<SnapshotRecord> =
        selected.iter().map(|t| SnapshotRecord { item: Some(Item::Topic(t.clone())) }).collect();
    let mut entries = 0u64;
    for topic in &selected {
        for (author, head) in store.version_vector(&topic.name) {
            for entry in store.entries_of(&topic.name, &author, 1, head, usize::MAX)? {
                entries += 1;
                records.push(SnapshotRecord { item: Some(Item::Entry(entry)) });
            }
        }
    }
    let mut chunks = vec![SnapshotChunk {
        index: 0,
        part: Some(Part::Header(SnapshotHeader {
            format_version: FORMAT_VERSION,
            created_at_ms: now_ms,
            node_did: node.to_string(),
            topics: selected.len() as u32,
            entries,
        })),
    }];
    let mut hasher = Sha256::new();
    let mut data_bytes = 0u64;
    let mut current = Vec::new();
    let mut flush = |current: &mut Vec<u8>, chunks: &mut Vec<SnapshotChunk>| {
        if !current.is_empty() {
            hasher.update(&current[..]);
            data_bytes += current.len() as u64;
            chunks.push(SnapshotChunk { index: chunks.len() as u64, part: Some(Part::Data(std::mem::take(current))) });
        }
    };
    for record in records {
        record.encode_length_delimited(&mut current).expect("a Vec grows to fit");
        if current.len() >= CHUNK_BYTES {
            flush(&mut current, &mut chunks);
        }
    }
    flush(&mut current, &mut chunks);
    let data_chunks = chunks.len() as u64 - 1;
    chunks.push(SnapshotChunk {
        index: chunks.len() as u64,
        part: Some(Part::Trailer(SnapshotTrailer {
            chunks: data_chunks,
            data_bytes,
            sha256: hasher.finalize().to_vec(),
        })),
    });
    Ok(chunks)
}

/// What a restore did.
#[derive(Default, Debug)]
pub struct Restored {
    /// Topics new to this node or newer than its revision.
    pub topics: u32,
    /// Entries stored, counting held ones when an entry released them.
    pub entries: u64,
    /// Entries this node already held.
    pub present: u64,
    /// Entries refused by verification: signature, size, ACL, replay, malformed fields.
    pub rejected: u64,
    /// Topics this node may not hold or did not take, entries of topics it does not
    /// hold, entries not stored for another reason (such as the store refusing
    /// changes), and empty records.
    pub skipped: u64,
}

/// Checks a whole snapshot, then merges it into `store`.
pub fn restore(store: &Store, me: &Did, chunks: Vec<SnapshotChunk>, now_ms: i64) -> Result<Restored, GossipError> {
    let records = validate(chunks)?;
    let mut restored = Restored::default();
    for record in records {
        match record.item {
            Some(Item::Topic(topic)) => {
                if !store.readable_by(&topic, me) {
                    restored.skipped += 1;
                    continue;
                }
                match store.upsert_topic_blocking(topic) {
                    Ok(true) => restored.topics += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::info!(error = %e, "snapshot topic skipped");
                        restored.skipped += 1;
                    }
                }
            }
            Some(Item::Entry(entry)) => match store.apply_blocking(entry, now_ms) {
                Ok(Applied::Stored(stored)) => restored.entries += stored.len() as u64,
                Ok(Applied::Duplicate(_)) => restored.present += 1,
                Ok(Applied::Held) => {}
                // An entry of a topic this node does not hold (a private one it skipped
                // above) may be genuine: skipped, like its topic.
                Err(e @ GossipError::Rejected { reason: RejectionReason::UnknownTopic, .. }) => {
                    tracing::info!(error = %e, "snapshot entry of a topic not held skipped");
                    restored.skipped += 1;
                }
                // The entry itself broke a rule or is malformed, as it would be refused
                // from a peer: counted apart from failures to store a good one.
                Err(e @ (GossipError::Rejected { .. } | GossipError::InvalidArgument(_))) => {
                    tracing::info!(error = %e, "snapshot entry rejected");
                    restored.rejected += 1;
                }
                Err(e) => {
                    tracing::info!(error = %e, "snapshot entry skipped");
                    restored.skipped += 1;
                }
            },
            None => restored.skipped += 1,
        }
    }
    Ok(restored)
}

fn corrupt(why: String) -> GossipError {
    GossipError::CorruptSnapshot(why)
}

/// The records of a well-formed snapshot, or why it is not one. Changes nothing.
fn validate(chunks: Vec<SnapshotChunk>) -> Result<Vec<SnapshotRecord>, GossipError> {
    for (i, chunk) in chunks.iter().enumerate() {
        if chunk.index != i as u64 {
            return Err(corrupt(format!("chunk {} arrived at place {i}: chunks missing or out of order", chunk.index)));
        }
    }
    let Some(Part::Header(header)) = chunks.first().and_then(|c| c.part.clone()) else {
        return Err(corrupt("the snapshot does not start with a header".into()));
    };
    if header.format_version != FORMAT_VERSION {
        return Err(GossipError::SnapshotVersion { found: header.format_version });
    }
    let Some(Part::Trailer(trailer)) = chunks.last().and_then(|c| c.part.clone()) else {
        return Err(corrupt("the snapshot ends without its trailer (cut short?)".into()));
    };
    let data: Vec<&Vec<u8>> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| match &c.part {
            Some(Part::Data(d)) => Ok(d),
            _ => Err(corrupt(format!("chunk {} should hold data", c.index))),
        })
        .collect::<Result<_, _>>()?;
    if data.len() as u64 != trailer.chunks {
        return Err(corrupt(format!("{} data chunks, the trailer says {}", data.len(), trailer.chunks)));
    }
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    for d in &data {
        hasher.update(&d[..]);
        bytes += d.len() as u64;
    }
    if bytes != trailer.data_bytes || hasher.finalize().as_slice() != trailer.sha256.as_slice() {
        return Err(corrupt("checksum mismatch: the snapshot was altered or damaged".into()));
    }
    let mut records = Vec::new();
    for d in data {
        let mut buf = d.as_slice();
        while !buf.is_empty() {
            records.push(
                SnapshotRecord::decode_length_delimited(&mut buf)
                    .map_err(|e| corrupt(format!("undecodable record: {e}")))?,
            );
        }
    }
    let entries = records.iter().filter(|r| matches!(r.item, Some(Item::Entry(_)))).count() as u64;
    if entries != header.entries {
        return Err(corrupt(format!("{entries} entries, the header says {}", header.entries)));
    }
    Ok(records)
}
