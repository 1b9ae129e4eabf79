//! Topic names that belong to a service. A cooperative's ledger replicates on
//! `ledger/<id>` and its correctness depends on that topic's settings: a topic announced
//! first with LOCAL scope, a small `max_entries` or a closed ACL would silently stop the
//! cooperative from replicating on every node that took it. So the settings of a
//! reserved topic are not anyone's choice: they are fixed here, every node refuses a
//! topic under a reserved prefix with other settings (from its API, a peer or a
//! snapshot), and which node happens to sign the topic first changes nothing.

use icn_proto::gossip::v1::{acl, Acl, Topic, TopicScope};

/// Prefix of the ledger's topics: cooperative `x` replicates on `ledger/x`.
pub const LEDGER_PREFIX: &str = "ledger/";
/// Prefix kept for the compute service's topics; no topic may use it until that
/// service fixes their settings here.
pub const COMPUTE_PREFIX: &str = "compute/";

/// The settings a reserved topic must have.
#[derive(Debug, Clone, PartialEq)]
pub struct Pinned {
    pub acl: Acl,
    pub max_entries: u64,
    pub scope: TopicScope,
}

/// What a name under a reserved prefix must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// Not reserved: the creator chooses.
    Free,
    /// Reserved, with these settings, never changed (revision 1 only).
    Pinned(Pinned),
    /// Reserved and not open to anyone yet.
    Closed(&'static str),
}

pub fn reservation(name: &str) -> Reservation {
    if name.starts_with(LEDGER_PREFIX) {
        Reservation::Pinned(Pinned {
            // Ledger records are signed by members and judged by the ledger's own rules:
            // anyone may carry them.
            acl: Acl { rule: Some(acl::Rule::Public(acl::Public {})) },
            // A ledger's history is never pruned: a node joining later needs all of it.
            max_entries: u64::MAX,
            scope: TopicScope::Network,
        })
    } else if name.starts_with(COMPUTE_PREFIX) {
        Reservation::Closed("the compute service")
    } else {
        Reservation::Free
    }
}

/// Why `topic` may not exist as signed, if it is under a reserved prefix with other
/// settings than the pinned ones.
pub fn check(topic: &Topic) -> Result<(), String> {
    match reservation(&topic.name) {
        Reservation::Free => Ok(()),
        Reservation::Closed(owner) => Err(format!("topic `{}`: the prefix is reserved for {owner}", topic.name)),
        Reservation::Pinned(p) => {
            let scope = TopicScope::try_from(topic.scope).unwrap_or(TopicScope::Unspecified);
            if topic.acl.as_ref() == Some(&p.acl)
                && topic.max_entries == p.max_entries
                && scope == p.scope
                && topic.revision == 1
            {
                Ok(())
            } else {
                Err(format!(
                    "topic `{}` is reserved: it has a public ACL, max_entries {}, {} scope and never changes",
                    topic.name,
                    p.max_entries,
                    p.scope.as_str_name().trim_start_matches("TOPIC_SCOPE_").to_lowercase()
                ))
            }
        }
    }
}

/// Whether two signed topics under one reserved name are the same topic for every
/// purpose, whoever signed them.
pub fn is_pinned(name: &str) -> bool {
    matches!(reservation(name), Reservation::Pinned(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic {
            name: name.into(),
            acl: Some(Acl { rule: Some(acl::Rule::Public(acl::Public {})) }),
            max_entries: u64::MAX,
            scope: TopicScope::Network as i32,
            revision: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_reserved_topic_has_exactly_its_pinned_settings() {
        assert_eq!(check(&topic("ledger/bakery")), Ok(()));
        assert_eq!(check(&Topic { max_entries: 1, ..topic("news") }), Ok(()));
        for squat in [
            Topic { max_entries: 1, ..topic("ledger/bakery") },
            Topic { scope: TopicScope::Local as i32, ..topic("ledger/bakery") },
            Topic {
                acl: Some(Acl { rule: Some(acl::Rule::Participants(acl::Participants { dids: vec![] })) }),
                ..topic("ledger/bakery")
            },
            Topic { acl: None, ..topic("ledger/bakery") },
            Topic { revision: 2, ..topic("ledger/bakery") },
            topic("compute/jobs"),
        ] {
            assert!(check(&squat).is_err(), "{squat:?}");
        }
    }
}
