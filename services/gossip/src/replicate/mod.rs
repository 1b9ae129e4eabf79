//! Replication between nodes, through this node's netd (protocol `gossip`).
//!
//! - *Eager push over a mesh* ([`crate::mesh`]): the first time this node sees an entry
//!   it sends it at once to its mesh peers allowed to read the topic, in netd's
//!   best-effort class (memory only, no acknowledgement). An entry *published here* is
//!   sent only once it is durable (the store announces it after its commit), so a crash
//!   can never make this node re-sign a sequence number peers already hold. An entry
//!   *received* is checked (signature, the author's right to write) and sent on before
//!   it is stored; storing it follows in the store's next group commit, off the path.
//! - *Anti-entropy* (`repair`): every `anti_entropy_interval`, each topic's version
//!   vector goes to a few peers (with the topic itself, signed by its creator). A peer
//!   answers with exactly the entries the sender lacks, and sends its own vector back if
//!   it is the one lacking something. This repairs whatever the push lost — a dropped
//!   best-effort message, a node that was down, a partition — through netd's durable
//!   class, which follows netd's inbound log from a cursor kept in the store, so a crash
//!   re-reads frames rather than losing them (applying an entry twice is a no-op).
//!
//! Entries of a `Participants` topic go only to participants' nodes, and `LOCAL` topics
//! never leave this node ([`eligible`]). The peers replication last listed are shared as
//! a [`PeerView`], so the API reports the peers each topic is exchanged with.

mod lanes;
mod repair;

use crate::mesh::{Control, Mesh, MeshConfig};
use crate::store::{Reader, Store};
use crate::GossipError;
use icn_config::TopicsConfig;
use icn_identity::Did;
use icn_proto::gossip::v1::{Entry, Topic, TopicScope};
use icn_proto::gossip::wire::v1::{gossip_frame::Body, GossipFrame, MeshControl};
use icn_runtime::{now_ms, Context};
use lanes::Lanes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// netd protocol name of gossip frames.
pub const PROTOCOL: &str = "gossip";

#[derive(Clone)]
pub struct ReplicationMetrics {
    pub entries_sent: prometheus::IntCounter,
    pub rounds: prometheus::IntCounter,
    pub repaired: prometheus::IntCounter,
    pub frames_invalid: prometheus::IntCounter,
    pub relayed: prometheus::IntCounter,
    pub copies_dropped: prometheus::IntCounter,
    pub pushes_dropped: prometheus::IntCounterVec,
    pub mesh_peers: prometheus::IntGauge,
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
            relayed: counter(
                "gossip_entries_relayed_total",
                "Entries received from a peer, checked, and sent on to the mesh before being stored",
            ),
            copies_dropped: counter(
                "gossip_copies_dropped_total",
                "Pushed copies of entries already seen here, dropped unread",
            ),
            pushes_dropped: register(
                registry,
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new(
                        "gossip_pushes_dropped_total",
                        "Best-effort pushes that did not leave this node (anti-entropy repairs them), by \
                         reason: backlog (netd's stream full or away), refused (netd answered an error)",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            mesh_peers: register(
                registry,
                prometheus::IntGauge::new("gossip_mesh_peers", "Peers in this node's mesh").expect("valid metric"),
            ),
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

/// The connected peers as replication last listed them from netd (refreshed every
/// `anti_entropy_interval`), shared with the API. Empty on a node that does not
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

/// An entry's id in the mesh's seen set: its hash, which differs between two entries an
/// equivocating author signed at one sequence number (so the second still reaches the
/// store, which keeps the evidence).
fn entry_id(entry: &Entry) -> Vec<u8> {
    entry.hash.clone()
}

struct Replicator {
    ctx: Context,
    store: Arc<Store>,
    config: TopicsConfig,
    me: Did,
    lanes: Lanes,
    metrics: ReplicationMetrics,
    view: PeerView,
    mesh: Mutex<Mesh<Did, Vec<u8>>>,
    /// Each connected peer's incarnation: a new one means it restarted and forgot its mesh.
    incarnations: Mutex<HashMap<Did, String>>,
}

/// Starts replication; a node in limited mode (no identity) does not replicate. The
/// returned view follows the peers replication works with.
pub fn start(ctx: &Context, store: Arc<Store>, metrics: ReplicationMetrics) -> anyhow::Result<PeerView> {
    let view = PeerView::default();
    let Some(identity) = ctx.identity.as_ref() else {
        tracing::warn!("no node identity: gossip serves local reads only and does not replicate");
        return Ok(view);
    };
    let config = ctx.config.topics.clone();
    let mesh_config = MeshConfig {
        degree: config.mesh_degree,
        degree_high: config.mesh_degree_high,
        fanout: config.fanout,
        seen: config.seen_entries,
    };
    let (lanes, outgoing) = Lanes::new(ctx, &metrics)?;
    let replicator = Arc::new(Replicator {
        ctx: ctx.clone(),
        config,
        store,
        me: identity.did().clone(),
        lanes,
        metrics,
        view: view.clone(),
        mesh: Mutex::new(Mesh::new(mesh_config, rand::random())),
        incarnations: Mutex::new(HashMap::new()),
    });
    ctx.spawn(replicator.clone().send_best_effort(outgoing));
    ctx.spawn(replicator.clone().inbound_durable());
    ctx.spawn(replicator.clone().inbound_best_effort());
    ctx.spawn(replicator.clone().push_published());
    ctx.spawn(replicator.anti_entropy());
    Ok(view)
}

impl Replicator {
    /// Lists the connected peers from netd and brings the mesh up to date with them;
    /// also what the [`PeerView`] shows from now on.
    async fn refresh_peers(&self) -> Vec<Did> {
        let listed = self.lanes.connected_peers().await;
        let peers: Vec<Did> = listed.iter().map(|(did, _)| did.clone()).collect();
        self.view.set(&peers);
        let controls = {
            let mut incarnations = self.incarnations.lock().expect("incarnations lock");
            let mut mesh = self.mesh.lock().expect("mesh lock");
            for (did, incarnation) in &listed {
                if incarnations.get(did).is_some_and(|known| known != incarnation) {
                    mesh.peer_disconnected(did);
                }
            }
            *incarnations = listed.into_iter().collect();
            let controls = mesh.set_peers(peers.iter().cloned());
            self.metrics.mesh_peers.set(mesh.mesh().count() as i64);
            controls
        };
        self.tell(controls).await;
        peers
    }

    /// Sends mesh changes, durably: a lost graft would leave the mesh lopsided.
    async fn tell(&self, controls: Vec<Control<Did>>) {
        for control in controls {
            let (to, join) = match control {
                Control::Graft(p) => (p, true),
                Control::Prune(p) => (p, false),
            };
            self.lanes.send_durable(&to, &GossipFrame { body: Some(Body::Mesh(MeshControl { join })) }).await;
        }
    }

    /// Sends `entries` of `topic`, first seen here, to the mesh peers allowed to read it
    /// (except `from`), best-effort.
    fn spread(&self, topic: &Topic, from: Option<&Did>, entries: Vec<Entry>) {
        if entries.is_empty() || topic.scope == TopicScope::Local as i32 {
            return;
        }
        let targets = self.mesh.lock().expect("mesh lock").targets(from, |p| self.store.readable_by(topic, p));
        for peer in targets {
            self.lanes.send_entries_best_effort(&peer, entries.clone(), self.config.push_batch_bytes);
        }
    }

    /// Pushed entries, from one peer or several (what netd delivered together): each not
    /// seen here yet is checked, the signatures of all of them in one batch; then each
    /// that is valid, when the store does not hold its place, is remembered as seen and
    /// sent on to the mesh, then stored (the store's group commit runs off this path; its
    /// outcome is only logged). `relay`: false for repairs (anti-entropy sent them; they
    /// are not pushed on, and a copy of what the store holds is skipped unchecked).
    fn take_pushed(&self, pushes: Vec<(Did, Vec<Entry>)>, relay: bool) -> Vec<futures::future::BoxFuture<'static, ()>> {
        let now = now_ms();
        // Copies of one entry within the batch are checked once, the first; a later one
        // is checked only if the first fails (a forged copy carrying a genuine entry's
        // hash must not keep the genuine one out).
        let mut first_copy: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut taken = Vec::new();
        let mut spare = Vec::new();
        for (from, entries) in pushes {
            for entry in entries {
                let id = entry_id(&entry);
                if relay && self.mesh.lock().expect("mesh lock").has_seen(&id) {
                    self.metrics.copies_dropped.inc();
                    continue;
                }
                if !relay && self.store.holds_same(&entry) {
                    continue;
                }
                match first_copy.insert(id, false) {
                    None => taken.push((from.clone(), entry)),
                    Some(_) => spare.push((from.clone(), entry)),
                }
            }
        }
        let mut to_spread: HashMap<(Did, String), (Topic, Vec<Entry>)> = HashMap::new();
        let mut storing = Vec::new();
        let mut round = taken;
        while !round.is_empty() {
            let checked = self.store.check_all(&round.iter().map(|(_, e)| e).collect::<Vec<_>>());
            for ((from, entry), topic) in round.into_iter().zip(checked) {
                let id = entry_id(&entry);
                let topic = match topic {
                    Ok(topic) => topic,
                    Err(e) => {
                        log_refusal(&from, &e);
                        continue;
                    }
                };
                first_copy.insert(id.clone(), true);
                let held = self.store.holds_place_of(&entry);
                // Remembered only once valid: a forged copy with a genuine entry's hash never
                // makes the genuine entry look seen.
                let first = self.mesh.lock().expect("mesh lock").first_sight(id);
                if relay && first && !held {
                    self.metrics.relayed.inc();
                    to_spread
                        .entry((from.clone(), topic.name.clone()))
                        .or_insert_with(|| (topic.clone(), Vec::new()))
                        .1
                        .push(entry.clone());
                }
                let store = self.store.clone();
                storing.push(Box::pin(async move {
                    if let Err(e) = store.apply_checked(entry, &topic, now).await {
                        log_refusal(&from, &e);
                    }
                }) as futures::future::BoxFuture<'static, ()>);
            }
            // Spare copies of entries whose checked copy failed: the first of each next.
            let mut next = Vec::new();
            let mut picked = std::collections::HashSet::new();
            for (from, entry) in std::mem::take(&mut spare) {
                let id = entry_id(&entry);
                match first_copy.get(&id) {
                    Some(false) if picked.insert(id) => next.push((from, entry)),
                    Some(false) => spare.push((from, entry)),
                    _ => self.metrics.copies_dropped.inc(),
                }
            }
            round = next;
        }
        for ((from, _), (topic, entries)) in to_spread {
            self.spread(&topic, Some(&from), entries);
        }
        storing
    }

    /// One frame from `from`. A push here is a repair (best-effort pushes are taken a
    /// delivery at a time, `Lanes::take_best_effort`).
    async fn handle(&self, from: &Did, frame: GossipFrame) {
        match frame.body {
            Some(Body::Push(push)) => {
                // A repair is stored before the durable cursor moves past it.
                futures::future::join_all(self.take_pushed(vec![(from.clone(), push.entries)], false)).await;
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
            Some(Body::Mesh(MeshControl { join: true })) => {
                let answer = self.mesh.lock().expect("mesh lock").graft_received(from.clone());
                self.tell(answer.into_iter().collect()).await;
            }
            Some(Body::Mesh(MeshControl { join: false })) => self.mesh.lock().expect("mesh lock").prune_received(from),
            None => self.metrics.frames_invalid.inc(),
        }
    }

    /// Sends each entry published here to the mesh once it is durable. The store
    /// announces every stored entry; those the mesh has seen already (received from a
    /// peer, or a repair) were sent on when they arrived, or need not be.
    async fn push_published(self: Arc<Self>) {
        let mut live = self.store.watch();
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
            // Whatever else is already announced goes in the same frames.
            let mut batch = vec![first];
            while let Ok(s) = live.try_recv() {
                batch.push(s);
            }
            let mut by_topic: HashMap<String, Vec<Entry>> = HashMap::new();
            for s in batch {
                let Some(entry) = s.entry.clone() else { continue };
                if self.mesh.lock().expect("mesh lock").first_sight(entry_id(&entry)) {
                    by_topic.entry(entry.topic.clone()).or_default().push(entry);
                }
            }
            for (name, entries) in by_topic {
                let Ok(topic) = self.store.topic(&name, &Reader::Did(self.me.clone())) else { continue };
                self.spread(&topic, None, entries);
            }
        }
    }
}

fn log_refusal(from: &Did, e: &GossipError) {
    match e {
        GossipError::Rejected { reason, why } => {
            tracing::debug!(peer = %from, reason = reason.as_str_name(), "entry from a peer rejected: {why}")
        }
        e => tracing::warn!(peer = %from, error = %e, "storing an entry from a peer failed"),
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
