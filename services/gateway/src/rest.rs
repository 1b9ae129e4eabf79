//! REST/JSON under `/v1` and server-sent events, over the same [`Backend`] as the gRPC
//! API. Bodies are the gRPC messages in the proto3 JSON mapping; errors are JSON
//! `{"error": {"code", "reason", "message"}}` with the HTTP status of the gRPC code.

use crate::auth::Claims;
use crate::error::{json_error, GatewayError};
use crate::events::Filter;
use crate::openapi::RouteDoc;
use crate::Gateway;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use icn_proto::gateway::v1 as pb;
use icn_proto::gossip::v1 as gossip;
use icn_proto::ledger::v1 as ledger;
use icn_runtime::now_ms;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

type Shared = State<Arc<Gateway>>;
type Result<T> = std::result::Result<Json<T>, GatewayError>;

/// A route: what the OpenAPI document says of it, and how the router serves it.
pub struct Route {
    pub doc: RouteDoc,
    add: fn(Router<Arc<Gateway>>) -> Router<Arc<Gateway>>,
}

/// One line per route, so the router and the OpenAPI document cannot disagree.
macro_rules! route {
    ($method:ident $path:literal => $handler:ident, $summary:literal, scope $scope:expr,
     query $query:expr, body $request:expr, answer $response:expr) => {
        Route {
            doc: RouteDoc {
                method: stringify!($method),
                path: $path,
                summary: $summary,
                scope: $scope,
                query: $query,
                request: $request,
                response: $response,
            },
            add: |r| r.route($path, axum::routing::$method($handler)),
        }
    };
}

const PAGE: &[(&str, &str)] =
    &[("limit", "page size (default 100, at most 1000)"), ("cursor", "from the previous page")];
const ANY: Option<&str> = Some("");

pub fn routes() -> Vec<Route> {
    vec![
        route!(get "/v1/health" => health, "Whether every service of the node is serving", scope None, query &[], body None, answer None),
        route!(post "/v1/auth/challenge" => challenge, "A single-use nonce for a DID to sign", scope None, query &[],
            body Some("icn.gateway.v1.GetChallengeRequest"), answer Some("icn.gateway.v1.GetChallengeResponse")),
        route!(post "/v1/auth/login" => login, "Exchange a signed challenge for a token", scope None, query &[],
            body Some("icn.gateway.v1.LoginRequest"), answer Some("icn.gateway.v1.LoginResponse")),
        route!(post "/v1/auth/revoke" => revoke, "Revoke a token: the caller's own (empty id), or any for an admin", scope ANY,
            query &[], body Some("icn.gateway.v1.RevokeTokenRequest"), answer Some("icn.gateway.v1.RevokeTokenResponse")),
        route!(get "/v1/node" => node_status, "The node's identity and the health of its services", scope ANY, query &[],
            body None, answer Some("icn.gateway.v1.NodeStatusResponse")),
        route!(get "/v1/peers" => peers, "Peers with their state and RTT", scope ANY, query &[], body None,
            answer Some("icn.net.v1.ListPeersResponse")),
        route!(get "/v1/topics" => topics, "Topics the caller may read", scope Some("gossip:read"), query PAGE, body None,
            answer Some("icn.gateway.v1.ListTopicsResponse")),
        route!(get "/v1/entries" => entries, "Entries of a topic the caller may read", scope Some("gossip:read"),
            query &[("topic", "topic name"), ("author", "only this author's entries"), ("limit", "page size"), ("cursor", "from the previous page")],
            body None, answer Some("icn.gateway.v1.GetEntriesResponse")),
        route!(post "/v1/entries" => publish, "Publish an entry the caller signed", scope Some("gossip:write"), query &[],
            body Some("icn.gossip.v1.PublishRequest"), answer Some("icn.gossip.v1.PublishResponse")),
        route!(get "/v1/events" => events, "Live events the caller may see; resume with Last-Event-ID", scope ANY,
            query &[("kinds", "comma-separated: gossip_entry, transfer, task, peer"), ("topics", "comma-separated topic names"), ("after", "as Last-Event-ID")],
            body None, answer None),
        route!(get "/v1/coops/{coop}" => coop, "A cooperative: members and currencies", scope Some("ledger:read"), query &[],
            body None, answer Some("icn.ledger.v1.GetCoopResponse")),
        route!(get "/v1/coops/{coop}/stats" => coop_stats, "Public figures of a cooperative", scope None, query &[],
            body None, answer Some("icn.ledger.v1.CoopStatsResponse")),
        route!(get "/v1/coops/{coop}/accounts" => accounts, "Accounts and balances of a cooperative", scope Some("ledger:read"),
            query &[("currency", "only this currency"), ("member", "only this member"), ("limit", "page size"), ("cursor", "from the previous page")],
            body None, answer Some("icn.ledger.v1.ListAccountsResponse")),
        route!(get "/v1/coops/{coop}/accounts/{currency}/{member}" => balance, "One account; `me` for the caller's",
            scope Some("ledger:read"), query &[], body None, answer Some("icn.ledger.v1.GetBalanceResponse")),
        route!(get "/v1/coops/{coop}/history" => history, "The caller's transfers (a cooperative admin's: anyone's), newest first",
            scope Some("ledger:read"),
            query &[("currency", "currency symbol"), ("member", "default: the caller"), ("all", "true: pending and quarantined too"), ("limit", "page size"), ("cursor", "from the previous page")],
            body None, answer Some("icn.ledger.v1.GetHistoryResponse")),
        route!(post "/v1/transfers" => submit_transfer, "Submit a transfer the caller signed as payer", scope Some("ledger:write"),
            query &[], body Some("icn.ledger.v1.SubmitTransferRequest"), answer Some("icn.ledger.v1.SubmitTransferResponse")),
        route!(get "/v1/transfers/{hash}" => transfer, "A transfer the caller paid or received, by hex hash", scope Some("ledger:read"),
            query &[], body None, answer Some("icn.ledger.v1.GetTransferResponse")),
    ]
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    let body_limit = gateway.config.max_body_bytes;
    let routes = routes();
    let document = Arc::new(crate::openapi::document(&routes.iter().map(|r| r.doc.clone()).collect::<Vec<_>>()));
    let mut router = Router::new();
    for route in &routes {
        router = (route.add)(router);
    }
    // The dashboard: static files, public since they hold no data; the page reads /v1
    // with the member's token. Its policy lets it load and fetch from this origin only.
    use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
    const DASHBOARD_CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    router
        .route("/v1/openapi.json", axum::routing::get(move || async move { Json(document.as_ref().clone()) }))
        .route(
            "/",
            axum::routing::get(|| async {
                let headers = [(CONTENT_TYPE, "text/html; charset=utf-8"), (CONTENT_SECURITY_POLICY, DASHBOARD_CSP)];
                (headers, include_str!("../static/index.html"))
            }),
        )
        .route(
            "/dashboard.js",
            axum::routing::get(|| async {
                ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../static/dashboard.js"))
            }),
        )
        .route(
            "/dashboard.css",
            axum::routing::get(|| async {
                ([(CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../static/dashboard.css"))
            }),
        )
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), protect))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(gateway)
}

/// Every request: the client address's rate, a slot among those in flight, a deadline.
async fn protect(
    State(g): Shared,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(e) = g.limits.address.check(&addr.ip().to_string()) {
        return e.into_response();
    }
    let _slot = match g.limits.admit() {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    // An event stream lives as long as its client; only its set-up is bounded.
    let streaming = request.uri().path() == "/v1/events";
    match tokio::time::timeout(g.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) if streaming => {
            json_error(StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED", "", "event stream set-up timed out")
        }
        Err(_) => json_error(
            StatusCode::GATEWAY_TIMEOUT,
            "DEADLINE_EXCEEDED",
            "",
            &format!("no answer within {:?} (api.request_timeout)", g.config.request_timeout),
        ),
    }
}

/// The caller, from its bearer token; its identity's rate is checked here.
pub struct Caller(pub Claims);

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, g: &Arc<Gateway>) -> std::result::Result<Self, GatewayError> {
        let header = parts.headers.get("authorization").and_then(|h| h.to_str().ok());
        let claims = g.authenticate(header)?;
        Ok(Caller(claims))
    }
}

/// Query parameters whose problems are JSON errors too (400).
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> std::result::Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => {
                Err(json_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "BAD_QUERY", &rejection.body_text()))
            }
        }
    }
}

/// A JSON body whose problems are JSON errors too (400, or 413 when too large).
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequest<Arc<Gateway>> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<Gateway>) -> std::result::Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RESOURCE_EXHAUSTED",
                "BODY_TOO_LARGE",
                &format!("the body exceeds {} bytes (api.max_body_bytes)", state.config.max_body_bytes),
            )),
            Err(rejection) => {
                Err(json_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "BAD_BODY", &rejection.body_text()))
            }
        }
    }
}

async fn health(State(g): Shared) -> impl IntoResponse {
    let status = g.backend.node_status().await;
    let serving = status.services.iter().all(|s| s.status == pb::ServingStatus::Serving as i32);
    let code = if serving { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({ "status": if serving { "SERVING" } else { "NOT_SERVING" } })))
}

async fn challenge(State(g): Shared, Body(r): Body<pb::GetChallengeRequest>) -> Result<pb::GetChallengeResponse> {
    let (nonce, expires_at_ms) = g.auth.challenge(&r.did, now_ms())?;
    Ok(Json(pb::GetChallengeResponse { nonce, expires_at_ms }))
}

async fn login(State(g): Shared, Body(r): Body<pb::LoginRequest>) -> Result<pb::LoginResponse> {
    Ok(Json(g.login(r)?))
}

async fn revoke(
    State(g): Shared,
    Caller(c): Caller,
    Body(r): Body<pb::RevokeTokenRequest>,
) -> Result<pb::RevokeTokenResponse> {
    g.revoke(&c, &r.token_id)?;
    Ok(Json(pb::RevokeTokenResponse {}))
}

async fn node_status(State(g): Shared, Caller(_): Caller) -> Result<pb::NodeStatusResponse> {
    Ok(Json(g.backend.node_status().await))
}

async fn peers(State(g): Shared, Caller(_): Caller) -> Result<icn_proto::net::v1::ListPeersResponse> {
    Ok(Json(g.backend.list_peers().await?))
}

#[derive(Deserialize, Default)]
struct Page {
    limit: Option<u32>,
    cursor: Option<String>,
}

impl Page {
    fn request(&self) -> Option<icn_proto::common::v1::PageRequest> {
        Some(icn_proto::common::v1::PageRequest {
            limit: self.limit.unwrap_or(0),
            cursor: self.cursor.clone().unwrap_or_default(),
        })
    }
}

async fn topics(State(g): Shared, Caller(c): Caller, Query(p): Query<Page>) -> Result<pb::ListTopicsResponse> {
    Ok(Json(g.backend.list_topics(&c, p.request()).await?))
}

#[derive(Deserialize)]
struct EntriesQuery {
    topic: String,
    author: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn entries(State(g): Shared, Caller(c): Caller, Query(q): Query<EntriesQuery>) -> Result<pb::GetEntriesResponse> {
    let page = Page { limit: q.limit, cursor: q.cursor }.request();
    let r = pb::GetEntriesRequest { topic: q.topic, author: q.author.unwrap_or_default(), page };
    Ok(Json(g.backend.get_entries(&c, r).await?))
}

async fn publish(
    State(g): Shared,
    Caller(c): Caller,
    Body(r): Body<gossip::PublishRequest>,
) -> Result<gossip::PublishResponse> {
    Ok(Json(g.backend.publish(&c, r).await?))
}

async fn coop(State(g): Shared, Caller(c): Caller, Path(coop): Path<String>) -> Result<ledger::GetCoopResponse> {
    Ok(Json(g.backend.get_coop(&c, ledger::GetCoopRequest { coop_id: coop }).await?))
}

/// Public: no token.
async fn coop_stats(State(g): Shared, Path(coop): Path<String>) -> Result<ledger::CoopStatsResponse> {
    Ok(Json(g.backend.coop_stats(ledger::CoopStatsRequest { coop_id: coop }).await?))
}

#[derive(Deserialize, Default)]
struct AccountsQuery {
    currency: Option<String>,
    member: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn accounts(
    State(g): Shared,
    Caller(c): Caller,
    Path(coop): Path<String>,
    Query(q): Query<AccountsQuery>,
) -> Result<ledger::ListAccountsResponse> {
    let r = ledger::ListAccountsRequest {
        coop_id: coop,
        currency: q.currency.unwrap_or_default(),
        member: q.member.unwrap_or_default(),
        page: Page { limit: q.limit, cursor: q.cursor }.request(),
    };
    Ok(Json(g.backend.list_accounts(&c, r).await?))
}

async fn balance(
    State(g): Shared,
    Caller(c): Caller,
    Path((coop, currency, member)): Path<(String, String, String)>,
) -> Result<ledger::GetBalanceResponse> {
    let member = if member == "me" { String::new() } else { member };
    Ok(Json(g.backend.get_balance(&c, ledger::GetBalanceRequest { coop_id: coop, currency, member }).await?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    currency: String,
    member: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn history(
    State(g): Shared,
    Caller(c): Caller,
    Path(coop): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<ledger::GetHistoryResponse> {
    let r = ledger::GetHistoryRequest {
        coop_id: coop,
        currency: q.currency,
        member: q.member.unwrap_or_default(),
        page: Page { limit: q.limit, cursor: q.cursor }.request(),
        include_unapplied: q.all,
    };
    Ok(Json(g.backend.get_history(&c, r).await?))
}

async fn submit_transfer(
    State(g): Shared,
    Caller(c): Caller,
    Body(r): Body<ledger::SubmitTransferRequest>,
) -> Result<ledger::SubmitTransferResponse> {
    Ok(Json(g.backend.submit_transfer(&c, r).await?))
}

async fn transfer(
    State(g): Shared,
    Caller(c): Caller,
    Path(hash): Path<String>,
) -> Result<ledger::GetTransferResponse> {
    let hash = hex::decode(&hash).map_err(|_| GatewayError::InvalidArgument(format!("`{hash}` is not a hex hash")))?;
    let request = ledger::GetTransferRequest { key: Some(ledger::get_transfer_request::Key::Hash(hash)) };
    Ok(Json(g.backend.get_transfer(&c, request).await?))
}

#[derive(Deserialize, Default)]
struct EventsQuery {
    /// Comma-separated: gossip_entry, transfer, task, peer.
    kinds: Option<String>,
    /// Comma-separated topic names.
    topics: Option<String>,
    /// As `Last-Event-ID`, for clients that cannot set headers.
    after: Option<u64>,
}

/// Server-sent events: `id` is the event's position, `event` its kind, `data` its JSON.
async fn events(
    State(g): Shared,
    Caller(c): Caller,
    headers: axum::http::HeaderMap,
    Query(q): Query<EventsQuery>,
) -> std::result::Result<Response, GatewayError> {
    let mut kinds = Vec::new();
    for k in q.kinds.iter().flat_map(|k| k.split(',')).filter(|k| !k.is_empty()) {
        let name = format!("EVENT_KIND_{}", k.trim().to_uppercase());
        kinds.push(
            pb::EventKind::from_str_name(&name)
                .ok_or_else(|| GatewayError::InvalidArgument(format!("unknown event kind `{k}`")))?,
        );
    }
    let topics: Vec<String> =
        q.topics.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(String::from).collect();
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let stream = g.event_stream(Filter::new(c, kinds, topics), last.or(q.after));
    // A stream that ends for a reason (the token expired or was revoked) says so in a
    // last `error` event, with the JSON body a request would get.
    let stream = stream.map(|item| {
        Ok::<_, std::convert::Infallible>(match item {
            Err(e) => {
                let code = e.code();
                let body = serde_json::json!({
                    "error": { "code": crate::error::code_name(code), "reason": e.reason(), "message": e.to_string() }
                });
                SseEvent::default().event("error").data(body.to_string())
            }
            Ok(event) => {
                let kind = match &event.kind {
                    Some(pb::event::Kind::Gap(_)) => "gap",
                    Some(pb::event::Kind::GossipEntry(_)) => "gossip_entry",
                    Some(pb::event::Kind::Transfer(_)) => "transfer",
                    Some(pb::event::Kind::Task(_)) => "task",
                    Some(pb::event::Kind::Peer(_)) => "peer",
                    None => "unknown",
                };
                SseEvent::default()
                    .id(event.position.to_string())
                    .event(kind)
                    .data(serde_json::to_string(&event).unwrap_or_default())
            }
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(g.config.event_keep_alive)).into_response())
}

use futures::StreamExt;
