//! `[network.exchange]`: how much a node takes from what its peers tell it about other
//! peers. Peer exchange is gossip from peers, not from the peers it names, so everything
//! it can make a node hold or do is bounded: peers remembered, addresses per peer,
//! exchange frames per connection, and dials to the addresses it names (each one a DNS
//! lookup and packets to a host the peer chose: unbounded, a reflection tool).

use crate::check::{above_zero, positive};
use crate::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Peers this node remembers (connected or not); a new one named beyond it is
    /// ignored, counted in `icn_netd_exchange_refused_total{bound="known_peers"}`.
    pub max_known_peers: usize,
    /// Addresses kept per peer; further ones are ignored (`…{bound="addresses"}`).
    pub max_addresses_per_peer: usize,
    /// Peer-exchange frames taken per second from one connection, with `frames_burst`
    /// at once; others are ignored (`…{bound="frames"}`). An honest peer sends one per
    /// new connection it makes and one per `network.peer_exchange_interval`.
    pub frames_per_second: f64,
    pub frames_burst: u32,
    /// Dials per second, node-wide, to peers learnt from exchange, with `dials_burst` at
    /// once; a peer over it stays known and is dialled when named again
    /// (`…{bound="dials"}`).
    pub dials_per_second: f64,
    pub dials_burst: u32,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            max_known_peers: 1024,
            max_addresses_per_peer: 8,
            frames_per_second: 1.0,
            frames_burst: 16,
            dials_per_second: 2.0,
            dials_burst: 8,
        }
    }
}

impl ExchangeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("network.exchange.max_known_peers", self.max_known_peers)?;
        positive("network.exchange.max_addresses_per_peer", self.max_addresses_per_peer)?;
        for (key, rate, burst) in [
            ("network.exchange.frames_per_second", self.frames_per_second, self.frames_burst),
            ("network.exchange.dials_per_second", self.dials_per_second, self.dials_burst),
        ] {
            if !above_zero(rate) || burst == 0 {
                return Err(ConfigError::Invalid { key, problem: "the rate and its burst must be positive".into() });
            }
        }
        Ok(())
    }
}
