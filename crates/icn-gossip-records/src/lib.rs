//! Gossip's signed records, entries and topics, and the rules each must satisfy
//! wherever it comes from: a local publish, a peer, a restored snapshot, or a member's
//! client that signs an entry for the gateway to publish. Digest and signature (Ed25519
//! over the SHA-256 of the protobuf encoding with `hash` and `signature` empty, under
//! [`Purpose::GossipEntry`] or [`Purpose::GossipTopic`]), names, sizes, and compression
//! that cannot be turned into a decompression bomb.
//!
//! Who may write or read a topic (its ACL) is the gossip service's rule, not a property
//! of a record: it lives there. Which names belong to a service, with settings no
//! creator chooses, is a property of the record: [`reserved`].

pub mod reserved;

use icn_identity::{Did, NodeIdentity, Purpose};
use icn_proto::gossip::v1::{Entry, RejectionReason, Topic};
use prost::Message;
use sha2::{Digest, Sha256};

/// Why a record breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Malformed: a field that can never be right (a name, a zero sequence number).
    #[error("{0}")]
    Invalid(String),
    /// Refused by a rule with a reason that peers and metrics name.
    #[error("rejected ({}): {why}", reason.as_str_name().trim_start_matches("REJECTION_REASON_"))]
    Rejected { reason: RejectionReason, why: String },
}

/// Longest topic name, in bytes.
pub const MAX_TOPIC_NAME: usize = 128;

/// The entry and topic format this release writes and reads; a higher one is a later
/// release's, refused as `UNKNOWN_FORMAT` (not as a bad signature: this node cannot
/// hash it as its signer did) and taken once this node is upgraded.
pub const FORMAT: u32 = 0;

fn known_format(format: u32) -> Result<(), RecordError> {
    if format > FORMAT {
        return Err(RecordError::Rejected {
            reason: RejectionReason::UnknownFormat,
            why: format!("format {format} is newer than this node's ({FORMAT}): upgrade the node to take it"),
        });
    }
    Ok(())
}

/// Bytes of the little-endian size prefix of a compressed payload.
const SIZE_PREFIX: usize = 4;

pub fn entry_digest(entry: &Entry) -> [u8; 32] {
    let unsigned = Entry { hash: Vec::new(), signature: Vec::new(), ..entry.clone() };
    Sha256::digest(unsigned.encode_to_vec()).into()
}

pub fn topic_digest(topic: &Topic) -> [u8; 32] {
    let unsigned = Topic { signature: Vec::new(), ..topic.clone() };
    Sha256::digest(unsigned.encode_to_vec()).into()
}

/// A new entry by this node: compressed when large, hashed and signed.
pub fn sign_entry(
    identity: &NodeIdentity,
    topic: &str,
    seq: u64,
    payload: &[u8],
    compress_above: usize,
    now_ms: i64,
) -> Entry {
    let (payload, compressed) = if payload.len() > compress_above {
        (lz4_flex::compress_prepend_size(payload), true)
    } else {
        (payload.to_vec(), false)
    };
    let mut entry = Entry {
        hash: Vec::new(),
        topic: topic.to_string(),
        author: identity.did().to_string(),
        seq,
        payload,
        compressed,
        timestamp_ms: now_ms,
        signature: Vec::new(),
        format: FORMAT,
    };
    let digest = entry_digest(&entry);
    entry.signature = identity.sign_for(Purpose::GossipEntry, &digest).to_bytes().to_vec();
    entry.hash = digest.to_vec();
    entry
}

pub fn sign_topic(identity: &NodeIdentity, mut topic: Topic) -> Topic {
    topic.creator = identity.did().to_string();
    topic.signature = Vec::new();
    topic.signature = identity.sign_for(Purpose::GossipTopic, &topic_digest(&topic)).to_bytes().to_vec();
    topic
}

/// Checks an entry's form, hash, signature and size; returns its author.
pub fn verify_entry(entry: &Entry, max_payload: usize) -> Result<Did, RecordError> {
    let (author, digest) = check_entry_form(entry, max_payload)?;
    if !author.verify_for(Purpose::GossipEntry, &digest, &entry.signature) {
        return Err(bad_signature(&author));
    }
    check_compressed(entry, max_payload)?;
    Ok(author)
}

/// [`verify_entry`] of many entries, with the same answer for each: the signatures of
/// those whose form passes are checked together in one ZIP-215 batch, which accepts
/// exactly what single checks accept. A relay receives entries a few at a time, mostly
/// of one author, and checking them one by one was the largest part of its CPU
/// (docs/BENCHMARKS.md, tenth session). When the batch fails, each is checked alone to
/// find which.
pub fn verify_entries(entries: &[&Entry], max_payload: usize) -> Vec<Result<Did, RecordError>> {
    let formed: Vec<Result<(Did, [u8; 32]), RecordError>> =
        entries.iter().map(|e| check_entry_form(e, max_payload)).collect();
    let items: Vec<(&Did, &[u8], &[u8])> = formed
        .iter()
        .zip(entries)
        .filter_map(|(f, e)| f.as_ref().ok().map(|(author, digest)| (author, &digest[..], &e.signature[..])))
        .collect();
    let all_valid = items.len() > 1 && icn_identity::verify_batch_for(Purpose::GossipEntry, &items);
    formed
        .into_iter()
        .zip(entries)
        .map(|(formed, entry)| {
            let (author, digest) = formed?;
            if !all_valid && !author.verify_for(Purpose::GossipEntry, &digest, &entry.signature) {
                return Err(bad_signature(&author));
            }
            check_compressed(entry, max_payload)?;
            Ok(author)
        })
        .collect()
}

/// What an entry alone must satisfy before its signature is worth checking: a known
/// format, an author that is a DID, a sequence number, a topic name, a payload within
/// the limit (from lengths alone: nothing is decompressed or hashed for a payload that
/// is too big anyway) and a hash that is its digest. Answers the author and the digest.
fn check_entry_form(entry: &Entry, max_payload: usize) -> Result<(Did, [u8; 32]), RecordError> {
    known_format(entry.format)?;
    let reject = |reason, why: String| RecordError::Rejected { reason, why };
    let author: Did =
        entry.author.parse().map_err(|e| reject(RejectionReason::BadSignature, format!("author is not a DID: {e}")))?;
    if entry.seq == 0 {
        return Err(RecordError::Invalid("entry `seq` starts at 1".into()));
    }
    validate_topic_name(&entry.topic)?;
    let wire_limit = if entry.compressed {
        lz4_flex::block::get_maximum_output_size(max_payload) + SIZE_PREFIX
    } else {
        max_payload
    };
    if entry.payload.len() > wire_limit {
        return Err(reject(
            RejectionReason::Oversize,
            format!("payload of {} bytes exceeds the limit of {max_payload} bytes", entry.payload.len()),
        ));
    }
    let digest = entry_digest(entry);
    if entry.hash != digest {
        return Err(bad_signature(&author));
    }
    Ok((author, digest))
}

fn bad_signature(author: &Did) -> RecordError {
    RecordError::Rejected {
        reason: RejectionReason::BadSignature,
        why: format!("the signature is not {author}'s over this entry"),
    }
}

/// A compressed payload must inflate to what it declares, within the limit.
fn check_compressed(entry: &Entry, max_payload: usize) -> Result<(), RecordError> {
    if entry.compressed {
        decompress(&entry.payload, max_payload)?;
    }
    Ok(())
}

/// Decompresses a size-prefixed LZ4 block, refusing a declared size above `max` before
/// allocating anything, and a block that does not produce exactly what it declared.
pub fn decompress(payload: &[u8], max: usize) -> Result<Vec<u8>, RecordError> {
    let bomb = |why: String| RecordError::Rejected { reason: RejectionReason::DecompressionBomb, why };
    let prefix: [u8; SIZE_PREFIX] = payload
        .get(..SIZE_PREFIX)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| bomb("compressed payload without its size".into()))?;
    let declared = u32::from_le_bytes(prefix) as usize;
    if declared > max {
        return Err(bomb(format!("declares {declared} bytes uncompressed, above the limit of {max}")));
    }
    let plain = lz4_flex::block::decompress(&payload[SIZE_PREFIX..], declared)
        .map_err(|e| bomb(format!("does not decompress: {e}")))?;
    if plain.len() != declared {
        return Err(bomb(format!("decompressed to {} bytes, not the declared {declared}", plain.len())));
    }
    Ok(plain)
}

/// The payload as the publisher wrote it.
pub fn plain_payload(entry: &Entry, max: usize) -> Result<Vec<u8>, RecordError> {
    if entry.compressed {
        decompress(&entry.payload, max)
    } else {
        Ok(entry.payload.clone())
    }
}

pub fn verify_topic(topic: &Topic) -> Result<Did, RecordError> {
    known_format(topic.format)?;
    validate_topic_name(&topic.name)?;
    let creator: Did =
        topic.creator.parse().map_err(|e| RecordError::Invalid(format!("topic `creator` is not a DID: {e}")))?;
    if !creator.verify_for(Purpose::GossipTopic, &topic_digest(topic), &topic.signature) {
        return Err(RecordError::Rejected {
            reason: RejectionReason::BadSignature,
            why: format!("the topic is not signed by its creator {creator}"),
        });
    }
    reserved::check(topic).map_err(|why| RecordError::Rejected { reason: RejectionReason::ReservedTopic, why })?;
    Ok(creator)
}

pub fn validate_topic_name(name: &str) -> Result<(), RecordError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(RecordError::Invalid(format!(
            "topic names are 1-{MAX_TOPIC_NAME} characters of a-z, 0-9, '-', '.', ':' and '/', got `{}`",
            name.chars().take(MAX_TOPIC_NAME + 12).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_entry_verifies_and_any_change_breaks_it() {
        let id = NodeIdentity::generate();
        let entry = sign_entry(&id, "news", 1, b"hello", 1024, 1);
        assert_eq!(verify_entry(&entry, 1024).unwrap(), *id.did());
        for tamper in [
            Entry { payload: b"hellO".to_vec(), ..entry.clone() },
            Entry { seq: 2, ..entry.clone() },
            Entry { topic: "other".into(), ..entry.clone() },
            Entry { author: NodeIdentity::generate().did().to_string(), ..entry.clone() },
        ] {
            let err = verify_entry(&tamper, 1024).unwrap_err();
            assert!(matches!(err, RecordError::Rejected { reason: RejectionReason::BadSignature, .. }), "{err}");
        }
    }

    #[test]
    fn a_batch_check_answers_for_each_entry_what_a_single_check_answers() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        let good: Vec<Entry> = (1..=5).map(|seq| sign_entry(&alice, "news", seq, b"hello", 1024, 1)).collect();
        let by_bob = sign_entry(&bob, "news", 1, b"hi", 1024, 1);
        let all: Vec<&Entry> = good.iter().chain([&by_bob]).collect();
        let authors: Vec<Did> = verify_entries(&all, 1024).into_iter().map(Result::unwrap).collect();
        assert_eq!(authors[..5], vec![alice.did().clone(); 5][..]);
        assert_eq!(authors[5], *bob.did());
        // One forged signature among valid ones: only it is refused, whatever its place.
        let mut forged = good[2].clone();
        forged.signature = by_bob.signature.clone();
        // Hash consistent, signature another's: the batch fails and single checks find it.
        let mixed = [&good[0], &forged, &good[1], &by_bob];
        let answers = verify_entries(&mixed, 1024);
        for (entry, answer) in mixed.iter().zip(&answers) {
            assert_eq!(
                answer.as_ref().map_err(|e| e.to_string()),
                verify_entry(entry, 1024).as_ref().map_err(|e| e.to_string())
            );
        }
        assert!(matches!(&answers[1], Err(RecordError::Rejected { reason: RejectionReason::BadSignature, .. })));
        assert!(answers[0].is_ok() && answers[2].is_ok() && answers[3].is_ok());
        // A malformed entry is refused on its form and does not spoil the batch.
        let nameless = Entry { topic: "Bad Name".into(), ..good[3].clone() };
        let answers = verify_entries(&[&good[3], &nameless, &good[4]], 1024);
        assert!(answers[0].is_ok() && answers[2].is_ok());
        assert!(matches!(answers[1], Err(RecordError::Invalid(_))));
        assert!(verify_entries(&[], 1024).is_empty());
    }

    #[test]
    fn large_payloads_are_compressed_and_come_back_whole() {
        let id = NodeIdentity::generate();
        let payload = vec![b'a'; 100_000];
        let entry = sign_entry(&id, "big", 1, &payload, 1024, 1);
        assert!(entry.compressed && entry.payload.len() < 2_000);
        verify_entry(&entry, 200_000).unwrap();
        assert_eq!(plain_payload(&entry, 200_000).unwrap(), payload);
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_inflated() {
        let id = NodeIdentity::generate();
        // 100 MB of zeros compresses to a few hundred KB; the cap is 1 MB.
        let bomb = sign_entry(&id, "t", 1, &vec![0u8; 100 * 1024 * 1024], 1024, 1);
        assert!(bomb.payload.len() < 1024 * 1024);
        let err = verify_entry(&bomb, 1024 * 1024).unwrap_err();
        assert!(matches!(err, RecordError::Rejected { reason: RejectionReason::DecompressionBomb, .. }), "{err}");
        // A forged size prefix that understates the real size is caught too.
        let mut lying = lz4_flex::compress_prepend_size(&[7u8; 5000]);
        lying[..4].copy_from_slice(&10u32.to_le_bytes());
        assert!(decompress(&lying, 1 << 20).is_err());
    }

    #[test]
    fn oversize_is_decided_from_lengths_alone() {
        let id = NodeIdentity::generate();
        let entry = sign_entry(&id, "t", 1, &[1u8; 2000], usize::MAX, 1);
        let err = verify_entry(&entry, 1000).unwrap_err();
        assert!(matches!(err, RecordError::Rejected { reason: RejectionReason::Oversize, .. }), "{err}");
    }

    #[test]
    fn topics_are_signed_by_their_creator() {
        let id = NodeIdentity::generate();
        let topic = sign_topic(&id, Topic { name: "coop/alpha".into(), revision: 1, ..Default::default() });
        assert_eq!(verify_topic(&topic).unwrap(), *id.did());
        let forged = Topic { name: "coop/beta".into(), ..topic };
        assert!(verify_topic(&forged).is_err());
        assert!(validate_topic_name("Bad Name").is_err());
    }
}
