//! `icnctl transfer`: a payment from the member whose key signs it, built as the payer's
//! next transfer from its account as the node reports it.

use super::account;
use super::answer::Answer as _;
use super::currency::{self, CurrencyArgs};
use crate::gateway::MemberApi;
use crate::member::{parse_did, KeyArgs};
use crate::output::Output;
use anyhow::{bail, Context as _};
use clap::Args;
use icn_ledger_records::{format_amount, next_transfer, parse_amount, Payment};
use icn_proto::ledger::v1::{SubmitTransferRequest, TransferStatus};
use icn_runtime::now_ms;
use std::process::ExitCode;

#[derive(Args)]
pub struct TransferArgs {
    #[command(flatten)]
    account: CurrencyArgs,
    /// DID of the member paid.
    #[arg(long)]
    to: String,
    /// Amount in the currency's units, such as 1.5.
    #[arg(long)]
    amount: String,
    /// Free text for the people involved, at most 256 bytes.
    #[arg(long)]
    memo: Option<String>,
    /// Id that makes a retry safe: the ledger never pays twice for one id
    /// (default: derived from the payer's sequence number).
    #[arg(long)]
    idempotency_id: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
}

/// Builds the payer's next transfer from its account as the node reports it, signs it
/// and submits it. Exit 1 when it is refused or quarantined.
pub async fn pay(ledger: &mut MemberApi, args: &TransferArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let account = &args.account;
    let payee = parse_did(&args.to, "--to")?;
    let payer = args.key.open()?;
    let from = account::read(ledger, account, payer.did().as_str()).await?;
    let decimals = currency::lookup(ledger, account).await?.decimals;
    let payment = Payment {
        coop_id: &account.coop,
        currency: &account.currency,
        payee: &payee,
        amount: parse_amount(&args.amount, decimals).context("--amount")?,
        memo: args.memo.as_deref().unwrap_or_default(),
        idempotency_id: args.idempotency_id.as_deref().unwrap_or_default(),
    };
    let transfer = next_transfer(&payer, &from, &payment, now_ms());
    let request = SubmitTransferRequest { transfer: Some(transfer.clone()) };
    let submitted = ledger.submit_transfer(request).await.answer("submitting the transfer")?;
    // A duplicate is the first transfer with this idempotency id: a retry of this payment
    // is fine, another payment (say one signed concurrently with the same derived id) means
    // nothing new was paid.
    let first = submitted.record.as_ref().and_then(|r| r.transfer.as_ref());
    if let Some(first) = first.filter(|_| submitted.duplicate) {
        if (&first.payee, first.amount, &first.memo) != (&transfer.payee, transfer.amount, &transfer.memo) {
            bail!(
                "nothing was paid: idempotency id `{}` already names another transfer ({} to {}); pay again",
                transfer.idempotency_id,
                format_amount(first.amount, decimals),
                first.payee
            );
        }
    }
    out.transfer_submitted(&submitted, decimals);
    let quarantined = submitted.record.is_some_and(|r| r.status == TransferStatus::Quarantined as i32);
    Ok(if quarantined { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
