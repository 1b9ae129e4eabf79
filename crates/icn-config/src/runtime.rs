//! `[runtime]`: the async runtime each service runs on.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads running the service's async tasks; 0 (the default) is one per core. Many
    /// services sharing few cores (a whole network on one machine) do better with 1:
    /// each message wakes fewer threads, and two threads of one service never contend
    /// for a core a third process needs. Blocking work (RocksDB, committers) runs on its
    /// own threads whatever this says.
    pub worker_threads: usize,
}
