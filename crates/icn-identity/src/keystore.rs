//! The keystore file: a node's secret keys encrypted under a passphrase.
//!
//! Format (JSON, versioned): Argon2id derives a 32-byte key from the passphrase and a
//! random salt; XChaCha20-Poly1305 encrypts the 64 secret bytes (Ed25519 seed, then
//! X25519 secret) with the DID as associated data, so a keystore whose public DID field
//! was edited fails to open instead of presenting the wrong name. The DID is stored in
//! clear so `icnctl id show` works without the passphrase.

use crate::{Did, NodeIdentity};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const FORMAT_VERSION: u32 = 1;

/// Argon2id cost. The defaults follow OWASP's recommendation (19 MiB, 2 passes, 1 lane),
/// which takes tens of milliseconds here: paid once at start-up.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no keystore at {0}")]
    NotFound(PathBuf),
    #[error("a keystore already exists at {0}; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("wrong passphrase for the keystore at {0}")]
    WrongPassphrase(PathBuf),
    #[error("the keystore at {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("the keystore at {path} has format version {found}; this build reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    #[error("keystore i/o at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Serialize, Deserialize)]
struct KeystoreFile {
    version: u32,
    did: String,
    kdf: String,
    kdf_params: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

/// Reads and writes keystore files.
pub struct Keystore;

impl Keystore {
    /// Encrypts `identity` into a new file at `path` (mode 0600), refusing to overwrite.
    pub fn create(
        path: &Path,
        passphrase: &str,
        identity: &NodeIdentity,
        params: KdfParams,
    ) -> Result<(), KeystoreError> {
        if passphrase.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        if path.exists() {
            return Err(KeystoreError::Exists(path.to_path_buf()));
        }
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let key = derive_key(passphrase, &salt, params, path)?;
        let mut secret = Zeroizing::new([0u8; 64]);
        secret[..32].copy_from_slice(&identity.signing.to_bytes());
        secret[32..].copy_from_slice(identity.sealing.as_bytes());
        let did = identity.did().to_string();
        let ciphertext = XChaCha20Poly1305::new((&*key).into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &secret[..], aad: did.as_bytes() })
            .map_err(|_| corrupt(path, "encryption failed"))?;
        let file = KeystoreFile {
            version: FORMAT_VERSION,
            did,
            kdf: "argon2id".into(),
            kdf_params: params,
            salt: B64.encode(salt),
            cipher: "xchacha20poly1305".into(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        };
        let json = serde_json::to_vec_pretty(&file).expect("keystore json always serialises");
        write_private(path, &json)
    }

    /// Decrypts the identity in `path`.
    pub fn load(path: &Path, passphrase: &str) -> Result<NodeIdentity, KeystoreError> {
        let file = read_file(path)?;
        let salt = B64.decode(&file.salt).map_err(|_| corrupt(path, "salt is not base64"))?;
        let nonce = B64.decode(&file.nonce).map_err(|_| corrupt(path, "nonce is not base64"))?;
        let ciphertext = B64.decode(&file.ciphertext).map_err(|_| corrupt(path, "ciphertext is not base64"))?;
        if file.kdf != "argon2id" || file.cipher != "xchacha20poly1305" || nonce.len() != 24 {
            return Err(corrupt(path, "unknown kdf or cipher"));
        }
        let key = derive_key(passphrase, &salt, file.kdf_params, path)?;
        let secret = Zeroizing::new(
            XChaCha20Poly1305::new((&*key).into())
                .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: file.did.as_bytes() })
                // The AEAD cannot tell a wrong key from tampering; a wrong passphrase is
                // by far the common case, and the message says which file to check.
                .map_err(|_| KeystoreError::WrongPassphrase(path.to_path_buf()))?,
        );
        if secret.len() != 64 {
            return Err(corrupt(path, "secret has the wrong length"));
        }
        let seed: [u8; 32] = secret[..32].try_into().expect("length checked");
        let sealing: [u8; 32] = secret[32..].try_into().expect("length checked");
        let identity = NodeIdentity::from_secrets(
            ed25519_dalek::SigningKey::from_bytes(&seed),
            x25519_dalek::StaticSecret::from(sealing),
        );
        if identity.did().as_str() != file.did {
            return Err(corrupt(path, "the stored DID does not match the stored key"));
        }
        Ok(identity)
    }

    /// The DID recorded in a keystore, readable without the passphrase.
    pub fn did(path: &Path) -> Result<Did, KeystoreError> {
        let file = read_file(path)?;
        file.did.parse().map_err(|e: crate::DidError| corrupt(path, &e.to_string()))
    }
}

fn read_file(path: &Path) -> Result<KeystoreFile, KeystoreError> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => KeystoreError::NotFound(path.to_path_buf()),
        _ => KeystoreError::Io { path: path.to_path_buf(), source },
    })?;
    let file: KeystoreFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(path, &e.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(KeystoreError::Version { path: path.to_path_buf(), found: file.version });
    }
    Ok(file)
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
    path: &Path,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let argon_params = Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|e| corrupt(path, &format!("invalid kdf parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut *key)
        .map_err(|e| corrupt(path, &format!("key derivation failed: {e}")))?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    crate::write_private_file(path, bytes).map_err(|source| KeystoreError::Io { path: path.to_path_buf(), source })
}

fn corrupt(path: &Path, reason: &str) -> KeystoreError {
    KeystoreError::Corrupt { path: path.to_path_buf(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the tests do not spend seconds in Argon2.
    const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn a_keystore_opens_with_its_passphrase_and_gives_back_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let id = NodeIdentity::generate();
        Keystore::create(&path, "correct horse", &id, FAST).unwrap();
        let loaded = Keystore::load(&path, "correct horse").unwrap();
        assert_eq!(loaded.did(), id.did());
        assert_eq!(loaded.x25519_public_key().as_bytes(), id.x25519_public_key().as_bytes());
        assert_eq!(&Keystore::did(&path).unwrap(), id.did());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_wrong_passphrase_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ks.json");
        Keystore::create(&path, "right", &NodeIdentity::generate(), FAST).unwrap();
        assert!(matches!(Keystore::load(&path, "wrong"), Err(KeystoreError::WrongPassphrase(_))));
    }

    #[test]
    fn an_existing_keystore_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ks.json");
        let first = NodeIdentity::generate();
        Keystore::create(&path, "p", &first, FAST).unwrap();
        let err = Keystore::create(&path, "p", &NodeIdentity::generate(), FAST).unwrap_err();
        assert!(matches!(err, KeystoreError::Exists(_)));
        assert_eq!(Keystore::load(&path, "p").unwrap().did(), first.did());
    }

    #[test]
    fn an_edited_did_or_garbage_file_is_refused_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ks.json");
        Keystore::create(&path, "p", &NodeIdentity::generate(), FAST).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json["did"] = NodeIdentity::generate().did().to_string().into();
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        // The DID is authenticated data: the edit makes decryption fail.
        assert!(Keystore::load(&path, "p").is_err());
        std::fs::write(&path, b"not json").unwrap();
        assert!(matches!(Keystore::load(&path, "p"), Err(KeystoreError::Corrupt { .. })));
        json["version"] = 9.into();
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        assert!(matches!(Keystore::load(&path, "p"), Err(KeystoreError::Version { found: 9, .. })));
    }

    #[test]
    fn an_empty_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Keystore::create(&dir.path().join("k"), "", &NodeIdentity::generate(), FAST);
        assert!(matches!(err, Err(KeystoreError::EmptyPassphrase)));
    }
}
