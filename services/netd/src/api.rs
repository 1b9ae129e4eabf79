//! The `icn.net.v1.Netd` gRPC API over a running [`Node`].

use crate::error::parse_did;
use crate::{NetError, Node};
use futures::Stream;
use icn_proto::net::v1::netd_server::Netd;
use icn_proto::net::v1::*;
use std::collections::HashSet;
use std::pin::Pin;
use tokio::sync::broadcast::error::RecvError;
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

#[tonic::async_trait]
impl Netd for NetdApi {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendResponse>, Status> {
        let r = request.into_inner();
        let to = parse_did("to", &r.to)?;
        let seq = self.node.send(&to, &r.protocol, r.payload, r.sealed)?;
        Ok(Response::new(SendResponse { seq }))
    }

    async fn broadcast(&self, request: Request<BroadcastRequest>) -> Result<Response<BroadcastResponse>, Status> {
        let r = request.into_inner();
        let sent = self.node.broadcast(&r.protocol, r.payload)?;
        Ok(Response::new(BroadcastResponse { sent_to: sent.iter().map(|d| d.to_string()).collect() }))
    }

    type SubscribeStream = MessageStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let protocols: HashSet<String> = request.into_inner().protocols.into_iter().collect();
        let receiver = self.node.subscribe();
        let shutdown = self.node.shutdown_token();
        let node = self.node.clone();
        // Ends at shutdown, or with RESOURCE_EXHAUSTED once the subscriber falls more than
        // `network.subscriber_buffer` messages behind: a slow reader must not stall peers.
        let stream = futures::stream::unfold(Some((receiver, protocols, shutdown, node)), |state| async move {
            let (mut receiver, protocols, shutdown, node) = state?;
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    next = receiver.recv() => next,
                };
                match next {
                    Ok(m) if protocols.is_empty() || protocols.contains(&m.protocol) => {
                        return Some((Ok((*m).clone()), Some((receiver, protocols, shutdown, node))));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        node.note_lagged_subscriber();
                        let status = Status::resource_exhausted(format!(
                            "subscriber fell {missed} messages behind (network.subscriber_buffer); resubscribe"
                        ));
                        return Some((Err(status), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
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

    async fn disconnect(&self, _: Request<DisconnectRequest>) -> Result<Response<DisconnectResponse>, Status> {
        Err(icn_runtime::pending("intentional disconnects (netd reconnection, issue #3)"))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn estimate_rtt(
        &self,
        request: Request<EstimateRttRequest>,
    ) -> Result<Response<EstimateRttResponse>, Status> {
        let did = parse_did("did", &request.into_inner().did)?;
        let rtt = self.node.rtt(&did)?;
        Ok(Response::new(EstimateRttResponse { rtt_us: rtt.as_micros() as u64, measured: true }))
    }
}
