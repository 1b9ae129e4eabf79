//! The node's services as the gateway uses them, with the caller's identity applied:
//! every read names the caller as reader so gossip enforces topic ACLs, and whatever is
//! signed must be signed by the caller. REST and gRPC both go through here, so both
//! enforce the same rules.

use crate::auth::Claims;
use crate::error::GatewayError;
use icn_proto::gateway::v1 as pb;
use icn_proto::gossip::v1::{self as gossip, gossip_client::GossipClient};
use icn_proto::ledger::v1::{self as ledger, ledger_client::LedgerClient};
use icn_proto::net::v1::{self as net, netd_client::NetdClient};
use icn_telemetry::propagation::{traced_channel, TracedChannel};

use icn_ledger_records::coop::TOPIC_PREFIX as LEDGER_TOPIC_PREFIX;

#[derive(Clone)]
pub struct Backend {
    pub netd: NetdClient<TracedChannel>,
    pub gossip: GossipClient<TracedChannel>,
    pub ledger: LedgerClient<TracedChannel>,
    endpoints: Vec<(&'static str, TracedChannel)>,
    /// `api.health_timeout`.
    health_timeout: std::time::Duration,
}

type Result<T> = std::result::Result<T, GatewayError>;

impl Backend {
    pub fn new(config: &icn_config::IcnConfig) -> anyhow::Result<Self> {
        let e = &config.endpoints;
        let endpoints = vec![
            ("netd", traced_channel(&e.netd)?),
            ("gossip", traced_channel(&e.gossip)?),
            ("ledger", traced_channel(&e.ledger)?),
            ("compute", traced_channel(&e.compute)?),
            ("gateway", traced_channel(&format!("http://{}", config.gateway.grpc_listen))?),
        ];
        Ok(Self {
            netd: NetdClient::new(traced_channel(&e.netd)?),
            gossip: GossipClient::new(traced_channel(&e.gossip)?),
            ledger: LedgerClient::new(traced_channel(&e.ledger)?),
            endpoints,
            health_timeout: config.api.health_timeout,
        })
    }

    /// Health of the node's five services, its identity and connected peers.
    pub async fn node_status(&self) -> pb::NodeStatusResponse {
        use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
        let mut services = Vec::new();
        for (name, channel) in &self.endpoints {
            let mut client = HealthClient::new(channel.clone());
            let check = client.check(HealthCheckRequest { service: String::new() });
            let (status, error) = match tokio::time::timeout(self.health_timeout, check).await {
                Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => {
                    (pb::ServingStatus::Serving, String::new())
                }
                Ok(Ok(_)) => (pb::ServingStatus::NotServing, "the service reports NOT_SERVING".into()),
                Ok(Err(e)) => (pb::ServingStatus::Unreachable, e.message().to_string()),
                Err(_) => (
                    pb::ServingStatus::Unreachable,
                    format!("no answer within {:?} (`api.health_timeout`)", self.health_timeout),
                ),
            };
            services.push(pb::ServiceStatus { name: name.to_string(), status: status as i32, info: None, error });
        }
        let netd = self.netd.clone().status(net::StatusRequest {}).await.ok().map(|r| r.into_inner());
        pb::NodeStatusResponse {
            did: netd.as_ref().and_then(|s| s.info.as_ref()).map(|i| i.did.clone()).unwrap_or_default(),
            limited_mode: netd.as_ref().and_then(|s| s.info.as_ref()).is_none_or(|i| i.limited_mode),
            services,
            connected_peers: netd.as_ref().map(|s| s.connected_peers).unwrap_or_default(),
            relay_address: String::new(),
        }
    }

    /// A cooperative's ledger is its members' business: its accounts, its members and
    /// its journal (the topic `ledger/<id>`) are for members and admins only. Its
    /// statistics are public.
    pub async fn require_member(&self, caller: &Claims, coop_id: &str) -> Result<()> {
        if caller.has("admin") {
            return Ok(());
        }
        let coop = self.ledger.clone().get_coop(ledger::GetCoopRequest { coop_id: coop_id.to_string() }).await?;
        if coop.into_inner().members.iter().any(|m| m.did == caller.sub) {
            Ok(())
        } else {
            Err(GatewayError::PermissionDenied(format!("{} is not a member of cooperative `{coop_id}`", caller.sub)))
        }
    }

    /// The caller may see all of a cooperative's transfers: the node's operator (the
    /// `admin` scope) or an admin of that cooperative.
    pub async fn require_coop_admin(&self, caller: &Claims, coop_id: &str) -> Result<()> {
        if caller.has("admin") {
            return Ok(());
        }
        let coop = self.ledger.clone().get_coop(ledger::GetCoopRequest { coop_id: coop_id.to_string() }).await?;
        let admin = ledger::MemberRole::Admin as i32;
        if coop.into_inner().members.iter().any(|m| m.did == caller.sub && m.role == admin) {
            Ok(())
        } else {
            Err(GatewayError::PermissionDenied(format!(
                "{} may not read all of cooperative `{coop_id}`'s transfers: its admins may",
                caller.sub
            )))
        }
    }

    /// Topic-level rules the gateway adds to gossip's ACLs: a cooperative's ledger topic
    /// carries every member's transfers, so only those who may see them all read it (see
    /// docs/SECURITY.md, "What a member sees"). The whole `ledger/` namespace is guarded,
    /// even a name that is no valid cooperative id, so that nothing under it is read by
    /// default; this covers `GetEntries`, `ListTopics` and `gossip_entry` events alike.
    async fn may_read_topic(&self, caller: &Claims, topic: &str) -> Result<()> {
        match topic.strip_prefix(LEDGER_TOPIC_PREFIX) {
            Some(coop) => self.require_coop_admin(caller, coop).await.map_err(|_| {
                // As gossip answers for a topic one may not read: nothing leaks.
                GatewayError::NotFound(format!("no topic `{topic}`"))
            }),
            None => Ok(()),
        }
    }

    pub async fn list_peers(&self) -> Result<net::ListPeersResponse> {
        Ok(self.netd.clone().list_peers(net::ListPeersRequest {}).await?.into_inner())
    }

    pub async fn list_topics(
        &self,
        caller: &Claims,
        page: Option<icn_proto::common::v1::PageRequest>,
    ) -> Result<pb::ListTopicsResponse> {
        caller.require("gossip:read")?;
        let r = self.gossip.clone().list_topics(gossip::ListTopicsRequest { page, reader: caller.sub.clone() }).await?;
        let r = r.into_inner();
        let mut topics = Vec::with_capacity(r.topics.len());
        for t in r.topics {
            if self.may_read_topic(caller, &t.name).await.is_ok() {
                topics.push(t);
            }
        }
        Ok(pb::ListTopicsResponse { topics, next_cursor: r.next_cursor })
    }

    pub async fn get_entries(&self, caller: &Claims, r: pb::GetEntriesRequest) -> Result<pb::GetEntriesResponse> {
        caller.require("gossip:read")?;
        self.may_read_topic(caller, &r.topic).await?;
        let request =
            gossip::GetEntriesRequest { topic: r.topic, reader: caller.sub.clone(), author: r.author, page: r.page };
        let r = self.gossip.clone().get_entries(request).await?.into_inner();
        Ok(pb::GetEntriesResponse { entries: r.entries, next_cursor: r.next_cursor })
    }

    /// Whether the caller may read `topic` (gossip answers NOT_FOUND otherwise).
    pub async fn may_read(&self, caller: &Claims, topic: &str) -> bool {
        if self.may_read_topic(caller, topic).await.is_err() {
            return false;
        }
        let request = gossip::GetTopicRequest { name: topic.to_string(), reader: caller.sub.clone() };
        self.gossip.clone().get_topic(request).await.is_ok()
    }

    pub async fn publish(&self, caller: &Claims, r: gossip::PublishRequest) -> Result<gossip::PublishResponse> {
        caller.require("gossip:write")?;
        match &r.signing {
            Some(gossip::publish_request::Signing::Signed(entry)) if entry.author == caller.sub => {}
            Some(gossip::publish_request::Signing::Signed(entry)) => {
                return Err(GatewayError::PermissionDenied(format!(
                    "the entry's author {} is not the caller {}: members publish entries they signed",
                    entry.author, caller.sub
                )))
            }
            Some(gossip::publish_request::Signing::Payload(_)) => caller.require("admin")?,
            None => return Err(GatewayError::InvalidArgument("`signed` or `payload` is required".into())),
        }
        Ok(self.gossip.clone().publish(r).await?.into_inner())
    }

    pub async fn get_balance(
        &self,
        caller: &Claims,
        mut r: ledger::GetBalanceRequest,
    ) -> Result<ledger::GetBalanceResponse> {
        caller.require("ledger:read")?;
        self.require_member(caller, &r.coop_id).await?;
        if r.member.is_empty() {
            r.member = caller.sub.clone();
        }
        Ok(self.ledger.clone().get_balance(r).await?.into_inner())
    }

    pub async fn list_accounts(
        &self,
        caller: &Claims,
        r: ledger::ListAccountsRequest,
    ) -> Result<ledger::ListAccountsResponse> {
        caller.require("ledger:read")?;
        self.require_member(caller, &r.coop_id).await?;
        Ok(self.ledger.clone().list_accounts(r).await?.into_inner())
    }

    pub async fn get_coop(&self, caller: &Claims, r: ledger::GetCoopRequest) -> Result<ledger::GetCoopResponse> {
        caller.require("ledger:read")?;
        self.require_member(caller, &r.coop_id).await?;
        Ok(self.ledger.clone().get_coop(r).await?.into_inner())
    }

    pub async fn submit_transfer(
        &self,
        caller: &Claims,
        r: ledger::SubmitTransferRequest,
    ) -> Result<ledger::SubmitTransferResponse> {
        caller.require("ledger:write")?;
        let payer = r.transfer.as_ref().map(|t| t.payer.as_str()).unwrap_or_default();
        if payer != caller.sub {
            return Err(GatewayError::PermissionDenied(format!(
                "the transfer's payer {payer} is not the caller {}: members submit their own transfers",
                caller.sub
            )));
        }
        Ok(self.ledger.clone().submit_transfer(r).await?.into_inner())
    }

    /// A member reads its own history; the cooperative's admins (and the operator)
    /// anyone's.
    pub async fn get_history(
        &self,
        caller: &Claims,
        mut r: ledger::GetHistoryRequest,
    ) -> Result<ledger::GetHistoryResponse> {
        caller.require("ledger:read")?;
        if r.member.is_empty() {
            r.member = caller.sub.clone();
        }
        self.require_member(caller, &r.coop_id).await?;
        if r.member != caller.sub && self.require_coop_admin(caller, &r.coop_id).await.is_err() {
            return Err(GatewayError::PermissionDenied(
                "members read their own history; the cooperative's admins anyone's".into(),
            ));
        }
        Ok(self.ledger.clone().get_history(r).await?.into_inner())
    }

    pub async fn get_transfer(
        &self,
        caller: &Claims,
        request: ledger::GetTransferRequest,
    ) -> Result<ledger::GetTransferResponse> {
        caller.require("ledger:read")?;
        let r = self.ledger.clone().get_transfer(request).await?.into_inner();
        let t = r.record.as_ref().and_then(|r| r.transfer.as_ref());
        let party = t.is_some_and(|t| t.payer == caller.sub || t.payee == caller.sub);
        let admin = match t {
            Some(t) if !party => self.require_coop_admin(caller, &t.coop_id).await.is_ok(),
            _ => caller.has("admin"),
        };
        if !party && !admin {
            // The same answer as for a transfer that does not exist: nothing leaks.
            return Err(GatewayError::NotFound("no such transfer of yours".into()));
        }
        Ok(r)
    }

    /// Public.
    pub async fn coop_stats(&self, r: ledger::CoopStatsRequest) -> Result<ledger::CoopStatsResponse> {
        Ok(self.ledger.clone().coop_stats(r).await?.into_inner())
    }
}
