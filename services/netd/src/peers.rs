//! The peer table: every peer this node knows, the state of its connection, and the live
//! link when there is one. One short-held lock; nothing awaits while holding it.

use icn_identity::Did;
use icn_proto::net::v1 as api;
// foldhash: seeded per process like std's SipHash, so a peer cannot aim DIDs at one
// bucket, at a fraction of its cost (SipHash showed in a profile of 1 KiB sends).
use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a peer told us about itself in its Hello.
#[derive(Clone, Debug)]
pub struct PeerHello {
    pub x25519_public_key: Vec<u8>,
    pub incarnation: String,
    pub listen_addresses: Vec<String>,
}

#[derive(Default, Debug)]
pub struct LinkCounters {
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// A live, handshaken connection to a peer.
#[derive(Clone)]
pub struct Link {
    pub id: u64,
    pub connection: quinn::Connection,
    /// True when this node dialled.
    pub outbound: bool,
    /// DID of the side that dialled; decides which of two simultaneous connections stays.
    pub dialer: Did,
    pub hello: PeerHello,
    /// The epoch of the peer's outbound queue store, for de-duplicating its messages.
    pub peer_epoch: String,
    pub connected_at: SystemTime,
    pub counters: Arc<LinkCounters>,
    /// The protocol version the peer's Hello named (best effort from version 2 on).
    pub protocol_version: u32,
}

/// A peer's connection, as a state machine whose variants carry their own data.
#[derive(Clone)]
pub enum PeerState {
    /// Known (from peer exchange or the store) but never connected in this run.
    Known,
    Connecting,
    Connected(Link),
    Reconnecting {
        attempt: u32,
        next_attempt_at: SystemTime,
        last_error: String,
    },
    /// Closed on purpose by either side; not retried.
    Closed {
        reason: String,
    },
    /// Gave up after the configured attempts; cleared when something is sent to it.
    Failed {
        last_error: String,
    },
}

impl PeerState {
    /// Label for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            PeerState::Known => "known",
            PeerState::Connecting => "connecting",
            PeerState::Connected(_) => "connected",
            PeerState::Reconnecting { .. } => "reconnecting",
            PeerState::Closed { .. } => "closed",
            PeerState::Failed { .. } => "failed",
        }
    }

    pub fn link(&self) -> Option<&Link> {
        match self {
            PeerState::Connected(link) => Some(link),
            _ => None,
        }
    }
}

pub struct PeerRecord {
    pub did: Did,
    pub state: PeerState,
    /// Where this peer can be dialled, best first.
    pub addresses: Vec<String>,
    pub hello: Option<PeerHello>,
    /// The peer's X25519 key, known from a Hello of this or an earlier run.
    pub sealing_key: Option<Vec<u8>>,
    /// The peer's latest Vivaldi coordinate, from the peer itself or from peer exchange.
    pub coordinate: Option<crate::vivaldi::Coordinate>,
}

impl PeerRecord {
    /// Moves to `state`, counting the change (by target state) when it is one.
    pub fn set_state(&mut self, state: PeerState, changes: &prometheus::IntCounterVec) {
        if std::mem::discriminant(&self.state) != std::mem::discriminant(&state) {
            changes.with_label_values(&[state.name()]).inc();
            tracing::debug!(peer = %self.did, from = self.state.name(), to = state.name(), "peer state changed");
        }
        self.state = state;
    }

    /// How this peer is described to other peers and in the store.
    pub fn as_known_peer(&self) -> icn_proto::net::wire::v1::KnownPeer {
        icn_proto::net::wire::v1::KnownPeer {
            did: self.did.to_string(),
            addresses: self.addresses.clone(),
            x25519_public_key: self.sealing_key.clone().unwrap_or_default(),
            coordinate: self.coordinate.map(|c| c.to_proto()),
        }
    }
}

/// The record of `did`, created in state `Known` when missing.
pub fn record_of<'a>(table: &'a mut HashMap<Did, PeerRecord>, did: &Did) -> &'a mut PeerRecord {
    table.entry(did.clone()).or_insert_with(|| PeerRecord {
        did: did.clone(),
        state: PeerState::Known,
        addresses: Vec::new(),
        hello: None,
        sealing_key: None,
        coordinate: None,
    })
}

/// Adds the addresses `known` lacks, up to `max` in all.
pub(crate) fn add_addresses(known: &mut Vec<String>, addresses: &[String], max: usize) -> Result<(), ExchangeBound> {
    for a in addresses {
        if known.contains(a) {
            continue;
        }
        if known.len() >= max {
            return Err(ExchangeBound::Addresses);
        }
        known.push(a.clone());
    }
    Ok(())
}

/// What happened when a new link was offered to the table.
pub enum Admission {
    /// The link is now the peer's connection; `replaced` is the link it displaced.
    Admitted { replaced: Option<Link> },
    /// An existing link to the same peer is kept and the new one must be closed.
    Duplicate,
}

/// Which bound kept part of what peer exchange named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeBound {
    /// The table holds `network.exchange.max_known_peers` peers: a new one is ignored.
    KnownPeers,
    /// The peer has `network.exchange.max_addresses_per_peer` addresses: more are ignored.
    Addresses,
}

impl ExchangeBound {
    pub fn label(self) -> &'static str {
        match self {
            ExchangeBound::KnownPeers => "known_peers",
            ExchangeBound::Addresses => "addresses",
        }
    }
}

pub struct PeerTable {
    inner: Mutex<HashMap<Did, PeerRecord>>,
    next_link_id: AtomicU64,
    /// Peers remembered from exchange, and addresses kept per peer.
    max_known: usize,
    max_addresses: usize,
    /// Counts every state change, by the state entered.
    pub state_changes: prometheus::IntCounterVec,
}

impl PeerTable {
    pub fn new(state_changes: prometheus::IntCounterVec, exchange: &icn_config::ExchangeConfig) -> Self {
        Self {
            inner: Mutex::new(HashMap::default()),
            next_link_id: AtomicU64::new(0),
            max_known: exchange.max_known_peers,
            max_addresses: exchange.max_addresses_per_peer,
            state_changes,
        }
    }

    /// Most addresses kept per peer (`network.exchange.max_addresses_per_peer`).
    pub fn max_addresses(&self) -> usize {
        self.max_addresses
    }

    pub fn next_link_id(&self) -> u64 {
        self.next_link_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut HashMap<Did, PeerRecord>) -> R) -> R {
        f(&mut self.inner.lock().expect("peer table lock poisoned"))
    }

    pub fn link(&self, did: &Did) -> Option<Link> {
        self.with(|t| t.get(did).and_then(|r| r.state.link().cloned()))
    }

    pub fn links(&self) -> Vec<(Did, Link)> {
        self.with(|t| t.values().filter_map(|r| r.state.link().map(|l| (r.did.clone(), l.clone()))).collect())
    }

    pub fn connected_count(&self) -> usize {
        self.with(|t| t.values().filter(|r| r.state.link().is_some()).count())
    }

    /// Records that another peer says `did` can be reached at `addresses`, without
    /// changing its state, within the table's bounds; says which bound cut it short.
    ///
    /// What a peer says of another is not the other's word: its X25519 key is not taken
    /// from here (a peer could name a victim with its own key first), only from the
    /// victim's own Hello ([`PeerTable::admit`]) or this node's store of those.
    pub fn learn(&self, did: &Did, addresses: &[String]) -> Result<(), ExchangeBound> {
        self.with(|t| {
            if !t.contains_key(did) && t.len() >= self.max_known {
                return Err(ExchangeBound::KnownPeers);
            }
            let record = record_of(t, did);
            add_addresses(&mut record.addresses, addresses, self.max_addresses)
        })
    }

    /// Takes back a peer from this node's own store, with the key its Hello gave.
    pub fn restore(&self, did: &Did, addresses: &[String], sealing_key: &[u8]) {
        self.with(|t| {
            let record = record_of(t, did);
            let _ = add_addresses(&mut record.addresses, addresses, self.max_addresses);
            if sealing_key.len() == 32 {
                record.sealing_key.get_or_insert_with(|| sealing_key.to_vec());
            }
        })
    }

    /// Offers a freshly handshaken link. Of two links to one peer, the one that survives is
    /// chosen by a rule both ends compute alike: a link from a new incarnation of the peer
    /// replaces the old one (the peer restarted); of two links from the same incarnation,
    /// the one dialled by the smaller DID stays (two simultaneous dials); a newer link in
    /// the same direction replaces the older (the old one is dead but not yet noticed).
    pub fn admit(&self, did: &Did, link: Link, dial_address: Option<&str>) -> Admission {
        self.with(|t| {
            let record = record_of(t, did);
            let replaced = match &record.state {
                PeerState::Connected(existing) => {
                    let keep_existing = existing.hello.incarnation == link.hello.incarnation
                        && existing.dialer != link.dialer
                        && existing.dialer < link.dialer;
                    if keep_existing {
                        return Admission::Duplicate;
                    }
                    Some(existing.clone())
                }
                _ => None,
            };
            if let Some(a) = dial_address {
                if !record.addresses.iter().any(|x| x == a) {
                    record.addresses.insert(0, a.to_string());
                }
            }
            // The peer's own word, but bounded all the same.
            let _ = add_addresses(&mut record.addresses, &link.hello.listen_addresses, self.max_addresses);
            record.sealing_key = Some(link.hello.x25519_public_key.clone());
            record.hello = Some(link.hello.clone());
            record.set_state(PeerState::Connected(link), &self.state_changes);
            Admission::Admitted { replaced }
        })
    }

    pub fn snapshot(&self, did: &Did) -> Option<api::Peer> {
        self.with(|t| t.get(did).map(view))
    }

    pub fn snapshots(&self) -> Vec<api::Peer> {
        let mut peers: Vec<api::Peer> = self.with(|t| t.values().map(view).collect());
        peers.sort_by(|a, b| a.did.cmp(&b.did));
        peers
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

fn view(record: &PeerRecord) -> api::Peer {
    let mut peer = api::Peer {
        did: record.did.to_string(),
        advertised_addresses: record.hello.as_ref().map(|h| h.listen_addresses.clone()).unwrap_or_default(),
        incarnation: record.hello.as_ref().map(|h| h.incarnation.clone()).unwrap_or_default(),
        x25519_public_key: record.hello.as_ref().map(|h| hex::encode(&h.x25519_public_key)).unwrap_or_default(),
        ..Default::default()
    };
    let state = match &record.state {
        PeerState::Known => api::PeerState::Unspecified,
        PeerState::Connecting => api::PeerState::Connecting,
        PeerState::Connected(link) => {
            peer.path = api::Path::Direct as i32;
            peer.remote_address = link.connection.remote_address().to_string();
            peer.rtt_us = link.connection.rtt().as_micros() as u64;
            peer.outbound = link.outbound;
            peer.connected_at_ms = millis(link.connected_at);
            peer.messages_sent = link.counters.messages_sent.load(Ordering::Relaxed);
            peer.messages_received = link.counters.messages_received.load(Ordering::Relaxed);
            peer.bytes_sent = link.counters.bytes_sent.load(Ordering::Relaxed);
            peer.bytes_received = link.counters.bytes_received.load(Ordering::Relaxed);
            api::PeerState::Connected
        }
        PeerState::Reconnecting { attempt, next_attempt_at, last_error } => {
            peer.attempt = *attempt;
            peer.next_attempt_at_ms = millis(*next_attempt_at);
            peer.last_error = last_error.clone();
            api::PeerState::Reconnecting
        }
        PeerState::Closed { reason } => {
            peer.last_error = reason.clone();
            api::PeerState::Closed
        }
        PeerState::Failed { last_error } => {
            peer.last_error = last_error.clone();
            api::PeerState::Failed
        }
    };
    peer.state = state as i32;
    peer
}
