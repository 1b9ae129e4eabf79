//! What a link and the redial policy need from the node that owns them: the narrow
//! handle through which `connection` (one link's handshake, delivery and reading) and
//! `reconnect` (when to dial again) reach shared state and hand events back, without
//! depending on the node's own code. `node::Inner` is the one implementation.
//!
//! Imports go one way: `node` → `connection`, `reconnect` → `host`; never back.

use crate::gate::Gate;
use crate::inbox::Inbox;
use crate::metrics::NetMetrics;
use crate::outbox::Outbox;
use crate::peers::{Link, PeerTable};
use crate::NetError;
use futures::future::{BoxFuture, Shared};
use icn_config::NetworkConfig;
use icn_identity::Did;
use icn_proto::net::wire::v1::{Frame, Hello, KnownPeer};
use icn_runtime::Context;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// A dial in progress; every caller dialling the same address awaits the same attempt.
pub(crate) type DialFuture = Shared<BoxFuture<'static, Result<Did, NetError>>>;

/// The sending half of a link's control stream.
pub(crate) type ControlStream = Arc<tokio::sync::Mutex<quinn::SendStream>>;

pub(crate) trait Host: Send + Sync + Sized + 'static {
    // ----- shared state -----
    fn ctx(&self) -> &Context;
    fn config(&self) -> &NetworkConfig;
    fn metrics(&self) -> &NetMetrics;
    fn peers(&self) -> &PeerTable;
    fn gate(&self) -> &Gate;
    /// Inbound rate limit per peer (one bucket per peer, not per connection).
    fn buckets(&self) -> &Mutex<HashMap<Did, crate::gate::TokenBucket>>;
    fn outbox(&self) -> &Outbox;
    fn inbox(&self) -> &Inbox;
    fn best_effort(&self) -> &crate::best_effort::BestEffort;
    /// Sending halves of each link's control stream, by link id.
    fn controls(&self) -> &Mutex<HashMap<u64, ControlStream>>;
    /// Goodbye reasons received, by link id, read when the link closes.
    fn goodbyes(&self) -> &Mutex<HashMap<u64, String>>;
    /// Bumped at every detected wake from sleep; redial loops restart their backoff.
    fn wakes(&self) -> &tokio::sync::watch::Sender<u64>;

    // ----- this node -----
    fn did(&self) -> &Did;
    /// This node's Hello, as sent to `to`.
    fn hello(&self, to: Option<&Did>) -> Hello;
    fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, icn_identity::SealError>;

    // ----- events handed back to the node -----
    /// Peers a Hello or peer exchange named.
    fn learn_peers(self: &Arc<Self>, peers: &[KnownPeer]);
    /// A new link to `did` is up: tell the other peers.
    fn announce(self: &Arc<Self>, did: &Did);
    /// Store `did` as a peer to redial after a restart.
    fn remember(self: &Arc<Self>, did: &Did);
    /// A link ended; the node decides whether and when to redial.
    fn link_closed(self: &Arc<Self>, did: &Did, link: &Link, reason: String, goodbye: Option<String>);
    fn update_queue_metrics(&self, did: &Did);
    fn send_control(&self, link_id: u64, frame: &Frame) -> impl Future<Output = ()> + Send;
    /// Dials `address`, joining an attempt already in progress.
    fn dial(self: &Arc<Self>, address: &str, expected: Option<Did>) -> DialFuture;
    /// Gives up on `did` until something is sent to it.
    fn mark_failed(self: &Arc<Self>, did: &Did, last_error: &str);
}
