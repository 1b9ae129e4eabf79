//! `icnctl balance` and `icnctl history`: reading one member's account in one currency.

use super::answer::Answer as _;
use super::currency::{self, CurrencyArgs};
use crate::gateway::MemberApi;
use crate::member::{member_did, parse_did};
use crate::output::Output;
use anyhow::Context as _;
use clap::Args;
use icn_proto::common::v1::PageRequest;
use icn_proto::ledger::v1::{Account, GetBalanceRequest, GetHistoryRequest};
use std::path::PathBuf;

/// The member whose account is read: by DID, or by the DID of a member key.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct MemberArgs {
    /// The member's DID.
    #[arg(long)]
    member: Option<String>,
    /// The member's keystore; only its DID is read, no passphrase is needed.
    #[arg(long)]
    key: Option<PathBuf>,
}

impl MemberArgs {
    fn did(&self) -> anyhow::Result<String> {
        match (&self.member, &self.key) {
            (Some(did), _) => parse_did(did, "--member"),
            (None, Some(path)) => member_did(path),
            (None, None) => unreachable!("clap requires --member or --key"),
        }
    }
}

/// `icnctl balance`: the account with its balance, credit limit and sequence number.
pub async fn balance(
    api: &mut MemberApi,
    account: &CurrencyArgs,
    member: &MemberArgs,
    out: &Output,
) -> anyhow::Result<()> {
    let member = member.did()?;
    let found = read(api, account, &member).await?;
    let currency = currency::lookup(api, account).await?;
    out.account(&found, currency.decimals);
    Ok(())
}

/// `icnctl history`: the account's transfers, newest first; only applied ones unless
/// `all`.
pub async fn history(
    api: &mut MemberApi,
    account: CurrencyArgs,
    member: &MemberArgs,
    limit: u32,
    all: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let member = member.did()?;
    let currency = currency::lookup(api, &account).await?;
    let request = GetHistoryRequest {
        coop_id: account.coop,
        currency: account.currency,
        member: member.clone(),
        page: Some(PageRequest { limit, cursor: String::new() }),
        include_unapplied: all,
    };
    let history = api.get_history(request).await.answer("reading the history")?;
    out.history(&history, &member, currency.decimals);
    Ok(())
}

/// The member's account as the node holds it.
pub async fn read(ledger: &mut MemberApi, account: &CurrencyArgs, member: &str) -> anyhow::Result<Account> {
    let request = GetBalanceRequest {
        coop_id: account.coop.clone(),
        currency: account.currency.clone(),
        member: member.to_string(),
    };
    ledger.get_balance(request).await.answer("reading the balance")?.account.context("the ledger answered no account")
}
