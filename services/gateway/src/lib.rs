//! gateway: the node's public face. Members and apps log in with their DID key and use
//! REST/JSON under `/v1` ([`rest`]), the same operations over gRPC ([`api`]), and live
//! events. The gateway holds no member keys and signs nothing for anyone; what it
//! forwards ([`backend`]) carries the caller's identity, so topic ACLs and "only your own
//! transfers" hold here as everywhere.
//!
//! - [`auth`]: challenge login, scoped tokens, revocation; [`challenges`]: their bounds;
//! - [`limits`]: rate limits per identity and address, load shedding;
//! - [`events`]: the live event hub;
//! - [`openapi`]: the OpenAPI document, generated from the routes and the protos;
//! - [`error`]: one mapping of errors to gRPC codes and HTTP statuses.

pub mod api;
pub mod auth;
pub mod backend;
pub mod challenges;
pub mod error;
pub mod events;
pub mod limits;
pub mod openapi;
pub mod rest;

use auth::{Auth, Claims};
use backend::Backend;
use error::GatewayError;
use events::{Filter, Hub};
use icn_proto::gateway::v1 as pb;
use icn_runtime::now_ms;
use limits::Limits;
use std::sync::Arc;

/// Everything a request handler needs.
pub struct Gateway {
    pub config: icn_config::ApiConfig,
    pub auth: Auth,
    pub backend: Backend,
    pub hub: Arc<Hub>,
    pub limits: Limits,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Gateway {
    /// The caller of a request with this `authorization` header value, within its rate.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Claims, GatewayError> {
        let token = header.and_then(|h| h.strip_prefix("Bearer ")).ok_or(auth::AuthError::Missing)?;
        let claims = self.auth.verify(token.trim(), now_ms())?;
        self.limits.identity.check(&claims.sub)?;
        Ok(claims)
    }

    pub fn login(&self, r: pb::LoginRequest) -> Result<pb::LoginResponse, GatewayError> {
        let issued = self.auth.login(&r.did, &r.nonce, &r.signature, &r.scopes, now_ms())?;
        tracing::info!(did = %issued.claims.sub, scopes = %issued.claims.scope, "token issued");
        Ok(pb::LoginResponse {
            token: issued.token,
            token_id: issued.claims.jti.clone(),
            scopes: issued.claims.scope.split(' ').filter(|s| !s.is_empty()).map(String::from).collect(),
            expires_at_ms: issued.claims.exp * 1000,
        })
    }

    /// Revokes `token_id`, or the caller's own token when empty.
    pub fn revoke(&self, caller: &Claims, token_id: &str) -> Result<(), GatewayError> {
        let (jti, exp) = if token_id.is_empty() { (caller.jti.as_str(), Some(caller.exp)) } else { (token_id, None) };
        self.auth.revoke(caller, jti, exp)?;
        tracing::info!(by = %caller.sub, token = %jti, "token revoked");
        Ok(())
    }

    /// Events for one stream: retained ones after `after` (when given), then live ones,
    /// each only if `filter` admits it. The stream ends at shutdown, or when the client
    /// falls too far behind (it resumes with `Last-Event-ID`).
    pub fn event_stream(
        self: &Arc<Self>,
        filter: Filter,
        after: Option<u64>,
    ) -> impl futures::Stream<Item = Result<pb::Event, std::convert::Infallible>> + Send + 'static {
        let (replay, live) = self.hub.resume(after);
        let state = (std::collections::VecDeque::from(replay), live, filter, self.clone());
        futures::stream::unfold(Some(state), |state| async move {
            let (mut replay, mut live, mut filter, g) = state?;
            loop {
                let event = match replay.pop_front() {
                    Some(e) => e,
                    None => tokio::select! {
                        e = live.recv() => match e {
                            Ok(e) => e,
                            Err(_) => return None,
                        },
                        _ = g.shutdown.cancelled() => return None,
                    },
                };
                if filter.admits(&event, &g.backend).await {
                    return Some((Ok(event), Some((replay, live, filter, g))));
                }
            }
        })
    }
}
