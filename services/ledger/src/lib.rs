//! ledger: the mutual-credit ledger of the node's cooperatives.
//!
//! - [`engine`]: the rule every node applies to transfers, deterministic whatever the
//!   order in which they arrive;
//! - [`model`]: a cooperative as its signed admin entries define it;
//! - [`state`]: everything the node knows, in memory, and how an entry changes it;
//! - [`store`]: the RocksDB journal and accounts, written in atomic group commits;
//! - [`commit`]: the one writer, which groups concurrent submissions;
//! - [`replicate`]: the cooperatives' gossip topics, both ways;
//! - [`api`]: the `icn.ledger.v1.Ledger` gRPC API.
//!
//! The records themselves (hashing, signing, building a member's next transfer,
//! amounts, cooperative names) live in `icn-ledger-records`, shared with every client.

pub mod api;
pub mod commit;
pub mod engine;
pub mod error;
pub mod model;
pub mod replicate;
pub mod state;
pub mod store;

pub use error::LedgerError;
