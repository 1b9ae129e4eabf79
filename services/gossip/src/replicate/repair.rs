//! Anti-entropy: the exact repair behind the best-effort push. Every interval each
//! travelling topic's version vector goes to a few peers; a peer answers with exactly
//! the entries the sender lacks (durably), and asks back for what it lacks itself. Each
//! round also refreshes the peer list and the mesh (the mesh's heartbeat).

use super::{eligible, in_turn, Replicator};
use crate::store::Reader;
use icn_identity::Did;
use icn_proto::gossip::v1::TopicScope;
use icn_proto::gossip::wire::v1::{gossip_frame::Body, Digest, GossipFrame, TopicAnnounce};
use rand::seq::SliceRandom;
use std::sync::Arc;

impl Replicator {
    /// Sends `from` exactly what its vector lacks; asks back for what ours lacks.
    pub(super) async fn answer_digest(&self, from: &Did, digest: Digest) {
        let Ok(topic) = self.store.topic(&digest.topic, &Reader::Did(self.me.clone())) else { return };
        if topic.scope == TopicScope::Local as i32 || !self.store.readable_by(&topic, from) {
            return;
        }
        let ours = self.store.version_vector(&topic.name);
        // What the peer lacks goes in chunks of `push_batch_bytes`, each read off the
        // async threads and sent before the next is read: a digest with empty heads asks
        // for a topic's whole history, which must never sit in memory at once.
        for (author, head) in &ours {
            let mut next = digest.heads.get(author).copied().unwrap_or(0) + 1;
            while next <= *head {
                let (store, name, author, head) = (self.store.clone(), topic.name.clone(), author.clone(), *head);
                let max_bytes = self.config.push_batch_bytes;
                let chunk =
                    tokio::task::spawn_blocking(move || store.entries_of(&name, &author, next, head, max_bytes)).await;
                let chunk = match chunk {
                    Ok(Ok(chunk)) => chunk,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "reading entries for a repair failed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading entries for a repair stopped");
                        break;
                    }
                };
                let Some(last) = chunk.last().map(|e| e.seq) else { break };
                next = last + 1;
                let sent = self.lanes.send_entries_durable(from, chunk, self.config.push_batch_bytes).await;
                self.metrics.repaired.inc_by(sent as u64);
            }
        }
        let we_lack = digest.heads.iter().any(|(author, head)| *head > ours.get(author).copied().unwrap_or(0));
        if we_lack && !digest.reply {
            let ask = Digest { topic: topic.name.clone(), heads: ours.into_iter().collect(), reply: true };
            self.lanes.send_durable(from, &GossipFrame { body: Some(Body::Digest(ask)) }).await;
        }
    }

    /// Every interval: the peers and the mesh refreshed, then travelling topics,
    /// `anti_entropy_topics` at a time in turn, each with its vector, to a few eligible
    /// peers.
    pub(super) async fn anti_entropy(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.anti_entropy_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor = String::new();
        loop {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let peers = self.refresh_peers().await;
            if peers.is_empty() {
                continue;
            }
            self.metrics.rounds.inc();
            let topics = self.store.topics(&Reader::Did(self.me.clone()));
            for topic in in_turn(topics, &mut cursor, self.config.anti_entropy_topics) {
                let mut targets = eligible(&self.store, &topic, &peers);
                targets.shuffle(&mut rand::thread_rng());
                for peer in targets.into_iter().take(self.config.anti_entropy_peers) {
                    let announce =
                        GossipFrame { body: Some(Body::Topics(TopicAnnounce { topics: vec![topic.clone()] })) };
                    self.lanes.send_durable(peer, &announce).await;
                    let heads = self.store.version_vector(&topic.name).into_iter().collect();
                    let digest = Digest { topic: topic.name.clone(), heads, reply: false };
                    self.lanes.send_durable(peer, &GossipFrame { body: Some(Body::Digest(digest)) }).await;
                }
            }
        }
    }
}
