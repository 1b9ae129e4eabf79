//! The gateway's login challenge, in the one form every party agrees on:
//! `icn-gateway-login/v1 <node DID> <member DID> <64 hex digits>`.
//!
//! The gateway writes it ([`challenge`]); a client reads it ([`check`]) before signing
//! it for [`Purpose::Login`](crate::Purpose::Login), and refuses one that is not in this
//! form, that names another member, or that names another node than the one the client
//! meant to log in to. The purpose context already keeps a login signature from being
//! anything else; the node check keeps a malicious gateway from relaying another node's
//! challenge and logging in there as the member.

use crate::Did;

/// First word of every challenge: what it is, and its version.
pub const CHALLENGE_DOMAIN: &str = "icn-gateway-login/v1";
/// Random bytes in a challenge.
pub const CHALLENGE_RANDOM_BYTES: usize = 32;

/// The text of a challenge from `node` for `member`.
pub fn challenge(node: &Did, member: &Did, random: &[u8; CHALLENGE_RANDOM_BYTES]) -> Vec<u8> {
    format!("{CHALLENGE_DOMAIN} {node} {member} {}", hex::encode(random)).into_bytes()
}

/// Why a client will not sign what it was sent as a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("not a login challenge (expected `{CHALLENGE_DOMAIN} <node> <member> <random>`)")]
    Form,
    #[error("the challenge names the member {0}, not this member")]
    OtherMember(String),
    #[error("the challenge is from node {got}, not the expected node {expected}")]
    OtherNode { got: String, expected: String },
}

/// Checks a challenge before `member` signs it; returns the node it names. When the
/// caller knows which node it meant to reach (`expected_node`), the challenge must name it.
pub fn check(challenge: &[u8], member: &Did, expected_node: Option<&Did>) -> Result<Did, ChallengeError> {
    let text = std::str::from_utf8(challenge).map_err(|_| ChallengeError::Form)?;
    let words: Vec<&str> = text.split(' ').collect();
    let [domain, node, named, random] = words[..] else { return Err(ChallengeError::Form) };
    let random_ok = random.len() == 2 * CHALLENGE_RANDOM_BYTES && random.bytes().all(|b| b.is_ascii_hexdigit());
    if domain != CHALLENGE_DOMAIN || !random_ok {
        return Err(ChallengeError::Form);
    }
    let node: Did = node.parse().map_err(|_| ChallengeError::Form)?;
    if named != member.as_str() {
        return Err(ChallengeError::OtherMember(named.to_string()));
    }
    if let Some(expected) = expected_node {
        if &node != expected {
            return Err(ChallengeError::OtherNode { got: node.to_string(), expected: expected.to_string() });
        }
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeIdentity;

    #[test]
    fn a_client_signs_only_a_challenge_for_itself_from_the_node_it_meant() {
        let (node, member, other) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
        let good = challenge(node.did(), member.did(), &[9; 32]);
        assert_eq!(check(&good, member.did(), Some(node.did())), Ok(node.did().clone()));
        assert_eq!(check(&good, member.did(), None), Ok(node.did().clone()));
        assert!(matches!(check(&good, other.did(), None), Err(ChallengeError::OtherMember(_))));
        assert!(matches!(check(&good, member.did(), Some(other.did())), Err(ChallengeError::OtherNode { .. })));
        // A transfer's digest, or anything else, is not a challenge.
        assert_eq!(check(&[7; 32], member.did(), None), Err(ChallengeError::Form));
        let mut trailing = good.clone();
        trailing.extend_from_slice(b" more");
        assert_eq!(check(&trailing, member.did(), None), Err(ChallengeError::Form));
        let short = format!("{CHALLENGE_DOMAIN} {} {} abcd", node.did(), member.did());
        assert_eq!(check(short.as_bytes(), member.did(), None), Err(ChallengeError::Form));
    }
}
