//! `[topics]`: the gossip service's topics, how it stores their entries and spreads them.

use crate::check::positive;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Gossip topics and entries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Largest entry payload, in bytes, after decompression.
    pub max_payload_bytes: usize,
    /// Payloads larger than this are LZ4-compressed when this node signs them.
    pub compress_above_bytes: usize,
    /// Entries a topic keeps when it names no `max_entries` of its own; older ones are
    /// pruned (their (author, seq) stay known, so they are never fetched again).
    pub default_max_entries: u64,
    /// Entries ahead of a gap held per topic and author, waiting for the gap to fill.
    pub max_pending_per_author: usize,
    /// Bytes of entries held ahead of a gap, node-wide (every topic, every author): one
    /// more is refused (RESOURCE_EXHAUSTED, counted in
    /// `icn_gossip_pending_refused_total{bound="total_bytes"}`) and fetched again once its
    /// gap fills. Without it, fresh keys could each park `max_pending_per_author` entries.
    pub max_pending_bytes: u64,
    /// Topics this node holds, from every creator: a new one beyond it is refused
    /// (RESOURCE_EXHAUSTED, counted in `icn_gossip_topics_refused_total{bound="total"}`).
    pub max_topics: usize,
    /// Topics one creator (a DID) may have on this node, so that one key cannot take
    /// the whole of `max_topics` (`…{bound="per_creator"}`).
    pub max_topics_per_creator: usize,
    /// Equivocations (an author's two different entries at one sequence number) kept as
    /// evidence; beyond it they are counted only
    /// (`icn_gossip_equivocations_not_kept_total`).
    pub max_equivocations: usize,
    /// Live entries buffered per subscriber; one further behind catches up from the store.
    pub subscriber_buffer: usize,
    /// Entries one `Subscribe` stream buffers ahead of its client; also the pushes
    /// waiting for the send stream to netd (beyond it a push is dropped, counted, and
    /// left to anti-entropy).
    pub stream_buffer: usize,
    /// Entries read from the store per step when a subscriber catches up.
    pub catch_up_page: usize,
    /// Most stored entries' writes grouped into one synced write by the committer thread.
    pub commit_group_max: usize,
    /// Stored entries waiting for the committer before publishers wait for room.
    pub commit_backlog: usize,
    /// Readers of a topic a new entry goes to at least: its readers among the mesh,
    /// topped up with random other readers (for topics few peers may read).
    pub fanout: usize,
    /// Peers a node grafts into its mesh: each entry it first sees goes at once to every
    /// mesh peer (see services/gossip/src/mesh).
    pub mesh_degree: usize,
    /// Above this many mesh peers a node prunes back to `mesh_degree`, and refuses grafts.
    pub mesh_degree_high: usize,
    /// Entry ids remembered as already seen (the oldest forgotten first), so that only the
    /// first copy of an entry is verified and sent on.
    pub seen_entries: usize,
    /// How often each topic's version vector goes to `anti_entropy_peers` random peers,
    /// which answer with what this node lacks.
    #[serde(with = "humantime_serde")]
    pub anti_entropy_interval: Duration,
    pub anti_entropy_peers: usize,
    /// Topics announced per anti-entropy round, taken in turn by name: a round costs the
    /// same however many topics peers created, and every topic comes round again.
    pub anti_entropy_topics: usize,
    /// No longer used: an entry is pushed as soon as it is stored (or checked, on a
    /// relay), together with whatever else is ready then. Kept so that configuration
    /// files naming it still load.
    #[serde(with = "humantime_serde")]
    pub push_linger: Duration,
    /// Largest push frame: entries going to one peer together are cut into frames of at
    /// most this many bytes (one entry may exceed it alone).
    pub push_batch_bytes: usize,
    /// Wait before reconnecting to this node's netd after losing it.
    #[serde(with = "humantime_serde")]
    pub netd_retry: Duration,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            max_payload_bytes: 256 * 1024,
            compress_above_bytes: 1024,
            default_max_entries: 1_000_000,
            max_pending_per_author: 10_000,
            max_pending_bytes: 256 * 1024 * 1024,
            max_topics: 10_000,
            max_topics_per_creator: 1_000,
            max_equivocations: 10_000,
            subscriber_buffer: 4096,
            stream_buffer: 256,
            catch_up_page: 512,
            commit_group_max: 1024,
            commit_backlog: 65_536,
            fanout: 4,
            mesh_degree: 4,
            mesh_degree_high: 8,
            seen_entries: 65_536,
            anti_entropy_interval: Duration::from_secs(1),
            anti_entropy_peers: 2,
            anti_entropy_topics: 256,
            push_linger: Duration::from_millis(2),
            push_batch_bytes: 256 * 1024,
            netd_retry: Duration::from_millis(500),
        }
    }
}

impl TopicsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("topics.max_payload_bytes", self.max_payload_bytes)?;
        if self.default_max_entries == 0 {
            return Err(ConfigError::Invalid {
                key: "topics.default_max_entries",
                problem: "must be greater than 0: a topic keeps at least its newest entry".into(),
            });
        }
        positive("topics.max_pending_per_author", self.max_pending_per_author)?;
        positive("topics.max_pending_bytes", self.max_pending_bytes as usize)?;
        positive("topics.max_topics", self.max_topics)?;
        positive("topics.max_topics_per_creator", self.max_topics_per_creator)?;
        positive("topics.max_equivocations", self.max_equivocations)?;
        positive("topics.anti_entropy_topics", self.anti_entropy_topics)?;
        positive("topics.mesh_degree", self.mesh_degree)?;
        positive("topics.seen_entries", self.seen_entries)?;
        if self.mesh_degree_high < self.mesh_degree {
            return Err(ConfigError::Invalid {
                key: "topics.mesh_degree_high",
                problem: format!("must be at least topics.mesh_degree ({})", self.mesh_degree),
            });
        }
        positive("topics.subscriber_buffer", self.subscriber_buffer)?;
        positive("topics.stream_buffer", self.stream_buffer)?;
        positive("topics.catch_up_page", self.catch_up_page)?;
        positive("topics.commit_group_max", self.commit_group_max)?;
        positive("topics.commit_backlog", self.commit_backlog)?;
        Ok(())
    }
}
