//! How others can reach this node from behind a NAT (`[network.nat]`): its ICE
//! candidates (RFC 8445), gathered with webrtc-ice from the STUN and TURN servers it is
//! given, again every `regather_interval`, and whether the TURN server allocates for it.
//! They show in `Status` (`candidates`, `relay_address`, `stun`, `turn`) and in metrics.
//!
//! webrtc-ice reports a failed TURN allocation only in its log and simply gathers no
//! relay candidate. So when a relay was wanted and none came, netd asks the TURN server
//! itself (the `turn` crate's client, the one webrtc-ice uses) and keeps the server's
//! answer as the reason: wrong credentials, unreachable, quota, or its own words.

use crate::error::NetError;
use icn_config::{CandidateKind, NatConfig};
use icn_proto::net::v1 as api;
use icn_runtime::Context;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::agent::Agent;
use webrtc_ice::candidate::{Candidate, CandidateType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_ice::url::{ProtoType, SchemeType, Url};

/// The first wait before gathering again after a failure.
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// What the last gathering found.
#[derive(Clone, Debug, Default)]
struct Gathered {
    candidates: Vec<api::Candidate>,
    stun: api::StunStatus,
    turn: api::TurnStatus,
}

impl Gathered {
    /// Before any gathering, or with nothing to gather from.
    fn off() -> Gathered {
        Gathered {
            candidates: Vec::new(),
            stun: api::StunStatus { state: api::StunState::Off as i32, ..Default::default() },
            turn: api::TurnStatus { state: api::TurnState::Off as i32, ..Default::default() },
        }
    }
}

#[derive(Clone)]
struct Metrics {
    candidates: IntGaugeVec,
    stun_failures: IntCounter,
    turn_failures: IntCounterVec,
    turn_allocations: IntCounter,
}

impl Metrics {
    fn new(registry: &prometheus::Registry) -> Metrics {
        use icn_telemetry::metrics::register;
        Metrics {
            candidates: register(
                registry,
                IntGaugeVec::new(Opts::new("netd_nat_candidates", "ICE candidates gathered last, by kind"), &["kind"])
                    .expect("valid metric"),
            ),
            stun_failures: register(
                registry,
                IntCounter::new("netd_stun_failures_total", "Gatherings where no STUN server answered")
                    .expect("valid metric"),
            ),
            turn_failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "netd_turn_failures_total",
                        "Gatherings where the TURN server allocated nothing, by reason",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            turn_allocations: register(
                registry,
                IntCounter::new("netd_turn_allocations_total", "Gatherings where the TURN server allocated a relay")
                    .expect("valid metric"),
            ),
        }
    }
}

/// The TURN server and its long-term credentials, the password read from its file.
#[derive(Clone)]
struct TurnServer {
    address: String,
    username: String,
    password: String,
}

/// The node's NAT view, kept up to date by a task of its own.
#[derive(Clone)]
pub struct Nat {
    gathered: Arc<RwLock<Gathered>>,
}

impl Nat {
    /// Starts gathering when a STUN or TURN server is configured; without one there is
    /// nothing to learn beyond the listen address, and the TURN state is OFF.
    pub fn start(ctx: &Context, config: &NatConfig) -> Result<Nat, NetError> {
        let turn = turn_server(config)?;
        let nat = Nat::off();
        if config.stun_servers.is_empty() && turn.is_none() {
            return Ok(nat);
        }
        let metrics = Metrics::new(&ctx.metrics);
        ctx.spawn(run(config.clone(), turn, metrics, nat.gathered.clone(), ctx.shutdown.clone()));
        Ok(nat)
    }

    /// A node that gathers nothing (no endpoint: limited mode).
    pub fn off() -> Nat {
        Nat { gathered: Arc::new(RwLock::new(Gathered::off())) }
    }

    pub fn candidates(&self) -> Vec<api::Candidate> {
        self.gathered.read().expect("nat lock").candidates.clone()
    }

    pub fn stun(&self) -> api::StunStatus {
        self.gathered.read().expect("nat lock").stun.clone()
    }

    pub fn turn(&self) -> api::TurnStatus {
        self.gathered.read().expect("nat lock").turn.clone()
    }

    /// The relay address the TURN server allocated, if it did.
    pub fn relay_address(&self) -> String {
        let relay = api::CandidateKind::Relay as i32;
        self.candidates().into_iter().find(|c| c.kind == relay).map(|c| c.address).unwrap_or_default()
    }
}

fn turn_server(config: &NatConfig) -> Result<Option<TurnServer>, NetError> {
    if config.turn_server.is_empty() || !config.candidates.contains(&CandidateKind::Relay) {
        return Ok(None);
    }
    let password = if config.turn_password_file.is_empty() {
        config.turn_password.clone()
    } else {
        let text = std::fs::read_to_string(&config.turn_password_file).map_err(|e| {
            NetError::InvalidArgument(format!(
                "network.nat.turn_password_file `{}` cannot be read: {e}",
                config.turn_password_file
            ))
        })?;
        text.lines().next().unwrap_or_default().trim().to_string()
    };
    Ok(Some(TurnServer { address: config.turn_server.clone(), username: config.turn_username.clone(), password }))
}

async fn run(
    config: NatConfig,
    turn: Option<TurnServer>,
    metrics: Metrics,
    gathered: Arc<RwLock<Gathered>>,
    shutdown: CancellationToken,
) {
    // After a failure the next gathering comes sooner (a server that was starting, a
    // network that came back), doubling up to the regular interval.
    let mut failures = 0;
    loop {
        let found = tokio::select! {
            _ = shutdown.cancelled() => return,
            found = gather(&config, turn.as_ref()) => found,
        };
        for kind in [api::CandidateKind::Host, api::CandidateKind::ServerReflexive, api::CandidateKind::Relay] {
            let n = found.candidates.iter().filter(|c| c.kind == kind as i32).count();
            metrics.candidates.with_label_values(&[kind_label(kind)]).set(n as i64);
        }
        match api::TurnState::try_from(found.turn.state) {
            Ok(api::TurnState::Allocated) => metrics.turn_allocations.inc(),
            Ok(api::TurnState::Failed) => {
                metrics.turn_failures.with_label_values(&[found.turn.reason.as_str()]).inc();
                tracing::warn!(reason = %found.turn.reason, detail = %found.turn.detail, "the TURN server allocated no relay");
            }
            _ => {}
        }
        if found.stun.state == api::StunState::Failed as i32 {
            metrics.stun_failures.inc();
            tracing::warn!(detail = %found.stun.detail, "no STUN server answered");
        }
        tracing::info!(candidates = ?found.candidates.iter().map(|c| &c.address).collect::<Vec<_>>(), "ICE candidates gathered");
        let failed =
            found.stun.state == api::StunState::Failed as i32 || found.turn.state == api::TurnState::Failed as i32;
        *gathered.write().expect("nat lock") = found;
        failures = if failed { failures + 1 } else { 0 };
        let wait = match failures {
            0 => config.regather_interval,
            n => crate::backoff::doubling(FIRST_RETRY, config.regather_interval, n - 1),
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn kind_label(kind: api::CandidateKind) -> &'static str {
    match kind {
        api::CandidateKind::Host => "host",
        api::CandidateKind::ServerReflexive => "server_reflexive",
        api::CandidateKind::Relay => "relay",
        api::CandidateKind::Unspecified => "unspecified",
    }
}

/// `host:port` as webrtc-ice's URL of a server.
fn url(scheme: SchemeType, server: &str, credentials: Option<&TurnServer>) -> Option<Url> {
    let (host, port) = server.rsplit_once(':')?;
    Some(Url {
        scheme,
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port: port.parse().ok()?,
        username: credentials.map(|t| t.username.clone()).unwrap_or_default(),
        password: credentials.map(|t| t.password.clone()).unwrap_or_default(),
        proto: ProtoType::Udp,
    })
}

/// One gathering: every candidate that arrives within `gather_timeout`, then TURN's state.
async fn gather(config: &NatConfig, turn: Option<&TurnServer>) -> Gathered {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let checked_at_ms = now.as_millis() as i64;
    let mut urls: Vec<Url> = config.stun_servers.iter().filter_map(|s| url(SchemeType::Stun, s, None)).collect();
    urls.extend(turn.and_then(|t| url(SchemeType::Turn, &t.address, Some(t))));
    let candidate_types = config
        .candidates
        .iter()
        .map(|k| match k {
            CandidateKind::Host => CandidateType::Host,
            CandidateKind::ServerReflexive => CandidateType::ServerReflexive,
            CandidateKind::Relay => CandidateType::Relay,
        })
        .collect();
    let agent_config = AgentConfig {
        urls,
        network_types: vec![NetworkType::Udp4],
        candidate_types,
        // Host candidates are the node's addresses, not mDNS names (nobody resolves them).
        multicast_dns_mode: MulticastDnsMode::Disabled,
        ..Default::default()
    };
    let mut candidates = Vec::new();
    let failed = |detail: String| api::TurnStatus {
        state: api::TurnState::Failed as i32,
        reason: "error".into(),
        detail,
        checked_at_ms,
    };
    let stun_off = api::StunStatus { state: api::StunState::Off as i32, ..Default::default() };
    let agent = match Agent::new(agent_config).await {
        Ok(agent) => agent,
        Err(e) => return Gathered { candidates, stun: stun_off, turn: failed(format!("starting ICE: {e}")) },
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    agent.on_candidate(Box::new(move |c: Option<Arc<dyn Candidate + Send + Sync>>| {
        let _ = tx.send(c);
        Box::pin(async {})
    }));
    if let Err(e) = agent.gather_candidates() {
        let _ = agent.close().await;
        return Gathered { candidates, stun: stun_off, turn: failed(format!("gathering: {e}")) };
    }
    let deadline = tokio::time::Instant::now() + config.gather_timeout;
    // `None` from the agent: gathering is complete.
    while let Ok(Some(Some(c))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let kind = match c.candidate_type() {
            CandidateType::Host => api::CandidateKind::Host,
            CandidateType::ServerReflexive => api::CandidateKind::ServerReflexive,
            CandidateType::Relay => api::CandidateKind::Relay,
            _ => continue,
        };
        candidates.push(api::Candidate { kind: kind as i32, address: format!("{}:{}", c.address(), c.port()) });
    }
    // webrtc-ice's agents hold sockets and tasks until closed.
    let _ = agent.close().await;
    let reflexive = candidates.iter().any(|c| c.kind == api::CandidateKind::ServerReflexive as i32);
    let stun = if config.stun_servers.is_empty() || !config.candidates.contains(&CandidateKind::ServerReflexive) {
        stun_off
    } else if reflexive {
        api::StunStatus { state: api::StunState::Answered as i32, ..Default::default() }
    } else {
        api::StunStatus {
            state: api::StunState::Failed as i32,
            reason: "unreachable".into(),
            detail: format!("none of {:?} answered within {:?}", config.stun_servers, config.gather_timeout),
        }
    };
    let relayed = candidates.iter().any(|c| c.kind == api::CandidateKind::Relay as i32);
    let turn = match turn {
        None => api::TurnStatus { state: api::TurnState::Off as i32, checked_at_ms, ..Default::default() },
        Some(_) if relayed => {
            api::TurnStatus { state: api::TurnState::Allocated as i32, checked_at_ms, ..Default::default() }
        }
        Some(server) => {
            let (reason, detail) = why_no_relay(server, config.gather_timeout).await;
            api::TurnStatus { state: api::TurnState::Failed as i32, reason: reason.into(), detail, checked_at_ms }
        }
    };
    Gathered { candidates, stun, turn }
}

/// Asks the TURN server for an allocation to learn why it gave none. The client is
/// always closed, on a timeout too: its reading task would otherwise outlive it, one per
/// failed gathering.
async fn why_no_relay(server: &TurnServer, timeout: Duration) -> (&'static str, String) {
    let socket = match tokio::net::UdpSocket::bind("0.0.0.0:0").await {
        Ok(s) => s,
        Err(e) => return ("error", format!("binding a socket to ask the TURN server: {e}")),
    };
    let config = turn::client::ClientConfig {
        stun_serv_addr: server.address.clone(),
        turn_serv_addr: server.address.clone(),
        username: server.username.clone(),
        password: server.password.clone(),
        realm: String::new(),
        software: "icn-netd".into(),
        rto_in_ms: 0,
        conn: Arc::new(socket),
        vnet: None,
    };
    let client = match tokio::time::timeout(timeout, turn::client::Client::new(config)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return (reason_of(&e.to_string()), e.to_string()),
        Err(_) => return ("unreachable", format!("{} did not resolve within {timeout:?}", server.address)),
    };
    let asked = async {
        client.listen().await?;
        client.allocate().await.map(|_| ())
    };
    let answer = tokio::time::timeout(timeout, asked).await;
    let _ = client.close().await;
    match answer {
        Err(_) => ("unreachable", format!("no answer from {} within {timeout:?}", server.address)),
        // It allocated this time: the gathering's failure was passing.
        Ok(Ok(())) => ("error", "no relay candidate was gathered, though the server allocates now".into()),
        Ok(Err(e)) => (reason_of(&e.to_string()), e.to_string()),
    }
}

/// The reason a TURN error names (RFC 8656 section 19 codes), as a metric label.
fn reason_of(error: &str) -> &'static str {
    let lower = error.to_lowercase();
    if lower.contains("401") || lower.contains("unauthori") || lower.contains("441") {
        "wrong_credentials"
    } else if lower.contains("486") || lower.contains("508") || lower.contains("quota") || lower.contains("capacity") {
        "quota"
    } else if lower.contains("437") || lower.contains("mismatch") {
        "allocation_mismatch"
    } else if lower.contains("timeout") || lower.contains("retransmi") || lower.contains("refused") {
        "unreachable"
    } else {
        "error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_errors_map_to_their_reasons() {
        assert_eq!(reason_of("Allocate error response (error 401: Unauthorized)"), "wrong_credentials");
        assert_eq!(reason_of("Allocate error response (error 486: Allocation Quota Reached)"), "quota");
        assert_eq!(reason_of("Allocate error response (error 437: Allocation Mismatch)"), "allocation_mismatch");
        assert_eq!(reason_of("all retransmissions failed"), "unreachable");
        assert_eq!(reason_of("something new"), "error");
    }

    #[test]
    fn the_turn_password_comes_from_its_file_and_a_missing_file_is_named() {
        let dir = std::env::temp_dir().join(format!("icn-nat-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("turn-password");
        std::fs::write(&file, "from the file\nsecond line\n").unwrap();
        let mut config = NatConfig {
            turn_server: "10.0.0.1:3478".into(),
            turn_username: "member".into(),
            turn_password_file: file.to_string_lossy().into(),
            ..Default::default()
        };
        assert_eq!(turn_server(&config).unwrap().unwrap().password, "from the file");
        config.turn_password_file = dir.join("missing").to_string_lossy().into();
        let e = turn_server(&config).err().expect("a missing file is an error").to_string();
        assert!(e.contains("network.nat.turn_password_file") && e.contains("missing"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn servers_become_urls() {
        let u = url(SchemeType::Stun, "10.1.0.1:3478", None).unwrap();
        assert_eq!((u.host.as_str(), u.port), ("10.1.0.1", 3478));
        assert!(url(SchemeType::Stun, "no-port", None).is_none());
    }
}
