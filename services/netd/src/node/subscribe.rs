//! Local subscribers of inbound messages: each is fed from the inbound log, then live.

use super::*;

/// Feeds one subscriber: the log from `after` until caught up, then live messages; when
/// it falls behind the live buffer, back to the log from where it stands (the shared
/// [`icn_storage::feed`]).
pub(super) async fn feed_subscriber(
    inner: Arc<Inner>,
    protocols: HashSet<String>,
    live: broadcast::Receiver<Arc<InboundMessage>>,
    after: u64,
    out: mpsc::Sender<Result<InboundMessage, NetError>>,
) {
    let feed = icn_storage::feed::Feed {
        position: |m: &InboundMessage| m.position,
        live,
        after,
        out,
        page: inner.config.catch_up_page,
        shutdown: inner.ctx.shutdown.clone(),
    };
    let reader = inner.clone();
    let read_after = move |after: u64, max: usize| {
        let inner = reader.clone();
        async move { inner.inbox.read_after(after, max).await.map_err(|e| NetError::Storage(e.to_string())) }
    };
    let lagged = inner.metrics.subscribers_lagged.clone();
    icn_storage::feed::run(
        feed,
        read_after,
        |_| true,
        |m| Ok(protocols.is_empty() || protocols.contains(&m.protocol)),
        move || lagged.inc(),
    )
    .await
}

/// Feeds one best-effort subscriber: each batch is what has arrived since the last one
/// (at most `network.catch_up_page` messages). A subscriber further behind than the live
/// buffer loses what it missed, counted as `subscriber_lagged`.
pub(super) async fn feed_best_effort(
    inner: Arc<Inner>,
    protocols: HashSet<String>,
    mut live: broadcast::Receiver<Arc<InboundMessage>>,
    out: mpsc::Sender<Result<api::InboundBatch, NetError>>,
) {
    use broadcast::error::{RecvError, TryRecvError};
    let wanted = |m: &InboundMessage| protocols.is_empty() || protocols.contains(&m.protocol);
    let lagged = |n: u64| inner.best_effort.drop_counted("subscriber_lagged", n);
    loop {
        let first = tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            _ = out.closed() => return,
            next = live.recv() => next,
        };
        let mut batch = Vec::new();
        match first {
            Ok(m) if wanted(&m) => batch.push((*m).clone()),
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => lagged(n),
            Err(RecvError::Closed) => return,
        }
        while batch.len() < inner.config.catch_up_page {
            match live.try_recv() {
                Ok(m) if wanted(&m) => batch.push((*m).clone()),
                Ok(_) => {}
                Err(TryRecvError::Lagged(n)) => lagged(n),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        if !batch.is_empty() && out.send(Ok(api::InboundBatch { messages: batch })).await.is_err() {
            return;
        }
    }
}
