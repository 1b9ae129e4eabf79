//! The node: its QUIC endpoint, the accept loop, dialling (one shared attempt per
//! address), sending, local subscribers, peer exchange, the peers it remembers across
//! restarts, reconnection, and the goodbye at shutdown.

use crate::connection::{self, close, now_ms};
use crate::frame;
use crate::metrics::NetMetrics;
use crate::peers::{Outbound, PeerState, PeerTable};
use crate::{backoff, tls, NetError};
use futures::future::{BoxFuture, FutureExt, Shared};
use icn_config::NetworkConfig;
use icn_identity::{Did, NodeIdentity};
use icn_proto::common::v1::TraceContext;
use icn_proto::net::v1::{self as api, InboundMessage};
use icn_proto::net::wire::v1::{frame::Body, Frame, Goodbye, Hello, KnownPeer, Message, PeerExchange};
use icn_runtime::Context;
use prost::Message as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// Version of the node-to-node protocol this build speaks, and the oldest it accepts.
pub const PROTOCOL_VERSION: u32 = 1;
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// Column family of the peers this node has connected to, so a restart can find them.
pub const PEERS_CF: &str = "peers";
/// How long the goodbye to each peer may take at shutdown before the link is just closed.
const GOODBYE_GRACE: Duration = Duration::from_millis(500);

type DialFuture = Shared<BoxFuture<'static, Result<Did, NetError>>>;

pub(crate) struct Inner {
    pub ctx: Context,
    pub config: NetworkConfig,
    identity: Option<Arc<NodeIdentity>>,
    endpoint: Option<quinn::Endpoint>,
    client_config: Option<quinn::ClientConfig>,
    pub peers: PeerTable,
    pub inbound: broadcast::Sender<Arc<InboundMessage>>,
    pub metrics: NetMetrics,
    pub incarnation: String,
    advertised: Vec<String>,
    dials: Mutex<HashMap<String, DialFuture>>,
    /// Sending halves of each link's control stream, by link id.
    pub controls: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<quinn::SendStream>>>>,
    /// Goodbye reasons received, by link id, read when the link closes.
    pub goodbyes: Mutex<HashMap<u64, String>>,
}

/// Handle to the running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// Binds the QUIC endpoint (unless in limited mode), starts accepting, and dials the
    /// bootstrap peers and the peers remembered from earlier runs.
    pub async fn start(ctx: Context) -> anyhow::Result<Node> {
        let config = ctx.config.network.clone();
        let identity = ctx.identity.clone();
        let (endpoint, client_config) = match &identity {
            Some(id) => {
                let (e, c) = endpoint(id, &config)?;
                (Some(e), Some(c))
            }
            None => (None, None),
        };
        let advertised = match (&endpoint, config.advertise.is_empty()) {
            (_, false) => config.advertise.clone(),
            (Some(e), true) => {
                let local = e.local_addr()?;
                if local.ip().is_unspecified() {
                    Vec::new()
                } else {
                    vec![local.to_string()]
                }
            }
            (None, true) => Vec::new(),
        };
        let (inbound, _) = broadcast::channel(config.subscriber_buffer);
        let inner = Arc::new(Inner {
            metrics: NetMetrics::new(&ctx.metrics),
            config,
            identity,
            endpoint,
            client_config,
            peers: PeerTable::default(),
            inbound,
            incarnation: format!("{:016x}", rand::random::<u64>()),
            advertised,
            dials: Mutex::new(HashMap::new()),
            controls: Mutex::new(HashMap::new()),
            goodbyes: Mutex::new(HashMap::new()),
            ctx,
        });
        if let Some(endpoint) = &inner.endpoint {
            tracing::info!(
                listen = %endpoint.local_addr()?,
                advertised = ?inner.advertised,
                incarnation = %inner.incarnation,
                "quic endpoint ready"
            );
            inner.ctx.spawn(accept_loop(inner.clone(), endpoint.clone()));
            inner.ctx.spawn(exchange_loop(inner.clone()));
            inner.ctx.spawn(goodbye_at_shutdown(inner.clone(), endpoint.clone()));
            inner.ctx.spawn(dial_initial_peers(inner.clone()));
        }
        Ok(Node { inner })
    }

    pub fn did(&self) -> Option<&Did> {
        self.inner.identity.as_ref().map(|i| i.did())
    }

    pub fn require_identity(&self) -> Result<(), NetError> {
        self.inner.ctx.require_identity().map(|_| ()).map_err(NetError::NoIdentity)
    }

    pub async fn dial(&self, address: &str, expected: Option<Did>) -> Result<Did, NetError> {
        self.require_identity()?;
        self.inner.dial(address, expected).await
    }

    /// Queues one message for `to`; returns its sequence number on that link.
    pub fn send(&self, to: &Did, protocol: &str, payload: Vec<u8>, sealed: bool) -> Result<u64, NetError> {
        self.require_identity()?;
        validate_protocol(protocol)?;
        if sealed {
            return Err(NetError::Pending("sealed messages (netd reconnection and queues, issue #3)"));
        }
        if payload.len() > self.inner.config.max_message_bytes {
            return Err(NetError::InvalidArgument(format!(
                "payload of {} bytes exceeds network.max_message_bytes ({})",
                payload.len(),
                self.inner.config.max_message_bytes
            )));
        }
        let result = self.inner.queue(to, protocol, payload);
        if let Err(e) = &result {
            let reason = match e {
                NetError::QueueFull { .. } => "queue_full",
                NetError::UnknownPeer(_) => "unknown_peer",
                _ => "not_connected",
            };
            self.inner.metrics.sends_refused.with_label_values(&[reason]).inc();
        }
        result
    }

    /// Queues one message for every connected peer; returns those it was queued for.
    pub fn broadcast(&self, protocol: &str, payload: Vec<u8>) -> Result<Vec<Did>, NetError> {
        self.require_identity()?;
        validate_protocol(protocol)?;
        let mut sent = Vec::new();
        for (did, _) in self.inner.peers.links() {
            match self.send(&did, protocol, payload.clone(), false) {
                Ok(_) => sent.push(did),
                Err(e) => tracing::debug!(peer = %did, "broadcast skipped a peer: {e}"),
            }
        }
        Ok(sent)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<InboundMessage>> {
        self.inner.inbound.subscribe()
    }

    pub fn peers(&self) -> Vec<api::Peer> {
        self.inner.peers.snapshots()
    }

    pub fn peer(&self, did: &Did) -> Result<api::Peer, NetError> {
        self.inner.peers.snapshot(did).ok_or_else(|| NetError::UnknownPeer(did.clone()))
    }

    pub fn rtt(&self, did: &Did) -> Result<Duration, NetError> {
        match self.inner.peers.link(did) {
            Some(link) => Ok(link.connection.rtt()),
            None => Err(NetError::Pending("RTT estimates for unconnected peers (Vivaldi coordinates, issue #3)")),
        }
    }

    /// Counts a local subscriber ended for falling behind.
    pub fn note_lagged_subscriber(&self) {
        self.inner.metrics.subscribers_lagged.inc();
    }

    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.inner.ctx.shutdown.clone()
    }

    pub fn status(&self) -> api::StatusResponse {
        let inner = &self.inner;
        api::StatusResponse {
            info: Some(inner.ctx.service_info()),
            listen_address: inner
                .endpoint
                .as_ref()
                .and_then(|e| e.local_addr().ok())
                .map(|a| a.to_string())
                .unwrap_or_default(),
            advertised_addresses: inner.advertised.clone(),
            relay_address: String::new(),
            x25519_public_key: inner
                .identity
                .as_ref()
                .map(|i| hex::encode(i.x25519_public_key().as_bytes()))
                .unwrap_or_default(),
            incarnation: inner.incarnation.clone(),
            protocol_version: PROTOCOL_VERSION,
            connected_peers: inner.peers.connected_count() as u32,
        }
    }
}

/// Protocol names route messages to local services; keep them short and plain.
fn validate_protocol(protocol: &str) -> Result<(), NetError> {
    let ok = !protocol.is_empty()
        && protocol.len() <= 64
        && protocol.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidArgument(format!(
            "`protocol` must be 1-64 characters of a-z, 0-9, '-' and '.', got `{}`",
            protocol.chars().take(80).collect::<String>()
        )))
    }
}

fn endpoint(identity: &NodeIdentity, config: &NetworkConfig) -> anyhow::Result<(quinn::Endpoint, quinn::ClientConfig)> {
    use anyhow::Context as _;
    let tls = tls::TlsIdentity::new(identity)?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(config.keep_alive_interval));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(config.idle_timeout).context("network.idle_timeout is too large")?,
    ));
    let transport = Arc::new(transport);
    let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_crypto()?)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(transport.clone());
    let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_crypto()?)?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    let listen: SocketAddr = config.listen.parse().context("network.listen")?;
    let endpoint = quinn::Endpoint::server(server, listen)
        .with_context(|| format!("binding the QUIC endpoint on udp {listen}"))?;
    Ok((endpoint, client))
}

impl Inner {
    pub fn did(&self) -> &Did {
        self.identity.as_ref().expect("links exist only with an identity").did()
    }

    /// This node's Hello, naming up to `peer_exchange_max` peers other than `to`.
    pub fn hello(&self, to: Option<&Did>) -> Hello {
        let identity = self.identity.as_ref().expect("hello is sent only with an identity");
        Hello {
            protocol_version: PROTOCOL_VERSION,
            min_protocol_version: MIN_PROTOCOL_VERSION,
            did: identity.did().to_string(),
            x25519_public_key: identity.x25519_public_key().as_bytes().to_vec(),
            incarnation: self.incarnation.clone(),
            listen_addresses: self.advertised.clone(),
            relay_addresses: Vec::new(),
            known_peers: self.known_peers(to),
        }
    }

    fn known_peers(&self, exclude: Option<&Did>) -> Vec<KnownPeer> {
        self.peers.with(|t| {
            t.values()
                .filter(|r| r.state.link().is_some() && Some(&r.did) != exclude && !r.addresses.is_empty())
                .take(self.config.peer_exchange_max)
                .map(|r| KnownPeer { did: r.did.to_string(), addresses: r.addresses.clone() })
                .collect()
        })
    }

    fn endpoint(&self) -> Result<(&quinn::Endpoint, &quinn::ClientConfig), NetError> {
        match (&self.endpoint, &self.client_config) {
            (Some(e), Some(c)) => Ok((e, c)),
            _ => Err(NetError::NoIdentity(self.ctx.require_identity().expect_err("no endpoint means no identity"))),
        }
    }

    /// Dials `address`; concurrent dials to the same address share one attempt.
    pub fn dial(self: &Arc<Self>, address: &str, expected: Option<Did>) -> DialFuture {
        let mut dials = self.dials.lock().expect("lock");
        if let Some(pending) = dials.get(address) {
            return pending.clone();
        }
        let inner = self.clone();
        let key = address.to_string();
        // The attempt runs as its own (tracked) task so it completes even if every caller
        // goes away, and shutdown waits for it.
        let task = self.ctx.tasks.spawn(async move {
            let result = inner.dial_once(&key, expected.as_ref()).await;
            inner.dials.lock().expect("lock").remove(&key);
            result
        });
        let shared = async move {
            task.await.unwrap_or_else(|e| Err(NetError::Dial { address: String::new(), reason: e.to_string() }))
        }
        .boxed()
        .shared();
        dials.insert(address.to_string(), shared.clone());
        shared
    }

    async fn dial_once(self: &Arc<Self>, address: &str, expected: Option<&Did>) -> Result<Did, NetError> {
        let (endpoint, client) = self.endpoint()?;
        if self.ctx.shutdown.is_cancelled() {
            return Err(NetError::ShuttingDown);
        }
        if let Some(did) = expected {
            if self.peers.link(did).is_some() {
                return Ok(did.clone());
            }
        }
        if self.peers.connected_count() >= self.config.max_peers {
            return Err(NetError::TooManyPeers(self.config.max_peers));
        }
        let marked = expected.is_some_and(|did| self.mark_connecting(did));
        let result = async {
            let dial_error = |reason: String| NetError::Dial { address: address.to_string(), reason };
            let socket = tokio::net::lookup_host(address)
                .await
                .map_err(|e| dial_error(format!("cannot resolve: {e}")))?
                .next()
                .ok_or_else(|| dial_error("the name resolves to no address".into()))?;
            let connecting = endpoint
                .connect_with(client.clone(), socket, tls::SERVER_NAME)
                .map_err(|e| dial_error(e.to_string()))?;
            let handshake = async {
                let conn = connecting.await.map_err(|e| dial_error(e.to_string()))?;
                connection::establish(self, conn, true, address, expected).await
            };
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => Err(NetError::ShuttingDown),
                result = tokio::time::timeout(self.config.handshake_timeout, handshake) => result
                    .map_err(|_| dial_error(format!("no handshake within {:?}", self.config.handshake_timeout)))?,
            }
        }
        .await;
        if let (Some(did), true, Err(_)) = (expected, marked, &result) {
            self.peers.with(|t| {
                if let Some(r) = t.get_mut(did) {
                    if matches!(r.state, PeerState::Connecting) {
                        r.state = PeerState::Known;
                    }
                }
            });
        }
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.dials.with_label_values(&[label]).inc();
        if let Err(e) = &result {
            tracing::debug!(address, "dial failed: {e}");
        }
        result
    }

    /// Shows a first dial to a peer as `Connecting`; redials keep their own state.
    fn mark_connecting(&self, did: &Did) -> bool {
        self.peers.with(|t| {
            let record = t.entry(did.clone()).or_insert_with(|| crate::peers::PeerRecord {
                did: did.clone(),
                state: PeerState::Known,
                addresses: Vec::new(),
                hello: None,
            });
            let first = matches!(record.state, PeerState::Known);
            if first {
                record.state = PeerState::Connecting;
            }
            first
        })
    }

    fn queue(&self, to: &Did, protocol: &str, payload: Vec<u8>) -> Result<u64, NetError> {
        let link = match self.peers.link(to) {
            Some(link) => link,
            None if self.peers.snapshot(to).is_some() => return Err(NetError::NotConnected(to.clone())),
            None => return Err(NetError::UnknownPeer(to.clone())),
        };
        let mut next_seq = link.next_seq.lock().expect("lock");
        let frame = Frame {
            body: Some(Body::Message(Message {
                protocol: protocol.to_string(),
                seq: *next_seq,
                payload,
                sealed: false,
                trace: Some(TraceContext { fields: icn_telemetry::propagation::current_fields() }),
                sent_at_ms: now_ms(),
            })),
        };
        let out = Outbound { bytes: frame::encode(&frame), protocol: protocol.to_string() };
        link.queue.try_send(out).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                NetError::QueueFull { did: to.clone(), capacity: self.config.peer_queue_capacity }
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => NetError::NotConnected(to.clone()),
        })?;
        let seq = *next_seq;
        *next_seq += 1;
        Ok(seq)
    }

    /// Dials peers named by another node, unless already connected, being redialled, or
    /// closed on purpose.
    pub fn learn_peers(self: &Arc<Self>, peers: &[KnownPeer]) {
        for known in peers.iter().take(self.config.peer_exchange_max) {
            let Ok(did) = known.did.parse::<Did>() else { continue };
            if &did == self.did() || known.addresses.is_empty() {
                continue;
            }
            let wanted = self.peers.with(|t| match t.get(&did).map(|r| &r.state) {
                None | Some(PeerState::Known) | Some(PeerState::Failed { .. }) => true,
                Some(_) => false,
            });
            self.peers.learn(&did, &known.addresses);
            if wanted && self.peers.connected_count() < self.config.max_peers {
                let inner = self.clone();
                let address = known.addresses[0].clone();
                self.ctx.spawn(async move {
                    if let Err(e) = inner.dial(&address, Some(did)).await {
                        tracing::debug!(address, "dialling an exchanged peer failed: {e}");
                    }
                });
            }
        }
    }

    /// Tells the other connected peers about a newly connected one.
    pub fn announce(self: &Arc<Self>, did: &Did) {
        let Some(addresses) = self.peers.with(|t| t.get(did).map(|r| r.addresses.clone())) else { return };
        if addresses.is_empty() {
            return;
        }
        let frame = Frame {
            body: Some(Body::PeerExchange(PeerExchange { peers: vec![KnownPeer { did: did.to_string(), addresses }] })),
        };
        for (other, link) in self.peers.links() {
            if &other != did {
                let inner = self.clone();
                let frame = frame.clone();
                self.ctx.spawn(async move { inner.send_control(link.id, &frame).await });
            }
        }
    }

    async fn send_control(&self, link_id: u64, frame: &Frame) {
        let control = self.controls.lock().expect("lock").get(&link_id).cloned();
        if let Some(control) = control {
            let mut stream = control.lock().await;
            if let Err(e) = frame::write_frame(&mut *stream, frame).await {
                tracing::debug!(link = link_id, "control frame not sent: {e}");
            }
        }
    }

    /// Stores where a connected peer can be reached, so a restart can dial it again.
    pub fn remember(self: &Arc<Self>, did: &Did) {
        let Some(addresses) = self.peers.with(|t| t.get(did).map(|r| r.addresses.clone())) else { return };
        let record = KnownPeer { did: did.to_string(), addresses }.encode_to_vec();
        let key = did.to_string();
        let storage = self.ctx.storage.clone();
        self.ctx.spawn(async move {
            let result = storage.blocking(move |s| Ok(s.db().put_cf(s.cf(PEERS_CF)?, key.as_bytes(), record)?)).await;
            if let Err(e) = result {
                tracing::warn!("remembering a peer failed: {e}");
            }
        });
    }

    /// A link ended. Decide, under the table lock, what the peer's state becomes.
    pub fn link_closed(
        self: &Arc<Self>,
        did: &Did,
        link: &crate::peers::Link,
        reason: String,
        goodbye: Option<String>,
    ) {
        let redial = self.peers.with(|t| {
            let record = t.get_mut(did)?;
            match &record.state {
                PeerState::Connected(current) if current.id == link.id => {}
                // A newer link replaced this one; nothing changes.
                _ => return None,
            }
            if self.ctx.shutdown.is_cancelled() {
                record.state = PeerState::Closed { reason: "this node is shutting down".into() };
                return None;
            }
            if let Some(reason) = goodbye {
                record.state = PeerState::Closed { reason: format!("peer closed the connection: {reason}") };
                return None;
            }
            if !link.outbound {
                let observed = link.connection.remote_address().to_string();
                if !record.addresses.contains(&observed) {
                    record.addresses.push(observed);
                }
            }
            record.state =
                PeerState::Reconnecting { attempt: 0, next_attempt_at: SystemTime::now(), last_error: reason.clone() };
            Some(())
        });
        self.metrics.connected_peers.set(self.peers.connected_count() as i64);
        tracing::info!(peer = %did, reason, "peer disconnected");
        if redial.is_some() {
            self.ctx.spawn(reconnect_loop(self.clone(), did.clone()));
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => return,
            },
        };
        let inner = inner.clone();
        let handshake_timeout = inner.config.handshake_timeout;
        inner.ctx.tasks.clone().spawn(async move {
            let address = incoming.remote_address().to_string();
            let handshake = tokio::time::timeout(handshake_timeout, async {
                let conn = incoming.accept().map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
                connection::establish(&inner, conn, false, &address, None).await.map_err(|e| e.to_string())
            });
            let result = tokio::select! {
                _ = inner.ctx.shutdown.cancelled() => return,
                result = handshake => result,
            };
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::info!(address, "inbound connection refused: {e}"),
                Err(_) => tracing::info!(address, "inbound connection timed out in the handshake"),
            }
        });
    }
}

/// Dials the configured bootstrap peers and every peer stored by earlier runs.
async fn dial_initial_peers(inner: Arc<Inner>) {
    let stored = inner
        .ctx
        .storage
        .blocking(|s| {
            let mut peers = Vec::new();
            for item in s.db().iterator_cf(s.cf(PEERS_CF)?, icn_storage::IteratorMode::Start) {
                let (_, value) = item?;
                if let Ok(peer) = KnownPeer::decode(value.as_ref()) {
                    peers.push(peer);
                }
            }
            Ok(peers)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("reading remembered peers failed: {e}");
            Vec::new()
        });
    let mut dials = Vec::new();
    for entry in &inner.config.bootstrap {
        let (expected, address) = match entry.split_once('@') {
            Some((did, address)) => match did.parse::<Did>() {
                Ok(did) => (Some(did), address.to_string()),
                Err(e) => {
                    tracing::error!(entry, "bootstrap entry ignored: {e}");
                    continue;
                }
            },
            None => (None, entry.clone()),
        };
        dials.push((expected, address));
    }
    for peer in stored {
        if let (Ok(did), Some(address)) = (peer.did.parse::<Did>(), peer.addresses.first()) {
            inner.peers.learn(&did, &peer.addresses);
            dials.push((Some(did), address.clone()));
        }
    }
    for (expected, address) in dials {
        let inner = inner.clone();
        inner.ctx.tasks.clone().spawn(async move {
            bootstrap_dial(inner, address, expected).await;
        });
    }
}

/// Bootstrap peers may start after this node: keep trying, with backoff, until connected.
async fn bootstrap_dial(inner: Arc<Inner>, address: String, expected: Option<Did>) {
    let mut attempt = 0u32;
    loop {
        match inner.dial(&address, expected.clone()).await {
            Ok(did) => {
                tracing::info!(address, peer = %did, "bootstrap peer connected");
                return;
            }
            Err(e) => {
                let wait = backoff::delay(&inner.config.reconnect, attempt);
                tracing::info!(address, attempt, ?wait, "bootstrap dial failed: {e}");
                attempt = attempt.saturating_add(1);
                let limit = inner.config.reconnect.max_attempts;
                if limit > 0 && attempt >= limit {
                    tracing::warn!(address, attempt, "giving up on bootstrap peer");
                    return;
                }
                tokio::select! {
                    _ = inner.ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Redials a peer whose connection failed, with backoff, until it is connected again
/// (by us or by it), it is closed on purpose, or the attempts run out.
async fn reconnect_loop(inner: Arc<Inner>, did: Did) {
    let config = inner.config.reconnect.clone();
    let mut attempt = 0u32;
    let mut last_error = String::new();
    loop {
        let wait = backoff::delay(&config, attempt);
        let still_wanted = inner.peers.with(|t| match t.get_mut(&did) {
            Some(r) if matches!(r.state, PeerState::Reconnecting { .. }) => {
                if let PeerState::Reconnecting { last_error: previous, .. } = &r.state {
                    if last_error.is_empty() {
                        last_error = previous.clone();
                    }
                }
                r.state = PeerState::Reconnecting {
                    attempt: attempt + 1,
                    next_attempt_at: SystemTime::now() + wait,
                    last_error: last_error.clone(),
                };
                Some(r.addresses.clone())
            }
            _ => None,
        });
        let Some(addresses) = still_wanted else { return };
        tracing::info!(peer = %did, attempt = attempt + 1, delay_ms = wait.as_millis() as u64, "reconnect scheduled");
        tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if inner.peers.link(&did).is_some() {
            return;
        }
        inner.metrics.reconnect_attempts.inc();
        for address in &addresses {
            match inner.dial(address, Some(did.clone())).await {
                Ok(_) => return,
                Err(e) => last_error = e.to_string(),
            }
        }
        attempt = attempt.saturating_add(1);
        if config.max_attempts > 0 && attempt >= config.max_attempts {
            inner.peers.with(|t| {
                if let Some(r) = t.get_mut(&did) {
                    if matches!(r.state, PeerState::Reconnecting { .. }) {
                        r.state = PeerState::Failed { last_error: last_error.clone() };
                    }
                }
            });
            tracing::warn!(peer = %did, attempt, "giving up reconnecting: {last_error}");
            return;
        }
    }
}

/// Every `peer_exchange_interval`, tells each peer about the others.
async fn exchange_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.peer_exchange_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (did, link) in inner.peers.links() {
            let peers = inner.known_peers(Some(&did));
            if !peers.is_empty() {
                let frame = Frame { body: Some(Body::PeerExchange(PeerExchange { peers })) };
                inner.send_control(link.id, &frame).await;
            }
        }
    }
}

/// At shutdown, tells every peer this close is intentional, closes, and waits briefly
/// for the close to reach them.
async fn goodbye_at_shutdown(inner: Arc<Inner>, endpoint: quinn::Endpoint) {
    inner.ctx.shutdown.cancelled().await;
    let frame = Frame { body: Some(Body::Goodbye(Goodbye { reason: "node shutting down".into(), intentional: true })) };
    let links = inner.peers.links();
    let goodbyes = links.iter().map(|(_, link)| {
        let inner = inner.clone();
        let frame = frame.clone();
        let link_id = link.id;
        async move {
            let _ = tokio::time::timeout(GOODBYE_GRACE, inner.send_control(link_id, &frame)).await;
        }
    });
    futures::future::join_all(goodbyes).await;
    for (_, link) in &links {
        link.connection.close(quinn::VarInt::from_u32(close::SHUTDOWN), b"node shutting down");
    }
    endpoint.close(quinn::VarInt::from_u32(close::SHUTDOWN), b"node shutting down");
    let _ = tokio::time::timeout(GOODBYE_GRACE, endpoint.wait_idle()).await;
    tracing::info!(peers = links.len(), "said goodbye to peers");
}
