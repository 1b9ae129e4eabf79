//! The ledger's signed records, as every party that makes or checks them needs them:
//! the ledger service, icnctl, the gateway's tests, the test harnesses and the benchmark.
//!
//! - [`signed`]: hashing, signing and verifying transfers and admin entries, each under
//!   its own [`icn_identity::Purpose`];
//! - [`transfer`]: the limits on a transfer's fields and how a member's client builds its
//!   next transfer from its account;
//! - [`amount`]: amounts in a currency's units, both ways;
//! - [`coop`]: cooperative and currency names, and the gossip topic a cooperative
//!   replicates on;
//! - [`finality`]: validator sets and the votes that certify a transfer.
//!
//! Nothing here decides whether a transfer applies: that is the ledger's rule
//! (`services/ledger/src/engine/`), the one place that judges records.

pub mod amount;
pub mod coop;
pub mod finality;
pub mod signed;
pub mod transfer;

pub use amount::{format_amount, parse_amount, AmountError};
pub use signed::{hash, sign, verify, verify_all, SignatureError, Signed};
pub use transfer::{next_transfer, Payment};

/// A record's name: the SHA-256 digest its signer signed.
pub type Hash = [u8; 32];

/// Lower-case hexadecimal, for hashes in messages and logs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
