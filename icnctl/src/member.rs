//! `icnctl member keygen | show`, and the member key and DIDs other commands are given.
//!
//! A member key is a keystore file the member keeps on this machine. It is unlocked only
//! to sign, in this process (`--key`); reading its DID needs no passphrase. No service is
//! involved here: the ledger and gateway commands take a [`KeyArgs`] and sign with it.

use crate::output::Output;
use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use icn_identity::{read_passphrase, Did, KdfParams, Keystore, KeystoreError, NodeIdentity};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Create a member key (passphrase from --passphrase-file or ICN_PASSPHRASE).
    Keygen {
        /// Keystore file to create; an existing file is never overwritten.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Show the DID of a member key (no passphrase needed).
    Show {
        #[arg(long)]
        key: PathBuf,
    },
}

/// The member key that signs.
#[derive(Args)]
pub struct KeyArgs {
    /// Member keystore file (create one with `icnctl member keygen`).
    #[arg(long)]
    key: PathBuf,
    /// File holding the keystore's passphrase (default: ICN_PASSPHRASE).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl KeyArgs {
    pub fn new(key: PathBuf, passphrase_file: Option<PathBuf>) -> Self {
        Self { key, passphrase_file }
    }

    /// Unlocks the member's key; it is only used to sign, in this process.
    pub fn open(&self) -> anyhow::Result<NodeIdentity> {
        let path = &self.key;
        let unlocking = || format!("unlocking the member key {}", path.display());
        let passphrase = read_passphrase(self.passphrase_file.as_deref()).with_context(unlocking)?;
        Keystore::load(path, &passphrase).map_err(|e| match e {
            KeystoreError::NotFound(_) => missing_key(path),
            other => anyhow::Error::new(other).context(unlocking()),
        })
    }
}

/// Member keys: files on this machine, no service involved.
pub fn run(command: MemberCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        MemberCommand::Keygen { key, passphrase_file } => {
            if key.exists() {
                bail!(
                    "{} already exists; a member key is never overwritten (choose another --key path)",
                    key.display()
                );
            }
            let passphrase = read_passphrase(passphrase_file.as_deref())?;
            let identity = NodeIdentity::generate();
            Keystore::create(&key, &passphrase, &identity, KdfParams::default())?;
            out.identity(identity.did().as_str(), &key, true);
        }
        MemberCommand::Show { key } => out.identity(&member_did(&key)?, &key, false),
    }
    Ok(())
}

fn missing_key(path: &Path) -> anyhow::Error {
    anyhow!("no member key at {0}: create one with `icnctl member keygen --key {0}`", path.display())
}

/// The DID of a member key, read without the passphrase.
pub fn member_did(path: &Path) -> anyhow::Result<String> {
    match Keystore::did(path) {
        Ok(did) => Ok(did.to_string()),
        Err(KeystoreError::NotFound(_)) => Err(missing_key(path)),
        Err(e) => Err(e.into()),
    }
}

/// A DID given on the command line, in its canonical form; the error names `flag`.
pub fn parse_did(text: &str, flag: &str) -> anyhow::Result<String> {
    let did: Did = text.parse().map_err(|e| anyhow!("{flag} `{text}` is not a DID: {e}"))?;
    Ok(did.to_string())
}
