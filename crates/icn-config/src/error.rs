//! The one error type of the crate: why a configuration could not be loaded or was
//! refused, naming the file or the `section.key` at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}
