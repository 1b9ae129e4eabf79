//! The peer the ledger's figures stand beside: a plain double-entry ledger in PostgreSQL,
//! run in the same sitting (issue #12). Debian's PostgreSQL 15 with its stock settings
//! (fsync and synchronous_commit on), in a cluster of its own in a temporary directory,
//! reached over TCP on loopback as the ledger's callers reach it.
//!
//! The ledger: 10,000 accounts with a floor of −100,000; each transfer moves 1..10,000
//! units between two random accounts, signed by its payer with Ed25519 (the ledger's own
//! purpose and rule, [`icn_identity::Did::verify_for`]) and verified by the client before
//! it commits, as ICN's ledger verifies before it commits. One SQL transaction per
//! transfer (64 connections) or per batch of 100 (8 connections), READ COMMITTED, the two
//! (or the batch's) account rows locked in account order, the floor checked, a transfer
//! row and its two entries written, both balances updated. The transaction is one call
//! of a PL/pgSQL function, so each costs one round trip, and the tables have no foreign
//! keys (the function is the only writer; with them the batches ran 30 % slower here):
//! the strongest plain design we know, so that ICN is measured against a good PostgreSQL
//! ledger, not a slow one.

use anyhow::{bail, Context};
use icn_identity::{Did, NodeIdentity, Purpose};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

const ACCOUNTS: i32 = 10_000;
const FLOOR: i64 = -100_000;
const MAX_AMOUNT: i64 = 10_000;

/// How a load calls PostgreSQL.
pub struct PgLoad {
    pub connections: usize,
    /// Transfers per SQL transaction.
    pub batch: usize,
    /// Transfers signed in advance per second of the run.
    pub signed_per_second: usize,
}

pub struct PgResult {
    pub committed: u64,
    pub refused: u64,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A PostgreSQL cluster of the benchmark's own, stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    server: Child,
    port: u16,
}

/// The directory of the installed PostgreSQL's programs (initdb, postgres).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed: run scripts/install-bench-peers.sh (make bench does)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().context("no PostgreSQL version under /usr/lib/postgresql has initdb")
}

/// Runs a PostgreSQL program: as the `postgres` user when this is root (PostgreSQL
/// refuses to run as root), else as this user.
fn pg_command(program: &Path) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Cluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("icn-bench-pg").tempdir_in("/var/tmp")?;
        let data = dir.path().join("data");
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status()?;
            if !status.success() {
                bail!("chown of {} to postgres failed", dir.path().display());
            }
        }
        let out = pg_command(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "bench", "-E", "UTF8", "--locale", "C", "-D"])
            .arg(&data)
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        // Stock settings but for where it listens: fsync, synchronous_commit and the
        // WAL settings are PostgreSQL 15's defaults. 64 connections need more than the
        // default 100 only with headroom; the default is kept.
        let server = pg_command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        let cluster = Cluster { dir, server, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cluster.connect().await {
                Ok(_) => return Ok(cluster),
                Err(e) if Instant::now() > deadline => return Err(e.context("PostgreSQL did not come up in 30 s")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        let config = format!("host=127.0.0.1 port={} user=bench dbname=postgres", self.port);
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates the ledger afresh: accounts at zero, no transfers.
    async fn reset(&self) -> anyhow::Result<()> {
        let c = self.connect().await?;
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS entries, transfers, accounts;
             CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint NOT NULL, floor bigint NOT NULL);
             CREATE TABLE transfers (
                 id bigserial PRIMARY KEY,
                 payer integer NOT NULL,
                 payee integer NOT NULL,
                 amount bigint NOT NULL CHECK (amount > 0),
                 signature bytea NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE entries (
                 transfer_id bigint NOT NULL,
                 account integer NOT NULL,
                 amount bigint NOT NULL);
             CREATE INDEX entries_account ON entries (account);
             INSERT INTO accounts SELECT g, 0, {FLOOR} FROM generate_series(1, {ACCOUNTS}) g;
             -- One transaction: lock every account of the batch in id order, then apply
             -- each transfer that keeps its payer at or above the floor. Returns how many.
             CREATE OR REPLACE FUNCTION transfer_batch(payers integer[], payees integer[], amounts bigint[], sigs bytea[])
             RETURNS integer LANGUAGE plpgsql AS $$
             DECLARE
                 applied integer := 0;
                 payer_balance bigint;
                 payer_floor bigint;
                 tid bigint;
             BEGIN
                 PERFORM 1 FROM accounts WHERE id = ANY(payers || payees) ORDER BY id FOR UPDATE;
                 FOR i IN 1 .. array_length(payers, 1) LOOP
                     SELECT balance, floor INTO payer_balance, payer_floor FROM accounts WHERE id = payers[i];
                     IF payer_balance - amounts[i] >= payer_floor THEN
                         UPDATE accounts SET balance = balance - amounts[i] WHERE id = payers[i];
                         UPDATE accounts SET balance = balance + amounts[i] WHERE id = payees[i];
                         INSERT INTO transfers (payer, payee, amount, signature)
                             VALUES (payers[i], payees[i], amounts[i], sigs[i]) RETURNING id INTO tid;
                         INSERT INTO entries (transfer_id, account, amount)
                             VALUES (tid, payers[i], -amounts[i]), (tid, payees[i], amounts[i]);
                         applied := applied + 1;
                     END IF;
                 END LOOP;
                 RETURN applied;
             END $$;
             CHECKPOINT;"
        ))
        .await?;
        Ok(())
    }

    /// Sum of balances and count of transfers: the books must balance after a load.
    async fn books(&self) -> anyhow::Result<(i64, i64)> {
        let c = self.connect().await?;
        let row = c
            .query_one(
                "SELECT (SELECT coalesce(sum(balance), 0)::bigint FROM accounts), (SELECT count(*) FROM transfers)",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGINT to the postmaster (whose pid heads postmaster.pid; `runuser` between
        // here and it forwards nothing): PostgreSQL's fast shutdown. The directory goes
        // with `dir`.
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let pid = std::fs::read_to_string(pid_file).ok().and_then(|s| s.lines().next()?.trim().parse::<i32>().ok());
        unsafe { libc::kill(pid.unwrap_or(self.server.id() as i32), libc::SIGINT) };
        let _ = self.server.wait();
    }
}

/// One signed transfer as the client holds it.
#[derive(Clone)]
struct Signed {
    payer: i32,
    payee: i32,
    amount: i64,
    digest: [u8; 32],
    signature: Vec<u8>,
}

fn digest(payer: i32, payee: i32, amount: i64, nonce: u64) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(payer.to_be_bytes());
    h.update(payee.to_be_bytes());
    h.update(amount.to_be_bytes());
    h.update(nonce.to_be_bytes());
    h.finalize().into()
}

/// Signs `count` random transfers between random accounts, on every core.
fn sign(keys: &[NodeIdentity], count: usize, seed: u64) -> Vec<Signed> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + t as u64);
                    (0..per)
                        .map(|i| {
                            let payer = rng.gen_range(0..keys.len()) as i32 + 1;
                            let mut payee = rng.gen_range(1..=ACCOUNTS);
                            if payee == payer {
                                payee = payee % ACCOUNTS + 1;
                            }
                            let amount = rng.gen_range(1..=MAX_AMOUNT);
                            let digest = digest(payer, payee, amount, (t * per + i) as u64);
                            let signature =
                                keys[payer as usize - 1].sign_for(Purpose::Transfer, &digest).to_bytes().to_vec();
                            Signed { payer, payee, amount, digest, signature }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("signing does not panic")).collect()
    })
}

/// Runs each load against a fresh ledger for `seconds`.
pub async fn run(seconds: u64, loads: &[PgLoad]) -> anyhow::Result<Vec<PgResult>> {
    let cluster = Cluster::start().await?;
    let keys: Vec<NodeIdentity> =
        tokio::task::block_in_place(|| (0..ACCOUNTS).map(|_| NodeIdentity::generate()).collect());
    let dids: std::sync::Arc<Vec<Did>> = std::sync::Arc::new(keys.iter().map(|k| k.did().clone()).collect());
    let mut results = Vec::new();
    for (n, load) in loads.iter().enumerate() {
        cluster.reset().await?;
        let count = seconds as usize * load.signed_per_second;
        let keys_ref = &keys;
        let transfers = tokio::task::block_in_place(|| sign(keys_ref, count, n as u64 * 1000));
        let per = transfers.len().div_ceil(load.connections);
        let mut callers = Vec::new();
        for share in transfers.chunks(per) {
            callers.push((cluster.connect().await?, share.to_vec()));
        }
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for (client, share) in callers {
            let (dids, batch) = (dids.clone(), load.batch);
            tasks.push(tokio::spawn(async move { drive(client, share, batch, &dids, end).await }));
        }
        let (mut committed, mut refused, mut latencies) = (0u64, 0u64, Vec::new());
        for t in tasks {
            let (c, r, l) = t.await??;
            committed += c;
            refused += r;
            latencies.extend(l);
        }
        let elapsed = start.elapsed().min(Duration::from_secs(seconds)).max(Duration::from_millis(1));
        let (sum, stored) = cluster.books().await?;
        if sum != 0 || stored as u64 != committed {
            bail!(
                "the PostgreSQL ledger does not balance: sum {sum}, {stored} transfers stored, {committed} committed"
            );
        }
        latencies.sort();
        let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        results.push(PgResult {
            committed,
            refused,
            rate: committed as f64 / elapsed.as_secs_f64(),
            p50_ms: ms(at(0.5)),
            p99_ms: ms(at(0.99)),
        });
    }
    Ok(results)
}

/// One connection's share: transactions of `batch` transfers until `end`. Returns
/// (committed, refused at the floor, latency per transaction).
async fn drive(
    client: Client,
    share: Vec<Signed>,
    batch: usize,
    dids: &[Did],
    end: Instant,
) -> anyhow::Result<(u64, u64, Vec<Duration>)> {
    let call = client.prepare("SELECT transfer_batch($1, $2, $3, $4)").await?;
    let (mut committed, mut refused, mut latencies) = (0u64, 0u64, Vec::new());
    for group in share.chunks(batch) {
        if Instant::now() >= end {
            break;
        }
        let started = Instant::now();
        // The client checks every signature before it commits.
        for t in group {
            if !dids[t.payer as usize - 1].verify_for(Purpose::Transfer, &t.digest, &t.signature) {
                bail!("a signature the benchmark made does not verify");
            }
        }
        let payers: Vec<i32> = group.iter().map(|t| t.payer).collect();
        let payees: Vec<i32> = group.iter().map(|t| t.payee).collect();
        let amounts: Vec<i64> = group.iter().map(|t| t.amount).collect();
        let signatures: Vec<&[u8]> = group.iter().map(|t| t.signature.as_slice()).collect();
        let applied: i32 = loop {
            match client.query_one(&call, &[&payers, &payees, &amounts, &signatures]).await {
                Ok(row) => break row.get(0),
                // Locks are taken in account order, but a deadlock is retried anyway.
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        committed += applied as u64;
        refused += (group.len() - applied as usize) as u64;
        latencies.push(started.elapsed());
    }
    Ok((committed, refused, latencies))
}
