//! A malicious peer on the push path, speaking netd's wire protocol itself: a forged copy
//! carrying a genuine entry's hash must not make the genuine entry look seen (and so be
//! dropped as a duplicate, neither stored nor sent on).

use icn_proto::gossip::v1::{GetEntriesRequest, GetTopicRequest};
use icn_proto::gossip::wire::v1::{gossip_frame::Body, GossipFrame, Push};
use icn_proto::net::wire::v1::{frame, Frame, Message};
use icn_testkit::raw_peer::{write_frame, RawPeer};
use icn_testkit::{Bootstrap, Network};
use prost::Message as _;
use std::time::{Duration, Instant};

/// netd's wire version that carries best-effort messages (the peer is hand-made, so it
/// names the version itself).
const WIRE_VERSION: u32 = 2;

fn push(entries: Vec<icn_proto::gossip::v1::Entry>) -> Frame {
    let gossip = GossipFrame { body: Some(Body::Push(Push { entries })) };
    let message = Message { protocol: "gossip".into(), payload: gossip.encode_to_vec(), ..Default::default() };
    Frame { body: Some(frame::Body::BestEffort(message)) }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_copy_carrying_a_genuine_entrys_hash_does_not_keep_the_genuine_entry_out() {
    forged_copy_first(false).await;
}

/// The same, both copies in one push: the relay checks the entries it takes together in
/// one batch, and must still check the genuine copy when the forged one fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_copy_in_the_same_push_as_the_genuine_entry_does_not_keep_it_out() {
    forged_copy_first(true).await;
}

async fn forged_copy_first(one_push: bool) {
    // Anti-entropy is slowed to an hour: only the push path can bring the entry in.
    let net = Network::builder(1)
        .services(&["netd", "gossip"])
        .bootstrap(Bootstrap::None)
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "1h")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    node.create_public_topic("square").await.unwrap();
    let mut gossip = node.gossip().await.unwrap();
    gossip.get_topic(GetTopicRequest { name: "square".into(), reader: String::new() }).await.unwrap();

    let member = icn_identity::NodeIdentity::generate();
    let genuine = icn_gossip_records::sign_entry(&member, "square", 1, b"genuine", usize::MAX, icn_runtime::now_ms());
    let forged = icn_proto::gossip::v1::Entry { payload: b"forged".to_vec(), ..genuine.clone() };

    let mallory = RawPeer::new().unwrap();
    let (conn, _control, _recv) = mallory.connect(&node.quic_address(), WIRE_VERSION).await.unwrap();
    let mut stream = conn.open_uni().await.unwrap();

    // Best-effort frames reach only a live subscriber, and gossip subscribes a moment
    // after it starts: the pair (forged copy first) is sent again until the entry is in.
    // Were the forged copy remembered as seen, no round would ever let the genuine one in.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if one_push {
            write_frame(&mut stream, &push(vec![forged.clone(), genuine.clone()])).await.unwrap();
        } else {
            write_frame(&mut stream, &push(vec![forged.clone()])).await.unwrap();
            write_frame(&mut stream, &push(vec![genuine.clone()])).await.unwrap();
        }
        let entries = gossip
            .get_entries(GetEntriesRequest {
                topic: "square".into(),
                reader: String::new(),
                author: member.did().to_string(),
                page: None,
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        if let Some(stored) = entries.first() {
            let entry = stored.entry.as_ref().unwrap();
            assert_eq!((entry.hash.as_slice(), entry.payload.as_slice()), (genuine.hash.as_slice(), &b"genuine"[..]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the genuine entry was dropped as a copy of the forged one; gossip:\n{}\nnetd:\n{}",
            node.log_tail("gossip", 20),
            node.log_tail("netd", 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = node.metric("gossip", "icn_gossip_rejections_total{reason=\"REJECTION_REASON_BAD_SIGNATURE\"}").await;
    assert!(refused.unwrap() >= 1.0, "the forged copy was checked and refused");
}
