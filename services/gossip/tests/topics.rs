//! The gossip service on one node, driven over gRPC as the other services and operators
//! will: topics, publishing, reading back, every rejection, private topics, and crashes.

use icn_gossip_records::sign_entry;
use icn_identity::NodeIdentity;
use icn_proto::common::v1::PageRequest;
use icn_proto::gossip::v1::gossip_client::GossipClient;
use icn_proto::gossip::v1::*;
use icn_proto::gossip::wire::v1::{snapshot_record, SnapshotRecord};
use icn_testkit::{Bootstrap, Network, TestNode};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

async fn gossip(node: &TestNode) -> GossipClient<Channel> {
    GossipClient::new(node.channel("gossip").await.unwrap())
}

async fn create(client: &mut GossipClient<Channel>, name: &str, rule: acl::Rule) {
    let spec = TopicSpec { name: name.into(), acl: Some(Acl { rule: Some(rule) }), ..Default::default() };
    client.create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Spec(spec)) }).await.unwrap();
}

fn payload(topic: &str, bytes: &[u8]) -> PublishRequest {
    PublishRequest {
        signing: Some(publish_request::Signing::Payload(PublishPayload {
            topic: topic.into(),
            payload: bytes.to_vec(),
        })),
    }
}

fn signed(entry: Entry) -> PublishRequest {
    PublishRequest { signing: Some(publish_request::Signing::Signed(entry)) }
}

fn public() -> acl::Rule {
    acl::Rule::Public(acl::Public {})
}

#[tokio::test(flavor = "multi_thread")]
async fn published_entries_stream_to_subscribers_and_read_back_in_order() {
    let net = Network::builder(1).services(&["gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let node = &net.nodes[0];
    let mut client = gossip(node).await;
    create(&mut client, "news", public()).await;
    let mut stream = client
        .subscribe(SubscribeRequest {
            topic: "news".into(),
            reader: String::new(),
            start: Some(subscribe_request::Start::AfterPosition(0)),
        })
        .await
        .unwrap()
        .into_inner();
    for i in 1..=3 {
        let r = client.publish(payload("news", format!("item {i}").as_bytes())).await.unwrap().into_inner();
        assert_eq!(r.entry.unwrap().position, i);
    }
    for i in 1..=3u64 {
        let s = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap().unwrap();
        let e = s.entry.unwrap();
        assert_eq!((s.position, e.seq, e.payload), (i, i, format!("item {i}").into_bytes()));
        assert_eq!(e.author, node.did().to_string());
    }
    let page = client
        .get_entries(GetEntriesRequest {
            topic: "news".into(),
            page: Some(PageRequest { limit: 2, cursor: String::new() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 2);
    let rest = client
        .get_entries(GetEntriesRequest {
            topic: "news".into(),
            page: Some(PageRequest { limit: 2, cursor: page.next_cursor }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.iter().map(|s| s.position).collect::<Vec<_>>(), [3]);
    assert!(rest.next_cursor.is_empty());
    let vv = client
        .get_version_vector(GetVersionVectorRequest { topic: "news".into(), reader: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vv.vector.unwrap().heads[node.did().as_str()], 3);
    assert_eq!(vv.last_position, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_replayed_oversized_compressed_bomb_and_unknown_topic_entries_are_refused_with_their_reason() {
    let net = Network::builder(1)
        .services(&["gossip"])
        .bootstrap(Bootstrap::None)
        .env("ICN__TOPICS__MAX_PAYLOAD_BYTES", "65536")
        .start()
        .await
        .unwrap();
    let mut client = gossip(&net.nodes[0]).await;
    create(&mut client, "t", public()).await;
    let member = NodeIdentity::generate();
    client.publish(signed(sign_entry(&member, "t", 1, b"genuine", 1024, 1))).await.unwrap();

    let mut forged = sign_entry(&member, "t", 2, b"honest", 1024, 1);
    forged.payload = b"tampered".to_vec();
    // Small on the wire (about 33 KB), 8 MiB once inflated: over the 64 KiB cap.
    let bomb = sign_entry(&member, "t", 2, &vec![0u8; 8 * 1024 * 1024], 1024, 1);
    assert!(bomb.payload.len() < 65_536);
    let cases = [
        (signed(forged), Code::InvalidArgument, "BAD_SIGNATURE"),
        (signed(sign_entry(&member, "t", 1, b"a different first entry", 1024, 1)), Code::AlreadyExists, "EQUIVOCATION"),
        (signed(sign_entry(&member, "t", 2, &vec![1u8; 70_000], usize::MAX, 1)), Code::InvalidArgument, "OVERSIZE"),
        (payload("t", &vec![1u8; 70_000]), Code::InvalidArgument, "OVERSIZE"),
        (signed(bomb), Code::InvalidArgument, "DECOMPRESSION_BOMB"),
        (signed(sign_entry(&member, "no-such-topic", 1, b"x", 1024, 1)), Code::NotFound, "UNKNOWN_TOPIC"),
        (payload("Bad Topic", b"x"), Code::InvalidArgument, "topic names"),
        (signed(later_format(&member)), Code::FailedPrecondition, "UNKNOWN_FORMAT"),
    ];
    for (request, code, needle) in cases {
        let err = client.publish(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle), "`{}` should name {needle}", err.message());
    }
    // Still serving, and the refusals are counted by reason.
    client.publish(signed(sign_entry(&member, "t", 2, b"second", 1024, 1))).await.unwrap();
    let stats = client.stats(StatsRequest::default()).await.unwrap().into_inner();
    let count =
        |r: RejectionReason| stats.rejections.iter().find(|c| c.reason == r as i32).map(|c| c.count).unwrap_or(0);
    assert_eq!(count(RejectionReason::BadSignature), 1);
    assert_eq!(count(RejectionReason::Equivocation), 1);
    assert_eq!(count(RejectionReason::Oversize), 2);
    assert_eq!(count(RejectionReason::DecompressionBomb), 1);
    assert_eq!(count(RejectionReason::UnknownTopic), 1);
    assert_eq!(count(RejectionReason::UnknownFormat), 1);
    // The equivocation's evidence: both entries the member signed at seq 1, each
    // verifiable by anyone, the held one first.
    let found = client
        .list_equivocations(ListEquivocationsRequest { topic: "t".into(), page: None })
        .await
        .unwrap()
        .into_inner()
        .equivocations;
    assert_eq!(found.len(), 1);
    let (held, conflicting) = (found[0].held.clone().unwrap(), found[0].conflicting.clone().unwrap());
    assert_eq!(
        (held.payload.as_slice(), conflicting.payload.as_slice()),
        (&b"genuine"[..], &b"a different first entry"[..])
    );
    for e in [&held, &conflicting] {
        assert_eq!((e.author.as_str(), e.seq), (member.did().as_str(), 1));
        icn_gossip_records::verify_entry(e, 65_536).unwrap();
    }
    // Sending the conflicting entry again keeps no second copy of the evidence.
    client.publish(signed(conflicting)).await.unwrap_err();
    let again = client.list_equivocations(ListEquivocationsRequest::default()).await.unwrap().into_inner();
    assert_eq!(again.equivocations.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_topic_is_refused_to_non_participants_on_every_read_also_after_a_restart() {
    let mut net = Network::builder(1).services(&["gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let (member, outsider) = (NodeIdentity::generate(), NodeIdentity::generate());
    let node_did = net.nodes[0].did().to_string();
    {
        let mut client = gossip(&net.nodes[0]).await;
        create(
            &mut client,
            "board",
            acl::Rule::Participants(acl::Participants { dids: vec![node_did, member.did().to_string()] }),
        )
        .await;
        client.publish(payload("board", b"minutes")).await.unwrap();
    }
    for round in 0..2 {
        let mut client = gossip(&net.nodes[0]).await;
        let reader = outsider.did().to_string();
        let denied = [
            client.get_topic(GetTopicRequest { name: "board".into(), reader: reader.clone() }).await.map(|_| ()),
            client
                .get_entries(GetEntriesRequest { topic: "board".into(), reader: reader.clone(), ..Default::default() })
                .await
                .map(|_| ()),
            client
                .get_version_vector(GetVersionVectorRequest { topic: "board".into(), reader: reader.clone() })
                .await
                .map(|_| ()),
            client
                .subscribe(SubscribeRequest { topic: "board".into(), reader: reader.clone(), start: None })
                .await
                .map(|_| ()),
        ];
        for result in denied {
            assert_eq!(
                result.unwrap_err().code(),
                Code::NotFound,
                "round {round}: the topic does not exist for outsiders"
            );
        }
        let listed = client
            .list_topics(ListTopicsRequest { reader: reader.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(listed.topics.is_empty());
        let entries = client
            .get_entries(GetEntriesRequest {
                topic: "board".into(),
                reader: member.did().to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(entries.entries[0].entry.as_ref().unwrap().payload, b"minutes");
        let err = client.publish(signed(sign_entry(&outsider, "board", 1, b"let me in", 1024, 1))).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        net.nodes[0].stop("gossip", Duration::from_secs(10)).await.unwrap();
        net.nodes[0].start("gossip").await.unwrap();
        net.nodes[0].wait_healthy("gossip", Duration::from_secs(20)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_publish_loses_no_acknowledged_entry() {
    let mut net = Network::builder(1).services(&["gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let mut client = gossip(&net.nodes[0]).await;
    create(&mut client, "log", public()).await;
    let publisher = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0..100_000u32 {
            match client.publish(payload("log", &i.to_be_bytes())).await {
                Ok(r) => acknowledged.push(r.into_inner().entry.unwrap().entry.unwrap().seq),
                Err(_) => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    net.nodes[0].kill("gossip").await.unwrap();
    let acknowledged = publisher.await.unwrap();
    assert!(acknowledged.len() > 10, "{} acknowledged before the kill", acknowledged.len());
    net.nodes[0].start("gossip").await.unwrap();
    net.nodes[0].wait_healthy("gossip", Duration::from_secs(20)).await.unwrap();
    let mut client = gossip(&net.nodes[0]).await;
    let vv = client
        .get_version_vector(GetVersionVectorRequest { topic: "log".into(), reader: String::new() })
        .await
        .unwrap()
        .into_inner();
    let head = vv.vector.unwrap().heads[net.nodes[0].did().as_str()];
    assert!(head >= *acknowledged.last().unwrap(), "head {head} below the last acknowledged seq");
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .get_entries(GetEntriesRequest {
                topic: "log".into(),
                page: Some(PageRequest { limit: 1000, cursor }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.entries.iter().map(|s| s.entry.as_ref().unwrap().seq));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(seen, (1..=head).collect::<Vec<u64>>(), "every stored entry, in order, no gap");
    // Publishing continues from the head: no sequence is reused.
    let next = client.publish(payload("log", b"after")).await.unwrap().into_inner();
    assert_eq!(next.entry.unwrap().entry.unwrap().seq, head + 1);
}

async fn export(client: &mut GossipClient<Channel>) -> Vec<SnapshotChunk> {
    let mut stream = client.export_snapshot(ExportSnapshotRequest::default()).await.unwrap().into_inner();
    let mut chunks = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        chunks.push(c);
    }
    chunks
}

async fn entry_count(client: &mut GossipClient<Channel>, topic: &str) -> usize {
    client
        .get_entries(GetEntriesRequest { topic: topic.into(), ..Default::default() })
        .await
        .map(|r| r.into_inner().entries.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_restores_on_another_node_and_a_damaged_one_changes_nothing() {
    let net = Network::builder(2).services(&["gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let mut g1 = gossip(n1).await;
    create(&mut g1, "notes", public()).await;
    create(&mut g1, "secret", acl::Rule::Participants(acl::Participants { dids: vec![n1.did().to_string()] })).await;
    for i in 0..3 {
        g1.publish(payload("notes", format!("note {i}").as_bytes())).await.unwrap();
    }
    g1.publish(payload("secret", b"only node 1 may hold this")).await.unwrap();
    let chunks = export(&mut g1).await;
    assert!(
        matches!(chunks.first().unwrap().part, Some(snapshot_chunk::Part::Header(ref h)) if h.format_version == 1 && h.entries == 4)
    );

    let mut g2 = gossip(n2).await;
    let restorer = g2.clone();
    let restore = |chunks: Vec<SnapshotChunk>| {
        let mut client = restorer.clone();
        async move { client.restore_snapshot(futures::stream::iter(chunks)).await }
    };
    // Damaged, wrong version, cut short: each refused with its reason, nothing changed.
    let mut flipped = chunks.clone();
    if let Some(snapshot_chunk::Part::Data(d)) = &mut flipped[1].part {
        d[10] ^= 0xff;
    }
    let mut versioned = chunks.clone();
    if let Some(snapshot_chunk::Part::Header(h)) = &mut versioned[0].part {
        h.format_version = 99;
    }
    let cut = chunks[..chunks.len() - 1].to_vec();
    for (bad, code, needle) in [
        (flipped, Code::DataLoss, "checksum"),
        (versioned, Code::FailedPrecondition, "format version 99"),
        (cut, Code::DataLoss, "without its trailer"),
    ] {
        let err = restore(bad).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle) && err.message().contains("nothing was changed"), "{}", err.message());
        assert_eq!(entry_count(&mut g2, "notes").await, 0);
    }
    assert_eq!(
        n2.metric("gossip", "icn_gossip_snapshot_operations_total{kind=\"restore\",result=\"refused\"}").await.unwrap(),
        3.0
    );

    let done = restore(chunks.clone()).await.unwrap().into_inner();
    assert_eq!((done.topics_restored, done.entries_restored), (1, 3), "the private topic is not node 2's to hold");
    assert_eq!(done.entries_rejected, 0, "the private topic's entry is skipped with its topic, not refused");
    assert_eq!(entry_count(&mut g2, "notes").await, 3);
    let err = g2.get_topic(GetTopicRequest { name: "secret".into(), reader: String::new() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let again = restore(chunks).await.unwrap().into_inner();
    assert_eq!((again.entries_restored, again.entries_present), (0, 3), "restoring twice changes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_resumes_by_position_or_version_vector_without_gaps_or_repeats() {
    let net = Network::builder(1).services(&["gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let mut client = gossip(&net.nodes[0]).await;
    create(&mut client, "feed", public()).await;
    let member = NodeIdentity::generate();
    for i in 1..=4u64 {
        client.publish(payload("feed", format!("node {i}").as_bytes())).await.unwrap();
        client
            .publish(signed(sign_entry(&member, "feed", i, format!("member {i}").as_bytes(), 1024, 1)))
            .await
            .unwrap();
    }
    let subscribe = |start| SubscribeRequest { topic: "feed".into(), reader: String::new(), start: Some(start) };
    let take = |mut stream: tonic::Streaming<StoredEntry>, n: usize| async move {
        let mut got = Vec::new();
        for _ in 0..n {
            got.push(tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap().unwrap());
        }
        got
    };
    // A first session reads three entries and goes away.
    let first =
        take(client.subscribe(subscribe(subscribe_request::Start::AfterPosition(0))).await.unwrap().into_inner(), 3)
            .await;
    let last_seen = first.last().unwrap().position;
    // It resumes from the last position it saw: the rest, once each.
    let rest = take(
        client.subscribe(subscribe(subscribe_request::Start::AfterPosition(last_seen))).await.unwrap().into_inner(),
        5,
    )
    .await;
    let positions: Vec<u64> = first.iter().chain(&rest).map(|s| s.position).collect();
    assert_eq!(positions, (1..=8).collect::<Vec<_>>());

    // By version vector: "I hold node's 1..=3 and member's 1..=1" yields exactly the rest.
    let heads = [(net.nodes[0].did().to_string(), 3u64), (member.did().to_string(), 1)].into_iter().collect();
    let missing = take(
        client
            .subscribe(subscribe(subscribe_request::Start::AfterVector(VersionVector { heads })))
            .await
            .unwrap()
            .into_inner(),
        4,
    )
    .await;
    let mut keys: Vec<(String, u64)> =
        missing.iter().map(|s| s.entry.as_ref().map(|e| (e.author.clone(), e.seq)).unwrap()).collect();
    keys.sort();
    let mut want = vec![(net.nodes[0].did().to_string(), 4)];
    want.extend((2..=4).map(|seq| (member.did().to_string(), seq)));
    want.sort();
    assert_eq!(keys, want);
}

/// The snapshot `chunks` with its records changed by `edit`, sealed again as an honest
/// export would be (one data chunk, counts and checksum recomputed): what a node with a
/// tampered store, or an attacker who knows the format, would hand over.
fn resealed(chunks: &[SnapshotChunk], edit: impl FnOnce(&mut Vec<SnapshotRecord>)) -> Vec<SnapshotChunk> {
    use prost::Message;
    use sha2::{Digest, Sha256};
    let mut records = Vec::new();
    for chunk in chunks {
        if let Some(snapshot_chunk::Part::Data(d)) = &chunk.part {
            let mut buf = d.as_slice();
            while !buf.is_empty() {
                records.push(SnapshotRecord::decode_length_delimited(&mut buf).unwrap());
            }
        }
    }
    edit(&mut records);
    let mut data = Vec::new();
    for r in &records {
        r.encode_length_delimited(&mut data).unwrap();
    }
    let trailer = SnapshotTrailer { chunks: 1, data_bytes: data.len() as u64, sha256: Sha256::digest(&data).to_vec() };
    vec![
        chunks[0].clone(),
        SnapshotChunk { index: 1, part: Some(snapshot_chunk::Part::Data(data)) },
        SnapshotChunk { index: 2, part: Some(snapshot_chunk::Part::Trailer(trailer)) },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_snapshot_with_a_tampered_entry_counts_it_rejected_and_holds_only_the_genuine_ones() {
    let net = Network::builder(2).services(&["gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let mut g1 = gossip(&net.nodes[0]).await;
    create(&mut g1, "notes", public()).await;
    for i in 0..3 {
        g1.publish(payload("notes", format!("note {i}").as_bytes())).await.unwrap();
    }
    // The newest entry is altered after signing: its checksum is sealed again, its
    // signature cannot be. (Altering an older one would leave the later ones held
    // behind the gap it leaves, not refused.)
    let tampered = resealed(&export(&mut g1).await, |records| {
        let last = records
            .iter_mut()
            .rev()
            .find_map(|r| match &mut r.item {
                Some(snapshot_record::Item::Entry(e)) => Some(e),
                _ => None,
            })
            .unwrap();
        assert_eq!(last.seq, 3);
        last.payload = b"note 2, edited".to_vec();
    });

    let mut g2 = gossip(&net.nodes[1]).await;
    let done = g2.restore_snapshot(futures::stream::iter(tampered)).await.unwrap().into_inner();
    assert_eq!((done.topics_restored, done.entries_restored, done.entries_rejected), (1, 2, 1));
    let held = g2.get_entries(GetEntriesRequest { topic: "notes".into(), ..Default::default() }).await.unwrap();
    let payloads: Vec<String> = held
        .into_inner()
        .entries
        .into_iter()
        .map(|s| String::from_utf8_lossy(&s.entry.unwrap().payload).into_owned())
        .collect();
    assert_eq!(payloads, ["note 0", "note 1"], "the genuine entries, and not the edited one");
    let vv = g2
        .get_version_vector(GetVersionVectorRequest { topic: "notes".into(), reader: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vv.vector.unwrap().heads[net.nodes[0].did().as_str()], 2);
}

async fn topic_stats(client: &mut GossipClient<Channel>, topic: &str) -> TopicStats {
    let stats = client.stats(StatsRequest { topics: vec![topic.into()] }).await.unwrap().into_inner();
    stats.topics.into_iter().find(|t| t.topic == topic).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_stats_count_each_topics_open_streams_and_tell_when_its_last_entry_arrived_also_after_a_restart() {
    let mut net = Network::builder(1).services(&["gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    let mut client = gossip(&net.nodes[0]).await;
    create(&mut client, "busy", public()).await;
    create(&mut client, "quiet", public()).await;
    let follow = |topic: &str| SubscribeRequest { topic: topic.into(), reader: String::new(), start: None };
    let first = client.subscribe(follow("busy")).await.unwrap().into_inner();
    let _second = client.subscribe(follow("busy")).await.unwrap().into_inner();
    assert_eq!(topic_stats(&mut client, "busy").await.local_subscribers, 2);
    assert_eq!(topic_stats(&mut client, "quiet").await.local_subscribers, 0);
    // A client that goes away stops counting once its feed notices.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while topic_stats(&mut client, "busy").await.local_subscribers != 1 {
        assert!(std::time::Instant::now() < deadline, "a closed stream still counts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(topic_stats(&mut client, "busy").await.last_entry_at_ms, 0, "nothing stored yet");
    let before = icn_runtime::now_ms();
    client.publish(payload("busy", b"one")).await.unwrap();
    client.publish(payload("busy", b"two")).await.unwrap();
    let after = icn_runtime::now_ms();
    let stats = topic_stats(&mut client, "busy").await;
    assert!(
        (before..=after).contains(&stats.last_entry_at_ms),
        "{} outside {before}..={after}",
        stats.last_entry_at_ms
    );
    let newest = client
        .get_entries(GetEntriesRequest { topic: "busy".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries
        .pop()
        .unwrap();
    assert_eq!(stats.last_entry_at_ms, newest.received_at_ms, "the newest entry's arrival");
    assert_eq!(topic_stats(&mut client, "quiet").await.last_entry_at_ms, 0);
    let got = client.get_topic(GetTopicRequest { name: "busy".into(), reader: String::new() }).await.unwrap();
    assert_eq!(got.into_inner().stats.unwrap(), stats, "GetTopic tells the same");

    // After a restart the time is read back from the store; the streams are gone.
    net.nodes[0].stop("gossip", Duration::from_secs(10)).await.unwrap();
    net.nodes[0].start("gossip").await.unwrap();
    net.nodes[0].wait_healthy("gossip", Duration::from_secs(20)).await.unwrap();
    let mut client = gossip(&net.nodes[0]).await;
    let restarted = topic_stats(&mut client, "busy").await;
    assert_eq!((restarted.last_entry_at_ms, restarted.local_subscribers), (stats.last_entry_at_ms, 0));
}

/// A new topic signed by `creator`, as anyone with a key can make one.
fn signed_topic(creator: &NodeIdentity, name: &str) -> CreateTopicRequest {
    let topic = Topic {
        name: name.into(),
        acl: Some(Acl { rule: Some(public()) }),
        scope: TopicScope::Network as i32,
        created_at_ms: 1,
        revision: 1,
        ..Default::default()
    };
    CreateTopicRequest {
        signing: Some(create_topic_request::Signing::Signed(icn_gossip_records::sign_topic(creator, topic))),
    }
}

async fn topic_count(client: &mut GossipClient<Channel>) -> usize {
    let page = Some(PageRequest { limit: 1000, cursor: String::new() });
    client.list_topics(ListTopicsRequest { page, reader: String::new() }).await.unwrap().into_inner().topics.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_flooded_by_an_outsider_through_a_peer_or_the_api_stop_at_their_bounds() {
    // Node 1 takes 6 topics, 3 per creator; node 2 keeps the defaults.
    let net = Network::builder(2)
        .services(&["netd", "gossip"])
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "200ms")
        .node_env(0, "ICN__TOPICS__MAX_TOPICS", "6")
        .node_env(0, "ICN__TOPICS__MAX_TOPICS_PER_CREATOR", "3")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let (mut c1, mut c2) = (gossip(n1).await, gossip(n2).await);
    // Mallory creates five topics at node 2, whose anti-entropy announces them to node 1.
    let mallory = NodeIdentity::generate();
    for i in 0..5 {
        c2.create_topic(signed_topic(&mallory, &format!("junk-{i}"))).await.unwrap();
    }
    let refused = |bound: &str| format!("icn_gossip_topics_refused_total{{bound=\"{bound}\"}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while n1.metric("gossip", &refused("per_creator")).await.unwrap() < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "node 1 never refused Mallory's fourth topic");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(topic_count(&mut c1).await, 3, "node 1 holds three of Mallory's topics, not five");
    assert_eq!(topic_count(&mut c2).await, 5);
    // At the API too, with the bound named; node 1's own topic still fits.
    let status = c1.create_topic(signed_topic(&mallory, "junk-9")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("topics.max_topics_per_creator"), "{status:?}");
    create(&mut c1, "news", public()).await;
    // A second outsider fills the rest; the node-wide bound stops the third of its topics.
    let trudy = NodeIdentity::generate();
    for i in 0..2 {
        c1.create_topic(signed_topic(&trudy, &format!("more-{i}"))).await.unwrap();
    }
    let status = c1.create_topic(signed_topic(&trudy, "more-2")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("topics.max_topics = 6"), "{status:?}");
    assert!(n1.metric("gossip", &refused("total")).await.unwrap() >= 1.0);
    // Nothing held is lost, and the node serves its topics: a new revision of a held
    // topic is still taken, and publishing works.
    assert_eq!(topic_count(&mut c1).await, 6);
    let r = c1.publish(payload("news", b"still serving")).await.unwrap().into_inner();
    assert_eq!(r.entry.unwrap().position, 1);
}

/// An entry as a later release would sign it: format 1, which this release does not know.
fn later_format(author: &NodeIdentity) -> Entry {
    let mut entry = sign_entry(author, "t", 2, b"from a later release", 1024, 1);
    entry.format = 1;
    entry.signature = Vec::new();
    let digest = icn_gossip_records::entry_digest(&entry);
    entry.hash = digest.to_vec();
    entry.signature = author.sign_for(icn_identity::Purpose::GossipEntry, &digest).to_bytes().to_vec();
    entry
}
