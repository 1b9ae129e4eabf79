//! ledger: the mutual-credit ledger of the node's cooperatives.
//!
//! [`engine`] holds the rule every node applies to transfers, deterministic whatever the
//! order in which they arrive. Storage, replication through the cooperative's gossip
//! topic and the gRPC API are the rest of issue #5; until then the API answers
//! UNIMPLEMENTED.

pub mod engine;
