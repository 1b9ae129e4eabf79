//! Writes the seed inputs of each fuzz target into `fuzz/corpus/<target>/`: well-formed
//! frames, batches and texts of every kind a peer or a client sends, signed by fresh
//! keys, so the fuzzer starts from the shapes the decoders see and mutates from there.
//! Run once when a target is added: `cargo run --release -p icn-fuzz-targets --example
//! seed_corpora` (the fuzzer then grows the corpora; `make fuzz`).

use icn_identity::NodeIdentity;
use icn_proto::gossip::v1::{acl, Acl, Topic, TopicScope};
use icn_proto::gossip::wire::v1::{gossip_frame::Body as G, Digest, GossipFrame, Push, TopicAnnounce};
use icn_proto::ledger::v1::{CreditLimit, Currency, MemberAdmission, MemberRole, Transfer};
use icn_proto::ledger::wire::v1::{ledger_entry::Body as L, ForkReport, LedgerBatch, LedgerEntry};
use icn_proto::net::wire::v1::{frame::Body as N, Ack, Frame, Goodbye, Hello, KnownPeer, Message, PeerExchange};
use prost::Message as _;
use std::path::Path;

fn write(target: &str, name: &str, bytes: Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn main() {
    let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
    let peer = |id: &NodeIdentity| KnownPeer {
        did: id.did().to_string(),
        addresses: vec!["127.0.0.1:7000".into(), "[::1]:7100".into()],
        x25519_public_key: id.x25519_public_key().as_bytes().to_vec(),
        coordinate: None,
    };
    let frames = [
        (
            "hello",
            N::Hello(Hello {
                protocol_version: 1,
                min_protocol_version: 1,
                did: a.did().to_string(),
                x25519_public_key: a.x25519_public_key().as_bytes().to_vec(),
                incarnation: "0123456789abcdef".into(),
                listen_addresses: vec!["10.0.0.1:7000".into()],
                known_peers: vec![peer(&b)],
                outbox_epoch: "e1".into(),
                delivered_epoch: "e0".into(),
                delivered_seq: 42,
                ..Default::default()
            }),
        ),
        ("exchange", N::PeerExchange(PeerExchange { peers: vec![peer(&a), peer(&b)] })),
        (
            "message",
            N::Message(Message {
                protocol: "gossip".into(),
                seq: 7,
                payload: b"payload".to_vec(),
                sealed: false,
                trace: None,
                sent_at_ms: 1,
            }),
        ),
        ("goodbye", N::Goodbye(Goodbye { reason: "bye".into(), intentional: true })),
        ("ack", N::Ack(Ack { epoch: "e1".into(), seq: 9 })),
    ];
    for (name, body) in frames {
        write("netd_frame", name, Frame { body: Some(body) }.encode_to_vec());
    }
    for i in 0..5u8 {
        write("netd_frame", &format!("bytes-{i}"), vec![i; 3 + i as usize * 7]);
    }

    let plain = icn_gossip_records::sign_entry(&a, "news", 1, b"hello", 1024, 1);
    let packed = icn_gossip_records::sign_entry(&a, "news", 2, &vec![b'x'; 4096], 1024, 2);
    let topic = |name: &str, max: u64| {
        icn_gossip_records::sign_topic(
            &a,
            Topic {
                name: name.into(),
                acl: Some(Acl { rule: Some(acl::Rule::Public(acl::Public {})) }),
                max_entries: max,
                scope: TopicScope::Network as i32,
                revision: 1,
                ..Default::default()
            },
        )
    };
    let gossip = [
        ("push", G::Push(Push { entries: vec![plain, packed] })),
        (
            "topics",
            G::Topics(TopicAnnounce {
                topics: vec![topic("news", 10), topic("ledger/bakery-x", u64::MAX), topic("compute/jobs", 1)],
            }),
        ),
        ("digest", G::Digest(Digest { topic: "news".into(), heads: [(a.did().to_string(), 3)].into(), reply: false })),
    ];
    for (name, body) in gossip {
        write("gossip_frame", name, GossipFrame { body: Some(body) }.encode_to_vec());
    }
    for i in 0..7u8 {
        write("gossip_frame", &format!("bytes-{i}"), vec![0x0a, i, i.wrapping_mul(31), 0x12]);
    }

    let coop = icn_ledger_records::coop::found(&a, "bakery", "The Bakery", 1_000).unwrap();
    let id = coop.id.clone();
    let records = vec![
        L::Coop(coop),
        L::Admission(icn_ledger_records::sign(
            &a,
            MemberAdmission {
                coop_id: id.clone(),
                member: b.did().to_string(),
                role: MemberRole::Member as i32,
                created_at_ms: 1_001,
                ..Default::default()
            },
        )),
        L::Currency(icn_ledger_records::sign(
            &a,
            Currency {
                coop_id: id.clone(),
                symbol: "hours".into(),
                decimals: 2,
                default_credit_limit: 100,
                created_at_ms: 1_002,
                ..Default::default()
            },
        )),
        L::Limit(icn_ledger_records::sign(
            &a,
            CreditLimit {
                coop_id: id.clone(),
                currency: "hours".into(),
                member: b.did().to_string(),
                limit: 50,
                created_at_ms: 1_003,
                ..Default::default()
            },
        )),
        L::Transfer(icn_ledger_records::sign(
            &b,
            Transfer {
                coop_id: id.clone(),
                currency: "hours".into(),
                payee: a.did().to_string(),
                amount: 5,
                payer_seq: 1,
                created_at_ms: 1_004,
                memo: "bread".into(),
                ..Default::default()
            },
        )),
        L::Fork(ForkReport {
            coop_id: id.clone(),
            currency: "hours".into(),
            payer: b.did().to_string(),
            payer_seq: 1,
            transfers: vec![vec![1; 32], vec![2; 32]],
            detected_at_ms: 1_005,
        }),
    ];
    for (i, body) in records.iter().enumerate() {
        write(
            "ledger_batch",
            &format!("one-{i}"),
            LedgerBatch { entries: vec![LedgerEntry { body: Some(body.clone()) }] }.encode_to_vec(),
        );
    }
    let all = LedgerBatch { entries: records.into_iter().map(|b| LedgerEntry { body: Some(b) }).collect() };
    write("ledger_batch", "all", all.encode_to_vec());
    for i in 0..4u8 {
        write("ledger_batch", &format!("bytes-{i}"), vec![0x0a, 2 + i, 0x0a, i]);
    }

    let challenge = icn_identity::login::challenge(b.did(), a.did(), &[7; 32]);
    let texts = [
        a.did().to_string(),
        "did:icn:z".into(),
        "did:icn:".into(),
        "did:key:z6Mk".into(),
        String::from_utf8_lossy(&challenge).into_owned(),
        "icn-gateway-login/v1 did:icn:x did:icn:y 00".into(),
        "".into(),
        "did:icn:z11111111111111111111111111111111".into(),
        "\u{0}\u{ffff}".into(),
        format!("{} {}", a.did(), b.did()),
    ];
    for (i, text) in texts.iter().enumerate() {
        write("did_text", &format!("text-{i}"), text.as_bytes().to_vec());
    }
}
