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
