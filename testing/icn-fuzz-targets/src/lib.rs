//! The network decoders, as a fuzzer drives them: each target takes the bytes a peer
//! (or a member's client) could send and runs everything a node does with them before
//! any state changes — decoding, and the checks of the records inside. A target must
//! never panic, whatever the bytes; `Err` and refusals are fine.
//!
//! The targets are run by cargo-fuzz from `fuzz/` (nightly, off CI: `make fuzz`), which
//! grows the corpora kept in `fuzz/corpus/<target>/`; CI replays every kept input
//! through the same functions (`tests/corpora.rs`), so a crash found once stays fixed.
//!
//! netd's framing is a 4-byte big-endian length then a `Frame`; the length check is
//! netd's (`services/netd/src/frame.rs`, and its tests), the decoding is this.

use icn_identity::Did;
use icn_proto::gossip::wire::v1::{gossip_frame::Body as GossipBody, GossipFrame};
use icn_proto::ledger::wire::v1::{ledger_entry::Body as LedgerBody, LedgerBatch};
use icn_proto::net::wire::v1::{frame::Body as NetBody, Frame};
use prost::Message;

/// Largest gossip payload the targets assume (the default `topics.max_payload_bytes`).
const MAX_PAYLOAD: usize = 256 * 1024;

/// A fuzz target: what one input is fed to.
pub type Target = fn(&[u8]);

/// The targets by name: the corpus directory each replays.
pub const TARGETS: &[(&str, Target)] = &[
    ("netd_frame", netd_frame),
    ("gossip_frame", gossip_frame),
    ("ledger_batch", ledger_batch),
    ("did_text", did_text),
];

/// A frame on a netd stream, after its length prefix: a Hello's identity and peers, a
/// peer exchange, a message.
pub fn netd_frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else { return };
    match frame.body {
        Some(NetBody::Hello(hello)) => {
            let _ = hello.did.parse::<Did>();
            for peer in &hello.known_peers {
                let _ = peer.did.parse::<Did>();
            }
        }
        Some(NetBody::PeerExchange(px)) => {
            for peer in &px.peers {
                let _ = peer.did.parse::<Did>();
            }
        }
        _ => {}
    }
}

/// A gossip frame from a peer: entries pushed (verified, decompressed), topics
/// announced (verified, reserved names checked), digests.
pub fn gossip_frame(data: &[u8]) {
    let Ok(frame) = GossipFrame::decode(data) else { return };
    match frame.body {
        Some(GossipBody::Push(push)) => {
            for entry in &push.entries {
                let _ = icn_gossip_records::verify_entry(entry, MAX_PAYLOAD);
                let _ = icn_gossip_records::plain_payload(entry, MAX_PAYLOAD);
            }
        }
        Some(GossipBody::Topics(announce)) => {
            for topic in &announce.topics {
                let _ = icn_gossip_records::verify_topic(topic);
            }
        }
        _ => {}
    }
}

/// A ledger batch, as a gossip entry's payload on a cooperative's topic: every record's
/// signature under its purpose, a founding record's binding, the cooperative it names.
pub fn ledger_batch(data: &[u8]) {
    let Ok(batch) = LedgerBatch::decode(data) else { return };
    for entry in batch.entries {
        let Some(body) = entry.body else { continue };
        let _ = icn_ledger_records::coop::coop_of(&body);
        match &body {
            LedgerBody::Transfer(t) => {
                let _ = icn_ledger_records::verify(t);
            }
            LedgerBody::Coop(c) => {
                let _ = icn_ledger_records::verify(c);
                let _ = icn_ledger_records::coop::is_bound(c);
            }
            LedgerBody::Admission(a) => {
                let _ = icn_ledger_records::verify(a);
            }
            LedgerBody::Currency(c) => {
                let _ = icn_ledger_records::verify(c);
            }
            LedgerBody::Limit(l) => {
                let _ = icn_ledger_records::verify(l);
            }
            LedgerBody::Validators(v) => {
                let _ = icn_ledger_records::verify(v);
                let _ = icn_ledger_records::finality::check(v);
            }
            LedgerBody::Vote(v) => {
                let _ = icn_ledger_records::verify(v);
            }
            LedgerBody::Fork(_) => {}
        }
    }
}

/// Text a member's client or a peer sends as a DID, and as a login challenge.
pub fn did_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(did) = text.parse::<Did>() {
        let _ = icn_identity::login::check(data, &did, None);
    }
    let _ = icn_identity::login::check(
        data,
        &"did:icn:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".parse().expect("a DID"),
        None,
    );
}
