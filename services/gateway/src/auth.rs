//! Who is calling: DID challenge login, scoped tokens, revocation.
//!
//! A member asks for a challenge, signs it with the key of its DID, and gets a token: a
//! JWT (HS256) naming the DID, the scopes granted and an expiry, signed with the
//! gateway's secret. The challenge is in the one form `icn_identity::login` defines
//! (domain, this node's DID, the member's DID, random bytes) and is signed for the login
//! purpose, so the signature is good for nothing but logging in here, and each challenge
//! is answered once. Revoked token ids are kept in the gateway's store until their tokens
//! would have expired anyway, so a revocation survives a restart.

use crate::challenges::{Bound, Challenges};
use icn_identity::{login, Did, Purpose};
use icn_storage::Storage;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use prometheus::{IntCounterVec, Opts};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// What a token may be used for.
pub const SCOPES: &[&str] =
    &["gossip:read", "gossip:write", "ledger:read", "ledger:write", "compute:read", "compute:write", "admin"];
/// Scopes every member gets; `admin` only the DIDs configured as admins.
const MEMBER_SCOPES: &[&str] =
    &["gossip:read", "gossip:write", "ledger:read", "ledger:write", "compute:read", "compute:write"];
/// Shortest signing secret accepted.
const MIN_SECRET_BYTES: usize = 32;
pub const REVOKED_CF: &str = "revoked";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no token: send `authorization: Bearer <token>` (POST /v1/auth/login gives one)")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not this gateway's")]
    Forged,
    #[error("the token expired; log in again")]
    Expired,
    #[error("the token was revoked; log in again")]
    Revoked,
    #[error("this call needs the scope `{0}`, which the token does not carry")]
    Scope(String),
    #[error("`{0}` is not a DID")]
    BadDid(String),
    #[error("the challenge is unknown, used or expired: ask for a new one")]
    UnknownChallenge,
    #[error("the signature is not {0}'s over the challenge")]
    BadSignature(String),
    #[error("unknown scope `{0}`")]
    UnknownScope(String),
    #[error("{}", match .0 {
        Bound::Total => "too many login challenges are outstanding on this node (api.max_challenges): try again shortly",
        Bound::PerDid => "this DID holds as many unanswered login challenges as allowed (api.challenges_per_did): answer one or wait for it to expire",
    })]
    TooManyChallenges(Bound),
    #[error("this node has no identity yet, so it cannot name itself in a challenge: create one with `icnctl id init` and restart")]
    NoNodeIdentity,
    #[error("only the token's owner or an admin may revoke it")]
    NotYours,
    /// The revocation store failed: a fault of the gateway, not of the token.
    #[error("the gateway's token store failed: {0}")]
    Store(String),
}

/// The claims of a token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The caller's DID.
    pub sub: String,
    /// Space-separated scopes.
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The node that issued it.
    pub iss: String,
}

impl Claims {
    pub fn has(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }

    pub fn require(&self, scope: &str) -> Result<(), AuthError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(AuthError::Scope(scope.into()))
        }
    }
}

pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

pub struct Auth {
    /// The HS256 keys made from the gateway's secret (never logged).
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// This node, named in every challenge; none in limited mode (no login then).
    node: Option<Did>,
    token_ttl: Duration,
    challenge_ttl: Duration,
    admins: Vec<String>,
    challenges: Mutex<Challenges>,
    /// `icn_gateway_challenges_refused_total{bound}`.
    challenges_refused: IntCounterVec,
    storage: Storage,
}

impl Auth {
    pub fn new(
        config: &icn_config::IcnConfig,
        node: Option<Did>,
        storage: Storage,
        metrics: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let path = if config.api.token_secret_file.as_os_str().is_empty() {
            config.node.data_dir.join("gateway").join("token-secret")
        } else {
            config.api.token_secret_file.clone()
        };
        let secret = load_or_create_secret(&path, config.api.token_secret_file.as_os_str().is_empty())?;
        Ok(Self {
            encoding: EncodingKey::from_secret(&secret)
                .map_err(|e| anyhow::anyhow!("the token-signing secret: {e}"))?,
            decoding: DecodingKey::from_secret(&secret)
                .map_err(|e| anyhow::anyhow!("the token-signing secret: {e}"))?,
            node,
            token_ttl: config.api.token_ttl,
            challenge_ttl: config.api.challenge_ttl,
            admins: config.api.admins.clone(),
            challenges: Mutex::new(Challenges::new(config.api.max_challenges, config.api.challenges_per_did)),
            challenges_refused: icn_telemetry::metrics::register(
                metrics,
                IntCounterVec::new(
                    Opts::new("gateway_challenges_refused_total", "Login challenges refused at a bound, by bound"),
                    &["bound"],
                )?,
            ),
            storage,
        })
    }

    /// A fresh single-use challenge for `did`.
    pub fn challenge(&self, did: &str, now_ms: i64) -> Result<(Vec<u8>, i64), AuthError> {
        let member = did.parse::<Did>().map_err(|_| AuthError::BadDid(did.into()))?;
        let node = self.node.as_ref().ok_or(AuthError::NoNodeIdentity)?;
        let mut random = [0u8; login::CHALLENGE_RANDOM_BYTES];
        rand::thread_rng().fill_bytes(&mut random);
        let nonce = login::challenge(node, &member, &random);
        let expires = now_ms + self.challenge_ttl.as_millis() as i64;
        let issued = self.challenges.lock().expect("not poisoned").issue(nonce.clone(), did, expires, now_ms);
        if let Err(bound) = issued {
            self.challenges_refused.with_label_values(&[bound.label()]).inc();
            return Err(AuthError::TooManyChallenges(bound));
        }
        Ok((nonce, expires))
    }

    /// Exchanges a signed challenge for a token with the scopes asked (all granted when
    /// none is asked).
    pub fn login(
        &self,
        did: &str,
        nonce: &[u8],
        signature: &[u8],
        scopes: &[String],
        now_ms: i64,
    ) -> Result<Issued, AuthError> {
        let parsed: Did = did.parse().map_err(|_| AuthError::BadDid(did.into()))?;
        for s in scopes {
            if !SCOPES.contains(&s.as_str()) {
                return Err(AuthError::UnknownScope(s.clone()));
            }
        }
        {
            // Taken out whether the signature holds or not: a challenge is answered once.
            let mut challenges = self.challenges.lock().expect("not poisoned");
            match challenges.take(nonce) {
                Some((owner, expires)) if owner == did && expires > now_ms => {}
                _ => return Err(AuthError::UnknownChallenge),
            }
        }
        if !parsed.verify_for(Purpose::Login, nonce, signature) {
            return Err(AuthError::BadSignature(did.into()));
        }
        let grantable: Vec<&str> =
            MEMBER_SCOPES.iter().copied().chain(self.admins.iter().any(|a| a == did).then_some("admin")).collect();
        let granted: Vec<&str> = if scopes.is_empty() {
            grantable
        } else {
            grantable.into_iter().filter(|g| scopes.iter().any(|s| s == g)).collect()
        };
        let mut jti = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut jti);
        let claims = Claims {
            sub: did.to_string(),
            scope: granted.join(" "),
            iat: now_ms / 1000,
            exp: (now_ms + self.token_ttl.as_millis() as i64) / 1000,
            jti: hex::encode(jti),
            iss: self.node.as_ref().map(Did::to_string).unwrap_or_default(),
        };
        Ok(Issued { token: self.sign(&claims), claims })
    }

    fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 over serialisable claims cannot fail")
    }

    /// The claims of a valid, unexpired, unrevoked token of this gateway.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, AuthError> {
        // Only HS256 with this gateway's secret: a token naming another algorithm (or
        // "none") is not ours. Expiry is checked below against the caller's clock, so
        // tests and the API judge it alike.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let decoded =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Forged
                }
                _ => AuthError::Malformed,
            })?;
        let claims = decoded.claims;
        if claims.exp * 1000 <= now_ms {
            return Err(AuthError::Expired);
        }
        if self.is_revoked(&claims.jti)? {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Whether the token these claims came from still holds: unexpired and unrevoked
    /// (asked again of long-lived streams).
    pub fn still_valid(&self, claims: &Claims, now_ms: i64) -> Result<(), AuthError> {
        if claims.exp * 1000 <= now_ms {
            return Err(AuthError::Expired);
        }
        if self.is_revoked(&claims.jti)? {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }

    /// Revokes `jti` (the caller's own token unless it is an admin), durably.
    pub fn revoke(&self, caller: &Claims, jti: &str, expires_s: Option<i64>) -> Result<(), AuthError> {
        if jti != caller.jti && !caller.has("admin") {
            return Err(AuthError::NotYours);
        }
        // Kept until the longest a token issued now could live; its own expiry if known.
        let until = expires_s.unwrap_or(caller.iat + self.token_ttl.as_secs() as i64 * 2);
        let cf = self.storage.cf(REVOKED_CF).map_err(|e| AuthError::Store(e.to_string()))?;
        self.storage
            .db()
            .put_cf_opt(cf, jti.as_bytes(), until.to_be_bytes(), &Storage::durable())
            .map_err(|e| AuthError::Store(e.to_string()))?;
        Ok(())
    }

    /// A store that cannot answer fails closed, as a server error.
    fn is_revoked(&self, jti: &str) -> Result<bool, AuthError> {
        let cf = self.storage.cf(REVOKED_CF).map_err(|e| AuthError::Store(e.to_string()))?;
        let found = self.storage.db().get_cf(cf, jti.as_bytes()).map_err(|e| AuthError::Store(e.to_string()))?;
        Ok(found.is_some())
    }
}

/// Reads the secret; creates one (random, mode 0600) when the file is the default one
/// and absent. A configured file must exist: a typo must not silently mint a new secret.
fn load_or_create_secret(path: &Path, may_create: bool) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    if !path.exists() && may_create {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let mut secret = [0u8; 48];
        rand::thread_rng().fill_bytes(&mut secret);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(path)?, hex::encode(secret).as_bytes())?;
        tracing::info!(file = %path.display(), "created a token-signing secret");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token-signing secret {} (api.token_secret_file)", path.display()))?;
    let secret = text.trim().as_bytes().to_vec();
    anyhow::ensure!(
        secret.len() >= MIN_SECRET_BYTES,
        "the token-signing secret in {} is shorter than {MIN_SECRET_BYTES} bytes",
        path.display()
    );
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;

    fn auth(dir: &Path, admins: Vec<String>) -> Auth {
        let mut config = icn_config::IcnConfig::default();
        config.node.data_dir = dir.to_path_buf();
        config.api.admins = admins;
        let storage = Storage::open(&dir.join("store"), &[REVOKED_CF]).unwrap();
        Auth::new(&config, Some(NodeIdentity::generate().did().clone()), storage, &prometheus::Registry::new()).unwrap()
    }

    fn login(a: &Auth, who: &NodeIdentity, scopes: &[&str], now: i64) -> Result<Issued, AuthError> {
        let (nonce, _) = a.challenge(who.did().as_str(), now)?;
        let sig = who.sign_for(Purpose::Login, &nonce).to_bytes();
        a.login(who.did().as_str(), &nonce, &sig, &scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>(), now)
    }

    #[test]
    fn a_signed_challenge_gives_a_scoped_token_that_expires_and_can_be_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let member = NodeIdentity::generate();
        let a = auth(dir.path(), vec![]);
        let issued = login(&a, &member, &["ledger:read", "admin"], 1_000_000).unwrap();
        assert_eq!(issued.claims.scope, "ledger:read", "admin is only for configured admins");
        let claims = a.verify(&issued.token, 1_000_000).unwrap();
        assert_eq!(claims.sub, member.did().as_str());
        assert_eq!(claims.require("ledger:write"), Err(AuthError::Scope("ledger:write".into())));
        assert_eq!(a.verify(&issued.token, 1_000_000 + 3_600_000), Err(AuthError::Expired));
        // Tampered payload, wrong secret, another algorithm, "none".
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine;
        let mut parts: Vec<String> = issued.token.split('.').map(String::from).collect();
        parts[1] = B64.encode(br#"{"sub":"x","scope":"admin","iat":0,"exp":99999999999,"jti":"j","iss":"n"}"#);
        assert_eq!(a.verify(&parts.join("."), 1_000_000), Err(AuthError::Forged));
        let other = auth(tempfile::tempdir().unwrap().path(), vec![]);
        assert_eq!(other.verify(&issued.token, 1_000_000), Err(AuthError::Forged));
        let mut other_alg = parts.clone();
        other_alg[0] = B64.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        assert_eq!(a.verify(&other_alg.join("."), 1_000_000), Err(AuthError::Forged));
        // "none" is no algorithm the library knows: refused before any signature check.
        parts[0] = B64.encode(br#"{"alg":"none"}"#);
        parts[2] = String::new();
        assert!(matches!(a.verify(&parts.join("."), 1_000_000), Err(AuthError::Forged | AuthError::Malformed)));
        assert_eq!(a.verify("garbage", 1_000_000), Err(AuthError::Malformed));
        a.revoke(&claims, &claims.jti, Some(claims.exp)).unwrap();
        assert_eq!(a.verify(&issued.token, 1_000_000), Err(AuthError::Revoked));
    }

    #[test]
    fn a_challenge_is_answered_once_by_its_own_did_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let (member, other) = (NodeIdentity::generate(), NodeIdentity::generate());
        let a = auth(dir.path(), vec![member.did().to_string()]);
        let (nonce, _) = a.challenge(member.did().as_str(), 0).unwrap();
        let forged = other.sign_for(Purpose::Login, &nonce).to_bytes();
        assert!(matches!(a.login(member.did().as_str(), &nonce, &forged, &[], 0), Err(AuthError::BadSignature(_))));
        let good = member.sign_for(Purpose::Login, &nonce).to_bytes();
        assert_eq!(a.login(member.did().as_str(), &nonce, &good, &[], 0).err(), Some(AuthError::UnknownChallenge));
        let (nonce, _) = a.challenge(member.did().as_str(), 0).unwrap();
        let good = member.sign_for(Purpose::Login, &nonce).to_bytes();
        assert_eq!(a.login(member.did().as_str(), &nonce, &good, &[], 61_000).err(), Some(AuthError::UnknownChallenge));
        // The member's signature over the challenge for any other purpose is not a login.
        let (nonce, _) = a.challenge(member.did().as_str(), 0).unwrap();
        let as_transfer = member.sign_for(Purpose::Transfer, &nonce).to_bytes();
        assert!(matches!(
            a.login(member.did().as_str(), &nonce, &as_transfer, &[], 0),
            Err(AuthError::BadSignature(_))
        ));
        let issued = login(&a, &member, &[], 0).unwrap();
        assert!(issued.claims.has("admin"), "configured admins get admin");
        assert!(std::fs::metadata(dir.path().join("gateway/token-secret")).unwrap().len() >= 64);
    }
}
