//! Names of cooperatives and currencies, how a cooperative's id is bound to its founding
//! record, and the gossip topic of a cooperative. The ledger, the gateway (which guards a
//! cooperative's topic for its members) and icnctl share these, so the topic a
//! cooperative replicates on is spelled in one place.
//!
//! **A cooperative is its founding record.** Its id is `<label>-<bind>`: a label the
//! founder picks (`bakery`) and 26 characters of base32 that are the SHA-256 of the
//! founding record itself (label, name, founder, time), so exactly one record can found
//! a given id. Anyone may still found *a* cooperative labelled `bakery`, but it gets
//! another id; replacing the founder of an existing one would take a second preimage of
//! 128 bits of SHA-256. Before ids were bound, the founding record in force was the one
//! with the earliest signer-chosen time, and any outsider could become founder of every
//! cooperative by publishing one backdated record (docs/SECURITY.md).

use crate::Signed as _;
use icn_identity::NodeIdentity;
use icn_proto::ledger::v1::Coop;
use icn_proto::ledger::wire::v1::ledger_entry::Body;
use sha2::{Digest, Sha256};

/// Longest cooperative id; ids name gossip topics.
pub const MAX_COOP_ID: usize = 64;
/// Characters of an id that bind it to its founding record: 128 bits in base32.
pub const BIND_LEN: usize = 26;
/// Longest label a founder may pick: the id is `<label>-<bind>`.
pub const MAX_LABEL: usize = MAX_COOP_ID - 1 - BIND_LEN;
/// What the binding digest hashes first, so it is never the digest of anything else.
const BIND_DOMAIN: &[u8] = b"icn/ledger/coop-id/v1\0";
/// Longest currency symbol.
pub const MAX_SYMBOL: usize = 16;
/// Most decimal places a currency may have: 10^18 minor units still fit an i64.
pub const MAX_DECIMALS: u32 = 18;

/// Prefix of the cooperatives' gossip topics: cooperative `x` replicates on `ledger/x`,
/// a name reserved for the ledger with settings no creator chooses.
pub const TOPIC_PREFIX: &str = icn_gossip_records::reserved::LEDGER_PREFIX;

/// Lower-case letters, digits and '-', not empty, at most `max` bytes.
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The characters that bind an id to `coop` (its id holding just the label).
fn binding(coop: &Coop) -> String {
    let unsigned = Coop { signature: Vec::new(), ..coop.clone() };
    let mut digest = Sha256::new();
    digest.update(BIND_DOMAIN);
    digest.update(prost::Message::encode_to_vec(&unsigned));
    let digest = digest.finalize();
    data_encoding::BASE32_NOPAD.encode(&digest[..16]).to_ascii_lowercase()
}

/// Why a label cannot start a cooperative's id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a cooperative label: lower-case letters, digits and '-', at most {MAX_LABEL} bytes")]
pub struct BadLabel(pub String);

/// A founding record signed by `founder`, its id bound to it: `<label>-<bind>`.
pub fn found(founder: &NodeIdentity, label: &str, name: &str, created_at_ms: i64) -> Result<Coop, BadLabel> {
    if !valid_name(label, MAX_LABEL) {
        return Err(BadLabel(label.to_string()));
    }
    let mut coop = Coop {
        id: label.to_string(),
        name: name.to_string(),
        founder: founder.did().to_string(),
        created_at_ms,
        signature: Vec::new(),
        format: crate::signed::FORMAT,
    };
    coop.id = format!("{label}-{}", binding(&coop));
    Ok(crate::sign(founder, coop))
}

/// Whether a founding record's id is bound to it, as [`found`] makes it.
pub fn is_bound(coop: &Coop) -> bool {
    let Some((label, bind)) = coop.id.rsplit_once('-') else { return false };
    if bind.len() != BIND_LEN || !valid_name(label, MAX_LABEL) {
        return false;
    }
    let mut unbound = coop.clone();
    unbound.id = label.to_string();
    unbound.set_signature(Vec::new());
    binding(&unbound) == bind
}

/// The label of a cooperative id: what its founder named it.
pub fn label(coop_id: &str) -> &str {
    coop_id.rsplit_once('-').map_or(coop_id, |(label, _)| label)
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
        Body::Validators(v) => &v.coop_id,
        Body::Vote(v) => &v.coop_id,
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

    #[test]
    fn an_id_is_bound_to_exactly_one_founding_record() {
        let (alice, mallory) = (NodeIdentity::generate(), NodeIdentity::generate());
        let coop = found(&alice, "bakery", "The Bakery", 1_000).unwrap();
        assert!(coop.id.starts_with("bakery-") && coop.id.len() == "bakery-".len() + BIND_LEN, "{}", coop.id);
        assert!(valid_name(&coop.id, MAX_COOP_ID) && is_bound(&coop));
        assert_eq!(label(&coop.id), "bakery");
        assert_eq!(crate::verify(&coop).map(|_| ()), Ok(()));
        // The takeover of before: the same id, an earlier time, another founder.
        let rival = crate::sign(&mallory, Coop { created_at_ms: 1, signature: Vec::new(), ..coop.clone() });
        assert!(crate::verify(&rival).is_ok() && !is_bound(&rival), "signed, but the id is not its own");
        for changed in [
            Coop { name: "Mallory's".into(), ..coop.clone() },
            Coop { created_at_ms: 999, ..coop.clone() },
            Coop { founder: mallory.did().to_string(), ..coop.clone() },
            Coop { id: "bakery".into(), ..coop.clone() },
            Coop { id: format!("cakery-{}", &coop.id["bakery-".len()..]), ..coop.clone() },
        ] {
            assert!(!is_bound(&changed), "{changed:?}");
        }
        // Mallory's own bakery is another cooperative.
        let own = found(&mallory, "bakery", "The Bakery", 1).unwrap();
        assert!(is_bound(&own) && own.id != coop.id);
        assert_eq!(found(&alice, &"a".repeat(MAX_LABEL + 1), "x", 1), Err(BadLabel("a".repeat(MAX_LABEL + 1))));
        assert!(found(&alice, &"a".repeat(MAX_LABEL), "x", 1).unwrap().id.len() == MAX_COOP_ID);
    }
}
