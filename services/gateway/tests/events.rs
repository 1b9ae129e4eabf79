//! A client's event stream is told when the gateway lost its feed from one of the node's
//! services and opened it again: what that service did meanwhile reached no stream, and
//! the client must know to read it again rather than believe nothing happened.

use icn_identity::NodeIdentity;
use icn_proto::gateway::v1::gateway_client::GatewayClient;
use icn_proto::gateway::v1::{event, Event, EventsRequest};
use icn_testkit::{Bootstrap, Network, TestNode};
use std::time::Duration;
use tonic::Streaming;

/// The source of a gap event, if `e` is one.
fn gap_source(e: &Event) -> Option<&str> {
    match &e.kind {
        Some(event::Kind::Gap(g)) => Some(g.source.as_str()),
        _ => None,
    }
}

/// A fresh member's gRPC event stream at `node`'s gateway, from the next event on.
async fn open_events(node: &TestNode) -> Streaming<Event> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let token = icn_testkit::gateway::login(&http, &node.http_url(), &NodeIdentity::generate(), &[]).await.unwrap();
    let mut request = tonic::Request::new(EventsRequest::default());
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    GatewayClient::new(node.channel("gateway").await.unwrap()).events(request).await.unwrap().into_inner()
}

/// The source of the next gap event on `events`, within 30 s (after `what`, for the
/// failure message).
async fn next_gap(events: &mut Streaming<Event>, node: &TestNode, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, events.message())
            .await
            .unwrap_or_else(|_| panic!("no gap event after {what}; gateway:\n{}", node.log_tail("gateway", 20)));
        let e = next.unwrap().expect("the stream stays open");
        if let Some(source) = gap_source(&e) {
            return source.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_told_that_it_may_have_missed_the_ledgers_events_while_the_ledger_was_away() {
    let mut net = Network::builder(1).bootstrap(Bootstrap::None).start().await.unwrap();
    let node = &mut net.nodes[0];
    // Once the gateway follows the ledger (the services start together, and a ledger not
    // listening yet is tried again a moment later): a stream opened before that is told
    // of a gap at the first opening, which is right, but not what this test is about.
    node.wait_for_log("gateway", "following the stream stream=\"ledger transfers\"", Duration::from_secs(30))
        .await
        .unwrap();
    let mut events = open_events(node).await;

    // While the gateway follows the ledger, nothing is reported missing.
    let quiet = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(next) = tokio::time::timeout_at(quiet, events.message()).await {
        let e = next.unwrap().expect("the stream stays open");
        assert_eq!(gap_source(&e), None, "a gap before the ledger went away: {e:?}");
    }

    // The ledger dies and comes back: its Watch starts again from that moment, and the
    // gateway's feed with it.
    node.kill("ledger").await.unwrap();
    node.start("ledger").await.unwrap();
    assert_eq!(next_gap(&mut events, node, "the ledger restarted").await, "ledger");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_told_that_it_may_have_missed_a_topics_entries_while_gossip_was_away() {
    let mut net = Network::builder(1).bootstrap(Bootstrap::None).start().await.unwrap();
    let node = &mut net.nodes[0];
    node.create_public_topic("notices").await.unwrap();
    // The gateway follows topics as it lists them (every `api.poll_interval`), and the
    // ledger once it answers: a stream opened before the ledger's first answer is told
    // of a gap there, which is right, but not what this test is about.
    node.wait_for_log("gateway", "following the topic", Duration::from_secs(30)).await.unwrap();
    node.wait_for_log("gateway", "following the stream stream=\"ledger transfers\"", Duration::from_secs(30))
        .await
        .unwrap();
    let mut events = open_events(node).await;
    node.kill("gossip").await.unwrap();
    node.start("gossip").await.unwrap();
    assert_eq!(next_gap(&mut events, node, "gossip restarted").await, "gossip:notices");
}
