//! `icnctl member | coop | currency | balance | transfer | history | stats | limits |
//! quarantine`: the mutual-credit ledger, as a member or an admin of a cooperative
//! drives it.
//!
//! Every record is signed here, with the member's own keystore (`--key`), and only the
//! signed record goes to the node: a member's secret key never leaves this process.
//! Amounts are read and shown in a currency's units (`1.5`); the ledger speaks minor
//! units, so the currency's decimals are looked up first.

use crate::gateway::MemberApi;
use crate::output::Output;
use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use icn_identity::{read_passphrase, Did, KdfParams, Keystore, KeystoreError, NodeIdentity};
use icn_ledger_records::coop::MAX_DECIMALS;
use icn_ledger_records::sign;
use icn_ledger_records::{format_amount, next_transfer, parse_amount, Payment};
use icn_proto::common::v1::PageRequest;
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::*;
use icn_runtime::now_ms;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tonic::transport::Channel;

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

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Create a member key (passphrase from --passphrase-file or ICN_PASSPHRASE).
    Keygen {
        /// Keystore file to create; an existing file is never overwritten.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Show the DID of a member key (no passphrase needed).
    Show {
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum CoopCommand {
    /// Register a cooperative; the founder (--key) becomes its first admin.
    Create {
        /// Lower-case letters, digits and '-', at most 64 bytes.
        id: String,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        /// Members admitted with the cooperative (repeat the flag for each DID).
        #[arg(long = "member")]
        members: Vec<String>,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// The cooperative's founder, members with their roles, and currencies.
    Show { id: String },
    /// Admit a member, or change a member's role; signed by an admin (--key).
    Admit {
        did: String,
        #[arg(long)]
        coop: String,
        /// Admit as an admin, who may sign admissions, currencies and credit limits.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
}

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

/// One currency of one cooperative.
#[derive(Args)]
pub struct CurrencyArgs {
    /// Cooperative id.
    #[arg(long)]
    coop: String,
    /// Currency symbol.
    #[arg(long)]
    currency: String,
}

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

/// The member key that signs.
#[derive(Args)]
pub struct KeyArgs {
    /// Member keystore file (create one with `icnctl member keygen`).
    #[arg(long)]
    key: PathBuf,
    /// File holding the keystore's passphrase (default: ICN_PASSPHRASE).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl KeyArgs {
    pub fn new(key: PathBuf, passphrase_file: Option<PathBuf>) -> Self {
        Self { key, passphrase_file }
    }

    /// Unlocks the member's key; it is only used to sign, in this process.
    pub fn open(&self) -> anyhow::Result<NodeIdentity> {
        let path = &self.key;
        let unlocking = || format!("unlocking the member key {}", path.display());
        let passphrase = read_passphrase(self.passphrase_file.as_deref()).with_context(unlocking)?;
        Keystore::load(path, &passphrase).map_err(|e| match e {
            KeystoreError::NotFound(_) => missing_key(path),
            other => anyhow::Error::new(other).context(unlocking()),
        })
    }
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

fn missing_key(path: &Path) -> anyhow::Error {
    anyhow!("no member key at {0}: create one with `icnctl member keygen --key {0}`", path.display())
}

/// The DID of a member key, read without the passphrase.
fn member_did(path: &Path) -> anyhow::Result<String> {
    match Keystore::did(path) {
        Ok(did) => Ok(did.to_string()),
        Err(KeystoreError::NotFound(_)) => Err(missing_key(path)),
        Err(e) => Err(e.into()),
    }
}

fn parse_did(text: &str, flag: &str) -> anyhow::Result<String> {
    let did: Did = text.parse().map_err(|e| anyhow!("{flag} `{text}` is not a DID: {e}"))?;
    Ok(did.to_string())
}

/// The answer to a call, or an error with the ledger's own message, which names the
/// rule or what is missing, under what was being done.
trait Answer<T> {
    fn answer(self, doing: &str) -> anyhow::Result<T>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answer(self, doing: &str) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner).map_err(|status| {
            let message = if status.message().is_empty() { status.code().description() } else { status.message() };
            anyhow!("{doing}: {message}")
        })
    }
}

/// Lists (accounts, forks) are read whole, in the largest pages the service serves.
fn page(cursor: String) -> Option<PageRequest> {
    Some(PageRequest { limit: icn_runtime::paging::MAX_PAGE, cursor })
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
        LedgerCommand::Coop(command) => coop(&mut ledger, command, out).await?,
        LedgerCommand::Currency(CurrencyCommand::Create { symbol, coop, decimals, credit_limit, description, key }) => {
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
        LedgerCommand::Balance { .. }
        | LedgerCommand::Transfer(_)
        | LedgerCommand::History { .. }
        | LedgerCommand::Stats { .. } => unreachable!("member commands are run above"),
        LedgerCommand::Limits(LimitsArgs {
            command: Some(LimitsCommand::Set { account, member, limit, key }), ..
        }) => {
            let admin = key.open()?;
            let member = member.map(|m| parse_did(&m, "--member")).transpose()?.unwrap_or_default();
            let currency = currency(&mut MemberApi::Ledger(ledger.clone()), &account).await?;
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
        LedgerCommand::Limits(LimitsArgs { command: None, account }) => {
            let account = account.context("`icnctl limits` needs --coop and --currency")?;
            let currency = currency(&mut MemberApi::Ledger(ledger.clone()), &account).await?;
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
        LedgerCommand::Quarantine { coop } => {
            let currencies = ledger
                .list_currencies(ListCurrenciesRequest { coop_id: coop.clone() })
                .await
                .answer("reading the currencies")?
                .currencies;
            let mut forks = Vec::new();
            let mut cursor = String::new();
            loop {
                let request = ListQuarantineRequest { coop_id: coop.clone(), page: page(cursor) };
                let listed = ledger.list_quarantine(request).await.answer("listing the quarantine")?;
                forks.extend(listed.forks);
                if listed.next_cursor.is_empty() {
                    break;
                }
                cursor = listed.next_cursor;
            }
            out.quarantine(&forks, &currencies);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The member commands, through whichever [`MemberApi`] the caller chose.
async fn member_run(api: &mut MemberApi, command: LedgerCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::Balance { account, member } => {
            let member = member.did()?;
            let found = balance(api, &account, &member).await?;
            let currency = currency(api, &account).await?;
            out.account(&found, currency.decimals);
        }
        LedgerCommand::Transfer(args) => return transfer(api, &args, out).await,
        LedgerCommand::History { account, member, limit, all } => {
            let member = member.did()?;
            let currency = currency(api, &account).await?;
            let request = GetHistoryRequest {
                coop_id: account.coop,
                currency: account.currency,
                member: member.clone(),
                page: Some(PageRequest { limit, cursor: String::new() }),
                include_unapplied: all,
            };
            let history = api.get_history(request).await.answer("reading the history")?;
            out.history(&history, &member, currency.decimals);
        }
        LedgerCommand::Stats { coop } => {
            let stats = api.coop_stats(CoopStatsRequest { coop_id: coop }).await.answer("reading the figures")?;
            out.coop_stats(&stats);
        }
        _ => unreachable!("only member commands come here"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Member keys: files on this machine, no service involved.
pub fn member(command: MemberCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        MemberCommand::Keygen { key, passphrase_file } => {
            if key.exists() {
                bail!(
                    "{} already exists; a member key is never overwritten (choose another --key path)",
                    key.display()
                );
            }
            let passphrase = read_passphrase(passphrase_file.as_deref())?;
            let identity = NodeIdentity::generate();
            Keystore::create(&key, &passphrase, &identity, KdfParams::default())?;
            out.identity(identity.did().as_str(), &key, true);
        }
        MemberCommand::Show { key } => out.identity(&member_did(&key)?, &key, false),
    }
    Ok(())
}

async fn coop(ledger: &mut LedgerClient<Channel>, command: CoopCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        CoopCommand::Create { id, name, members, key } => {
            let members = members.iter().map(|m| parse_did(m, "--member")).collect::<anyhow::Result<Vec<_>>>()?;
            let founder = key.open()?;
            let now = now_ms();
            let admissions = members
                .into_iter()
                .map(|member| {
                    let role = MemberRole::Member as i32;
                    sign(
                        &founder,
                        MemberAdmission { coop_id: id.clone(), member, role, created_at_ms: now, ..Default::default() },
                    )
                })
                .collect::<Vec<_>>();
            let admitted = admissions.len();
            let coop = sign(&founder, Coop { id, name, created_at_ms: now, ..Default::default() });
            let request = CreateCoopRequest { coop: Some(coop), admissions };
            out.coop_created(&ledger.create_coop(request).await.answer("creating the cooperative")?, admitted);
        }
        CoopCommand::Show { id } => {
            out.coop(&ledger.get_coop(GetCoopRequest { coop_id: id }).await.answer("reading the cooperative")?);
        }
        CoopCommand::Admit { did, coop, admin, key } => {
            let member = parse_did(&did, "the member")?;
            let signer = key.open()?;
            let role = if admin { MemberRole::Admin } else { MemberRole::Member };
            let admission = sign(
                &signer,
                MemberAdmission {
                    coop_id: coop.clone(),
                    member,
                    role: role as i32,
                    created_at_ms: now_ms(),
                    ..Default::default()
                },
            );
            let request = AddMemberRequest { admission: Some(admission) };
            let added = ledger.add_member(request).await.answer("admitting the member")?;
            out.member_admitted(&coop, &added.member.unwrap_or_default());
        }
    }
    Ok(())
}

async fn balance(ledger: &mut MemberApi, account: &CurrencyArgs, member: &str) -> anyhow::Result<Account> {
    let request = GetBalanceRequest {
        coop_id: account.coop.clone(),
        currency: account.currency.clone(),
        member: member.to_string(),
    };
    ledger.get_balance(request).await.answer("reading the balance")?.account.context("the ledger answered no account")
}

/// The currency's record, for its decimals and default credit limit.
async fn currency(ledger: &mut MemberApi, account: &CurrencyArgs) -> anyhow::Result<Currency> {
    let coop = &account.coop;
    let currencies = ledger.currencies(coop.clone()).await.answer("reading the currencies")?;
    currencies.into_iter().find(|c| c.symbol == account.currency).with_context(|| {
        format!("cooperative `{coop}` has no currency `{}` (`icnctl coop show {coop}` lists them)", account.currency)
    })
}

/// Builds the payer's next transfer from its account as the node reports it, signs it
/// and submits it. Exit 1 when it is refused or quarantined.
async fn transfer(ledger: &mut MemberApi, args: &TransferArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let account = &args.account;
    let payee = parse_did(&args.to, "--to")?;
    let payer = args.key.open()?;
    let from = balance(ledger, account, payer.did().as_str()).await?;
    let decimals = currency(ledger, account).await?.decimals;
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
