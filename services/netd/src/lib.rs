//! netd: the only ICN service that talks to other nodes.
//!
//! It owns the node's UDP socket and QUIC endpoint, proves and checks identities (TLS
//! with the node's Ed25519 key; see [`tls`]), runs the Hello exchange and peer exchange,
//! keeps the peer table, and carries messages between local services and peers. Other
//! services reach peers only through its gRPC API ([`api`]); netd never interprets
//! message payloads.

pub mod api;
pub mod backoff;
mod connection;
mod error;
pub mod frame;
mod metrics;
mod node;
mod peers;
pub mod tls;

pub use connection::close;
pub use error::NetError;
pub use node::{Node, MIN_PROTOCOL_VERSION, PEERS_CF, PROTOCOL_VERSION};
