//! The ledger between nodes: real netd, gossip and ledger processes per node, on
//! loopback, driven through the ledger's gRPC API the way a member's client does.

use icn_proto::ledger::v1::*;
use icn_testkit::ledger::{wait_converged, TestCoop, CURRENCY};
use icn_testkit::Network;
use std::time::Duration;

fn network(nodes: usize) -> icn_testkit::NetworkBuilder {
    Network::builder(nodes)
        .services(&["netd", "gossip", "ledger"])
        .env("ICN__TOPICS__ANTI_ENTROPY_INTERVAL", "300ms")
        .env("ICN__CREDIT__DISCOVER_INTERVAL", "200ms")
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_submitted_on_different_nodes_converge_everywhere() {
    let net = network(3).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let mut clients = Vec::new();
    for node in &net.nodes {
        clients.push(node.ledger().await.unwrap());
    }
    let coop = TestCoop::create(&mut clients[0], "bakery", 5, 10_000).await.unwrap();
    // Every node learns the cooperative from its gossip topic.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for c in clients.iter_mut() {
        while c
            .get_coop(GetCoopRequest { coop_id: coop.id.clone() })
            .await
            .map(|r| r.into_inner().currencies.len())
            .ok()
            != Some(1)
        {
            assert!(tokio::time::Instant::now() < deadline, "a node never learnt the cooperative");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A watcher on node 3 follows one member's transfers, wherever they are submitted.
    let everyone = coop.everyone();
    let watched = everyone[1].did().to_string();
    let mut watch = clients[2]
        .watch(WatchRequest { coop_id: coop.id.clone(), member: watched.clone() })
        .await
        .unwrap()
        .into_inner();
    // Each member pays from "its" node; payers rotate so incoming transfers become deps.
    let mut applied = 0;
    for round in 0..4 {
        for (i, payer) in everyone.iter().enumerate() {
            let payee = everyone[(i + 1 + round) % everyone.len()];
            if std::ptr::eq(*payer, payee) {
                continue;
            }
            let client = &mut clients[i % 3];
            let record = coop.pay(client, payer, payee, 100 + i as i64).await.unwrap();
            assert_eq!(record.status, TransferStatus::Applied as i32, "{record:?}");
            applied += 1;
        }
        // Members pay from the next node in the next round, so it must have what they
        // received: wait for that before going on.
        wait_converged(&coop, &mut clients, applied, Duration::from_secs(20)).await.unwrap();
    }
    let balances = wait_converged(&coop, &mut clients, applied, Duration::from_secs(20)).await.unwrap();
    coop.assert_invariants(&balances);
    assert!(balances.values().any(|b| *b != 0), "balances moved: {balances:?}");
    for c in clients.iter_mut() {
        let stats = coop.stats(c).await.unwrap();
        assert_eq!(stats.members, 6);
        assert_eq!(stats.currencies[0].transfer_count, applied);
        let r = c
            .recompute_balances(RecomputeBalancesRequest { coop_id: coop.id.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(r.drifts.is_empty(), "{r:?}");
        assert_eq!(r.accounts_checked, 6, "every account that moved has a stored row");
    }
    let mut applied_seen = std::collections::BTreeSet::new();
    while applied_seen.len() < 8 {
        let record = tokio::time::timeout(Duration::from_secs(10), watch.message()).await.unwrap().unwrap().unwrap();
        let t = record.transfer.as_ref().unwrap();
        assert!(t.payer == watched || t.payee == watched, "only the watched member's transfers");
        if record.status == TransferStatus::Applied as i32 {
            applied_seen.insert(record.hash);
        }
    }
    // History pages newest first with a stable cursor.
    let member = everyone[1].did().to_string();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = clients[2]
            .get_history(GetHistoryRequest {
                coop_id: coop.id.clone(),
                currency: CURRENCY.into(),
                member: member.clone(),
                page: Some(icn_proto::common::v1::PageRequest { limit: 3, cursor }),
                include_unapplied: false,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.transfers.into_iter().map(|r| r.hash));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no transfer twice across pages");
    assert_eq!(seen.len(), 8, "member 1 paid 4 times and was paid 4 times");
}
