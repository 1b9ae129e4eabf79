//! The `icn.net.v1.Netd` gRPC API over a running [`Node`].

use crate::error::parse_did;
use crate::{NetError, Node};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use icn_identity::Did;
use icn_proto::net::v1::netd_server::Netd;
use icn_proto::net::v1::*;
use std::collections::HashSet;
use std::pin::Pin;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

pub struct NetdApi {
    node: Node,
}

impl NetdApi {
    pub fn new(node: Node) -> Self {
        Self { node }
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<InboundMessage, Status>> + Send>>;
type ResultStream = Pin<Box<dyn Stream<Item = Result<SendResult, Status>> + Send>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<InboundBatch, Status>> + Send>>;
type BatchResultStream = Pin<Box<dyn Stream<Item = Result<SendBatchResult, Status>> + Send>>;

/// The class a request names; an unknown one is refused rather than guessed.
fn class_of(r: &SendRequest) -> Result<DeliveryClass, NetError> {
    DeliveryClass::try_from(r.class)
        .map_err(|_| NetError::InvalidArgument(format!("`class` {} is not a delivery class", r.class)))
}

/// One request of a send stream, to `to` as parsed, started now; its result (an error
/// is a result too) once it is accepted.
fn start_send_to(node: &Node, to: Result<Did, NetError>, r: SendRequest) -> BoxFuture<'static, SendResult> {
    let started = to
        .and_then(|to| Ok((to, class_of(&r)?)))
        .and_then(|(to, class)| node.start_send(&to, &r.protocol, r.payload, r.sealed, class));
    let answer = |result: Result<u64, NetError>| match result {
        Ok(seq) => SendResult { seq, code: 0, message: String::new() },
        Err(e) => {
            let status = Status::from(e);
            SendResult { seq: 0, code: status.code() as i32, message: status.message().to_string() }
        }
    };
    match started {
        Ok(committing) => Box::pin(async move { answer(committing.await) }),
        Err(e) => Box::pin(std::future::ready(answer(Err(e)))),
    }
}

/// The last `to` parsed, kept so a run of sends to one peer parses its DID once.
#[derive(Default)]
struct LastDid(Option<(String, Did)>);

impl LastDid {
    fn parse(&mut self, text: &str) -> Result<Did, NetError> {
        match &self.0 {
            Some((last, did)) if last == text => Ok(did.clone()),
            _ => parse_did("to", text).inspect(|did| self.0 = Some((text.to_string(), did.clone()))),
        }
    }
}

/// One batch of a batch send stream, started now message by message (so they keep
/// their order); its results once every message is accepted. A batch over `limit`
/// messages sends nothing: each message is answered INVALID_ARGUMENT.
fn start_batch(node: &Node, messages: Vec<SendRequest>, limit: usize) -> BoxFuture<'static, SendBatchResult> {
    if messages.len() > limit {
        let status = Status::from(NetError::InvalidArgument(format!(
            "a batch of {} messages exceeds network.stream_buffer ({limit})",
            messages.len()
        )));
        let refused = SendResult { seq: 0, code: status.code() as i32, message: status.message().to_string() };
        let results = vec![refused; messages.len()];
        return Box::pin(std::future::ready(SendBatchResult { results }));
    }
    // A batch mostly goes to a few peers: each `to` is parsed (base58) once per run.
    let mut to = LastDid::default();
    let started: Vec<_> = messages
        .into_iter()
        .map(|r| {
            let parsed = to.parse(&r.to);
            start_send_to(node, parsed, r)
        })
        .collect();
    Box::pin(async move { SendBatchResult { results: futures::future::join_all(started).await } })
}

/// The answers of a send stream (`SendStream`, `SendBatches`). Each request is started as
/// it is read, so it takes its place in its peers' queues before the next one and a
/// stream's messages keep their order; answers go back in request order as they are
/// done (durable messages once committed), with up to `network.stream_buffer` messages
/// waiting at once (`start` says how many a request holds; one is read whenever fewer
/// wait). A broken request stream ends reading, not the answers still owed.
fn answer_in_order<Req: Send + 'static, Res: Send + 'static>(
    node: &Node,
    mut requests: tonic::Streaming<Req>,
    mut start: impl FnMut(Req) -> (usize, BoxFuture<'static, Res>) + Send + 'static,
) -> tokio_stream::wrappers::ReceiverStream<Result<Res, Status>> {
    let (window, shutdown) = (node.stream_buffer(), node.shutdown_token());
    let (tx, rx) = tokio::sync::mpsc::channel(window);
    node.spawn(async move {
        let mut waiting = futures::stream::FuturesOrdered::new();
        let (mut open, mut in_flight) = (true, 0usize);
        while open || !waiting.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some((count, result)) = waiting.next(), if !waiting.is_empty() => {
                    in_flight -= count;
                    if tx.send(Ok(result)).await.is_err() {
                        return;
                    }
                }
                next = requests.message(), if open && in_flight < window => match next {
                    Ok(Some(request)) => {
                        let (count, answer) = start(request);
                        in_flight += count;
                        waiting.push_back(answer.map(move |r| (count, r)));
                    }
                    Ok(None) => open = false,
                    Err(status) => {
                        tracing::debug!(error = %status, "a send stream broke off");
                        open = false;
                    }
                },
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl Netd for NetdApi {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendResponse>, Status> {
        let r = request.into_inner();
        let (to, class) = (parse_did("to", &r.to)?, class_of(&r)?);
        let seq = self.node.send(&to, &r.protocol, r.payload, r.sealed, class).await?;
        Ok(Response::new(SendResponse { seq }))
    }

    type SendStreamStream = ResultStream;

    async fn send_stream(
        &self,
        request: Request<tonic::Streaming<SendRequest>>,
    ) -> Result<Response<Self::SendStreamStream>, Status> {
        let node = self.node.clone();
        // A stream mostly goes to a few peers: each `to` is parsed (base58) once per run of
        // requests to it, not once per message (a tenth of the sending node's CPU).
        let mut to = LastDid::default();
        let results = answer_in_order(&self.node, request.into_inner(), move |r: SendRequest| {
            let parsed = to.parse(&r.to);
            (1, start_send_to(&node, parsed, r))
        });
        Ok(Response::new(Box::pin(results)))
    }

    type SendBatchesStream = BatchResultStream;

    async fn send_batches(
        &self,
        request: Request<tonic::Streaming<SendBatch>>,
    ) -> Result<Response<Self::SendBatchesStream>, Status> {
        let (node, limit) = (self.node.clone(), self.node.stream_buffer());
        let results = answer_in_order(&self.node, request.into_inner(), move |batch: SendBatch| {
            (batch.messages.len(), start_batch(&node, batch.messages, limit))
        });
        Ok(Response::new(Box::pin(results)))
    }

    type SubscribeBestEffortStream = BatchStream;

    async fn subscribe_best_effort(
        &self,
        request: Request<SubscribeBestEffortRequest>,
    ) -> Result<Response<Self::SubscribeBestEffortStream>, Status> {
        self.node.require_identity()?;
        let protocols: HashSet<String> = request.into_inner().protocols.into_iter().collect();
        let rx = self.node.subscribe_best_effort(protocols);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| item.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn broadcast(&self, request: Request<BroadcastRequest>) -> Result<Response<BroadcastResponse>, Status> {
        let r = request.into_inner();
        let sent = self.node.broadcast(&r.protocol, r.payload).await?;
        Ok(Response::new(BroadcastResponse { sent_to: sent.iter().map(|d| d.to_string()).collect() }))
    }

    type SubscribeStream = MessageStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = request.into_inner();
        let protocols: HashSet<String> = r.protocols.into_iter().collect();
        let rx = self.node.subscribe(protocols, r.after_position).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| item.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    type SubscribeBatchesStream = BatchStream;

    async fn subscribe_batches(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeBatchesStream>, Status> {
        let r = request.into_inner();
        let protocols: HashSet<String> = r.protocols.into_iter().collect();
        let rx = self.node.subscribe(protocols, r.after_position).await?;
        Ok(Response::new(Box::pin(batches(rx, self.node.batch_limit()))))
    }

    async fn list_peers(&self, _: Request<ListPeersRequest>) -> Result<Response<ListPeersResponse>, Status> {
        Ok(Response::new(ListPeersResponse { peers: self.node.peers() }))
    }

    async fn get_peer(&self, request: Request<GetPeerRequest>) -> Result<Response<Peer>, Status> {
        let did = parse_did("did", &request.into_inner().did)?;
        Ok(Response::new(self.node.peer(&did)?))
    }

    async fn dial(&self, request: Request<DialRequest>) -> Result<Response<Peer>, Status> {
        let r = request.into_inner();
        if r.address.is_empty() {
            return Err(
                NetError::InvalidArgument("`address` is required: host:port of a peer's QUIC endpoint".into()).into()
            );
        }
        let expected = if r.did.is_empty() { None } else { Some(parse_did("did", &r.did)?) };
        let did = self.node.dial(&r.address, expected).await?;
        Ok(Response::new(self.node.peer(&did)?))
    }

    async fn disconnect(&self, request: Request<DisconnectRequest>) -> Result<Response<DisconnectResponse>, Status> {
        let r = request.into_inner();
        let did = parse_did("did", &r.did)?;
        self.node.disconnect(&did, r.intentional).await?;
        Ok(Response::new(DisconnectResponse {}))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn estimate_rtt(
        &self,
        request: Request<EstimateRttRequest>,
    ) -> Result<Response<EstimateRttResponse>, Status> {
        let did = parse_did("did", &request.into_inner().did)?;
        Ok(Response::new(self.node.estimate_rtt(&did)?))
    }
}

/// A subscription's messages in batches: each batch is what is ready when the subscriber
/// asks, at most `max`, in order. A read error ends the stream after the messages before
/// it.
fn batches(
    rx: tokio::sync::mpsc::Receiver<Result<InboundMessage, NetError>>,
    max: usize,
) -> impl Stream<Item = Result<InboundBatch, Status>> + Send {
    futures::stream::unfold((rx, None::<NetError>), move |(mut rx, failed)| async move {
        if let Some(e) = failed {
            return Some((Err(Status::from(e)), (rx, None)));
        }
        let mut messages = match rx.recv().await? {
            Ok(m) => vec![m],
            Err(e) => return Some((Err(Status::from(e)), (rx, None))),
        };
        let mut failed = None;
        while messages.len() < max.max(1) {
            match rx.try_recv() {
                Ok(Ok(m)) => messages.push(m),
                Ok(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        Some((Ok(InboundBatch { messages }), (rx, failed)))
    })
}
