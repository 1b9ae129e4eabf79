//! The machine's Ed25519 verification ceilings, measured before the ledger's loads
//! (while nothing else runs), that every ledger rate is printed beside.

use super::{sign_chains, MEMBERS};
use icn_identity::{signed_bytes, NodeIdentity, Purpose};
use std::time::Instant;

/// Signature checks per measurement of the verification rate.
const VERIFICATIONS: usize = 40_000;
/// Signatures per batch verification, as in a `SubmitTransfers` of 100.
pub(super) const VERIFY_BATCH: usize = 100;

/// The machine's Ed25519 verification rates, per second.
pub(super) struct Ceiling {
    pub(super) cores: usize,
    /// ZIP-215 verification through `Did::verify_for`, what the ledger calls, on one core.
    pub(super) strict_one_core: f64,
    pub(super) strict_all_cores: f64,
    /// ZIP-215 batch verification (`ed25519_zebra::batch`, the rule every node
    /// applies, so a batch accepts exactly what single checks accept) of [`VERIFY_BATCH`]
    /// signatures, on every core.
    pub(super) batch_all_cores: f64,
    /// The ledger's whole check of a transfer (`icn_ledger_records::verify_all`: parse
    /// the payer's DID, hash the transfer, verify), on every core.
    pub(super) ledger_all_cores: f64,
}

pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Verifications per second of `check` over `count` items spread on `threads` threads.
fn rate_on(threads: usize, count: usize, check: impl Fn(usize) + Sync) -> f64 {
    let check = &check;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || (t..count).step_by(threads).for_each(check));
        }
    });
    count as f64 / start.elapsed().as_secs_f64()
}

/// The machine's Ed25519 verification rates over transfers as members sign them: one
/// signature over a 32-byte hash each, from as many keys as a cooperative has members.
pub(super) fn verification_ceiling() -> Ceiling {
    let members: Vec<NodeIdentity> = (0..MEMBERS).map(|_| NodeIdentity::generate()).collect();
    let chains = sign_chains("ceiling", &members, VERIFICATIONS.div_ceil(MEMBERS));
    let signed: Vec<([u8; 32], [u8; 64], &NodeIdentity)> = chains
        .iter()
        .zip(&members)
        .flat_map(|(chain, payer)| {
            chain.iter().map(move |t| {
                (icn_ledger_records::hash(t), t.signature.as_slice().try_into().expect("64 bytes"), payer)
            })
        })
        .collect();
    let cores = cores();
    let strict = |i: usize| {
        let (message, signature, id) = &signed[i];
        assert!(id.did().verify_for(Purpose::Transfer, message, signature), "a valid signature verifies");
    };
    let strict_one_core = rate_on(1, signed.len() / 4, strict);
    let strict_all_cores = rate_on(cores, signed.len(), strict);
    let messages: Vec<Vec<u8>> = signed.iter().map(|(m, _, _)| signed_bytes(Purpose::Transfer, m)).collect();
    let batch = |i: usize| {
        let mut verifier = ed25519_zebra::batch::Verifier::new();
        for j in i * VERIFY_BATCH..(i + 1) * VERIFY_BATCH {
            let (_, signature, id) = &signed[j];
            let key = ed25519_zebra::VerificationKeyBytes::from(id.did().key_bytes());
            verifier.queue((key, ed25519_zebra::Signature::from(*signature), &messages[j]));
        }
        verifier.verify(rand::thread_rng()).expect("a valid batch verifies");
    };
    let batch_all_cores = rate_on(cores, signed.len() / VERIFY_BATCH, batch) * VERIFY_BATCH as f64;
    let transfers = chains.concat();
    let start = Instant::now();
    let checked = icn_ledger_records::verify_all(&transfers);
    let ledger_all_cores = checked.len() as f64 / start.elapsed().as_secs_f64();
    assert!(checked.iter().all(Result::is_ok), "every transfer verifies");
    Ceiling { cores, strict_one_core, strict_all_cores, batch_all_cores, ledger_all_cores }
}
