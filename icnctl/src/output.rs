//! Rendering results for people (aligned text) or scripts (`--json`, one document per
//! result, one line per streamed message).

mod ledger;

use icn_proto::gossip::v1::{acl, StoredEntry, Topic};
use icn_proto::net::v1::{
    CandidateKind, EstimateRttResponse, InboundMessage, Peer, PeerState, StatusResponse, StunState, TurnState,
};
use serde_json::json;
use std::path::Path;

pub struct Output {
    pub json: bool,
}

fn state_name(state: i32) -> &'static str {
    match PeerState::try_from(state).unwrap_or(PeerState::Unspecified) {
        PeerState::Unspecified => "known",
        PeerState::Connecting => "connecting",
        PeerState::Connected => "connected",
        PeerState::Reconnecting => "reconnecting",
        PeerState::Closed => "closed",
        PeerState::Failed => "failed",
    }
}

fn candidate_kind(kind: i32) -> &'static str {
    match CandidateKind::try_from(kind).unwrap_or(CandidateKind::Unspecified) {
        CandidateKind::Host => "host",
        CandidateKind::ServerReflexive => "server_reflexive",
        CandidateKind::Relay => "relay",
        CandidateKind::Unspecified => "unspecified",
    }
}

/// STUN's and TURN's state: (state, reason, detail), as `status` prints them.
fn nat_states(s: &StatusResponse) -> [(&'static str, String, String); 2] {
    let stun = s.stun.clone().unwrap_or_default();
    let turn = s.turn.clone().unwrap_or_default();
    let stun_state = match StunState::try_from(stun.state).unwrap_or(StunState::Unspecified) {
        StunState::Off | StunState::Unspecified => "off",
        StunState::Answered => "answered",
        StunState::Failed => "failed",
    };
    let turn_state = match TurnState::try_from(turn.state).unwrap_or(TurnState::Unspecified) {
        TurnState::Off | TurnState::Unspecified => "off",
        TurnState::Allocated => "allocated",
        TurnState::Failed => "failed",
    };
    [(stun_state, stun.reason, stun.detail), (turn_state, turn.reason, turn.detail)]
}

fn rtt_text(us: u64) -> String {
    if us == 0 {
        "-".into()
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

impl Output {
    pub fn identity(&self, did: &str, path: &Path, created: bool) {
        if self.json {
            println!("{}", json!({ "did": did, "keystore": path, "created": created }));
        } else if created {
            println!("created {did}\nkeystore {}", path.display());
        } else {
            println!("{did}\nkeystore {}", path.display());
        }
    }

    pub fn status(&self, s: &StatusResponse) {
        let info = s.info.clone().unwrap_or_default();
        let [stun, turn] = nat_states(s);
        if self.json {
            println!(
                "{}",
                json!({
                    "did": info.did, "service": info.service, "version": info.version,
                    "limited_mode": info.limited_mode, "listen_address": s.listen_address,
                    "advertised_addresses": s.advertised_addresses, "incarnation": s.incarnation,
                    "protocol_version": s.protocol_version, "connected_peers": s.connected_peers,
                    "x25519_public_key": s.x25519_public_key,
                    "candidates": s.candidates.iter()
                        .map(|c| json!({"kind": candidate_kind(c.kind), "address": c.address}))
                        .collect::<Vec<_>>(),
                    "relay_address": s.relay_address,
                    "stun": {"state": stun.0, "reason": stun.1, "detail": stun.2},
                    "turn": {"state": turn.0, "reason": turn.1, "detail": turn.2},
                })
            );
            return;
        }
        let did = if info.limited_mode { "(none: limited mode, run `icnctl id init`)".to_string() } else { info.did };
        println!("did          {did}");
        println!("service      {} {}", info.service, info.version);
        println!("listen       {}", if s.listen_address.is_empty() { "-" } else { &s.listen_address });
        println!(
            "advertised   {}",
            if s.advertised_addresses.is_empty() { "-".to_string() } else { s.advertised_addresses.join(", ") }
        );
        println!("protocol     v{}", s.protocol_version);
        println!("peers        {} connected", s.connected_peers);
        let candidates: Vec<String> =
            s.candidates.iter().map(|c| format!("{} {}", candidate_kind(c.kind), c.address)).collect();
        println!("candidates   {}", if candidates.is_empty() { "-".to_string() } else { candidates.join(", ") });
        for (name, (state, reason, detail)) in [("stun", stun), ("turn", turn)] {
            match state {
                "failed" => println!("{name:<12} failed: {reason} ({detail})"),
                "allocated" => println!("{name:<12} allocated, relay {}", s.relay_address),
                other => println!("{name:<12} {other}"),
            }
        }
    }

    pub fn peers(&self, peers: &[Peer]) {
        if self.json {
            let list: Vec<_> = peers
                .iter()
                .map(|p| {
                    json!({
                        "did": p.did, "state": state_name(p.state), "rtt_us": p.rtt_us,
                        "remote_address": p.remote_address, "outbound": p.outbound,
                        "advertised_addresses": p.advertised_addresses, "incarnation": p.incarnation,
                        "messages_sent": p.messages_sent, "messages_received": p.messages_received,
                        "attempt": p.attempt, "last_error": p.last_error,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(list));
            return;
        }
        if peers.is_empty() {
            println!("no peers");
            return;
        }
        println!("{:<58} {:<13} {:>10}  ADDRESS", "DID", "STATE", "RTT");
        for p in peers {
            let address = if p.remote_address.is_empty() { p.last_error.clone() } else { p.remote_address.clone() };
            println!("{:<58} {:<13} {:>10}  {}", p.did, state_name(p.state), rtt_text(p.rtt_us), address);
        }
    }

    /// A send's answer: its sequence number when durable; best-effort sends have none.
    pub fn sent(&self, seq: u64, best_effort: bool) {
        if self.json {
            println!("{}", json!({ "seq": seq, "best_effort": best_effort }));
        } else if best_effort {
            println!("handed to the peer's link, best effort (not stored, not acknowledged)");
        } else {
            println!("queued as message {seq}");
        }
    }

    pub fn message(&self, m: &InboundMessage) {
        let text = String::from_utf8_lossy(&m.payload);
        if self.json {
            println!(
                "{}",
                json!({ "from": m.from, "protocol": m.protocol, "seq": m.seq, "position": m.position, "sealed": m.sealed, "payload": text, "received_at_ms": m.received_at_ms })
            );
        } else {
            println!(
                "@{} {} [{} #{}{}] {}",
                m.position,
                m.from,
                m.protocol,
                m.seq,
                if m.sealed { ", sealed" } else { "" },
                text
            );
        }
    }

    pub fn topics(&self, topics: &[Topic]) {
        let acl_text = |t: &Topic| match t.acl.as_ref().and_then(|a| a.rule.as_ref()) {
            None | Some(acl::Rule::Public(_)) => "public".to_string(),
            Some(acl::Rule::MinTrust(m)) => format!("min-trust {}", m.score),
            Some(acl::Rule::Participants(p)) => format!("{} participants", p.dids.len()),
        };
        if self.json {
            let list: Vec<_> = topics
                .iter()
                .map(|t| json!({ "name": t.name, "acl": acl_text(t), "creator": t.creator, "revision": t.revision, "max_entries": t.max_entries }))
                .collect();
            println!("{}", serde_json::Value::Array(list));
        } else if topics.is_empty() {
            println!("no topics");
        } else {
            for t in topics {
                println!("{:<32} {:<18} rev {}  by {}", t.name, acl_text(t), t.revision, t.creator);
            }
        }
    }

    pub fn entry(&self, stored: &StoredEntry) {
        let Some(e) = stored.entry.as_ref() else { return };
        let text = if e.compressed { "(compressed)".into() } else { String::from_utf8_lossy(&e.payload).into_owned() };
        if self.json {
            println!(
                "{}",
                json!({ "topic": e.topic, "author": e.author, "seq": e.seq, "position": stored.position, "payload": text, "timestamp_ms": e.timestamp_ms })
            );
        } else {
            println!("@{} {} [{} #{}] {}", stored.position, e.author, e.topic, e.seq, text);
        }
    }

    pub fn done(&self, what: &str) {
        if self.json {
            println!("{}", json!({ "ok": true, "result": what }));
        } else {
            println!("{what}");
        }
    }

    pub fn rtt(&self, r: &EstimateRttResponse) {
        if self.json {
            println!("{}", json!({ "rtt_us": r.rtt_us, "measured": r.measured }));
        } else {
            println!("{} ({})", rtt_text(r.rtt_us), if r.measured { "measured" } else { "estimated from coordinates" });
        }
    }

    pub fn health(&self, endpoint: &str, status: &str) {
        if self.json {
            println!("{}", json!({ "endpoint": endpoint, "status": status }));
        } else {
            println!("{endpoint}: {status}");
        }
    }
}

impl Output {
    /// The token itself is never printed: it is in the file.
    pub fn logged_in(&self, did: &str, issued: &icn_proto::gateway::v1::LoginResponse, file: &Path) {
        let expires = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(issued.expires_at_ms.max(0) as u64),
        );
        if self.json {
            println!(
                "{}",
                json!({ "did": did, "scopes": issued.scopes, "token_id": issued.token_id,
                        "expires_at": expires.to_string(), "token_file": file })
            );
        } else {
            println!(
                "logged in as {did}\nscopes {}\nexpires {expires}\ntoken saved in {}",
                issued.scopes.join(" "),
                file.display()
            );
        }
    }

    pub fn logged_out(&self, file: &Path) {
        if self.json {
            println!("{}", json!({ "revoked": true, "token_file": file }));
        } else {
            println!("token revoked and {} removed", file.display());
        }
    }
}
