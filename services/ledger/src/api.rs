//! The `icn.ledger.v1.Ledger` gRPC API. ledger owns the mutual-credit ledger:
//! cooperatives, members, currencies, credit limits, accounts and the journal of
//! payer-signed, hash-chained transfers. Every node applies the same deterministic
//! validity rule whatever order entries arrive in (pending until deps arrive, forks
//! quarantined), replicates on each cooperative's gossip topic, and commits to RocksDB
//! in atomic write batches. It must never let a currency's balances stop summing to
//! zero, an account go below its floor, or a transfer apply twice.
//!
//! Members sign everything they submit (icnctl signs locally); the node never holds a
//! member's key. Submitting calls need the node identity, because the node publishes
//! what it accepts; reads do not.

use crate::commit::LedgerNode;
use crate::error::LedgerError;
use crate::replicate::{self, Gossip};
use crate::state::{AdminOutcome, CoopState, Outcome, Source, State};
use icn_ledger_records::coop::{valid_name, MAX_COOP_ID};
use icn_ledger_records::transfer::MAX_DEPS;
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::{self as pb, ledger_server::Ledger, TransferRejection, TransferStatus};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerEntry};
use icn_runtime::{now_ms, paging, Context};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct LedgerApi {
    ctx: Context,
    node: Arc<LedgerNode>,
    gossip: Gossip,
}

impl LedgerApi {
    pub fn new(ctx: Context, node: Arc<LedgerNode>, gossip: Gossip) -> Self {
        Self { ctx, node, gossip }
    }

    /// Submits entries through this node, which publishes them: it needs the identity.
    async fn submit(&self, entries: Vec<Body>) -> Result<Vec<Outcome>, LedgerError> {
        self.ctx.require_identity().map_err(LedgerError::NoIdentity)?;
        let entries = entries.into_iter().map(|b| LedgerEntry { body: Some(b) }).collect();
        self.node.submit(entries, Source::Local, None).await
    }

    async fn submit_admin(&self, body: Body) -> Result<AdminOutcome, LedgerError> {
        match self.submit(vec![body]).await?.pop() {
            Some(Outcome::Admin(result)) => result,
            other => Err(LedgerError::CommitFailed(format!("unexpected outcome {other:?}"))),
        }
    }
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, LedgerError> {
    value.ok_or_else(|| LedgerError::InvalidArgument(format!("`{what}` is required")))
}

fn hash_arg(bytes: &[u8], what: &str) -> Result<Hash, LedgerError> {
    <Hash>::try_from(bytes).map_err(|_| LedgerError::InvalidArgument(format!("`{what}` must be a 32-byte hash")))
}

/// The cooperative and its currency, or NOT_FOUND naming which is missing.
fn currency_of<'a>(state: &'a State, coop_id: &str, currency: &str) -> Result<&'a CoopState, LedgerError> {
    let coop = state.coop(coop_id)?;
    if coop.model.currency(currency).is_none() {
        return Err(LedgerError::NotFound(format!("cooperative `{coop_id}` has no currency `{currency}`")));
    }
    Ok(coop)
}

/// A transfer outcome for a single submission: a rejection is an error naming its rule.
fn transfer_response(outcome: Option<Outcome>) -> Result<pb::SubmitTransferResponse, LedgerError> {
    match outcome {
        Some(Outcome::Transfer { record, duplicate }) => {
            if record.status == TransferStatus::Rejected as i32 {
                let rejection = TransferRejection::try_from(record.rejection).unwrap_or(TransferRejection::Unspecified);
                return Err(LedgerError::rejected(rejection, record.detail));
            }
            Ok(pb::SubmitTransferResponse { record: Some(record), duplicate })
        }
        other => Err(LedgerError::CommitFailed(format!("unexpected outcome {other:?}"))),
    }
}

type RecordStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::TransferRecord, Status>> + Send>>;

#[tonic::async_trait]
impl Ledger for LedgerApi {
    type WatchStream = RecordStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        use tokio::sync::broadcast::error::RecvError;
        let r = request.into_inner();
        let feed = self.node.transfers.subscribe();
        let shutdown = self.ctx.shutdown.clone();
        let wanted = move |t: &pb::Transfer| {
            (r.coop_id.is_empty() || t.coop_id == r.coop_id)
                && (r.member.is_empty() || t.payer == r.member || t.payee == r.member)
        };
        // The stream ends at shutdown, or after telling a watcher that fell behind.
        let stream = futures::stream::unfold(Some(feed), move |feed| {
            let (shutdown, wanted) = (shutdown.clone(), wanted.clone());
            async move {
                let mut feed = feed?;
                loop {
                    let next = tokio::select! {
                        r = feed.recv() => r,
                        _ = shutdown.cancelled() => return None,
                    };
                    match next {
                        Ok(record) if record.transfer.as_ref().is_some_and(&wanted) => {
                            return Some((Ok(record), Some(feed)));
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(missed)) => {
                            let status = Status::resource_exhausted(format!(
                                "this watcher fell {missed} transfers behind (credit.watch_buffer); read them with \
                                 GetHistory and watch again"
                            ));
                            return Some((Err(status), None));
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create_coop(
        &self,
        request: Request<pb::CreateCoopRequest>,
    ) -> Result<Response<pb::CreateCoopResponse>, Status> {
        let r = request.into_inner();
        let coop = required(r.coop, "coop")?;
        if !valid_name(&coop.id, MAX_COOP_ID) {
            return Err(LedgerError::InvalidArgument(format!(
                "`{}` is not a cooperative id: lower-case letters, digits and '-', at most {} bytes",
                coop.id, MAX_COOP_ID
            ))
            .into());
        }
        // Everything created with the cooperative is checked before anything is stored,
        // so a refused admission cannot leave a half-made cooperative behind.
        icn_ledger_records::verify(&coop).map_err(|e| LedgerError::InvalidArgument(format!("the cooperative: {e}")))?;
        if !icn_ledger_records::coop::is_bound(&coop) {
            return Err(crate::state::unbound_coop(&coop.id).into());
        }
        for a in &r.admissions {
            if a.coop_id != coop.id || a.signer != coop.founder {
                return Err(LedgerError::InvalidArgument(format!(
                    "admissions made with cooperative `{}` name it and are signed by its founder {}",
                    coop.id, coop.founder
                ))
                .into());
            }
            icn_ledger_records::verify(a).map_err(|e| LedgerError::InvalidArgument(format!("an admission: {e}")))?;
            if a.member.parse::<icn_identity::Did>().is_err()
                || pb::MemberRole::try_from(a.role).unwrap_or_default() == pb::MemberRole::Unspecified
            {
                return Err(LedgerError::InvalidArgument(format!(
                    "admission of `{}`: a member DID and the role MEMBER or ADMIN",
                    a.member
                ))
                .into());
            }
        }
        self.ctx.require_identity()?;
        // The topic first: a cooperative that cannot replicate is not created.
        replicate::ensure_topic(&mut self.gossip.clone(), &coop.id).await?;
        let mut entries = vec![Body::Coop(coop.clone())];
        entries.extend(r.admissions.into_iter().map(Body::Admission));
        let mut outcomes = self.submit(entries).await?.into_iter();
        let created = match outcomes.next() {
            Some(Outcome::Admin(result)) => result?,
            other => return Err(LedgerError::CommitFailed(format!("unexpected outcome {other:?}")).into()),
        };
        for outcome in outcomes {
            if let Outcome::Admin(Err(e)) = outcome {
                return Err(e.into());
            }
        }
        Ok(Response::new(pb::CreateCoopResponse {
            coop: Some(coop),
            hash: created.hash.to_vec(),
            created: created.created,
        }))
    }

    async fn get_coop(&self, request: Request<pb::GetCoopRequest>) -> Result<Response<pb::GetCoopResponse>, Status> {
        let r = request.into_inner();
        let state = self.node.read().await;
        let coop = state.coop(&r.coop_id)?;
        Ok(Response::new(pb::GetCoopResponse {
            coop: coop.coop_record().cloned(),
            members: coop.members(),
            currencies: coop.model.currencies().cloned().collect(),
            validators: coop.model.validators().cloned(),
        }))
    }

    async fn set_validators(
        &self,
        request: Request<pb::SetValidatorsRequest>,
    ) -> Result<Response<pb::SetValidatorsResponse>, Status> {
        let validators = required(request.into_inner().validators, "validators")?;
        let outcome = self.submit_admin(Body::Validators(validators)).await?;
        Ok(Response::new(pb::SetValidatorsResponse { hash: outcome.hash.to_vec(), created: outcome.created }))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let admission = required(request.into_inner().admission, "admission")?;
        let removal = admission.role == pb::MemberRole::Removed as i32;
        let (coop_id, did) = (admission.coop_id.clone(), admission.member.clone());
        let (at, by) = (admission.created_at_ms, admission.signer.clone());
        self.submit_admin(Body::Admission(admission)).await?;
        let state = self.node.read().await;
        let member = match state.coop(&coop_id)?.model.member(&did).cloned() {
            // A removal that counted: the member is gone, as of the removal.
            None if removal => {
                Some(pb::Member { did, role: pb::MemberRole::Removed as i32, admitted_at_ms: at, admitted_by: by })
            }
            member => member,
        };
        Ok(Response::new(pb::AddMemberResponse { member }))
    }

    async fn create_currency(
        &self,
        request: Request<pb::CreateCurrencyRequest>,
    ) -> Result<Response<pb::CreateCurrencyResponse>, Status> {
        let currency = required(request.into_inner().currency, "currency")?;
        let outcome = self.submit_admin(Body::Currency(currency.clone())).await?;
        Ok(Response::new(pb::CreateCurrencyResponse { currency: Some(currency), created: outcome.created }))
    }

    async fn list_currencies(
        &self,
        request: Request<pb::ListCurrenciesRequest>,
    ) -> Result<Response<pb::ListCurrenciesResponse>, Status> {
        let r = request.into_inner();
        let state = self.node.read().await;
        let currencies = state.coop(&r.coop_id)?.model.currencies().cloned().collect();
        Ok(Response::new(pb::ListCurrenciesResponse { currencies }))
    }

    async fn set_credit_limit(
        &self,
        request: Request<pb::SetCreditLimitRequest>,
    ) -> Result<Response<pb::SetCreditLimitResponse>, Status> {
        let limit = required(request.into_inner().limit, "limit")?;
        let (coop_id, currency, member) = (limit.coop_id.clone(), limit.currency.clone(), limit.member.clone());
        self.submit_admin(Body::Limit(limit)).await?;
        let state = self.node.read().await;
        let coop = state.coop(&coop_id)?;
        let in_force = coop.model.latest_limit(&currency, &member).cloned();
        let account = (!member.is_empty()).then(|| coop.account(&coop_id, &currency, &member, now_ms(), MAX_DEPS));
        Ok(Response::new(pb::SetCreditLimitResponse { limit: in_force, account }))
    }

    async fn submit_transfer(
        &self,
        request: Request<pb::SubmitTransferRequest>,
    ) -> Result<Response<pb::SubmitTransferResponse>, Status> {
        let transfer = required(request.into_inner().transfer, "transfer")?;
        let outcome = self.submit(vec![Body::Transfer(transfer)]).await?.pop();
        Ok(Response::new(transfer_response(outcome)?))
    }

    async fn submit_transfers(
        &self,
        request: Request<pb::SubmitTransfersRequest>,
    ) -> Result<Response<pb::SubmitTransfersResponse>, Status> {
        let transfers = request.into_inner().transfers;
        if transfers.is_empty() || transfers.len() > self.node.config.max_batch {
            return Err(LedgerError::InvalidArgument(format!(
                "a batch holds 1 to {} transfers (credit.max_batch), got {}",
                self.node.config.max_batch,
                transfers.len()
            ))
            .into());
        }
        let outcomes = self.submit(transfers.into_iter().map(Body::Transfer).collect()).await?;
        let results = outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Transfer { record, duplicate } => {
                    Ok(pb::SubmitTransferResponse { record: Some(record), duplicate })
                }
                other => Err(LedgerError::CommitFailed(format!("unexpected outcome {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::SubmitTransfersResponse { results }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let r = request.into_inner();
        // Unclaimed income may be read from the store (`store::past`): off the async threads.
        let account = self
            .node
            .read_blocking(move |state| {
                let coop = currency_of(state, &r.coop_id, &r.currency)?;
                // A removed member's account stays readable: what it did before its
                // removal stands, balance included.
                if !coop.model.was_member(&r.member) {
                    return Err(LedgerError::NotFound(format!(
                        "{} is not a member of cooperative `{}`",
                        r.member, r.coop_id
                    )));
                }
                Ok(coop.account(&r.coop_id, &r.currency, &r.member, now_ms(), MAX_DEPS))
            })
            .await??;
        Ok(Response::new(pb::GetBalanceResponse { account: Some(account) }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let r = request.into_inner();
        let state = self.node.read().await;
        let coop = state.coop(&r.coop_id)?;
        let limit = paging::limit(&r.page);
        let after = paging::cursor(&r.page).to_string();
        let now = now_ms();
        // Every member has an account in every currency, zero until it moves.
        let mut keys: Vec<(String, String)> = coop
            .model
            .currencies()
            .filter(|c| r.currency.is_empty() || c.symbol == r.currency)
            .flat_map(|c| {
                coop.model
                    .members()
                    .filter(|m| r.member.is_empty() || m.did == r.member)
                    .map(move |m| (c.symbol.clone(), m.did.clone()))
            })
            .filter(|(c, m)| after.is_empty() || format!("{c}/{m}") > after)
            .collect();
        keys.sort();
        let next_cursor =
            if keys.len() > limit { format!("{}/{}", keys[limit - 1].0, keys[limit - 1].1) } else { String::new() };
        // Without unclaimed incoming transfers: a member's client reads its own with
        // GetBalance; a page of accounts would otherwise carry up to 1,024 hashes each.
        let accounts = keys.iter().take(limit).map(|(c, m)| coop.account(&r.coop_id, c, m, now, 0)).collect();
        Ok(Response::new(pb::ListAccountsResponse { accounts, next_cursor }))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let r = request.into_inner();
        let before = match paging::cursor(&r.page) {
            "" => 0,
            c => {
                c.parse::<u64>().map_err(|_| LedgerError::InvalidArgument(format!("`{c}` is not a history cursor")))?
            }
        };
        // Read from the store (`store::past`): off the async threads.
        let (transfers, last) = self
            .node
            .read_blocking(move |state| {
                let coop = currency_of(state, &r.coop_id, &r.currency)?;
                coop.history(&r.currency, &r.member, before, r.include_unapplied, paging::limit(&r.page))
            })
            .await??;
        Ok(Response::new(pb::GetHistoryResponse {
            transfers,
            next_cursor: last.map(|p| p.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_transfer(
        &self,
        request: Request<pb::GetTransferRequest>,
    ) -> Result<Response<pb::GetTransferResponse>, Status> {
        use pb::get_transfer_request::Key;
        let key = required(request.into_inner().key, "hash or idempotency")?;
        let hash = match &key {
            Key::Hash(h) => Some(hash_arg(h, "hash")?),
            Key::Idempotency(_) => None,
        };
        // Read from the store (`store::past`): off the async threads.
        let found = self
            .node
            .read_blocking(move |state| match (key, hash) {
                (_, Some(hash)) => state.coops.values().find(|c| c.knows(&hash)).map(|c| c.record(&hash)),
                (Key::Idempotency(k), _) => state
                    .coops
                    .get(&k.coop_id)
                    .and_then(|c| c.by_idempotency(&k.currency, &k.payer, &k.idempotency_id).map(|h| c.record(&h))),
                (Key::Hash(_), None) => None,
            })
            .await?;
        let record = found.ok_or_else(|| LedgerError::NotFound("no such transfer on this node".into()))?;
        Ok(Response::new(pb::GetTransferResponse { record: Some(record) }))
    }

    async fn coop_stats(
        &self,
        request: Request<pb::CoopStatsRequest>,
    ) -> Result<Response<pb::CoopStatsResponse>, Status> {
        let r = request.into_inner();
        let state = self.node.read().await;
        let coop = state.coop(&r.coop_id)?;
        Ok(Response::new(coop.stats(&r.coop_id, now_ms())))
    }

    async fn recompute_balances(
        &self,
        request: Request<pb::RecomputeBalancesRequest>,
    ) -> Result<Response<pb::RecomputeBalancesResponse>, Status> {
        let r = request.into_inner();
        {
            let state = self.node.read().await;
            if r.currency.is_empty() {
                state.coop(&r.coop_id)?;
            } else {
                currency_of(&state, &r.coop_id, &r.currency)?;
            }
        }
        let currency = (!r.currency.is_empty()).then_some(r.currency.as_str());
        Ok(Response::new(self.node.recompute(&r.coop_id, currency, r.repair).await?))
    }

    async fn list_quarantine(
        &self,
        request: Request<pb::ListQuarantineRequest>,
    ) -> Result<Response<pb::ListQuarantineResponse>, Status> {
        let r = request.into_inner();
        let skip = match paging::cursor(&r.page) {
            "" => 0,
            c => c.parse::<usize>().map_err(|_| LedgerError::InvalidArgument(format!("`{c}` is not a cursor")))?,
        };
        let limit = paging::limit(&r.page);
        // A fork at an old place reads its chain link from the store: off the async threads.
        let all = self.node.read_blocking(move |state| state.coop(&r.coop_id).map(|c| c.quarantine())).await??;
        let next_cursor = if all.len() > skip + limit { (skip + limit).to_string() } else { String::new() };
        let forks = all.into_iter().skip(skip).take(limit).collect();
        Ok(Response::new(pb::ListQuarantineResponse { forks, next_cursor }))
    }
}
