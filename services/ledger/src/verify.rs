//! Signature checks that join. Concurrent submissions — unary `SubmitTransfer` calls
//! above all, one transfer each — are checked together: each pays its share of one
//! ZIP-215 batch on every core instead of a single verification of its own (about a
//! fifth of the cost per signature on the reference machine, docs/BENCHMARKS.md). What
//! arrives while a batch is being checked forms the next one, up to
//! `credit.group_max_entries` entries; a submission alone is checked at once, so the
//! wait is never longer than the batch ahead of it.
//!
//! The rule is the one [`Checked::verify_all`] applies (a failing batch falls back to one
//! by one, so one bad signature in a batch costs the others nothing but time).

use crate::error::LedgerError;
use crate::state::Checked;
use icn_proto::ledger::wire::v1::LedgerEntry;
use icn_runtime::Context;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Request {
    entries: Vec<LedgerEntry>,
    reply: oneshot::Sender<Vec<Checked>>,
}

pub struct Verifier {
    requests: mpsc::Sender<Request>,
}

impl Verifier {
    /// Starts the checking task; it ends at shutdown.
    pub fn start(ctx: &Context) -> Self {
        let credit = &ctx.config.credit;
        Self::start_on(&ctx.tasks, ctx.shutdown.clone(), credit.queue, credit.group_max_entries)
    }

    /// [`Verifier::start`] with its parts: `queue` submissions wait at most, batches of
    /// at most `max_entries`.
    fn start_on(tasks: &TaskTracker, shutdown: CancellationToken, queue: usize, max_entries: usize) -> Self {
        let (requests, rx) = mpsc::channel(queue);
        tasks.spawn(run(shutdown, rx, max_entries));
        Self { requests }
    }

    /// Checks `entries`' signatures with whatever else is waiting; one [`Checked`] per
    /// entry that has a body, in order.
    pub async fn check(&self, entries: Vec<LedgerEntry>) -> Result<Vec<Checked>, LedgerError> {
        let stopped = || LedgerError::CommitFailed("the ledger is shutting down".into());
        let (reply, checked) = oneshot::channel();
        self.requests.send(Request { entries, reply }).await.map_err(|_| stopped())?;
        checked.await.map_err(|_| stopped())
    }
}

async fn run(shutdown: CancellationToken, mut requests: mpsc::Receiver<Request>, max_entries: usize) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = requests.recv() => match next {
                Some(request) => request,
                None => return,
            },
        };
        let mut entries = first.entries;
        let mut replies = vec![(first.reply, entries.iter().filter(|e| e.body.is_some()).count())];
        while entries.len() < max_entries {
            let Ok(mut more) = requests.try_recv() else { break };
            replies.push((more.reply, more.entries.iter().filter(|e| e.body.is_some()).count()));
            entries.append(&mut more.entries);
        }
        let checked = match tokio::task::spawn_blocking(move || Checked::verify_all(entries)).await {
            Ok(checked) => checked,
            // A panic in verification: the callers hear the ledger stopped.
            Err(e) => {
                tracing::error!(error = %e, "checking signatures failed");
                continue;
            }
        };
        let mut checked = checked.into_iter();
        for (reply, count) in replies {
            let _ = reply.send(checked.by_ref().take(count).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_proto::ledger::v1::Transfer;
    use icn_proto::ledger::wire::v1::ledger_entry::Body;

    fn transfer(signer: &icn_identity::NodeIdentity, amount: i64) -> LedgerEntry {
        let t = icn_ledger_records::sign(signer, Transfer { amount, ..Default::default() });
        LedgerEntry { body: Some(Body::Transfer(t)) }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_submissions_each_get_their_own_results_back_in_order() {
        let verifier = Verifier::start_on(&TaskTracker::new(), CancellationToken::new(), 64, 16);
        let verifier = std::sync::Arc::new(verifier);
        let payer = std::sync::Arc::new(icn_identity::NodeIdentity::generate());
        let tasks: Vec<_> = (0..32i64)
            .map(|i| {
                let (verifier, payer) = (verifier.clone(), payer.clone());
                tokio::spawn(async move {
                    // Each submission: a good transfer, an entry with no body, and every
                    // fifth submission a tampered transfer.
                    let mut bad = transfer(&payer, i);
                    if let Some(Body::Transfer(t)) = bad.body.as_mut() {
                        t.amount += 1;
                    }
                    let mut entries = vec![transfer(&payer, i), LedgerEntry { body: None }];
                    if i % 5 == 0 {
                        entries.push(bad);
                    }
                    (i, verifier.check(entries).await.unwrap())
                })
            })
            .collect();
        for task in tasks {
            let (i, checked) = task.await.unwrap();
            assert_eq!(checked.len(), if i % 5 == 0 { 2 } else { 1 }, "one result per entry with a body");
            match &checked[0].body {
                Body::Transfer(t) => assert_eq!(t.amount, i, "its own transfer, not a neighbour's"),
                other => panic!("{other:?}"),
            }
            assert!(checked[0].hash.is_ok());
            if i % 5 == 0 {
                assert!(checked[1].hash.is_err(), "the tampered transfer is refused, alone");
            }
        }
    }
}
