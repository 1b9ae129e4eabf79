//! "Catch up from the stored log, then follow live": how a subscriber of a positioned
//! log (netd's inbound log, a gossip topic) gets every item after the position it names,
//! exactly once and in order, without the live buffer ever having to hold history.
//!
//! The feed reads the log in pages from the subscriber's position until it is caught up,
//! then takes live items from a broadcast channel, skipping what the catch-up already
//! sent. When the subscriber falls further behind than the live buffer holds (the
//! channel reports a lag), it goes back to the log from where it stands. Nothing is lost
//! either way; only a slow subscriber reads from disk.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// What one subscriber follows: a log whose items have positions that grow by at least
/// one per item (`position`).
pub struct Feed<T, E> {
    pub position: fn(&T) -> u64,
    /// Live items as they are stored; items of other logs may pass on the same channel.
    pub live: broadcast::Receiver<Arc<T>>,
    /// Items after this position are sent.
    pub after: u64,
    /// Where items (or the one read error that ends the feed) go.
    pub out: mpsc::Sender<Result<T, E>>,
    /// Items read from the log per step of a catch-up.
    pub page: usize,
    pub shutdown: CancellationToken,
}

/// Runs the feed until the subscriber goes away, the live channel closes, shutdown, or a
/// read fails (the error is sent first).
///
/// - `read_after(after, max)` reads up to `max` items after `after` from the log (off the
///   async runtime: it is the caller's, so RocksDB reads go through `spawn_blocking`);
/// - `in_log(item)`: whether a live item belongs to this log at all (its position is
///   meaningful only then);
/// - `wanted(item)`: whether the subscriber gets it (a filter that still moves the
///   position, such as a protocol or a version vector already held), or why the
///   subscriber may not go on at all (its access was withdrawn): that error is sent and
///   ends the feed;
/// - `on_lag()`: called each time the subscriber fell behind the live buffer.
pub async fn run<T, E, R, F>(
    mut feed: Feed<T, E>,
    mut read_after: R,
    in_log: impl Fn(&T) -> bool,
    wanted: impl Fn(&T) -> Result<bool, E>,
    on_lag: impl Fn(),
) where
    T: Clone,
    R: FnMut(u64, usize) -> F,
    F: Future<Output = Result<Vec<T>, E>>,
{
    loop {
        // Catch up from the log.
        loop {
            let page = tokio::select! {
                _ = feed.shutdown.cancelled() => return,
                page = read_after(feed.after, feed.page) => page,
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let _ = feed.out.send(Err(e)).await;
                    return;
                }
            };
            if page.is_empty() {
                break;
            }
            for item in page {
                feed.after = (feed.position)(&item);
                match wanted(&item) {
                    Ok(false) => {}
                    Ok(true) => {
                        if feed.out.send(Ok(item)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = feed.out.send(Err(e)).await;
                        return;
                    }
                }
            }
        }
        // Live, skipping what the catch-up already sent.
        loop {
            let next = tokio::select! {
                _ = feed.shutdown.cancelled() => return,
                _ = feed.out.closed() => return,
                next = feed.live.recv() => next,
            };
            match next {
                Ok(item) if !in_log(&item) || (feed.position)(&item) <= feed.after => continue,
                Ok(item) => {
                    feed.after = (feed.position)(&item);
                    match wanted(&item) {
                        Ok(false) => {}
                        Ok(true) => {
                            if feed.out.send(Ok((*item).clone())).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = feed.out.send(Err(e)).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    on_lag();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Debug, PartialEq)]
    struct Item {
        log: &'static str,
        position: u64,
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_log_then_live_items_once_each_in_order_even_after_lagging() {
        let stored: Arc<Mutex<Vec<Item>>> = Arc::default();
        // A live buffer of 4: the subscriber will lag and must come back through the log.
        let (live_tx, live) = broadcast::channel::<Arc<Item>>(4);
        let store = |position: u64| {
            let item = Item { log: "a", position };
            stored.lock().unwrap().push(item.clone());
            item
        };
        for p in 1..=10 {
            store(p);
        }
        let (out, mut rx) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let lags = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = {
            let (stored, shutdown, lags) = (stored.clone(), shutdown.clone(), lags.clone());
            tokio::spawn(async move {
                let read = move |after: u64, max: usize| {
                    let items: Vec<Item> =
                        stored.lock().unwrap().iter().filter(|i| i.position > after).take(max).cloned().collect();
                    async move { Ok::<_, String>(items) }
                };
                run(
                    Feed { position: |i: &Item| i.position, live, after: 3, out, page: 3, shutdown },
                    read,
                    |i: &Item| i.log == "a",
                    |i: &Item| Ok(!i.position.is_multiple_of(5)),
                    move || {
                        lags.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    },
                )
                .await
            })
        };
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.unwrap().unwrap().position);
        }
        // While the subscriber reads slowly, 20 more are stored and announced, with items
        // of another log between them.
        for p in 11..=30 {
            let item = store(p);
            let _ = live_tx.send(Arc::new(item));
            let _ = live_tx.send(Arc::new(Item { log: "b", position: 1000 + p }));
        }
        while got.last() != Some(&29) {
            got.push(rx.recv().await.unwrap().unwrap().position);
        }
        let expected: Vec<u64> = (4..=30).filter(|p| p % 5 != 0).collect();
        assert_eq!(got, expected);
        assert!(lags.load(std::sync::atomic::Ordering::SeqCst) > 0, "the small live buffer lagged");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_read_reaches_the_subscriber_and_ends_the_feed() {
        let (_live_tx, live) = broadcast::channel::<Arc<Item>>(4);
        let (out, mut rx) = mpsc::channel(4);
        let feed =
            Feed { position: |i: &Item| i.position, live, after: 0, out, page: 8, shutdown: CancellationToken::new() };
        run(feed, |_, _| async { Err::<Vec<Item>, _>("disk on fire".to_string()) }, |_| true, |_| Ok(true), || {})
            .await;
        assert_eq!(rx.recv().await, Some(Err("disk on fire".to_string())));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_subscriber_whose_access_is_withdrawn_is_told_and_the_feed_ends() {
        let (live_tx, live) = broadcast::channel::<Arc<Item>>(8);
        let (out, mut rx) = mpsc::channel(8);
        let feed =
            Feed { position: |i: &Item| i.position, live, after: 0, out, page: 8, shutdown: CancellationToken::new() };
        let allowed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = {
            let allowed = allowed.clone();
            tokio::spawn(run(
                feed,
                |_, _| async { Ok::<Vec<Item>, String>(Vec::new()) },
                |_| true,
                move |_| {
                    if allowed.load(std::sync::atomic::Ordering::SeqCst) {
                        Ok(true)
                    } else {
                        Err("no longer allowed".to_string())
                    }
                },
                || {},
            ))
        };
        tokio::task::yield_now().await;
        let _ = live_tx.send(Arc::new(Item { log: "a", position: 1 }));
        assert_eq!(rx.recv().await, Some(Ok(Item { log: "a", position: 1 })));
        allowed.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = live_tx.send(Arc::new(Item { log: "a", position: 2 }));
        assert_eq!(rx.recv().await, Some(Err("no longer allowed".to_string())));
        assert_eq!(rx.recv().await, None);
        task.await.unwrap();
    }
}
