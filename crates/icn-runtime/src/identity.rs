//! Unlocking the node identity at start-up.

use icn_config::IcnConfig;
use icn_identity::{read_passphrase, Keystore, KeystoreError, NodeIdentity, PassphraseError};
use std::path::PathBuf;
use std::sync::Arc;

/// Why the node's keystore could not be unlocked.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("unlocking the keystore at {path}: {source}")]
    Passphrase {
        path: PathBuf,
        #[source]
        source: PassphraseError,
    },
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// `Ok(None)` means limited mode: there is no keystore. A keystore that exists but cannot
/// be opened (no passphrase, wrong passphrase, corrupt file) stops the start-up: running
/// without the identity the operator meant to use would be worse than not running.
pub fn unlock(config: &IcnConfig) -> Result<Option<Arc<NodeIdentity>>, IdentityError> {
    let path = config.keystore_path();
    if !path.exists() {
        return Ok(None);
    }
    let passphrase = read_passphrase(Some(&config.node.passphrase_file))
        .map_err(|source| IdentityError::Passphrase { path: path.clone(), source })?;
    let identity = Keystore::load(&path, &passphrase)?;
    Ok(Some(Arc::new(identity)))
}
