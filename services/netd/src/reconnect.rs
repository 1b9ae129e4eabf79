//! Getting connections back: redialling a lost peer with exponential backoff and full
//! jitter, the permanent-failure mark for a peer that keeps failing the same way, the
//! start-up dials (bootstrap peers and remembered ones), and wake-from-sleep detection,
//! which restarts every backoff from its first step.

use crate::host::Host;
use crate::peers::PeerState;
use crate::{backoff, peer_store, NetError};
use icn_identity::Did;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Redials a peer whose connection failed until it is connected again (by us or by it),
/// closed on purpose, marked permanently failed, or out of attempts.
pub(crate) async fn reconnect_loop<H: Host>(inner: Arc<H>, did: Did) {
    let config = inner.config().reconnect.clone();
    let mut wakes = inner.wakes().subscribe();
    let mut attempt = 0u32;
    let mut last_error = String::new();
    // Consecutive failures of one kind: (kind, count).
    let mut streak: (&'static str, u32) = ("", 0);
    loop {
        let ceiling = backoff::ceiling(&config, attempt);
        let wait = backoff::delay(&config, attempt);
        let addresses = inner.peers().with(|t| match t.get_mut(&did) {
            Some(r) if matches!(r.state, PeerState::Reconnecting { .. }) => {
                if let PeerState::Reconnecting { last_error: previous, .. } = &r.state {
                    if last_error.is_empty() {
                        last_error = previous.clone();
                    }
                }
                r.set_state(
                    PeerState::Reconnecting {
                        attempt: attempt + 1,
                        next_attempt_at: SystemTime::now() + wait,
                        last_error: last_error.clone(),
                    },
                    &inner.peers().state_changes,
                );
                Some(r.addresses.clone())
            }
            _ => None,
        });
        let Some(addresses) = addresses else { return };
        tracing::info!(
            peer = %did,
            attempt = attempt + 1,
            delay_ms = wait.as_millis() as u64,
            ceiling_ms = ceiling.as_millis() as u64,
            "reconnect scheduled"
        );
        tokio::select! {
            _ = inner.ctx().shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = wakes.changed() => {
                // The machine slept: whatever backoff had built up is stale.
                attempt = 0;
                streak = ("", 0);
                continue;
            }
        }
        if inner.peers().link(&did).is_some() {
            return;
        }
        inner.metrics().reconnect_attempts.inc();
        let mut failure = None;
        for address in &addresses {
            match inner.dial(address, Some(did.clone())).await {
                Ok(_) => return,
                Err(e) => failure = Some(e),
            }
        }
        let failure = failure.unwrap_or_else(|| NetError::Dial {
            address: String::new(),
            kind: crate::error::DialFailure::Unresolvable,
            reason: "no address is known for this peer".into(),
        });
        last_error = failure.to_string();
        let kind = failure.failure_kind();
        streak = if streak.0 == kind { (kind, streak.1 + 1) } else { (kind, 1) };
        attempt = attempt.saturating_add(1);
        let permanent = config.permanent_after > 0 && streak.1 >= config.permanent_after;
        let exhausted = config.max_attempts > 0 && attempt >= config.max_attempts;
        if permanent || exhausted {
            inner.mark_failed(&did, &last_error);
            tracing::warn!(peer = %did, attempt, kind, "peer marked failed: {last_error}");
            return;
        }
    }
}

/// Dials the configured bootstrap peers and every peer stored by earlier runs (except
/// those marked failed, unless the node was away long enough for marks to be stale).
pub(crate) async fn dial_initial_peers<H: Host>(inner: Arc<H>) {
    let now = SystemTime::now();
    let (stored, gap) = match inner
        .ctx()
        .storage
        .blocking(move |s| Ok((peer_store::load(s)?, peer_store::inactive_for(s, now)?)))
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "reading remembered peers failed");
            (Vec::new(), None)
        }
    };
    let fresh_start = gap.is_none_or(|g| g > inner.config().reconnect.restart_gap);
    if let Some(gap) = gap.filter(|_| fresh_start) {
        tracing::info!(gap_s = gap.as_secs(), "long gap since this node was last active: fresh backoff for every peer");
    }
    let mut dials = Vec::new();
    for entry in &inner.config().bootstrap {
        let (expected, address) = match entry.split_once('@') {
            Some((did, address)) => match did.parse::<Did>() {
                Ok(did) => (Some(did), address.to_string()),
                Err(e) => {
                    tracing::error!(entry, error = %e, "bootstrap entry ignored");
                    continue;
                }
            },
            None => (None, entry.clone()),
        };
        dials.push((expected, address));
    }
    for stored in stored {
        let Some(peer) = stored.peer else { continue };
        let Ok(did) = peer.did.parse::<Did>() else { continue };
        inner.peers().restore(&did, &peer.addresses, &peer.x25519_public_key);
        if !stored.failed_error.is_empty() && !fresh_start {
            inner.peers().with(|t| {
                if let Some(r) = t.get_mut(&did) {
                    r.set_state(
                        PeerState::Failed { last_error: stored.failed_error.clone() },
                        &inner.peers().state_changes,
                    );
                }
            });
            continue;
        }
        if let Some(address) = peer.addresses.first() {
            dials.push((Some(did), address.clone()));
        }
    }
    for (expected, address) in dials {
        inner.ctx().spawn(bootstrap_dial(inner.clone(), address, expected));
    }
}

/// Start-up peers may start after this node: keep trying, with backoff, until connected.
async fn bootstrap_dial<H: Host>(inner: Arc<H>, address: String, expected: Option<Did>) {
    let mut attempt = 0u32;
    let mut wakes = inner.wakes().subscribe();
    loop {
        match inner.dial(&address, expected.clone()).await {
            Ok(did) => {
                tracing::info!(address, peer = %did, "start-up peer connected");
                return;
            }
            Err(e) => {
                if let Some(did) = &expected {
                    // Someone else (the peer itself, or a redial) got there first.
                    if inner.peers().link(did).is_some() {
                        return;
                    }
                }
                let wait = backoff::delay(&inner.config().reconnect, attempt);
                tracing::info!(address, attempt, ?wait, error = %e, "start-up dial failed");
                attempt = attempt.saturating_add(1);
                let limit = inner.config().reconnect.max_attempts;
                if limit > 0 && attempt >= limit {
                    tracing::warn!(address, attempt, "giving up on start-up peer");
                    return;
                }
                tokio::select! {
                    _ = inner.ctx().shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                    _ = wakes.changed() => attempt = 0,
                }
            }
        }
    }
}

/// Notices a wake from sleep — a check that runs much later than due — and tells every
/// redial loop to start over; records the node's last-active time on each check.
pub(crate) async fn watch_for_wake<H: Host>(inner: Arc<H>) {
    let config = inner.config().reconnect.clone();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = inner.ctx().shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.wake_check_interval) => {}
        }
        let elapsed = last.elapsed();
        last = Instant::now();
        if elapsed > config.wake_check_interval + config.wake_jump_threshold {
            tracing::info!(
                slept_ms = elapsed.as_millis() as u64,
                "wake from sleep detected: backoff reset for every peer"
            );
            inner.metrics().wakes_detected.inc();
            inner.wakes().send_modify(|n| *n += 1);
        }
        let now = SystemTime::now();
        if let Err(e) = inner.ctx().storage.blocking(move |s| peer_store::mark_active(s, now)).await {
            tracing::warn!(error = %e, "recording the last-active time failed");
        }
    }
}
