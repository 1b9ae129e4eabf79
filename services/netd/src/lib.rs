//! netd: the only ICN service that talks to other nodes.
//!
//! It owns the node's UDP socket and QUIC endpoint, proves and checks identities (TLS
//! with the node's Ed25519 key; see `icn_identity::tls`), runs the Hello exchange and peer exchange,
//! keeps the peer table, and carries messages between local services and peers. Other
//! services reach peers only through its gRPC API ([`api`]); netd never interprets
//! message payloads.

pub mod api;
pub mod backoff;
pub mod best_effort;
mod connection;
mod error;
pub mod frame;
mod gate;
mod host;
pub mod inbox;
mod metrics;
mod nat;
mod node;
pub mod outbox;
mod peer_store;
mod peers;
mod reconnect;
pub mod vivaldi;

pub use connection::close;
pub use error::{DialFailure, NetError};
pub use node::Node;

/// Version of the node-to-node protocol this build speaks, and the oldest it accepts.
/// Version 2 adds the best-effort class on a second unidirectional stream; a link to a
/// version-1 peer carries the durable class only.
pub const PROTOCOL_VERSION: u32 = 2;
/// The first version whose peers read best-effort messages.
pub const BEST_EFFORT_VERSION: u32 = 2;
pub const MIN_PROTOCOL_VERSION: u32 = 1;
pub use peer_store::PEERS_CF;

/// Every column family netd stores data in.
pub const COLUMN_FAMILIES: &[&str] = &[
    PEERS_CF,
    outbox::OUTBOX_CF,
    outbox::OUTBOX_STATE_CF,
    inbox::INBOX_CF,
    inbox::RECEIVED_CF,
    inbox::RECEIVED_SIZES_CF,
];
