//! Group commit: the one way ICN's services make many concurrent changes durable with
//! few synced writes.
//!
//! A [`GroupQueue`] owns one dedicated thread (never an async worker: RocksDB writes and
//! fsyncs block) that takes a job, then every job already waiting (up to a weight), and
//! hands the whole group to the service's handler. The handler does what the group
//! needs — apply it to in-memory state, build the write — and calls [`write_group`],
//! which writes each batch and syncs only the last: syncing the write-ahead log makes
//! every earlier write in it durable too. Callers wait on their own reply channel, so a
//! caller is answered only after its group is durable.
//!
//! Jobs are queued in the order they are sent, and the thread handles them in that
//! order, so a service that queues under its own lock gets commit order = its order.
//! The queue is bounded: [`GroupQueue::send`] waits for room, [`GroupQueue::try_send`]
//! says at once that the backlog is full.

use crate::{Storage, StorageError, WriteBatch, WriteOptions};
use tokio::sync::mpsc;

/// How a queue groups its jobs.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Jobs that may wait for the committer before senders wait (or are refused).
    pub backlog: usize,
    /// Most weight (jobs, or entries when jobs carry several) in one group.
    pub max_group: usize,
}

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the commit backlog of {0} jobs is full")]
    Full(usize),
    #[error("the committer has stopped")]
    Closed,
}

/// A bounded job queue drained in groups by one dedicated thread.
pub struct GroupQueue<J: Send + 'static> {
    /// `None` only while closing.
    jobs: Option<mpsc::Sender<J>>,
    thread: Option<std::thread::JoinHandle<()>>,
    backlog: usize,
}

impl<J: Send + 'static> GroupQueue<J> {
    /// Starts the thread `name`. `weight` says how much of `limits.max_group` a job uses
    /// (at least one job is always taken); `handle` gets each group, in order.
    pub fn start(
        name: &str,
        limits: GroupLimits,
        weight: impl Fn(&J) -> usize + Send + 'static,
        mut handle: impl FnMut(Vec<J>) + Send + 'static,
    ) -> Result<Self, StorageError> {
        let (jobs, mut queue) = mpsc::channel::<J>(limits.backlog.max(1));
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Some(first) = queue.blocking_recv() {
                    let mut size = weight(&first);
                    let mut group = vec![first];
                    while size < limits.max_group {
                        match queue.try_recv() {
                            Ok(job) => {
                                size += weight(&job);
                                group.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    handle(group);
                }
            })
            .map_err(|e| StorageError::Task(format!("starting the {name} thread: {e}")))?;
        Ok(Self { jobs: Some(jobs), thread: Some(thread), backlog: limits.backlog })
    }

    /// Queues a job, waiting while the backlog is full.
    pub async fn send(&self, job: J) -> Result<(), QueueError> {
        let jobs = self.jobs.as_ref().ok_or(QueueError::Closed)?;
        jobs.send(job).await.map_err(|_| QueueError::Closed)
    }

    /// Queues a job now, or says why not. Safe to call under a std lock: it never waits.
    pub fn try_send(&self, job: J) -> Result<(), QueueError> {
        let jobs = self.jobs.as_ref().ok_or(QueueError::Closed)?;
        jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full(self.backlog),
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }

    /// Stops taking jobs, lets the thread finish every queued one, and waits for it.
    pub fn close(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            // A handler may hold the last reference to the queue's owner; the thread
            // cannot wait for itself, and ends on its own once its handler returns.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl<J: Send + 'static> Drop for GroupQueue<J> {
    /// Queued jobs are written before the store they write to is released.
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes a group's batches in order, syncing only the last when `sync`. Stops at the
/// first failure: then nothing of the group may be acknowledged.
pub fn write_group(
    storage: &Storage,
    batches: impl IntoIterator<Item = WriteBatch>,
    sync: bool,
) -> Result<(), StorageError> {
    let fast = WriteOptions::default();
    let durable = if sync { Storage::durable() } else { WriteOptions::default() };
    let mut batches = batches.into_iter().peekable();
    while let Some(batch) = batches.next() {
        let options = if batches.peek().is_none() { &durable } else { &fast };
        storage.db().write_opt(batch, options)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::sync::oneshot;

    struct Job {
        key: u32,
        done: oneshot::Sender<Result<(), String>>,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_share_groups_are_written_in_order_and_answered_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), &["log"]).unwrap();
        let groups: Arc<Mutex<Vec<usize>>> = Arc::default();
        let queue = {
            let (storage, groups) = (storage.clone(), groups.clone());
            GroupQueue::start(
                "test-commit",
                GroupLimits { backlog: 1024, max_group: 64 },
                |_| 1,
                move |group: Vec<Job>| {
                    groups.lock().unwrap().push(group.len());
                    let batches = group.iter().map(|j| {
                        let mut b = WriteBatch::default();
                        b.put_cf(storage.cf("log").unwrap(), j.key.to_be_bytes(), b"v");
                        b
                    });
                    let result = write_group(&storage, batches.collect::<Vec<_>>(), true).map_err(|e| e.to_string());
                    for job in group {
                        let _ = job.done.send(result.clone());
                    }
                },
            )
            .unwrap()
        };
        let queue = Arc::new(queue);
        let mut waits = Vec::new();
        for key in 0..500u32 {
            let (done, wait) = oneshot::channel();
            queue.try_send(Job { key, done }).unwrap();
            waits.push((key, wait));
        }
        for (key, wait) in waits {
            wait.await.unwrap().unwrap();
            // Answered means stored.
            assert!(storage.db().get_cf(storage.cf("log").unwrap(), key.to_be_bytes()).unwrap().is_some());
        }
        let groups = groups.lock().unwrap().clone();
        assert_eq!(groups.iter().sum::<usize>(), 500);
        assert!(groups.iter().all(|g| *g <= 64), "{groups:?}");
        assert!(groups.len() < 500, "jobs waiting together were grouped: {groups:?}");
    }

    #[tokio::test]
    async fn a_full_backlog_refuses_at_once_and_a_closed_queue_refuses_always() {
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let blocked = Mutex::new(blocked);
        let mut queue = GroupQueue::start(
            "test-full",
            GroupLimits { backlog: 2, max_group: 1 },
            |_| 1,
            move |_: Vec<u32>| {
                let _ = blocked.lock().unwrap().recv();
            },
        )
        .unwrap();
        queue.try_send(1).unwrap();
        // The thread holds job 1 in its handler; two more fill the backlog.
        let mut refused = None;
        for job in 2..10 {
            if let Err(e) = queue.try_send(job) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(QueueError::Full(2)));
        for _ in 0..10 {
            let _ = release.send(());
        }
        queue.close();
        assert_eq!(queue.try_send(99), Err(QueueError::Closed));
    }
}
