//! What survives a crash: every acknowledged transfer, and balances equal to a replay of
//! the journal. Real ledger processes, killed with SIGKILL.

use icn_ledger_records::hash;
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::*;
use icn_testkit::ledger::{TestCoop, CURRENCY};
use icn_testkit::{Bootstrap, Network};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

async fn start() -> (Network, LedgerClient<Channel>) {
    start_with(false).await
}

/// A node whose ledger keeps applied transfers in memory, or in its store
/// (`credit.history_in_store`).
async fn start_with(history_in_store: bool) -> (Network, LedgerClient<Channel>) {
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(&["netd", "gossip", "ledger"])
        .env("ICN__CREDIT__HISTORY_IN_STORE", if history_in_store { "true" } else { "false" })
        .start()
        .await
        .unwrap();
    let client = net.nodes[0].ledger().await.unwrap();
    (net, client)
}

async fn recompute(c: &mut LedgerClient<Channel>, coop: &str, repair: bool) -> RecomputeBalancesResponse {
    c.recompute_balances(RecomputeBalancesRequest { coop_id: coop.into(), currency: String::new(), repair })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_loses_no_acknowledged_transfer_and_no_balance_drifts() {
    sigkill_under_load(false).await;
}

/// The same with the history in the store: the restart loads what the last written
/// group left instead of replaying the journal, and must hold exactly as much.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_with_the_history_in_the_store_loses_nothing_either() {
    sigkill_under_load(true).await;
}

async fn sigkill_under_load(history_in_store: bool) {
    let (mut net, mut c) = start_with(history_in_store).await;
    let coop = Arc::new(TestCoop::create(&mut c, "sturdy", 20, 1_000_000).await.unwrap());
    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut load = Vec::new();
    for worker in 0..10 {
        let (coop, acked) = (coop.clone(), acked.clone());
        let mut client = net.nodes[0].ledger().await.unwrap();
        load.push(tokio::spawn(async move {
            let everyone = coop.everyone();
            for round in 0.. {
                let payer = everyone[worker * 2 + round % 2];
                let payee = everyone[(worker * 2 + round % 2 + 1 + round % 7) % everyone.len()];
                let Ok(t) = coop.next(&mut client, payer, payee, 1 + round as i64 % 50, "load").await else { return };
                match client.submit_transfer(SubmitTransferRequest { transfer: Some(t.clone()) }).await {
                    Ok(r) => {
                        assert_eq!(r.into_inner().record.unwrap().status, TransferStatus::Applied as i32);
                        acked.lock().unwrap().push(hash(&t).to_vec());
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // RecomputeBalances while transfers are committed: the journal version keeps the
    // comparison honest, so it never reports drift that a concurrent write caused.
    let mut checks = 0;
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let r = recompute(&mut c, &coop.id, false).await;
        assert!(r.drifts.is_empty(), "drift under load: {r:?}");
        assert_eq!(r.attempts, 1, "a check reads one snapshot and needs no retry");
        checks += 1;
    }
    println!("{checks} recomputes under load, none with drift");
    assert!(acked.lock().unwrap().len() > 50, "the load ran");

    net.nodes[0].kill("ledger").await.unwrap();
    for task in load {
        task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let restarted = Instant::now();
    net.nodes[0].start("ledger").await.unwrap();
    net.nodes[0].wait_healthy("ledger", Duration::from_secs(10)).await.unwrap();
    println!(
        "ledger ready {} ms after restart, {} acknowledged transfers",
        restarted.elapsed().as_millis(),
        acked.len()
    );

    let mut c = net.nodes[0].ledger().await.unwrap();
    for h in &acked {
        let r = c.get_transfer(GetTransferRequest { key: Some(get_transfer_request::Key::Hash(h.clone())) }).await;
        let record = r.expect("every acknowledged transfer is there").into_inner().record.unwrap();
        assert_eq!(record.status, TransferStatus::Applied as i32);
    }
    let balances = coop.balances(&mut c).await.unwrap();
    coop.assert_invariants(&balances);
    let stats = coop.stats(&mut c).await.unwrap();
    assert!(
        stats.transfer_count >= acked.len() as u64,
        "{} applied, {} acknowledged",
        stats.transfer_count,
        acked.len()
    );
    // Each member's history, page by page, holds every acknowledged transfer it paid.
    let mut listed = std::collections::HashSet::new();
    for m in coop.everyone() {
        let mut cursor = String::new();
        loop {
            let page = icn_proto::common::v1::PageRequest { limit: 200, cursor: cursor.clone() };
            let r = c
                .get_history(icn_proto::ledger::v1::GetHistoryRequest {
                    coop_id: coop.id.clone(),
                    currency: CURRENCY.into(),
                    member: m.did().to_string(),
                    page: Some(page),
                    include_unapplied: false,
                })
                .await
                .expect("history reads")
                .into_inner();
            listed.extend(r.transfers.into_iter().map(|t| t.hash));
            if r.next_cursor.is_empty() {
                break;
            }
            cursor = r.next_cursor;
        }
    }
    assert!(acked.iter().all(|h| listed.contains(h)), "every acknowledged transfer is in its payer's history");
    let r = recompute(&mut c, &coop.id, false).await;
    assert!(r.drifts.is_empty(), "{r:?}");
    assert_eq!(r.attempts, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_balance_that_drifted_from_the_journal_is_reported_and_repaired() {
    let (mut net, mut c) = start().await;
    let coop = TestCoop::create(&mut c, "drifty", 2, 1_000).await.unwrap();
    let (a, b) = (&coop.members[0], &coop.members[1]);
    coop.pay(&mut c, a, b, 250).await.unwrap();
    assert!(recompute(&mut c, &coop.id, false).await.drifts.is_empty());

    // Damage b's stored row behind the service's back, as a bug or a bad disk would.
    net.nodes[0].stop("ledger", Duration::from_secs(10)).await.unwrap();
    {
        use prost::Message;
        let path = net.nodes[0].dir.join("ledger");
        let storage = icn_storage::Storage::open(&path, icn_ledger::store::COLUMN_FAMILIES).unwrap();
        let key = [coop.id.as_bytes(), b"\0", CURRENCY.as_bytes(), b"\0", b.did().as_str().as_bytes()].concat();
        let cf = storage.cf("accounts").unwrap();
        let mut row = Account::decode(storage.db().get_cf(cf, &key).unwrap().unwrap().as_slice()).unwrap();
        assert_eq!(row.balance, 250);
        row.balance = 999;
        storage.db().put_cf(cf, &key, row.encode_to_vec()).unwrap();
        storage.flush().unwrap();
    }
    net.nodes[0].start("ledger").await.unwrap();
    net.nodes[0].wait_healthy("ledger", Duration::from_secs(10)).await.unwrap();
    let mut c = net.nodes[0].ledger().await.unwrap();
    // The start-up check saw it too.
    assert_eq!(net.nodes[0].metric("ledger", "icn_ledger_balance_drifts_total").await.unwrap(), 1.0);
    // Balances served come from the journal, not the damaged row.
    assert_eq!(coop.balances(&mut c).await.unwrap()[b.did().as_str()], 250);
    let r = recompute(&mut c, &coop.id, false).await;
    assert_eq!(
        r.drifts,
        vec![BalanceDrift { currency: CURRENCY.into(), member: b.did().to_string(), stored: 999, replayed: 250 }]
    );
    assert!(!r.repaired);
    let r = recompute(&mut c, &coop.id, true).await;
    assert!(r.repaired);
    assert!(recompute(&mut c, &coop.id, false).await.drifts.is_empty(), "repaired");
}
