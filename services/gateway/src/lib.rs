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
    /// each only if `filter` admits it. A stream lives no longer than its caller's right
    /// to it: it ends with `TOKEN_EXPIRED` when the token expires and with
    /// `TOKEN_REVOKED` once a revocation is seen (checked every `api.stream_recheck`),
    /// and what the caller may read (topic ACLs, cooperative membership) is asked again
    /// at the same pace. A client that falls behind the live buffer is resumed from the
    /// last event it was handed, told of a gap if some are gone. The stream also ends at
    /// shutdown.
    pub fn event_stream(
        self: &Arc<Self>,
        filter: Filter,
        after: Option<u64>,
    ) -> impl futures::Stream<Item = Result<pb::Event, GatewayError>> + Send + 'static {
        let (replay, live) = self.hub.resume(after);
        let state = EventStream {
            replay: replay.into(),
            live,
            filter,
            g: self.clone(),
            last: after,
            checked_at: std::time::Instant::now(),
        };
        futures::stream::unfold(Some(state), |state| async move {
            let mut s = state?;
            let recheck = s.g.config.stream_recheck;
            loop {
                let event = match s.replay.pop_front() {
                    Some(e) => e,
                    None => {
                        let left_ms = (s.filter.caller.exp * 1000 - now_ms()).max(0) as u64;
                        tokio::select! {
                            e = s.live.recv() => match e {
                                Ok(e) => e,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    let (replay, live) = s.g.hub.resume(s.last);
                                    (s.replay, s.live) = (replay.into(), live);
                                    continue;
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                            },
                            _ = tokio::time::sleep(std::time::Duration::from_millis(left_ms)) => {
                                return Some((Err(auth::AuthError::Expired.into()), None));
                            }
                            _ = tokio::time::sleep(recheck) => {
                                if let Err(e) = s.recheck() {
                                    return Some((Err(e), None));
                                }
                                continue;
                            }
                            _ = s.g.shutdown.cancelled() => return None,
                        }
                    }
                };
                if s.checked_at.elapsed() >= recheck {
                    if let Err(e) = s.recheck() {
                        return Some((Err(e), None));
                    }
                }
                s.last = Some(event.position);
                if s.filter.admits(&event, &s.g.backend).await {
                    return Some((Ok(event), Some(s)));
                }
            }
        })
    }
}

/// One event stream as it goes.
struct EventStream {
    replay: std::collections::VecDeque<pb::Event>,
    live: tokio::sync::broadcast::Receiver<pb::Event>,
    filter: Filter,
    g: Arc<Gateway>,
    /// Position of the last event handed to the filter.
    last: Option<u64>,
    checked_at: std::time::Instant,
}

impl EventStream {
    /// Whether the caller's token still holds (unexpired, unrevoked); forgets what the
    /// caller could read, so that it is asked again.
    fn recheck(&mut self) -> Result<(), GatewayError> {
        self.g.auth.still_valid(&self.filter.caller, now_ms())?;
        self.filter.forget_access();
        self.checked_at = std::time::Instant::now();
        Ok(())
    }
}
