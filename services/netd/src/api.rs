//! The `icn.net.v1.Netd` gRPC API over a running [`Node`].

use crate::error::parse_did;
use crate::{NetError, Node};
use futures::Stream;
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

/// The class a request names; an unknown one is refused rather than guessed.
fn class_of(r: &SendRequest) -> Result<DeliveryClass, NetError> {
    DeliveryClass::try_from(r.class)
        .map_err(|_| NetError::InvalidArgument(format!("`class` {} is not a delivery class", r.class)))
}

/// One request of a send stream, started now; its result (an error is a result too)
/// once it is accepted.
fn start_send(node: &Node, r: SendRequest) -> futures::future::BoxFuture<'static, SendResult> {
    let started = parse_did("to", &r.to)
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
        let (node, mut requests) = (self.node.clone(), request.into_inner());
        let (window, shutdown) = (self.node.stream_buffer(), self.node.shutdown_token());
        let (tx, rx) = tokio::sync::mpsc::channel(window);
        // Each request takes its place in its peer's queue as it is read, so a stream's
        // messages keep their order; durable ones are answered as their commits land, in
        // request order, with up to `network.stream_buffer` waiting at once.
        self.node.spawn(async move {
            let mut waiting = futures::stream::FuturesOrdered::new();
            let mut open = true;
            while open || !waiting.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(result) = waiting.next(), if !waiting.is_empty() => {
                        if tx.send(Ok(result)).await.is_err() {
                            return;
                        }
                    }
                    next = requests.message(), if open && waiting.len() < window => match next {
                        Ok(Some(r)) => waiting.push_back(start_send(&node, r)),
                        Ok(None) => open = false,
                        Err(status) => {
                            tracing::debug!(error = %status, "a send stream broke off");
                            open = false;
                        }
                    },
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
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
