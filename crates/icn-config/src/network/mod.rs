//! `[network]`: netd's QUIC endpoint, its peers, and the queues and limits of messages
//! between them. Its sub-tables each have a module: `[network.reconnect]`,
//! `[network.trust]`, `[network.rate_limit]`, `[network.exchange]`,
//! `[network.vivaldi]` and `[network.nat]`.

mod exchange;
mod nat;
mod rate_limit;
mod reconnect;
mod trust;
mod vivaldi;

pub use exchange::ExchangeConfig;
pub use nat::{CandidateKind, NatConfig};
pub use rate_limit::RateLimitConfig;
pub use reconnect::ReconnectConfig;
pub use trust::TrustConfig;
pub use vivaldi::VivaldiConfig;

use crate::check::{positive, socket_addr};
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// UDP address of the QUIC endpoint.
    pub listen: String,
    /// Addresses other nodes should dial to reach this one (`host:port`). Empty: the
    /// listen address, when it is not a wildcard.
    #[serde(default)]
    pub advertise: Vec<String>,
    /// Peers to dial at start-up: `host:port`, or `did:icn:…@host:port` to also pin the
    /// identity expected there.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Most peers named in one Hello or peer-exchange frame.
    pub peer_exchange_max: usize,
    /// How often connected peers re-announce the peers they know.
    #[serde(with = "humantime_serde")]
    pub peer_exchange_interval: Duration,
    /// Most connections this node keeps: dials beyond it are skipped, and a new peer's
    /// inbound connection beyond it is closed (counted in
    /// `icn_netd_connections_refused_total{reason="max_peers"}`).
    pub max_peers: usize,
    /// Largest message payload `Send` accepts, in bytes.
    pub max_message_bytes: usize,
    /// Largest frame read from a peer; larger ones close the connection with an error.
    /// Must exceed `max_message_bytes` by the frame's envelope.
    pub max_frame_bytes: usize,
    /// Messages stored for one peer (sent or not, until it acknowledges them) before
    /// `Send` answers RESOURCE_EXHAUSTED. Accepted messages are never dropped.
    pub peer_queue_capacity: usize,
    /// Bytes stored for one peer before `Send` answers RESOURCE_EXHAUSTED.
    pub peer_queue_max_bytes: usize,
    /// Bytes stored for every peer together before `Send` answers RESOURCE_EXHAUSTED
    /// (counted in `icn_netd_sends_refused_total{reason="node_bytes"}`): peers that never
    /// acknowledge cannot each hold `peer_queue_max_bytes`.
    pub outbox_max_bytes: usize,
    /// Best-effort messages (`DELIVERY_CLASS_BEST_EFFORT`) held in memory for one peer
    /// before `Send` answers RESOURCE_EXHAUSTED; they are never stored.
    pub best_effort_queue_messages: usize,
    /// Bytes of best-effort messages held in memory for one peer.
    pub best_effort_queue_bytes: usize,
    /// Receive and send buffer asked of the kernel for the node's UDP socket. The
    /// default (about 200 KiB on Linux) fills in under 2 ms at 100 MiB/s whenever the
    /// process is not scheduled; every datagram dropped then is taken by QUIC as
    /// congestion. The kernel caps it (`net.core.rmem_max`, `wmem_max`); netd logs what
    /// it got.
    pub udp_buffer_bytes: usize,
    /// Sync queued messages to disk before `Send` answers, so a power cut loses none.
    /// Without it a process crash still loses nothing (RocksDB's log is written), a
    /// machine crash may.
    pub queue_fsync: bool,
    /// Sends waiting for the outbox's committer thread before `Send` answers
    /// RESOURCE_EXHAUSTED.
    pub commit_backlog: usize,
    /// Most sends written together in one (synced) write.
    pub commit_group_max: usize,
    /// How long after a delivery a receiver acknowledges it to the sender, together with
    /// whatever else arrived meanwhile; an idle link sends no acks.
    #[serde(with = "humantime_serde")]
    pub ack_interval: Duration,
    /// Inbound messages buffered in memory for live subscribers; one that falls further
    /// behind catches up from the stored inbound log instead of slowing peers down.
    pub subscriber_buffer: usize,
    /// Messages one `Subscribe` or `SubscribeBestEffort` stream buffers ahead of its
    /// client; also the durable sends of one `SendStream` or `SendBatches` waiting for
    /// their commit at once, and the most messages one `SendBatches` batch may hold.
    pub stream_buffer: usize,
    /// Messages read from the inbound log per step when a subscriber catches up.
    pub catch_up_page: usize,
    /// Delivered inbound messages kept in the inbound log for subscribers to resume from.
    pub inbound_retention: u64,
    /// Bytes of delivered messages kept in the inbound log: the oldest go first once it
    /// holds more (a single larger message is still kept).
    pub inbound_retention_bytes: u64,
    /// QUIC handshake plus Hello exchange must finish within this.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// QUIC keep-alive interval; keeps NAT bindings open and detects dead peers.
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// A connection with no traffic (keep-alives included) for this long is dead.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// At shutdown, how long peers are given to receive this node's goodbye before its
    /// connections close (so they do not redial a node that left on purpose).
    #[serde(with = "humantime_serde")]
    pub goodbye_grace: Duration,
    pub reconnect: ReconnectConfig,
    pub trust: TrustConfig,
    pub rate_limit: RateLimitConfig,
    pub exchange: ExchangeConfig,
    pub vivaldi: VivaldiConfig,
    pub nat: NatConfig,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen: "0.0.0.0:7000".into(),
            advertise: Vec::new(),
            bootstrap: Vec::new(),
            peer_exchange_max: 32,
            peer_exchange_interval: Duration::from_secs(30),
            max_peers: 128,
            max_message_bytes: 1024 * 1024,
            max_frame_bytes: 1024 * 1024 + 64 * 1024,
            peer_queue_capacity: 100_000,
            peer_queue_max_bytes: 256 * 1024 * 1024,
            outbox_max_bytes: 1024 * 1024 * 1024,
            best_effort_queue_messages: 8192,
            best_effort_queue_bytes: 16 * 1024 * 1024,
            udp_buffer_bytes: 4 * 1024 * 1024,
            queue_fsync: true,
            commit_backlog: 65_536,
            commit_group_max: 1024,
            ack_interval: Duration::from_millis(20),
            subscriber_buffer: 8192,
            stream_buffer: 256,
            catch_up_page: 512,
            inbound_retention: 1_000_000,
            inbound_retention_bytes: 512 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            goodbye_grace: Duration::from_millis(500),
            reconnect: ReconnectConfig::default(),
            trust: TrustConfig::default(),
            rate_limit: RateLimitConfig::default(),
            exchange: ExchangeConfig::default(),
            vivaldi: VivaldiConfig::default(),
            nat: NatConfig::default(),
        }
    }
}

impl NetworkConfig {
    /// The listen address parses, queues and limits are positive and coherent, and the
    /// sub-tables pass their own checks. (`[network.vivaldi]` is checked by netd, against
    /// the coordinate bounds of its protocol.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        socket_addr("network.listen", &self.listen)?;
        positive("network.max_message_bytes", self.max_message_bytes)?;
        positive("network.peer_queue_capacity", self.peer_queue_capacity)?;
        positive("network.peer_queue_max_bytes", self.peer_queue_max_bytes)?;
        positive("network.outbox_max_bytes", self.outbox_max_bytes)?;
        positive("network.best_effort_queue_messages", self.best_effort_queue_messages)?;
        positive("network.best_effort_queue_bytes", self.best_effort_queue_bytes)?;
        positive("network.udp_buffer_bytes", self.udp_buffer_bytes)?;
        positive("network.commit_backlog", self.commit_backlog)?;
        positive("network.commit_group_max", self.commit_group_max)?;
        positive("network.subscriber_buffer", self.subscriber_buffer)?;
        positive("network.stream_buffer", self.stream_buffer)?;
        positive("network.catch_up_page", self.catch_up_page)?;
        positive("network.max_peers", self.max_peers)?;
        positive("network.inbound_retention_bytes", self.inbound_retention_bytes as usize)?;
        if self.max_frame_bytes < self.max_message_bytes + 1024 {
            return Err(ConfigError::Invalid {
                key: "network.max_frame_bytes",
                problem: format!(
                    "must exceed network.max_message_bytes ({}) by at least 1024 bytes of envelope",
                    self.max_message_bytes
                ),
            });
        }
        self.reconnect.validate()?;
        self.rate_limit.validate()?;
        self.exchange.validate()?;
        self.trust.validate()?;
        self.nat.validate()?;
        if self.idle_timeout <= self.keep_alive_interval {
            return Err(ConfigError::Invalid {
                key: "network.idle_timeout",
                problem: "must be longer than network.keep_alive_interval".into(),
            });
        }
        Ok(())
    }
}
