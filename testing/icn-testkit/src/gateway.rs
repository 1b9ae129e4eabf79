//! A member's side of the gateway, for tests: log in over REST (challenge, signature,
//! token) with the member's own key.

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use icn_identity::NodeIdentity;
use serde_json::{json, Value};

/// Logs `who` in at the gateway at `base` (its HTTP URL) with `http`; returns the token.
/// Empty `scopes` asks for all the gateway grants.
pub async fn login(http: &reqwest::Client, base: &str, who: &NodeIdentity, scopes: &[&str]) -> anyhow::Result<String> {
    let did = who.did().as_str();
    let challenge: Value =
        http.post(format!("{base}/v1/auth/challenge")).json(&json!({ "did": did })).send().await?.json().await?;
    let nonce = challenge["nonce"].as_str().context("a challenge has a nonce")?;
    let nonce_bytes = B64.decode(nonce)?;
    icn_identity::login::check(&nonce_bytes, who.did(), None)?;
    let signature = B64.encode(who.sign_for(icn_identity::Purpose::Login, &nonce_bytes).to_bytes());
    let body = json!({ "did": did, "nonce": nonce, "signature": signature, "scopes": scopes });
    let response = http.post(format!("{base}/v1/auth/login")).json(&body).send().await?;
    anyhow::ensure!(response.status() == 200, "login answered {}", response.status());
    let issued: Value = response.json().await?;
    Ok(issued["token"].as_str().context("a login answers a token")?.to_string())
}
