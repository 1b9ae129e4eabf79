//! The ledger's RocksDB store.
//!
//! - `journal`: every entry this node stored, by position (u64, big-endian), in the
//!   order it received them; the source of truth, replayed at start-up.
//! - `accounts`: each account's stored balance and chain head, by `coop \0 currency \0
//!   member`, rewritten in the same batch as the journal entries that change it.
//!   `RecomputeBalances` checks them against a replay of the journal.
//! - `past`: what the node reads back instead of holding every transfer in memory
//!   (stored transfers, history, idempotency ids, and what the engine retired), in
//!   [`past`];
//! - meta: the journal version, how far the journal is published, and per cooperative
//!   the gossip position processed.
//!
//! One group of entries is one atomic, synced write batch: after a crash, either all of
//! a group is there (with its accounts and cursors) or none of it, and nothing
//! acknowledged is lost.

pub mod group;
pub mod past;

use group::GroupWrite;
use icn_proto::ledger::v1::Account;
use icn_proto::ledger::wire::v1::JournalRecord;
use icn_storage::{Direction, IteratorMode, ReadOptions, Snapshot, Storage, StorageError, WriteBatch};
use prost::Message;

pub const COLUMN_FAMILIES: &[&str] = &[JOURNAL, ACCOUNTS, past::PAST];
const JOURNAL: &str = "journal";
const ACCOUNTS: &str = "accounts";
/// Meta key of the journal's last position.
const VERSION_KEY: &str = "ledger.journal_version";
/// Meta key of the last journal position handed to gossip.
const PUBLISHED_KEY: &str = "ledger.published";
/// Meta key set once the `past` rows match the journal (a store from before them is
/// brought up to date at its first start-up: [`crate::commit`]).
const PAST_KEY: &str = "ledger.past_format";
/// The `past` rows' format.
const PAST_FORMAT: u64 = 1;

fn cursor_key(coop_id: &str) -> String {
    format!("ledger.gossip_position/{coop_id}")
}

fn account_key(coop_id: &str, currency: &str, member: &str) -> Vec<u8> {
    [coop_id.as_bytes(), b"\0", currency.as_bytes(), b"\0", member.as_bytes()].concat()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("journal record at position {position} does not decode: {reason}")]
    Corrupt { position: u64, reason: String },
}

impl From<StoreError> for crate::LedgerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Storage(s) => crate::LedgerError::Storage(s),
            corrupt => crate::LedgerError::CommitFailed(corrupt.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    storage: Storage,
    /// The first read of the past that failed since the committer last looked.
    read_failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Point reads of the past: what the committer pays per transfer beyond memory
    /// (registered with the node's metrics by [`crate::commit`]).
    past_reads: prometheus::IntCounter,
}

impl Store {
    pub fn new(storage: Storage) -> Self {
        let past_reads = prometheus::IntCounter::new(
            "ledger_past_reads_total",
            "Point reads of the ledger's past in its store (history in the store only)",
        )
        .expect("valid metric");
        Self { storage, read_failure: Default::default(), past_reads }
    }

    /// The counter of point reads of the past.
    pub fn past_reads(&self) -> &prometheus::IntCounter {
        &self.past_reads
    }

    /// Remembers a failed read of the past for the committer.
    fn read_failed(&self, e: &StoreError) {
        tracing::error!(error = %e, "reading the ledger's past failed");
        self.read_failure.lock().expect("not poisoned").get_or_insert_with(|| e.to_string());
    }

    /// A read of the past that failed since the last call: the group judged meanwhile
    /// must not be written.
    pub fn take_read_failure(&self) -> Option<String> {
        self.read_failure.lock().expect("not poisoned").take()
    }

    /// Whether the `past` rows match the journal, as this release writes them.
    pub fn past_is_current(&self) -> Result<bool, StoreError> {
        Ok(self.storage.meta_u64(PAST_KEY)? == Some(PAST_FORMAT))
    }

    /// Drops the `past` rows and their mark (a node that keeps its history in memory
    /// no longer writes them).
    pub fn forget_past(&self) -> Result<(), StoreError> {
        if self.storage.meta_u64(PAST_KEY)?.is_none() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.storage.cf(past::PAST)?, [0u8].as_slice(), [0xffu8; 2].as_slice());
        batch.delete_cf(self.storage.cf(icn_storage::META_CF)?, PAST_KEY.as_bytes());
        self.storage.db().write_opt(batch, &Storage::durable()).map_err(StorageError::from)?;
        Ok(())
    }

    /// Writes one group atomically and durably.
    pub fn write(&self, group: &GroupWrite) -> Result<(), StoreError> {
        let db = self.storage.db();
        let mut batch = WriteBatch::default();
        let journal = self.storage.cf(JOURNAL)?;
        for (position, record) in &group.journal {
            batch.put_cf(journal, position.to_be_bytes(), record.encode_to_vec());
        }
        let accounts = self.storage.cf(ACCOUNTS)?;
        for a in &group.accounts {
            batch.put_cf(accounts, account_key(&a.coop_id, &a.currency, &a.member), stored_account(a).encode_to_vec());
        }
        for (coop_id, position) in &group.cursors {
            self.storage.batch_meta_u64(&mut batch, &cursor_key(coop_id), *position)?;
        }
        past::write_group(self, &mut batch, group)?;
        if group.past_current {
            self.storage.batch_meta_u64(&mut batch, PAST_KEY, PAST_FORMAT)?;
        }
        self.storage.batch_meta_u64(&mut batch, VERSION_KEY, group.version)?;
        // A group that only moves gossip cursors (this node's own publications coming
        // back) needs no sync: after a crash they are read again and change nothing.
        let options = if group.journal.is_empty() && group.accounts.is_empty() && group.retired.is_empty() {
            icn_storage::WriteOptions::default()
        } else {
            Storage::durable()
        };
        db.write_opt(batch, &options).map_err(StorageError::from)?;
        Ok(())
    }

    /// Reads of the live store.
    pub fn live(&self) -> Reader<'_> {
        Reader { store: self, snapshot: None }
    }

    /// Reads pinned to one moment: the journal version, the journal and the stored
    /// accounts all as one committed group left them.
    pub fn snapshot(&self) -> Reader<'_> {
        Reader { store: self, snapshot: Some(self.storage.db().snapshot()) }
    }

    pub fn journal_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, JournalRecord)>, StoreError> {
        self.live().journal_after(after, limit)
    }

    pub fn accounts(&self, coop_id: &str, currency: Option<&str>) -> Result<Vec<Account>, StoreError> {
        self.live().accounts(coop_id, currency)
    }

    /// Overwrites stored accounts, in one batch (RecomputeBalances' repair).
    pub fn put_accounts(&self, accounts: &[Account]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let cf = self.storage.cf(ACCOUNTS)?;
        for a in accounts {
            batch.put_cf(cf, account_key(&a.coop_id, &a.currency, &a.member), stored_account(a).encode_to_vec());
        }
        self.storage.db().write_opt(batch, &Storage::durable()).map_err(StorageError::from)?;
        Ok(())
    }

    pub fn version(&self) -> Result<u64, StoreError> {
        self.live().version()
    }

    pub fn published(&self) -> Result<u64, StoreError> {
        Ok(self.storage.meta_u64(PUBLISHED_KEY)?.unwrap_or(0))
    }

    /// Not synced: after a crash the last publications are repeated, which gossip and
    /// the ledger both take as no-ops.
    pub fn set_published(&self, position: u64) -> Result<(), StoreError> {
        Ok(self.storage.put_meta_u64(PUBLISHED_KEY, position)?)
    }

    pub fn gossip_cursor(&self, coop_id: &str) -> Result<u64, StoreError> {
        Ok(self.storage.meta_u64(&cursor_key(coop_id))?.unwrap_or(0))
    }
}

/// Reads of the store, live or pinned to a snapshot.
pub struct Reader<'a> {
    store: &'a Store,
    snapshot: Option<Snapshot<'a>>,
}

impl Reader<'_> {
    fn options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let Some(s) = &self.snapshot {
            options.set_snapshot(s);
        }
        options
    }

    fn db(&self) -> &icn_storage::DB {
        self.store.storage.db()
    }

    pub fn version(&self) -> Result<u64, StoreError> {
        let meta = self.store.storage.cf(icn_storage::META_CF)?;
        let value = self.db().get_cf_opt(meta, VERSION_KEY.as_bytes(), &self.options()).map_err(StorageError::from)?;
        Ok(value.and_then(|v| v.as_slice().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
    }

    /// The journal record at `position`.
    pub fn journal_at(&self, position: u64) -> Result<Option<JournalRecord>, StoreError> {
        let cf = self.store.storage.cf(JOURNAL)?;
        let Some(value) =
            self.db().get_cf_opt(cf, position.to_be_bytes(), &self.options()).map_err(StorageError::from)?
        else {
            return Ok(None);
        };
        JournalRecord::decode(value.as_slice())
            .map(Some)
            .map_err(|e| StoreError::Corrupt { position, reason: e.to_string() })
    }

    /// Journal records after `after`, in order, at most `limit`.
    pub fn journal_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, JournalRecord)>, StoreError> {
        let mut out = Vec::new();
        self.scan_journal(after, |position, record| {
            out.push((position, record));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Every journal record up to `upto`, in order, handed to `f`.
    pub fn for_each_record(&self, upto: u64, mut f: impl FnMut(u64, JournalRecord)) -> Result<(), StoreError> {
        self.scan_journal(0, |position, record| {
            if position > upto {
                return false;
            }
            f(position, record);
            true
        })
    }

    /// Records after `after` to `f` while it answers true.
    fn scan_journal(&self, after: u64, mut f: impl FnMut(u64, JournalRecord) -> bool) -> Result<(), StoreError> {
        let start = (after + 1).to_be_bytes();
        let cf = self.store.storage.cf(JOURNAL)?;
        for item in self.db().iterator_cf_opt(cf, self.options(), IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = item.map_err(StorageError::from)?;
            let position = u64::from_be_bytes(key.as_ref().try_into().unwrap_or_default());
            let record = JournalRecord::decode(value.as_ref())
                .map_err(|e| StoreError::Corrupt { position, reason: e.to_string() })?;
            if !f(position, record) {
                break;
            }
        }
        Ok(())
    }

    /// Stored accounts of a cooperative (of one currency when given).
    pub fn accounts(&self, coop_id: &str, currency: Option<&str>) -> Result<Vec<Account>, StoreError> {
        let prefix = match currency {
            Some(c) => [coop_id.as_bytes(), b"\0", c.as_bytes(), b"\0"].concat(),
            None => [coop_id.as_bytes(), b"\0"].concat(),
        };
        let mut out = Vec::new();
        let cf = self.store.storage.cf(ACCOUNTS)?;
        for item in self.db().iterator_cf_opt(cf, self.options(), IteratorMode::From(&prefix, Direction::Forward)) {
            let (key, value) = item.map_err(StorageError::from)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let account = Account::decode(value.as_ref())
                .map_err(|e| StoreError::Corrupt { position: 0, reason: format!("account: {e}") })?;
            out.push(account);
        }
        Ok(out)
    }
}

/// What an account row keeps: the balance and chain head, not the derived read fields.
fn stored_account(a: &Account) -> Account {
    Account {
        coop_id: a.coop_id.clone(),
        currency: a.currency.clone(),
        member: a.member.clone(),
        balance: a.balance,
        seq: a.seq,
        head_hash: a.head_hash.clone(),
        updated_at_ms: a.updated_at_ms,
        ..Default::default()
    }
}
