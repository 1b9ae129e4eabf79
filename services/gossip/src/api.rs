//! The `icn.gossip.v1.Gossip` gRPC API. gossip owns topics and their ACLs (`Public`,
//! `MinTrust`, `Participants`), signed entries, each topic's version vector (also the
//! anti-entropy digest), eager push plus anti-entropy between nodes through netd, and
//! versioned, checksummed snapshots, all durable in its RocksDB. A private topic's
//! entries must never reach, or be readable by, anyone but its participants.
//!
//! At this stage every call answers UNIMPLEMENTED naming issue #4, which brings them.

use futures::Stream;
use icn_proto::gossip::v1::{self as pb, gossip_server::Gossip};
use icn_runtime::Context;
use std::pin::Pin;
use tonic::{Request, Response, Status, Streaming};

const CAPABILITY: &str = "gossip topics, entries and replication, issue #4";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct GossipApi {
    _ctx: Context,
}

impl GossipApi {
    pub fn new(ctx: Context) -> Self {
        Self { _ctx: ctx }
    }
}

#[tonic::async_trait]
impl Gossip for GossipApi {
    type SubscribeStream = ResponseStream<pb::StoredEntry>;
    type ExportSnapshotStream = ResponseStream<pb::SnapshotChunk>;

    async fn create_topic(
        &self,
        _request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_topic(
        &self,
        _request: Request<pb::GetTopicRequest>,
    ) -> Result<Response<pb::GetTopicResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn update_topic_acl(
        &self,
        _request: Request<pb::UpdateTopicAclRequest>,
    ) -> Result<Response<pb::UpdateTopicAclResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn publish(&self, _request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn subscribe(
        &self,
        _request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_entries(
        &self,
        _request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::GetEntriesResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_version_vector(
        &self,
        _request: Request<pb::GetVersionVectorRequest>,
    ) -> Result<Response<pb::GetVersionVectorResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn stats(&self, _request: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn export_snapshot(
        &self,
        _request: Request<pb::ExportSnapshotRequest>,
    ) -> Result<Response<Self::ExportSnapshotStream>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn restore_snapshot(
        &self,
        _request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::RestoreSnapshotResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }
}
