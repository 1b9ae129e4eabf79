//! The `icn.gateway.v1.Gateway` gRPC API, the twin of the REST API under `/v1`. gateway
//! is the node's public face: DID challenge login issuing scoped JWTs (expiry and
//! revocation), rate limits and load shedding, and calls forwarded to netd, gossip,
//! ledger and compute. It never holds a member's key nor signs on a member's behalf.
//!
//! At this stage every call answers UNIMPLEMENTED naming issue #6, which brings them.

use futures::Stream;
use icn_proto::gateway::v1::{self as pb, gateway_server::Gateway};
use icn_proto::gossip::v1 as gossip;
use icn_proto::ledger::v1 as ledger;
use icn_proto::net::v1 as net;
use icn_runtime::Context;
use std::pin::Pin;
use tonic::{Request, Response, Status};

const CAPABILITY: &str = "the gateway API, issue #6";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct GatewayApi {
    _ctx: Context,
}

impl GatewayApi {
    pub fn new(ctx: Context) -> Self {
        Self { _ctx: ctx }
    }
}

#[tonic::async_trait]
impl Gateway for GatewayApi {
    type EventsStream = ResponseStream<pb::Event>;

    async fn get_challenge(
        &self,
        _request: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::GetChallengeResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn login(&self, _request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn revoke_token(
        &self,
        _request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn node_status(
        &self,
        _request: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_peers(
        &self,
        _request: Request<net::ListPeersRequest>,
    ) -> Result<Response<net::ListPeersResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn publish(
        &self,
        _request: Request<gossip::PublishRequest>,
    ) -> Result<Response<gossip::PublishResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_entries(
        &self,
        _request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::GetEntriesResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn events(&self, _request: Request<pb::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_balance(
        &self,
        _request: Request<ledger::GetBalanceRequest>,
    ) -> Result<Response<ledger::GetBalanceResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn submit_transfer(
        &self,
        _request: Request<ledger::SubmitTransferRequest>,
    ) -> Result<Response<ledger::SubmitTransferResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_history(
        &self,
        _request: Request<ledger::GetHistoryRequest>,
    ) -> Result<Response<ledger::GetHistoryResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn coop_stats(
        &self,
        _request: Request<ledger::CoopStatsRequest>,
    ) -> Result<Response<ledger::CoopStatsResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }
}
