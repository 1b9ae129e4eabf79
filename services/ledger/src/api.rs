//! The `icn.ledger.v1.Ledger` gRPC API. ledger owns the mutual-credit ledger:
//! cooperatives, members, currencies, credit limits, accounts and the journal of
//! payer-signed, hash-chained transfers. Every node applies the same deterministic
//! validity rule whatever order entries arrive in (pending until deps arrive, forks
//! quarantined), replicates on each cooperative's gossip topic, and commits to RocksDB
//! in atomic write batches. It must never let a currency's balances stop summing to
//! zero, an account go below its floor, or a transfer apply twice.
//!
//! At this stage every call answers UNIMPLEMENTED naming issue #5, which brings them.

use icn_proto::ledger::v1::{self as pb, ledger_server::Ledger};
use icn_runtime::Context;
use tonic::{Request, Response, Status};

const CAPABILITY: &str = "the mutual-credit ledger, issue #5";

pub struct LedgerApi {
    _ctx: Context,
}

impl LedgerApi {
    pub fn new(ctx: Context) -> Self {
        Self { _ctx: ctx }
    }
}

#[tonic::async_trait]
impl Ledger for LedgerApi {
    async fn create_coop(
        &self,
        _request: Request<pb::CreateCoopRequest>,
    ) -> Result<Response<pb::CreateCoopResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_coop(&self, _request: Request<pb::GetCoopRequest>) -> Result<Response<pb::GetCoopResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn add_member(
        &self,
        _request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn create_currency(
        &self,
        _request: Request<pb::CreateCurrencyRequest>,
    ) -> Result<Response<pb::CreateCurrencyResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_currencies(
        &self,
        _request: Request<pb::ListCurrenciesRequest>,
    ) -> Result<Response<pb::ListCurrenciesResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn set_credit_limit(
        &self,
        _request: Request<pb::SetCreditLimitRequest>,
    ) -> Result<Response<pb::SetCreditLimitResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn submit_transfer(
        &self,
        _request: Request<pb::SubmitTransferRequest>,
    ) -> Result<Response<pb::SubmitTransferResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn submit_transfers(
        &self,
        _request: Request<pb::SubmitTransfersRequest>,
    ) -> Result<Response<pb::SubmitTransfersResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_balance(
        &self,
        _request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_accounts(
        &self,
        _request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_history(
        &self,
        _request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_transfer(
        &self,
        _request: Request<pb::GetTransferRequest>,
    ) -> Result<Response<pb::GetTransferResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn coop_stats(
        &self,
        _request: Request<pb::CoopStatsRequest>,
    ) -> Result<Response<pb::CoopStatsResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn recompute_balances(
        &self,
        _request: Request<pb::RecomputeBalancesRequest>,
    ) -> Result<Response<pb::RecomputeBalancesResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_quarantine(
        &self,
        _request: Request<pb::ListQuarantineRequest>,
    ) -> Result<Response<pb::ListQuarantineResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }
}
