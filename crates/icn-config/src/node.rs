//! `[node]`: what names this node and where its state and identity live.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// A label for logs and tools; the node's real name is its DID.
    pub name: String,
    /// Root of the node's state: the keystore and one folder per service.
    pub data_dir: PathBuf,
    /// Keystore file; empty means `<data_dir>/keystore.json`.
    pub keystore: PathBuf,
    /// File holding the keystore passphrase; empty means the `ICN_PASSPHRASE` variable.
    pub passphrase_file: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node".into(),
            data_dir: PathBuf::from("./data"),
            keystore: PathBuf::new(),
            passphrase_file: PathBuf::new(),
        }
    }
}

impl NodeConfig {
    /// The keystore file, with the empty default resolved under `data_dir`.
    pub fn keystore_path(&self) -> PathBuf {
        if self.keystore.as_os_str().is_empty() {
            self.data_dir.join("keystore.json")
        } else {
            self.keystore.clone()
        }
    }
}
