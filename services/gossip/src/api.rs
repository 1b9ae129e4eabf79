//! The `icn.gossip.v1.Gossip` API over the [`Store`]. Every read path checks the
//! reader against the topic's ACL; a request's `reader` names a member reading through
//! the gateway, and an empty one means this node itself.

use crate::replicate::PeerView;
use crate::store::{Applied, Reader, Store};
use crate::subscribers::Subscribers;
use crate::GossipError;
use futures::Stream;
use icn_identity::Did;
use icn_proto::gossip::v1::gossip_server::Gossip;
use icn_proto::gossip::v1::*;
use icn_runtime::Context;
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

pub struct GossipApi {
    ctx: Context,
    store: Arc<Store>,
    metrics: Metrics,
    replication: crate::replicate::ReplicationMetrics,
    snapshots: SnapshotMetrics,
    /// The peers replication works with, for `TopicStats.peers`.
    peers: PeerView,
    subscribers: Subscribers,
}

#[derive(Clone)]
struct Metrics {
    published: prometheus::IntCounter,
}

impl GossipApi {
    pub fn new(
        ctx: Context,
        store: Arc<Store>,
        replication: crate::replicate::ReplicationMetrics,
        peers: PeerView,
    ) -> Self {
        use icn_telemetry::metrics::register;
        let metrics = Metrics {
            published: register(
                &ctx.metrics,
                prometheus::IntCounter::new("gossip_entries_published_total", "Entries published through this node")
                    .expect("valid metric"),
            ),
        };
        let snapshots = SnapshotMetrics::new(&ctx.metrics);
        Self { ctx, store, metrics, replication, snapshots, peers, subscribers: Subscribers::default() }
    }

    fn reader(&self, reader: &str) -> Result<Reader, GossipError> {
        if reader.is_empty() {
            return Ok(match &self.ctx.identity {
                Some(id) => Reader::Did(id.did().clone()),
                None => Reader::Anonymous,
            });
        }
        let did: Did = reader.parse().map_err(|e| GossipError::InvalidArgument(format!("`reader`: {e}")))?;
        Ok(Reader::Did(did))
    }

    fn topic_stats(&self, topic: &Topic) -> TopicStats {
        let (first, last) = self.store.span(&topic.name);
        let vector = self.store.version_vector(&topic.name);
        TopicStats {
            topic: topic.name.clone(),
            entries: if last == 0 { 0 } else { last - first + 1 },
            authors: vector.len() as u32,
            peers: self.peers.exchanging(&self.store, topic) as u32,
            local_subscribers: self.subscribers.count(&topic.name),
            last_position: last,
            last_entry_at_ms: self.store.last_entry_at_ms(&topic.name),
        }
    }
}

use icn_runtime::now_ms;
use icn_runtime::paging::limit as page_limit;

type EntryStream = Pin<Box<dyn Stream<Item = Result<StoredEntry, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Gossip for GossipApi {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let topic = match request.into_inner().signing {
            Some(create_topic_request::Signing::Spec(spec)) => {
                let identity = self.ctx.require_identity()?;
                icn_gossip_records::validate_topic_name(&spec.name).map_err(GossipError::from)?;
                let now = now_ms();
                icn_gossip_records::sign_topic(
                    identity,
                    Topic {
                        name: spec.name,
                        acl: Some(spec.acl.unwrap_or(Acl { rule: Some(acl::Rule::Public(acl::Public {})) })),
                        max_entries: spec.max_entries,
                        scope: if spec.scope == TopicScope::Unspecified as i32 {
                            TopicScope::Network as i32
                        } else {
                            spec.scope
                        },
                        created_at_ms: now,
                        revision: 1,
                        updated_at_ms: now,
                        ..Default::default()
                    },
                )
            }
            Some(create_topic_request::Signing::Signed(topic)) => topic,
            None => {
                return Err(GossipError::InvalidArgument(
                    "give a `spec` (signed by this node) or a `signed` topic".into(),
                )
                .into())
            }
        };
        let created = self.store.put_topic(topic.clone()).await?;
        Ok(Response::new(CreateTopicResponse { topic: Some(topic), created }))
    }

    async fn get_topic(&self, request: Request<GetTopicRequest>) -> Result<Response<GetTopicResponse>, Status> {
        let r = request.into_inner();
        let topic = self.store.topic(&r.name, &self.reader(&r.reader)?)?;
        let stats = self.topic_stats(&topic);
        Ok(Response::new(GetTopicResponse { topic: Some(topic), stats: Some(stats) }))
    }

    async fn list_topics(&self, request: Request<ListTopicsRequest>) -> Result<Response<ListTopicsResponse>, Status> {
        let r = request.into_inner();
        let limit = page_limit(&r.page);
        let after = r.page.map(|p| p.cursor).unwrap_or_default();
        let topics: Vec<Topic> = self
            .store
            .topics(&self.reader(&r.reader)?)
            .into_iter()
            .filter(|t| t.name > after)
            .take(limit + 1)
            .collect();
        let next_cursor = if topics.len() > limit { topics[limit - 1].name.clone() } else { String::new() };
        Ok(Response::new(ListTopicsResponse { topics: topics.into_iter().take(limit).collect(), next_cursor }))
    }

    async fn update_topic_acl(
        &self,
        request: Request<UpdateTopicAclRequest>,
    ) -> Result<Response<UpdateTopicAclResponse>, Status> {
        let topic = match request.into_inner().signing {
            Some(update_topic_acl_request::Signing::NodeSigned(update)) => {
                let identity = self.ctx.require_identity()?;
                let current = self.store.topic(&update.topic, &Reader::Did(identity.did().clone()))?;
                if current.creator != identity.did().as_str() {
                    return Err(Status::permission_denied(format!(
                        "only the topic's creator {} may change its ACL; this node is {}",
                        current.creator,
                        identity.did()
                    )));
                }
                let acl = update.acl.ok_or_else(|| GossipError::InvalidArgument("`acl` is required".into()))?;
                icn_gossip_records::sign_topic(
                    identity,
                    Topic { acl: Some(acl), revision: current.revision + 1, updated_at_ms: now_ms(), ..current },
                )
            }
            Some(update_topic_acl_request::Signing::Signed(topic)) => topic,
            None => return Err(GossipError::InvalidArgument("give `node_signed` or a `signed` topic".into()).into()),
        };
        if !self.store.upsert_topic(topic.clone()).await? {
            return Err(Status::failed_precondition(format!(
                "topic `{}` already has revision {} or later",
                topic.name, topic.revision
            )));
        }
        Ok(Response::new(UpdateTopicAclResponse { topic: Some(topic) }))
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        // An entry held for a gap is answered with itself at position 0.
        let mut held = None;
        let applied = match request.into_inner().signing {
            Some(publish_request::Signing::Payload(p)) => {
                let identity = self.ctx.require_identity()?;
                icn_gossip_records::validate_topic_name(&p.topic).map_err(GossipError::from)?;
                let max = self.store.config().max_payload_bytes;
                if p.payload.len() > max {
                    self.store.record_rejection(RejectionReason::Oversize);
                    return Err(GossipError::Rejected {
                        reason: RejectionReason::Oversize,
                        why: format!("payload of {} bytes exceeds the limit of {max} bytes", p.payload.len()),
                    }
                    .into());
                }
                self.store.publish_local(identity, &p.topic, &p.payload, now_ms()).await
            }
            Some(publish_request::Signing::Signed(entry)) => {
                held = Some(entry.clone());
                self.store.apply(entry, now_ms()).await
            }
            None => {
                return Err(GossipError::InvalidArgument(
                    "give a `payload` (signed by this node) or a `signed` entry".into(),
                )
                .into())
            }
        };
        let response = match applied.inspect_err(|e| {
            if let GossipError::Rejected { reason, why } = e {
                tracing::info!(reason = reason.as_str_name(), "entry rejected: {why}");
            }
        })? {
            Applied::Stored(stored) => {
                self.metrics.published.inc();
                PublishResponse { entry: stored.into_iter().next(), duplicate: false }
            }
            Applied::Duplicate(stored) => PublishResponse { entry: Some(stored), duplicate: true },
            Applied::Held => PublishResponse {
                entry: held.map(|entry| StoredEntry { entry: Some(entry), position: 0, received_at_ms: now_ms() }),
                duplicate: false,
            },
        };
        Ok(Response::new(response))
    }

    type SubscribeStream = EntryStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = request.into_inner();
        let reader = self.reader(&r.reader)?;
        let topic = self.store.topic(&r.topic, &reader)?;
        let (after, skip) = match r.start {
            Some(subscribe_request::Start::AfterPosition(p)) => (p, Default::default()),
            Some(subscribe_request::Start::AfterVector(v)) => (0, v.heads),
            None => (self.store.span(&topic.name).1, Default::default()),
        };
        let (tx, rx) = mpsc::channel(self.store.config().stream_buffer);
        let live = self.store.watch();
        let subscription = self.subscribers.open(&topic.name);
        let feed = crate::subscribers::feed(
            self.store.clone(),
            topic.name,
            reader,
            live,
            after,
            skip,
            tx,
            self.ctx.shutdown.clone(),
        );
        self.ctx.spawn(async move {
            feed.await;
            // Counted for exactly as long as the feed runs.
            drop(subscription);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_entries(&self, request: Request<GetEntriesRequest>) -> Result<Response<GetEntriesResponse>, Status> {
        let r = request.into_inner();
        let topic = self.store.topic(&r.topic, &self.reader(&r.reader)?)?;
        let limit = page_limit(&r.page);
        let mut cursor: u64 = match r.page.as_ref().map(|p| p.cursor.as_str()).unwrap_or("") {
            "" => 0,
            c => c.parse().map_err(|_| {
                GossipError::InvalidArgument(format!("`page.cursor` `{c}` is not one this API gave out"))
            })?,
        };
        let mut entries = Vec::new();
        // Scan in pages until enough entries of the requested author are found.
        loop {
            let batch = self.store.entries_after(&topic.name, cursor, limit)?;
            let exhausted = batch.len() < limit;
            for s in batch {
                cursor = s.position;
                if r.author.is_empty() || s.entry.as_ref().is_some_and(|e| e.author == r.author) {
                    entries.push(s);
                    if entries.len() == limit {
                        break;
                    }
                }
            }
            if entries.len() == limit || exhausted {
                break;
            }
        }
        let next_cursor = if entries.len() == limit { cursor.to_string() } else { String::new() };
        Ok(Response::new(GetEntriesResponse { entries, next_cursor }))
    }

    async fn get_version_vector(
        &self,
        request: Request<GetVersionVectorRequest>,
    ) -> Result<Response<GetVersionVectorResponse>, Status> {
        let r = request.into_inner();
        let topic = self.store.topic(&r.topic, &self.reader(&r.reader)?)?;
        let heads = self.store.version_vector(&topic.name).into_iter().collect();
        Ok(Response::new(GetVersionVectorResponse {
            vector: Some(VersionVector { heads }),
            last_position: self.store.span(&topic.name).1,
        }))
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let wanted = request.into_inner().topics;
        let reader = self.reader("")?;
        let topics = self
            .store
            .topics(&reader)
            .into_iter()
            .filter(|t| wanted.is_empty() || wanted.contains(&t.name))
            .map(|t| self.topic_stats(&t))
            .collect();
        let rejections = [
            RejectionReason::BadSignature,
            RejectionReason::AclViolation,
            RejectionReason::Oversize,
            RejectionReason::UnknownTopic,
            RejectionReason::Replay,
            RejectionReason::DecompressionBomb,
            RejectionReason::ReservedTopic,
            RejectionReason::Equivocation,
            RejectionReason::UnknownFormat,
        ]
        .into_iter()
        .map(|reason| RejectionCount { reason: reason as i32, count: self.store.rejections(reason) })
        .collect();
        Ok(Response::new(StatsResponse {
            topics,
            entries_published: self.metrics.published.get(),
            entries_received: self.store.stored_total(),
            entries_sent: self.replication.entries_sent.get(),
            anti_entropy_rounds: self.replication.rounds.get(),
            entries_repaired: self.replication.repaired.get(),
            rejections,
        }))
    }

    async fn list_equivocations(
        &self,
        request: Request<ListEquivocationsRequest>,
    ) -> Result<Response<ListEquivocationsResponse>, Status> {
        let r = request.into_inner();
        let limit = page_limit(&r.page);
        let cursor = r.page.map(|p| p.cursor).unwrap_or_default();
        let after = hex::decode(&cursor).map_err(|_| {
            GossipError::InvalidArgument(format!("`page.cursor` `{cursor}` is not one this API gave out"))
        })?;
        let store = self.store.clone();
        let (equivocations, last) = tokio::task::spawn_blocking(move || store.equivocations(&r.topic, &after, limit))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let next_cursor = if equivocations.len() == limit { hex::encode(last) } else { String::new() };
        Ok(Response::new(ListEquivocationsResponse { equivocations, next_cursor }))
    }

    type ExportSnapshotStream = ChunkStream;

    async fn export_snapshot(
        &self,
        request: Request<ExportSnapshotRequest>,
    ) -> Result<Response<Self::ExportSnapshotStream>, Status> {
        let started = std::time::Instant::now();
        let node = self.ctx.identity.as_ref().map(|i| i.did().to_string()).unwrap_or_default();
        let reader = self.reader("")?;
        let topics = request.into_inner().topics;
        let store = self.store.clone();
        let chunks =
            tokio::task::spawn_blocking(move || crate::snapshot::export(&store, &reader, &node, &topics, now_ms()))
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
        let bytes: usize = chunks.iter().map(|c| c.encoded_len()).sum();
        self.snapshots.record("export", "ok", bytes, started.elapsed());
        Ok(Response::new(Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))))
    }

    async fn restore_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RestoreSnapshotResponse>, Status> {
        let started = std::time::Instant::now();
        let identity = self.ctx.require_identity()?.clone();
        let mut stream = request.into_inner();
        let mut chunks = Vec::new();
        let mut bytes = 0usize;
        while let Some(chunk) = stream.message().await? {
            bytes += chunk.encoded_len();
            chunks.push(chunk);
        }
        let store = self.store.clone();
        let result =
            tokio::task::spawn_blocking(move || crate::snapshot::restore(&store, identity.did(), chunks, now_ms()))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        self.snapshots.record("restore", if result.is_ok() { "ok" } else { "refused" }, bytes, started.elapsed());
        let restored = result?;
        tracing::info!(?restored, "snapshot restored");
        Ok(Response::new(RestoreSnapshotResponse {
            topics_restored: restored.topics,
            entries_restored: restored.entries,
            entries_present: restored.present,
            entries_rejected: restored.rejected,
        }))
    }
}

/// Snapshot metrics: operations by kind and result, and the size and duration of the last.
#[derive(Clone)]
struct SnapshotMetrics {
    operations: prometheus::IntCounterVec,
    bytes: prometheus::IntGaugeVec,
    seconds: prometheus::GaugeVec,
}

impl SnapshotMetrics {
    fn new(registry: &prometheus::Registry) -> Self {
        use icn_telemetry::metrics::register;
        Self {
            operations: register(
                registry,
                prometheus::IntCounterVec::new(
                    prometheus::Opts::new(
                        "gossip_snapshot_operations_total",
                        "Snapshot exports and restores, by result",
                    ),
                    &["kind", "result"],
                )
                .expect("valid metric"),
            ),
            bytes: register(
                registry,
                prometheus::IntGaugeVec::new(
                    prometheus::Opts::new(
                        "gossip_snapshot_last_bytes",
                        "Size of the last snapshot exported or restored",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            seconds: register(
                registry,
                prometheus::GaugeVec::new(
                    prometheus::Opts::new(
                        "gossip_snapshot_last_seconds",
                        "Duration of the last snapshot export or restore",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
        }
    }

    fn record(&self, kind: &str, result: &str, bytes: usize, took: std::time::Duration) {
        self.operations.with_label_values(&[kind, result]).inc();
        self.bytes.with_label_values(&[kind]).set(bytes as i64);
        self.seconds.with_label_values(&[kind]).set(took.as_secs_f64());
    }
}
