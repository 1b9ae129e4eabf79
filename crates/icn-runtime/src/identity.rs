//! Unlocking the node identity at start-up.

use anyhow::Context as _;
use icn_config::IcnConfig;
use icn_identity::{read_passphrase, Keystore, NodeIdentity};
use std::sync::Arc;

/// `Ok(None)` means limited mode: there is no keystore. A keystore that exists but cannot
/// be opened (no passphrase, wrong passphrase, corrupt file) stops the start-up: running
/// without the identity the operator meant to use would be worse than not running.
pub fn unlock(config: &IcnConfig) -> anyhow::Result<Option<Arc<NodeIdentity>>> {
    let path = config.keystore_path();
    if !path.exists() {
        return Ok(None);
    }
    let passphrase = read_passphrase(Some(&config.node.passphrase_file))
        .with_context(|| format!("unlocking the keystore at {}", path.display()))?;
    let identity = Keystore::load(&path, &passphrase)?;
    Ok(Some(Arc::new(identity)))
}
