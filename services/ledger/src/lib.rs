//! ledger: the mutual-credit ledger of the node's cooperatives.
//!
//! - [`engine`]: the rule every node applies to transfers, deterministic whatever the
//!   order in which they arrive: the fixpoint over known transfers (`engine/mod.rs`),
//!   what a transfer alone must satisfy (`engine/form.rs`: signature and fields), the
//!   cooperative's limits and the balance floor (`engine/rules.rs`), validators' votes
//!   and the certified transfer that wins a fork (`engine/finality.rs`), and the
//!   `Status`/`Refusal` it answers (`engine/refusal.rs`);
//! - [`model`]: a cooperative as its signed admin entries define it;
//! - [`state`]: everything the node knows, in memory (`state/mod.rs`): how an entry
//!   changes it (`state/apply.rs`), what this node's API refuses before accepting, with
//!   the rule names the API gives (`state/checks.rs`), what reads see
//!   (`state/views.rs`), what peers can make it hold (`state/hold.rs`) and the votes it
//!   takes and casts (`state/votes.rs`);
//! - [`store`]: the RocksDB journal and accounts, written in atomic group commits;
//! - [`commit`]: the one writer, which groups concurrent submissions;
//! - `replay`: the state rebuilt from the journal, at start-up and for
//!   `RecomputeBalances`, with the journal read ahead on a second thread;
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
mod replay;
pub mod replicate;
pub mod state;
pub mod store;
mod verify;

pub use error::LedgerError;
