//! The ledger's past beside its journal: what a node reads back instead of holding
//! every transfer in memory (`engine::past`, `state`'s read indexes). One column family,
//! `past`, keyed by kind, then the cooperative's digest (`coop`: 8 bytes of SHA-256 of
//! its id), then (`acct`) 16 bytes of SHA-256 of `currency \0 member` where a key names
//! an account. Digests, not names: these rows are written for every transfer, and the
//! ids and DIDs they replace were two thirds of their bytes (each batch is synced).
//!
//! - `T coop hash` → position (u64) + received_at_ms (i64): every stored transfer,
//!   written in the batch of its journal entry and never changed;
//! - `H coop acct position` → hash: an account's transfers in and out in journal order
//!   (`GetHistory`), written with them;
//! - `I coop acct id` → hash: the first transfer of the payer to use an idempotency id;
//! - `A coop hash` → applied_at_ms (i64): a retired transfer, applied;
//! - `C coop dep` → hash + seq (u64): the retired transfer that claimed `dep`;
//! - `L coop acct seq` → hash + balance (i128) + created_at_ms (i64): a chain link,
//!   the payer's head included;
//! - `U coop acct created_at_ms hash` → nothing: applied income no transfer of the
//!   member claimed yet (`GetBalance`), in time order;
//! - `S coop currency` → transfers (u64) + volume (u64): what applied, in all;
//! - `W coop hash` → the cooperative's id: a transfer the engine holds (not applied);
//! - `E coop position` → the cooperative's id: where an admin entry or a vote is;
//! - `F coop currency \0 payer \0 seq` → detected_at_ms: a fork found.
//!
//! With the `accounts` rows, they are what a start-up loads instead of replaying the
//! journal (`state::load`). `A`, `C`, `L`, `U`, `S` and `W` say what applied, which a
//! recompute may undo: its retirement compares what they must now be with what the store
//! holds and writes the difference, in one batch. Numbers are big-endian (times with the
//! sign bit flipped), so keys sort by position, sequence and time.

use super::{Store, StoreError};
use crate::engine::{Link, Past};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::Transfer;
use icn_proto::ledger::wire::v1::ledger_entry::Body;
use icn_storage::{Direction, IteratorMode, StorageError};
use std::sync::Arc;

mod write;
pub(in crate::store) use write::write_group;

pub(crate) const PAST: &str = "past";

/// Key kinds.
const STORED: u8 = b'T';
const HISTORY: u8 = b'H';
const IDEMPOTENCY: u8 = b'I';
const APPLIED: u8 = b'A';
const CLAIM: u8 = b'C';
const LINK: u8 = b'L';
const UNCLAIMED: u8 = b'U';
const TOTALS: u8 = b'S';
const HELD: u8 = b'W';
const ENTRY: u8 = b'E';
const FORK: u8 = b'F';
/// The kinds a recompute's retirement drops and writes anew.
const UNDONE_BY_RECOMPUTE: [u8; 6] = [APPLIED, CLAIM, LINK, UNCLAIMED, TOTALS, HELD];

/// A time as a key part: big-endian with the sign bit flipped, so it sorts as a number.
fn time_key(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_of_key(k: &[u8]) -> Option<i64> {
    Some((be_u64(k)? ^ (1 << 63)) as i64)
}

/// A key: kind, the cooperative's digest, then the parts as they are.
fn key(kind: u8, coop: &str, parts: &[&[u8]]) -> Vec<u8> {
    key_of(kind, &coop_digest(coop), parts)
}

/// [`key`] with the cooperative's digest computed already.
fn key_of(kind: u8, coop: &[u8; 8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(kind);
    k.extend_from_slice(coop);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// A fork found: ((currency, payer, seq), detected_at_ms).
pub type ForkFound = ((String, String, u64), i64);

fn coop_digest(coop: &str) -> [u8; 8] {
    digest(coop.as_bytes())[..8].try_into().expect("8 of 32 bytes")
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// An account's 16 bytes in keys.
fn acct(currency: &str, member: &str) -> [u8; 16] {
    digest(&[currency.as_bytes(), b"\0", member.as_bytes()].concat())[..16].try_into().expect("16 of 32 bytes")
}

/// The range of keys of one kind of one cooperative.
fn range(kind: u8, coop: &str) -> (Vec<u8>, Vec<u8>) {
    let from = key(kind, coop, &[]);
    (from.clone(), successor(from))
}

/// The first key after every key that starts with `prefix`.
fn successor(mut prefix: Vec<u8>) -> Vec<u8> {
    while let Some(last) = prefix.pop() {
        if last < u8::MAX {
            prefix.push(last + 1);
            return prefix;
        }
    }
    vec![u8::MAX; 64]
}

fn encode_link(link: &Link) -> Vec<u8> {
    [&link.hash[..], &link.balance.to_be_bytes(), &link.created_at_ms.to_be_bytes()].concat()
}

fn decode_link(v: &[u8]) -> Option<Link> {
    Some(Link {
        hash: v.get(..32)?.try_into().ok()?,
        balance: i128::from_be_bytes(v.get(32..48)?.try_into().ok()?),
        created_at_ms: i64::from_be_bytes(v.get(48..56)?.try_into().ok()?),
    })
}

fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn be_i64(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// One cooperative's past, read from the store: the engine's [`Past`] and the state's
/// read indexes. A read that fails is logged and remembered by the store
/// ([`Store::take_read_failure`]): the committer then writes nothing of the group, as
/// when a write fails, since the engine may have judged without it.
#[derive(Clone)]
pub struct CoopPast {
    store: Store,
    coop: String,
}

impl CoopPast {
    pub fn new(store: Store, coop: &str) -> Self {
        Self { store, coop: coop.to_string() }
    }

    /// Remembers a failed read for the committer ([`Store::take_read_failure`]).
    pub fn failed(&self, e: &StoreError) {
        self.store.read_failed(e);
    }

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.past_reads.inc();
        let cf = self.store.storage.cf(PAST)?;
        Ok(self.store.storage.db().get_cf(cf, k).map_err(StorageError::from)?)
    }

    /// [`CoopPast::get`] for the engine, whose lookups cannot fail: a failure is
    /// remembered for the committer and reads as nothing.
    fn get_or_fail(&self, k: &[u8]) -> Option<Vec<u8>> {
        self.get(k).unwrap_or_else(|e| {
            self.store.read_failed(&e);
            None
        })
    }

    /// A stored transfer's journal position and arrival time.
    pub fn stored(&self, hash: &Hash) -> Result<Option<(u64, i64)>, StoreError> {
        Ok(self.get(&key(STORED, &self.coop, &[hash]))?.and_then(|v| Some((be_u64(&v)?, be_i64(v.get(8..)?)?))))
    }

    /// When this node first applied a retired transfer.
    pub fn applied_at(&self, hash: &Hash) -> Result<Option<i64>, StoreError> {
        Ok(self.get(&key(APPLIED, &self.coop, &[hash]))?.and_then(|v| be_i64(&v)))
    }

    pub fn idempotency(&self, currency: &str, payer: &str, id: &str) -> Result<Option<Hash>, StoreError> {
        let k = key(IDEMPOTENCY, &self.coop, &[&acct(currency, payer), id.as_bytes()]);
        Ok(self.get(&k)?.and_then(|v| v.as_slice().try_into().ok()))
    }

    /// An account's transfers before `before` (a journal position; 0 for the newest),
    /// newest first, each with its position, to `f` while it answers true.
    pub fn history(
        &self,
        currency: &str,
        member: &str,
        before: u64,
        mut f: impl FnMut(u64, Hash) -> bool,
    ) -> Result<(), StoreError> {
        let prefix = key(HISTORY, &self.coop, &[&acct(currency, member)]);
        let start = [&prefix[..], &(if before == 0 { u64::MAX } else { before - 1 }).to_be_bytes()].concat();
        let cf = self.store.storage.cf(PAST)?;
        let db = self.store.storage.db();
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Reverse)) {
            let (k, v) = item.map_err(StorageError::from)?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (Some(position), Ok(hash)) = (be_u64(&k[prefix.len()..]), <Hash>::try_from(v.as_ref())) else {
                return Err(StoreError::Corrupt { position: 0, reason: "a history row does not decode".into() });
            };
            if !f(position, hash) {
                break;
            }
        }
        Ok(())
    }

    /// Every row under `prefix`, decoded from (the rest of its key, its value); one that
    /// does not decode is an error naming `what`.
    fn rows<T>(
        &self,
        prefix: &[u8],
        what: &str,
        decode: impl Fn(&[u8], &[u8]) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        let cf = self.store.storage.cf(PAST)?;
        let mut out = Vec::new();
        for item in self.store.storage.db().iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item.map_err(StorageError::from)?;
            let Some(rest) = k.strip_prefix(prefix) else { break };
            out.push(decode(rest, &v).ok_or_else(|| corrupt(what))?);
        }
        Ok(out)
    }

    /// The transfers the engine held at the last write: (hash, position, arrival).
    pub fn held(&self) -> Result<Vec<(Hash, u64, i64)>, StoreError> {
        let hashes = self.rows(&key(HELD, &self.coop, &[]), "a held-transfer row", |rest, _| rest.try_into().ok())?;
        let mut out = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let (position, received_at_ms) =
                self.stored(&hash)?.ok_or_else(|| corrupt("a held transfer's stored row"))?;
            out.push((hash, position, received_at_ms));
        }
        Ok(out)
    }

    /// An account's chain link at `seq` (its head, at a load); none for no chain.
    pub fn head(&self, currency: &str, member: &str, seq: u64) -> Result<Option<Link>, StoreError> {
        if seq == 0 {
            return Ok(None);
        }
        let k = key(LINK, &self.coop, &[&acct(currency, member), &seq.to_be_bytes()]);
        match self.get(&k)? {
            Some(v) => Ok(Some(decode_link(&v).ok_or_else(|| corrupt("a link row"))?)),
            None => Err(corrupt("an account's head link (missing)")),
        }
    }

    /// Per currency: (transfers applied, volume).
    pub fn totals(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        self.rows(&key(TOTALS, &self.coop, &[]), "a totals row", |rest, v| {
            Some((String::from_utf8_lossy(rest).into_owned(), be_u64(v)?, be_u64(v.get(8..)?)?))
        })
    }

    /// Journal positions of the cooperative's admin entries and votes, in order.
    pub fn entries(&self) -> Result<Vec<u64>, StoreError> {
        self.rows(&key(ENTRY, &self.coop, &[]), "an entry row", |rest, _| be_u64(rest))
    }

    /// Forks found: ((currency, payer, seq), detected_at_ms).
    pub fn forks(&self) -> Result<Vec<ForkFound>, StoreError> {
        self.rows(&key(FORK, &self.coop, &[]), "a fork row", |rest, v| {
            let mut parts = rest.splitn(3, |b| *b == 0);
            let name = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            Some(((name(parts.next()?), name(parts.next()?), be_u64(parts.next()?)?), be_i64(v)?))
        })
    }

    /// Every retired transfer's hash (a validator's votes owed, at start-up).
    pub fn applied_hashes(&self) -> Result<Vec<Hash>, StoreError> {
        Ok(self.applied_times()?.into_iter().map(|(h, _)| h).collect())
    }

    /// Every retired transfer with when it applied: read in one pass before a
    /// recompute's retirement writes them anew (a lookup each was a quarter of it).
    pub fn applied_times(&self) -> Result<Vec<(Hash, i64)>, StoreError> {
        self.rows(&key(APPLIED, &self.coop, &[]), "an applied row", |rest, v| Some((rest.try_into().ok()?, be_i64(v)?)))
    }

    /// The transfer at a journal position.
    fn journalled(&self, position: u64) -> Option<Transfer> {
        let record = self.store.live().journal_at(position).unwrap_or_else(|e| {
            self.store.read_failed(&e);
            None
        })?;
        match record.entry?.body? {
            Body::Transfer(t) => Some(t),
            _ => None,
        }
    }

    /// Every transfer stored for this cooperative, with its hash, in journal order.
    fn each(&self, f: &mut dyn FnMut(Hash, Arc<Transfer>)) -> Result<(), StoreError> {
        let (from, to) = range(STORED, &self.coop);
        let cf = self.store.storage.cf(PAST)?;
        let mut at: Vec<(u64, Hash)> = Vec::new();
        for item in self.store.storage.db().iterator_cf(cf, IteratorMode::From(&from, Direction::Forward)) {
            let (k, v) = item.map_err(StorageError::from)?;
            if k.as_ref() >= to.as_slice() {
                break;
            }
            let hash: Option<Hash> = k.get(from.len()..).and_then(|h| h.try_into().ok());
            let (Some(hash), Some(position)) = (hash, be_u64(&v)) else {
                return Err(StoreError::Corrupt {
                    position: 0,
                    reason: "a stored-transfer row does not decode".into(),
                });
            };
            at.push((position, hash));
        }
        at.sort_unstable();
        for (position, hash) in at {
            let t = self.journalled(position).ok_or_else(|| StoreError::Corrupt {
                position,
                reason: "a stored transfer is not in the journal".into(),
            })?;
            f(hash, Arc::new(t));
        }
        Ok(())
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt { position: 0, reason: format!("{what} of the ledger's past does not decode") }
}

/// Cooperatives with rows in the past: those with admin entries or held transfers.
pub fn coops(store: &Store) -> Result<Vec<String>, StoreError> {
    let cf = store.storage.cf(PAST)?;
    let mut out: Vec<String> = Vec::new();
    for kind in [ENTRY, HELD] {
        let mut from = vec![kind];
        loop {
            let Some(item) = store.storage.db().iterator_cf(cf, IteratorMode::From(&from, Direction::Forward)).next()
            else {
                break;
            };
            let (k, v) = item.map_err(StorageError::from)?;
            if k.first() != Some(&kind) || k.len() < 9 {
                break;
            }
            // The rows of a kind hold the cooperative's id: the first of each says it.
            out.push(String::from_utf8_lossy(&v).into_owned());
            from = successor(k[..9].to_vec());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl Past for CoopPast {
    fn applied(&self, hash: &Hash) -> Option<Arc<Transfer>> {
        self.get_or_fail(&key(APPLIED, &self.coop, &[hash]))?;
        let (position, _) = self.stored(hash).unwrap_or_else(|e| {
            self.store.read_failed(&e);
            None
        })?;
        self.journalled(position).map(Arc::new)
    }

    fn claim(&self, dep: &Hash) -> Option<(Hash, u64)> {
        let v = self.get_or_fail(&key(CLAIM, &self.coop, &[dep]))?;
        Some((v.get(..32)?.try_into().ok()?, be_u64(v.get(32..)?)?))
    }

    fn link(&self, currency: &str, payer: &str, seq: u64) -> Option<Link> {
        decode_link(&self.get_or_fail(&key(LINK, &self.coop, &[&acct(currency, payer), &seq.to_be_bytes()]))?)
    }

    fn unclaimed(&self, currency: &str, member: &str) -> Vec<(i64, Hash)> {
        let prefix = key(UNCLAIMED, &self.coop, &[&acct(currency, member)]);
        let read = self
            .rows(&prefix, "an unclaimed row", |rest, _| Some((time_of_key(rest)?, rest.get(8..)?.try_into().ok()?)));
        read.unwrap_or_else(|e| {
            self.store.read_failed(&e);
            Vec::new()
        })
    }

    fn is_applied(&self, hash: &Hash) -> bool {
        self.get_or_fail(&key(APPLIED, &self.coop, &[hash])).is_some()
    }

    fn each_stored(&self, f: &mut dyn FnMut(Hash, Arc<Transfer>)) {
        if let Err(e) = self.each(f) {
            self.store.read_failed(&e);
        }
    }
}
