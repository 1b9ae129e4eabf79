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

/// Payee finality (trust-model issue, item 2.6): the cooperative names the three nodes
/// validators with a quorum of 2. A member pays; once the nodes' votes certify the
/// payment, the payer signs a rival at the same sequence number (the claw-back) and
/// submits it on another node. Without certificates both would be quarantined and the
/// payee would lose the payment; with one, the rival is evidence and moves nothing, on
/// every node.
#[tokio::test(flavor = "multi_thread")]
async fn a_certified_payment_survives_its_payers_claw_back_on_every_node() {
    let net = network(3).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let mut clients = Vec::new();
    for node in &net.nodes {
        clients.push(node.ledger().await.unwrap());
    }
    let coop = TestCoop::create(&mut clients[0], "final", 3, 1_000).await.unwrap();
    let validators = icn_ledger_records::sign(
        &coop.founder,
        Validators {
            coop_id: coop.id.clone(),
            validators: net.nodes.iter().map(|n| n.did().to_string()).collect(),
            quorum: 2,
            created_at_ms: icn_runtime::now_ms(),
            ..Default::default()
        },
    );
    // A member is no admin: it cannot name validators.
    let forged = icn_ledger_records::sign(&coop.members[0], Validators { ..validators.clone() });
    let e = clients[0].set_validators(SetValidatorsRequest { validators: Some(forged) }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // A quorum of half or less would let two rivals both be certified: refused.
    let weak = icn_ledger_records::sign(&coop.founder, Validators { quorum: 1, ..validators.clone() });
    let e = clients[0].set_validators(SetValidatorsRequest { validators: Some(weak) }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let r = clients[0].set_validators(SetValidatorsRequest { validators: Some(validators.clone()) }).await.unwrap();
    assert!(r.into_inner().created);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for c in clients.iter_mut() {
        loop {
            let coop_now = c.get_coop(GetCoopRequest { coop_id: coop.id.clone() }).await.map(|r| r.into_inner());
            if coop_now.as_ref().is_ok_and(|r| r.validators.as_ref() == Some(&validators) && r.currencies.len() == 1) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "a node never learnt the validators: {coop_now:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let (payer, payee, other) = (&coop.members[0], &coop.members[1], &coop.members[2]);
    let paid = coop.next(&mut clients[0], payer, payee, 40, "paid for bread").await.unwrap();
    let r = clients[0].submit_transfer(SubmitTransferRequest { transfer: Some(paid.clone()) }).await.unwrap();
    assert_eq!(r.into_inner().record.unwrap().status, TransferStatus::Applied as i32);
    let paid_hash = icn_ledger_records::hash(&paid).to_vec();
    let get = |hash: &Vec<u8>| GetTransferRequest { key: Some(get_transfer_request::Key::Hash(hash.clone())) };
    // The payee waits for the certificate, on a node other than the payer's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let record = clients[2].get_transfer(get(&paid_hash)).await.map(|r| r.into_inner().record.unwrap());
        if record.as_ref().is_ok_and(|r| r.certified) {
            let r = record.unwrap();
            assert!(r.votes >= 2 && r.quorum == 2, "{r:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never certified: {record:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The claw-back: the same place in the payer's chain, paying someone else.
    let rival = icn_ledger_records::sign(
        payer,
        Transfer {
            payee: other.did().to_string(),
            memo: "never mind".into(),
            idempotency_id: "claw-back".into(),
            ..paid.clone()
        },
    );
    let rival_hash = icn_ledger_records::hash(&rival).to_vec();
    let r = clients[1].submit_transfer(SubmitTransferRequest { transfer: Some(rival) }).await.unwrap();
    let record = r.into_inner().record.unwrap();
    assert_eq!(record.status, TransferStatus::Quarantined as i32, "{record:?}");
    assert!(record.detail.contains("certified"), "{}", record.detail);

    // Every node ends with the payment applied and certified, the rival quarantined,
    // the payee's balance intact, and the fork on record as evidence.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for (i, c) in clients.iter_mut().enumerate() {
        loop {
            let rival_now = c.get_transfer(get(&rival_hash)).await.map(|r| r.into_inner().record.unwrap().status);
            if rival_now.as_ref().is_ok_and(|s| *s == TransferStatus::Quarantined as i32) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "node {i} never got the rival: {rival_now:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let paid_now = c.get_transfer(get(&paid_hash)).await.unwrap().into_inner().record.unwrap();
        assert_eq!(paid_now.status, TransferStatus::Applied as i32, "node {i}: {paid_now:?}");
        assert!(paid_now.certified, "node {i}");
        let balances = coop.balances(c).await.unwrap();
        assert_eq!(balances[payee.did().as_str()], 40, "node {i}: the payee keeps the payment");
        assert_eq!(balances.get(other.did().as_str()).copied().unwrap_or(0), 0, "node {i}");
        let q = c
            .list_quarantine(ListQuarantineRequest { coop_id: coop.id.clone(), page: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(q.forks.len(), 1, "node {i}");
        let statuses: Vec<(Vec<u8>, i32)> = q.forks[0].transfers.iter().map(|t| (t.hash.clone(), t.status)).collect();
        assert!(statuses.contains(&(paid_hash.clone(), TransferStatus::Applied as i32)), "node {i}: {statuses:?}");
        assert!(statuses.contains(&(rival_hash.clone(), TransferStatus::Quarantined as i32)), "node {i}");
    }
    // The payer's chain goes on after the certified payment.
    let after = coop.pay(&mut clients[2], payer, payee, 1).await.unwrap();
    assert_eq!(after.status, TransferStatus::Applied as i32, "{after:?}");
}
