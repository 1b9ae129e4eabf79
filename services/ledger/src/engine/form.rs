//! What a transfer alone decides, before the engine looks at anything else: the payer's
//! signature, and the form of its fields (DIDs, amount, memo, idempotency id, deps,
//! sequence number).
//!
//! These refusals are final whatever arrives later (none is
//! [`Refusal::is_stateful`]), so a recompute never judges them again. Nothing in this
//! file may depend on the applied set, on the cooperative's rules or on the time: that
//! would make a refusal differ between nodes.

use super::refusal::Refusal;
use icn_identity::Did;
use icn_ledger_records::signed::{self, SignatureError};
use icn_ledger_records::transfer::{MAX_AMOUNT, MAX_DEPS, MAX_IDEMPOTENCY_ID_BYTES, MAX_MEMO_BYTES};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;

/// The payer's signature over the transfer's hash.
pub fn verify(t: &Transfer, hash: &Hash) -> Result<(), Refusal> {
    match signed::verify(t) {
        Ok(signed) if signed == *hash => Ok(()),
        Err(SignatureError::BadSigner(did)) => Err(Refusal::BadDid(did)),
        _ => Err(Refusal::BadSignature),
    }
}

/// What a transfer alone decides, beyond its signature: amounts, parties, sequence.
pub fn check_form(t: &Transfer) -> Result<(), Refusal> {
    // Syntax only: the payer's key is checked with its signature, and a payee's key
    // never has to verify anything.
    Did::check_syntax(&t.payer).map_err(|_| Refusal::BadDid(t.payer.clone()))?;
    Did::check_syntax(&t.payee).map_err(|_| Refusal::BadDid(t.payee.clone()))?;
    if t.amount <= 0 {
        return Err(Refusal::NonPositiveAmount(t.amount));
    }
    if t.amount > MAX_AMOUNT {
        return Err(Refusal::AmountTooLarge(t.amount));
    }
    if t.memo.len() > MAX_MEMO_BYTES {
        return Err(Refusal::Malformed(format!("the memo has {} bytes, more than {MAX_MEMO_BYTES}", t.memo.len())));
    }
    if t.idempotency_id.len() > MAX_IDEMPOTENCY_ID_BYTES {
        return Err(Refusal::Malformed(format!("the idempotency id is longer than {MAX_IDEMPOTENCY_ID_BYTES} bytes")));
    }
    if t.deps.len() > MAX_DEPS {
        return Err(Refusal::Malformed(format!("{} deps, more than {MAX_DEPS}", t.deps.len())));
    }
    if t.deps.iter().any(|d| d.len() != 32) || !(t.prev_hash.is_empty() || t.prev_hash.len() == 32) {
        return Err(Refusal::Malformed("prev_hash and deps are 32-byte hashes".into()));
    }
    let mut deps = t.deps.clone();
    deps.sort();
    deps.dedup();
    if deps.len() != t.deps.len() {
        return Err(Refusal::Malformed("a dep is named twice".into()));
    }
    if t.payer == t.payee {
        return Err(Refusal::SelfTransfer);
    }
    if t.payer_seq == 0 {
        return Err(Refusal::ZeroSequence);
    }
    Ok(())
}
