//! What the engine answers about a transfer: where it stands ([`Status`]) and, when it
//! can never apply, which rule it broke ([`Refusal`]).
//!
//! Owns the vocabulary only; it must never decide anything. The rules that produce a
//! refusal live in `form` (a transfer alone), `rules` (the balance floor) and the
//! engine's fixpoint in `mod.rs` (chain links and deps). The API's names for these
//! refusals are the state's business (`state::checks`).

use icn_ledger_records::transfer::MAX_AMOUNT;

/// Why a transfer can never apply, whatever arrives later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the signature is not the payer's over this transfer")]
    BadSignature,
    #[error("`{0}` is not a DID")]
    BadDid(String),
    #[error("the amount must be positive, got {0}")]
    NonPositiveAmount(i64),
    #[error("the amount {0} exceeds the largest amount, {MAX_AMOUNT} minor units")]
    AmountTooLarge(i64),
    #[error("{0}")]
    Malformed(String),
    #[error("a payer cannot pay itself")]
    SelfTransfer,
    #[error("unknown currency `{0}`")]
    UnknownCurrency(String),
    #[error("payer_seq starts at 1")]
    ZeroSequence,
    #[error("prev_hash does not name the payer's transfer number {0}")]
    BadChainLink(u64),
    #[error("dep {0} does not pay this payer in this currency")]
    DepNotIncoming(String),
    #[error("dep {0} is already counted by an earlier transfer of the payer")]
    DepClaimed(String),
    #[error("the payer's balance would be {balance}, below its floor of {floor}")]
    Overdraft { balance: i128, floor: i128 },
    #[error("created_at_ms {at} is before the payer's previous transfer ({previous})")]
    TimeBeforePrevious { at: i64, previous: i64 },
    #[error("created_at_ms {at} is before the cooperative was founded ({founded})")]
    BeforeFounding { at: i64, founded: i64 },
}

impl Refusal {
    /// Refusals that depend on what else is applied or on the rules in force (a credit
    /// limit, a chain head); judged again after a recompute, so a node keeps the
    /// transfers refused for them.
    pub fn is_stateful(&self) -> bool {
        matches!(
            self,
            Refusal::BadChainLink(_)
                | Refusal::DepClaimed(_)
                | Refusal::Overdraft { .. }
                | Refusal::DepNotIncoming(_)
                | Refusal::BeforeFounding { .. }
        )
    }
}

/// Where a transfer stands on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Applied,
    /// Waiting for the payer's previous transfer, deps, the currency or an admission.
    Pending(Vec<String>),
    /// Part of a fork: another transfer has the same payer, currency and sequence.
    Quarantined,
    Refused(Refusal),
}
