//! `did:icn:` identifiers: `did:icn:` + multibase base58btc (`z`) of the multicodec
//! `ed25519-pub` prefix (0xed 0x01) and the 32-byte public key, as `did:key` does, so
//! the DID alone is enough to verify a signature.

use ed25519_dalek::VerifyingKey;
use std::fmt;
use std::str::FromStr;

const PREFIX: &str = "did:icn:z";
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did {
    text: String,
    key: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DidError {
    #[error("a DID starts with `did:icn:z`, got `{0}`")]
    Prefix(String),
    #[error("the DID's key part is not base58btc")]
    Encoding,
    #[error("the DID does not hold an ed25519 public key")]
    KeyType,
    #[error("the DID's key is not a valid ed25519 public key")]
    Key,
    #[error("the DID's key is a small-order point, for which signatures prove nothing")]
    WeakKey,
    #[error("the DID's key is not canonically encoded")]
    NonCanonicalKey,
}

impl Did {
    pub fn from_public_key(key: &VerifyingKey) -> Self {
        Self::from_key_bytes(key.to_bytes())
    }

    fn from_key_bytes(key: [u8; 32]) -> Self {
        let mut raw = Vec::with_capacity(34);
        raw.extend_from_slice(&ED25519_MULTICODEC);
        raw.extend_from_slice(&key);
        Self { text: format!("{PREFIX}{}", bs58::encode(raw).into_string()), key }
    }

    /// The Ed25519 key this DID names.
    pub fn public_key(&self) -> VerifyingKey {
        VerifyingKey::from_bytes(&self.key).expect("checked when the DID was parsed")
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The 32-byte public key this DID names.
    pub fn key_bytes(&self) -> [u8; 32] {
        self.key
    }
}

impl Did {
    /// Whether `s` is written as a DID of this method (prefix, encoding, key type and
    /// length), without checking that the key is a valid curve point: cheap enough for
    /// every field of every record, where a full parse decompresses the point.
    pub fn check_syntax(s: &str) -> Result<(), DidError> {
        let encoded = s.strip_prefix(PREFIX).ok_or_else(|| DidError::Prefix(shorten(s)))?;
        let mut raw = [0u8; 40];
        let n = bs58::decode(encoded).onto(&mut raw[..]).map_err(|_| DidError::Encoding)?;
        match raw[..n].strip_prefix(&ED25519_MULTICODEC[..]) {
            Some(key) if key.len() == 32 => Ok(()),
            _ => Err(DidError::KeyType),
        }
    }
}

impl FromStr for Did {
    type Err = DidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s.strip_prefix(PREFIX).ok_or_else(|| DidError::Prefix(shorten(s)))?;
        let raw = bs58::decode(encoded).into_vec().map_err(|_| DidError::Encoding)?;
        let key: [u8; 32] =
            raw.strip_prefix(&ED25519_MULTICODEC[..]).and_then(|k| k.try_into().ok()).ok_or(DidError::KeyType)?;
        if checked_keys::get(&key).is_none() {
            check_key(&key)?;
            let verifying = ed25519_zebra::VerificationKey::try_from(key).map_err(|_| DidError::Key)?;
            checked_keys::insert(key, verifying);
        }
        // The text is the key's one encoding: base58 has no padding and the bytes start
        // with the multicodec's 0xed, so no leading '1' can stand for a zero byte.
        Ok(Self { text: s.to_string(), key })
    }
}

/// Keys that passed [`check_key`] lately, each with its point decompressed for
/// verification. Every message names its sender and every record its author, and both
/// checking a key and verifying under it decompress a curve point (most of netd's own CPU
/// per message before this cache; then a sixth of every signature check); a node meets
/// few distinct keys, so a small map saves nearly every decompression. Bounded by
/// [`checked_keys::CAPACITY`], emptied when full: a flood of fresh keys costs only the
/// decompressions it would have cost anyway.
mod checked_keys {
    use ed25519_zebra::VerificationKey;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    /// Distinct keys remembered: more than the peers and members one node deals with at
    /// once, and under 1 MiB.
    pub const CAPACITY: usize = 4096;

    fn map() -> &'static Mutex<HashMap<[u8; 32], VerificationKey>> {
        static MAP: OnceLock<Mutex<HashMap<[u8; 32], VerificationKey>>> = OnceLock::new();
        MAP.get_or_init(|| Mutex::new(HashMap::with_capacity(CAPACITY)))
    }

    #[cfg(test)]
    pub fn len() -> usize {
        map().lock().expect("checked keys lock").len()
    }

    pub fn get(key: &[u8; 32]) -> Option<VerificationKey> {
        map().lock().expect("checked keys lock").get(key).copied()
    }

    pub fn insert(key: [u8; 32], verifying: VerificationKey) {
        let mut map = map().lock().expect("checked keys lock");
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, verifying);
    }
}

impl Did {
    /// The key, decompressed for verification: from [`checked_keys`] when it is there (it
    /// was checked when this DID was parsed), else decompressed now.
    pub(crate) fn verification_key(&self) -> Option<ed25519_zebra::VerificationKey> {
        checked_keys::get(&self.key).or_else(|| ed25519_zebra::VerificationKey::try_from(self.key).ok())
    }
}

/// The key rules of signing format v1 (see `purpose.rs`): a curve point, not of small
/// order (anyone can make "signatures" that verify under such a key), and encoded
/// canonically (one key, one DID).
fn check_key(key: &[u8; 32]) -> Result<VerifyingKey, DidError> {
    let point = VerifyingKey::from_bytes(key).map_err(|_| DidError::Key)?;
    if point.is_weak() {
        return Err(DidError::WeakKey);
    }
    if point.to_edwards().compress().to_bytes() != *key {
        return Err(DidError::NonCanonicalKey);
    }
    Ok(point)
}

/// Keeps error messages readable when someone pastes a whole document as a DID.
fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeIdentity;

    #[test]
    fn a_did_round_trips_through_its_text_and_names_the_signing_key() {
        let id = NodeIdentity::generate();
        let parsed: Did = id.did().as_str().parse().unwrap();
        assert_eq!(&parsed, id.did());
        let sig = id.sign_for(crate::Purpose::Login, b"hello").to_bytes();
        assert!(parsed.verify_for(crate::Purpose::Login, b"hello", &sig));
        assert!(!parsed.verify_for(crate::Purpose::Login, b"hellO", &sig));
    }

    fn did_of(key: [u8; 32]) -> String {
        let mut raw = ED25519_MULTICODEC.to_vec();
        raw.extend_from_slice(&key);
        format!("{PREFIX}{}", bs58::encode(raw).into_string())
    }

    /// 2^255 - 19 + `k`, little-endian: a non-canonical encoding of the y coordinate `k`.
    fn past_the_field(k: u8) -> [u8; 32] {
        let mut bytes = [0xff; 32];
        bytes[0] = 0xed + k;
        bytes[31] = 0x7f;
        bytes
    }

    #[test]
    fn small_order_and_non_canonical_keys_are_refused_when_a_did_is_parsed() {
        // The identity point (y = 1) and the point of order 2 (y = -1): anyone can make
        // "signatures" under these keys that a cofactored check accepts.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(did_of(identity).parse::<Did>(), Err(DidError::WeakKey));
        // Why: under the identity key, R = identity and s = 0 pass the cofactored equation
        // for every message. ZIP-215 alone accepts this forgery; the DID rule stops it.
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let key = ed25519_zebra::VerificationKey::try_from(identity).unwrap();
        assert!(key.verify(&ed25519_zebra::Signature::from(forged), b"pay the attacker").is_ok());
        let mut minus_one = past_the_field(0);
        minus_one[0] -= 1;
        assert_eq!(did_of(minus_one).parse::<Did>(), Err(DidError::WeakKey));
        // y = p + k for small k: the same points as y = k, written another way. Each one
        // that decodes at all is refused, as weak or as non-canonical.
        let mut non_canonical = 0;
        for k in 0..19 {
            let key = past_the_field(k);
            if VerifyingKey::from_bytes(&key).is_ok() {
                let refused = did_of(key).parse::<Did>();
                assert!(
                    matches!(refused, Err(DidError::WeakKey | DidError::NonCanonicalKey)),
                    "y = p + {k}: {refused:?}"
                );
                non_canonical += usize::from(refused == Err(DidError::NonCanonicalKey));
            }
        }
        assert!(non_canonical > 0, "some y = p + k is a valid point of large order");
        // An honest key still parses.
        assert!(NodeIdentity::generate().did().as_str().parse::<Did>().is_ok());
        // A refused key is never remembered as checked: refused again, every time.
        assert_eq!(did_of(identity).parse::<Did>(), Err(DidError::WeakKey));
    }

    #[test]
    fn the_set_of_checked_keys_stays_within_its_bound_and_a_parse_keeps_the_text() {
        let first = NodeIdentity::generate().did().clone();
        let parsed: Did = first.as_str().parse().unwrap();
        assert_eq!((parsed.as_str(), parsed.key_bytes()), (first.as_str(), first.key_bytes()));
        for _ in 0..=checked_keys::CAPACITY {
            let did = NodeIdentity::generate().did().to_string();
            assert_eq!(did.parse::<Did>().unwrap().as_str(), did);
        }
        let held = super::checked_keys::len();
        assert!(held <= checked_keys::CAPACITY, "{held} keys held");
    }

    #[test]
    fn a_remembered_key_verifies_exactly_what_a_fresh_one_does_and_only_under_its_own_did() {
        use crate::Purpose;
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        // Parsed, so remembered with its decompressed point.
        let alice_did: Did = alice.did().as_str().parse().unwrap();
        let bob_did: Did = bob.did().as_str().parse().unwrap();
        assert!(checked_keys::get(&alice_did.key).is_some() && checked_keys::get(&bob_did.key).is_some());
        let signature = alice.sign_for(Purpose::GossipEntry, b"entry").to_bytes();
        let fresh = ed25519_zebra::VerificationKey::try_from(alice_did.key).unwrap();
        assert_eq!(alice_did.verification_key(), Some(fresh));
        assert!(alice_did.verify_for(Purpose::GossipEntry, b"entry", &signature));
        // The same signature under another remembered key, another message, another
        // purpose: refused each time.
        assert!(!bob_did.verify_for(Purpose::GossipEntry, b"entry", &signature));
        assert!(!alice_did.verify_for(Purpose::GossipEntry, b"entrY", &signature));
        assert!(!alice_did.verify_for(Purpose::Transfer, b"entry", &signature));
    }

    #[test]
    fn malformed_dids_are_refused_with_the_rule_they_break() {
        assert!(matches!("did:key:z6Mk".parse::<Did>(), Err(DidError::Prefix(_))));
        assert_eq!("did:icn:z0OIl".parse::<Did>(), Err(DidError::Encoding));
        let short = format!("did:icn:z{}", bs58::encode([0xed, 0x01, 1, 2]).into_string());
        assert_eq!(short.parse::<Did>(), Err(DidError::KeyType));
        let wrong_codec = format!("did:icn:z{}", bs58::encode([0xec; 34]).into_string());
        assert_eq!(wrong_codec.parse::<Did>(), Err(DidError::KeyType));
    }
}
