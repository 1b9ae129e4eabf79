//! Topics: creating one, taking a newer revision from its creator (an ACL update or a
//! peer's announcement), and looking topics up as a reader may see them.
//!
//! A topic is verified (name, creator's signature, a reserved name's pinned settings)
//! before anything is kept, and only its creator may replace it; a lookup never shows a
//! topic the reader may not read. A reserved topic (`ledger/…`) has one set of settings
//! whoever signs it, so a second signer's copy is the same topic, not a rival.
//!
//! Anyone with a key can sign topics, and peers announce what they hold, so a new name
//! is taken only within `topics.max_topics` node-wide and `topics.max_topics_per_creator`
//! per creator; a new revision of a held topic is always taken.

use super::acl::{Access, Reader};
use super::commit::Durable;
use super::layout::TOPICS_CF;
use super::Store;
use crate::GossipError;
use icn_gossip_records as records;
use icn_proto::gossip::v1::{RejectionReason, Topic};
use icn_storage::WriteBatch;
use prost::Message;
use std::collections::HashMap;

/// The topics this node holds, with how many each creator made.
#[derive(Default)]
pub(super) struct TopicTable {
    by_name: HashMap<String, Topic>,
    per_creator: HashMap<String, usize>,
}

impl TopicTable {
    pub(super) fn insert(&mut self, topic: Topic) {
        let creator = topic.creator.clone();
        if self.by_name.insert(topic.name.clone(), topic).is_none() {
            *self.per_creator.entry(creator).or_default() += 1;
        }
    }

    fn get(&self, name: &str) -> Option<&Topic> {
        self.by_name.get(name)
    }

    /// Which bound a new topic by `creator` would pass, if any.
    fn bound_passed(
        &self,
        creator: &str,
        config: &icn_config::TopicsConfig,
    ) -> Option<(&'static str, &'static str, usize)> {
        if self.by_name.len() >= config.max_topics {
            Some(("total", "topics.max_topics", config.max_topics))
        } else if self.per_creator.get(creator).copied().unwrap_or(0) >= config.max_topics_per_creator {
            Some(("per_creator", "topics.max_topics_per_creator", config.max_topics_per_creator))
        } else {
            None
        }
    }
}

impl Store {
    /// Stores a verified topic; answers once it is durable. Same topic again: `Ok(false)`.
    /// Another topic under the name: ALREADY_EXISTS.
    pub async fn put_topic(&self, topic: Topic) -> Result<bool, GossipError> {
        self.create_topic(topic)?.wait().await
    }

    fn create_topic(&self, topic: Topic) -> Result<Durable<bool>, GossipError> {
        self.recorded(records::verify_topic(&topic).map_err(GossipError::from))?;
        let mut topics = self.topics.write().expect("topics lock");
        if let Some(existing) = topics.get(&topic.name) {
            let same = |t: &Topic| (t.acl.clone(), t.max_entries, t.scope, t.creator.clone());
            if same(existing) == same(&topic) || records::reserved::is_pinned(&topic.name) {
                return Ok(Durable::done(false));
            }
            return Err(GossipError::AlreadyExists(format!(
                "topic `{}` exists with another creator or settings",
                topic.name
            )));
        }
        self.persist_topic(&mut topics, topic)
    }

    /// Takes a topic from a peer or an ACL update: new topics are stored; a known one is
    /// replaced only by a higher revision signed by the same creator. `Ok(true)` when
    /// something changed; answers once it is durable.
    pub async fn upsert_topic(&self, topic: Topic) -> Result<bool, GossipError> {
        self.replace_topic(topic)?.wait().await
    }

    /// [`Store::upsert_topic`] for callers on a blocking thread.
    pub fn upsert_topic_blocking(&self, topic: Topic) -> Result<bool, GossipError> {
        self.replace_topic(topic)?.wait_blocking()
    }

    fn replace_topic(&self, topic: Topic) -> Result<Durable<bool>, GossipError> {
        self.recorded(records::verify_topic(&topic).map_err(GossipError::from))?;
        self.refuse_if_failed()?;
        let mut topics = self.topics.write().expect("topics lock");
        if let Some(existing) = topics.get(&topic.name) {
            if records::reserved::is_pinned(&topic.name) {
                return Ok(Durable::done(false));
            }
            if existing.creator != topic.creator {
                self.record_rejection(RejectionReason::AclViolation);
                return Err(GossipError::Rejected {
                    reason: RejectionReason::AclViolation,
                    why: format!("only the creator {} may change topic `{}`", existing.creator, topic.name),
                });
            }
            if topic.revision <= existing.revision {
                return Ok(Durable::done(false));
            }
        }
        self.persist_topic(&mut topics, topic)
    }

    /// Queues the topic's write and takes it into memory, both under the topics lock so
    /// that writes land in the order of changes.
    fn persist_topic(&self, topics: &mut TopicTable, topic: Topic) -> Result<Durable<bool>, GossipError> {
        if topics.get(&topic.name).is_none() {
            if let Some((bound, setting, value)) = topics.bound_passed(&topic.creator, &self.config) {
                self.metrics.topics_refused.with_label_values(&[bound]).inc();
                return Err(GossipError::ResourceExhausted(format!(
                    "topic `{}` refused: this node holds as many topics as it takes ({setting} = {value})",
                    topic.name
                )));
            }
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.storage.cf(TOPICS_CF)?, topic.name.as_bytes(), topic.encode_to_vec());
        let committing = self.queue(batch, Vec::new(), None)?;
        topics.insert(topic);
        Ok(Durable::committing(true, committing))
    }

    /// The topic, if `reader` may see it. A private topic is NOT_FOUND to others, so its
    /// existence does not leak.
    pub fn topic(&self, name: &str, reader: &Reader) -> Result<Topic, GossipError> {
        let topics = self.topics.read().expect("topics lock");
        let topic = topics
            .get(name)
            .ok_or_else(|| GossipError::NotFound(format!("no topic `{name}` is known to this node")))?;
        self.check_access(topic, reader, Access::Read)?;
        Ok(topic.clone())
    }

    /// Whether `reader` may still read topic `name`, as it stands now (its latest ACL
    /// revision): asked for each entry a subscription delivers, so that withdrawn access
    /// ends the stream. No clone of the topic: this is on every delivery's path.
    pub fn may_read(&self, name: &str, reader: &Reader) -> Result<(), GossipError> {
        let topics = self.topics.read().expect("topics lock");
        let topic = topics
            .get(name)
            .ok_or_else(|| GossipError::NotFound(format!("no topic `{name}` is known to this node")))?;
        self.check_access(topic, reader, Access::Read)
    }

    /// Every topic `reader` may see, by name.
    pub fn topics(&self, reader: &Reader) -> Vec<Topic> {
        let topics = self.topics.read().expect("topics lock");
        let mut list: Vec<Topic> =
            topics.by_name.values().filter(|t| self.check_access(t, reader, Access::Read).is_ok()).cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// The topic `author` may publish to, or why not.
    pub(super) fn writable_topic(&self, name: &str, author: &Reader) -> Result<Topic, GossipError> {
        let topic = {
            let topics = self.topics.read().expect("topics lock");
            topics.get(name).cloned().ok_or_else(|| GossipError::Rejected {
                reason: RejectionReason::UnknownTopic,
                why: format!("no topic `{name}` is known to this node"),
            })?
        };
        self.check_access(&topic, author, Access::Write)?;
        Ok(topic)
    }
}
