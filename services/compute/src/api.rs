//! The `icn.compute.v1.Compute` gRPC API. compute owns tasks and their placement
//! (placement requests and offers on gossip, a deliberation period measured from the
//! request's timestamp, scoring by trust, RTT, load and price), WebAssembly execution
//! with fuel metering, payment through the ledger, and stateful actors: checkpoints,
//! migration with a timeout on every state, recovery from the latest checkpoint. A task
//! must never hang its executor.
//!
//! At this stage every call answers UNIMPLEMENTED naming the issue that brings them.

use futures::Stream;
use icn_proto::compute::v1::{self as pb, compute_server::Compute};
use icn_runtime::Context;
use std::pin::Pin;
use tonic::{Request, Response, Status};

const CAPABILITY: &str = "compute placement and actors, a later issue";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ComputeApi {
    _ctx: Context,
}

impl ComputeApi {
    pub fn new(ctx: Context) -> Self {
        Self { _ctx: ctx }
    }
}

#[tonic::async_trait]
impl Compute for ComputeApi {
    type WatchTaskStream = ResponseStream<pb::TaskEvent>;

    async fn submit_task(
        &self,
        _request: Request<pb::SubmitTaskRequest>,
    ) -> Result<Response<pb::SubmitTaskResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_task(&self, _request: Request<pb::GetTaskRequest>) -> Result<Response<pb::GetTaskResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_tasks(
        &self,
        _request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn cancel_task(
        &self,
        _request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::CancelTaskResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn watch_task(
        &self,
        _request: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn send_to_actor(
        &self,
        _request: Request<pb::SendToActorRequest>,
    ) -> Result<Response<pb::SendToActorResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn get_actor(
        &self,
        _request: Request<pb::GetActorRequest>,
    ) -> Result<Response<pb::GetActorResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn migrate_actor(
        &self,
        _request: Request<pb::MigrateActorRequest>,
    ) -> Result<Response<pb::MigrateActorResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }

    async fn list_executors(
        &self,
        _request: Request<pb::ListExecutorsRequest>,
    ) -> Result<Response<pb::ListExecutorsResponse>, Status> {
        Err(icn_runtime::pending(CAPABILITY))
    }
}
