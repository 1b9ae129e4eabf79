//! `icnctl`: the operator's and member's command line for an ICN node.
//!
//! Human-readable output by default, `--json` for scripts. Errors name what failed and
//! what to do; the exit code is 0 on success, 1 on failure, 2 on a usage error.

mod gateway;
mod ledger;
mod member;
mod net;
mod output;
mod topics;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use icn_config::IcnConfig;
use icn_identity::{read_passphrase, KdfParams, Keystore, NodeIdentity};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Command line for an ICN node")]
struct Cli {
    /// gRPC endpoint of the service the command talks to: netd for status, peers, dial,
    /// send, subscribe, disconnect and rtt (default http://127.0.0.1:7100); gossip for
    /// topics and topic (default http://127.0.0.1:7200); ledger for coop, currency,
    /// balance, transfer, history, stats, limits and quarantine (default
    /// http://127.0.0.1:7300).
    #[arg(long, global = true, env = "ICN_ENDPOINT")]
    endpoint: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// ICN configuration file, used to find the keystore.
    #[arg(long, global = true, env = "ICN_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC endpoint of a node's gateway, such as http://127.0.0.1:7500: login, logout and
    /// the member commands (balance, transfer, history, stats) then go through it with the
    /// token `icnctl login` saved, as a member's app does.
    #[arg(long, global = true, env = "ICN_GATEWAY")]
    gateway: Option<String>,
    /// Where `icnctl login` keeps the token (default: ~/.config/icn/token, mode 0600).
    #[arg(long, global = true, env = "ICN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the node identity (keystore).
    #[command(subcommand)]
    Id(IdCommand),
    /// The node's identity, addresses and connection count.
    Status,
    /// Peers with their state and RTT.
    Peers,
    /// Connect to a peer now.
    Dial {
        /// host:port of the peer's QUIC endpoint.
        address: String,
        /// Refuse the connection unless the peer proves this DID.
        #[arg(long)]
        did: Option<String>,
    },
    /// Send one message to a peer through netd.
    Send {
        #[arg(long)]
        to: String,
        #[arg(long)]
        protocol: String,
        /// Payload as text.
        #[arg(long)]
        payload: String,
        /// Send in the best-effort class: memory only, refused unless the peer is
        /// connected, never resent (for traffic that repairs itself).
        #[arg(long)]
        best_effort: bool,
    },
    /// Print messages arriving from peers, as they come.
    Subscribe {
        /// Protocols to receive (all when none is given).
        #[arg(long = "protocol")]
        protocols: Vec<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Replay retained messages after this inbound-log position first (0: all retained).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Close the connection to a peer: on purpose (no reconnect), or `--reset` (reconnect).
    Disconnect {
        did: String,
        #[arg(long)]
        reset: bool,
    },
    /// RTT to a peer: measured when connected, else estimated from network coordinates.
    Rtt { did: String },
    /// Topics this node holds.
    Topics,
    /// Create, publish to, follow or read a topic.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Ask a service's gRPC health endpoint; exit 0 only when it is SERVING.
    Health {
        /// Service name to check; the whole server when empty.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Create or show a member key: a keystore file the member keeps.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Log in to a gateway (--gateway) with a member key; the token is saved for later
    /// commands.
    Login {
        #[command(flatten)]
        key: member::KeyArgs,
        /// Scopes wanted (repeat the flag); all the gateway grants when none is given.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The DID of the node you mean to log in to: a challenge naming another node is
        /// refused unsigned (a gateway relaying another node's challenge). Recommended.
        #[arg(long, env = "ICN_NODE_DID")]
        node: Option<String>,
    },
    /// Revoke the saved token at the gateway and delete it.
    Logout,
    #[command(flatten)]
    Ledger(ledger::LedgerCommand),
}

#[derive(Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic signed by this node: public, or limited by participants or trust.
    Create {
        name: String,
        /// Only these DIDs may publish and read (comma-separated).
        #[arg(long, value_delimiter = ',', conflicts_with = "min_trust")]
        participants: Vec<String>,
        /// Only DIDs with at least this trust score may publish and read.
        #[arg(long)]
        min_trust: Option<f64>,
        /// Entries kept before the oldest are pruned (0: the node's default).
        #[arg(long, default_value_t = 0)]
        max_entries: u64,
    },
    /// Publish one entry: signed by this node, or with --gateway by the member key --key
    /// (sent through the gateway with the saved token).
    Publish {
        topic: String,
        #[arg(long)]
        payload: String,
        /// Member keystore that signs the entry (with --gateway).
        #[arg(long)]
        key: Option<PathBuf>,
        /// File holding the keystore's passphrase (default: ICN_PASSPHRASE).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Follow a topic: stored entries after `--after`, then new ones as they arrive.
    Subscribe {
        topic: String,
        /// Start after this position (0: from the oldest held). Default: new entries only.
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many entries.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Entries held for a topic, oldest first.
    Entries {
        topic: String,
        #[arg(long)]
        author: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum IdCommand {
    /// Create the node keystore (passphrase from --passphrase-file, node.passphrase_file or ICN_PASSPHRASE).
    Init {
        /// Keystore file; default `<node.data_dir>/keystore.json` from the configuration.
        #[arg(long)]
        keystore: Option<PathBuf>,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Succeed without changes when a keystore already exists.
        #[arg(long)]
        if_missing: bool,
    },
    /// Show the DID in the keystore (no passphrase needed).
    Show {
        #[arg(long)]
        keystore: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `icnctl … | head -1` would panic writing to a closed pipe;
    // a command-line tool should end quietly as other Unix tools do.
    // SAFETY: restores the default disposition of one signal, process-wide; nothing in
    // icnctl installs a handler for it.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("icnctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Default endpoints of the services icnctl talks to.
const NETD_ENDPOINT: &str = "http://127.0.0.1:7100";
const GOSSIP_ENDPOINT: &str = "http://127.0.0.1:7200";
const LEDGER_ENDPOINT: &str = "http://127.0.0.1:7300";

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = output::Output { json: cli.json };
    let netd_endpoint = cli.endpoint.clone().unwrap_or_else(|| NETD_ENDPOINT.into());
    let gossip_endpoint = cli.endpoint.clone().unwrap_or_else(|| GOSSIP_ENDPOINT.into());
    let ledger_endpoint = cli.endpoint.clone().unwrap_or_else(|| LEDGER_ENDPOINT.into());
    match cli.command {
        Command::Id(IdCommand::Init { keystore, passphrase_file, if_missing }) => {
            let config = IcnConfig::load(cli.config.as_deref())?;
            let path = keystore.unwrap_or_else(|| config.keystore_path());
            if path.exists() {
                if if_missing {
                    let did = Keystore::did(&path)?;
                    out.identity(&did.to_string(), &path, false);
                    return Ok(ExitCode::SUCCESS);
                }
                bail!(
                    "a keystore already exists at {}; it is never overwritten (use --if-missing to accept it)",
                    path.display()
                );
            }
            let file = passphrase_file.unwrap_or_else(|| config.node.passphrase_file.clone());
            let passphrase = read_passphrase(Some(&file))?;
            let identity = NodeIdentity::generate();
            Keystore::create(&path, &passphrase, &identity, KdfParams::default())?;
            out.identity(identity.did().as_str(), &path, true);
        }
        Command::Id(IdCommand::Show { keystore }) => {
            let path = match keystore {
                Some(p) => p,
                None => IcnConfig::load(cli.config.as_deref())?.keystore_path(),
            };
            let did = Keystore::did(&path).with_context(|| "create one with `icnctl id init`")?;
            out.identity(did.as_str(), &path, false);
        }
        Command::Status => out.status(
            &net::client(&netd_endpoint).await?.status(icn_proto::net::v1::StatusRequest {}).await?.into_inner(),
        ),
        Command::Peers => out.peers(
            &net::client(&netd_endpoint)
                .await?
                .list_peers(icn_proto::net::v1::ListPeersRequest {})
                .await?
                .into_inner()
                .peers,
        ),
        Command::Dial { address, did } => {
            let request = icn_proto::net::v1::DialRequest { address, did: did.unwrap_or_default() };
            let peer = net::client(&netd_endpoint).await?.dial(request).await?.into_inner();
            out.peers(&[peer]);
        }
        Command::Send { to, protocol, payload, best_effort } => {
            use icn_proto::net::v1::DeliveryClass;
            let class = if best_effort { DeliveryClass::BestEffort } else { DeliveryClass::Durable };
            let request = icn_proto::net::v1::SendRequest {
                to,
                protocol,
                payload: payload.into_bytes(),
                sealed: false,
                class: class as i32,
            };
            let response = net::client(&netd_endpoint).await?.send(request).await?.into_inner();
            out.sent(response.seq, best_effort);
        }
        Command::Subscribe { protocols, count, after } => {
            let mut client = net::client(&netd_endpoint).await?;
            let mut stream = client
                .subscribe(icn_proto::net::v1::SubscribeRequest { protocols, after_position: after })
                .await?
                .into_inner();
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                match stream.message().await? {
                    Some(m) => {
                        out.message(&m);
                        seen += 1;
                    }
                    None => bail!("the subscription ended (the service is shutting down)"),
                }
            }
        }
        Command::Disconnect { did, reset } => {
            let request = icn_proto::net::v1::DisconnectRequest { did: did.clone(), intentional: !reset };
            net::client(&netd_endpoint).await?.disconnect(request).await?;
            out.done(&format!("{} {did}", if reset { "reset" } else { "disconnected" }));
        }
        Command::Rtt { did } => {
            let request = icn_proto::net::v1::EstimateRttRequest { did };
            out.rtt(&net::client(&netd_endpoint).await?.estimate_rtt(request).await?.into_inner());
        }
        Command::Health { service } => return net::health(&netd_endpoint, &service, &out).await,
        Command::Topics => topics::list(&gossip_endpoint, &out).await?,
        Command::Topic(TopicCommand::Publish { topic, payload, key: Some(key), passphrase_file }) => {
            let gateway =
                cli.gateway.as_deref().context("a member publishes through a gateway: add --gateway <url>")?;
            let key = member::KeyArgs::new(key, passphrase_file);
            let token_file = gateway::token_path(cli.token_file.as_deref());
            gateway::publish(gateway, &token_file, &key, &topic, payload.as_bytes(), &out).await?
        }
        Command::Topic(command) => topics::run(&gossip_endpoint, command, &out).await?,
        Command::Member(command) => member::run(command, &out)?,
        Command::Login { key, scopes, node } => {
            let gateway = cli.gateway.as_deref().context("`icnctl login` needs --gateway <url> (or ICN_GATEWAY)")?;
            let node = node.map(|n| n.parse().map_err(|e| anyhow::anyhow!("--node `{n}`: {e}"))).transpose()?;
            let token_file = gateway::token_path(cli.token_file.as_deref());
            gateway::login(gateway, &key, scopes, node.as_ref(), &token_file, &out).await?
        }
        Command::Logout => {
            let gateway = cli.gateway.as_deref().context("`icnctl logout` needs --gateway <url> (or ICN_GATEWAY)")?;
            gateway::logout(gateway, &gateway::token_path(cli.token_file.as_deref()), &out).await?
        }
        Command::Ledger(command) => {
            let token_file = gateway::token_path(cli.token_file.as_deref());
            return ledger::run(&ledger_endpoint, cli.gateway.as_deref(), &token_file, command, &out).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
