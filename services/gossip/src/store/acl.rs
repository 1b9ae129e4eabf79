//! Who may read and write a topic: the one ACL rule, [`Store::check_access`], which
//! every read path (API reads, listings, which peers may hold a topic) and every write
//! path (local publishes, entries from peers and snapshots) asks.
//!
//! The rule is the same for reading and writing; what differs is how a refusal is told.
//! A reader refused a topic is told it does not exist, so a private topic's existence
//! does not leak; a writer is told its entry breaks the ACL, a rejection counted by
//! reason. This module must never grant access by any other path, nor trust a caller's
//! claim about the topic it checks.

use super::Store;
use crate::GossipError;
use icn_identity::Did;
use icn_proto::gossip::v1::{acl, RejectionReason, Topic};

/// Who is reading, for ACL checks on every read path.
#[derive(Clone, Debug)]
pub enum Reader {
    Did(Did),
    /// No identity to read as (a node in limited mode): public topics only.
    Anonymous,
}

impl Reader {
    fn did(&self) -> Option<&Did> {
        match self {
            Reader::Did(did) => Some(did),
            Reader::Anonymous => None,
        }
    }
}

/// What a caller wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// See the topic and its entries.
    Read,
    /// Have an entry stored in the topic (as its author).
    Write,
}

impl Store {
    /// Whether `who` may have `access` to `topic`, and if not, the refusal to give:
    /// NOT_FOUND for a read, an ACL_VIOLATION rejection for a write.
    pub(super) fn check_access(&self, topic: &Topic, who: &Reader, access: Access) -> Result<(), GossipError> {
        let allowed = match topic.acl.as_ref().and_then(|a| a.rule.as_ref()) {
            None | Some(acl::Rule::Public(_)) => true,
            Some(acl::Rule::MinTrust(m)) => who.did().is_some_and(|d| self.trust_of(d) >= m.score),
            Some(acl::Rule::Participants(p)) => who.did().is_some_and(|d| p.dids.iter().any(|x| x == d.as_str())),
        };
        match (allowed, access) {
            (true, _) => Ok(()),
            (false, Access::Read) => {
                Err(GossipError::NotFound(format!("no topic `{}` is known to this node", topic.name)))
            }
            (false, Access::Write) => Err(GossipError::Rejected {
                reason: RejectionReason::AclViolation,
                why: match who.did() {
                    Some(author) => format!("{author} may not publish to `{}`", topic.name),
                    None => format!("an anonymous author may not publish to `{}`", topic.name),
                },
            }),
        }
    }

    /// Whether the node `did` may hold and read `topic` (decides where entries are sent).
    pub fn readable_by(&self, topic: &Topic, did: &Did) -> bool {
        self.check_access(topic, &Reader::Did(did.clone()), Access::Read).is_ok()
    }

    fn trust_of(&self, did: &Did) -> f64 {
        self.trust.score_of(did.as_str())
    }
}
