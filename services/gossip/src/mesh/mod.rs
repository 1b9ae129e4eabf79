//! How entries spread: a gossipsub-like mesh, written as a state machine with no I/O
//! (events in, messages to send out) so that `sim` can run a thousand of them
//! deterministically from a seed, with loss, delay and churn.
//!
//! Each node keeps a *mesh*: a symmetric subset of its connected peers, about
//! `mesh_degree` of them. It joins a peer's mesh with a `Graft` (the peer answers with a
//! `Prune` when its own mesh is at `mesh_degree_high`) and leaves with a `Prune`. The
//! first time a node sees an entry — published here, or received and verified — it
//! sends it at once to every mesh peer but the one it came from; every later copy is
//! dropped unread ([`Mesh::first_sight`]). Latency is therefore the shortest path through
//! the mesh, and each node sends each entry about `mesh_degree` times. Loss, a gap in
//! the mesh, or a node that was down is repaired by exact anti-entropy on the version
//! vectors (see `replicate`), not here.
//!
//! Why a mesh and not an eager-push tree with lazy announcements (Plumtree): a tree
//! sends each entry once per node, but one lost or slow tree edge delays every node
//! beneath it until a lazy announcement times out, and churn keeps re-shaping the tree;
//! a mesh of degree 4 costs about 4 copies per node and delivers along the fastest of
//! several paths, with nothing to repair when a node leaves. At 100 entries of 256 bytes a
//! second the copies cost nothing next to the verification and the disk, and anti-entropy
//! already is the lazy repair path.
//!
//! The mesh is node-wide rather than per topic: a topic that only some peers may read
//! (`Participants`) is sent to its readers among the mesh, topped up with other
//! readers to `fanout` when the mesh holds too few ([`Mesh::targets`]).

#[cfg(test)]
mod sim;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::hash::Hash;

/// The mesh's sizes.
#[derive(Clone, Copy, Debug)]
pub struct MeshConfig {
    /// Peers a node grafts up to (`topics.mesh_degree`).
    pub degree: usize,
    /// Beyond this a node prunes peers back to `degree`, and answers grafts with a prune
    /// (`topics.mesh_degree_high`).
    pub degree_high: usize,
    /// Readers of a topic an entry goes to at least, mesh or not (`topics.fanout`).
    pub fanout: usize,
    /// Entry ids remembered as seen, oldest forgotten first (`topics.seen_entries`). A
    /// forgotten entry sent again is caught by the store (it holds it), never stored twice.
    pub seen: usize,
}

/// A mesh change to tell a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control<P> {
    Graft(P),
    Prune(P),
}

pub struct Mesh<P, I> {
    config: MeshConfig,
    peers: BTreeSet<P>,
    mesh: BTreeSet<P>,
    seen: HashSet<I>,
    seen_order: VecDeque<I>,
    rng: StdRng,
}

impl<P: Ord + Clone, I: Hash + Eq + Clone> Mesh<P, I> {
    pub fn new(config: MeshConfig, seed: u64) -> Self {
        Self {
            config,
            peers: BTreeSet::new(),
            mesh: BTreeSet::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The peers an entry goes to now.
    pub fn mesh(&self) -> impl Iterator<Item = &P> {
        self.mesh.iter()
    }

    /// Replaces the set of connected peers: those gone leave the mesh; then the mesh is
    /// brought back within its sizes ([`Mesh::heartbeat`]).
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = P>) -> Vec<Control<P>> {
        self.peers = peers.into_iter().collect();
        let peers = &self.peers;
        self.mesh.retain(|p| peers.contains(p));
        self.heartbeat()
    }

    pub fn peer_connected(&mut self, peer: P) -> Vec<Control<P>> {
        self.peers.insert(peer);
        self.heartbeat()
    }

    /// A peer went away (or restarted, which forgets its mesh): it leaves ours.
    pub fn peer_disconnected(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.mesh.remove(peer);
    }

    /// Grafts random connected peers while the mesh is under `degree`; prunes random
    /// members while it is over `degree_high`.
    pub fn heartbeat(&mut self) -> Vec<Control<P>> {
        let mut out = Vec::new();
        if self.mesh.len() < self.config.degree {
            let mut candidates: Vec<P> = self.peers.iter().filter(|p| !self.mesh.contains(*p)).cloned().collect();
            candidates.shuffle(&mut self.rng);
            for p in candidates.into_iter().take(self.config.degree - self.mesh.len()) {
                self.mesh.insert(p.clone());
                out.push(Control::Graft(p));
            }
        } else if self.mesh.len() > self.config.degree_high {
            let mut members: Vec<P> = self.mesh.iter().cloned().collect();
            members.shuffle(&mut self.rng);
            for p in members.into_iter().take(self.mesh.len() - self.config.degree) {
                self.mesh.remove(&p);
                out.push(Control::Prune(p));
            }
        }
        out
    }

    /// A peer joined our mesh; answered with a prune when the mesh is full. The graft
    /// arrived, so the peer is connected even if this node has not listed it yet.
    pub fn graft_received(&mut self, from: P) -> Option<Control<P>> {
        if self.mesh.contains(&from) {
            return None;
        }
        if self.mesh.len() >= self.config.degree_high {
            return Some(Control::Prune(from));
        }
        self.peers.insert(from.clone());
        self.mesh.insert(from);
        None
    }

    pub fn prune_received(&mut self, from: &P) {
        self.mesh.remove(from);
    }

    /// Whether `id` was remembered as seen.
    pub fn has_seen(&self, id: &I) -> bool {
        self.seen.contains(id)
    }

    /// Whether `id` is new to this node, remembering it: only the first sight of an
    /// entry is sent on. Callers remember only entries that passed their checks, so a
    /// forged copy carrying a genuine entry's id cannot make the genuine one look seen.
    pub fn first_sight(&mut self, id: I) -> bool {
        if self.seen.contains(&id) {
            return false;
        }
        if self.seen_order.len() >= self.config.seen {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.clone());
        self.seen_order.push_back(id);
        true
    }

    /// Where an entry first seen here goes: the mesh peers allowed to read it, except
    /// `from` (who sent it); topped up with random other readers to `fanout` when the
    /// mesh holds fewer.
    pub fn targets(&mut self, from: Option<&P>, readable: impl Fn(&P) -> bool) -> Vec<P> {
        let mut out: Vec<P> = self.mesh.iter().filter(|p| Some(*p) != from && readable(p)).cloned().collect();
        if out.len() < self.config.fanout {
            let mut others: Vec<P> = self
                .peers
                .iter()
                .filter(|p| Some(*p) != from && !self.mesh.contains(*p) && readable(p))
                .cloned()
                .collect();
            others.shuffle(&mut self.rng);
            let missing = self.config.fanout - out.len();
            out.extend(others.into_iter().take(missing));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: MeshConfig = MeshConfig { degree: 3, degree_high: 5, fanout: 2, seen: 4 };

    #[test]
    fn the_mesh_fills_to_its_degree_and_trims_back_from_above_its_high_mark() {
        let mut mesh: Mesh<u32, u32> = Mesh::new(CONFIG, 1);
        let grafts = mesh.set_peers(0..10);
        assert_eq!(grafts.len(), 3);
        assert_eq!(mesh.mesh().count(), 3);
        // Grafts from others are taken up to the high mark, then answered with a prune.
        let outsiders: Vec<u32> = (0..10).filter(|p| !mesh.mesh.contains(p)).collect();
        assert_eq!(mesh.graft_received(outsiders[0]), None);
        assert_eq!(mesh.graft_received(outsiders[1]), None);
        assert_eq!(mesh.graft_received(outsiders[2]), Some(Control::Prune(outsiders[2])));
        assert_eq!(mesh.mesh().count(), 5);
        // Peers leaving take their place with them; the heartbeat refills.
        let members: Vec<u32> = mesh.mesh().copied().collect();
        for p in &members[..4] {
            mesh.peer_disconnected(p);
        }
        assert_eq!(mesh.mesh().count(), 1);
        assert_eq!(mesh.heartbeat().len(), 2);
        assert_eq!(mesh.mesh().count(), 3);
    }

    #[test]
    fn an_entry_is_sent_on_once_to_its_readers_never_back_to_its_sender() {
        let mut mesh: Mesh<u32, u32> = Mesh::new(CONFIG, 7);
        mesh.set_peers(0..6);
        let members: Vec<u32> = mesh.mesh().copied().collect();
        assert!(mesh.first_sight(1));
        assert!(!mesh.first_sight(1), "a second copy is dropped");
        let targets = mesh.targets(Some(&members[0]), |_| true);
        assert_eq!(targets, members[1..].to_vec());
        // A topic only peers 4 and 5 may read goes to them even when the mesh misses them.
        let readers = mesh.targets(None, |p| *p >= 4);
        assert!(readers.iter().all(|p| *p >= 4) && readers.len() == 2, "{readers:?}");
        assert!(mesh.targets(None, |_| false).is_empty(), "nobody may read it: nobody gets it");
        // The seen set is bounded: the oldest id is forgotten first.
        for id in 2..=5 {
            assert!(mesh.first_sight(id));
        }
        assert!(mesh.first_sight(1), "forgotten after four newer ids");
        assert!(!mesh.first_sight(5));
    }
}
