//! Rebuilding the state from the journal: at start-up (unless it loads what the store
//! holds: `state::past`), and for `RecomputeBalances`, which compares stored balances
//! with a replay of one cooperative ([`compare`], [`check_stored_balances`]).
//!
//! The journal holds only entries that were checked when they arrived, so a replay
//! checks no signature and no transfer's form again; it applies each entry in journal
//! order with the rules every entry went through (`state::apply`), writing nothing.

use crate::error::LedgerError;
use crate::state::{Checked, State};
use crate::store::{Reader, Store, StoreError};
use icn_proto::ledger::v1::BalanceDrift;
use icn_runtime::now_ms;
use std::collections::HashMap;

/// A state rebuilt from the journal up to `upto` (of one cooperative when given), and
/// the number of records read.
///
/// Reading, decoding and hashing the journal (a fifth of a replay's time) run on a second
/// thread, [`REPLAY_CHUNK`] records ahead at a time, while this one applies them in order.
pub(crate) fn replay(view: &Reader<'_>, upto: u64, only: Option<&str>) -> Result<(State, u64), LedgerError> {
    /// A journal record read ahead: its position, when it arrived, and its entry (none
    /// when it is of another cooperative than the one replayed).
    type Ahead = (u64, i64, Option<Checked>);
    let (sender, chunks) = std::sync::mpsc::sync_channel::<Vec<Ahead>>(REPLAY_CHUNKS_AHEAD);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<u64, StoreError> {
            let mut records = 0;
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
            view.for_each_record(upto, |position, record| {
                records += 1;
                let body = record.entry.and_then(|e| e.body).filter(|b| only.is_none_or(|c| entry_in(b, c)));
                // The journal holds only entries that were checked when they arrived.
                chunk.push((position, record.received_at_ms, body.map(Checked::trusted)));
                if chunk.len() == REPLAY_CHUNK {
                    // A send fails only once the applying side has stopped: nothing to do.
                    let _ = sender.send(std::mem::replace(&mut chunk, Vec::with_capacity(REPLAY_CHUNK)));
                }
            })?;
            let _ = sender.send(chunk);
            Ok(records)
        });
        let mut state = State::default();
        let now = now_ms();
        for (position, received_at_ms, checked) in chunks.into_iter().flatten() {
            state.replay_record(position, received_at_ms, checked, now);
        }
        let records = reader.join().map_err(|_| LedgerError::CommitFailed("the journal reader panicked".into()))??;
        Ok((state, records))
    })
}

/// Journal records read ahead per hand-over during a replay, and hand-overs queued: a
/// few megabytes at most, and few enough hand-overs that their cost is nothing.
const REPLAY_CHUNK: usize = 1024;
const REPLAY_CHUNKS_AHEAD: usize = 4;

fn entry_in(body: &icn_proto::ledger::wire::v1::ledger_entry::Body, coop_id: &str) -> bool {
    icn_ledger_records::coop::coop_of(body) == coop_id
}

/// One comparison, from one snapshot: (journal version, stored rows, drifts).
pub(crate) fn compare(
    store: &Store,
    coop_id: &str,
    currency: Option<&str>,
) -> Result<(u64, Vec<icn_proto::ledger::v1::Account>, Vec<BalanceDrift>), LedgerError> {
    let view = store.snapshot();
    let version = view.version()?;
    let stored = view.accounts(coop_id, currency)?;
    let (replayed, _) = replay(&view, version, Some(coop_id))?;
    let mut expected: HashMap<(String, String), i128> = replayed
        .coops
        .get(coop_id)
        .map(|c| c.engine.replay().into_iter().filter(|((cur, _), _)| currency.is_none_or(|c| c == cur)).collect())
        .unwrap_or_default();
    let mut drifts = Vec::new();
    for row in &stored {
        let replayed = expected.remove(&(row.currency.clone(), row.member.clone())).unwrap_or(0);
        if replayed != row.balance as i128 {
            drifts.push(BalanceDrift {
                currency: row.currency.clone(),
                member: row.member.clone(),
                stored: row.balance,
                replayed: crate::state::clamp(replayed),
            });
        }
    }
    // Accounts the replay moves but the store has no row for.
    for ((currency, member), replayed) in expected {
        if replayed != 0 {
            drifts.push(BalanceDrift { currency, member, stored: 0, replayed: crate::state::clamp(replayed) });
        }
    }
    drifts.sort_by(|a, b| (&a.currency, &a.member).cmp(&(&b.currency, &b.member)));
    Ok((version, stored, drifts))
}

/// At start-up: every stored balance should equal the replay; a difference is logged
/// and counted (RecomputeBalances with `repair` fixes it).
pub(crate) fn check_stored_balances(store: &Store, state: &State) -> Result<u64, LedgerError> {
    let mut drifts = 0;
    for (coop_id, coop) in &state.coops {
        for row in store.accounts(coop_id, None)? {
            let replayed = coop.engine.balance(&row.currency, &row.member);
            if replayed != row.balance as i128 {
                drifts += 1;
                tracing::warn!(
                    coop = %coop_id, currency = %row.currency, member = %row.member,
                    stored = row.balance, replayed = %replayed,
                    "stored balance differs from the journal; run RecomputeBalances with repair"
                );
            }
        }
    }
    Ok(drifts)
}
