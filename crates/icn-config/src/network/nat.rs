//! `[network.nat]`: what netd asks of STUN and TURN servers to find how others can reach
//! it from behind a NAT: the candidates of ICE (RFC 8445), gathered with webrtc-ice.

use crate::check::socket_addr_or_host;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The kinds of candidate a node gathers.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// The node's own addresses.
    Host,
    /// Its address as a STUN server sees it: its router's outside mapping.
    ServerReflexive,
    /// An address allocated on the TURN server, which relays to it.
    Relay,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatConfig {
    /// STUN servers (`host:port`) that tell this node its outside address. Empty: no
    /// server-reflexive candidates.
    #[serde(default)]
    pub stun_servers: Vec<String>,
    /// The TURN server (`host:port`, UDP) that relays for this node when nothing else
    /// reaches it. Empty: no relay candidates.
    #[serde(default)]
    pub turn_server: String,
    /// TURN long-term credentials (RFC 8489 section 9.2).
    #[serde(default)]
    pub turn_username: String,
    /// The TURN password itself; never printed by `--print-config`. A file
    /// (`turn_password_file`) keeps it out of the environment too.
    #[serde(default, skip_serializing)]
    pub turn_password: String,
    /// A file whose first line is the TURN password.
    #[serde(default)]
    pub turn_password_file: String,
    /// Which kinds to gather. Default all three.
    pub candidates: Vec<CandidateKind>,
    /// Gathering gives up on a server after this long.
    #[serde(with = "humantime_serde")]
    pub gather_timeout: Duration,
    /// How often candidates are gathered again (a router may have changed the outside
    /// port, a TURN allocation may have been lost).
    #[serde(with = "humantime_serde")]
    pub regather_interval: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            stun_servers: Vec::new(),
            turn_server: String::new(),
            turn_username: String::new(),
            turn_password: String::new(),
            turn_password_file: String::new(),
            candidates: vec![CandidateKind::Host, CandidateKind::ServerReflexive, CandidateKind::Relay],
            gather_timeout: Duration::from_secs(5),
            regather_interval: Duration::from_secs(60),
        }
    }
}

impl NatConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for s in &self.stun_servers {
            socket_addr_or_host("network.nat.stun_servers", s)?;
        }
        if !self.turn_server.is_empty() {
            socket_addr_or_host("network.nat.turn_server", &self.turn_server)?;
            if self.turn_username.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "network.nat.turn_username",
                    problem: "a TURN server needs a username (long-term credentials)".into(),
                });
            }
            if self.turn_password.is_empty() == self.turn_password_file.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "network.nat.turn_password",
                    problem: "a TURN server needs exactly one of turn_password and turn_password_file".into(),
                });
            }
        }
        if self.gather_timeout.is_zero() || self.regather_interval <= self.gather_timeout {
            return Err(ConfigError::Invalid {
                key: "network.nat.regather_interval",
                problem: "gather_timeout must be positive and regather_interval longer than it".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, IcnConfig};

    fn load(pairs: &[(&str, &str)]) -> Result<IcnConfig, ConfigError> {
        IcnConfig::load_with_env(None, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn refused_key(pairs: &[(&str, &str)]) -> &'static str {
        match load(pairs) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{pairs:?} must be refused, got {other:?}"),
        }
    }

    #[test]
    fn servers_and_kinds_come_from_the_environment_as_lists() {
        let c = load(&[
            ("ICN__NETWORK__NAT__STUN_SERVERS", "10.0.0.1:3478, stun.example.org:3478"),
            ("ICN__NETWORK__NAT__CANDIDATES", "host,server_reflexive"),
        ])
        .unwrap();
        assert_eq!(c.network.nat.stun_servers, vec!["10.0.0.1:3478", "stun.example.org:3478"]);
        assert_eq!(c.network.nat.candidates, vec![super::CandidateKind::Host, super::CandidateKind::ServerReflexive]);
    }

    #[test]
    fn incomplete_turn_settings_are_refused_naming_the_key() {
        let turn = ("ICN__NETWORK__NAT__TURN_SERVER", "10.0.0.1:3478");
        let user = ("ICN__NETWORK__NAT__TURN_USERNAME", "member");
        assert_eq!(refused_key(&[turn]), "network.nat.turn_username");
        assert_eq!(refused_key(&[turn, user]), "network.nat.turn_password", "no password at all");
        let both =
            [turn, user, ("ICN__NETWORK__NAT__TURN_PASSWORD", "p"), ("ICN__NETWORK__NAT__TURN_PASSWORD_FILE", "/f")];
        assert_eq!(refused_key(&both), "network.nat.turn_password", "a password and a file");
        assert_eq!(refused_key(&[("ICN__NETWORK__NAT__STUN_SERVERS", "no-port")]), "network.nat.stun_servers");
        assert_eq!(refused_key(&[("ICN__NETWORK__NAT__TURN_SERVER", "host:port")]), "network.nat.turn_server");
        assert_eq!(refused_key(&[("ICN__NETWORK__NAT__GATHER_TIMEOUT", "0s")]), "network.nat.regather_interval");
        let c = load(&[turn, user, ("ICN__NETWORK__NAT__TURN_PASSWORD", "a secret")]).unwrap();
        assert_eq!(c.network.nat.turn_password, "a secret");
        assert!(!c.to_toml().contains("a secret"), "the password is not printed");
    }
}
