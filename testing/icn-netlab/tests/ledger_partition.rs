//! The ledger across a partition of namespaced hosts: each side keeps accepting valid
//! transfers; a payer who signs two transfers with one sequence number, one on each
//! side, is caught after the heal, and every node agrees on every balance.

use icn_identity::NodeIdentity;
use icn_ledger_records::{hash, sign};
use icn_netlab::Lab;
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::*;
use icn_testkit::ledger::{wait_converged, TestCoop};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

async fn status(c: &mut LedgerClient<Channel>, t: &Transfer) -> i32 {
    let key = get_transfer_request::Key::Hash(hash(t).to_vec());
    c.get_transfer(GetTransferRequest { key: Some(key) })
        .await
        .map(|r| r.into_inner().record.unwrap().status)
        .unwrap_or(0)
}

/// `payer` pays `payee` through `c` and the node applies it at once.
async fn pay(coop: &TestCoop, c: &mut LedgerClient<Channel>, payer: &NodeIdentity, payee: &NodeIdentity, amount: i64) {
    let record = coop.pay(c, payer, payee, amount).await.unwrap();
    assert_eq!(record.status, TransferStatus::Applied as i32, "{record:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn both_sides_of_a_partition_accept_transfers_and_a_fork_across_it_is_quarantined_everywhere() {
    let lab = Lab::new(3).unwrap();
    let net = lab
        .network(3)
        .services(&["netd", "gossip", "ledger"])
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .env("ICN__CREDIT__DISCOVER_INTERVAL", "200ms")
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let mut clients = Vec::new();
    for node in &net.nodes {
        clients.push(node.ledger().await.unwrap());
    }
    let coop = TestCoop::create(&mut clients[0], "split", 6, 1_000).await.unwrap();
    let m = &coop.members;
    // Before the partition: everyone knows the cooperative and a first payment.
    pay(&coop, &mut clients[0], &m[0], &m[1], 100).await;
    wait_converged(&coop, &mut clients, 1, Duration::from_secs(20)).await.unwrap();

    lab.partition(&[1], &[2, 3]).unwrap();
    // Each side keeps accepting valid transfers from the members using it.
    for round in 0..5 {
        pay(&coop, &mut clients[0], &m[0], &m[2], 10 + round).await;
        pay(&coop, &mut clients[0], &m[1], &m[0], 5).await;
        pay(&coop, &mut clients[1], &m[3], &m[4], 20).await;
        pay(&coop, &mut clients[2], &m[4], &m[3], 7).await;
    }
    // m[5] signs two transfers with its first sequence number, one for each side.
    let to_a = coop.next(&mut clients[0], &m[5], &m[0], 300, "to side A").await.unwrap();
    let mut to_b = coop.next(&mut clients[1], &m[5], &m[3], 300, "to side B").await.unwrap();
    to_b.idempotency_id = "side-b".into();
    let to_b = sign(&m[5], to_b);
    assert_eq!(to_a.payer_seq, to_b.payer_seq);
    pay_signed(&mut clients[0], &to_a).await;
    pay_signed(&mut clients[1], &to_b).await;
    // Neither side can know of the other's transfers yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(&mut clients[1], &to_a).await, 0, "node2 cannot have side A's transfer");
    assert_eq!(coop.balances(&mut clients[1]).await.unwrap()[m[5].did().as_str()], -300);

    lab.heal().unwrap();
    let healed = Instant::now();
    // 1 before, 20 during; the two forked transfers apply nowhere.
    let balances = wait_converged(&coop, &mut clients, 21, Duration::from_secs(60)).await.unwrap();
    println!("3 nodes agree {} ms after the heal", healed.elapsed().as_millis());
    coop.assert_invariants(&balances);
    assert_eq!(balances[m[5].did().as_str()], 0, "no balance moved by either forked transfer");
    for c in clients.iter_mut() {
        for t in [&to_a, &to_b] {
            assert_eq!(status(c, t).await, TransferStatus::Quarantined as i32);
        }
        let q = c
            .list_quarantine(ListQuarantineRequest { coop_id: coop.id.clone(), page: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(q.forks.len(), 1, "{q:?}");
        assert_eq!(q.forks[0].payer, m[5].did().as_str());
        assert_eq!(q.forks[0].transfers.len(), 2);
        let stats = coop.stats(c).await.unwrap();
        assert_eq!(stats.transfer_count, 21);
        assert_eq!(stats.currencies[0].quarantined_transfers, 2);
        let r = c
            .recompute_balances(RecomputeBalancesRequest { coop_id: coop.id.clone(), ..Default::default() })
            .await
            .unwrap();
        assert!(r.into_inner().drifts.is_empty());
    }
    // Every node counted the fork; trust events on the cooperative's topic reached the
    // other nodes (a node that hears a peer's report before it finds the fork itself
    // does not report it again, so there may be fewer than one per node).
    for node in &net.nodes {
        assert_eq!(node.metric("ledger", "icn_ledger_forks_detected_total").await.unwrap(), 1.0, "{}", node.name);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut reports = 0.0;
        for node in &net.nodes {
            reports += node.metric("ledger", "icn_ledger_fork_reports_received_total").await.unwrap();
        }
        if reports >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "fork reports reached the other nodes: {reports}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pay_signed(c: &mut LedgerClient<Channel>, t: &Transfer) {
    let r = c.submit_transfer(SubmitTransferRequest { transfer: Some(t.clone()) }).await.unwrap().into_inner();
    assert_eq!(r.record.unwrap().status, TransferStatus::Applied as i32, "alone on its side, it applies");
}
