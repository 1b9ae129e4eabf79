//! Names of cooperatives and currencies, and the gossip topic of a cooperative. The
//! ledger, the gateway (which guards a cooperative's topic for its members) and icnctl
//! share these, so the topic a cooperative replicates on is spelled in one place.

use icn_proto::ledger::wire::v1::ledger_entry::Body;

/// Longest cooperative id; ids name gossip topics.
pub const MAX_COOP_ID: usize = 64;
/// Longest currency symbol.
pub const MAX_SYMBOL: usize = 16;
/// Most decimal places a currency may have: 10^18 minor units still fit an i64.
pub const MAX_DECIMALS: u32 = 18;

/// Prefix of the cooperatives' gossip topics: cooperative `x` replicates on `ledger/x`.
pub const TOPIC_PREFIX: &str = "ledger/";

/// Lower-case letters, digits and '-', not empty, at most `max` bytes.
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The gossip topic a cooperative replicates on.
pub fn topic(coop_id: &str) -> String {
    format!("{TOPIC_PREFIX}{coop_id}")
}

/// The cooperative whose ledger a gossip topic carries, if it is one: `ledger/<id>` with
/// a valid id.
pub fn coop_of_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix(TOPIC_PREFIX).filter(|id| valid_name(id, MAX_COOP_ID))
}

/// The cooperative a ledger entry belongs to: each record names its own.
pub fn coop_of(body: &Body) -> &str {
    match body {
        Body::Coop(c) => &c.id,
        Body::Admission(a) => &a.coop_id,
        Body::Currency(c) => &c.coop_id,
        Body::Limit(l) => &l.coop_id,
        Body::Transfer(t) => &t.coop_id,
        Body::Fork(f) => &f.coop_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooperative_topic_names_its_cooperative_and_nothing_else_does() {
        assert_eq!(topic("alpha"), "ledger/alpha");
        assert_eq!(coop_of_topic(&topic("alpha")), Some("alpha"));
        assert_eq!(coop_of_topic("news"), None);
        assert_eq!(coop_of_topic("ledger/"), None);
        assert_eq!(coop_of_topic("ledger/Bad_Name"), None);
        assert_eq!(coop_of_topic(&topic(&"a".repeat(MAX_COOP_ID + 1))), None);
        assert!(valid_name("hours", MAX_SYMBOL) && !valid_name("hours!", MAX_SYMBOL));
    }
}
