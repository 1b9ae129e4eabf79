//! `icnctl coop | currency | balance | transfer | history | stats | limits | quarantine`:
//! the mutual-credit ledger, as a member or an admin of a cooperative drives it.
//!
//! Every record is signed here, with the member's own keystore (`--key`, see
//! [`crate::member`]), and only the signed record goes to the node: a member's secret key
//! never leaves this process. Amounts are read and shown in a currency's units (`1.5`);
//! the ledger speaks minor units, so the currency's decimals are looked up first.
//!
//! This module owns the command tree and which way each command goes (member commands
//! through [`MemberApi`], admin commands to the ledger service); each record's own
//! module builds and sends it.

mod account;
mod answer;
mod coop;
mod currency;
mod limits;
mod quarantine;
mod transfer;

use crate::gateway::MemberApi;
use crate::output::Output;
use account::MemberArgs;
use anyhow::bail;
use clap::Subcommand;
use coop::CoopCommand;
use currency::{CurrencyArgs, CurrencyCommand};
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use limits::LimitsArgs;
use std::path::Path;
use std::process::ExitCode;
use transfer::TransferArgs;

/// Commands that talk to the ledger service.
#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Create, show or admit members to a cooperative.
    #[command(subcommand)]
    Coop(CoopCommand),
    /// Create a currency of a cooperative.
    #[command(subcommand)]
    Currency(CurrencyCommand),
    /// A member's balance, credit limit and sequence number in one currency.
    Balance {
        #[command(flatten)]
        account: CurrencyArgs,
        #[command(flatten)]
        member: MemberArgs,
    },
    /// Pay another member, signed with the payer's key.
    Transfer(TransferArgs),
    /// Transfers in and out of a member's account, newest first.
    History {
        #[command(flatten)]
        account: CurrencyArgs,
        #[command(flatten)]
        member: MemberArgs,
        /// Show at most this many transfers.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Include pending, quarantined and rejected transfers, not only applied ones.
        #[arg(long)]
        all: bool,
    },
    /// Public figures of a cooperative: members, transfers, volume, outstanding credit.
    Stats {
        #[arg(long)]
        coop: String,
    },
    /// Credit limits of every account in a currency; `limits set` changes one.
    Limits(LimitsArgs),
    /// Forks: transfers quarantined because their payer signed two with one sequence number.
    Quarantine {
        #[arg(long)]
        coop: String,
    },
}

/// Runs a ledger command. Member commands (balance, transfer, history, stats) go through
/// `gateway` with the saved token when one is given; admin commands always go to the
/// ledger service.
pub async fn run(
    endpoint: &str,
    gateway: Option<&str>,
    token_file: &Path,
    command: LedgerCommand,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let member_command = matches!(
        command,
        LedgerCommand::Balance { .. }
            | LedgerCommand::Transfer(_)
            | LedgerCommand::History { .. }
            | LedgerCommand::Stats { .. }
    );
    if member_command {
        let mut api = MemberApi::connect(endpoint, gateway, token_file).await?;
        return member_run(&mut api, command, out).await;
    }
    if gateway.is_some() {
        bail!("admin commands (coop, currency, limits, quarantine) talk to the ledger service: drop --gateway");
    }
    let mut ledger = LedgerClient::new(crate::net::channel(endpoint).await?);
    match command {
        LedgerCommand::Coop(command) => coop::run(&mut ledger, command, out).await?,
        LedgerCommand::Currency(command) => currency::run(&mut ledger, command, out).await?,
        LedgerCommand::Limits(args) => limits::run(&mut ledger, args, out).await?,
        LedgerCommand::Quarantine { coop } => quarantine::list(&mut ledger, coop, out).await?,
        LedgerCommand::Balance { .. }
        | LedgerCommand::Transfer(_)
        | LedgerCommand::History { .. }
        | LedgerCommand::Stats { .. } => unreachable!("member commands are run above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The member commands, through whichever [`MemberApi`] the caller chose.
async fn member_run(api: &mut MemberApi, command: LedgerCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::Balance { account, member } => account::balance(api, &account, &member, out).await?,
        LedgerCommand::Transfer(args) => return transfer::pay(api, &args, out).await,
        LedgerCommand::History { account, member, limit, all } => {
            account::history(api, account, &member, limit, all, out).await?
        }
        LedgerCommand::Stats { coop } => coop::stats(api, coop, out).await?,
        _ => unreachable!("only member commands come here"),
    }
    Ok(ExitCode::SUCCESS)
}
