//! The gateway as members use it: real nodes (netd, gossip, ledger, gateway processes),
//! driven over HTTP with reqwest and over gRPC with tonic.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use icn_identity::NodeIdentity;
use icn_proto::gateway::v1::gateway_client::GatewayClient;
use icn_proto::ledger::v1 as ledger;
use icn_testkit::ledger::{TestCoop, CURRENCY};
use icn_testkit::{Bootstrap, Network, TestNode};
use serde_json::{json, Value};
use std::time::Duration;

const SERVICES: &[&str] = &["netd", "gossip", "ledger", "gateway"];

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// Logs `who` in through REST: challenge, signature, token.
async fn login(node: &TestNode, who: &NodeIdentity, scopes: &[&str]) -> String {
    icn_testkit::gateway::login(&http(), &node.http_url(), who, scopes).await.unwrap()
}

async fn get(node: &TestNode, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http().get(format!("{}{path}", node.http_url()));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post(node: &TestNode, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = http().post(format!("{}{path}", node.http_url())).json(body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn balance_of(v: &Value) -> i64 {
    // proto3 JSON: int64 travels as a string; zero is left out.
    v["account"]["balance"].as_str().map(|s| s.parse().unwrap()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_logs_in_pays_and_reads_balances_over_rest_and_grpc_and_sees_events_from_another_node() {
    let net = Network::builder(3)
        .services(SERVICES)
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .env("ICN__CREDIT__DISCOVER_INTERVAL", "200ms")
        .env("ICN__API__POLL_INTERVAL", "200ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let mut ledger1 = net.nodes[0].ledger().await.unwrap();
    let coop = TestCoop::create(&mut ledger1, "gw", 2, 1_000).await.unwrap();
    let (alice, bob) = (&coop.members[0], &coop.members[1]);
    let (n1, n3) = (&net.nodes[0], &net.nodes[2]);

    // Public: the cooperative's statistics need no token.
    let (status, stats) = get(n1, &format!("/v1/coops/{}/stats", coop.id), None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["members"], "3");

    let token = login(n1, alice, &[]).await;
    // Bob follows node 3's event stream before anything happens.
    let bob_token = login(n3, bob, &[]).await;
    let events = http()
        .get(format!("{}/v1/events?kinds=transfer,gossip_entry", n3.http_url()))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut events = events.bytes_stream();

    // Alice pays Bob through REST: her client builds and signs, the gateway forwards.
    let t = coop.next(&mut ledger1, alice, bob, 250, "through the gateway").await.unwrap();
    let body = serde_json::to_value(ledger::SubmitTransferRequest { transfer: Some(t.clone()) }).unwrap();
    let (status, r) = post(n1, "/v1/transfers", Some(&token), &body).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["record"]["status"], "TRANSFER_STATUS_APPLIED");
    let (status, me) = get(n1, &format!("/v1/coops/{}/accounts/hours/me", coop.id), Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(balance_of(&me), -250);
    // Bob reads his balance over gRPC on node 3, once the transfer has replicated.
    let mut grpc = GatewayClient::new(n3.channel("gateway").await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut request = tonic::Request::new(ledger::GetBalanceRequest {
            coop_id: coop.id.clone(),
            currency: CURRENCY.into(),
            member: String::new(),
        });
        request.metadata_mut().insert("authorization", format!("Bearer {bob_token}").parse().unwrap());
        // NOT_FOUND until node 3 has learnt the cooperative.
        let balance = grpc.get_balance(request).await.map(|r| r.into_inner().account.unwrap().balance);
        if matches!(balance, Ok(250)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bob's balance on node 3: {balance:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same transfer over gRPC, for its payer; someone else's token gets NOT_FOUND.
    let key = ledger::get_transfer_request::Key::Hash(icn_ledger_records::hash(&t).to_vec());
    let mut request = tonic::Request::new(ledger::GetTransferRequest { key: Some(key.clone()) });
    request.metadata_mut().insert("authorization", format!("Bearer {bob_token}").parse().unwrap());
    let record = grpc.get_transfer(request).await.unwrap().into_inner().record.unwrap();
    assert_eq!(record.status, ledger::TransferStatus::Applied as i32);
    let stranger = login(n3, &NodeIdentity::generate(), &[]).await;
    let mut request = tonic::Request::new(ledger::GetTransferRequest { key: Some(key) });
    request.metadata_mut().insert("authorization", format!("Bearer {stranger}").parse().unwrap());
    assert_eq!(grpc.get_transfer(request).await.unwrap_err().code(), tonic::Code::NotFound);
    // Someone else's transfer cannot be submitted in their name.
    let forged = coop.next(&mut ledger1, bob, alice, 1, "bob's, sent by alice").await.unwrap();
    let body = serde_json::to_value(ledger::SubmitTransferRequest { transfer: Some(forged) }).unwrap();
    let (status, r) = post(n1, "/v1/transfers", Some(&token), &body).await;
    assert_eq!((status, r["error"]["code"].as_str()), (403, Some("PERMISSION_DENIED")), "{r}");

    // An entry published on node 1 (signed by alice) appears in node 3's stream, as does
    // the transfer that touched bob.
    n1.create_public_topic("square").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let entry = sign_entry(alice, "square", 1, b"hello from node 1");
    let body = serde_json::to_value(icn_proto::gossip::v1::PublishRequest {
        signing: Some(icn_proto::gossip::v1::publish_request::Signing::Signed(entry)),
    })
    .unwrap();
    let (status, r) = post(n1, "/v1/entries", Some(&token), &body).await;
    assert_eq!(status, 200, "{r}");
    let (mut saw_entry, mut saw_transfer) = (false, false);
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    use futures::StreamExt;
    while !(saw_entry && saw_transfer) {
        let chunk = tokio::time::timeout_at(deadline, events.next()).await.expect("events arrive").unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        saw_entry = text.contains("event: gossip_entry") && text.contains(&B64.encode(b"hello from node 1"));
        saw_transfer = text.contains("event: transfer") && text.contains(bob.did().as_str());
    }
    assert!(text.contains("\nid: ") || text.starts_with("id: "), "events carry ids to resume from: {text}");
}

/// An entry signed by `author`, as a member's client signs it (uncompressed).
fn sign_entry(author: &NodeIdentity, topic: &str, seq: u64, payload: &[u8]) -> icn_proto::gossip::v1::Entry {
    icn_gossip_records::sign_entry(author, topic, seq, payload, usize::MAX, icn_runtime::now_ms())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_forged_revoked_expired_and_under_scoped_tokens_are_refused_with_their_reason() {
    let mut net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(SERVICES)
        .env("ICN__API__TOKEN_TTL", "2s")
        .start()
        .await
        .unwrap();
    let node = &mut net.nodes[0];
    let member = NodeIdentity::generate();
    let reason = |v: &Value| v["error"]["reason"].as_str().unwrap_or_default().to_string();

    let (status, body) = get(node, "/v1/peers", None).await;
    assert_eq!((status, reason(&body)), (401, "TOKEN_MISSING".into()), "{body}");
    let (status, body) = get(node, "/v1/peers", Some("not.a.token")).await;
    assert_eq!((status, reason(&body)), (401, "TOKEN_MALFORMED".into()));

    let token = login(node, &member, &[]).await;
    let (status, _) = get(node, "/v1/peers", Some(&token)).await;
    assert_eq!(status, 200);
    // Forged: the same claims, another signature.
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = login(node, &NodeIdentity::generate(), &[]).await;
    parts[2] = other.split('.').nth(2).unwrap();
    let (status, body) = get(node, "/v1/peers", Some(&parts.join("."))).await;
    assert_eq!((status, reason(&body)), (401, "TOKEN_FORGED".into()));

    // Under-scoped: a read-only token cannot pay.
    let read_only = login(node, &member, &["ledger:read"]).await;
    let (status, body) = post(node, "/v1/transfers", Some(&read_only), &json!({ "transfer": {} })).await;
    assert_eq!((status, reason(&body)), (403, "SCOPE_MISSING".into()), "{body}");

    // Revoked, also after a restart of the gateway.
    let (status, _) = post(node, "/v1/auth/revoke", Some(&token), &json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = get(node, "/v1/peers", Some(&token)).await;
    assert_eq!((status, reason(&body)), (401, "TOKEN_REVOKED".into()));
    let fresh = login(node, &member, &[]).await;
    node.stop("gateway", Duration::from_secs(10)).await.unwrap();
    node.start("gateway").await.unwrap();
    node.wait_healthy("gateway", Duration::from_secs(10)).await.unwrap();
    let (status, body) = get(node, "/v1/peers", Some(&token)).await;
    assert_eq!((status, reason(&body)), (401, "TOKEN_REVOKED".into()), "revocation survives a restart");
    let (status, _) = get(node, "/v1/peers", Some(&fresh)).await;
    assert_eq!(status, 200, "tokens outlive a restart: the secret is kept");

    // Expired: the configured lifetime is 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = get(node, "/v1/peers", Some(&read_only)).await;
    assert_eq!((status, reason(&body)), (401, "TOKEN_EXPIRED".into()), "{body}");

    // A replayed login (the challenge is single-use) and a bad body.
    let (status, body) = post(
        node,
        "/v1/auth/login",
        None,
        &json!({ "did": member.did().as_str(), "nonce": "AAAA", "signature": "AAAA" }),
    )
    .await;
    assert_eq!((status, reason(&body)), (401, "CHALLENGE_UNKNOWN".into()));
    let r = http()
        .post(format!("{}/v1/auth/challenge", node.http_url()))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_participant_cannot_read_a_private_topic_through_any_gateway_route() {
    use icn_proto::gossip::v1 as g;
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(SERVICES)
        .env("ICN__API__POLL_INTERVAL", "100ms")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let (insider, outsider) = (NodeIdentity::generate(), NodeIdentity::generate());
    let participants = vec![insider.did().to_string(), node.did().to_string()];
    node.gossip()
        .await
        .unwrap()
        .create_topic(g::CreateTopicRequest {
            signing: Some(g::create_topic_request::Signing::Spec(g::TopicSpec {
                name: "council".into(),
                acl: Some(g::Acl {
                    rule: Some(g::acl::Rule::Participants(g::acl::Participants { dids: participants })),
                }),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    // A public topic: what the outsider may read proves its event stream is live.
    node.create_public_topic("square").await.unwrap();
    let (inside, outside) = (login(node, &insider, &[]).await, login(node, &outsider, &[]).await);
    // Both follow events before the entry is published; the hub must see the topics first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stream = |token: String| {
        let url = format!("{}/v1/events?kinds=gossip_entry", node.http_url());
        async move {
            let r = http().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200, "the event stream opens");
            r.bytes_stream()
        }
    };
    let (mut in_events, mut out_events) = (stream(inside.clone()).await, stream(outside.clone()).await);
    let entry = sign_entry(&insider, "council", 1, b"minutes of the council");
    let body =
        serde_json::to_value(g::PublishRequest { signing: Some(g::publish_request::Signing::Signed(entry)) }).unwrap();
    let (status, r) = post(node, "/v1/entries", Some(&inside), &body).await;
    assert_eq!(status, 200, "{r}");

    // The participant reads it everywhere.
    let (status, r) = get(node, "/v1/entries?topic=council", Some(&inside)).await;
    assert_eq!((status, r["entries"].as_array().map(|a| a.len())), (200, Some(1)), "{r}");
    use futures::StreamExt;
    let mut text = String::new();
    while !text.contains(&B64.encode(b"minutes of the council")) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), in_events.next()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The outsider: not in the topic list, NOT_FOUND on entries over REST and gRPC, and
    // nothing on its event stream.
    let (status, r) = get(node, "/v1/topics", Some(&outside)).await;
    assert_eq!(status, 200);
    assert!(!r.to_string().contains("council"), "{r}");
    let (status, r) = get(node, "/v1/entries?topic=council", Some(&outside)).await;
    assert_eq!(status, 404, "{r}");
    let mut grpc = GatewayClient::new(node.channel("gateway").await.unwrap());
    let mut request = tonic::Request::new(icn_proto::gateway::v1::GetEntriesRequest {
        topic: "council".into(),
        ..Default::default()
    });
    request.metadata_mut().insert("authorization", format!("Bearer {outside}").parse().unwrap());
    assert_eq!(grpc.get_entries(request).await.unwrap_err().code(), tonic::Code::NotFound);
    // Its stream is live: it carries an entry on the public topic, published after the
    // private one. A stream delivers in the hub's order and the insider has already had
    // the private entry, so had the outsider's stream admitted it, it would come first.
    let entry = sign_entry(&insider, "square", 1, b"open to everyone");
    let body =
        serde_json::to_value(g::PublishRequest { signing: Some(g::publish_request::Signing::Signed(entry)) }).unwrap();
    let (status, r) = post(node, "/v1/entries", Some(&inside), &body).await;
    assert_eq!(status, 200, "{r}");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&B64.encode(b"open to everyone")) {
        let chunk = match tokio::time::timeout_at(deadline, out_events.next()).await {
            Ok(Some(chunk)) => {
                chunk.unwrap_or_else(|e| panic!("the outsider's stream failed: {e}; it carried: {seen}"))
            }
            Ok(None) => panic!("the outsider's stream ended; it carried: {seen}"),
            Err(_) => panic!("the outsider's stream carried no public entry within 10 s; it carried: {seen}"),
        };
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !seen.contains(&B64.encode(b"minutes of the council")),
        "the outsider's stream carried the private entry: {seen}"
    );
    assert_eq!(seen.matches("event: gossip_entry").count(), 1, "only the public entry reached the outsider: {seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_and_callers_over_their_rate_get_json_errors_not_queues() {
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(SERVICES)
        .env("ICN__API__MAX_BODY_BYTES", "4096")
        .env("ICN__API__IDENTITY_RATE", "1")
        .env("ICN__API__IDENTITY_BURST", "3")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let big = json!({ "did": "x".repeat(10_000) });
    let (status, r) = post(node, "/v1/auth/challenge", None, &big).await;
    assert_eq!((status, r["error"]["reason"].as_str()), (413, Some("BODY_TOO_LARGE")), "{r}");
    let token = login(node, &NodeIdentity::generate(), &[]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, r) = get(node, "/v1/peers", Some(&token)).await;
        if status == 429 {
            assert_eq!(r["error"]["code"], "RESOURCE_EXHAUSTED");
            assert_eq!(r["error"]["reason"], "RATE_LIMITED");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429], "a burst of 3, then 1 per second");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsider_flooding_login_challenges_is_refused_at_the_bounds_and_members_still_log_in() {
    // Long enough for the ten requests below, short enough to wait out.
    const CHALLENGE_TTL_MS: u64 = 3_000;
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(SERVICES)
        .env("ICN__API__MAX_CHALLENGES", "6")
        .env("ICN__API__CHALLENGES_PER_DID", "2")
        .env("ICN__API__CHALLENGE_TTL", &format!("{CHALLENGE_TTL_MS}ms"))
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let ask = |did: String| async move { post(node, "/v1/auth/challenge", None, &json!({ "did": did })).await };
    // One DID asks again and again: two challenges, then refusals naming the bound.
    let flooder = NodeIdentity::generate().did().to_string();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, r) = ask(flooder.clone()).await;
        if status != 200 {
            assert_eq!(
                (r["error"]["code"].as_str(), r["error"]["reason"].as_str()),
                (Some("RESOURCE_EXHAUSTED"), Some("TOO_MANY_CHALLENGES")),
                "{r}"
            );
            assert!(r["error"]["message"].as_str().unwrap().contains("api.challenges_per_did"), "{r}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
    // Fresh DIDs fill the node-wide bound (6 issued within the TTL), then are refused.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(ask(NodeIdentity::generate().did().to_string()).await.0);
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
    // Both refusals are counted, by bound.
    let metrics = reqwest::get(node.metrics_url("gateway")).await.unwrap().text().await.unwrap();
    for (bound, n) in [("per_did", 2), ("total", 2)] {
        let line = format!("icn_gateway_challenges_refused_total{{bound=\"{bound}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // Once the flood's challenges expire, a member logs in and is served.
    tokio::time::sleep(std::time::Duration::from_millis(CHALLENGE_TTL_MS + 200)).await;
    let token = login(node, &NodeIdentity::generate(), &[]).await;
    assert_eq!(get(node, "/v1/peers", Some(&token)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_parked_ahead_of_a_gap_are_bounded_node_wide_and_nothing_refused_is_lost() {
    // Room for two held entries of 16 KiB, not three.
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(SERVICES)
        .env("ICN__TOPICS__MAX_PENDING_BYTES", "40000")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    node.create_public_topic("parking").await.unwrap();
    let outsider = NodeIdentity::generate();
    let token = login(node, &outsider, &[]).await;
    let publish = |seq: u64| {
        let entry = sign_entry(&outsider, "parking", seq, &vec![seq as u8; 16 * 1024]);
        let body = serde_json::to_value(icn_proto::gossip::v1::PublishRequest {
            signing: Some(icn_proto::gossip::v1::publish_request::Signing::Signed(entry)),
        })
        .unwrap();
        let token = token.clone();
        async move { post(node, "/v1/entries", Some(&token), &body).await }
    };
    // Seq 1 withheld: 2 and 3 are parked, 4 would pass the node-wide bound.
    for seq in [2, 3] {
        let (status, r) = publish(seq).await;
        assert_eq!(status, 200, "seq {seq}: {r}");
    }
    let (status, r) = publish(4).await;
    assert_eq!((status, r["error"]["code"].as_str()), (429, Some("RESOURCE_EXHAUSTED")), "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("topics.max_pending_bytes"), "{r}");
    let metrics = reqwest::get(node.metrics_url("gossip")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("icn_gossip_pending_refused_total{bound=\"total_bytes\"} 1"), "{metrics}");
    // The gap fills: the parked entries are released, and the refused one is taken now.
    for seq in [1, 4] {
        let (status, r) = publish(seq).await;
        assert_eq!(status, 200, "seq {seq}: {r}");
    }
    let (status, r) = get(node, "/v1/entries?topic=parking", Some(&token)).await;
    assert_eq!(status, 200, "{r}");
    let mut seqs: Vec<u64> =
        r["entries"].as_array().unwrap().iter().map(|e| e["entry"]["seq"].as_str().unwrap().parse().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, vec![1, 2, 3, 4], "every entry is held by the node: {r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_describes_every_route_the_gateway_serves() {
    let net = Network::builder(1).bootstrap(Bootstrap::None).services(SERVICES).start().await.unwrap();
    let node = &net.nodes[0];
    let (status, doc) = get(node, "/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let transfer = &doc["components"]["schemas"]["icn.ledger.v1.Transfer"]["properties"];
    assert_eq!(transfer["payerSeq"]["type"], "string", "64-bit integers travel as strings: {transfer}");
    assert_eq!(transfer["signature"]["format"], "byte");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{:?}", paths.keys());
    // Each documented route is served: it answers JSON (an error, often), never the
    // router's bare 404 for an unknown path, which looks like this:
    let unknown = http().get(format!("{}/v1/no-such-route", node.http_url())).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().is_empty());
    for (path, methods) in paths {
        let concrete = path
            .replace("{coop}", "c")
            .replace("{currency}", "hours")
            .replace("{member}", "me")
            .replace("{hash}", "00");
        for method in methods.as_object().unwrap().keys() {
            let url = format!("{}{concrete}", node.http_url());
            let request = match method.as_str() {
                "get" => http().get(url),
                "post" => http().post(url).json(&json!({})),
                other => panic!("undocumented method {other}"),
            };
            let r = request.send().await.unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(!body.is_empty(), "{method} {path}: {status} with an empty body: not routed");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cooperatives_ledger_is_for_its_members_and_bad_queries_get_json_errors() {
    let net = Network::builder(1).bootstrap(Bootstrap::None).services(SERVICES).start().await.unwrap();
    let node = &net.nodes[0];
    let coop = TestCoop::create(&mut node.ledger().await.unwrap(), "closed", 2, 100).await.unwrap();
    let (member, other, outsider) = (&coop.members[0], &coop.members[1], NodeIdentity::generate());
    let (topic, id) = (format!("ledger/{}", coop.id), &coop.id);
    let (inside, outside) = (login(node, member, &[]).await, login(node, &outsider, &[]).await);
    let admin = login(node, &coop.founder, &[]).await;
    // The ledger topic exists once the cooperative is published; its raw entries carry
    // every member's transfers, so it is listed and readable for the cooperative's
    // admins only.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !get(node, "/v1/topics", Some(&admin)).await.1.to_string().contains(&topic) {
        assert!(tokio::time::Instant::now() < deadline, "the ledger topic appears for an admin");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(node, &format!("/v1/entries?topic={topic}"), Some(&admin)).await.0, 200);
    for token in [&inside, &outside] {
        assert!(!get(node, "/v1/topics", Some(token)).await.1.to_string().contains(&topic));
        assert_eq!(get(node, &format!("/v1/entries?topic={topic}"), Some(token)).await.0, 404);
    }
    // Balances are for members (mutual credit: members see each other's positions);
    // nothing is for outsiders.
    for path in
        [format!("/v1/coops/{id}"), format!("/v1/coops/{id}/accounts"), format!("/v1/coops/{id}/accounts/hours/me")]
    {
        let path = path.as_str();
        assert_eq!(get(node, path, Some(&inside)).await.0, 200, "{path} for a member");
        let (status, body) = get(node, path, Some(&outside)).await;
        assert_eq!(status, 403, "{path} for an outsider: {body}");
    }
    // Transfers are for their parties and the cooperative's admins: another member's
    // history is refused to a member, shown to an admin.
    let others = format!("/v1/coops/{id}/history?currency=hours&member={}", other.did());
    assert_eq!(get(node, &others, Some(&inside)).await.0, 403);
    assert_eq!(get(node, &others, Some(&admin)).await.0, 200);
    // Public figures stay public.
    assert_eq!(get(node, &format!("/v1/coops/{id}/stats"), None).await.0, 200);
    let (status, body) = get(node, &format!("/v1/coops/{id}/history?limit=abc"), Some(&inside)).await;
    assert_eq!((status, body["error"]["reason"].as_str()), (400, Some("BAD_QUERY")), "{body}");
}
