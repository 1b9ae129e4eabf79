//! The trust model attacked from outside (issue #11, docs/SECURITY.md): an outsider with
//! nothing but a key of its own and a gateway login tries to take over a cooperative,
//! or to squat the gossip topic a cooperative replicates on, against real processes.
//! Each attack must fail on every node, and the nodes must go on serving the members.

use icn_identity::NodeIdentity;
use icn_ledger_records::sign;
use icn_proto::gossip::v1::{
    acl, create_topic_request, update_topic_acl_request, Acl, CreateTopicRequest, Topic, TopicScope,
    UpdateTopicAclRequest,
};
use icn_proto::ledger::v1::*;
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerBatch, LedgerEntry};
use icn_testkit::ledger::{TestCoop, CURRENCY};
use icn_testkit::Network;
use prost::Message;
use std::time::Duration;
use tonic::Code;

const SERVICES: &[&str] = &["netd", "gossip", "ledger", "gateway"];

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsider_cannot_take_over_a_cooperative_by_publishing_a_backdated_founding_record() {
    let net = Network::builder(2)
        .services(SERVICES)
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .env("ICN__CREDIT__DISCOVER_INTERVAL", "200ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let mut ledger1 = n1.ledger().await.unwrap();
    let mut ledger2 = n2.ledger().await.unwrap();
    let coop = TestCoop::create(&mut ledger1, "bakery", 1, 1_000).await.unwrap();
    let member = &coop.members[0];
    let genesis = ledger1.get_coop(GetCoopRequest { coop_id: coop.id.clone() }).await.unwrap().into_inner();
    let genesis = genesis.coop.unwrap();
    // Node 2 holds the cooperative (and its topic) before the attack.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ledger2
        .get_coop(GetCoopRequest { coop_id: coop.id.clone() })
        .await
        .map(|r| r.into_inner().currencies.len())
        .ok()
        != Some(1)
    {
        assert!(tokio::time::Instant::now() < deadline, "node 2 never learnt the cooperative");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Mallory: a key and a login at node 2's gateway, nothing else. She signs what took
    // over a cooperative before ids were bound: the same id, founded earlier, by her;
    // her own admission as an admin; a currency of her own; and a payment to herself.
    let mallory = NodeIdentity::generate();
    let rival = sign(&mallory, Coop { created_at_ms: 1, signature: Vec::new(), ..genesis.clone() });
    let admission = sign(
        &mallory,
        MemberAdmission {
            coop_id: coop.id.clone(),
            member: mallory.did().to_string(),
            role: MemberRole::Admin as i32,
            created_at_ms: 2,
            ..Default::default()
        },
    );
    let currency = sign(
        &mallory,
        Currency {
            coop_id: coop.id.clone(),
            symbol: CURRENCY.into(),
            decimals: 2,
            default_credit_limit: 1 << 40,
            created_at_ms: 2,
            ..Default::default()
        },
    );
    let batch = LedgerBatch {
        entries: [Body::Coop(rival), Body::Admission(admission), Body::Currency(currency)]
            .into_iter()
            .map(|b| LedgerEntry { body: Some(b) })
            .collect(),
    };
    let topic = icn_ledger_records::coop::topic(&coop.id);
    let entry =
        icn_gossip_records::sign_entry(&mallory, &topic, 1, &batch.encode_to_vec(), usize::MAX, icn_runtime::now_ms());
    let token = icn_testkit::gateway::login(&http(), &n2.http_url(), &mallory, &[]).await.unwrap();
    let body = serde_json::to_value(icn_proto::gossip::v1::PublishRequest {
        signing: Some(icn_proto::gossip::v1::publish_request::Signing::Signed(entry)),
    })
    .unwrap();
    let r = http().post(format!("{}/v1/entries", n2.http_url())).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "gossip carries the entry: it is well formed and signed");

    // Both ledgers read the entry from their topic and refuse the rival founding record.
    let refused = "icn_ledger_peer_entries_refused_total";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for node in [n1, n2] {
        while node.metric("ledger", refused).await.unwrap() < 1.0 {
            assert!(tokio::time::Instant::now() < deadline, "{}: the rival record never reached the ledger", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Every node still has the real founder, the real members and the real currency.
    for ledger in [&mut ledger1, &mut ledger2] {
        let held = ledger.get_coop(GetCoopRequest { coop_id: coop.id.clone() }).await.unwrap().into_inner();
        assert_eq!(held.coop.as_ref(), Some(&genesis), "the founding record in force");
        let mut members: Vec<String> = held.members.iter().map(|m| m.did.clone()).collect();
        members.sort();
        let mut expected = vec![coop.founder.did().to_string(), member.did().to_string()];
        expected.sort();
        assert_eq!(members, expected, "Mallory's self-admission counts for nothing");
        assert_eq!(held.currencies.len(), 1);
        assert_eq!(held.currencies[0].signer, coop.founder.did().as_str(), "the founder's currency, not Mallory's");
        assert_eq!(held.currencies[0].default_credit_limit, coop.limit);
    }

    // Mallory cannot pay from her "admin" account; the member still can, on both nodes.
    // (Her account cannot even be read: she builds her first transfer blind.)
    let payment = icn_ledger_records::Payment {
        coop_id: &coop.id,
        currency: CURRENCY,
        payee: member.did().as_str(),
        amount: 100,
        memo: "mine now",
        idempotency_id: "",
    };
    let t = icn_ledger_records::next_transfer(&mallory, &Account::default(), &payment, icn_runtime::now_ms());
    let status = ledger2.submit_transfer(SubmitTransferRequest { transfer: Some(t) }).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("NOT_A_MEMBER"), "{status:?}");
    let paid = coop.pay(&mut ledger2, member, &coop.founder, 250).await.unwrap();
    assert_eq!(paid.status, TransferStatus::Applied as i32, "{paid:?}");

    // Through the API, the rival founding record is refused at once, naming the rule.
    let rival = sign(&mallory, Coop { created_at_ms: 1, signature: Vec::new(), ..genesis.clone() });
    let status = ledger2.create_coop(CreateCoopRequest { coop: Some(rival), admissions: vec![] }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("not bound to this founding record"), "{status:?}");
    // So is one that names no binding at all, the form every id had before.
    let bare = sign(&mallory, Coop { id: "bakery".into(), name: "B".into(), created_at_ms: 1, ..Default::default() });
    let status = ledger2.create_coop(CreateCoopRequest { coop: Some(bare), admissions: vec![] }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsider_cannot_squat_a_cooperatives_topic_with_other_settings() {
    let net = Network::builder(2)
        .services(SERVICES)
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .env("ICN__CREDIT__DISCOVER_INTERVAL", "200ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    // Mallory knows the id a founder is about to use (she saw the record early, or
    // guesses a label's id before any is bound: it does not matter which) and announces
    // its topic first, through gossip's API, with settings that would stop replication.
    let founder = NodeIdentity::generate();
    let genesis = icn_ledger_records::coop::found(&founder, "dairy", "The Dairy", icn_runtime::now_ms()).unwrap();
    let name = icn_ledger_records::coop::topic(&genesis.id);
    let mallory = NodeIdentity::generate();
    let public = Acl { rule: Some(acl::Rule::Public(acl::Public {})) };
    let pinned = Topic {
        name: name.clone(),
        acl: Some(public.clone()),
        max_entries: u64::MAX,
        scope: TopicScope::Network as i32,
        created_at_ms: 1,
        revision: 1,
        ..Default::default()
    };
    let squats = [
        Topic { max_entries: 1, ..pinned.clone() },
        Topic { scope: TopicScope::Local as i32, ..pinned.clone() },
        Topic {
            acl: Some(Acl {
                rule: Some(acl::Rule::Participants(acl::Participants { dids: vec![mallory.did().to_string()] })),
            }),
            ..pinned.clone()
        },
    ];
    let mut gossip2 = n2.gossip().await.unwrap();
    for squat in squats {
        let signed = icn_gossip_records::sign_topic(&mallory, squat);
        let status = gossip2
            .create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Signed(signed)) })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("RESERVED_TOPIC"), "{status:?}");
    }
    assert_eq!(
        n2.metric("gossip", "icn_gossip_rejections_total{reason=\"REJECTION_REASON_RESERVED_TOPIC\"}").await.unwrap(),
        3.0
    );
    // With the pinned settings her copy is the same topic as anyone's; an "ACL update"
    // of it (a revision 2) is refused: a reserved topic never changes.
    let hers = icn_gossip_records::sign_topic(&mallory, pinned.clone());
    gossip2
        .create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Signed(hers)) })
        .await
        .unwrap();
    let closed = Topic {
        acl: Some(Acl { rule: Some(acl::Rule::Participants(acl::Participants { dids: vec![] })) }),
        revision: 2,
        ..pinned.clone()
    };
    let closed = icn_gossip_records::sign_topic(&mallory, closed);
    let status = gossip2
        .update_topic_acl(UpdateTopicAclRequest { signing: Some(update_topic_acl_request::Signing::Signed(closed)) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A reserved prefix no service has opened yet is no one's.
    let compute = Topic { name: "compute/jobs".into(), ..pinned.clone() };
    let compute = icn_gossip_records::sign_topic(&mallory, compute);
    let status = gossip2
        .create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Signed(compute)) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // The founder founds the cooperative on node 1 all the same, and node 2 (which holds
    // Mallory's copy of the topic) replicates it: a member's payment reaches it.
    let mut ledger1 = n1.ledger().await.unwrap();
    let mut ledger2 = n2.ledger().await.unwrap();
    let member = NodeIdentity::generate();
    let admission = sign(
        &founder,
        MemberAdmission {
            coop_id: genesis.id.clone(),
            member: member.did().to_string(),
            role: MemberRole::Member as i32,
            created_at_ms: genesis.created_at_ms,
            ..Default::default()
        },
    );
    ledger1.create_coop(CreateCoopRequest { coop: Some(genesis.clone()), admissions: vec![admission] }).await.unwrap();
    let currency = sign(
        &founder,
        Currency {
            coop_id: genesis.id.clone(),
            symbol: CURRENCY.into(),
            decimals: 2,
            default_credit_limit: 1_000,
            created_at_ms: genesis.created_at_ms,
            ..Default::default()
        },
    );
    ledger1.create_currency(CreateCurrencyRequest { currency: Some(currency) }).await.unwrap();
    let coop = TestCoop { id: genesis.id.clone(), founder, members: vec![member], limit: 1_000 };
    let paid = coop.pay(&mut ledger1, &coop.members[0], &coop.founder, 125).await.unwrap();
    assert_eq!(paid.status, TransferStatus::Applied as i32, "{paid:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let account = coop.account(&mut ledger2, &coop.founder).await;
        if matches!(&account, Ok(a) if a.balance == 125) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 2 never replicated the payment: {account:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let topic = gossip2
        .get_topic(icn_proto::gossip::v1::GetTopicRequest { name, reader: String::new() })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    assert_eq!((topic.max_entries, topic.scope, topic.acl), (u64::MAX, TopicScope::Network as i32, Some(public)));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_face_refuses_oversized_bodies_and_never_hangs_on_a_stuck_backend() {
    let net = Network::builder(1)
        .bootstrap(icn_testkit::Bootstrap::None)
        .services(SERVICES)
        .env("ICN__API__MAX_BODY_BYTES", "65536")
        .env("ICN__API__REQUEST_TIMEOUT", "1s")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let mut grpc = icn_proto::gateway::v1::gateway_client::GatewayClient::new(node.channel("gateway").await.unwrap());
    // An outsider's 100 KiB body is refused before it is decoded, without a token even.
    let mallory = NodeIdentity::generate();
    let entry = icn_gossip_records::sign_entry(&mallory, "news", 1, &vec![0; 100 * 1024], usize::MAX, 1);
    let big = icn_proto::gossip::v1::PublishRequest {
        signing: Some(icn_proto::gossip::v1::publish_request::Signing::Signed(entry)),
    };
    let status = grpc.publish(big).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    // A ledger that stops answering (SIGSTOP: its socket accepts, nothing replies) holds
    // no caller beyond `api.request_timeout`.
    node.signal("ledger", libc::SIGSTOP).unwrap();
    // The stop takes effect when the kernel next schedules the process: wait for it.
    let stat = format!("/proc/{}/stat", node.pid("ledger").unwrap());
    while std::fs::read_to_string(&stat).unwrap().split(' ').nth(2).is_none_or(|state| state != "T") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    let status = grpc.coop_stats(CoopStatsRequest { coop_id: "bakery".into() }).await.unwrap_err();
    let waited = started.elapsed();
    node.signal("ledger", libc::SIGCONT).unwrap();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    // Once the ledger answers again, so does the gateway.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match grpc.coop_stats(CoopStatsRequest { coop_id: "bakery".into() }).await {
            Err(s) if s.code() == Code::NotFound => break,
            other => assert!(tokio::time::Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_event_stream_ends_when_its_token_is_revoked_or_expires() {
    let net = Network::builder(1)
        .bootstrap(icn_testkit::Bootstrap::None)
        .services(SERVICES)
        .env("ICN__API__STREAM_RECHECK", "300ms")
        .env("ICN__API__TOKEN_TTL", "4s")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let member = NodeIdentity::generate();
    // Over SSE: the member revokes the token (as after losing a device) while a stream
    // opened with it is live. The stream says why and ends.
    let token = icn_testkit::gateway::login(&http(), &node.http_url(), &member, &[]).await.unwrap();
    let mut sse = http().get(format!("{}/v1/events", node.http_url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    let r = http()
        .post(format!("{}/v1/auth/revoke", node.http_url()))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut text = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = sse.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end after the revocation: {text}");
    assert!(text.contains("event: error") && text.contains("TOKEN_REVOKED"), "{text}");

    // Over gRPC: a token that expires ends its stream with UNAUTHENTICATED at expiry,
    // even when no event comes.
    let token = icn_testkit::gateway::login(&http(), &node.http_url(), &member, &[]).await.unwrap();
    let mut grpc = icn_proto::gateway::v1::gateway_client::GatewayClient::new(node.channel("gateway").await.unwrap());
    let mut request = tonic::Request::new(icn_proto::gateway::v1::EventsRequest::default());
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut stream = grpc.events(request).await.unwrap().into_inner();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends within the token's life and a recheck");
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
}

/// Reads an event stream until `until` appears in it (or fails after 15 s); returns all
/// it carried.
async fn read_until(response: &mut reqwest::Response, until: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.contains(until) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the stream ended or stalled ({other:?}) before `{until}`; it carried: {seen}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_sees_balances_but_not_other_members_transfers_on_any_path() {
    let net = Network::builder(1)
        .bootstrap(icn_testkit::Bootstrap::None)
        .services(SERVICES)
        .env("ICN__API__POLL_INTERVAL", "200ms")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let mut ledger = node.ledger().await.unwrap();
    let coop = TestCoop::create(&mut ledger, "private", 2, 1_000).await.unwrap();
    let (a, b) = (&coop.members[0], &coop.members[1]);
    node.create_public_topic("square").await.unwrap();
    let url = node.http_url();
    let a_token = icn_testkit::gateway::login(&http(), &url, a, &[]).await.unwrap();
    let admin_token = icn_testkit::gateway::login(&http(), &url, &coop.founder, &[]).await.unwrap();
    // Both follow events once the gateway follows the topics.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let events = |token: String| {
        let url = format!("{}/v1/events?kinds=gossip_entry,transfer", node.http_url());
        async move { http().get(url).bearer_auth(token).send().await.unwrap() }
    };
    let (mut a_events, mut admin_events) = (events(a_token.clone()).await, events(admin_token.clone()).await);
    // B pays the founder: A is no party to it.
    let paid = coop.pay(&mut ledger, b, &coop.founder, 321).await.unwrap();
    assert_eq!(paid.status, TransferStatus::Applied as i32);
    let ledger_topic = icn_ledger_records::coop::topic(&coop.id);
    // The admin sees the ledger entry that carries it (so the event exists)...
    read_until(&mut admin_events, &ledger_topic).await;
    // ...then A publishes on a public topic; A's stream, in the hub's order, reaches that
    // entry without having carried the ledger's entry or B's transfer.
    let entry = icn_gossip_records::sign_entry(a, "square", 1, b"hello square", usize::MAX, icn_runtime::now_ms());
    let body = serde_json::to_value(icn_proto::gossip::v1::PublishRequest {
        signing: Some(icn_proto::gossip::v1::publish_request::Signing::Signed(entry)),
    })
    .unwrap();
    let r =
        http().post(format!("{}/v1/entries", node.http_url())).bearer_auth(&a_token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let seen = read_until(&mut a_events, "\"topic\":\"square\"").await;
    assert!(!seen.contains(&ledger_topic), "A's stream carried the cooperative's raw ledger entries: {seen}");
    assert!(!seen.contains(b.did().as_str()), "A's stream carried B's transfer: {seen}");
    // Nor are they readable by request: the topic is NOT_FOUND to A, B's history refused.
    let r = http()
        .get(format!("{}/v1/entries?topic={ledger_topic}", node.http_url()))
        .bearer_auth(&a_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Balances are shared among members (mutual credit: everyone extends credit to
    // everyone, so positions are visible): A reads B's.
    let r = http()
        .get(format!("{}/v1/coops/{}/accounts/hours/{}", node.http_url(), coop.id, b.did()))
        .bearer_auth(&a_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["account"]["balance"], "-321", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsiders_junk_transfers_are_not_held_and_one_comes_back_when_its_payer_is_admitted() {
    let net = Network::builder(2)
        .services(SERVICES)
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .env("ICN__CREDIT__DISCOVER_INTERVAL", "200ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let mut ledger1 = n1.ledger().await.unwrap();
    let mut ledger2 = n2.ledger().await.unwrap();
    let coop = TestCoop::create(&mut ledger1, "flooded", 1, 1_000).await.unwrap();
    let member = &coop.members[0];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ledger2
        .get_coop(GetCoopRequest { coop_id: coop.id.clone() })
        .await
        .map(|r| r.into_inner().currencies.len())
        .ok()
        != Some(1)
    {
        assert!(tokio::time::Instant::now() < deadline, "node 2 never learnt the cooperative");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Mallory signs 200 transfers from 200 fresh keys to a member and publishes them on
    // the cooperative's topic through node 2's gateway. Before, every node held all of
    // them as pending, for ever.
    let keys: Vec<NodeIdentity> = (0..200).map(|_| NodeIdentity::generate()).collect();
    let payment = icn_ledger_records::Payment {
        coop_id: &coop.id,
        currency: CURRENCY,
        payee: member.did().as_str(),
        amount: 7,
        memo: "junk",
        idempotency_id: "",
    };
    let now = icn_runtime::now_ms();
    let junk: Vec<Transfer> =
        keys.iter().map(|k| icn_ledger_records::next_transfer(k, &Account::default(), &payment, now)).collect();
    let batch =
        LedgerBatch { entries: junk.iter().map(|t| LedgerEntry { body: Some(Body::Transfer(t.clone())) }).collect() };
    let mallory = NodeIdentity::generate();
    let topic = icn_ledger_records::coop::topic(&coop.id);
    let entry = icn_gossip_records::sign_entry(&mallory, &topic, 1, &batch.encode_to_vec(), 1024, now);
    let token = icn_testkit::gateway::login(&http(), &n2.http_url(), &mallory, &[]).await.unwrap();
    let body = serde_json::to_value(icn_proto::gossip::v1::PublishRequest {
        signing: Some(icn_proto::gossip::v1::publish_request::Signing::Signed(entry)),
    })
    .unwrap();
    let r = http().post(format!("{}/v1/entries", n2.http_url())).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Both nodes read them and hold none: evicted, counted, nothing pending.
    let evicted = "icn_ledger_transfers_evicted_total{waits_for=\"rules\"}";
    for node in [n1, n2] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while node.metric("ledger", evicted).await.unwrap() < 200.0 {
            assert!(tokio::time::Instant::now() < deadline, "{}: the junk was never read", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for ledger in [&mut ledger1, &mut ledger2] {
        let stats = coop.stats(ledger).await.unwrap();
        assert_eq!(stats.currencies[0].pending_transfers, 0, "{stats:?}");
        let t = ledger
            .get_transfer(GetTransferRequest {
                key: Some(get_transfer_request::Key::Hash(icn_ledger_records::hash(&junk[0]).to_vec())),
            })
            .await;
        assert_eq!(t.unwrap_err().code(), Code::NotFound, "not stored");
    }
    // The founder admits one of those keys on node 1, as of when it signed (membership
    // counts at a transfer's time; an admission may be timed within
    // `credit.max_clock_skew` of the node's clock): every node reads the topic again and
    // that transfer, which was not lost, applies; the other 199 stay out.
    let admission = icn_ledger_records::sign(
        &coop.founder,
        MemberAdmission {
            coop_id: coop.id.clone(),
            member: keys[0].did().to_string(),
            role: MemberRole::Member as i32,
            created_at_ms: now,
            ..Default::default()
        },
    );
    ledger1.add_member(AddMemberRequest { admission: Some(admission) }).await.unwrap();
    let hash = icn_ledger_records::hash(&junk[0]).to_vec();
    for ledger in [&mut ledger1, &mut ledger2] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let request = GetTransferRequest { key: Some(get_transfer_request::Key::Hash(hash.clone())) };
            let status = ledger.get_transfer(request).await.map(|r| r.into_inner().record.unwrap().status);
            if matches!(status, Ok(s) if s == TransferStatus::Applied as i32) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the admitted payer's transfer never came back: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = coop.stats(ledger).await.unwrap();
        assert_eq!(stats.currencies[0].pending_transfers, 0, "the other 199 are still not held: {stats:?}");
    }
    assert_eq!(coop.account(&mut ledger2, member).await.unwrap().balance, 7);
}
