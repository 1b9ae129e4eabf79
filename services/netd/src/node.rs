//! The node: its QUIC endpoint, the accept loop, dialling (one shared attempt per
//! address), sending, local subscribers, peer exchange, the peers it remembers across
//! restarts, reconnection, and the goodbye at shutdown.

use crate::connection::{self, close, now_ms};
use crate::error::DialFailure;
use crate::frame;
use crate::inbox::Inbox;
use crate::metrics::NetMetrics;
use crate::outbox::{Limits, Outbox};
use crate::peers::{PeerState, PeerTable};
use crate::reconnect::{dial_initial_peers, reconnect_loop, watch_for_wake};
use crate::vivaldi::{Coordinate, Vivaldi};
use crate::{peer_store, NetError};
use futures::future::{BoxFuture, FutureExt, Shared};
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

/// Version of the node-to-node protocol this build speaks, and the oldest it accepts.
pub const PROTOCOL_VERSION: u32 = 1;
pub const MIN_PROTOCOL_VERSION: u32 = 1;

type DialFuture = Shared<BoxFuture<'static, Result<Did, NetError>>>;

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
    pub outbox: Outbox,
    pub inbox: Inbox,
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
        let limits = Limits {
            max_messages: config.peer_queue_capacity,
            max_bytes: config.peer_queue_max_bytes,
            commit: icn_storage::group::GroupLimits {
                backlog: config.commit_backlog,
                max_group: config.commit_group_max,
            },
        };
        let (outbox, inbox) = {
            let storage = ctx.storage.clone();
            let fsync = config.queue_fsync;
            let (retention, buffer) = (config.inbound_retention, config.subscriber_buffer);
            tokio::task::spawn_blocking(move || {
                anyhow::Ok((Outbox::open(storage.clone(), limits, fsync)?, Inbox::open(storage, retention, buffer)?))
            })
            .await??
        };
        let gate = crate::gate::Gate::new(&config.trust);
        let vivaldi = Vivaldi::new(config.vivaldi.clone()).map_err(|e| anyhow::anyhow!("network.vivaldi: {e}"))?;
        let metrics = NetMetrics::new(&ctx.metrics);
        let inner = Arc::new(Inner {
            peers: PeerTable::new(metrics.state_changes.clone()),
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

    /// Stores one message for `to` and answers with its sequence number once it is
    /// durable; delivery follows whenever the peer is reachable (see [`crate::outbox`]).
    pub async fn send(&self, to: &Did, protocol: &str, payload: Vec<u8>, sealed: bool) -> Result<u64, NetError> {
        self.require_identity()?;
        validate_protocol(protocol)?;
        if payload.len() > self.inner.config.max_message_bytes {
            return Err(NetError::InvalidArgument(format!(
                "payload of {} bytes exceeds network.max_message_bytes ({})",
                payload.len(),
                self.inner.config.max_message_bytes
            )));
        }
        let result = self.inner.send(to, protocol, payload, sealed).await;
        if let Err(e) = &result {
            let reason = match e {
                NetError::QueueFull { .. } => "queue_full",
                NetError::UnknownPeer(_) => "unknown_peer",
                NetError::InvalidArgument(_) => "invalid",
                _ => "storage",
            };
            self.inner.metrics.sends_refused.with_label_values(&[reason]).inc();
        }
        result
    }

    /// Queues one message for every connected peer; returns those it was queued for.
    pub async fn broadcast(&self, protocol: &str, payload: Vec<u8>) -> Result<Vec<Did>, NetError> {
        self.require_identity()?;
        validate_protocol(protocol)?;
        let mut sent = Vec::new();
        for (did, _) in self.inner.peers.links() {
            match self.send(&did, protocol, payload.clone(), false).await {
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
            relay_address: String::new(),
            x25519_public_key: inner
                .identity
                .as_ref()
                .map(|i| hex::encode(i.x25519_public_key().as_bytes()))
                .unwrap_or_default(),
            incarnation: inner.incarnation.clone(),
            protocol_version: PROTOCOL_VERSION,
            connected_peers: inner.peers.connected_count() as u32,
            coordinate: Some(inner.vivaldi.lock().expect("vivaldi lock").coordinate().to_proto()),
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

    fn known_peers(&self, exclude: Option<&Did>) -> Vec<KnownPeer> {
        self.peers.with(|t| {
            t.values()
                .filter(|r| r.state.link().is_some() && Some(&r.did) != exclude && !r.addresses.is_empty())
                .take(self.config.peer_exchange_max)
                .map(|r| r.as_known_peer())
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
            task.await.unwrap_or_else(|e| {
                Err(NetError::Dial {
                    address: String::new(),
                    kind: DialFailure::Unreachable,
                    reason: format!("the dial task failed: {e}"),
                })
            })
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
        // An address some connected peer is already reached at (or listens on): that peer.
        let connected_at = self.peers.with(|t| {
            t.values()
                .find(|r| {
                    r.state.link().is_some_and(|l| {
                        l.connection.remote_address().to_string() == address
                            || l.hello.listen_addresses.iter().any(|a| a == address)
                    }) && expected.is_none_or(|e| e == &r.did)
                })
                .map(|r| r.did.clone())
        });
        if let Some(did) = connected_at {
            return Ok(did);
        }
        if self.peers.connected_count() >= self.config.max_peers {
            return Err(NetError::TooManyPeers(self.config.max_peers));
        }
        let marked = expected.is_some_and(|did| self.mark_connecting(did));
        let result = async {
            let dial_error =
                |kind: DialFailure, reason: String| NetError::Dial { address: address.to_string(), kind, reason };
            let socket = tokio::net::lookup_host(address)
                .await
                .map_err(|e| dial_error(DialFailure::Unresolvable, format!("cannot resolve: {e}")))?
                .next()
                .ok_or_else(|| dial_error(DialFailure::Unresolvable, "the name resolves to no address".into()))?;
            let connecting = endpoint
                .connect_with(client.clone(), socket, tls::SERVER_NAME)
                .map_err(|e| dial_error(DialFailure::Unreachable, e.to_string()))?;
            let handshake = async {
                let conn = connecting.await.map_err(|e| dial_error(DialFailure::Unreachable, e.to_string()))?;
                connection::establish(self, conn, true, address, expected).await
            };
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => Err(NetError::ShuttingDown),
                result = tokio::time::timeout(self.config.handshake_timeout, handshake) => result
                    .map_err(|_| dial_error(
                        DialFailure::Timeout,
                        format!("no handshake within {:?}", self.config.handshake_timeout),
                    ))?,
            }
        }
        .await;
        if let (Some(did), true, Err(_)) = (expected, marked, &result) {
            self.peers.with(|t| {
                if let Some(r) = t.get_mut(did) {
                    if matches!(r.state, PeerState::Connecting) {
                        r.set_state(PeerState::Known, &self.peers.state_changes);
                    }
                }
            });
        }
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.dials.with_label_values(&[label]).inc();
        if let Err(e) = &result {
            tracing::debug!(address, error = %e, "dial failed");
        }
        result
    }

    /// Shows a first dial to a peer as `Connecting`; redials keep their own state.
    fn mark_connecting(&self, did: &Did) -> bool {
        self.peers.with(|t| {
            let record = crate::peers::record_of(t, did);
            let first = matches!(record.state, PeerState::Known);
            if first {
                record.set_state(PeerState::Connecting, &self.peers.state_changes);
            }
            first
        })
    }

    async fn send(self: &Arc<Self>, to: &Did, protocol: &str, payload: Vec<u8>, sealed: bool) -> Result<u64, NetError> {
        // Only a peer this node has met, or been told about, can ever be reached.
        let Some(sealing_key) = self.peers.with(|t| t.get(to).map(|r| r.sealing_key.clone())) else {
            return Err(NetError::UnknownPeer(to.clone()));
        };
        let payload = if sealed {
            let key = sealing_key.ok_or_else(|| {
                NetError::InvalidArgument(format!(
                    "no x25519 key is known for {to} yet: it must connect once before messages can be sealed to it"
                ))
            })?;
            icn_identity::seal(&key, &payload).map_err(|e| NetError::InvalidArgument(e.to_string()))?
        } else {
            payload
        };
        self.revive(to);
        let trace = TraceContext { fields: icn_telemetry::propagation::current_fields() };
        let protocol_name = protocol.to_string();
        let seq = self
            .outbox
            .push(to, move |seq| {
                frame::encode(&Frame {
                    body: Some(Body::Message(Message {
                        protocol: protocol_name,
                        seq,
                        payload,
                        sealed,
                        trace: Some(trace),
                        sent_at_ms: now_ms(),
                    })),
                })
            })
            .await?;
        self.metrics.messages_queued.with_label_values(&[protocol]).inc();
        self.update_queue_metrics(to);
        Ok(seq)
    }

    /// Something is being sent to a peer this node gave up on, or closed: try again.
    pub fn revive(self: &Arc<Self>, did: &Did) {
        let revived = self.peers.with(|t| match t.get_mut(did) {
            Some(r)
                if matches!(r.state, PeerState::Failed { .. } | PeerState::Closed { .. })
                    && !r.addresses.is_empty() =>
            {
                r.set_state(
                    PeerState::Reconnecting {
                        attempt: 0,
                        next_attempt_at: SystemTime::now(),
                        last_error: String::new(),
                    },
                    &self.peers.state_changes,
                );
                true
            }
            _ => false,
        });
        if revived {
            self.remember(did);
            tracing::info!(peer = %did, "message queued for a closed or failed peer; reconnecting");
            self.ctx.spawn(reconnect_loop(self.clone(), did.clone()));
        }
    }

    pub fn update_queue_metrics(&self, did: &Did) {
        let (messages, bytes) = self.outbox.depth(did);
        let label = did.to_string();
        self.metrics.queue_depth.with_label_values(&[&label]).set(messages as i64);
        self.metrics.queue_bytes.with_label_values(&[&label]).set(bytes as i64);
    }

    /// Opens a payload sealed to this node.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, icn_identity::SealError> {
        self.identity.as_ref().expect("links exist only with an identity").unseal(sealed)
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
            self.peers.learn(&did, &known.addresses, Some(&known.x25519_public_key));
            if let Some(c) = known.coordinate.as_ref().and_then(Coordinate::from_proto) {
                self.peers.with(|t| {
                    if let Some(r) = t.get_mut(&did).filter(|r| r.state.link().is_none()) {
                        r.coordinate = Some(c);
                    }
                });
            }
            if wanted && self.peers.connected_count() < self.config.max_peers {
                let inner = self.clone();
                let address = known.addresses[0].clone();
                self.ctx.spawn(async move {
                    if let Err(e) = inner.dial(&address, Some(did)).await {
                        tracing::debug!(address, error = %e, "dialling an exchanged peer failed");
                    }
                });
            }
        }
    }

    /// Tells the other connected peers about a newly connected one.
    pub fn announce(self: &Arc<Self>, did: &Did) {
        let Some(known) = self.peers.with(|t| t.get(did).map(|r| r.as_known_peer())) else { return };
        if known.addresses.is_empty() {
            return;
        }
        let frame = Frame { body: Some(Body::PeerExchange(PeerExchange { peers: vec![known] })) };
        for (other, link) in self.peers.links() {
            if &other != did {
                let inner = self.clone();
                let frame = frame.clone();
                self.ctx.spawn(async move { inner.send_control(link.id, &frame).await });
            }
        }
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

    /// Stores where a connected peer can be reached (clearing any failure mark), so a
    /// restart can dial it again.
    pub fn remember(self: &Arc<Self>, did: &Did) {
        self.store_peer(did, String::new());
    }

    /// Gives up on a peer until something is sent to it or it connects; kept across restarts.
    pub fn mark_failed(self: &Arc<Self>, did: &Did, last_error: &str) {
        self.peers.with(|t| {
            if let Some(r) = t.get_mut(did) {
                if matches!(r.state, PeerState::Reconnecting { .. }) {
                    r.set_state(PeerState::Failed { last_error: last_error.to_string() }, &self.peers.state_changes);
                }
            }
        });
        self.store_peer(did, last_error.to_string());
    }

    fn store_peer(self: &Arc<Self>, did: &Did, failed_error: String) {
        let Some(record) = self.peers.with(|t| t.get(did).map(|r| r.as_known_peer())) else { return };
        let storage = self.ctx.storage.clone();
        self.ctx.spawn(async move {
            if let Err(e) = storage.blocking(move |s| peer_store::save(s, &record, &failed_error)).await {
                tracing::warn!(error = %e, "remembering a peer failed");
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
                record.set_state(
                    PeerState::Closed { reason: "this node is shutting down".into() },
                    &self.peers.state_changes,
                );
                return None;
            }
            if let Some(reason) = goodbye {
                record.set_state(
                    PeerState::Closed { reason: format!("peer closed the connection: {reason}") },
                    &self.peers.state_changes,
                );
                return None;
            }
            if !link.outbound {
                let observed = link.connection.remote_address().to_string();
                if !record.addresses.contains(&observed) {
                    record.addresses.push(observed);
                }
            }
            record.set_state(
                PeerState::Reconnecting { attempt: 0, next_attempt_at: SystemTime::now(), last_error: reason.clone() },
                &self.peers.state_changes,
            );
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
                Ok(Err(e)) => tracing::info!(address, error = %e, "inbound connection refused"),
                Err(_) => tracing::info!(address, "inbound connection timed out in the handshake"),
            }
        });
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
            let _ = tokio::time::timeout(inner.config.goodbye_grace, inner.send_control(link_id, &frame)).await;
        }
    });
    futures::future::join_all(goodbyes).await;
    for (_, link) in &links {
        link.connection.close(quinn::VarInt::from_u32(close::SHUTDOWN), b"node shutting down");
    }
    endpoint.close(quinn::VarInt::from_u32(close::SHUTDOWN), b"node shutting down");
    let _ = tokio::time::timeout(inner.config.goodbye_grace, endpoint.wait_idle()).await;
    tracing::info!(peers = links.len(), "said goodbye to peers");
}

/// Feeds one subscriber: the log from `after` until caught up, then live messages; when
/// it falls behind the live buffer, back to the log from where it stands (the shared
/// [`icn_storage::feed`]).
async fn feed_subscriber(
    inner: Arc<Inner>,
    protocols: HashSet<String>,
    live: broadcast::Receiver<Arc<InboundMessage>>,
    after: u64,
    out: mpsc::Sender<Result<InboundMessage, NetError>>,
) {
    let feed = icn_storage::feed::Feed {
        position: |m: &InboundMessage| m.position,
        live,
        after,
        out,
        page: inner.config.catch_up_page,
        shutdown: inner.ctx.shutdown.clone(),
    };
    let reader = inner.clone();
    let read_after = move |after: u64, max: usize| {
        let inner = reader.clone();
        async move { inner.inbox.read_after(after, max).await.map_err(|e| NetError::Storage(e.to_string())) }
    };
    let lagged = inner.metrics.subscribers_lagged.clone();
    icn_storage::feed::run(
        feed,
        read_after,
        |_| true,
        |m| protocols.is_empty() || protocols.contains(&m.protocol),
        move || lagged.inc(),
    )
    .await
}

/// Every keep-alive interval (QUIC refreshes its RTT estimate with each keep-alive):
/// publishes each link's RTT, feeds it to this node's Vivaldi coordinate, and sends the
/// coordinate to every peer.
async fn sample_links(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.keep_alive_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sampled: HashSet<Did> = HashSet::new();
    loop {
        tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let links = inner.peers.links();
        let now: HashSet<Did> = links.iter().map(|(did, _)| did.clone()).collect();
        for (did, link) in &links {
            let rtt = link.connection.rtt();
            inner.metrics.peer_rtt_seconds.with_label_values(&[did.as_str()]).set(rtt.as_secs_f64());
            if let Some(remote) = inner.peers.with(|t| t.get(did).and_then(|r| r.coordinate)) {
                inner.vivaldi.lock().expect("vivaldi lock").observe(&remote, rtt);
            }
        }
        let ours = inner.vivaldi.lock().expect("vivaldi lock").coordinate().to_proto();
        for (_, link) in &links {
            let frame = Frame { body: Some(Body::Coordinate(ours.clone())) };
            inner.send_control(link.id, &frame).await;
        }
        // A disconnected peer has no RTT: drop its series rather than show a stale value.
        for gone in sampled.difference(&now) {
            let _ = inner.metrics.peer_rtt_seconds.remove_label_values(&[gone.as_str()]);
        }
        sampled = now;
    }
}
