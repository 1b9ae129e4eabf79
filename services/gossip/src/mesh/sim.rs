//! A thousand [`Mesh`]es in one process: a deterministic discrete-event simulation
//! (one seed decides topology, delays, loss, churn and every mesh choice), to reason about
//! networks larger than one machine can run.
//!
//! Each node connects to `links` random others (both ways), as netd's bounded peer table
//! would; each link has a fixed delay plus jitter. Pushes are lost with probability
//! `loss` (the real ones travel best-effort); grafts, prunes and repairs are not (they
//! travel durably). Churn takes random nodes down for a while: messages to them are lost,
//! their neighbours see them leave and come back, and they come back with an empty mesh
//! and their stored entries (the store is durable). Anti-entropy: every second each up
//! node asks one random up neighbour for what it lacks.
//!
//! The tests check that every entry reaches every node, by push alone when nothing is
//! lost, and with the repair otherwise; and count messages per entry.

use super::{Control, Mesh, MeshConfig};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

#[derive(Clone, Copy, Debug)]
struct Scenario {
    nodes: usize,
    /// Peers each node dials (the table is symmetric, so ~2× this per node).
    links: usize,
    entries: usize,
    /// Publications per second, from random up nodes.
    rate: u64,
    /// Link delays are uniform in this range (µs), fixed per link, plus up to 10 % jitter.
    delay_us: (u64, u64),
    loss: f64,
    /// Nodes down at any time, each for `down_us`.
    churn: usize,
    down_us: u64,
    /// Whether anti-entropy runs (off: what the push alone delivers).
    repair: bool,
    seed: u64,
}

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Nodes (up at the end) holding every entry.
    complete: usize,
    up: usize,
    /// Deliveries of entries by push / by repair.
    by_push: u64,
    by_repair: u64,
    /// Push messages sent (duplicates included) per entry.
    pushes_per_entry: f64,
    /// Time from publication to the last node holding it, over entries that reached
    /// every node up throughout by push (µs).
    p50_us: u64,
    p99_us: u64,
}

#[derive(Debug)]
enum Msg {
    Push(usize),
    Graft,
    Prune,
    Repair(Vec<usize>),
}

#[derive(Debug)]
enum Event {
    Deliver { to: usize, from: usize, msg: Msg },
    Publish(usize),
    AntiEntropy,
    Heartbeat,
    Down(usize),
    Up(usize),
}

struct Node {
    mesh: Mesh<usize, usize>,
    up: bool,
    held: Vec<bool>,
}

struct Sim {
    s: Scenario,
    rng: StdRng,
    now: u64,
    order: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Event>>,
    nodes: Vec<Node>,
    adjacency: Vec<Vec<usize>>,
    delay: std::collections::HashMap<(usize, usize), u64>,
    published_at: Vec<u64>,
    /// Per entry: nodes holding it, and when the last of them got it.
    holders: Vec<usize>,
    last_at: Vec<u64>,
    pushes: u64,
    by_push: u64,
    by_repair: u64,
    /// Nodes that were ever down (their latency is not the mesh's).
    churned: HashSet<usize>,
}

/// The defaults of `topics.mesh_degree`, `mesh_degree_high`, `fanout` and `seen_entries`.
const CONFIG: MeshConfig = MeshConfig { degree: 4, degree_high: 8, fanout: 4, seen: 1 << 16 };
const SECOND: u64 = 1_000_000;

impl Sim {
    fn new(s: Scenario) -> Self {
        let mut rng = StdRng::seed_from_u64(s.seed);
        let mut adjacency = vec![HashSet::new(); s.nodes];
        for a in 0..s.nodes {
            while adjacency[a].len() < s.links {
                let b = rng.gen_range(0..s.nodes);
                if b != a {
                    adjacency[a].insert(b);
                    adjacency[b].insert(a);
                }
            }
        }
        let adjacency: Vec<Vec<usize>> = adjacency
            .into_iter()
            .map(|set| {
                let mut v: Vec<usize> = set.into_iter().collect();
                v.sort();
                v
            })
            .collect();
        let mut delay = std::collections::HashMap::new();
        for (a, peers) in adjacency.iter().enumerate() {
            for &b in peers {
                let d = rng.gen_range(s.delay_us.0..=s.delay_us.1);
                delay.insert((a.min(b), a.max(b)), d);
            }
        }
        let nodes = (0..s.nodes)
            .map(|i| Node { mesh: Mesh::new(CONFIG, s.seed ^ (i as u64 + 1)), up: true, held: vec![false; s.entries] })
            .collect();
        Self {
            s,
            rng,
            now: 0,
            order: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            nodes,
            adjacency,
            delay,
            published_at: vec![0; s.entries],
            holders: vec![0; s.entries],
            last_at: vec![0; s.entries],
            pushes: 0,
            by_push: 0,
            by_repair: 0,
            churned: HashSet::new(),
        }
    }

    fn at(&mut self, time: u64, event: Event) {
        self.order += 1;
        self.events.push(Some(event));
        self.queue.push(Reverse((time, self.order, self.events.len() - 1)));
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if matches!(msg, Msg::Push(_)) {
            self.pushes += 1;
            if self.rng.gen_bool(self.s.loss) {
                return;
            }
        }
        let base = self.delay[&(from.min(to), from.max(to))];
        let jitter = self.rng.gen_range(0..=base / 10);
        self.at(self.now + base + jitter, Event::Deliver { to, from, msg });
    }

    fn controls(&mut self, from: usize, controls: Vec<Control<usize>>) {
        for c in controls {
            match c {
                Control::Graft(p) => self.send(from, p, Msg::Graft),
                Control::Prune(p) => self.send(from, p, Msg::Prune),
            }
        }
    }

    fn up_neighbours(&self, node: usize) -> Vec<usize> {
        self.adjacency[node].iter().copied().filter(|p| self.nodes[*p].up).collect()
    }

    /// `node` holds `entry` now; true when it is new there.
    fn hold(&mut self, node: usize, entry: usize) -> bool {
        if self.nodes[node].held[entry] {
            return false;
        }
        self.nodes[node].held[entry] = true;
        self.holders[entry] += 1;
        self.last_at[entry] = self.last_at[entry].max(self.now);
        true
    }

    /// First sight of `entry` at `node` (from `from`): held and sent on to the mesh.
    fn spread(&mut self, node: usize, entry: usize, from: Option<usize>) {
        if !self.nodes[node].mesh.first_sight(entry) {
            return;
        }
        let targets = self.nodes[node].mesh.targets(from.as_ref(), |_| true);
        for t in targets {
            self.send(node, t, Msg::Push(entry));
        }
    }

    fn run(mut self) -> Outcome {
        let s = self.s;
        for n in 0..s.nodes {
            let peers = self.adjacency[n].clone();
            let grafts = self.nodes[n].mesh.set_peers(peers);
            self.controls(n, grafts);
        }
        // Publications start after the mesh has formed; churn and repair run throughout.
        let start = SECOND;
        for e in 0..s.entries {
            self.at(start + e as u64 * SECOND / s.rate, Event::Publish(e));
        }
        let end = start + s.entries as u64 * SECOND / s.rate;
        let mut t = start;
        while s.churn > 0 && t < end {
            for _ in 0..s.churn {
                let n = self.rng.gen_range(0..s.nodes);
                self.at(t, Event::Down(n));
            }
            t += s.down_us;
        }
        let settle = end + s.down_us + 10 * SECOND;
        let mut tick = SECOND;
        while tick <= settle {
            if s.repair {
                self.at(tick, Event::AntiEntropy);
            }
            self.at(tick, Event::Heartbeat);
            tick += SECOND;
        }
        while let Some(Reverse((time, _, index))) = self.queue.pop() {
            self.now = time;
            let event = self.events[index].take().expect("each event runs once");
            self.handle(event);
        }
        let up: Vec<usize> = (0..s.nodes).filter(|n| self.nodes[*n].up).collect();
        let complete = up.iter().filter(|n| self.nodes[**n].held.iter().all(|h| *h)).count();
        let mut latencies: Vec<u64> = (0..s.entries)
            .filter(|e| {
                (0..s.nodes).all(|n| self.churned.contains(&n) || self.nodes[n].held[*e])
                    && self.last_at[*e] < self.published_at[*e] + SECOND
            })
            .map(|e| self.last_at[e] - self.published_at[e])
            .collect();
        latencies.sort();
        let p = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        Outcome {
            complete,
            up: up.len(),
            by_push: self.by_push,
            by_repair: self.by_repair,
            pushes_per_entry: self.pushes as f64 / s.entries as f64,
            p50_us: p(0.5),
            p99_us: p(0.99),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Publish(e) => {
                let up: Vec<usize> = (0..self.s.nodes).filter(|n| self.nodes[*n].up).collect();
                let origin = *up.choose(&mut self.rng).expect("some node is up");
                self.published_at[e] = self.now;
                self.hold(origin, e);
                self.spread(origin, e, None);
            }
            Event::Deliver { to, from, msg } => {
                if !self.nodes[to].up {
                    return;
                }
                match msg {
                    Msg::Push(e) => {
                        if self.hold(to, e) {
                            self.by_push += 1;
                        }
                        self.spread(to, e, Some(from));
                    }
                    Msg::Graft => {
                        if let Some(Control::Prune(p)) = self.nodes[to].mesh.graft_received(from) {
                            self.send(to, p, Msg::Prune);
                        }
                    }
                    Msg::Prune => self.nodes[to].mesh.prune_received(&from),
                    Msg::Repair(entries) => {
                        for e in entries {
                            if self.hold(to, e) {
                                self.by_repair += 1;
                                // Repaired entries are not pushed on; marking them seen
                                // keeps a late push copy from spreading them again.
                                self.nodes[to].mesh.first_sight(e);
                            }
                        }
                    }
                }
            }
            Event::AntiEntropy => {
                for n in 0..self.s.nodes {
                    if !self.nodes[n].up {
                        continue;
                    }
                    let Some(&peer) = self.up_neighbours(n).choose(&mut self.rng) else { continue };
                    let lacking: Vec<usize> =
                        (0..self.s.entries).filter(|e| self.nodes[peer].held[*e] && !self.nodes[n].held[*e]).collect();
                    if !lacking.is_empty() {
                        self.send(peer, n, Msg::Repair(lacking));
                    }
                }
            }
            Event::Heartbeat => {
                for n in 0..self.s.nodes {
                    if self.nodes[n].up {
                        let controls = self.nodes[n].mesh.heartbeat();
                        self.controls(n, controls);
                    }
                }
            }
            Event::Down(n) => {
                if !self.nodes[n].up {
                    return;
                }
                self.nodes[n].up = false;
                self.churned.insert(n);
                for p in self.adjacency[n].clone() {
                    self.nodes[p].mesh.peer_disconnected(&n);
                }
                self.at(self.now + self.s.down_us, Event::Up(n));
            }
            Event::Up(n) => {
                // A restart forgets the mesh and what was seen; the store is durable.
                let node = &mut self.nodes[n];
                node.up = true;
                node.mesh = Mesh::new(CONFIG, self.s.seed ^ self.now);
                let peers = self.up_neighbours(n);
                let grafts = self.nodes[n].mesh.set_peers(peers.clone());
                self.controls(n, grafts);
                for p in peers {
                    let controls = self.nodes[p].mesh.peer_connected(n);
                    self.controls(p, controls);
                }
            }
        }
    }
}

const THOUSAND: Scenario = Scenario {
    nodes: 1000,
    links: 8,
    entries: 200,
    rate: 100,
    delay_us: (5_000, 40_000),
    loss: 0.0,
    churn: 0,
    down_us: 2 * SECOND,
    repair: false,
    seed: 12,
};

#[test]
fn at_a_thousand_nodes_with_nothing_lost_pushes_alone_reach_every_node() {
    let outcome = Sim::new(THOUSAND).run();
    println!("1,000 nodes, no loss, no churn, no repair: {outcome:?}");
    assert_eq!(outcome.complete, 1000, "the mesh is connected: the push alone reaches every node");
    assert_eq!(outcome.by_repair, 0);
    assert_eq!(outcome.by_push, 999 * 200);
    // Each node sends each entry to its mesh but the sender: about `degree` copies.
    let per_node = outcome.pushes_per_entry / 1000.0;
    assert!((3.0..=CONFIG.degree_high as f64).contains(&per_node), "{per_node} pushes per entry per node");
    // A few hops of at most 44 ms each.
    assert!(outcome.p99_us < 500_000, "{outcome:?}");
}

#[test]
fn at_a_thousand_nodes_with_loss_delay_and_churn_every_live_node_ends_with_every_entry() {
    let scenario = Scenario { loss: 0.05, churn: 20, repair: true, seed: 99, ..THOUSAND };
    let outcome = Sim::new(scenario).run();
    println!("1,000 nodes, 5 % loss, 20 nodes down at a time: {outcome:?}");
    assert_eq!(outcome.up, 1000, "every node is back up at the end");
    assert_eq!(outcome.complete, outcome.up, "{outcome:?}");
    // Loss and churn leave gaps that the repair fills; most deliveries are still pushes.
    assert!(outcome.by_repair > 0, "{outcome:?}");
    assert!(outcome.by_push > 9 * outcome.by_repair, "{outcome:?}");
}

#[test]
fn the_simulation_is_decided_by_its_seed() {
    let scenario = Scenario { nodes: 200, entries: 50, loss: 0.1, churn: 5, repair: true, ..THOUSAND };
    assert_eq!(Sim::new(scenario).run(), Sim::new(scenario).run());
    assert_ne!(Sim::new(scenario).run(), Sim::new(Scenario { seed: 1, ..scenario }).run());
}
