//! Records signed by members: transfers (by their payer) and the admin entries of a
//! cooperative (by an admin; the cooperative itself by its founder).
//!
//! Every one is signed with Ed25519 over the SHA-256 digest of its protobuf encoding
//! with `signature` empty, for the purpose its kind names ([`Signed::PURPOSE`]). That
//! digest is also the record's hash: its name in `prev_hash`, `deps`, GetTransfer and the
//! tie-break between admin entries.

use crate::Hash;
use icn_identity::{Did, NodeIdentity, Purpose};
use icn_proto::ledger::v1::{Coop, CreditLimit, Currency, MemberAdmission, Transfer, TransferVote, Validators};
use prost::Message;
use sha2::{Digest, Sha256};

/// The record format this release writes and reads (each record's `format` field); a
/// higher one is a later release's.
pub const FORMAT: u32 = 0;

/// A record that carries its signer's DID and signature.
pub trait Signed: Message + Clone + Default {
    /// What a signature over this kind of record is for.
    const PURPOSE: Purpose;
    fn format(&self) -> u32;
    fn signer(&self) -> &str;
    fn set_signer(&mut self, did: String);
    fn signature(&self) -> &[u8];
    fn set_signature(&mut self, signature: Vec<u8>);
}

macro_rules! signed_by {
    ($ty:ty, $signer:ident, $purpose:expr) => {
        impl Signed for $ty {
            const PURPOSE: Purpose = $purpose;
            fn format(&self) -> u32 {
                self.format
            }
            fn signer(&self) -> &str {
                &self.$signer
            }
            fn set_signer(&mut self, did: String) {
                self.$signer = did;
            }
            fn signature(&self) -> &[u8] {
                &self.signature
            }
            fn set_signature(&mut self, signature: Vec<u8>) {
                self.signature = signature;
            }
        }
    };
}

signed_by!(Transfer, payer, Purpose::Transfer);
signed_by!(Coop, founder, Purpose::CoopFounding);
signed_by!(MemberAdmission, signer, Purpose::MemberAdmission);
signed_by!(Currency, signer, Purpose::Currency);
signed_by!(CreditLimit, signer, Purpose::CreditLimit);
signed_by!(Validators, signer, Purpose::Validators);
signed_by!(TransferVote, validator, Purpose::TransferVote);

/// The record's hash: SHA-256 of its encoding without the signature.
pub fn hash<T: Signed>(record: &T) -> Hash {
    let mut unsigned = record.clone();
    unsigned.set_signature(Vec::new());
    Sha256::digest(unsigned.encode_to_vec()).into()
}

/// Signs `record` as `signer`, setting its signer field.
pub fn sign<T: Signed>(signer: &NodeIdentity, mut record: T) -> T {
    record.set_signer(signer.did().to_string());
    record.set_signature(Vec::new());
    let signature = signer.sign_for(T::PURPOSE, &hash(&record)).to_bytes().to_vec();
    record.set_signature(signature);
    record
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signer `{0}` is not a DID")]
    BadSigner(String),
    #[error("the signature is not {0}'s over this record")]
    BadSignature(String),
    /// A later release's record: not invalid, but this node cannot hash it as its
    /// signer did (fields it does not know are dropped when it decodes).
    #[error("record format {0} is newer than this node's ({FORMAT}): it is taken once this node is upgraded")]
    UnknownFormat(u32),
}

/// What a record alone decides before its signature: a format this release reads, a
/// signer that is a DID, and the hash the signature must cover.
fn prepare<T: Signed>(record: &T) -> Result<(Did, Hash), SignatureError> {
    if record.format() > FORMAT {
        return Err(SignatureError::UnknownFormat(record.format()));
    }
    let signer: Did = record.signer().parse().map_err(|_| SignatureError::BadSigner(record.signer().to_string()))?;
    Ok((signer, hash(record)))
}

/// Checks the signature against the record's own signer; returns the record's hash.
pub fn verify<T: Signed>(record: &T) -> Result<Hash, SignatureError> {
    let (signer, hash) = prepare(record)?;
    if !signer.verify_for(T::PURPOSE, &hash, record.signature()) {
        return Err(SignatureError::BadSignature(record.signer().to_string()));
    }
    Ok(hash)
}

/// [`verify`] for many records on this thread: one batch check of their signatures
/// (ZIP-215 batches accept exactly what single checks accept), and one by one only when
/// the batch fails, to find the bad ones.
fn verify_part<T: Signed>(records: &[T]) -> Vec<Result<Hash, SignatureError>> {
    let prepared: Vec<Result<(Did, Hash), SignatureError>> = records.iter().map(prepare).collect();
    let items: Vec<(&Did, &[u8], &[u8])> = prepared
        .iter()
        .zip(records)
        .filter_map(|(p, r)| p.as_ref().ok().map(|(signer, hash)| (signer, &hash[..], r.signature())))
        .collect();
    if icn_identity::verify_batch_for(T::PURPOSE, &items) {
        return prepared.into_iter().map(|p| p.map(|(_, hash)| hash)).collect();
    }
    records.iter().map(verify).collect()
}

/// Verifies many records on every core, in batches; the results are in input order.
pub fn verify_all<T: Signed + Sync>(records: &[T]) -> Vec<Result<Hash, SignatureError>> {
    // std re-reads cgroup limits on every call (~30 µs): once per process is enough.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = *THREADS.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // Below this, starting threads costs more than verifying on one.
    const PER_THREAD_MIN: usize = 16;
    if threads == 1 || records.len() < 2 * PER_THREAD_MIN {
        return verify_part(records);
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records.chunks(chunk).map(|part| scope.spawn(move || verify_part(part))).collect();
        parts.into_iter().flat_map(|p| p.join().expect("verification does not panic")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_every_field_and_names_its_signer() {
        let admin = NodeIdentity::generate();
        let c = sign(&admin, Currency { coop_id: "c".into(), symbol: "hours".into(), ..Default::default() });
        assert_eq!(c.signer, admin.did().as_str());
        assert_eq!(verify(&c), Ok(hash(&c)));
        let mut changed = c.clone();
        changed.decimals = 2;
        assert!(matches!(verify(&changed), Err(SignatureError::BadSignature(_))));
        let mut impostor = c.clone();
        impostor.signer = NodeIdentity::generate().did().to_string();
        assert!(matches!(verify(&impostor), Err(SignatureError::BadSignature(_))));
        impostor.signer = "not a did".into();
        assert!(matches!(verify(&impostor), Err(SignatureError::BadSigner(_))));
        let many: Vec<_> = (0..100)
            .map(|i| {
                let mut t = sign(&admin, Transfer { amount: i, ..Default::default() });
                if i % 7 == 0 {
                    t.amount += 1;
                }
                t
            })
            .collect();
        let results = verify_all(&many);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_ok(), i % 7 != 0, "record {i}");
        }
    }
}
