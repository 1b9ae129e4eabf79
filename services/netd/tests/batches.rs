//! `SendBatches` between real netd processes: many messages per stream item, each
//! answered in its batch's order, every durable one delivered exactly once and in order,
//! and a batch over the bound refused whole.

use icn_proto::net::v1::{DeliveryClass, SendBatch, SendRequest, SubscribeBestEffortRequest};
use icn_testkit::Network;
use std::time::Duration;
use tonic::Code;

/// `network.stream_buffer` in this test: the most messages in one batch.
const LIMIT: usize = 8;

fn request(to: &str, payload: &[u8], class: DeliveryClass) -> SendRequest {
    SendRequest {
        to: to.into(),
        protocol: "batched".into(),
        payload: payload.to_vec(),
        sealed: false,
        class: class as i32,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_answered_per_message_in_order_delivered_once_and_an_oversized_batch_sends_nothing() {
    let net = Network::builder(2)
        .services(&["netd"])
        .env("ICN__NETWORK__STREAM_BUFFER", &LIMIT.to_string())
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let to = n2.did().to_string();
    let mut fast = n2
        .netd()
        .await
        .unwrap()
        .subscribe_best_effort(SubscribeBestEffortRequest { protocols: vec!["batched".into()] })
        .await
        .unwrap()
        .into_inner();

    // A mixed batch: the refused message is answered in its place and stops nothing.
    let mut batches = vec![SendBatch {
        messages: vec![
            request(&to, b"a", DeliveryClass::Durable),
            request(&to, b"b", DeliveryClass::Durable),
            request("did:icn:nobody", b"x", DeliveryClass::Durable),
            request(&to, b"fast", DeliveryClass::BestEffort),
        ],
    }];
    // One message over the bound: nothing of it is sent.
    batches.push(SendBatch {
        messages: (0..=LIMIT).map(|i| request(&to, format!("big {i}").as_bytes(), DeliveryClass::Durable)).collect(),
    });
    // Then 100 full batches.
    const FULL: usize = 100;
    for b in 0..FULL {
        batches.push(SendBatch {
            messages: (0..LIMIT)
                .map(|i| request(&to, format!("m {}", b * LIMIT + i).as_bytes(), DeliveryClass::Durable))
                .collect(),
        });
    }
    let mut results = n1.netd().await.unwrap().send_batches(tokio_stream::iter(batches)).await.unwrap().into_inner();
    let mut answers = Vec::new();
    while let Some(batch) = results.message().await.unwrap() {
        answers.push(batch.results);
    }
    assert_eq!(answers.len(), FULL + 2, "one answer per batch");
    let codes = |results: &[icn_proto::net::v1::SendResult]| {
        results.iter().map(|r| (r.seq, Code::from_i32(r.code))).collect::<Vec<_>>()
    };
    assert_eq!(codes(&answers[0]), [(1, Code::Ok), (2, Code::Ok), (0, Code::InvalidArgument), (0, Code::Ok)]);
    assert_eq!(codes(&answers[1]), vec![(0, Code::InvalidArgument); LIMIT + 1]);
    assert!(answers[1][0].message.contains("network.stream_buffer"), "{}", answers[1][0].message);
    let seqs: Vec<u64> = answers[2..]
        .iter()
        .flatten()
        .map(|r| {
            assert_eq!(r.code, 0, "{}", r.message);
            r.seq
        })
        .collect();
    assert_eq!(seqs, (3..3 + (FULL * LIMIT) as u64).collect::<Vec<_>>(), "sequence numbers in batch order");

    // The receiver's log holds exactly what was accepted, once each, in order.
    let marker = n1.netd().await.unwrap().send(request(&to, b"end", DeliveryClass::Durable)).await.unwrap();
    assert_eq!(marker.into_inner().seq, 3 + (FULL * LIMIT) as u64);
    let mut expected: Vec<Vec<u8>> = vec![b"a".to_vec(), b"b".to_vec()];
    expected.extend((0..FULL * LIMIT).map(|i| format!("m {i}").into_bytes()));
    expected.push(b"end".to_vec());
    let mut log = n2.inbox("batched").await.unwrap();
    let mut held = Vec::new();
    while held.len() < expected.len() {
        let m = tokio::time::timeout(Duration::from_secs(20), log.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(m.position, held.len() as u64 + 1);
        held.push(m.payload);
    }
    assert_eq!(held, expected);
    let fast = tokio::time::timeout(Duration::from_secs(10), fast.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(fast.messages.iter().map(|m| m.payload.as_slice()).collect::<Vec<_>>(), [&b"fast"[..]]);
}
