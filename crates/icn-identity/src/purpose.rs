//! What a signature is for. Every record kind that members or nodes sign names its
//! [`Purpose`], and signing and verifying go through [`NodeIdentity::sign_for`] and
//! [`Did::verify_for`] only: there is no way to sign bare bytes.
//!
//! Signing format v1 (`docs/SECURITY.md`, "Signed records"): the signature covers
//! [`signed_bytes`], the purpose's versioned context, a zero byte, then the message (a
//! record's 32-byte digest, or a login challenge). A signature made for one purpose is
//! therefore never valid for another, whatever the message: a gateway that hands a client
//! a transfer's digest as a login challenge gets a login signature, which no ledger takes.
//!
//! One verification rule for every node, single or batched: ZIP-215 (the cofactored
//! equation, as `ed25519-zebra` implements it), with small-order and non-canonically
//! encoded public keys refused when a DID is parsed. Batch and single verification then
//! accept exactly the same signatures, so whether a record is valid never depends on how
//! a node happened to check it.

use crate::{Did, NodeIdentity};
use ed25519_dalek::{Signature, Signer};

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
    /// An admin's choice of the nodes whose votes certify transfers, and their quorum.
    Validators,
    /// A validator node's vote for the one transfer it saw at a payer's sequence number.
    TransferVote,
    /// A gossip entry, signed by its author.
    GossipEntry,
    /// A gossip topic's definition and ACL, signed by its creator.
    GossipTopic,
    /// A member's answer to a gateway's login challenge ([`crate::login`]).
    Login,
}

impl Purpose {
    /// Every purpose, for tests and documentation.
    pub const ALL: [Purpose; 10] = [
        Purpose::Transfer,
        Purpose::CoopFounding,
        Purpose::MemberAdmission,
        Purpose::Currency,
        Purpose::CreditLimit,
        Purpose::Validators,
        Purpose::TransferVote,
        Purpose::GossipEntry,
        Purpose::GossipTopic,
        Purpose::Login,
    ];

    /// The context string that names this purpose (and its version) in signed bytes.
    pub const fn context(self) -> &'static str {
        match self {
            Purpose::Transfer => "icn/ledger/transfer/v1",
            Purpose::CoopFounding => "icn/ledger/coop/v1",
            Purpose::MemberAdmission => "icn/ledger/admission/v1",
            Purpose::Currency => "icn/ledger/currency/v1",
            Purpose::CreditLimit => "icn/ledger/credit-limit/v1",
            Purpose::Validators => "icn/ledger/validators/v1",
            Purpose::TransferVote => "icn/ledger/vote/v1",
            Purpose::GossipEntry => "icn/gossip/entry/v1",
            Purpose::GossipTopic => "icn/gossip/topic/v1",
            Purpose::Login => "icn/gateway/login/v1",
        }
    }
}

/// The bytes a signature for `purpose` over `message` covers: context, `0x00`, message.
/// No context contains a zero byte, so no two (purpose, message) pairs share these bytes.
pub fn signed_bytes(purpose: Purpose, message: &[u8]) -> Vec<u8> {
    let context = purpose.context().as_bytes();
    let mut bytes = Vec::with_capacity(context.len() + 1 + message.len());
    bytes.extend_from_slice(context);
    bytes.push(0);
    bytes.extend_from_slice(message);
    bytes
}

impl NodeIdentity {
    /// Signs `message` (a record's digest, or a login challenge) for `purpose`.
    pub fn sign_for(&self, purpose: Purpose, message: &[u8]) -> Signature {
        self.signing.sign(&signed_bytes(purpose, message))
    }
}

impl Did {
    /// Whether `signature` is this DID's over `message` for `purpose`, under ZIP-215; a
    /// signature that is not 64 bytes is simply not valid.
    pub fn verify_for(&self, purpose: Purpose, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else { return false };
        let Some(key) = self.verification_key() else { return false };
        key.verify(&ed25519_zebra::Signature::from(bytes), &signed_bytes(purpose, message)).is_ok()
    }
}

/// Whether every `(signer, message, signature)` is valid for `purpose`, in one ZIP-215
/// batch check: it accepts exactly what [`Did::verify_for`] accepts one by one (the point
/// of ZIP-215), at several times the rate. False when any is invalid; the caller then
/// checks them one by one to find which.
pub fn verify_batch_for(purpose: Purpose, items: &[(&Did, &[u8], &[u8])]) -> bool {
    let messages: Vec<Vec<u8>> = items.iter().map(|(_, message, _)| signed_bytes(purpose, message)).collect();
    let mut verifier = ed25519_zebra::batch::Verifier::new();
    for ((did, _, signature), message) in items.iter().zip(&messages) {
        let Ok(bytes) = <[u8; 64]>::try_from(*signature) else { return false };
        let key = ed25519_zebra::VerificationKeyBytes::from(did.key_bytes());
        verifier.queue((key, ed25519_zebra::Signature::from(bytes), message));
    }
    verifier.verify(rand::thread_rng()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_distinct_and_versioned() {
        let all = Purpose::ALL;
        let contexts: std::collections::HashSet<_> = all.iter().map(|p| p.context()).collect();
        assert_eq!(contexts.len(), all.len());
        assert!(all.iter().all(|p| p.context().starts_with("icn/") && p.context().ends_with("/v1")));
    }

    #[test]
    fn a_batch_accepts_what_single_checks_accept_and_nothing_else() {
        let signers: Vec<NodeIdentity> = (0..40).map(|_| NodeIdentity::generate()).collect();
        let dids: Vec<Did> = signers.iter().map(|s| s.did().clone()).collect();
        let messages: Vec<[u8; 32]> = (0..40u8).map(|i| [i; 32]).collect();
        let mut signatures: Vec<Vec<u8>> =
            signers.iter().zip(&messages).map(|(s, m)| s.sign_for(Purpose::Transfer, m).to_bytes().to_vec()).collect();
        fn zip<'a>(
            dids: &'a [Did],
            messages: &'a [[u8; 32]],
            signatures: &'a [Vec<u8>],
        ) -> Vec<(&'a Did, &'a [u8], &'a [u8])> {
            dids.iter().zip(messages).zip(signatures).map(|((d, m), s)| (d, &m[..], s.as_slice())).collect()
        }
        let items = |signatures: &[Vec<u8>]| verify_batch_for(Purpose::Transfer, &zip(&dids, &messages, signatures));
        assert!(items(&signatures));
        assert!(!verify_batch_for(Purpose::Login, &zip(&dids, &messages, &signatures)), "another purpose");
        signatures[17][3] ^= 1;
        assert!(!items(&signatures), "one bad signature fails the batch");
        signatures[17].pop();
        assert!(!items(&signatures), "a short signature");
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

    #[test]
    fn a_signature_for_one_purpose_is_valid_for_no_other() {
        let signer = NodeIdentity::generate();
        let digest = [7u8; 32];
        for signed_as in Purpose::ALL {
            let signature = signer.sign_for(signed_as, &digest).to_bytes();
            for checked_as in Purpose::ALL {
                assert_eq!(
                    signer.did().verify_for(checked_as, &digest, &signature),
                    signed_as == checked_as,
                    "signed as {signed_as:?}, checked as {checked_as:?}"
                );
            }
        }
        // Nor is a plain Ed25519 signature over the message alone (format v0).
        let bare = ed25519_dalek::Signer::sign(&signer.signing, &digest).to_bytes();
        assert!(Purpose::ALL.iter().all(|p| !signer.did().verify_for(*p, &digest, &bare)));
    }
}
