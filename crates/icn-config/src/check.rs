//! Checks several sections share, each refusing a value with a [`ConfigError::Invalid`]
//! that names its `section.key`.

use crate::ConfigError;
use std::net::SocketAddr;

/// A listen address must be a literal `ip:port`: services bind it as given.
pub(crate) fn socket_addr(key: &'static str, value: &str) -> Result<(), ConfigError> {
    value
        .parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|_| ConfigError::Invalid { key, problem: format!("must be ip:port, got `{value}`") })
}

/// Sizes and counts that would stop all work at 0 (an empty queue, a zero-byte limit).
pub(crate) fn positive(key: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::Invalid { key, problem: "must be greater than 0".into() })
    } else {
        Ok(())
    }
}

/// A rate must be a number above zero; NaN is not, so it is refused too.
pub(crate) fn above_zero(rate: f64) -> bool {
    rate > 0.0
}

/// A server to reach: `host:port`, the host a name or an address, the port a number.
pub(crate) fn socket_addr_or_host(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::Invalid { key, problem: format!("must be host:port, got `{value}`") };
    if value.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}
