//! A transfer's limits, and what a member's client does before submitting: build its
//! next transfer from its account as a node reports it and sign it with the member's key.
//! icnctl, the gateway's SDK tests and the benchmarks all use this; the node never sees
//! the member's key.

use crate::signed::sign;
use icn_identity::NodeIdentity;
use icn_proto::ledger::v1::{Account, Transfer};

/// The largest amount (and credit limit), in minor units: 2^53 - 1, the largest integer
/// a JavaScript number holds exactly, so every client reads amounts right.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;
/// Longest memo, in bytes.
pub const MAX_MEMO_BYTES: usize = 256;
/// Longest idempotency id, in bytes.
pub const MAX_IDEMPOTENCY_ID_BYTES: usize = 128;
/// Most deps one transfer may name.
pub const MAX_DEPS: usize = 1024;

/// What the member wants to pay.
pub struct Payment<'a> {
    pub coop_id: &'a str,
    pub currency: &'a str,
    pub payee: &'a str,
    pub amount: i64,
    pub memo: &'a str,
    /// Empty: one is derived from the payer's sequence number, so a retry of the same
    /// signed transfer is recognised.
    pub idempotency_id: &'a str,
}

/// The payer's next transfer after `account` (its own account, from GetBalance): it
/// follows the account's tip (its last transfer, applied or still waiting for deps) and
/// names every unclaimed incoming transfer as deps, so its income counts towards its
/// floor.
pub fn next_transfer(payer: &NodeIdentity, account: &Account, payment: &Payment<'_>, created_at_ms: i64) -> Transfer {
    let (tip_seq, tip_hash) = if account.tip_seq > account.seq {
        (account.tip_seq, &account.tip_hash)
    } else {
        (account.seq, &account.head_hash)
    };
    let seq = tip_seq + 1;
    let idempotency_id =
        if payment.idempotency_id.is_empty() { format!("seq-{seq}") } else { payment.idempotency_id.to_string() };
    sign(
        payer,
        Transfer {
            coop_id: payment.coop_id.to_string(),
            currency: payment.currency.to_string(),
            payee: payment.payee.to_string(),
            amount: payment.amount,
            memo: payment.memo.to_string(),
            idempotency_id,
            payer_seq: seq,
            prev_hash: tip_hash.clone(),
            deps: account.unclaimed_incoming.clone(),
            created_at_ms,
            ..Default::default()
        },
    )
}
