//! Writing the past: the rows one group adds to its batch (`super` has the layout),
//! and, after a recompute, only those that changed.

use super::{acct, coop_digest, encode_link, key_of, range, time_key, PAST, UNDONE_BY_RECOMPUTE};
use super::{APPLIED, CLAIM, ENTRY, FORK, HELD, HISTORY, IDEMPOTENCY, LINK, STORED, TOTALS, UNCLAIMED};
use crate::engine::Retired;
use crate::store::group::GroupWrite;
use crate::store::{Store, StoreError};
use icn_ledger_records::Hash;
use icn_storage::{Direction, IteratorMode, StorageError, WriteBatch};
use std::collections::HashSet;

/// A row to write: its key, and its value or a deletion.
type Op = (Vec<u8>, Option<Vec<u8>>);

/// A group's rows of the past, in the order given: collected rather than put at once
/// so that a recompute's retirement can be compared with the store first ([`changed`]).
#[derive(Default)]
struct Rows<'a> {
    ops: Vec<Op>,
    /// The digests in keys, each computed once per group: a transfer names its payer's
    /// account in three rows and its payee's in two, and SHA-256 per key was a twentieth
    /// of the committer's time.
    coops: foldhash::HashMap<&'a str, [u8; 8]>,
    accounts: foldhash::HashMap<(&'a str, &'a str), [u8; 16]>,
}

impl<'a> Rows<'a> {
    fn put(&mut self, key: Vec<u8>, value: impl Into<Vec<u8>>) {
        self.ops.push((key, Some(value.into())));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    fn key(&mut self, kind: u8, coop: &'a str, parts: &[&[u8]]) -> Vec<u8> {
        key_of(kind, self.coops.entry(coop).or_insert_with(|| coop_digest(coop)), parts)
    }

    fn acct(&mut self, currency: &'a str, member: &'a str) -> [u8; 16] {
        *self.accounts.entry((currency, member)).or_insert_with(|| acct(currency, member))
    }

    fn into_batch(self, cf: &icn_storage::ColumnFamily, batch: &mut WriteBatch) {
        for (key, value) in self.ops {
            match value {
                Some(v) => batch.put_cf(cf, key, v),
                None => batch.delete_cf(cf, key),
            }
        }
    }
}

/// Adds what a group writes to the past to its batch.
pub(in crate::store) fn write_group(
    store: &Store,
    batch: &mut WriteBatch,
    group: &GroupWrite,
) -> Result<(), StoreError> {
    let cf = store.storage.cf(PAST)?;
    let mut rows = Rows::default();
    // Most transfers are stored and applied in one group: held by the engine between
    // two writes only, so no held row is written nor deleted for them.
    let retired_now: HashSet<(&str, &Hash)> =
        group.retired.iter().flat_map(|(c, r, _)| r.applied.iter().map(move |(h, _)| (c.as_str(), h))).collect();
    let stored_now: HashSet<(&str, &Hash)> = group.stored.iter().map(|s| (s.coop.as_str(), &s.hash)).collect();
    for s in &group.stored {
        let value = [s.position.to_be_bytes(), s.received_at_ms.to_be_bytes()].concat();
        let k = rows.key(STORED, &s.coop, &[&s.hash]);
        rows.put(k, value);
        if !retired_now.contains(&(s.coop.as_str(), &s.hash)) {
            let k = rows.key(HELD, &s.coop, &[&s.hash]);
            rows.put(k, s.coop.as_bytes());
        }
        for member in [&s.transfer.payer, &s.transfer.payee] {
            let account = rows.acct(&s.transfer.currency, member);
            let k = rows.key(HISTORY, &s.coop, &[&account, &s.position.to_be_bytes()]);
            rows.put(k, s.hash);
        }
    }
    for (coop, currency, payer, id, hash) in &group.idempotency {
        let account = rows.acct(currency, payer);
        let k = rows.key(IDEMPOTENCY, coop, &[&account, id.as_bytes()]);
        rows.put(k, hash);
    }
    for (coop, position) in &group.entries_at {
        let k = rows.key(ENTRY, coop, &[&position.to_be_bytes()]);
        rows.put(k, coop.as_bytes());
    }
    for (coop, (currency, payer, seq), at) in &group.forks_at {
        let k = rows.key(FORK, coop, &[currency.as_bytes(), b"\0", payer.as_bytes(), b"\0", &seq.to_be_bytes()]);
        rows.put(k, at.to_be_bytes());
    }
    for (coop, retired, applied_at) in &group.retired {
        if retired.wipe {
            // A recompute's: only what changed is written (most of it did not).
            let mut all = Rows::default();
            retired_rows(&mut all, coop, retired, applied_at, &stored_now);
            rows.ops.extend(changed(store, coop, all.ops)?);
        } else {
            retired_rows(&mut rows, coop, retired, applied_at, &stored_now);
        }
    }
    rows.into_batch(cf, batch);
    Ok(())
}

/// What the rows of the kinds a recompute rewrites must become, as puts and deletions
/// against what the store holds: a row that is there with the same value is not written
/// again, a row there that is not wanted is deleted.
fn changed(store: &Store, coop: &str, wanted: Vec<Op>) -> Result<Vec<Op>, StoreError> {
    let mut wanted: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        wanted.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    let mut out = Vec::new();
    let cf = store.storage.cf(PAST)?;
    for kind in UNDONE_BY_RECOMPUTE {
        let (from, to) = range(kind, coop);
        for item in store.storage.db().iterator_cf(cf, IteratorMode::From(&from, Direction::Forward)) {
            let (k, v) = item.map_err(StorageError::from)?;
            if k.as_ref() >= to.as_slice() {
                break;
            }
            match wanted.remove(k.as_ref()) {
                Some(w) if w.as_slice() == v.as_ref() => {}
                Some(w) => out.push((k.to_vec(), Some(w))),
                None => out.push((k.to_vec(), None)),
            }
        }
    }
    out.extend(wanted.into_iter().map(|(k, v)| (k, Some(v))));
    Ok(out)
}

fn unclaimed_key<'a>(rows: &mut Rows<'a>, coop: &'a str, row: &'a (String, String, i64, Hash)) -> Vec<u8> {
    let (currency, member, at, hash) = row;
    let account = rows.acct(currency, member);
    rows.key(UNCLAIMED, coop, &[&account, &time_key(*at), hash])
}

/// The rows a retirement writes; after a recompute (`wipe`), every row of the kinds it
/// may change, which [`changed`] compares with the store's.
fn retired_rows<'a>(
    rows: &mut Rows<'a>,
    coop: &'a str,
    r: &'a Retired,
    applied_at: &[i64],
    stored_now: &HashSet<(&str, &Hash)>,
) {
    for ((hash, _), at) in r.applied.iter().zip(applied_at) {
        let k = rows.key(APPLIED, coop, &[hash]);
        rows.put(k, at.to_be_bytes());
        // Held rows of earlier groups; after a wipe there are none.
        if !r.wipe && !stored_now.contains(&(coop, hash)) {
            let k = rows.key(HELD, coop, &[hash]);
            rows.delete(k);
        }
    }
    for hash in &r.held {
        let k = rows.key(HELD, coop, &[hash]);
        rows.put(k, coop.as_bytes());
    }
    for row in &r.unclaimed {
        let k = unclaimed_key(rows, coop, row);
        rows.put(k, []);
    }
    for row in &r.claimed {
        let k = unclaimed_key(rows, coop, row);
        rows.delete(k);
    }
    for (currency, transfers, volume) in &r.totals {
        let k = rows.key(TOTALS, coop, &[currency.as_bytes()]);
        rows.put(k, [transfers.to_be_bytes(), volume.to_be_bytes()].concat());
    }
    for (dep, by, seq) in &r.claims {
        let k = rows.key(CLAIM, coop, &[dep]);
        rows.put(k, [&by[..], &seq.to_be_bytes()].concat());
    }
    for (currency, payer, seq, link) in &r.links {
        let account = rows.acct(currency, payer);
        let k = rows.key(LINK, coop, &[&account, &seq.to_be_bytes()]);
        rows.put(k, encode_link(link));
    }
}
