//! `icnctl login | logout`, and member operations through a node's gateway.
//!
//! With `--gateway <url>` (or `ICN_GATEWAY`), the member commands — balance, transfer,
//! history, stats — go to the gateway's gRPC API with the token `icnctl login` saved,
//! as a member's app would, instead of to the ledger service directly (the operator's
//! path). The token file is written with mode 0600 and never printed.

use crate::member::KeyArgs;
use crate::output::Output;
use anyhow::{bail, Context as _};
use icn_identity::{login, Did, Purpose};
use icn_proto::gateway::v1::gateway_client::GatewayClient;
use icn_proto::gateway::v1::{GetChallengeRequest, LoginRequest, RevokeTokenRequest};
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::*;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// Where `login` keeps the token: `--token-file`, `ICN_TOKEN_FILE`, else
/// `$HOME/.config/icn/token`.
pub fn token_path(given: Option<&Path>) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".config/icn/token")
    })
}

pub async fn login(
    gateway: &str,
    key: &KeyArgs,
    scopes: Vec<String>,
    node: Option<&Did>,
    token_file: &Path,
    out: &Output,
) -> anyhow::Result<()> {
    let member = key.open()?;
    let mut client = GatewayClient::new(crate::net::channel(gateway).await?);
    let did = member.did().to_string();
    let challenge = client
        .get_challenge(GetChallengeRequest { did: did.clone() })
        .await
        .map_err(|s| anyhow::anyhow!("asking for a challenge: {}", s.message()))?
        .into_inner();
    // Signed only once it is a login challenge for this member from the node meant.
    login::check(&challenge.nonce, member.did(), node).context("the gateway's challenge was not signed")?;
    let signature = member.sign_for(Purpose::Login, &challenge.nonce).to_bytes().to_vec();
    let issued = client
        .login(LoginRequest { did, nonce: challenge.nonce, signature, scopes })
        .await
        .map_err(|s| anyhow::anyhow!("logging in: {}", s.message()))?
        .into_inner();
    write_private(token_file, &issued.token)?;
    out.logged_in(member.did().as_str(), &issued, token_file);
    Ok(())
}

pub async fn logout(gateway: &str, token_file: &Path, out: &Output) -> anyhow::Result<()> {
    let token = read_token(token_file)?;
    let mut client = GatewayClient::new(crate::net::channel(gateway).await?);
    client
        .revoke_token(authorized(RevokeTokenRequest::default(), &token)?)
        .await
        .map_err(|s| anyhow::anyhow!("revoking the token: {}", s.message()))?;
    std::fs::remove_file(token_file).with_context(|| format!("removing {}", token_file.display()))?;
    out.logged_out(token_file);
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    icn_identity::write_private_file(path, text.as_bytes())
        .with_context(|| format!("writing the token to {}", path.display()))
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no token at {}: log in first with `icnctl login --gateway <url> --key <member key>`", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading the token {}", path.display())),
    }
}

fn authorized<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().context("the token file holds no token")?);
    Ok(request)
}

/// The ledger as a member reaches it: directly, or through the gateway with a token.
pub enum MemberApi {
    Ledger(LedgerClient<Channel>),
    Gateway { client: GatewayClient<Channel>, token: String },
}

impl MemberApi {
    pub async fn connect(ledger: &str, gateway: Option<&str>, token_file: &Path) -> anyhow::Result<Self> {
        Ok(match gateway {
            None => MemberApi::Ledger(LedgerClient::new(crate::net::channel(ledger).await?)),
            Some(url) => MemberApi::Gateway {
                client: GatewayClient::new(crate::net::channel(url).await?),
                token: read_token(token_file)?,
            },
        })
    }

    pub async fn get_balance(
        &mut self,
        r: GetBalanceRequest,
    ) -> Result<tonic::Response<GetBalanceResponse>, tonic::Status> {
        match self {
            MemberApi::Ledger(c) => c.get_balance(r).await,
            MemberApi::Gateway { client, token } => client.get_balance(with(r, token)?).await,
        }
    }

    pub async fn currencies(&mut self, coop_id: String) -> Result<tonic::Response<Vec<Currency>>, tonic::Status> {
        match self {
            MemberApi::Ledger(c) => c
                .list_currencies(ListCurrenciesRequest { coop_id })
                .await
                .map(|r| tonic::Response::new(r.into_inner().currencies)),
            MemberApi::Gateway { client, token } => client
                .get_coop(with(GetCoopRequest { coop_id }, token)?)
                .await
                .map(|r| tonic::Response::new(r.into_inner().currencies)),
        }
    }

    pub async fn submit_transfer(
        &mut self,
        r: SubmitTransferRequest,
    ) -> Result<tonic::Response<SubmitTransferResponse>, tonic::Status> {
        match self {
            MemberApi::Ledger(c) => c.submit_transfer(r).await,
            MemberApi::Gateway { client, token } => client.submit_transfer(with(r, token)?).await,
        }
    }

    pub async fn get_history(
        &mut self,
        r: GetHistoryRequest,
    ) -> Result<tonic::Response<GetHistoryResponse>, tonic::Status> {
        match self {
            MemberApi::Ledger(c) => c.get_history(r).await,
            MemberApi::Gateway { client, token } => client.get_history(with(r, token)?).await,
        }
    }

    pub async fn coop_stats(
        &mut self,
        r: CoopStatsRequest,
    ) -> Result<tonic::Response<CoopStatsResponse>, tonic::Status> {
        match self {
            MemberApi::Ledger(c) => c.coop_stats(r).await,
            // Public: no token needed.
            MemberApi::Gateway { client, .. } => client.coop_stats(r).await,
        }
    }
}

fn with<T>(message: T, token: &str) -> Result<tonic::Request<T>, tonic::Status> {
    authorized(message, token).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

/// Publishes an entry signed by the member, through the gateway: the member's next
/// sequence number in the topic comes from its entries the gateway shows.
pub async fn publish(
    gateway: &str,
    token_file: &Path,
    key: &KeyArgs,
    topic: &str,
    payload: &[u8],
    out: &Output,
) -> anyhow::Result<()> {
    use icn_proto::gateway::v1::GetEntriesRequest;
    use icn_proto::gossip::v1::{publish_request, PublishRequest};
    let member = key.open()?;
    let token = read_token(token_file)?;
    let mut client = GatewayClient::new(crate::net::channel(gateway).await?);
    let mut last = 0;
    let mut cursor = String::new();
    loop {
        let request = GetEntriesRequest {
            topic: topic.to_string(),
            author: member.did().to_string(),
            page: Some(icn_proto::common::v1::PageRequest { limit: icn_runtime::paging::MAX_PAGE, cursor }),
        };
        let page = client
            .get_entries(authorized(request, &token)?)
            .await
            .map_err(|s| anyhow::anyhow!("reading your entries in `{topic}`: {}", s.message()))?
            .into_inner();
        last = page.entries.iter().filter_map(|e| e.entry.as_ref()).map(|e| e.seq).fold(last, u64::max);
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    // Compression is the node's business; a member sends its payload as it is.
    let entry = icn_gossip_records::sign_entry(&member, topic, last + 1, payload, usize::MAX, icn_runtime::now_ms());
    let request = PublishRequest { signing: Some(publish_request::Signing::Signed(entry)) };
    let published = client
        .publish(authorized(request, &token)?)
        .await
        .map_err(|s| anyhow::anyhow!("publishing: {}", s.message()))?
        .into_inner();
    if let Some(stored) = published.entry {
        out.entry(&stored);
    }
    Ok(())
}
