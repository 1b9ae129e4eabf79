//! gossip: topic pub/sub between nodes.
//!
//! It owns topics and their ACLs, signed entries, each topic's version vector and
//! arrival order, all durable in its RocksDB ([`store`]), the rules every entry must meet
//! wherever it comes from (the records themselves, in `icn-gossip-records`), and replication to other nodes through netd: eager
//! best-effort push over a mesh ([`mesh`], an I/O-free state machine) plus anti-entropy on
//! the version vectors ([`replicate`]), checksummed snapshots
//! for backups ([`snapshot`]), and the count of local streams following each topic
//! (`subscribers`).

pub mod api;
mod error;
pub mod mesh;
pub mod replicate;
pub mod snapshot;
pub mod store;
mod subscribers;

pub use error::GossipError;
