//! The one place ICN opens RocksDB: options, column families, blocking-call discipline
//! and the final flush at shutdown. Services name their column families and get a
//! [`Storage`]; they never build `rocksdb::Options` themselves. [`group`] is the one
//! group committer every service writes through, and [`feed`] the one way a subscriber
//! catches up from a stored log and then follows it live.

pub mod feed;
pub mod group;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rocksdb::{ColumnFamily, Direction, IteratorMode, ReadOptions, Snapshot, WriteBatch, WriteOptions, DB};

/// Column family every store has, for small bookkeeping values (schema version, marks).
pub const META_CF: &str = "meta";
const SCHEMA_KEY: &[u8] = b"schema_version";
/// Layout version of the data written through this crate; bumped when a service changes
/// its key layout in a way older binaries cannot read.
pub const SCHEMA_VERSION: u32 = 1;
/// Bloom filter bits per key: about a 1 % false-positive rate.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("opening the store at {path}: {source}")]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error("creating the store folder {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("the store at {path} has schema version {found}, this build reads {SCHEMA_VERSION}")]
    Schema { path: PathBuf, found: u32 },
    #[error("store: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("no column family `{0}` in this store")]
    MissingColumnFamily(String),
    #[error("a storage task was cancelled or panicked: {0}")]
    Task(String),
}

/// The options of every column family (and of RocksDB's default one).
fn column_family_options() -> rocksdb::Options {
    let mut options = rocksdb::Options::default();
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Most point reads look for keys that are not there (is this transfer stored yet?):
    // a Bloom filter per table answers them without reading its blocks.
    let mut tables = rocksdb::BlockBasedOptions::default();
    tables.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    options.set_block_based_table_factory(&tables);
    // No Bloom filter over the memtables: each memtable of each column family allocates
    // its filter whole (a tenth of 64 MiB), about 45 MiB of RSS more per service, for no
    // throughput measured (docs/BENCHMARKS.md, twelfth session).
    options
}

/// A RocksDB database shared by a service's components.
#[derive(Clone)]
pub struct Storage {
    db: Arc<DB>,
    path: PathBuf,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

impl Storage {
    /// Opens (creating when missing) the store at `path` with `column_families` plus
    /// [`META_CF`], and checks its schema version.
    pub fn open(path: &Path, column_families: &[&str]) -> Result<Self, StorageError> {
        std::fs::create_dir_all(path).map_err(|source| StorageError::CreateDir { path: path.into(), source })?;
        let mut options = column_family_options();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // RocksDB's info log otherwise grows without bound in the data folder.
        options.set_keep_log_file_num(4);
        options.set_max_log_file_size(8 * 1024 * 1024);
        // A restart must not wait on replaying a large WAL: flush memtables before the WAL
        // grows past this.
        options.set_max_total_wal_size(64 * 1024 * 1024);
        let mut names: Vec<&str> = vec![META_CF];
        names.extend(column_families.iter().copied().filter(|c| *c != META_CF));
        // Each column family is opened with its options spelled out: opened by name
        // alone, RocksDB gives it stock options, not those of the database.
        let descriptors = names.iter().map(|name| rocksdb::ColumnFamilyDescriptor::new(*name, column_family_options()));
        let db = DB::open_cf_descriptors(&options, path, descriptors)
            .map_err(|source| StorageError::Open { path: path.into(), source })?;
        let storage = Self { db: Arc::new(db), path: path.into() };
        storage.check_schema()?;
        Ok(storage)
    }

    fn check_schema(&self) -> Result<(), StorageError> {
        let meta = self.cf(META_CF)?;
        match self.db.get_cf(meta, SCHEMA_KEY)? {
            None => self.db.put_cf(meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes())?,
            Some(v) => {
                let found = v.as_slice().try_into().map(u32::from_be_bytes).unwrap_or(u32::MAX);
                if found != SCHEMA_VERSION {
                    return Err(StorageError::Schema { path: self.path.clone(), found });
                }
            }
        }
        Ok(())
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.db.cf_handle(name).ok_or_else(|| StorageError::MissingColumnFamily(name.into()))
    }

    /// Write options for data that was acknowledged to someone: synced to disk before
    /// the call returns, so a power cut cannot lose it.
    /// A counter or cursor kept in the meta column family.
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let value = self.db.get_cf(self.cf(META_CF)?, key.as_bytes())?;
        Ok(value.and_then(|v| v.as_slice().try_into().ok()).map(u64::from_be_bytes))
    }

    pub fn put_meta_u64(&self, key: &str, value: u64) -> Result<(), StorageError> {
        Ok(self.db.put_cf(self.cf(META_CF)?, key.as_bytes(), value.to_be_bytes())?)
    }

    /// Sets a meta counter as part of `batch`, so it moves atomically with the data.
    pub fn batch_meta_u64(&self, batch: &mut WriteBatch, key: &str, value: u64) -> Result<(), StorageError> {
        batch.put_cf(self.cf(META_CF)?, key.as_bytes(), value.to_be_bytes());
        Ok(())
    }

    pub fn durable() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    /// Runs RocksDB work off the async runtime: reads and writes can block on disk.
    pub async fn blocking<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        F: FnOnce(&Storage) -> Result<R, StorageError> + Send + 'static,
        R: Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this)).await.map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Flushes memtables and the WAL so the next start replays nothing. Called by the
    /// runtime at shutdown, after every component has stopped writing.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        let mut names = vec![META_CF.to_string()];
        names.extend(DB::list_cf(&rocksdb::Options::default(), &self.path).unwrap_or_default());
        names.sort();
        names.dedup();
        for name in names {
            if let Some(cf) = self.db.cf_handle(&name) {
                self.db.flush_cf(cf)?;
            }
        }
        tracing::debug!(path = %self.path.display(), "store flushed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_written_durably_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), &["things"]).unwrap();
            s.db().put_cf_opt(s.cf("things").unwrap(), b"k", b"v", &Storage::durable()).unwrap();
            s.flush().unwrap();
        }
        let s = Storage::open(dir.path(), &["things"]).unwrap();
        assert_eq!(s.db().get_cf(s.cf("things").unwrap(), b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(matches!(s.cf("other"), Err(StorageError::MissingColumnFamily(_))));
    }

    #[test]
    fn every_column_family_has_the_stores_options() {
        let dir = tempfile::tempdir().unwrap();
        drop(Storage::open(dir.path(), &["things", "others"]).unwrap());
        // RocksDB writes the options it runs with to an OPTIONS file, one section per
        // column family.
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
            .max()
            .expect("an OPTIONS file");
        let text = std::fs::read_to_string(file).unwrap();
        // (RocksDB's own `default` column family holds nothing of ICN's.)
        for cf in [META_CF, "things", "others"] {
            let section = |kind: &str| {
                let head = format!("[{kind} \"{cf}\"]");
                let start = text.find(&head).unwrap_or_else(|| panic!("no {head}"));
                let rest = &text[start + head.len()..];
                rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
            };
            let cf_options = section("CFOptions");
            assert!(cf_options.contains("compression=kLZ4Compression"), "{cf}: {cf_options}");
            let tables = section("TableOptions/BlockBasedTable");
            assert!(tables.contains("filter_policy=bloomfilter"), "{cf}: {tables}");
        }
    }

    #[test]
    fn a_store_with_another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), &[]).unwrap();
            s.db().put_cf(s.cf(META_CF).unwrap(), SCHEMA_KEY, 99u32.to_be_bytes()).unwrap();
        }
        let err = Storage::open(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, StorageError::Schema { found: 99, .. }), "{err}");
    }

    #[tokio::test]
    async fn blocking_work_runs_off_the_async_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &[]).unwrap();
        let v = s
            .blocking(|s| {
                s.db().put(b"a", b"1")?;
                Ok(s.db().get(b"a")?)
            })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&b"1"[..]));
    }
}
