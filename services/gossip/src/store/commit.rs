//! Making changes durable: the committer thread (a [`GroupQueue`] from
//! [`icn_storage::group`]) that writes queued changes in groups with one sync each, the
//! [`Durable`] outcome a caller waits on, and the held entries whose write is queued but
//! not yet on disk.
//!
//! Changes are queued under the store's locks, in the order those locks decided them,
//! and written in that order. Live subscribers hear of an entry, and its caller is
//! answered, only once its group is durable. This module must never wait while queueing
//! (it is called under locks), and after a failed write it keeps refusing changes: memory
//! is then ahead of disk.

use super::metrics::StoreMetrics;
use super::Store;
use crate::GossipError;
use icn_config::TopicsConfig;
use icn_proto::gossip::v1::{Entry, StoredEntry};
use icn_storage::group::{write_group, GroupLimits, GroupQueue, QueueError};
use icn_storage::{Storage, WriteBatch};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, oneshot};

/// One change's writes, and the entries to announce once they are durable.
pub(super) struct Commit {
    batch: WriteBatch,
    stored: Vec<StoredEntry>,
    /// The key of an entry held ahead of a gap, kept in memory until its write is durable.
    held: Option<Vec<u8>>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Held entries whose write is queued but not yet durable, by key: an entry that fills
/// the gap meanwhile releases them from here, as the store cannot show them yet.
pub(super) type HeldInFlight = Arc<Mutex<HashMap<Vec<u8>, Entry>>>;

/// How a caller learns that its change is durable (or that writing it failed).
pub(super) type Committing = oneshot::Receiver<Result<(), String>>;

/// A change decided under the store's locks: its outcome, and (when it wrote anything)
/// the commit to wait for before anyone is told.
pub(super) struct Durable<T> {
    outcome: T,
    committing: Option<Committing>,
}

impl<T> Durable<T> {
    /// An outcome that wrote nothing: there is nothing to wait for.
    pub(super) fn done(outcome: T) -> Self {
        Self { outcome, committing: None }
    }

    /// An outcome that holds once `committing` reports its write durable.
    pub(super) fn committing(outcome: T, committing: Committing) -> Self {
        Self { outcome, committing: Some(committing) }
    }

    pub(super) async fn wait(self) -> Result<T, GossipError> {
        if let Some(done) = self.committing {
            done.await
                .map_err(|_| GossipError::CommitFailed("the committer stopped".into()))?
                .map_err(GossipError::CommitFailed)?;
        }
        Ok(self.outcome)
    }

    pub(super) fn wait_blocking(self) -> Result<T, GossipError> {
        if let Some(done) = self.committing {
            done.blocking_recv()
                .map_err(|_| GossipError::CommitFailed("the committer stopped".into()))?
                .map_err(GossipError::CommitFailed)?;
        }
        Ok(self.outcome)
    }
}

/// Starts the committer thread of a store being opened.
pub(super) fn start(
    storage: &Storage,
    config: &TopicsConfig,
    live: &broadcast::Sender<Arc<StoredEntry>>,
    failed: &Arc<AtomicBool>,
    metrics: &StoreMetrics,
    held_in_flight: &HeldInFlight,
) -> Result<GroupQueue<Commit>, GossipError> {
    let (storage, live, failed, stored, held) =
        (storage.clone(), live.clone(), failed.clone(), metrics.stored.clone(), held_in_flight.clone());
    Ok(GroupQueue::start(
        "gossip-commit",
        GroupLimits { backlog: config.commit_backlog, max_group: config.commit_group_max },
        |_| 1,
        move |group| commit_group(&storage, group, &live, &failed, &stored, &held),
    )?)
}

/// The committer's work on one group: write it with one sync, then announce the stored
/// entries to live subscribers in order, then answer.
fn commit_group(
    storage: &Storage,
    group: Vec<Commit>,
    live: &broadcast::Sender<Arc<StoredEntry>>,
    failed: &AtomicBool,
    stored_total: &prometheus::IntCounter,
    held_in_flight: &HeldInFlight,
) {
    let (batches, commits): (Vec<_>, Vec<_>) = group.into_iter().map(|c| (c.batch, (c.stored, c.held, c.done))).unzip();
    let result = write_group(storage, batches, true).map_err(|e| e.to_string());
    if result.is_err() {
        failed.store(true, Ordering::SeqCst);
    }
    for (stored, held, done) in commits {
        if let (Some(key), Ok(())) = (held, &result) {
            held_in_flight.lock().expect("held lock").remove(&key);
        }
        if result.is_ok() {
            stored_total.inc_by(stored.len() as u64);
            for s in stored {
                let _ = live.send(Arc::new(s));
            }
        }
        let _ = done.send(result.clone());
    }
}

impl Store {
    /// Hands a change to the committer; never waits, so it may be called under a lock
    /// (changes are queued in the order the locks decided them).
    pub(super) fn queue(
        &self,
        batch: WriteBatch,
        stored: Vec<StoredEntry>,
        held: Option<Vec<u8>>,
    ) -> Result<Committing, GossipError> {
        let (done, committing) = oneshot::channel();
        self.commits.try_send(Commit { batch, stored, held, done }).map_err(|e| match e {
            QueueError::Full(_) => GossipError::ResourceExhausted(format!(
                "{e}: the disk is behind; retry (`topics.commit_backlog` sets the bound)"
            )),
            QueueError::Closed => GossipError::CommitFailed("the store is closing".into()),
        })?;
        Ok(committing)
    }

    /// Refuses every change once a write has failed, until a restart reloads from disk.
    pub(super) fn refuse_if_failed(&self) -> Result<(), GossipError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(GossipError::CommitFailed("an earlier write to the store failed; restart the service".into()));
        }
        Ok(())
    }
}
