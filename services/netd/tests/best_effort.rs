//! The best-effort class between real netd processes: ordered and batched to its
//! subscribers, never in the durable log, refused and counted when the peer is away; and
//! the send stream that carries many sends over one call.

use icn_proto::net::v1::{
    DeliveryClass, DisconnectRequest, InboundMessage, PeerState, SendRequest, SubscribeBestEffortRequest,
};
use icn_testkit::Network;
use std::time::Duration;
use tonic::Code;

fn request(to: &str, payload: Vec<u8>, class: DeliveryClass) -> SendRequest {
    SendRequest { to: to.into(), protocol: "fast".into(), payload, sealed: false, class: class as i32 }
}

#[tokio::test(flavor = "multi_thread")]
async fn best_effort_messages_arrive_in_order_in_batches_and_never_enter_the_durable_log() {
    let net = Network::builder(2).services(&["netd"]).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let mut fast = n2
        .netd()
        .await
        .unwrap()
        .subscribe_best_effort(SubscribeBestEffortRequest { protocols: vec!["fast".into()] })
        .await
        .unwrap()
        .into_inner();

    // 500 messages over one send stream: each answered, in order, with seq 0.
    const N: u32 = 500;
    let to = n2.did().to_string();
    let requests: Vec<SendRequest> =
        (0..N).map(|i| request(&to, i.to_be_bytes().to_vec(), DeliveryClass::BestEffort)).collect();
    let mut results = n1.netd().await.unwrap().send_stream(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut answered = 0;
    while let Some(r) = results.message().await.unwrap() {
        assert_eq!((r.code, r.seq), (0, 0), "{}", r.message);
        answered += 1;
    }
    assert_eq!(answered, N);

    let mut received: Vec<InboundMessage> = Vec::new();
    let mut batches = 0;
    while received.len() < N as usize {
        let batch = tokio::time::timeout(Duration::from_secs(10), fast.message())
            .await
            .expect("best-effort messages arrive on loopback")
            .unwrap()
            .unwrap();
        batches += 1;
        received.extend(batch.messages);
    }
    let order: Vec<u32> = received.iter().map(|m| u32::from_be_bytes(m.payload[..4].try_into().unwrap())).collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>(), "in the order sent");
    assert!(received.iter().all(|m| m.from == n1.did().to_string() && m.seq == 0 && m.position == 0));
    assert!(batches <= N, "{batches} batches");

    // None of them is in the durable log: the first logged message is a durable one sent after.
    let mut netd = n1.netd().await.unwrap();
    let seq = netd.send(request(&to, b"durable".to_vec(), DeliveryClass::Durable)).await.unwrap().into_inner().seq;
    assert_eq!(seq, 1);
    let mut log = n2.inbox("fast").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), log.message()).await.unwrap().unwrap().unwrap();
    assert_eq!((first.payload.as_slice(), first.position), (&b"durable"[..], 1));
    let received = "icn_netd_messages_received_total{protocol=\"fast\"}";
    n2.wait_metric("netd", received, f64::from(N) + 1.0, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn best_effort_to_an_absent_peer_is_refused_and_counted_and_a_send_stream_answers_every_request() {
    let net = Network::builder(2).services(&["netd"]).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let to = n2.did().to_string();
    let mut netd = n1.netd().await.unwrap();
    netd.disconnect(DisconnectRequest { did: to.clone(), intentional: true }).await.unwrap();
    n1.wait_peer_state(n2.did(), PeerState::Closed, Duration::from_secs(10)).await.unwrap();

    // Nothing is kept for a peer that is not connected: refused, and counted.
    let err = netd.send(request(&to, b"lost".to_vec(), DeliveryClass::BestEffort)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("not connected"), "{err}");
    let dropped = "icn_netd_best_effort_dropped_total{reason=\"not_connected\"}";
    assert_eq!(n1.metric("netd", dropped).await.unwrap(), 1.0);
    // An unknown class is refused rather than guessed.
    let bad = SendRequest { class: 7, ..request(&to, b"?".to_vec(), DeliveryClass::Durable) };
    assert_eq!(netd.send(bad.clone()).await.unwrap_err().code(), Code::InvalidArgument);

    // A send stream answers each request in order; a refused one does not end it. The
    // durable ones are kept for the absent peer and delivered once it is back.
    let requests = vec![
        request(&to, b"lost too".to_vec(), DeliveryClass::BestEffort),
        request(&to, b"one".to_vec(), DeliveryClass::Durable),
        bad,
        request("did:icn:nobody", b"x".to_vec(), DeliveryClass::Durable),
        request(&to, b"two".to_vec(), DeliveryClass::Durable),
    ];
    let mut results = netd.send_stream(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut answers = Vec::new();
    while let Some(r) = results.message().await.unwrap() {
        answers.push((r.seq, Code::from_i32(r.code)));
    }
    assert_eq!(
        answers,
        [(0, Code::Unavailable), (1, Code::Ok), (0, Code::InvalidArgument), (0, Code::InvalidArgument), (2, Code::Ok),]
    );
    let mut log = n2.inbox("fast").await.unwrap();
    for expected in [&b"one"[..], b"two"] {
        let m = tokio::time::timeout(Duration::from_secs(20), log.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(m.payload, expected);
    }
}
