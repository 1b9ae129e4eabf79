//! The node: its QUIC endpoint, the accept loop, dialling (one shared attempt per
//! address), sending, local subscribers, peer exchange, the peers it remembers across
//! restarts, reconnection, and the goodbye at shutdown.

mod dial;
mod exchange;
mod links;
mod rtt;
mod send;
mod subscribe;

use dial::{accept_loop, endpoint};
use exchange::exchange_loop;
use links::goodbye_at_shutdown;
use rtt::sample_links;
use subscribe::feed_subscriber;

use crate::connection::{self, close, now_ms};
use crate::error::DialFailure;
use crate::frame;
use crate::host::{ControlStream, DialFuture, Host};
use crate::inbox::Inbox;
use crate::metrics::NetMetrics;
use crate::outbox::{Limits, Outbox};
use crate::peers::{PeerState, PeerTable};
use crate::reconnect::{dial_initial_peers, reconnect_loop, watch_for_wake};
use crate::vivaldi::{Coordinate, Vivaldi};
use crate::{peer_store, NetError, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use futures::future::FutureExt;
use icn_config::NetworkConfig;
use icn_identity::tls;
use icn_identity::{Did, NodeIdentity};
use icn_proto::common::v1::TraceContext;
use icn_proto::net::v1::{self as api, InboundMessage};

use icn_proto::net::wire::v1::{frame::Body, Frame, Goodbye, Hello, KnownPeer, Message, PeerExchange};
use icn_runtime::Context;
use std::collections::HashMap;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::{broadcast, mpsc};

pub(crate) struct Inner {
    pub ctx: Context,
    pub config: NetworkConfig,
    identity: Option<Arc<NodeIdentity>>,
    endpoint: Option<quinn::Endpoint>,
    client_config: Option<quinn::ClientConfig>,
    pub peers: PeerTable,
    pub gate: crate::gate::Gate,
    /// This node's network coordinate.
    pub vivaldi: Mutex<Vivaldi>,
    /// Inbound rate limit per peer.
    pub buckets: Mutex<HashMap<Did, crate::gate::TokenBucket>>,
    /// Bumped at every detected wake from sleep; redial loops restart their backoff.
    pub wakes: tokio::sync::watch::Sender<u64>,
    pub outbox: Arc<Outbox>,
    pub inbox: Inbox,
    pub best_effort: crate::best_effort::BestEffort,
    pub metrics: NetMetrics,
    pub incarnation: String,
    advertised: Vec<String>,
    dials: Mutex<HashMap<String, DialFuture>>,
    /// Dials to peers learnt from exchange, node-wide (`network.exchange.dials_*`).
    exchange_dials: governor::DefaultDirectRateLimiter,
    /// Sending halves of each link's control stream, by link id.
    pub controls: Mutex<HashMap<u64, ControlStream>>,
    /// Goodbye reasons received, by link id, read when the link closes.
    pub goodbyes: Mutex<HashMap<u64, String>>,
    /// ICE candidates and TURN's state (`[network.nat]`).
    nat: crate::nat::Nat,
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
        let limits = Limits::of(&config);
        let (outbox, inbox) = {
            let storage = ctx.storage.clone();
            let fsync = config.queue_fsync;
            let retention =
                crate::inbox::Retention { messages: config.inbound_retention, bytes: config.inbound_retention_bytes };
            let buffer = config.subscriber_buffer;
            tokio::task::spawn_blocking(move || {
                anyhow::Ok((
                    Arc::new(Outbox::open(storage.clone(), limits, fsync)?),
                    Inbox::open(storage, retention, buffer)?,
                ))
            })
            .await??
        };
        let gate = crate::gate::Gate::new(&config.trust);
        let vivaldi = Vivaldi::new(config.vivaldi.clone()).map_err(|e| anyhow::anyhow!("network.vivaldi: {e}"))?;
        let metrics = NetMetrics::new(&ctx.metrics);
        let best_effort = crate::best_effort::BestEffort::new(
            crate::best_effort::Limits {
                max_messages: config.best_effort_queue_messages,
                max_bytes: config.best_effort_queue_bytes,
            },
            config.subscriber_buffer,
            metrics.best_effort_dropped.clone(),
        );
        let nat = match &endpoint {
            Some(_) => crate::nat::Nat::start(&ctx, &config.nat)?,
            None => crate::nat::Nat::off(),
        };
        let inner = Arc::new(Inner {
            nat,
            best_effort,
            peers: PeerTable::new(metrics.state_changes.clone(), &config.exchange),
            exchange_dials: crate::gate::pace(config.exchange.dials_per_second, config.exchange.dials_burst),
            metrics,
            config,
            identity,
            endpoint,
            client_config,
            gate,
            buckets: Mutex::new(HashMap::new()),
            vivaldi: Mutex::new(vivaldi),
            wakes: tokio::sync::watch::Sender::new(0),
            outbox,
            inbox,
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
            inner.ctx.spawn(watch_for_wake(inner.clone()));
            inner.ctx.spawn(sample_links(inner.clone()));
        }
        Ok(Node { inner })
    }

    /// Messages one stream of the API buffers ahead of its client (`network.stream_buffer`).
    pub fn stream_buffer(&self) -> usize {
        self.inner.config.stream_buffer
    }

    /// Most messages in one batch a subscription delivers (`network.catch_up_page`).
    pub fn batch_limit(&self) -> usize {
        self.inner.config.catch_up_page
    }

    /// Runs a task of the API's until it ends or the node shuts down.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.ctx.spawn(task);
    }

    pub fn did(&self) -> Option<&Did> {
        self.inner.identity.as_ref().map(|i| i.did())
    }

    pub fn require_identity(&self) -> Result<(), NetError> {
        self.inner.ctx.require_identity().map(|_| ()).map_err(|s| NetError::NoIdentity(Box::new(s)))
    }

    pub async fn dial(&self, address: &str, expected: Option<Did>) -> Result<Did, NetError> {
        self.require_identity()?;
        self.inner.dial(address, expected).await
    }

    /// Queues one message for every connected peer; returns those it was queued for.
    pub async fn broadcast(&self, protocol: &str, payload: Vec<u8>) -> Result<Vec<Did>, NetError> {
        self.require_identity()?;
        validate_protocol(protocol)?;
        let mut sent = Vec::new();
        for (did, _) in self.inner.peers.links() {
            match self.send(&did, protocol, payload.clone(), false, api::DeliveryClass::Durable).await {
                Ok(_) => sent.push(did),
                Err(e) => tracing::debug!(peer = %did, error = %e, "broadcast skipped a peer"),
            }
        }
        Ok(sent)
    }

    /// Inbound messages of `protocols` (all when empty): those stored after
    /// `after_position` first when given, then live ones. Falling behind the live buffer
    /// switches back to reading the log, so nothing delivered is skipped.
    pub async fn subscribe(
        &self,
        protocols: HashSet<String>,
        after_position: Option<u64>,
    ) -> Result<mpsc::Receiver<Result<InboundMessage, NetError>>, NetError> {
        let inbox_oldest = self.inner.inbox.oldest().await.map_err(|e| NetError::Storage(e.to_string()))?;
        if let Some(after) = after_position {
            if after + 1 < inbox_oldest && after != 0 {
                return Err(NetError::OutOfRange(format!(
                    "positions up to {} are no longer retained (network.inbound_retention); resume from {}",
                    inbox_oldest - 1,
                    inbox_oldest - 1
                )));
            }
        }
        let (tx, rx) = mpsc::channel(self.inner.config.stream_buffer);
        let inner = self.inner.clone();
        // Subscribe to live messages before reading the head, so none falls in between.
        let live = inner.inbox.watch();
        let start = after_position.unwrap_or_else(|| inner.inbox.head());
        self.inner.ctx.spawn(feed_subscriber(inner, protocols, live, start, tx));
        Ok(rx)
    }

    /// Best-effort inbound messages of `protocols` (all when empty) from now on, in
    /// batches of what arrived together; nothing is stored, so nothing is replayed.
    pub fn subscribe_best_effort(
        &self,
        protocols: HashSet<String>,
    ) -> mpsc::Receiver<Result<api::InboundBatch, NetError>> {
        let (tx, rx) = mpsc::channel(self.inner.config.stream_buffer);
        let live = self.inner.best_effort.watch();
        self.inner.ctx.spawn(subscribe::feed_best_effort(self.inner.clone(), protocols, live, tx));
        rx
    }

    /// Closes the connection to `did`. Intentional: the peer is told, and neither side
    /// reconnects until something is sent. Otherwise: a reset, after which both sides
    /// reconnect as after a failure.
    pub async fn disconnect(&self, did: &Did, intentional: bool) -> Result<(), NetError> {
        self.require_identity()?;
        let inner = &self.inner;
        let Some(link) = inner.peers.link(did) else {
            return Err(match inner.peers.snapshot(did) {
                Some(_) => NetError::NotConnected(did.clone()),
                None => NetError::UnknownPeer(did.clone()),
            });
        };
        if intentional {
            // The state changes first, so the close that follows schedules no redial.
            inner.peers.with(|t| {
                if let Some(r) = t.get_mut(did) {
                    r.set_state(PeerState::Closed { reason: "closed by this node".into() }, &inner.peers.state_changes);
                }
            });
            let goodbye = Frame {
                body: Some(Body::Goodbye(Goodbye { reason: "closed by the operator".into(), intentional: true })),
            };
            let _ = tokio::time::timeout(inner.config.goodbye_grace, inner.send_control(link.id, &goodbye)).await;
            link.connection.close(quinn::VarInt::from_u32(close::INTENTIONAL), b"closed by the operator");
            inner.metrics.connected_peers.set(inner.peers.connected_count() as i64);
            tracing::info!(peer = %did, "disconnected on purpose");
        } else {
            link.connection.close(quinn::VarInt::from_u32(close::RESET), b"reset by the operator");
            tracing::info!(peer = %did, "connection reset");
        }
        Ok(())
    }

    pub fn peers(&self) -> Vec<api::Peer> {
        self.inner.peers.snapshots()
    }

    pub fn peer(&self, did: &Did) -> Result<api::Peer, NetError> {
        self.inner.peers.snapshot(did).ok_or_else(|| NetError::UnknownPeer(did.clone()))
    }

    /// RTT to `did`: measured on the live connection, else estimated from coordinates.
    pub fn estimate_rtt(&self, did: &Did) -> Result<api::EstimateRttResponse, NetError> {
        if let Some(link) = self.inner.peers.link(did) {
            return Ok(api::EstimateRttResponse {
                rtt_us: link.connection.rtt().as_micros() as u64,
                measured: true,
                peer_coordinate: None,
            });
        }
        let Some(coordinate) = self.inner.peers.with(|t| t.get(did).map(|r| r.coordinate)) else {
            return Err(NetError::UnknownPeer(did.clone()));
        };
        let coordinate = coordinate.ok_or_else(|| NetError::NoEstimate(did.clone()))?;
        let estimate = self.inner.vivaldi.lock().expect("vivaldi lock").estimate(&coordinate);
        let estimate = estimate.ok_or_else(|| NetError::NoEstimate(did.clone()))?;
        Ok(api::EstimateRttResponse {
            rtt_us: estimate.as_micros() as u64,
            measured: false,
            peer_coordinate: Some(coordinate.to_proto()),
        })
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
            relay_address: inner.nat.relay_address(),
            x25519_public_key: inner
                .identity
                .as_ref()
                .map(|i| hex::encode(i.x25519_public_key().as_bytes()))
                .unwrap_or_default(),
            incarnation: inner.incarnation.clone(),
            protocol_version: PROTOCOL_VERSION,
            connected_peers: inner.peers.connected_count() as u32,
            coordinate: Some(inner.vivaldi.lock().expect("vivaldi lock").coordinate().to_proto()),
            candidates: inner.nat.candidates(),
            stun: Some(inner.nat.stun()),
            turn: Some(inner.nat.turn()),
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

impl Inner {
    pub fn did(&self) -> &Did {
        self.identity.as_ref().expect("links exist only with an identity").did()
    }

    /// This node's Hello, naming up to `peer_exchange_max` peers other than `to`.
    pub fn hello(&self, to: Option<&Did>) -> Hello {
        let identity = self.identity.as_ref().expect("hello is sent only with an identity");
        let delivered = to.map(|did| self.inbox.delivered(did)).unwrap_or_default();
        Hello {
            protocol_version: PROTOCOL_VERSION,
            min_protocol_version: MIN_PROTOCOL_VERSION,
            did: identity.did().to_string(),
            x25519_public_key: identity.x25519_public_key().as_bytes().to_vec(),
            incarnation: self.incarnation.clone(),
            listen_addresses: self.advertised.clone(),
            relay_addresses: Vec::new(),
            known_peers: self.known_peers(to),
            outbox_epoch: self.outbox.epoch().to_string(),
            delivered_epoch: delivered.0,
            delivered_seq: delivered.1,
        }
    }

    /// Opens a payload sealed to this node.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, icn_identity::SealError> {
        self.identity.as_ref().expect("links exist only with an identity").unseal(sealed)
    }

    pub async fn send_control(&self, link_id: u64, frame: &Frame) {
        let control = self.controls.lock().expect("lock").get(&link_id).cloned();
        if let Some(control) = control {
            let mut stream = control.lock().await;
            if let Err(e) = frame::write_frame(&mut *stream, frame).await {
                tracing::debug!(link = link_id, error = %e, "control frame not sent");
            }
        }
    }
}

/// The node as its links and its redial policy see it (see [`crate::host`]).
impl Host for Inner {
    fn ctx(&self) -> &Context {
        &self.ctx
    }
    fn config(&self) -> &NetworkConfig {
        &self.config
    }
    fn metrics(&self) -> &NetMetrics {
        &self.metrics
    }
    fn peers(&self) -> &PeerTable {
        &self.peers
    }
    fn gate(&self) -> &crate::gate::Gate {
        &self.gate
    }
    fn buckets(&self) -> &Mutex<HashMap<Did, crate::gate::TokenBucket>> {
        &self.buckets
    }
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn inbox(&self) -> &Inbox {
        &self.inbox
    }
    fn best_effort(&self) -> &crate::best_effort::BestEffort {
        &self.best_effort
    }
    fn controls(&self) -> &Mutex<HashMap<u64, ControlStream>> {
        &self.controls
    }
    fn goodbyes(&self) -> &Mutex<HashMap<u64, String>> {
        &self.goodbyes
    }
    fn wakes(&self) -> &tokio::sync::watch::Sender<u64> {
        &self.wakes
    }
    fn did(&self) -> &Did {
        Inner::did(self)
    }
    fn hello(&self, to: Option<&Did>) -> Hello {
        Inner::hello(self, to)
    }
    fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, icn_identity::SealError> {
        Inner::unseal(self, sealed)
    }
    fn learn_peers(self: &Arc<Self>, peers: &[KnownPeer]) {
        Inner::learn_peers(self, peers)
    }
    fn announce(self: &Arc<Self>, did: &Did) {
        Inner::announce(self, did)
    }
    fn remember(self: &Arc<Self>, did: &Did) {
        Inner::remember(self, did)
    }
    fn link_closed(self: &Arc<Self>, did: &Did, link: &crate::peers::Link, reason: String, goodbye: Option<String>) {
        Inner::link_closed(self, did, link, reason, goodbye)
    }
    fn update_queue_metrics(&self, did: &Did) {
        Inner::update_queue_metrics(self, did)
    }
    async fn send_control(&self, link_id: u64, frame: &Frame) {
        Inner::send_control(self, link_id, frame).await
    }
    fn dial(self: &Arc<Self>, address: &str, expected: Option<Did>) -> DialFuture {
        Inner::dial(self, address, expected)
    }
    fn mark_failed(self: &Arc<Self>, did: &Did, last_error: &str) {
        Inner::mark_failed(self, did, last_error)
    }
}
