//! ledger: signed transfers/s that one node commits durably, one per `SubmitTransfer`
//! call and in `SubmitTransfers` batches, with each call's latency, beside this
//! machine's Ed25519 verification rate measured in the same run. Every transfer costs
//! the node one signature check, so that rate bounds what any ledger that checks its
//! members' signatures can commit here.
//!
//! Transfers are signed before the clock starts: signing is the member's work, done on
//! the member's device, not the node's. The node's commit figures (group size, time per
//! group) and the CPU time of each process come from the same run, to show where the
//! time goes. Then the peer: a PostgreSQL double-entry ledger under the same shapes of
//! load (unary at 64 connections, batches of 100 at 8), and ICN's rate as a multiple of
//! it.

mod ceiling;

use crate::postgres::{self, PgLoad};
use crate::{row, Row};
use anyhow::{bail, Context as _};
use ceiling::{cores, verification_ceiling, Ceiling, VERIFY_BATCH};
use icn_identity::NodeIdentity;
use icn_ledger_records::{next_transfer, Payment};
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::{Account, SubmitTransferRequest, SubmitTransfersRequest, Transfer, TransferStatus};
use icn_testkit::ledger::{TestCoop, CURRENCY};
use icn_testkit::{Bootstrap, Network, TestNode};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Members of each benchmark cooperative; every one pays along its own chain.
const MEMBERS: usize = 200;
/// Each transfer moves 1 unit from a zero balance; this limit refuses none of them.
const CREDIT_LIMIT: i64 = 1_000_000_000;

/// How a load submits its transfers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Calls {
    /// One transfer per `SubmitTransfer`.
    Unary,
    /// This many transfers per `SubmitTransfers`.
    Batches(usize),
}

struct Load {
    calls: Calls,
    /// Concurrent callers, each with its own share of the payers.
    callers: usize,
    /// Transfers signed in advance per second of the run: a node faster than this uses
    /// them up before the time is over, and its rate still holds over the shorter run.
    signed_per_second: usize,
    /// The cooperative names the node its one validator: the node signs and journals a
    /// vote for every transfer it applies (payee finality), which this load prices.
    validator: bool,
    /// The node keeps applied transfers in its store (`credit.history_in_store`), on a
    /// node of its own: the price of a bounded memory and a fast restart.
    history_in_store: bool,
}

const LOADS: [Load; 6] = [
    // One caller: the latency of a commit when nothing waits.
    Load { calls: Calls::Unary, callers: 1, signed_per_second: 2_000, validator: false, history_in_store: false },
    Load { calls: Calls::Unary, callers: 64, signed_per_second: 8_000, validator: false, history_in_store: false },
    Load {
        calls: Calls::Batches(100),
        callers: 8,
        signed_per_second: 24_000,
        validator: false,
        history_in_store: false,
    },
    Load {
        calls: Calls::Batches(1000),
        callers: 8,
        signed_per_second: 24_000,
        validator: false,
        history_in_store: false,
    },
    Load {
        calls: Calls::Batches(100),
        callers: 8,
        signed_per_second: 24_000,
        validator: true,
        history_in_store: false,
    },
    Load {
        calls: Calls::Batches(100),
        callers: 8,
        signed_per_second: 24_000,
        validator: false,
        history_in_store: true,
    },
];

pub async fn run(seconds: u64) -> anyhow::Result<Vec<Row>> {
    // First, while nothing else runs.
    let ceiling = tokio::task::spawn_blocking(verification_ceiling).await?;
    let cores = ceiling.cores;
    let mut rows = vec![
        row("Ed25519 verify/s (ZIP-215, Did::verify_for), one core".into(), ceiling.strict_one_core, "verif/s"),
        row(format!("Ed25519 verify/s (ZIP-215, Did::verify_for), {cores} cores"), ceiling.strict_all_cores, "verif/s"),
        row(
            format!("Ed25519 batch verify/s (ZIP-215), batches of {VERIFY_BATCH}, {cores} cores"),
            ceiling.batch_all_cores,
            "verif/s",
        ),
        row(
            format!("ledger's signature check/s (DID, hash, verify), {cores} cores"),
            ceiling.ledger_all_cores,
            "verif/s",
        ),
    ];

    let mut rates = Vec::new();
    for in_store in [false, true] {
        let net = Network::builder(1)
            .services(&["netd", "gossip", "ledger"])
            .bootstrap(Bootstrap::None)
            .env("ICN__LOG__LEVEL", "warn")
            .env("ICN__CREDIT__HISTORY_IN_STORE", if in_store { "true" } else { "false" })
            .start()
            .await?;
        for (i, load) in LOADS.iter().enumerate().filter(|(_, l)| l.history_in_store == in_store) {
            let (rate, load_rows, cost) = run_load(&net.nodes[0], i, load, seconds, &ceiling).await?;
            rates.push((load, rate, cost));
            rows.extend(load_rows);
        }
    }

    // The peer, in the same sitting: PostgreSQL's double-entry ledger.
    let pg_loads = [
        PgLoad { connections: 64, batch: 1, signed_per_second: 16_000 },
        PgLoad { connections: 8, batch: 100, signed_per_second: 48_000 },
    ];
    let pg = postgres::run(seconds, &pg_loads).await.context("the PostgreSQL ledger")?;
    for (load, result) in pg_loads.iter().zip(&pg) {
        let label = if load.batch == 1 {
            format!("unary, {} connections", load.connections)
        } else {
            format!("batches of {}, {} connections", load.batch, load.connections)
        };
        rows.push(row(format!("PostgreSQL ledger transfers/s committed, {label}"), result.rate, "transfers/s"));
        rows.push(row(format!("PostgreSQL ledger {label}: latency p50 per transaction"), result.p50_ms, "ms"));
        rows.push(row(format!("PostgreSQL ledger {label}: latency p99 per transaction"), result.p99_ms, "ms"));
        rows.push(row(format!("PostgreSQL ledger {label}: committed"), result.committed as f64, "transfers"));
        rows.push(row(format!("PostgreSQL ledger {label}: refused at the floor"), result.refused as f64, "transfers"));
        // ICN beside it: unary at 64 callers, and batches of 100 at 8 callers (also with
        // the history in the store).
        for in_store in [false, true] {
            let icn = rates.iter().find(|(l, _, _)| {
                !l.validator
                    && l.history_in_store == in_store
                    && l.callers == load.connections
                    && match l.calls {
                        Calls::Unary => load.batch == 1,
                        Calls::Batches(n) => n == load.batch,
                    }
            });
            if let Some((_, icn, cost)) = icn {
                let store = if in_store { " (history in store)" } else { "" };
                rows.push(row(format!("ICN ledger{store} ÷ PostgreSQL ledger, {label}"), icn / result.rate, "×"));
                if load.batch > 1 {
                    rows.extend(budget_rows(cost, &ceiling, result.rate));
                }
            }
        }
    }
    Ok(rows)
}

/// What one load's transfers cost, each: what the budget beside PostgreSQL is held to.
struct Cost {
    /// The load's label in its rows.
    label: String,
    /// CPU of the node's services and the load generator, µs.
    cpu_us: f64,
    /// The committer's apply and synced write, wall time, µs.
    committer_us: f64,
}

/// What each transfer cost (all processes) beside the CPU it may cost to commit twice
/// PostgreSQL's rate of the same run on these cores; and two parts measured apart.
fn budget_rows(cost: &Cost, ceiling: &Ceiling, postgres_rate: f64) -> Vec<Row> {
    let cores = ceiling.cores;
    let budget = cores as f64 * 1e6 / (2.0 * postgres_rate);
    let label = &cost.label;
    vec![
        Row {
            name: format!("ledger {label}: CPU per transfer, all processes"),
            value: cost.cpu_us,
            unit: "µs",
            ceiling: Some((format!("budget for 2× PostgreSQL in this run ({cores} cores ÷ twice its rate)"), budget)),
        },
        row(
            format!("ledger {label}: of which the signature check (at this run's batch-verify rate)"),
            cores as f64 * 1e6 / ceiling.batch_all_cores,
            "µs",
        ),
        row(format!("ledger {label}: committer per transfer (apply + synced write, wall)"), cost.committer_us, "µs"),
    ]
}

/// One load on `node`, in a cooperative of its own: its rate, its rows and its cost.
async fn run_load(
    node: &TestNode,
    i: usize,
    load: &Load,
    seconds: u64,
    ceiling: &Ceiling,
) -> anyhow::Result<(f64, Vec<Row>, Cost)> {
    let mut client = node.ledger().await?;
    // A cooperative per load, so each starts from empty accounts.
    let coop = TestCoop::create(&mut client, &format!("bench-{i}"), MEMBERS, CREDIT_LIMIT).await?;
    if load.validator {
        let validators = icn_ledger_records::sign(
            &coop.founder,
            icn_proto::ledger::v1::Validators {
                coop_id: coop.id.clone(),
                validators: vec![node.did().to_string()],
                quorum: 1,
                created_at_ms: icn_runtime::now_ms(),
                ..Default::default()
            },
        );
        let request = icn_proto::ledger::v1::SetValidatorsRequest { validators: Some(validators) };
        client.set_validators(request).await?;
    }
    let per_payer = (seconds as usize * load.signed_per_second).div_ceil(MEMBERS);
    let (coop, chains) = tokio::task::spawn_blocking(move || {
        let chains = sign_chains(&coop.id, &coop.members, per_payer);
        (coop, chains)
    })
    .await?;
    let first = icn_ledger_records::hash(&chains[0][0]).to_vec();
    let before = Snapshot::take(node).await?;
    let run = drive(&client, per_caller(chains, load.callers), load.calls, Duration::from_secs(seconds)).await?;
    let after = Snapshot::take(node).await?;

    if run.committed == 0 {
        bail!("no transfer was committed in {seconds} s");
    }
    // Everything acknowledged is applied, and the books still balance.
    let stats = coop.stats(&mut client).await?;
    if stats.transfer_count != run.committed {
        bail!("{} transfers acknowledged but the node counts {} applied", run.committed, stats.transfer_count);
    }
    // Each account in a page lists its unclaimed incoming transfers (up to MAX_DEPS
    // hashes): after a run like this a page of 200 is past tonic's default 4 MiB.
    let mut reader = client.clone().max_decoding_message_size(64 << 20);
    coop.assert_invariants(&coop.balances(&mut reader).await?);
    if load.validator {
        let key = icn_proto::ledger::v1::get_transfer_request::Key::Hash(first);
        let got = client.get_transfer(icn_proto::ledger::v1::GetTransferRequest { key: Some(key) }).await?;
        if !got.into_inner().record.is_some_and(|r| r.certified) {
            bail!("the node is the validator, but a transfer it applied is not certified");
        }
    }
    let rate = run.committed as f64 / run.elapsed.as_secs_f64();
    let (rows, cost) = load_rows(load, ceiling, run, &before, &after);
    Ok((rate, rows, cost))
}

/// The rate beside its ceiling, the latencies, and what the node did meanwhile.
fn load_rows(load: &Load, ceiling: &Ceiling, run: Driven, before: &Snapshot, after: &Snapshot) -> (Vec<Row>, Cost) {
    let cores = ceiling.cores;
    let (label, per_call, beside) = match load.calls {
        Calls::Unary => (
            format!("unary, {} caller{}", load.callers, if load.callers == 1 { "" } else { "s" }),
            "call",
            (format!("Ed25519 verify (ZIP-215) on {cores} cores"), ceiling.strict_all_cores),
        ),
        Calls::Batches(n) => (
            format!(
                "batches of {n}, {} callers{}{}",
                load.callers,
                if load.validator { ", node votes as validator" } else { "" },
                if load.history_in_store { ", history in store" } else { "" }
            ),
            "batch",
            (format!("Ed25519 batch verify (ZIP-215) on {cores} cores"), ceiling.batch_all_cores),
        ),
    };
    let committed = run.committed as f64;
    let rate = committed / run.elapsed.as_secs_f64();
    let (p50, p99) = percentiles(run.latencies);
    let groups = after.groups - before.groups;
    let mut rows = vec![
        Row {
            name: format!("ledger transfers/s committed durably, {label}"),
            value: rate,
            unit: "transfers/s",
            ceiling: Some(beside),
        },
        row(format!("ledger {label}: latency p50 per {per_call}"), p50, "ms"),
        row(format!("ledger {label}: latency p99 per {per_call}"), p99, "ms"),
        row(format!("ledger {label}: commit groups"), groups, "groups"),
        row(
            format!("ledger {label}: entries per group, mean"),
            (after.entries - before.entries) / groups.max(1.0),
            "entries",
        ),
        row(
            format!("ledger {label}: apply + synced write per group, mean"),
            (after.commit_seconds - before.commit_seconds) / groups.max(1.0) * 1000.0,
            "ms",
        ),
        row(
            format!("ledger {label}: gossip publications"),
            after.gossip_published - before.gossip_published,
            "entries",
        ),
    ];
    let mut cpu_us = 0.0;
    for ((process, a), (_, b)) in after.cpu.iter().zip(&before.cpu) {
        let us = (a - b) / committed * 1e6;
        cpu_us += us;
        rows.push(row(format!("ledger {label}: CPU per transfer, {process}"), us, "µs"));
    }
    let entries = (after.entries - before.entries).max(1.0);
    let committer_us = (after.commit_seconds - before.commit_seconds) / entries * 1e6;
    (rows, Cost { label, cpu_us, committer_us })
}

/// Each member's first `per_payer` transfers in chain order: sequence numbers from 1,
/// each linked to the one before, paying the next member 1 unit. Without deps the payer
/// spends from its credit limit alone, so no transfer waits for another payer's.
fn sign_chains(coop_id: &str, members: &[NodeIdentity], per_payer: usize) -> Vec<Vec<Transfer>> {
    sign_round(coop_id, members, vec![Account::default(); members.len()], per_payer).0
}

/// [`sign_chains`] from given chain heads (one per member): the chains go on from each
/// head, and the new heads come back for the next round.
pub(crate) fn sign_round(
    coop_id: &str,
    members: &[NodeIdentity],
    heads: Vec<Account>,
    per_payer: usize,
) -> (Vec<Vec<Transfer>>, Vec<Account>) {
    let now = icn_runtime::now_ms();
    let chain = |(i, mut account): (usize, Account)| {
        let payee = members[(i + 1) % members.len()].did().to_string();
        let payment =
            Payment { coop_id, currency: CURRENCY, payee: &payee, amount: 1, memo: "bench", idempotency_id: "" };
        let transfers = (0..per_payer)
            .map(|_| {
                let t = next_transfer(&members[i], &account, &payment, now);
                account.seq = t.payer_seq;
                account.head_hash = icn_ledger_records::hash(&t).to_vec();
                t
            })
            .collect::<Vec<_>>();
        (transfers, account)
    };
    let chain = &chain;
    let per_thread = members.len().div_ceil(cores());
    let mut heads = heads.into_iter().enumerate().collect::<Vec<_>>();
    let parts: Vec<(Vec<Transfer>, Account)> = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        while !heads.is_empty() {
            let part: Vec<_> = heads.drain(..per_thread.min(heads.len())).collect();
            threads.push(scope.spawn(move || part.into_iter().map(chain).collect::<Vec<_>>()));
        }
        threads.into_iter().flat_map(|p| p.join().expect("signing does not panic")).collect()
    });
    parts.into_iter().unzip()
}

/// Splits the chains among `callers`: caller k takes payers k, k + callers, … and sends
/// their transfers round by round, so every chain reaches the node in order.
pub(crate) fn per_caller(chains: Vec<Vec<Transfer>>, callers: usize) -> Vec<Vec<Transfer>> {
    let mut owned: Vec<Vec<std::vec::IntoIter<Transfer>>> = (0..callers).map(|_| Vec::new()).collect();
    for (i, chain) in chains.into_iter().enumerate() {
        owned[i % callers].push(chain.into_iter());
    }
    owned
        .into_iter()
        .map(|mut chains| {
            let mut stream = Vec::new();
            loop {
                let before = stream.len();
                stream.extend(chains.iter_mut().filter_map(Iterator::next));
                if stream.len() == before {
                    return stream;
                }
            }
        })
        .collect()
}

pub(crate) struct Driven {
    pub(crate) committed: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Every caller submits its stream until it is used up or `duration` has passed; each
/// acknowledged transfer must be APPLIED, or the benchmark fails.
pub(crate) async fn drive(
    client: &LedgerClient<Channel>,
    streams: Vec<Vec<Transfer>>,
    calls: Calls,
    duration: Duration,
) -> anyhow::Result<Driven> {
    let size = match calls {
        Calls::Unary => 1,
        Calls::Batches(n) => n,
    };
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for stream in streams {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut committed = 0u64;
            let mut rest = stream.into_iter();
            while Instant::now() < end {
                let transfers: Vec<Transfer> = rest.by_ref().take(size).collect();
                let Some(first) = transfers.first() else { break };
                let (payer, seq) = (first.payer.clone(), first.payer_seq);
                let sent = Instant::now();
                let results = match calls {
                    Calls::Unary => {
                        let transfer = transfers.into_iter().next();
                        vec![client.submit_transfer(SubmitTransferRequest { transfer }).await?.into_inner()]
                    }
                    Calls::Batches(_) => {
                        client.submit_transfers(SubmitTransfersRequest { transfers }).await?.into_inner().results
                    }
                };
                latencies.push(sent.elapsed());
                for r in &results {
                    let status = r.record.as_ref().map(|r| r.status).unwrap_or_default();
                    if status != TransferStatus::Applied as i32 || r.duplicate {
                        bail!(
                            "a transfer of {payer} (from seq {seq}) came back {:?}{}: {}",
                            TransferStatus::try_from(status).unwrap_or(TransferStatus::Unspecified),
                            if r.duplicate { " as a duplicate" } else { "" },
                            r.record.as_ref().map(|r| r.detail.as_str()).unwrap_or_default()
                        );
                    }
                }
                committed += results.len() as u64;
            }
            anyhow::Ok((committed, latencies))
        }));
    }
    let mut driven = Driven { committed: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for t in tasks {
        let (committed, latencies) = t.await?.context("a caller failed")?;
        driven.committed += committed;
        driven.latencies.extend(latencies);
    }
    driven.elapsed = start.elapsed();
    Ok(driven)
}

/// p50 and p99 in milliseconds.
fn percentiles(mut latencies: Vec<Duration>) -> (f64, f64) {
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    (p(0.5), p(0.99))
}

/// What the node reports, and the CPU its processes and this one have used.
struct Snapshot {
    groups: f64,
    entries: f64,
    commit_seconds: f64,
    gossip_published: f64,
    cpu: Vec<(&'static str, f64)>,
}

impl Snapshot {
    async fn take(node: &TestNode) -> anyhow::Result<Snapshot> {
        let mut cpu = Vec::new();
        for service in ["ledger", "gossip", "netd"] {
            let pid = node.pid(service).with_context(|| format!("{service} is not running"))?;
            cpu.push((service, cpu_seconds(&pid.to_string())?));
        }
        cpu.push(("load generator", cpu_seconds("self")?));
        Ok(Snapshot {
            groups: node.metric("ledger", "icn_ledger_commit_groups_total").await?,
            entries: node.metric("ledger", "icn_ledger_entries_stored_total").await?,
            commit_seconds: node.metric("ledger", "icn_ledger_commit_seconds_sum").await?,
            gossip_published: node.metric("gossip", "icn_gossip_entries_published_total").await?,
            cpu,
        })
    }
}

/// User and system CPU seconds of a process so far, from `/proc/<pid>/stat`.
pub(crate) fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / per_second)
}
