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

    /// Verifies `signature` over `message` with the key this DID names.
    pub fn verify(&self, message: &[u8], signature: &ed25519_dalek::Signature) -> bool {
        self.public_key().verify_strict(message, signature).is_ok()
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
        VerifyingKey::from_bytes(&key).map_err(|_| DidError::Key)?;
        Ok(Self::from_key_bytes(key))
    }
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
        let sig = id.sign(b"hello");
        assert!(parsed.verify(b"hello", &sig));
        assert!(!parsed.verify(b"hellO", &sig));
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
