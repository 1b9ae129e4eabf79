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

#[tonic::async_trait]
impl Netd for NetdApi {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendResponse>, Status> {
        let r = request.into_inner();
        let to = parse_did("to", &r.to)?;
        let seq = self.node.send(&to, &r.protocol, r.payload, r.sealed).await?;
        Ok(Response::new(SendResponse { seq }))
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
