//! ledger: the mutual-credit ledger of the node's cooperatives.
//!
//! - [`engine`]: the rule every node applies to transfers, deterministic whatever the
//!   order in which they arrive;
//! - [`model`]: a cooperative as its signed admin entries define it;
//! - [`signed`]: hashing, signing and verifying members' records;
//! - [`state`]: everything the node knows, in memory, and how an entry changes it;
//! - [`store`]: the RocksDB journal and accounts, written in atomic group commits;
//! - [`commit`]: the one writer, which groups concurrent submissions;
//! - [`replicate`]: the cooperatives' gossip topics, both ways;
//! - [`api`]: the `icn.ledger.v1.Ledger` gRPC API;
//! - [`client`]: what a member's client does: build, sign and read transfers.

pub mod api;
pub mod client;
pub mod commit;
pub mod engine;
pub mod error;
pub mod model;
pub mod replicate;
pub mod signed;
pub mod state;
pub mod store;

pub use error::LedgerError;
