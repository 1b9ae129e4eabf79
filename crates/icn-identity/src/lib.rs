//! Node and member identity: Ed25519 key pairs, their `did:icn:` names, an X25519 key
//! for sealing, and the passphrase-encrypted keystore file that holds them.
//!
//! This crate never logs or prints key material; `Debug` of secret types shows the DID only.

mod did;
mod keystore;
pub mod login;
mod purpose;
pub mod tls;

pub use did::{Did, DidError};
pub use keystore::{KdfParams, Keystore, KeystoreError};
pub use purpose::{signed_bytes, verify_batch_for, Purpose};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use x25519_dalek::StaticSecret;

/// A node's (or member's) secret keys. Cheap to share behind an `Arc`.
pub struct NodeIdentity {
    signing: SigningKey,
    sealing: StaticSecret,
    did: Did,
}

impl NodeIdentity {
    /// A fresh identity from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_secrets(SigningKey::generate(&mut OsRng), StaticSecret::random_from_rng(OsRng))
    }

    pub(crate) fn from_secrets(signing: SigningKey, sealing: StaticSecret) -> Self {
        let did = Did::from_public_key(&signing.verifying_key());
        Self { signing, sealing, did }
    }

    pub fn did(&self) -> &Did {
        &self.did
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The signing key as PKCS#8 v2 DER, for building this node's TLS certificate.
    pub fn signing_key_pkcs8_der(&self) -> Vec<u8> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        self.signing.to_pkcs8_der().expect("encoding an in-memory ed25519 key as pkcs8 cannot fail").as_bytes().to_vec()
    }

    pub fn x25519_public_key(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(&self.sealing)
    }

    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.sealing
    }
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity").field("did", &self.did).finish_non_exhaustive()
    }
}

/// An Ed25519 public key from raw bytes, refusing bytes that are not a curve point.
pub fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, DidError> {
    VerifyingKey::from_bytes(bytes).map_err(|_| DidError::Key)
}

/// Writes a file only its owner may read (mode 0600), whatever was at `path` before:
/// through a fresh temporary file beside it (created exclusively, so neither a stale
/// file's permissions nor a planted symbolic link are inherited), synced, then renamed
/// over `path`, so a crash leaves the old file or the new one, never half of one. For
/// keystores, tokens and secrets.
pub fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    // A leftover from a crashed write (or anything planted there) goes; `create_new`
    // then refuses to follow whatever might reappear.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Variable holding the keystore passphrase when no passphrase file is configured.
pub const PASSPHRASE_VAR: &str = "ICN_PASSPHRASE";

#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    #[error("reading the passphrase file {path}: {source}")]
    File { path: std::path::PathBuf, source: std::io::Error },
    #[error("the passphrase file {0} is empty")]
    EmptyFile(std::path::PathBuf),
    #[error("no passphrase given: set {PASSPHRASE_VAR} or name a passphrase file")]
    Missing,
}

/// The passphrase from `file` when one is named (a trailing newline is not part of it),
/// else from `ICN_PASSPHRASE`.
pub fn read_passphrase(file: Option<&std::path::Path>) -> Result<String, PassphraseError> {
    if let Some(path) = file.filter(|p| !p.as_os_str().is_empty()) {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PassphraseError::File { path: path.to_path_buf(), source })?;
        let passphrase = text.trim_end_matches(['\n', '\r']).to_string();
        if passphrase.is_empty() {
            return Err(PassphraseError::EmptyFile(path.to_path_buf()));
        }
        return Ok(passphrase);
    }
    match std::env::var(PASSPHRASE_VAR) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(PassphraseError::Missing),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the recipient's x25519 key must be 32 bytes")]
    Key,
    #[error("the sealed payload does not open with this node's key")]
    Open,
}

/// Encrypts `message` so only the holder of the X25519 secret for `recipient` can read it
/// (an anonymous sealed box: ephemeral X25519 + XSalsa20-Poly1305).
pub fn seal(recipient: &[u8], message: &[u8]) -> Result<Vec<u8>, SealError> {
    let key: [u8; 32] = recipient.try_into().map_err(|_| SealError::Key)?;
    crypto_box::PublicKey::from(key).seal(&mut OsRng, message).map_err(|_| SealError::Key)
}

impl NodeIdentity {
    /// Opens a payload sealed to this node's X25519 key.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        crypto_box::SecretKey::from(self.sealing.to_bytes()).unseal(sealed).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_a_sealed_payload() {
        let (recipient, other) = (NodeIdentity::generate(), NodeIdentity::generate());
        let sealed = seal(recipient.x25519_public_key().as_bytes(), b"for your eyes only").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"for your"), "ciphertext hides the plaintext");
        assert_eq!(recipient.unseal(&sealed).unwrap(), b"for your eyes only");
        assert_eq!(other.unseal(&sealed), Err(SealError::Open));
        assert_eq!(seal(&[1, 2, 3], b"x"), Err(SealError::Key));
    }
}

#[cfg(test)]
mod private_file_tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_file_is_0600_whatever_was_there_and_follows_no_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Someone plants a link where the temporary file will be, aimed at a file of theirs.
        let victim = dir.path().join("theirs");
        std::fs::write(&victim, "untouched").unwrap();
        let tmp = dir.path().join(format!("token.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();

        super::write_private_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!tmp.exists() && std::fs::symlink_metadata(&tmp).is_err(), "no temporary file is left");
    }
}
