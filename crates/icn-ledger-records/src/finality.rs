//! Payee finality: a cooperative's admins name validator nodes and a quorum
//! ([`Validators`]); each validator votes ([`TransferVote`]) for the one transfer it
//! applied at a payer's place (currency, payer, sequence number). A transfer with votes
//! from a quorum of the set in force at its time is certified: a rival its payer signs
//! later cannot displace it (the ledger's rule, `services/ledger/src/engine`).
//!
//! Why a quorum of more than half: two certificates for rivals at one place need two
//! quorums, which share at least 2q − n validators; each honest one votes once per
//! place, so rival certificates need that many dishonest validators (FastPay's
//! argument; 2f + 1 of 3f + 1 tolerates f).

use icn_identity::{Did, NodeIdentity};
use icn_proto::ledger::v1::{Transfer, TransferVote, Validators};

/// Most validators one set may name: each vote travels to every node of the cooperative.
pub const MAX_VALIDATORS: usize = 64;

/// Why a validator set cannot count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValidators {
    #[error("at most {MAX_VALIDATORS} validators, not {0}")]
    TooMany(usize),
    #[error("validator `{0}` is not a node DID")]
    BadDid(String),
    #[error("validator `{0}` is named twice")]
    Repeated(String),
    #[error(
        "quorum {quorum} of {validators} validators: it must be more than half of them (and at most all), so that \
         two quorums always share a validator"
    )]
    BadQuorum { quorum: u32, validators: usize },
}

/// Checks a set's own fields: distinct DIDs, at most [`MAX_VALIDATORS`], a quorum of
/// more than half. An empty set with quorum 0 turns certification off.
pub fn check(v: &Validators) -> Result<(), BadValidators> {
    let n = v.validators.len();
    if n > MAX_VALIDATORS {
        return Err(BadValidators::TooMany(n));
    }
    let mut seen = std::collections::HashSet::new();
    for did in &v.validators {
        if did.parse::<Did>().is_err() {
            return Err(BadValidators::BadDid(did.clone()));
        }
        if !seen.insert(did.as_str()) {
            return Err(BadValidators::Repeated(did.clone()));
        }
    }
    let q = v.quorum as usize;
    let off = n == 0 && q == 0;
    if !off && (q > n || 2 * q <= n) {
        return Err(BadValidators::BadQuorum { quorum: v.quorum, validators: n });
    }
    Ok(())
}

/// The vote `validator` signs for `transfer` (whose hash is `hash`).
pub fn vote(validator: &NodeIdentity, transfer: &Transfer, hash: &crate::Hash, created_at_ms: i64) -> TransferVote {
    crate::sign(
        validator,
        TransferVote {
            coop_id: transfer.coop_id.clone(),
            transfer: hash.to_vec(),
            currency: transfer.currency.clone(),
            payer: transfer.payer.clone(),
            payer_seq: transfer.payer_seq,
            created_at_ms,
            format: crate::signed::FORMAT,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize, quorum: u32) -> Validators {
        Validators {
            validators: (0..n).map(|_| NodeIdentity::generate().did().to_string()).collect(),
            quorum,
            ..Default::default()
        }
    }

    #[test]
    fn a_quorum_is_more_than_half_and_at_most_all() {
        assert!(check(&set(0, 0)).is_ok(), "no validators: certification off");
        assert!(check(&set(1, 1)).is_ok());
        assert!(check(&set(3, 2)).is_ok());
        assert!(check(&set(4, 3)).is_ok());
        for (n, q) in [(0, 1), (1, 0), (2, 1), (3, 1), (4, 2), (3, 4)] {
            assert!(matches!(check(&set(n, q)), Err(BadValidators::BadQuorum { .. })), "{q} of {n}");
        }
        let mut twice = set(2, 2);
        twice.validators[1] = twice.validators[0].clone();
        assert!(matches!(check(&twice), Err(BadValidators::Repeated(_))));
        let mut bad = set(1, 1);
        bad.validators[0] = "did:key:nope".into();
        assert!(matches!(check(&bad), Err(BadValidators::BadDid(_))));
        assert!(matches!(check(&set(MAX_VALIDATORS + 1, 64)), Err(BadValidators::TooMany(_))));
    }

    #[test]
    fn a_vote_names_its_transfer_and_place_and_verifies() {
        let (payer, validator) = (NodeIdentity::generate(), NodeIdentity::generate());
        let t = crate::sign(
            &payer,
            Transfer { coop_id: "c".into(), currency: "h".into(), payer_seq: 3, ..Default::default() },
        );
        let h = crate::hash(&t);
        let v = vote(&validator, &t, &h, 5);
        assert_eq!((v.transfer.as_slice(), v.payer_seq, v.payer.as_str()), (&h[..], 3, payer.did().as_str()));
        assert_eq!(crate::verify(&v).map(|_| ()), Ok(()));
        let mut other = v.clone();
        other.payer_seq = 4;
        assert!(crate::verify(&other).is_err(), "the place is signed");
    }
}
