//! Following another service's stream for as long as the service runs: open it, handle
//! each item, and when the stream fails, ends or the other service is not there yet,
//! wait and open it again. gossip follows netd's inbound messages, the ledger follows
//! its cooperatives' gossip topics, the gateway follows the ledger's transfers; each
//! reopens from where it stands (a stored cursor, or "from now on"), which its `open`
//! decides.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How one run of a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for: stop following.
    Shutdown,
    /// The stream ended, failed, or an item could not be handled: open it again.
    Broken(String),
}

/// Handles each item of `stream` in order until it ends, fails, an item's handling fails,
/// or shutdown.
pub async fn drain<T, H, HF, E>(shutdown: &CancellationToken, mut stream: tonic::Streaming<T>, mut handle: H) -> Ended
where
    H: FnMut(T) -> HF,
    HF: Future<Output = Result<(), E>>,
    E: Display,
{
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            next = stream.message() => next,
        };
        let item = match next {
            Ok(Some(item)) => item,
            Ok(None) => return Ended::Broken("the stream ended".into()),
            Err(status) => return Ended::Broken(format!("{}: {}", status.code(), status.message())),
        };
        // Handling is not interrupted by shutdown: what was taken from the stream is
        // finished (the service drains before it stops).
        if let Err(e) = handle(item).await {
            return Ended::Broken(e.to_string());
        }
    }
}

/// Follows a stream until shutdown: `open` starts it (from wherever the follower stands),
/// `handle` takes each item; after a failure, the follower waits `retry` and opens again.
/// `what` names the stream in logs.
pub async fn follow<T, O, OF, OE, H, HF, E>(
    shutdown: CancellationToken,
    what: &str,
    retry: Duration,
    mut open: O,
    mut handle: H,
) where
    O: FnMut() -> OF,
    OF: Future<Output = Result<tonic::Streaming<T>, OE>>,
    OE: Display,
    H: FnMut(T) -> HF,
    HF: Future<Output = Result<(), E>>,
    E: Display,
{
    loop {
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            opened = open() => opened,
        };
        match opened {
            Ok(stream) => {
                // Said once per opening: after "cannot open the stream yet", operators
                // (and tests) see when it follows again; items from before are not in it.
                tracing::info!(stream = what, "following the stream");
                match drain(&shutdown, stream, &mut handle).await {
                    Ended::Shutdown => return,
                    Ended::Broken(why) => tracing::info!(stream = what, error = %why, "following again after a pause"),
                }
            }
            Err(e) => tracing::info!(stream = what, error = %e, "cannot open the stream yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
    use tonic_health::ServingStatus;

    /// A real gRPC server (the health service, whose `Watch` is a server stream) on a
    /// loopback port; aborting the task drops it with every connection, as a crash would.
    async fn serve(
        listener: tokio::net::TcpListener,
    ) -> (tonic_health::server::HealthReporter, tokio::task::JoinHandle<()>) {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("svc", ServingStatus::Serving).await;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
        });
        (reporter, server)
    }

    #[tokio::test]
    async fn a_follower_waits_for_its_server_takes_every_item_and_opens_again_after_a_failure() {
        // An address with nothing listening yet: the first opens fail.
        let address = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shutdown = CancellationToken::new();
        let follower = {
            let (opens, failed_once) = (opens.clone(), failed_once.clone());
            tokio::spawn(follow(
                shutdown.clone(),
                "health",
                Duration::from_millis(50),
                move || {
                    let opens = opens.clone();
                    async move {
                        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                            .map_err(|e| e.to_string())?
                            .connect()
                            .await
                            .map_err(|e| e.to_string())?;
                        opens.fetch_add(1, Ordering::SeqCst);
                        let request = HealthCheckRequest { service: "svc".into() };
                        HealthClient::new(channel)
                            .watch(request)
                            .await
                            .map(|r| r.into_inner())
                            .map_err(|e| e.to_string())
                    }
                },
                move |item: HealthCheckResponse| {
                    let _ = seen_tx.send(item.status);
                    // The first NOT_SERVING cannot be handled: the follower must open the
                    // stream again (and Watch starts with the current status).
                    let fail = item.status == NOT_SERVING && !failed_once.swap(true, Ordering::SeqCst);
                    async move {
                        if fail {
                            Err("cannot handle this one")
                        } else {
                            Ok(())
                        }
                    }
                },
            ))
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(opens.load(Ordering::SeqCst), 0, "nothing to open yet");
        let (reporter, _server) = serve(tokio::net::TcpListener::bind(address).await.unwrap()).await;
        assert_eq!(seen.recv().await, Some(SERVING));
        reporter.set_service_status("svc", ServingStatus::NotServing).await;
        assert_eq!(seen.recv().await, Some(NOT_SERVING));
        assert_eq!(seen.recv().await, Some(NOT_SERVING), "opened again, from the current status");
        assert_eq!(opens.load(Ordering::SeqCst), 2);
        reporter.set_service_status("svc", ServingStatus::Serving).await;
        // tonic's Watch may repeat the current status once before the change.
        let mut next = seen.recv().await;
        if next == Some(NOT_SERVING) {
            next = seen.recv().await;
        }
        assert_eq!(next, Some(SERVING));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), follower).await.expect("stops at shutdown").unwrap();
    }

    const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
}
