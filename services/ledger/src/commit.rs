//! The ledger node: its state, its store and its one writer.
//!
//! Every change goes through the committer, a dedicated thread (the shared group
//! committer, [`icn_storage::group`]). Submissions queue; the committer takes what is
//! waiting (up to `credit.group_max_entries`), applies it to the state under the write
//! lock, writes the whole group in one synced batch, and only then releases the lock and
//! answers. So a group shares one fsync, readers never see an entry that is
//! not durable, and the journal order is the order of application.

use crate::error::LedgerError;
use crate::replay::{check_stored_balances, compare, replay};
use crate::state::{Checked, GroupWrite, Outcome, Source, State};
use crate::store::{Store, StoreError};
use icn_config::CreditConfig;
use icn_proto::ledger::v1::{RecomputeBalancesResponse, TransferRecord};
use icn_proto::ledger::wire::v1::{ForkReport, LedgerEntry};
use icn_runtime::{now_ms, Context};
use icn_storage::group::{GroupLimits, GroupQueue};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tokio::sync::{oneshot, Notify, RwLock, RwLockReadGuard};

#[derive(Clone)]
pub struct LedgerMetrics {
    pub entries: IntCounterVec,
    pub transfers: IntCounterVec,
    pub groups: IntCounter,
    pub group_seconds: Histogram,
    pub forks: IntCounter,
    pub journal_version: IntGauge,
    pub drifts: IntCounter,
    pub published: IntCounter,
    pub invalid_payloads: IntCounter,
    pub fork_reports_received: IntCounter,
    pub peer_entries_refused: IntCounter,
    pub evicted: IntCounterVec,
}

impl LedgerMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        use icn_telemetry::metrics::register;
        let counter = |name: &str, help: &str| register(registry, IntCounter::new(name, help).expect("valid metric"));
        Self {
            entries: register(
                registry,
                IntCounterVec::new(
                    Opts::new("ledger_entries_stored_total", "Entries journalled, by source"),
                    &["source"],
                )
                .expect("valid metric"),
            ),
            transfers: register(
                registry,
                IntCounterVec::new(
                    Opts::new("ledger_transfers_submitted_total", "Transfers submitted to this node's API, by outcome"),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            groups: counter("ledger_commit_groups_total", "Write batches committed"),
            group_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("ledger_commit_seconds", "Time to apply and durably write one group")
                        .buckets(prometheus::exponential_buckets(0.0002, 2.0, 14).expect("valid buckets")),
                )
                .expect("valid metric"),
            ),
            forks: counter(
                "ledger_forks_detected_total",
                "Payers found signing two transfers with one sequence number",
            ),
            journal_version: register(
                registry,
                IntGauge::new("ledger_journal_version", "Position of the journal's last entry").expect("valid metric"),
            ),
            drifts: counter("ledger_balance_drifts_total", "Stored balances found differing from a journal replay"),
            published: counter("ledger_entries_published_total", "Journal entries handed to gossip"),
            invalid_payloads: counter(
                "ledger_invalid_payloads_total",
                "Gossip entries on a cooperative's topic that are not ledger batches",
            ),
            fork_reports_received: counter("ledger_fork_reports_received_total", "Trust events about forks from peers"),
            evicted: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "ledger_transfers_evicted_total",
                        "Peers' transfers not kept at a bound, by what they wait for before they are read again",
                    ),
                    &["waits_for"],
                )
                .expect("valid metric"),
            ),
            peer_entries_refused: counter(
                "ledger_peer_entries_refused_total",
                "Peers' entries refused before reaching a cooperative: a malformed cooperative id, or a founding record its id is not bound to",
            ),
        }
    }
}

struct Job {
    entries: Vec<Checked>,
    source: Source,
    /// The gossip position this job takes the cooperative's follower to.
    cursor: Option<(String, u64)>,
    reply: oneshot::Sender<Result<Vec<Outcome>, LedgerError>>,
}

pub struct LedgerNode {
    state: Arc<RwLock<State>>,
    store: Store,
    jobs: GroupQueue<Job>,
    pub config: CreditConfig,
    pub metrics: LedgerMetrics,
    /// Wakes the publisher after a group with local entries.
    pub local_committed: Notify,
    /// Trust events waiting to be published.
    pub fork_reports: Mutex<Vec<ForkReport>>,
    /// Transfers as they are stored or change status, for `Watch`.
    pub transfers: tokio::sync::broadcast::Sender<TransferRecord>,
    /// Checks submissions' signatures, concurrent ones together.
    verifier: crate::verify::Verifier,
}

impl LedgerNode {
    /// Loads what the last written group left (`state::past`) — or, for a store from
    /// before the past, replays the journal once and writes its past — and starts the
    /// committer.
    pub async fn open(ctx: &Context) -> anyhow::Result<Arc<Self>> {
        let store = Store::new(ctx.storage.clone());
        let metrics = LedgerMetrics::new(&ctx.metrics);
        icn_telemetry::metrics::register(&ctx.metrics, store.past_reads().clone());
        let started = std::time::Instant::now();
        let state = {
            let (store, metrics) = (store.clone(), metrics.clone());
            let in_store = ctx.config.credit.history_in_store;
            tokio::task::spawn_blocking(move || -> Result<State, LedgerError> {
                if in_store && store.past_is_current()? {
                    return State::load(&store, now_ms());
                }
                let (mut state, records) = replay(&store.live(), u64::MAX, None)?;
                metrics.drifts.inc_by(check_stored_balances(&store, &state)?);
                if !in_store {
                    // Not kept up from here on: a later start with the history in the
                    // store writes it anew.
                    store.forget_past()?;
                    return Ok(state);
                }
                let write = state.attach_past(&store)?;
                tracing::info!(
                    records,
                    transfers = write.stored.len(),
                    "replayed the journal and wrote the ledger's past"
                );
                store.write(&write)?;
                Ok(state)
            })
            .await??
        };
        tracing::info!(
            version = state.version,
            coops = state.coops.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ledger state loaded"
        );
        metrics.journal_version.set(state.version as i64);
        // The committer reaches the node through a weak link, set once the node exists:
        // the node owns the committer, not the other way round.
        let link: Arc<OnceLock<Weak<LedgerNode>>> = Arc::default();
        let jobs = {
            let (link, ctx) = (link.clone(), ctx.clone());
            let limits =
                GroupLimits { backlog: ctx.config.credit.queue, max_group: ctx.config.credit.group_max_entries };
            GroupQueue::start(
                "ledger-commit",
                limits,
                |job: &Job| job.entries.len().max(1),
                move |group: Vec<Job>| match link.get().and_then(Weak::upgrade) {
                    Some(node) => commit_group(&node, group, &ctx),
                    None => {
                        for job in group {
                            let _ =
                                job.reply.send(Err(LedgerError::CommitFailed("the ledger is shutting down".into())));
                        }
                    }
                },
            )?
        };
        let mut state = state;
        state.clock_skew_ms = Some(ctx.config.credit.max_clock_skew.as_millis() as i64);
        state.bounds = Some(crate::state::HoldBounds {
            per_payer: ctx.config.credit.max_unapplied_per_payer,
            total: ctx.config.credit.max_unapplied,
        });
        state.voter = ctx.identity.clone();
        // Votes this node owes for what applied (`state::votes`), written before the
        // committer starts.
        let state = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<State, LedgerError> {
                let mut write = GroupWrite::default();
                state.missed_votes(&mut write)?;
                state.cast_votes(now_ms(), &mut write);
                if !write.is_empty() {
                    tracing::info!(votes = write.local_entries, "cast the votes missing at start-up");
                    state.retire(&mut write);
                    store.write(&write)?;
                }
                if let Some(failure) = store.take_read_failure() {
                    return Err(LedgerError::CommitFailed(failure));
                }
                Ok(state)
            })
            .await??
        };
        let node = Arc::new(Self {
            state: Arc::new(RwLock::new(state)),
            store,
            jobs,
            config: ctx.config.credit.clone(),
            metrics,
            local_committed: Notify::new(),
            fork_reports: Mutex::new(Vec::new()),
            transfers: tokio::sync::broadcast::channel(ctx.config.credit.watch_buffer).0,
            verifier: crate::verify::Verifier::start(ctx),
        });
        link.set(Arc::downgrade(&node)).expect("set once");
        Ok(node)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The state, for reading; only what is durable is in it.
    pub async fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().await
    }

    /// `f` on the state, on a blocking thread: for reads that go to the store
    /// (`store::past`), which must not hold up the async threads.
    pub async fn read_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> R + Send + 'static,
    ) -> Result<R, LedgerError> {
        let state = Arc::clone(&self.state).read_owned().await;
        tokio::task::spawn_blocking(move || f(&state)).await.map_err(|e| LedgerError::CommitFailed(e.to_string()))
    }

    /// The topic position `coop_id`'s follower must read again from, if evicted
    /// transfers are due (`state::hold`); [`LedgerNode::rewind_done`] once it has.
    pub async fn rewind_due(&self, coop_id: &str) -> Option<u64> {
        self.state.write().await.coops.get_mut(coop_id)?.start_rewind()
    }

    pub async fn rewind_done(&self, coop_id: &str) {
        if let Some(coop) = self.state.write().await.coops.get_mut(coop_id) {
            coop.end_rewind();
        }
    }

    /// Checks signatures (on every core, together with concurrent submissions: see
    /// `verify`), then queues the entries for the committer and waits until they are
    /// durable. One outcome per entry, in order.
    pub async fn submit(
        &self,
        entries: Vec<LedgerEntry>,
        source: Source,
        cursor: Option<(String, u64)>,
    ) -> Result<Vec<Outcome>, LedgerError> {
        let entries = self.verifier.check(entries).await?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { entries, source, cursor, reply })
            .await
            .map_err(|e| LedgerError::CommitFailed(format!("the ledger is shutting down: {e}")))?;
        answer.await.map_err(|_| LedgerError::CommitFailed("the ledger is shutting down".into()))?
    }

    /// Replays the journal and compares each stored balance of `coop_id` with it. The
    /// journal version, the journal and the stored balances are read from one snapshot,
    /// so the replay and the balances it is compared with are of the same version and
    /// a concurrent transfer never shows up as drift (seed 000, M7). A repair is written
    /// only if the journal is still at that version; otherwise the whole check is run
    /// again, up to `credit.recompute_attempts` times.
    pub async fn recompute(
        &self,
        coop_id: &str,
        currency: Option<&str>,
        repair: bool,
    ) -> Result<RecomputeBalancesResponse, LedgerError> {
        for attempt in 1..=self.config.recompute_attempts {
            let store = self.store.clone();
            let (coop, currency_owned) = (coop_id.to_string(), currency.map(str::to_string));
            let (version, stored, drifts) =
                tokio::task::spawn_blocking(move || compare(&store, &coop, currency_owned.as_deref()))
                    .await
                    .map_err(|e| LedgerError::CommitFailed(e.to_string()))??;
            let mut repaired = false;
            if repair && !drifts.is_empty() {
                // Under the write lock the committer is idle.
                let _writer = self.state.write().await;
                if self.store.version()? != version {
                    continue;
                }
                let now = now_ms();
                let rows: Vec<_> = drifts
                    .iter()
                    .map(|d| {
                        // Keep the row's chain head: only the balance drifted.
                        let mut row = stored
                            .iter()
                            .find(|s| s.currency == d.currency && s.member == d.member)
                            .cloned()
                            .unwrap_or_else(|| icn_proto::ledger::v1::Account {
                                coop_id: coop_id.to_string(),
                                currency: d.currency.clone(),
                                member: d.member.clone(),
                                ..Default::default()
                            });
                        row.balance = d.replayed;
                        row.updated_at_ms = now;
                        row
                    })
                    .collect();
                self.store.put_accounts(&rows)?;
                repaired = true;
            }
            self.metrics.drifts.inc_by(drifts.len() as u64);
            return Ok(RecomputeBalancesResponse {
                journal_version: version,
                attempts: attempt,
                accounts_checked: stored.len() as u64,
                drifts,
                repaired,
            });
        }
        Err(LedgerError::Aborted(format!(
            "the journal moved before each of {} repairs could be written; retry when the ledger is less busy",
            self.config.recompute_attempts
        )))
    }
}

/// Applies and writes one group, on the committer thread.
fn commit_group(node: &LedgerNode, jobs: Vec<Job>, ctx: &Context) {
    let timer = node.metrics.group_seconds.start_timer();
    let mut state = node.state.blocking_write();
    let mut write = GroupWrite::default();
    let now = now_ms();
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        let outcomes = state.apply(job.entries, job.source, now, &mut write);
        if let Some((coop_id, position)) = job.cursor {
            // Never past a transfer evicted and not read again yet (`state::hold`).
            let floor = state.coops.get(&coop_id).and_then(|c| c.hold_floor());
            let position = floor.map_or(position, |f| position.min(f.saturating_sub(1)));
            write.cursors.push((coop_id, position));
        }
        answers.push((job.reply, job.source, outcomes));
    }
    // This node's votes for what the group applied, in the same batch; a member's
    // answer shows them.
    if state.voter.is_some() {
        state.cast_votes(now, &mut write);
        for (_, _, outcomes) in answers.iter_mut() {
            for outcome in outcomes.iter_mut() {
                if let Outcome::Transfer { record, .. } = outcome {
                    state.refresh_certificate(record);
                }
            }
        }
    }
    // Watchers get what the group stored or applied, read before the lock is released.
    let watched: Vec<TransferRecord> = if node.transfers.receiver_count() == 0 {
        Vec::new()
    } else {
        write.transfer_events.iter().filter_map(|(coop, hash)| state.coops.get(coop).map(|c| c.record(hash))).collect()
    };
    // What applied leaves memory, written in the same batch (`engine::past`).
    state.retire(&mut write);
    let written = match node.store.take_read_failure() {
        // The engine judged without a part of its past: nothing of the group stands.
        Some(failure) => Err(StoreError::Corrupt { position: write.version, reason: failure }),
        None if write.is_empty() => Ok(()),
        None => node.store.write(&write),
    };
    drop(state);
    timer.observe_duration();
    match written {
        Ok(()) => {
            node.metrics.groups.inc();
            node.metrics.journal_version.set(write.version as i64);
            node.metrics.peer_entries_refused.inc_by(write.refused_peer_entries);
            for waits_for in &write.evicted {
                node.metrics.evicted.with_label_values(&[waits_for]).inc();
            }
            for (_, record) in &write.journal {
                node.metrics.entries.with_label_values(&[if record.local { "local" } else { "peer" }]).inc();
            }
            node.metrics.forks.inc_by(write.forks_found);
            if !write.forks.is_empty() {
                for f in &write.forks {
                    tracing::warn!(coop = %f.coop_id, currency = %f.currency, payer = %f.payer, seq = f.payer_seq,
                        "fork: the payer signed two transfers with one sequence number; both are quarantined");
                }
                node.fork_reports.lock().expect("not poisoned").extend(write.forks);
                node.local_committed.notify_one();
            }
            if write.local_entries > 0 {
                node.local_committed.notify_one();
            }
            for record in watched {
                // No watcher is no error.
                let _ = node.transfers.send(record);
            }
            for (reply, source, outcomes) in answers {
                if source == Source::Local {
                    for o in &outcomes {
                        if let Outcome::Transfer { record, duplicate } = o {
                            let outcome = if *duplicate {
                                "duplicate"
                            } else {
                                icn_proto::ledger::v1::TransferStatus::try_from(record.status)
                                    .map(|s| s.as_str_name())
                                    .unwrap_or("TRANSFER_STATUS_UNSPECIFIED")
                            };
                            node.metrics.transfers.with_label_values(&[outcome]).inc();
                        }
                    }
                }
                let _ = reply.send(Ok(outcomes));
            }
        }
        Err(e) => {
            // Memory is now ahead of the disk: only a restart, which replays the journal,
            // makes them agree again. Nothing of this group was acknowledged.
            tracing::error!(error = %e, "ledger commit failed, restarting the service");
            for (reply, _, _) in answers {
                let _ = reply.send(Err(LedgerError::CommitFailed(e.to_string())));
            }
            ctx.shutdown.cancel();
        }
    }
}
