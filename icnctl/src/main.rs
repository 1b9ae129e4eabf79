//! `icnctl`: the operator's and member's command line for an ICN node.
//!
//! Human-readable output by default, `--json` for scripts. Errors name what failed and
//! what to do; the exit code is 0 on success, 1 on failure, 2 on a usage error.

mod net;
mod output;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use icn_config::IcnConfig;
use icn_identity::{read_passphrase, KdfParams, Keystore, NodeIdentity};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Command line for an ICN node")]
struct Cli {
    /// gRPC endpoint of the service to talk to (netd for status, peers, send, subscribe).
    #[arg(long, global = true, env = "ICN_ENDPOINT", default_value = "http://127.0.0.1:7100")]
    endpoint: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// ICN configuration file, used to find the keystore.
    #[arg(long, global = true, env = "ICN_CONFIG")]
    config: Option<PathBuf>,
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
    /// Ask a service's gRPC health endpoint; exit 0 only when it is SERVING.
    Health {
        /// Service name to check; the whole server when empty.
        #[arg(long, default_value = "")]
        service: String,
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
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("icnctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = output::Output { json: cli.json };
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
            &net::client(&cli.endpoint).await?.status(icn_proto::net::v1::StatusRequest {}).await?.into_inner(),
        ),
        Command::Peers => out.peers(
            &net::client(&cli.endpoint)
                .await?
                .list_peers(icn_proto::net::v1::ListPeersRequest {})
                .await?
                .into_inner()
                .peers,
        ),
        Command::Dial { address, did } => {
            let request = icn_proto::net::v1::DialRequest { address, did: did.unwrap_or_default() };
            let peer = net::client(&cli.endpoint).await?.dial(request).await?.into_inner();
            out.peers(&[peer]);
        }
        Command::Send { to, protocol, payload } => {
            let request =
                icn_proto::net::v1::SendRequest { to, protocol, payload: payload.into_bytes(), sealed: false };
            let response = net::client(&cli.endpoint).await?.send(request).await?.into_inner();
            out.sent(response.seq);
        }
        Command::Subscribe { protocols, count, after } => {
            let mut client = net::client(&cli.endpoint).await?;
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
            net::client(&cli.endpoint).await?.disconnect(request).await?;
            out.done(&format!("{} {did}", if reset { "reset" } else { "disconnected" }));
        }
        Command::Rtt { did } => {
            let request = icn_proto::net::v1::EstimateRttRequest { did };
            out.rtt(&net::client(&cli.endpoint).await?.estimate_rtt(request).await?.into_inner());
        }
        Command::Health { service } => return net::health(&cli.endpoint, &service, &out).await,
    }
    Ok(ExitCode::SUCCESS)
}
