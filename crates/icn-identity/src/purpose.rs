//! What a signature is for. Every record kind that members or nodes sign names its
//! [`Purpose`], and signing and verifying go through [`NodeIdentity::sign_for`] and
//! [`Did::verify_for`] only, so a signature made for one kind of record can be told from
//! one made for another.
//!
//! Signing format today (v0): the signature covers the record's 32-byte digest alone,
//! as every released client (icnctl, the JavaScript SDK, nodes) signs it. Putting
//! [`Purpose::context`] into the signed bytes changes what every client signs at once, so
//! it is one coordinated step of its own (the trust-model issue, #11); because every call
//! already passes its purpose, that step changes these two functions and nothing else.

use crate::{Did, NodeIdentity};
use ed25519_dalek::Signature;

/// The kinds of signed record, each with a distinct, versioned context string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A member's payment (`icn.ledger.v1.Transfer`), signed by its payer.
    Transfer,
    /// The founding record of a cooperative, signed by its founder.
    CoopFounding,
    /// An admin's admission of a member or admin.
    MemberAdmission,
    /// An admin's definition of a currency.
    Currency,
    /// An admin's credit-limit change.
    CreditLimit,
    /// A gossip entry, signed by its author.
    GossipEntry,
    /// A gossip topic's definition and ACL, signed by its creator.
    GossipTopic,
}

impl Purpose {
    /// The context string that names this purpose (and its version) in signed bytes.
    pub const fn context(self) -> &'static str {
        match self {
            Purpose::Transfer => "icn/ledger/transfer/v1",
            Purpose::CoopFounding => "icn/ledger/coop/v1",
            Purpose::MemberAdmission => "icn/ledger/admission/v1",
            Purpose::Currency => "icn/ledger/currency/v1",
            Purpose::CreditLimit => "icn/ledger/credit-limit/v1",
            Purpose::GossipEntry => "icn/gossip/entry/v1",
            Purpose::GossipTopic => "icn/gossip/topic/v1",
        }
    }
}

impl NodeIdentity {
    /// Signs a record's digest for `purpose` (format v0: see the module documentation).
    pub fn sign_for(&self, _purpose: Purpose, digest: &[u8; 32]) -> Signature {
        self.sign(digest)
    }
}

impl Did {
    /// Whether `signature` is this DID's over a record's digest for `purpose`; a signature
    /// that is not 64 bytes is simply not valid.
    pub fn verify_for(&self, _purpose: Purpose, digest: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else { return false };
        self.verify(digest, &Signature::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_distinct_and_versioned() {
        let all = [
            Purpose::Transfer,
            Purpose::CoopFounding,
            Purpose::MemberAdmission,
            Purpose::Currency,
            Purpose::CreditLimit,
            Purpose::GossipEntry,
            Purpose::GossipTopic,
        ];
        let contexts: std::collections::HashSet<_> = all.iter().map(|p| p.context()).collect();
        assert_eq!(contexts.len(), all.len());
        assert!(all.iter().all(|p| p.context().starts_with("icn/") && p.context().ends_with("/v1")));
    }

    #[test]
    fn a_signature_verifies_for_its_signer_only_and_only_whole() {
        let (signer, other) = (NodeIdentity::generate(), NodeIdentity::generate());
        let digest = [7u8; 32];
        let signature = signer.sign_for(Purpose::Transfer, &digest).to_bytes();
        assert!(signer.did().verify_for(Purpose::Transfer, &digest, &signature));
        assert!(!other.did().verify_for(Purpose::Transfer, &digest, &signature));
        assert!(!signer.did().verify_for(Purpose::Transfer, &[8u8; 32], &signature));
        assert!(!signer.did().verify_for(Purpose::Transfer, &digest, &signature[..63]));
    }
}
