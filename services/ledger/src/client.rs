//! What a member's client does before submitting: build its next transfer from its
//! account as a node reports it, sign it with the member's key, and read amounts in a
//! currency's units. icnctl, the gateway's SDK tests and the benchmarks all use this;
//! the node never sees the member's key.

use crate::signed::sign;
use icn_identity::NodeIdentity;
use icn_proto::ledger::v1::{Account, Transfer};

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

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("`{0}` is not an amount: write digits with at most one '.', such as 12 or 1.5")]
    Syntax(String),
    #[error("`{amount}` has more than the currency's {decimals} decimal places")]
    TooPrecise { amount: String, decimals: u32 },
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses `1.5` in a currency with `decimals` places into minor units (150 for 2).
pub fn parse_amount(text: &str, decimals: u32) -> Result<i64, AmountError> {
    let syntax = || AmountError::Syntax(text.to_string());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(syntax());
    }
    if fraction.len() > decimals as usize {
        return Err(AmountError::TooPrecise { amount: text.to_string(), decimals });
    }
    let digits = format!("{whole}{fraction:0<width$}", width = decimals as usize);
    digits.parse::<i64>().map_err(|_| AmountError::TooLarge(text.to_string()))
}

/// Shows minor units in a currency's units: 150 with 2 decimals is `1.50`.
pub fn format_amount(minor: i64, decimals: u32) -> String {
    if decimals == 0 {
        return minor.to_string();
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs().to_string();
    let padded = format!("{abs:0>width$}", width = decimals as usize + 1);
    let (whole, fraction) = padded.split_at(padded.len() - decimals as usize);
    format!("{sign}{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_and_print_in_units() {
        assert_eq!(parse_amount("1.5", 2), Ok(150));
        assert_eq!(parse_amount("12", 0), Ok(12));
        assert_eq!(parse_amount(".25", 2), Ok(25));
        assert!(matches!(parse_amount("1.234", 2), Err(AmountError::TooPrecise { .. })));
        assert!(matches!(parse_amount("-1", 2), Err(AmountError::Syntax(_))));
        assert!(matches!(parse_amount("1e3", 2), Err(AmountError::Syntax(_))));
        assert!(matches!(parse_amount("99999999999999999999", 0), Err(AmountError::TooLarge(_))));
        assert_eq!(format_amount(150, 2), "1.50");
        assert_eq!(format_amount(-5, 2), "-0.05");
        assert_eq!(format_amount(7, 0), "7");
    }
}
