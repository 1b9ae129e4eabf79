//! The `icn.gateway.v1.Gateway` gRPC API, the twin of the REST API under `/v1`: the
//! same [`Backend`](crate::backend::Backend) calls, the same token (as
//! `authorization: Bearer …` metadata), the same limits.

use crate::auth::Claims;
use crate::error::GatewayError;
use crate::events::Filter;
use crate::Gateway;
use futures::{Stream, StreamExt};
use icn_proto::gateway::v1::{self as pb, gateway_server};
use icn_proto::gossip::v1 as gossip;
use icn_proto::ledger::v1 as ledger;
use icn_proto::net::v1 as net;
use icn_runtime::now_ms;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct GatewayApi {
    gateway: Arc<Gateway>,
}

impl GatewayApi {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    /// The caller, within its address's and identity's rate, holding an in-flight slot.
    fn caller<T>(&self, request: &Request<T>) -> Result<(Claims, tokio::sync::OwnedSemaphorePermit), GatewayError> {
        let slot = self.admit(request)?;
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        Ok((self.gateway.authenticate(header)?, slot))
    }

    /// A public call: the address's rate and an in-flight slot only.
    fn admit<T>(&self, request: &Request<T>) -> Result<tokio::sync::OwnedSemaphorePermit, GatewayError> {
        let address = request.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        self.gateway.limits.address.check(&address)?;
        self.gateway.limits.admit()
    }
}

#[tonic::async_trait]
impl gateway_server::Gateway for GatewayApi {
    type EventsStream = ResponseStream<pb::Event>;

    async fn get_challenge(
        &self,
        request: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::GetChallengeResponse>, Status> {
        let _slot = self.admit(&request)?;
        let (nonce, expires_at_ms) =
            self.gateway.auth.challenge(&request.into_inner().did, now_ms()).map_err(GatewayError::from)?;
        Ok(Response::new(pb::GetChallengeResponse { nonce, expires_at_ms }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let _slot = self.admit(&request)?;
        Ok(Response::new(self.gateway.login(request.into_inner())?))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        self.gateway.revoke(&caller, &request.into_inner().token_id)?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn node_status(
        &self,
        request: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let _caller = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.node_status().await))
    }

    async fn list_peers(
        &self,
        request: Request<net::ListPeersRequest>,
    ) -> Result<Response<net::ListPeersResponse>, Status> {
        let _caller = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.list_peers().await?))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.list_topics(&caller, request.into_inner().page).await?))
    }

    async fn publish(
        &self,
        request: Request<gossip::PublishRequest>,
    ) -> Result<Response<gossip::PublishResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.publish(&caller, request.into_inner()).await?))
    }

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::GetEntriesResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.get_entries(&caller, request.into_inner()).await?))
    }

    async fn events(&self, request: Request<pb::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        // A stream holds no in-flight slot: it would hold it for as long as it lives.
        let (caller, slot) = self.caller(&request)?;
        drop(slot);
        let r = request.into_inner();
        let kinds = r.kinds().collect();
        let stream = self.gateway.event_stream(Filter::new(caller, kinds, r.topics), r.after_position);
        Ok(Response::new(Box::pin(stream.map(|e| e.map_err(Status::from)))))
    }

    async fn get_balance(
        &self,
        request: Request<ledger::GetBalanceRequest>,
    ) -> Result<Response<ledger::GetBalanceResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.get_balance(&caller, request.into_inner()).await?))
    }

    async fn submit_transfer(
        &self,
        request: Request<ledger::SubmitTransferRequest>,
    ) -> Result<Response<ledger::SubmitTransferResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.submit_transfer(&caller, request.into_inner()).await?))
    }

    async fn get_history(
        &self,
        request: Request<ledger::GetHistoryRequest>,
    ) -> Result<Response<ledger::GetHistoryResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.get_history(&caller, request.into_inner()).await?))
    }

    async fn get_coop(
        &self,
        request: Request<ledger::GetCoopRequest>,
    ) -> Result<Response<ledger::GetCoopResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.get_coop(&caller, request.into_inner()).await?))
    }

    async fn get_transfer(
        &self,
        request: Request<ledger::GetTransferRequest>,
    ) -> Result<Response<ledger::GetTransferResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.get_transfer(&caller, request.into_inner()).await?))
    }

    async fn list_accounts(
        &self,
        request: Request<ledger::ListAccountsRequest>,
    ) -> Result<Response<ledger::ListAccountsResponse>, Status> {
        let (caller, _slot) = self.caller(&request)?;
        Ok(Response::new(self.gateway.backend.list_accounts(&caller, request.into_inner()).await?))
    }

    async fn coop_stats(
        &self,
        request: Request<ledger::CoopStatsRequest>,
    ) -> Result<Response<ledger::CoopStatsResponse>, Status> {
        let _slot = self.admit(&request)?;
        Ok(Response::new(self.gateway.backend.coop_stats(request.into_inner()).await?))
    }
}
