//! What netd remembers about peers across restarts: where they are, their sealing key,
//! whether they are marked permanently failed, and when this node was last active.

use icn_proto::net::wire::v1::{KnownPeer, StoredPeer};
use icn_storage::{Storage, StorageError};
use prost::Message as _;
use std::time::{Duration, SystemTime};

/// `<did>` → [`StoredPeer`].
pub const PEERS_CF: &str = "peers";
/// In the meta column family: Unix milliseconds when this node was last seen running.
const LAST_ACTIVE_KEY: &[u8] = b"netd.last_active_ms";

pub fn save(storage: &Storage, peer: &KnownPeer, failed_error: &str) -> Result<(), StorageError> {
    let stored = StoredPeer { peer: Some(peer.clone()), failed_error: failed_error.to_string() };
    storage.db().put_cf(storage.cf(PEERS_CF)?, peer.did.as_bytes(), stored.encode_to_vec())?;
    Ok(())
}

pub fn load(storage: &Storage) -> Result<Vec<StoredPeer>, StorageError> {
    let mut peers = Vec::new();
    for item in storage.db().iterator_cf(storage.cf(PEERS_CF)?, icn_storage::IteratorMode::Start) {
        let (_, value) = item?;
        if let Ok(peer) = StoredPeer::decode(value.as_ref()) {
            peers.push(peer);
        }
    }
    Ok(peers)
}

pub fn mark_active(storage: &Storage, now: SystemTime) -> Result<(), StorageError> {
    let ms = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    storage.db().put_cf(storage.cf(icn_storage::META_CF)?, LAST_ACTIVE_KEY, ms.to_be_bytes())?;
    Ok(())
}

/// How long ago this node was last active; `None` on its first start.
pub fn inactive_for(storage: &Storage, now: SystemTime) -> Result<Option<Duration>, StorageError> {
    let Some(value) = storage.db().get_cf(storage.cf(icn_storage::META_CF)?, LAST_ACTIVE_KEY)? else {
        return Ok(None);
    };
    let ms = value.as_slice().try_into().map(u64::from_be_bytes).unwrap_or_default();
    let last = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    Ok(Some(now.duration_since(last).unwrap_or_default()))
}
