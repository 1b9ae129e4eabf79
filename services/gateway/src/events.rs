//! Live events: new entries on topics, transfers as the ledger stores or applies them,
//! peer changes. One hub gathers them from the node's services, numbers them, keeps the
//! last `api.event_retention` for streams that resume (`Last-Event-ID`), and hands each
//! stream only what its caller may see.

use crate::auth::Claims;
use crate::backend::Backend;
use icn_proto::gateway::v1::{event, Event, EventKind, EventsGap, GossipEntryEvent, PeerEvent, TransferEvent};
use icn_proto::gossip::v1 as gossip;
use icn_proto::ledger::v1 as ledger;
use icn_proto::net::v1 as net;
use icn_runtime::{now_ms, Context};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

pub struct Hub {
    retained: Mutex<VecDeque<Event>>,
    next: Mutex<u64>,
    live: broadcast::Sender<Event>,
    retention: usize,
}

impl Hub {
    pub fn new(retention: usize) -> Arc<Self> {
        Arc::new(Self {
            retained: Mutex::new(VecDeque::with_capacity(retention)),
            // Positions start at the start time (in µs) rather than 1, so they keep growing
            // across restarts: a client resuming with an id from before a restart is
            // told of the gap instead of being handed events it already has the ids of.
            next: Mutex::new(now_ms().max(0) as u64 * 1000),
            live: broadcast::channel(retention.max(16)).0,
            retention,
        })
    }

    /// Numbers an event, retains it and sends it to live streams.
    pub fn emit(&self, kind: event::Kind) {
        let mut next = self.next.lock().expect("not poisoned");
        let event = Event { position: *next, at_ms: now_ms(), kind: Some(kind) };
        *next += 1;
        let mut retained = self.retained.lock().expect("not poisoned");
        if retained.len() == self.retention {
            retained.pop_front();
        }
        retained.push_back(event.clone());
        let _ = self.live.send(event);
    }

    /// Tells every stream that what `source` did for a while reached none of them: the
    /// gateway lost its feed from it and opened it again. Numbered and retained like any
    /// event, so a stream that resumes past it still hears of it.
    pub fn source_gap(&self, source: String) {
        tracing::info!(source = %source, "a feed was opened again: streams are told its events may be missing");
        self.emit(event::Kind::Gap(EventsGap { first_available: 0, missed: 0, source }));
    }

    /// Whether any stream is following the hub now.
    pub fn listening(&self) -> bool {
        self.live.receiver_count() > 0
    }

    /// Retained events after `after` (a gap event first if some were dropped), and the
    /// live feed from there on.
    pub fn resume(&self, after: Option<u64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        // Both under the counter's lock, so nothing falls between replay and live feed.
        let next = self.next.lock().expect("not poisoned");
        let live = self.live.subscribe();
        let Some(after) = after else { return (Vec::new(), live) };
        let retained = self.retained.lock().expect("not poisoned");
        let first = retained.front().map(|e| e.position).unwrap_or(*next);
        let mut out = Vec::new();
        // 0 asks for everything retained; a later position not retained any more (or
        // from before a restart) is a gap the client must know of.
        if after != 0 && after + 1 < first {
            out.push(Event {
                position: after,
                at_ms: now_ms(),
                kind: Some(event::Kind::Gap(EventsGap {
                    first_available: first,
                    missed: first - after - 1,
                    source: String::new(),
                })),
            });
        }
        out.extend(retained.iter().filter(|e| e.position > after).cloned());
        (out, live)
    }
}

/// What one stream wants and may see.
pub struct Filter {
    pub caller: Claims,
    pub kinds: Vec<EventKind>,
    pub topics: Vec<String>,
    /// Topic → may the caller read it; asked of gossip once per topic and
    /// `api.stream_recheck`.
    readable: HashMap<String, bool>,
}

impl Filter {
    pub fn new(caller: Claims, kinds: Vec<EventKind>, topics: Vec<String>) -> Self {
        Self { caller, kinds, topics, readable: HashMap::new() }
    }

    /// Forgets what the caller could read, so that it is asked again (an ACL update or
    /// an admission may have changed it).
    pub fn forget_access(&mut self) {
        self.readable.clear();
    }

    pub async fn admits(&mut self, event: &Event, backend: &Backend) -> bool {
        let kind = match &event.kind {
            Some(event::Kind::Gap(_)) => return true,
            Some(event::Kind::GossipEntry(_)) => EventKind::GossipEntry,
            Some(event::Kind::Transfer(_)) => EventKind::Transfer,
            Some(event::Kind::Peer(_)) => EventKind::Peer,
            Some(event::Kind::Task(_)) => EventKind::Task,
            None => return false,
        };
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return false;
        }
        match &event.kind {
            Some(event::Kind::GossipEntry(e)) => {
                let Some(topic) = e.entry.as_ref().and_then(|s| s.entry.as_ref()).map(|e| e.topic.clone()) else {
                    return false;
                };
                if !self.caller.has("gossip:read") || (!self.topics.is_empty() && !self.topics.contains(&topic)) {
                    return false;
                }
                if let Some(ok) = self.readable.get(&topic) {
                    return *ok;
                }
                let ok = backend.may_read(&self.caller, &topic).await;
                self.readable.insert(topic, ok);
                ok
            }
            Some(event::Kind::Transfer(t)) => {
                let t = t.record.as_ref().and_then(|r| r.transfer.as_ref());
                self.caller.has("ledger:read")
                    && (self.caller.has("admin")
                        || t.is_some_and(|t| t.payer == self.caller.sub || t.payee == self.caller.sub))
            }
            Some(event::Kind::Task(_)) => self.caller.has("compute:read"),
            _ => true,
        }
    }
}

/// Starts the sources: gossip topics, the ledger's transfers, netd's peers.
pub fn start(ctx: &Context, hub: Arc<Hub>, backend: Backend) {
    let interval = ctx.config.api.poll_interval;
    ctx.spawn(follow_topics(ctx.clone(), hub.clone(), backend.clone(), interval));
    ctx.spawn(follow_transfers(ctx.clone(), hub.clone(), backend.clone(), interval));
    ctx.spawn(follow_peers(ctx.clone(), hub, backend, interval));
}

/// Every topic's entries from now on. A topic whose stream ended is followed again at the
/// next listing, and what it stored meanwhile reached no stream: streams are told
/// (`EventsGap.source` = `gossip:<topic>`). `ever` holds the topics followed before, as
/// many as gossip holds (`topics.max_topics`).
async fn follow_topics(ctx: Context, hub: Arc<Hub>, backend: Backend, interval: std::time::Duration) {
    let followed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut ever: HashSet<String> = HashSet::new();
    loop {
        let listed = backend.gossip.clone().list_topics(gossip::ListTopicsRequest::default()).await;
        for topic in listed.map(|r| r.into_inner().topics).unwrap_or_default() {
            if !followed.lock().expect("not poisoned").insert(topic.name.clone()) {
                continue;
            }
            let again = !ever.insert(topic.name.clone());
            let (hub, backend, followed, shutdown) =
                (hub.clone(), backend.clone(), followed.clone(), ctx.shutdown.clone());
            ctx.spawn(async move {
                // From now on: history is for GetEntries. A topic whose stream ends is not
                // opened again here: it is followed again at the next listing, if it is
                // still there.
                let request =
                    gossip::SubscribeRequest { topic: topic.name.clone(), reader: String::new(), start: None };
                match backend.gossip.clone().subscribe(request).await {
                    Ok(stream) => {
                        tracing::info!(topic = %topic.name, "following the topic");
                        if again {
                            hub.source_gap(format!("gossip:{}", topic.name));
                        }
                        let emit = |entry| {
                            hub.emit(event::Kind::GossipEntry(GossipEntryEvent { entry: Some(entry) }));
                            async { Ok::<_, std::convert::Infallible>(()) }
                        };
                        if let icn_runtime::follow::Ended::Broken(why) =
                            icn_runtime::follow::drain(&shutdown, stream.into_inner(), emit).await
                        {
                            tracing::debug!(topic = %topic.name, error = %why, "topic stream ended");
                        }
                    }
                    Err(status) => tracing::debug!(topic = %topic.name, error = %status, "cannot follow the topic yet"),
                }
                // Followed again at the next listing.
                followed.lock().expect("not poisoned").remove(&topic.name);
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

/// The ledger's transfers from now on. The ledger's `Watch` starts at the moment it is
/// opened, so what the ledger did before an opening reached no stream: streams are told
/// (`EventsGap.source` = `ledger`) when the feed opens again after it was lost, and at
/// the first opening when some stream was already listening (the ledger could not be
/// reached at first).
async fn follow_transfers(ctx: Context, hub: Arc<Hub>, backend: Backend, retry: std::time::Duration) {
    let opened_before = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opener_hub = hub.clone();
    icn_runtime::follow::follow(
        ctx.shutdown.clone(),
        "ledger transfers",
        retry,
        move || {
            let mut ledger = backend.ledger.clone();
            let (hub, opened_before) = (opener_hub.clone(), opened_before.clone());
            async move {
                let opened = ledger.watch(ledger::WatchRequest::default()).await.map(|s| s.into_inner());
                if opened.is_ok() {
                    let again = opened_before.swap(true, std::sync::atomic::Ordering::Relaxed);
                    if again || hub.listening() {
                        hub.source_gap("ledger".into());
                    }
                }
                opened
            }
        },
        move |record| {
            hub.emit(event::Kind::Transfer(TransferEvent { record: Some(record) }));
            async { Ok::<_, std::convert::Infallible>(()) }
        },
    )
    .await
}

/// netd has no peer feed: its peer list is polled and changes become events.
async fn follow_peers(ctx: Context, hub: Arc<Hub>, backend: Backend, interval: std::time::Duration) {
    let mut known: HashMap<String, i32> = HashMap::new();
    loop {
        if let Ok(r) = backend.netd.clone().list_peers(net::ListPeersRequest {}).await {
            for peer in r.into_inner().peers {
                if known.insert(peer.did.clone(), peer.state) != Some(peer.state) {
                    hub.emit(event::Kind::Peer(PeerEvent { peer: Some(peer) }));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_event() -> event::Kind {
        event::Kind::Peer(PeerEvent::default())
    }

    #[test]
    fn a_resumed_stream_gets_what_is_retained_after_its_id_or_is_told_of_the_gap() {
        let hub = Hub::new(3);
        for _ in 0..5 {
            hub.emit(peer_event());
        }
        let (all, _) = hub.resume(Some(0));
        assert_eq!(all.len(), 3, "0: everything retained, no gap");
        assert!(all.iter().all(|e| matches!(e.kind, Some(event::Kind::Peer(_)))));
        let first = all[0].position;
        let (after, _) = hub.resume(Some(first));
        assert_eq!(after.iter().map(|e| e.position).collect::<Vec<_>>(), vec![first + 1, first + 2]);
        // Two events were dropped before `first`; a client that saw the one before them
        // missed them.
        let (gap, _) = hub.resume(Some(first - 3));
        match &gap[0].kind {
            Some(event::Kind::Gap(g)) => assert_eq!((g.first_available, g.missed), (first, 2)),
            other => panic!("expected a gap, got {other:?}"),
        }
        assert_eq!(gap.len(), 4);
        // An id from before a restart is older than anything this incarnation emitted.
        let restarted = Hub::new(3);
        restarted.emit(peer_event());
        let (stale, _) = restarted.resume(Some(5));
        assert!(matches!(stale[0].kind, Some(event::Kind::Gap(_))), "{stale:?}");
        let (_, mut live) = hub.resume(None);
        hub.emit(peer_event());
        assert_eq!(live.try_recv().unwrap().position, first + 3);
    }

    #[test]
    fn a_source_gap_reaches_live_streams_and_streams_that_resume_past_it() {
        let hub = Hub::new(8);
        assert!(!hub.listening());
        hub.emit(peer_event());
        let (_, mut live) = hub.resume(None);
        assert!(hub.listening());
        hub.source_gap("ledger".into());
        let gap = live.try_recv().unwrap();
        assert!(matches!(&gap.kind, Some(event::Kind::Gap(g)) if g.source == "ledger" && g.missed == 0), "{gap:?}");
        // A stream resuming from before it hears of it too, in its place.
        let (replayed, _) = hub.resume(Some(gap.position - 1));
        assert_eq!(replayed.len(), 1);
        assert!(matches!(&replayed[0].kind, Some(event::Kind::Gap(g)) if g.source == "ledger"), "{replayed:?}");
    }
}
