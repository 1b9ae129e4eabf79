//! restart: the time from starting a service to it serving correct reads, with a large
//! history stored, and what each service holds in memory at rest.
//!
//! One node. The ledger is given `transfers` signed transfers (200 members, each paying
//! along its own chain, in `SubmitTransfers` batches of 1,000), gossip `entries` 256-byte
//! entries on a topic of their own (besides those the ledger publishes). Then each
//! service is stopped (SIGTERM) and started again, and timed until it answers a read
//! with what it held before: the ledger every member's balance, gossip the topic's
//! version vector. "Ready" is that answer, not the port opening.
//!
//! The ledger keeps its history in its store (`credit.history_in_store`): what bounds its
//! start-up and memory. It is timed at a tenth of the history first, then at all of it, so the table
//! shows how the restart grows with the journal; at each, one `AddMember` and one
//! `SetCreditLimit` are timed too (changes of the cooperative's rules: the first only
//! widens what applies, the second makes the node judge every transfer again).

use crate::ledger::{drive, per_caller, sign_round, Calls};
use crate::{row, Row};
use anyhow::{bail, Context as _};
use icn_proto::gossip::v1::gossip_client::GossipClient;
use icn_proto::gossip::v1::GetVersionVectorRequest;
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::{Account, GetBalanceRequest};
use icn_testkit::ledger::{TestCoop, CURRENCY};
use icn_testkit::{Bootstrap, Network, TestNode};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const MEMBERS: usize = 200;
const CREDIT_LIMIT: i64 = 1_000_000_000;
/// Transfers signed and submitted per round: bounds the bench's own memory.
const ROUND: usize = 100_000;
/// Concurrent publishers filling the gossip topic.
const PUBLISHERS: usize = 16;
/// How long a service may take to be ready before the bench gives up.
const READY_WITHIN: Duration = Duration::from_secs(600);

pub async fn run(transfers: usize, entries: usize) -> anyhow::Result<Vec<Row>> {
    let mut net = Network::builder(1)
        .services(&["netd", "gossip", "ledger"])
        .bootstrap(Bootstrap::None)
        .env("ICN__LOG__LEVEL", "warn")
        // The ledger's start-up loads what its store holds instead of replaying the
        // journal only with this (its cost: half the batch throughput; the ledger
        // section measures the default).
        .env("ICN__CREDIT__HISTORY_IN_STORE", "true")
        .start()
        .await?;
    let mut rows = Vec::new();
    let mut client = net.nodes[0].ledger().await?;
    let coop = TestCoop::create(&mut client, "restart", MEMBERS, CREDIT_LIMIT).await?;
    let mut heads = vec![Account::default(); MEMBERS];
    let mut stored = 0;
    for target in [transfers / 10, transfers] {
        while stored < target {
            let per_payer = ROUND.min(target - stored).div_ceil(MEMBERS);
            // Signing is the members' work, on their devices: done between the timed parts.
            let (chains, next) = tokio::task::block_in_place(|| sign_round(&coop.id, &coop.members, heads, per_payer));
            heads = next;
            let run = drive(&client, per_caller(chains, 8), Calls::Batches(1000), Duration::from_secs(3600)).await?;
            stored += run.committed as usize;
        }
        let before = coop.balances(&mut client.clone().max_decoding_message_size(64 << 20)).await?;
        let node = &mut net.nodes[0];
        node.stop("ledger", Duration::from_secs(60)).await?;
        let started = Instant::now();
        node.start("ledger").await?;
        ledger_ready(node, &coop, &before).await?;
        let ready = started.elapsed();
        rows.push(row(
            format!("ledger restart to ready, {stored} transfers stored (history in store)"),
            ms(ready),
            "ms",
        ));
        rows.push(row(
            format!("ledger RSS at rest after restart, {stored} transfers (history in store)"),
            rss_mib(node, "ledger")?,
            "MiB",
        ));
        client = node.ledger().await?;
        let after = coop.balances(&mut client.clone().max_decoding_message_size(64 << 20)).await?;
        if after != before {
            bail!("after the restart the ledger's balances differ from before");
        }
        // A new member with this history stored: the admission is a change of rules.
        let admitted = Instant::now();
        admit(&mut client, &coop).await?;
        rows.push(row(format!("ledger AddMember, {stored} transfers stored"), ms(admitted.elapsed()), "ms"));
        // A credit limit may undo what applied: every transfer is judged again.
        let limited = Instant::now();
        set_limit(&mut client, &coop).await?;
        rows.push(row(format!("ledger SetCreditLimit (recomputes), {stored} transfers"), ms(limited.elapsed()), "ms"));
    }

    let node = &mut net.nodes[0];
    crate::gossip::gossip_topic(node, "restart").await?;
    let gossip = GossipClient::new(node.channel("gossip").await?);
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let mut gossip = gossip.clone();
        let share = entries / PUBLISHERS + usize::from(p < entries % PUBLISHERS);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                gossip.publish(crate::gossip::gossip_publish("restart", vec![7u8; 256])).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await?.context("a publisher failed")?;
    }
    let expected = version_vector(&mut gossip.clone()).await?;
    let held = node.metric("gossip", "icn_gossip_entries_stored_total").await?;
    node.stop("gossip", Duration::from_secs(60)).await?;
    let started = Instant::now();
    node.start("gossip").await?;
    let deadline = started + READY_WITHIN;
    loop {
        let answer = match node.channel("gossip").await {
            Ok(channel) => version_vector(&mut GossipClient::new(channel)).await.ok(),
            Err(_) => None,
        };
        if answer.as_ref() == Some(&expected) {
            break;
        }
        if Instant::now() > deadline {
            bail!("gossip was not serving its version vector within {READY_WITHIN:?} of a restart");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready = started.elapsed();
    let label = format!("{entries} entries on one topic, {held:.0} stored in all");
    rows.push(row(format!("gossip restart to ready, {label}"), ms(ready), "ms"));
    rows.push(row(format!("gossip RSS at rest after restart, {label}"), rss_mib(node, "gossip")?, "MiB"));
    rows.push(row("netd RSS at rest".into(), rss_mib(node, "netd")?, "MiB"));
    Ok(rows)
}

/// Admits a new member, signed by the founder, and waits for the answer.
async fn admit(client: &mut LedgerClient<Channel>, coop: &TestCoop) -> anyhow::Result<()> {
    use icn_proto::ledger::v1::{AddMemberRequest, MemberAdmission, MemberRole};
    let admission = icn_ledger_records::sign(
        &coop.founder,
        MemberAdmission {
            coop_id: coop.id.clone(),
            member: icn_identity::NodeIdentity::generate().did().to_string(),
            role: MemberRole::Member as i32,
            created_at_ms: icn_runtime::now_ms(),
            ..Default::default()
        },
    );
    client.add_member(AddMemberRequest { admission: Some(admission) }).await?;
    Ok(())
}

/// Sets the currency's default credit limit again (to what it is: every transfer still
/// applies), signed by the founder, and waits for the answer.
async fn set_limit(client: &mut LedgerClient<Channel>, coop: &TestCoop) -> anyhow::Result<()> {
    use icn_proto::ledger::v1::{CreditLimit, SetCreditLimitRequest};
    let limit = icn_ledger_records::sign(
        &coop.founder,
        CreditLimit {
            coop_id: coop.id.clone(),
            currency: CURRENCY.into(),
            limit: CREDIT_LIMIT,
            created_at_ms: icn_runtime::now_ms(),
            ..Default::default()
        },
    );
    client.set_credit_limit(SetCreditLimitRequest { limit: Some(limit) }).await?;
    Ok(())
}

/// Polls until the ledger answers every member's balance as it was before the restart.
async fn ledger_ready(node: &TestNode, coop: &TestCoop, before: &BTreeMap<String, i64>) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    let mut next = 0;
    let members: Vec<&String> = before.keys().collect();
    while next < members.len() {
        if Instant::now() > deadline {
            bail!("the ledger was not serving correct balances within {READY_WITHIN:?} of a restart");
        }
        let Ok(mut client) = node.ledger().await else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        while next < members.len() {
            let request = GetBalanceRequest {
                coop_id: coop.id.clone(),
                currency: CURRENCY.into(),
                member: members[next].clone(),
            };
            match client.get_balance(request).await {
                Ok(r) if r.get_ref().account.as_ref().is_some_and(|a| a.balance == before[members[next]]) => next += 1,
                Ok(r) => bail!("after a restart the ledger answered a wrong balance: {:?}", r.into_inner().account),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn version_vector(
    client: &mut GossipClient<tonic::transport::Channel>,
) -> anyhow::Result<(u64, Option<icn_proto::gossip::v1::VersionVector>)> {
    let r = client
        .get_version_vector(GetVersionVectorRequest { topic: "restart".into(), reader: String::new() })
        .await?
        .into_inner();
    Ok((r.last_position, r.vector))
}

/// Resident memory of a service, from `/proc/<pid>/status`.
fn rss_mib(node: &TestNode, service: &str) -> anyhow::Result<f64> {
    let pid = node.pid(service).with_context(|| format!("{service} is not running"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    Ok(kib / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
