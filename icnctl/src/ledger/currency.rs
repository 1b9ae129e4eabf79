//! `icnctl currency create`, and the currency every account command names
//! (`--coop`, `--currency`) with the lookup of its record, whose decimals turn the
//! units people type into the ledger's minor units.

use super::answer::Answer as _;
use crate::gateway::MemberApi;
use crate::member::KeyArgs;
use crate::output::Output;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use icn_ledger_records::coop::MAX_DECIMALS;
use icn_ledger_records::{parse_amount, sign};
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::{CreateCurrencyRequest, Currency};
use icn_runtime::now_ms;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum CurrencyCommand {
    /// Create a currency; signed by an admin (--key).
    Create {
        /// Unique within the cooperative, such as `hours`.
        symbol: String,
        #[arg(long)]
        coop: String,
        /// Decimal places of one unit.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=MAX_DECIMALS as i64))]
        decimals: u32,
        /// How far below zero an account may go, in units, unless a limit of its own says otherwise.
        #[arg(long)]
        credit_limit: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// One currency of one cooperative.
#[derive(Args)]
pub struct CurrencyArgs {
    /// Cooperative id.
    #[arg(long)]
    pub(super) coop: String,
    /// Currency symbol.
    #[arg(long)]
    pub(super) currency: String,
}

pub async fn run(ledger: &mut LedgerClient<Channel>, command: CurrencyCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        CurrencyCommand::Create { symbol, coop, decimals, credit_limit, description, key } => {
            let admin = key.open()?;
            let currency = sign(
                &admin,
                Currency {
                    coop_id: coop,
                    symbol,
                    decimals,
                    default_credit_limit: parse_amount(&credit_limit, decimals).context("--credit-limit")?,
                    description: description.unwrap_or_default(),
                    created_at_ms: now_ms(),
                    ..Default::default()
                },
            );
            let request = CreateCurrencyRequest { currency: Some(currency) };
            out.currency_created(&ledger.create_currency(request).await.answer("creating the currency")?);
        }
    }
    Ok(())
}

/// The currency's record, for its decimals and default credit limit.
pub async fn lookup(ledger: &mut MemberApi, account: &CurrencyArgs) -> anyhow::Result<Currency> {
    let coop = &account.coop;
    let currencies = ledger.currencies(coop.clone()).await.answer("reading the currencies")?;
    currencies.into_iter().find(|c| c.symbol == account.currency).with_context(|| {
        format!("cooperative `{coop}` has no currency `{}` (`icnctl coop show {coop}` lists them)", account.currency)
    })
}
