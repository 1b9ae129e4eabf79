//! `icnctl limits [set]`: credit limits, how far below zero each account of a currency
//! may go. Listing reads every account; setting one is an admin record.

use super::answer::{page, Answer as _};
use super::currency::{self, CurrencyArgs};
use crate::gateway::MemberApi;
use crate::member::{parse_did, KeyArgs};
use crate::output::Output;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use icn_ledger_records::{parse_amount, sign};
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::{CreditLimit, ListAccountsRequest, SetCreditLimitRequest};
use icn_runtime::now_ms;
use tonic::transport::Channel;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LimitsArgs {
    #[command(subcommand)]
    command: Option<LimitsCommand>,
    #[command(flatten)]
    account: Option<CurrencyArgs>,
}

#[derive(Subcommand)]
pub enum LimitsCommand {
    /// Set the credit limit of one member's account, or the currency's default; signed
    /// by an admin (--key).
    Set {
        #[command(flatten)]
        account: CurrencyArgs,
        /// The account's member; without it, the default of every account without a limit of its own.
        #[arg(long)]
        member: Option<String>,
        /// How far below zero the account may go, in units.
        #[arg(long)]
        limit: String,
        #[command(flatten)]
        key: KeyArgs,
    },
}

pub async fn run(ledger: &mut LedgerClient<Channel>, args: LimitsArgs, out: &Output) -> anyhow::Result<()> {
    match args {
        LimitsArgs { command: Some(LimitsCommand::Set { account, member, limit, key }), .. } => {
            let admin = key.open()?;
            let member = member.map(|m| parse_did(&m, "--member")).transpose()?.unwrap_or_default();
            let currency = currency::lookup(&mut MemberApi::Ledger(ledger.clone()), &account).await?;
            let limit = sign(
                &admin,
                CreditLimit {
                    coop_id: account.coop,
                    currency: account.currency,
                    member,
                    limit: parse_amount(&limit, currency.decimals).context("--limit")?,
                    created_at_ms: now_ms(),
                    ..Default::default()
                },
            );
            let request = SetCreditLimitRequest { limit: Some(limit) };
            let set = ledger.set_credit_limit(request).await.answer("setting the credit limit")?;
            out.limit_set(&set, currency.decimals);
        }
        LimitsArgs { command: None, account } => {
            let account = account.context("`icnctl limits` needs --coop and --currency")?;
            let currency = currency::lookup(&mut MemberApi::Ledger(ledger.clone()), &account).await?;
            let mut accounts = Vec::new();
            let mut cursor = String::new();
            loop {
                let request = ListAccountsRequest {
                    coop_id: account.coop.clone(),
                    currency: account.currency.clone(),
                    member: String::new(),
                    page: page(cursor),
                };
                let listed = ledger.list_accounts(request).await.answer("listing the accounts")?;
                accounts.extend(listed.accounts);
                if listed.next_cursor.is_empty() {
                    break;
                }
                cursor = listed.next_cursor;
            }
            out.limits(&currency, &accounts);
        }
    }
    Ok(())
}
