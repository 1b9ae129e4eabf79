//! Replication's two ways through netd, both directions.
//!
//! - *Best effort* (pushes): frames go into a bounded channel that one long-lived
//!   `SendBatches` stream to netd drains, what is ready in one item, so a push costs no
//!   call or stream item of its own; inbound pushes come from `SubscribeBestEffort` in
//!   batches. When netd is away or the channel is full, a push is dropped (counted in
//!   `gossip_pushes_dropped_total`) and anti-entropy repairs it.
//! - *Durable* (repairs, digests, topics, mesh changes): one `Send` per frame, stored by
//!   netd before it answers; inbound frames are read from netd's inbound log after a
//!   cursor kept in the store, so a crash re-reads rather than loses them.

use super::{Replicator, PROTOCOL};
use icn_identity::Did;
use icn_proto::gossip::v1::Entry;
use icn_proto::gossip::wire::v1::{gossip_frame::Body, GossipFrame, Push};
use icn_proto::net::v1::netd_client::NetdClient;
use icn_proto::net::v1::{
    DeliveryClass, InboundBatch, InboundMessage, ListPeersRequest, PeerState, SendBatch, SendRequest,
    SubscribeBestEffortRequest, SubscribeRequest,
};
use icn_runtime::Context;
use prost::Message;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A netd client that carries the caller's trace context on every call.
type Netd = NetdClient<icn_telemetry::propagation::TracedChannel>;

/// Most pushes in one `SendBatches` item: within netd's default `network.stream_buffer`
/// (256), which bounds a batch, and small enough that a batch is one commit's worth.
const SEND_BATCH_MAX: usize = 64;

/// Meta key of the netd inbound-log position processed so far.
const CURSOR_KEY: &str = "gossip.netd_position";

pub(super) struct Lanes {
    netd: Netd,
    /// Best-effort sends on their way to the send stream.
    outgoing: mpsc::Sender<SendRequest>,
    metrics: super::ReplicationMetrics,
}

impl Lanes {
    /// The lanes, and the receiving end of the best-effort channel for
    /// [`Replicator::send_best_effort`] (bounded by `topics.stream_buffer`).
    pub(super) fn new(
        ctx: &Context,
        metrics: &super::ReplicationMetrics,
    ) -> anyhow::Result<(Self, mpsc::Receiver<SendRequest>)> {
        let netd = NetdClient::new(icn_telemetry::propagation::traced_channel(&ctx.config.endpoints.netd)?);
        let (outgoing, rx) = mpsc::channel(ctx.config.topics.stream_buffer);
        Ok((Self { netd, outgoing, metrics: metrics.clone() }, rx))
    }

    fn netd(&self) -> Netd {
        self.netd.clone()
    }

    /// Connected peers with their incarnations; none while netd cannot be reached.
    pub(super) async fn connected_peers(&self) -> Vec<(Did, String)> {
        match self.netd().list_peers(ListPeersRequest {}).await {
            Ok(r) => r
                .into_inner()
                .peers
                .into_iter()
                .filter(|p| p.state == PeerState::Connected as i32)
                .filter_map(|p| Some((p.did.parse().ok()?, p.incarnation)))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "listing peers from netd failed");
                Vec::new()
            }
        }
    }

    pub(super) async fn send_durable(&self, to: &Did, frame: &GossipFrame) {
        let request = SendRequest {
            to: to.to_string(),
            protocol: PROTOCOL.into(),
            payload: frame.encode_to_vec(),
            sealed: false,
            class: DeliveryClass::Durable as i32,
        };
        if let Err(e) = self.netd().send(request).await {
            tracing::debug!(peer = %to, error = %e, "sending a gossip frame failed");
        }
    }

    /// Sends `entries` durably to `to` in frames of at most `max_bytes`; the count sent.
    pub(super) async fn send_entries_durable(&self, to: &Did, entries: Vec<Entry>, max_bytes: usize) -> usize {
        let mut sent = 0;
        for frame in frames(entries, max_bytes) {
            sent += frame.len();
            self.send_durable(to, &GossipFrame { body: Some(Body::Push(Push { entries: frame })) }).await;
        }
        self.metrics.entries_sent.inc_by(sent as u64);
        sent
    }

    /// Hands `entries` to the send stream for `to`, best-effort, in frames of at most
    /// `max_bytes`; never waits.
    pub(super) fn send_entries_best_effort(&self, to: &Did, entries: Vec<Entry>, max_bytes: usize) {
        for frame in frames(entries, max_bytes) {
            let count = frame.len() as u64;
            let request = SendRequest {
                to: to.to_string(),
                protocol: PROTOCOL.into(),
                payload: GossipFrame { body: Some(Body::Push(Push { entries: frame })) }.encode_to_vec(),
                sealed: false,
                class: DeliveryClass::BestEffort as i32,
            };
            match self.outgoing.try_send(request) {
                Ok(()) => self.metrics.entries_sent.inc_by(count),
                Err(_) => self.metrics.pushes_dropped.with_label_values(&["backlog"]).inc(),
            }
        }
    }
}

/// `entries` cut into frames of at most `max_bytes` each (one entry may exceed it alone).
fn frames(entries: Vec<Entry>, max_bytes: usize) -> Vec<Vec<Entry>> {
    let mut out = Vec::new();
    let mut frame = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        bytes += entry.encoded_len();
        frame.push(entry);
        if bytes >= max_bytes {
            out.push(std::mem::take(&mut frame));
            bytes = 0;
        }
    }
    if !frame.is_empty() {
        out.push(frame);
    }
    out
}

impl Replicator {
    /// Keeps one `SendBatches` stream to netd open and feeds it the best-effort sends,
    /// as many as are ready in one item (at most [`SEND_BATCH_MAX`]), counting those
    /// netd refuses. While netd is away the channel fills and pushes are dropped.
    pub(super) async fn send_best_effort(self: Arc<Self>, mut outgoing: mpsc::Receiver<SendRequest>) {
        loop {
            let (tx, rx) = mpsc::channel(self.config.stream_buffer);
            let mut netd = self.lanes.netd();
            let opened = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                opened = netd.send_batches(tokio_stream::wrappers::ReceiverStream::new(rx)) => opened,
            };
            match opened {
                Ok(results) => {
                    let mut results = results.into_inner();
                    let mut ready = Vec::with_capacity(SEND_BATCH_MAX);
                    loop {
                        tokio::select! {
                            _ = self.ctx.shutdown.cancelled() => return,
                            taken = outgoing.recv_many(&mut ready, SEND_BATCH_MAX) => {
                                if taken == 0 {
                                    return;
                                }
                                let batch = SendBatch { messages: std::mem::take(&mut ready) };
                                if tx.send(batch).await.is_err() {
                                    break;
                                }
                            }
                            result = results.message() => match result {
                                Ok(Some(batch)) => {
                                    for r in batch.results.iter().filter(|r| r.code != 0) {
                                        self.metrics.pushes_dropped.with_label_values(&["refused"]).inc();
                                        tracing::debug!(code = r.code, "netd refused a push: {}", r.message);
                                    }
                                }
                                Ok(None) | Err(_) => break,
                            },
                        }
                    }
                    tracing::info!("the send stream to netd ended; opening it again");
                }
                Err(e) => tracing::info!(error = %e, "cannot open a send stream to netd yet"),
            }
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.netd_retry) => {}
            }
        }
    }

    /// Follows netd's inbound log of durable gossip frames from the stored cursor,
    /// reconnecting whenever netd goes away.
    pub(super) async fn inbound_durable(self: Arc<Self>) {
        let (opener, handler) = (self.clone(), self.clone());
        icn_runtime::follow::follow(
            self.ctx.shutdown.clone(),
            "netd inbound gossip frames",
            self.config.netd_retry,
            move || {
                let this = opener.clone();
                async move {
                    let cursor = this.store.meta(CURSOR_KEY).map_err(|e| format!("reading the netd cursor: {e}"))?;
                    let request = SubscribeRequest {
                        protocols: vec![PROTOCOL.into()],
                        after_position: Some(cursor.unwrap_or(0)),
                    };
                    let stream = this.lanes.netd().subscribe_batches(request).await;
                    stream.map(|s| s.into_inner()).map_err(|s| format!("{}: {}", s.code(), s.message()))
                }
            },
            move |batch: InboundBatch| {
                let this = handler.clone();
                async move {
                    let Some(position) = batch.messages.last().map(|m| m.position) else { return Ok(()) };
                    for m in batch.messages {
                        this.take(m).await;
                    }
                    // Once per batch: a restart reads the batch again, and every frame in
                    // it is idempotent (entries are stored once, joins are sets).
                    if let Err(e) = this.store.set_meta(CURSOR_KEY, position) {
                        tracing::warn!(error = %e, "recording the netd cursor failed");
                    }
                    Ok::<_, String>(())
                }
            },
        )
        .await
    }

    /// Follows netd's best-effort gossip frames, in batches, from now on.
    pub(super) async fn inbound_best_effort(self: Arc<Self>) {
        let (opener, handler) = (self.clone(), self.clone());
        icn_runtime::follow::follow(
            self.ctx.shutdown.clone(),
            "netd best-effort gossip frames",
            self.config.netd_retry,
            move || {
                let this = opener.clone();
                async move {
                    let request = SubscribeBestEffortRequest { protocols: vec![PROTOCOL.into()] };
                    let stream = this.lanes.netd().subscribe_best_effort(request).await;
                    stream.map(|s| s.into_inner()).map_err(|s| format!("{}: {}", s.code(), s.message()))
                }
            },
            move |batch: InboundBatch| {
                let this = handler.clone();
                async move {
                    this.take_best_effort(batch.messages).await;
                    Ok::<_, String>(())
                }
            },
        )
        .await
    }

    /// A batch of best-effort messages: the pushes in it are taken together, so their
    /// signatures are checked in one batch ([`Replicator::take_pushed`]), and stored off
    /// the path while the next batch is read.
    async fn take_best_effort(&self, messages: Vec<InboundMessage>) {
        let mut pushes = Vec::new();
        for m in messages {
            match (m.from.parse::<Did>(), GossipFrame::decode(m.payload.as_slice())) {
                (Ok(from), Ok(GossipFrame { body: Some(Body::Push(push)) })) => pushes.push((from, push.entries)),
                (Ok(from), Ok(frame)) => self.handle(&from, frame).await,
                _ => self.metrics.frames_invalid.inc(),
            }
        }
        let storing = self.take_pushed(pushes, true);
        self.ctx.spawn(async move {
            futures::future::join_all(storing).await;
        });
    }

    /// One inbound durable message.
    async fn take(&self, m: InboundMessage) {
        match (m.from.parse::<Did>(), GossipFrame::decode(m.payload.as_slice())) {
            (Ok(from), Ok(frame)) => self.handle(&from, frame).await,
            _ => self.metrics.frames_invalid.inc(),
        }
    }
}
