//! Writing the past: the rows one group adds to its batch (`super` has the layout),
//! and, after a recompute, only those that changed.

use super::{acct, encode_link, key, range, time_key, PAST, UNDONE_BY_RECOMPUTE};
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
struct Rows {
    ops: Vec<Op>,
}

impl Rows {
    fn put(&mut self, key: Vec<u8>, value: impl Into<Vec<u8>>) {
        self.ops.push((key, Some(value.into())));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
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
        rows.put(key(STORED, &s.coop, &[&s.hash]), value);
        if !retired_now.contains(&(s.coop.as_str(), &s.hash)) {
            rows.put(key(HELD, &s.coop, &[&s.hash]), s.coop.as_bytes());
        }
        for member in [&s.transfer.payer, &s.transfer.payee] {
            let k = key(HISTORY, &s.coop, &[&acct(&s.transfer.currency, member), &s.position.to_be_bytes()]);
            rows.put(k, s.hash);
        }
    }
    for (coop, currency, payer, id, hash) in &group.idempotency {
        rows.put(key(IDEMPOTENCY, coop, &[&acct(currency, payer), id.as_bytes()]), hash);
    }
    for (coop, position) in &group.entries_at {
        rows.put(key(ENTRY, coop, &[&position.to_be_bytes()]), coop.as_bytes());
    }
    for (coop, (currency, payer, seq), at) in &group.forks_at {
        let k = key(FORK, coop, &[currency.as_bytes(), b"\0", payer.as_bytes(), b"\0", &seq.to_be_bytes()]);
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

fn unclaimed_key(coop: &str, (currency, member, at, hash): &(String, String, i64, Hash)) -> Vec<u8> {
    key(UNCLAIMED, coop, &[&acct(currency, member), &time_key(*at), hash])
}

/// The rows a retirement writes; after a recompute (`wipe`), every row of the kinds it
/// may change, which [`changed`] compares with the store's.
fn retired_rows(rows: &mut Rows, coop: &str, r: &Retired, applied_at: &[i64], stored_now: &HashSet<(&str, &Hash)>) {
    for ((hash, _), at) in r.applied.iter().zip(applied_at) {
        rows.put(key(APPLIED, coop, &[hash]), at.to_be_bytes());
        // Held rows of earlier groups; after a wipe there are none.
        if !r.wipe && !stored_now.contains(&(coop, hash)) {
            rows.delete(key(HELD, coop, &[hash]));
        }
    }
    for hash in &r.held {
        rows.put(key(HELD, coop, &[hash]), coop.as_bytes());
    }
    for row in &r.unclaimed {
        rows.put(unclaimed_key(coop, row), []);
    }
    for row in &r.claimed {
        rows.delete(unclaimed_key(coop, row));
    }
    for (currency, transfers, volume) in &r.totals {
        rows.put(key(TOTALS, coop, &[currency.as_bytes()]), [transfers.to_be_bytes(), volume.to_be_bytes()].concat());
    }
    for (dep, by, seq) in &r.claims {
        rows.put(key(CLAIM, coop, &[dep]), [&by[..], &seq.to_be_bytes()].concat());
    }
    for (currency, payer, seq, link) in &r.links {
        rows.put(key(LINK, coop, &[&acct(currency, payer), &seq.to_be_bytes()]), encode_link(link));
    }
}
