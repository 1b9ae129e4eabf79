//! Replication between nodes, through this node's netd (protocol `gossip`).
//!
//! - *Inbound*: follows netd's durable inbound log from a cursor kept in the store, so a
//!   crash re-reads frames rather than losing them (applying an entry twice is a no-op).
//! - *Eager push*: every newly stored entry goes, batched, to `fanout` random connected
//!   peers allowed to read its topic. A peer that stores it pushes it on, so entries
//!   flood the network in a few hops and stop where they are already known.
//! - *Anti-entropy*: every `anti_entropy_interval`, each topic's version vector goes to
//!   a few peers (with the topic itself, signed by its creator). A peer answers with
//!   exactly the entries the sender lacks, and sends its own vector back if it is the
//!   one lacking something. This repairs loss and partitions.
//!
//! Entries of a `Participants` topic go only to participants' nodes, and `LOCAL` topics
//! never leave this node ([`eligible`]). The peers replication last listed are shared as
//! a [`PeerView`], so the API reports the peers each topic is exchanged with.

use crate::store::Store;
use crate::GossipError;
use icn_config::TopicsConfig;
use icn_identity::Did;
use icn_proto::gossip::v1::{Entry, Topic, TopicScope};
use icn_proto::gossip::wire::v1::{gossip_frame::Body, Digest, GossipFrame, Push, TopicAnnounce};
use icn_proto::net::v1::{netd_client::NetdClient, ListPeersRequest, PeerState, SendRequest, SubscribeRequest};
use icn_runtime::{now_ms, Context};
use prost::Message;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// A netd client that carries the caller's trace context on every call.
type Netd = NetdClient<icn_telemetry::propagation::TracedChannel>;

/// netd protocol name of gossip frames.
pub const PROTOCOL: &str = "gossip";
/// Meta key of the netd inbound-log position processed so far.
const CURSOR_KEY: &str = "gossip.netd_position";

#[derive(Clone)]
pub struct ReplicationMetrics {
    pub entries_sent: prometheus::IntCounter,
    pub rounds: prometheus::IntCounter,
    pub repaired: prometheus::IntCounter,
    pub frames_invalid: prometheus::IntCounter,
}

impl ReplicationMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        use icn_telemetry::metrics::register;
        let counter =
            |name: &str, help: &str| register(registry, prometheus::IntCounter::new(name, help).expect("valid metric"));
        Self {
            entries_sent: counter("gossip_entries_sent_total", "Entries sent to peers (pushes and repairs)"),
            rounds: counter("gossip_anti_entropy_rounds_total", "Anti-entropy rounds run"),
            repaired: counter(
                "gossip_entries_repaired_total",
                "Entries sent to fill a peer's gap found by anti-entropy",
            ),
            frames_invalid: counter("gossip_frames_invalid_total", "Frames from peers that did not decode"),
        }
    }
}

/// Peers that may hold `topic`, for a topic that travels at all: the rule deciding where
/// its entries, vectors and announcements go.
pub fn eligible<'a>(store: &Store, topic: &Topic, peers: &'a [Did]) -> Vec<&'a Did> {
    if topic.scope == TopicScope::Local as i32 {
        return Vec::new();
    }
    peers.iter().filter(|p| store.readable_by(topic, p)).collect()
}

/// The connected peers as replication last listed them from netd (refreshed at least
/// every `anti_entropy_interval`), shared with the API. Empty on a node that does not
/// replicate, and while netd cannot be reached: replication then sends to nobody.
#[derive(Clone, Default)]
pub struct PeerView {
    connected: Arc<RwLock<Vec<Did>>>,
}

impl PeerView {
    /// Peers this node exchanges `topic` with: the connected ones [`eligible`] for it.
    pub fn exchanging(&self, store: &Store, topic: &Topic) -> usize {
        eligible(store, topic, &self.connected.read().expect("peer view lock")).len()
    }

    fn set(&self, peers: &[Did]) {
        *self.connected.write().expect("peer view lock") = peers.to_vec();
    }
}

struct Replicator {
    ctx: Context,
    store: Arc<Store>,
    config: TopicsConfig,
    me: Did,
    netd: Netd,
    metrics: ReplicationMetrics,
    view: PeerView,
}

/// Starts replication; a node in limited mode (no identity) does not replicate. The
/// returned view follows the peers replication works with.
pub fn start(ctx: &Context, store: Arc<Store>, metrics: ReplicationMetrics) -> anyhow::Result<PeerView> {
    let view = PeerView::default();
    let Some(identity) = ctx.identity.as_ref() else {
        tracing::warn!("no node identity: gossip serves local reads only and does not replicate");
        return Ok(view);
    };
    let replicator = Arc::new(Replicator {
        ctx: ctx.clone(),
        config: ctx.config.topics.clone(),
        store,
        me: identity.did().clone(),
        netd: NetdClient::new(icn_telemetry::propagation::traced_channel(&ctx.config.endpoints.netd)?),
        metrics,
        view: view.clone(),
    });
    ctx.spawn(replicator.clone().inbound());
    ctx.spawn(replicator.clone().push());
    ctx.spawn(replicator.anti_entropy());
    Ok(view)
}

impl Replicator {
    fn netd(&self) -> Netd {
        self.netd.clone()
    }

    /// Connected peers, by DID; also what the [`PeerView`] shows from now on.
    async fn peers(&self) -> Vec<Did> {
        let peers = match self.netd().list_peers(ListPeersRequest {}).await {
            Ok(r) => r
                .into_inner()
                .peers
                .into_iter()
                .filter(|p| p.state == PeerState::Connected as i32)
                .filter_map(|p| p.did.parse().ok())
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "listing peers from netd failed");
                Vec::new()
            }
        };
        self.view.set(&peers);
        peers
    }

    async fn send(&self, to: &Did, frame: &GossipFrame) {
        let request = SendRequest {
            to: to.to_string(),
            protocol: PROTOCOL.into(),
            payload: frame.encode_to_vec(),
            sealed: false,
        };
        if let Err(e) = self.netd().send(request).await {
            tracing::debug!(peer = %to, error = %e, "sending a gossip frame failed");
        }
    }

    /// Sends `entries` to `to` in frames of at most `push_batch_bytes`.
    async fn send_entries(&self, to: &Did, entries: Vec<Entry>) -> usize {
        let mut sent = 0;
        let mut batch = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            bytes += entry.encoded_len();
            batch.push(entry);
            if bytes >= self.config.push_batch_bytes {
                sent += batch.len();
                self.send(to, &GossipFrame { body: Some(Body::Push(Push { entries: std::mem::take(&mut batch) })) })
                    .await;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            sent += batch.len();
            self.send(to, &GossipFrame { body: Some(Body::Push(Push { entries: batch })) }).await;
        }
        self.metrics.entries_sent.inc_by(sent as u64);
        sent
    }

    /// Follows netd's inbound log of gossip frames, reconnecting as needed.
    /// Follows netd's inbound messages of the gossip protocol from the stored cursor,
    /// reconnecting whenever netd goes away.
    async fn inbound(self: Arc<Self>) {
        let (opener, handler) = (self.clone(), self.clone());
        icn_runtime::follow::follow(
            self.ctx.shutdown.clone(),
            "netd inbound gossip frames",
            self.config.netd_retry,
            move || {
                let this = opener.clone();
                async move {
                    let cursor = this.store.meta(CURSOR_KEY).map_err(|e| format!("reading the netd cursor: {e}"))?;
                    let request = SubscribeRequest {
                        protocols: vec![PROTOCOL.into()],
                        after_position: Some(cursor.unwrap_or(0)),
                    };
                    let stream = this.netd().subscribe(request).await;
                    stream.map(|s| s.into_inner()).map_err(|s| format!("{}: {}", s.code(), s.message()))
                }
            },
            move |m: icn_proto::net::v1::InboundMessage| {
                let this = handler.clone();
                async move {
                    match (m.from.parse::<Did>(), GossipFrame::decode(m.payload.as_slice())) {
                        (Ok(from), Ok(frame)) => this.handle(&from, frame).await,
                        _ => this.metrics.frames_invalid.inc(),
                    }
                    if let Err(e) = this.store.set_meta(CURSOR_KEY, m.position) {
                        tracing::warn!(error = %e, "recording the netd cursor failed");
                    }
                    Ok::<_, String>(())
                }
            },
        )
        .await
    }

    async fn handle(&self, from: &Did, frame: GossipFrame) {
        match frame.body {
            Some(Body::Push(push)) => {
                let now = now_ms();
                // All entries of the push are queued before any is awaited, so they share
                // the store's group commits.
                let results =
                    futures::future::join_all(push.entries.into_iter().map(|entry| self.store.apply(entry, now))).await;
                for result in results {
                    match result {
                        Ok(_) => {}
                        Err(GossipError::Rejected { reason, why }) => {
                            tracing::debug!(peer = %from, reason = reason.as_str_name(), "entry from a peer rejected: {why}")
                        }
                        Err(e) => tracing::warn!(peer = %from, error = %e, "storing an entry from a peer failed"),
                    }
                }
            }
            Some(Body::Topics(announce)) => {
                for topic in announce.topics {
                    // A node only takes topics it may read itself.
                    if !self.store.readable_by(&topic, &self.me) {
                        continue;
                    }
                    if let Err(e) = self.store.upsert_topic(topic).await {
                        tracing::debug!(peer = %from, error = %e, "topic from a peer not taken");
                    }
                }
            }
            Some(Body::Digest(digest)) => self.answer_digest(from, digest).await,
            None => self.metrics.frames_invalid.inc(),
        }
    }

    /// Sends `from` exactly what its vector lacks; asks back for what ours lacks.
    async fn answer_digest(&self, from: &Did, digest: Digest) {
        let Ok(topic) = self.store.topic(&digest.topic, &crate::store::Reader::Did(self.me.clone())) else { return };
        if topic.scope == TopicScope::Local as i32 || !self.store.readable_by(&topic, from) {
            return;
        }
        let ours = self.store.version_vector(&topic.name);
        // What the peer lacks goes in chunks of `push_batch_bytes`, each read off the
        // async threads and sent before the next is read: a digest with empty heads asks
        // for a topic's whole history, which must never sit in memory at once.
        for (author, head) in &ours {
            let mut next = digest.heads.get(author).copied().unwrap_or(0) + 1;
            while next <= *head {
                let (store, name, author, head) = (self.store.clone(), topic.name.clone(), author.clone(), *head);
                let max_bytes = self.config.push_batch_bytes;
                let chunk =
                    tokio::task::spawn_blocking(move || store.entries_of(&name, &author, next, head, max_bytes)).await;
                let chunk = match chunk {
                    Ok(Ok(chunk)) => chunk,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "reading entries for a repair failed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading entries for a repair stopped");
                        break;
                    }
                };
                let Some(last) = chunk.last().map(|e| e.seq) else { break };
                next = last + 1;
                let sent = self.send_entries(from, chunk).await;
                self.metrics.repaired.inc_by(sent as u64);
            }
        }
        let we_lack = digest.heads.iter().any(|(author, head)| *head > ours.get(author).copied().unwrap_or(0));
        if we_lack && !digest.reply {
            let ask = Digest { topic: topic.name.clone(), heads: ours.into_iter().collect(), reply: true };
            self.send(from, &GossipFrame { body: Some(Body::Digest(ask)) }).await;
        }
    }

    /// Pushes newly stored entries to a random fanout of eligible peers, in batches.
    async fn push(self: Arc<Self>) {
        let mut live = self.store.watch();
        let mut peers: Vec<Did> = Vec::new();
        let mut peers_at = Instant::now() - self.config.anti_entropy_interval;
        loop {
            let first = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                next = live.recv() => match next {
                    Ok(s) => s,
                    // Missed entries reach peers through anti-entropy instead.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.config.push_linger;
            let mut bytes = batch[0].encoded_len();
            while bytes < self.config.push_batch_bytes {
                match tokio::time::timeout_at(deadline, live.recv()).await {
                    Ok(Ok(s)) => {
                        bytes += s.encoded_len();
                        batch.push(s);
                    }
                    _ => break,
                }
            }
            if peers_at.elapsed() >= self.config.anti_entropy_interval / 2 || peers.is_empty() {
                peers = self.peers().await;
                peers_at = Instant::now();
            }
            let mut by_topic: HashMap<String, Vec<Entry>> = HashMap::new();
            for s in batch {
                if let Some(e) = s.entry.clone() {
                    by_topic.entry(e.topic.clone()).or_default().push(e);
                }
            }
            for (name, entries) in by_topic {
                let Ok(topic) = self.store.topic(&name, &crate::store::Reader::Did(self.me.clone())) else { continue };
                let mut targets = eligible(&self.store, &topic, &peers);
                targets.shuffle(&mut rand::thread_rng());
                for peer in targets.into_iter().take(self.config.fanout) {
                    self.send_entries(peer, entries.clone()).await;
                }
            }
        }
    }

    /// Every interval: travelling topics, `anti_entropy_topics` at a time in turn, each
    /// with its vector, to a few eligible peers.
    async fn anti_entropy(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.anti_entropy_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor = String::new();
        loop {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let peers = self.peers().await;
            if peers.is_empty() {
                continue;
            }
            self.metrics.rounds.inc();
            let topics = self.store.topics(&crate::store::Reader::Did(self.me.clone()));
            for topic in in_turn(topics, &mut cursor, self.config.anti_entropy_topics) {
                let mut targets = eligible(&self.store, &topic, &peers);
                targets.shuffle(&mut rand::thread_rng());
                for peer in targets.into_iter().take(self.config.anti_entropy_peers) {
                    let announce =
                        GossipFrame { body: Some(Body::Topics(TopicAnnounce { topics: vec![topic.clone()] })) };
                    self.send(peer, &announce).await;
                    let heads = self.store.version_vector(&topic.name).into_iter().collect();
                    let digest = Digest { topic: topic.name.clone(), heads, reply: false };
                    self.send(peer, &GossipFrame { body: Some(Body::Digest(digest)) }).await;
                }
            }
        }
    }
}

/// Up to `n` of `topics` (sorted by name) in turn: those named after `cursor`, wrapping
/// round to the first; the cursor moves to the last one taken.
fn in_turn(topics: Vec<Topic>, cursor: &mut String, n: usize) -> Vec<Topic> {
    let start = topics.partition_point(|t| t.name <= *cursor);
    let taken: Vec<Topic> = topics.iter().cycle().skip(start).take(n.min(topics.len())).cloned().collect();
    if let Some(last) = taken.last() {
        cursor.clone_from(&last.name);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anti_entropy_takes_topics_in_turn_and_comes_round_to_every_one() {
        let topics: Vec<Topic> =
            ["a", "b", "c", "d", "e"].iter().map(|n| Topic { name: n.to_string(), ..Default::default() }).collect();
        let names = |t: Vec<Topic>| t.into_iter().map(|t| t.name).collect::<Vec<_>>().join("");
        let mut cursor = String::new();
        assert_eq!(names(in_turn(topics.clone(), &mut cursor, 2)), "ab");
        assert_eq!(names(in_turn(topics.clone(), &mut cursor, 2)), "cd");
        assert_eq!(names(in_turn(topics.clone(), &mut cursor, 2)), "ea");
        // Fewer topics than the window: each once per round.
        assert_eq!(names(in_turn(topics.clone(), &mut cursor, 10)), "bcdea");
        assert_eq!(names(in_turn(Vec::new(), &mut cursor, 10)), "");
    }
}
