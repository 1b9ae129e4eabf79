//! Replication through the node's gossip service: each cooperative has a topic,
//! `ledger/<coop_id>`, whose entries are batches of ledger entries ([`LedgerBatch`]).
//!
//! - *Publishing*: the journal is the outbox. Entries submitted through this node's API
//!   are published after they are durable, in journal order, from a cursor kept in the
//!   store; a crash or a gossip outage delays publication but loses nothing.
//! - *Following*: every cooperative topic gossip holds is followed from the gossip
//!   position the ledger stored with the last group it applied from it, so entries are
//!   applied once each, in the topic's order, across restarts.
//!
//! What travels needs no trust in the publisher: every record inside is signed by a
//! member and checked by the same rules here as anywhere.

use crate::commit::LedgerNode;
use crate::error::LedgerError;
use crate::state::Source;
use icn_ledger_records::coop;
use icn_proto::gossip::v1::{
    acl, create_topic_request, gossip_client::GossipClient, publish_request, subscribe_request, Acl,
    CreateTopicRequest, GetTopicRequest, ListTopicsRequest, PublishPayload, PublishRequest, SubscribeRequest,
    TopicScope, TopicSpec,
};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerBatch, LedgerEntry};
use icn_runtime::Context;
use icn_telemetry::propagation::TracedChannel;
use prost::Message;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub type Gossip = GossipClient<TracedChannel>;

/// Journal records read per publishing round.
const PUBLISH_READ: usize = 4096;

/// Starts publishing and following; a node without identity does neither.
pub fn start(ctx: &Context, node: Arc<LedgerNode>, gossip: Gossip) {
    let Some(identity) = ctx.identity.as_ref() else {
        tracing::warn!("no node identity: the ledger serves local reads only and does not replicate");
        return;
    };
    let me = identity.did().to_string();
    let max_bytes = node.config.publish_max_bytes.min(ctx.config.topics.max_payload_bytes);
    ctx.spawn(publish(ctx.clone(), node.clone(), gossip.clone(), max_bytes));
    ctx.spawn(discover(ctx.clone(), node, gossip, me));
}

/// Makes sure the cooperative's topic exists in gossip, creating it signed by this node.
pub async fn ensure_topic(gossip: &mut Gossip, coop_id: &str) -> Result<(), LedgerError> {
    let name = coop::topic(coop_id);
    let unavailable = |s: tonic::Status| LedgerError::GossipUnavailable(format!("{}: {}", s.code(), s.message()));
    match gossip.get_topic(GetTopicRequest { name: name.clone(), reader: String::new() }).await {
        Ok(_) => return Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => {}
        Err(s) => return Err(unavailable(s)),
    }
    let spec = TopicSpec {
        name,
        acl: Some(Acl { rule: Some(acl::Rule::Public(acl::Public {})) }),
        // A ledger's history is never pruned: a node joining later needs all of it.
        max_entries: u64::MAX,
        scope: TopicScope::Network as i32,
    };
    match gossip.create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Spec(spec)) }).await {
        Ok(_) => Ok(()),
        // Another node created it first: the same topic for our purpose.
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => Err(unavailable(s)),
    }
}

async fn publish(ctx: Context, node: Arc<LedgerNode>, mut gossip: Gossip, max_bytes: usize) {
    let mut ensured: HashSet<String> = HashSet::new();
    loop {
        let failed = match publish_round(&node, &mut gossip, &mut ensured, max_bytes).await {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(error = %e, "publishing ledger entries to gossip failed, will retry");
                true
            }
        };
        let wait = if failed { node.config.gossip_retry } else { node.config.discover_interval };
        tokio::select! {
            _ = node.local_committed.notified(), if !failed => {}
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.cancelled() => {
                // What is durable but not yet published goes at the next start.
                let _ = publish_round(&node, &mut gossip, &mut ensured, max_bytes).await;
                return;
            }
        }
    }
}

/// Publishes every local journal entry after the cursor, batched per cooperative.
async fn publish_round(
    node: &LedgerNode,
    gossip: &mut Gossip,
    ensured: &mut HashSet<String>,
    max_bytes: usize,
) -> Result<(), LedgerError> {
    let reports = std::mem::take(&mut *node.fork_reports.lock().expect("not poisoned"));
    for report in reports {
        let coop_id = report.coop_id.clone();
        let batch = LedgerBatch { entries: vec![LedgerEntry { body: Some(Body::Fork(report)) }] };
        send(node, gossip, ensured, &coop_id, batch).await?;
    }
    loop {
        let store = node.store().clone();
        let published = store.published()?;
        let records = tokio::task::spawn_blocking(move || store.journal_after(published, PUBLISH_READ))
            .await
            .map_err(|e| LedgerError::CommitFailed(e.to_string()))??;
        let Some((last, _)) = records.last() else { return Ok(()) };
        let last = *last;
        // Consecutive local entries of one cooperative share a batch, up to the size cap.
        let mut pending: Option<(String, LedgerBatch, usize)> = None;
        let mut done = published;
        for (position, record) in records {
            let entry = match record.entry {
                Some(e) if record.local => e,
                _ => continue,
            };
            let coop_id = entry_coop(&entry).to_string();
            let size = entry.encoded_len() + 8;
            let fits = pending.as_ref().is_some_and(|(c, _, bytes)| *c == coop_id && bytes + size <= max_bytes);
            if !fits {
                if let Some((c, batch, _)) = pending.take() {
                    send(node, gossip, ensured, &c, batch).await?;
                    node.store().set_published(done)?;
                }
                pending = Some((coop_id, LedgerBatch::default(), 0));
            }
            let (_, batch, bytes) = pending.as_mut().expect("set above");
            batch.entries.push(entry);
            *bytes += size;
            done = position;
        }
        if let Some((c, batch, _)) = pending.take() {
            send(node, gossip, ensured, &c, batch).await?;
        }
        node.store().set_published(last)?;
    }
}

async fn send(
    node: &LedgerNode,
    gossip: &mut Gossip,
    ensured: &mut HashSet<String>,
    coop_id: &str,
    batch: LedgerBatch,
) -> Result<(), LedgerError> {
    if !ensured.contains(coop_id) {
        ensure_topic(gossip, coop_id).await?;
        ensured.insert(coop_id.to_string());
    }
    let entries = batch.entries.len() as u64;
    let payload = PublishPayload { topic: coop::topic(coop_id), payload: batch.encode_to_vec() };
    gossip
        .publish(PublishRequest { signing: Some(publish_request::Signing::Payload(payload)) })
        .await
        .map_err(|s| LedgerError::GossipUnavailable(format!("{}: {}", s.code(), s.message())))?;
    node.metrics.published.inc_by(entries);
    Ok(())
}

fn entry_coop(entry: &LedgerEntry) -> &str {
    entry.body.as_ref().map_or("", coop::coop_of)
}

/// Follows every cooperative topic gossip holds, starting a follower for each new one.
async fn discover(ctx: Context, node: Arc<LedgerNode>, mut gossip: Gossip, me: String) {
    let followed: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let mut cursor = String::new();
        loop {
            let page =
                icn_proto::common::v1::PageRequest { limit: icn_runtime::paging::MAX_PAGE, cursor: cursor.clone() };
            let listed = gossip.list_topics(ListTopicsRequest { page: Some(page), reader: me.clone() }).await;
            let Ok(listed) = listed.map(|r| r.into_inner()) else { break };
            for topic in listed.topics {
                let Some(coop_id) = coop::coop_of_topic(&topic.name) else { continue };
                if followed.lock().expect("not poisoned").insert(coop_id.to_string()) {
                    tracing::info!(coop = %coop_id, "following the cooperative's gossip topic");
                    ctx.spawn(follow(ctx.clone(), node.clone(), gossip.clone(), coop_id.to_string(), me.clone()));
                }
            }
            if listed.next_cursor.is_empty() {
                break;
            }
            cursor = listed.next_cursor;
        }
        tokio::select! {
            _ = tokio::time::sleep(node.config.discover_interval) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

async fn follow(ctx: Context, node: Arc<LedgerNode>, gossip: Gossip, coop_id: String, me: String) {
    let topic = coop::topic(&coop_id);
    let max_payload = ctx.config.topics.max_payload_bytes;
    let (opener, handler) = (node.clone(), node.clone());
    let reread_gossip = gossip.clone();
    let (open_coop, handle_coop, handle_me) = (coop_id.clone(), coop_id.clone(), me.clone());
    let what = topic.clone();
    icn_runtime::follow::follow(
        ctx.shutdown.clone(),
        &what,
        node.config.gossip_retry,
        move || {
            // From the position the journal has taken this cooperative to.
            let (node, mut gossip, coop_id, topic, me) =
                (opener.clone(), gossip.clone(), open_coop.clone(), topic.clone(), me.clone());
            async move {
                let after = node.store().gossip_cursor(&coop_id)?;
                let request =
                    SubscribeRequest { topic, reader: me, start: Some(subscribe_request::Start::AfterPosition(after)) };
                let stream = gossip.subscribe(request).await;
                stream
                    .map(|s| s.into_inner())
                    .map_err(|s| LedgerError::GossipUnavailable(format!("{}: {}", s.code(), s.message())))
            }
        },
        move |stored: icn_proto::gossip::v1::StoredEntry| {
            let (node, coop_id, me) = (handler.clone(), handle_coop.clone(), handle_me.clone());
            let gossip = reread_gossip.clone();
            async move {
                let entries = decode(&node, &coop_id, &stored, max_payload, &me).await;
                let source = Source::Peer { position: stored.position };
                node.submit(entries, source, Some((coop_id.clone(), stored.position))).await?;
                // Evicted transfers whose wait is over: read the topic again from the
                // first of them up to here, before going on.
                while let Some(from) = node.rewind_due(&coop_id).await {
                    let read = reread(&node, gossip.clone(), &coop_id, from, stored.position, max_payload, &me).await;
                    node.rewind_done(&coop_id).await;
                    read?;
                }
                Ok::<(), LedgerError>(())
            }
        },
    )
    .await
}

/// Reads the cooperative's topic again over positions `from..=to` and submits what this
/// node does not hold (transfers evicted at a bound among them), without moving the
/// stored cursor: the follower's own entries do.
async fn reread(
    node: &LedgerNode,
    mut gossip: Gossip,
    coop_id: &str,
    from: u64,
    to: u64,
    max_payload: usize,
    me: &str,
) -> Result<(), LedgerError> {
    let topic = coop::topic(coop_id);
    let mut after = from.saturating_sub(1);
    tracing::info!(coop = %coop_id, from, to, "reading evicted transfers again");
    while after < to {
        let page =
            icn_proto::common::v1::PageRequest { limit: icn_runtime::paging::MAX_PAGE, cursor: after.to_string() };
        let request = icn_proto::gossip::v1::GetEntriesRequest {
            topic: topic.clone(),
            reader: me.to_string(),
            author: String::new(),
            page: Some(page),
        };
        let entries = gossip
            .get_entries(request)
            .await
            .map_err(|s| LedgerError::GossipUnavailable(format!("{}: {}", s.code(), s.message())))?
            .into_inner()
            .entries;
        if entries.is_empty() {
            break;
        }
        for stored in entries.into_iter().take_while(|s| s.position <= to) {
            after = stored.position;
            let batch = decode(node, coop_id, &stored, max_payload, me).await;
            if !batch.is_empty() {
                node.submit(batch, Source::Peer { position: stored.position }, None).await?;
            }
        }
    }
    Ok(())
}

/// The entries of one gossip entry that this node still needs: those of this
/// cooperative it does not hold yet (its own publications come back, too).
async fn decode(
    node: &LedgerNode,
    coop_id: &str,
    stored: &icn_proto::gossip::v1::StoredEntry,
    max_payload: usize,
    me: &str,
) -> Vec<LedgerEntry> {
    let batch = stored
        .entry
        .as_ref()
        .ok_or_else(|| "no entry".to_string())
        .and_then(|e| icn_gossip_records::plain_payload(e, max_payload).map_err(|e| e.to_string()))
        .and_then(|p| LedgerBatch::decode(p.as_slice()).map_err(|e| e.to_string()));
    let batch = match batch {
        Ok(b) => b,
        Err(e) => {
            node.metrics.invalid_payloads.inc();
            tracing::warn!(coop = %coop_id, position = stored.position, error = %e, "not a ledger batch, skipped");
            return Vec::new();
        }
    };
    let entries: Vec<LedgerEntry> = batch.entries.into_iter().filter(|e| entry_coop(e) == coop_id).collect();
    // Transfers this node holds already (its own, coming back) are skipped before their
    // signatures are checked again. Whether it holds one may be a read of the store
    // (`store::past`): off the async threads. Should that fail, none is skipped here
    // (the committer finds them known all the same).
    let hashes: Vec<Option<icn_ledger_records::Hash>> = entries
        .iter()
        .map(|e| match &e.body {
            Some(Body::Transfer(t)) => Some(icn_ledger_records::hash(t)),
            _ => None,
        })
        .collect();
    let coop = coop_id.to_string();
    let known = node
        .read_blocking(move |state| {
            let c = state.coops.get(&coop);
            hashes.iter().map(|h| h.is_some_and(|h| c.is_some_and(|c| c.knows(&h)))).collect::<Vec<bool>>()
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(coop = %coop_id, error = %e, "could not look up which transfers are known");
            vec![false; entries.len()]
        });
    entries
        .into_iter()
        .zip(known)
        .filter(|(_, known)| !known)
        .map(|(e, _)| e)
        .filter(|e| match &e.body {
            Some(Body::Transfer(_)) => true,
            Some(Body::Fork(_)) => {
                // A peer's report reaches the state (which then does not report the same
                // fork again); this node's own comes back and is dropped here.
                let from_peer = stored.entry.as_ref().is_some_and(|e| e.author != me);
                if from_peer {
                    node.metrics.fork_reports_received.inc();
                }
                from_peer
            }
            // This node's own votes come back: it has them.
            Some(Body::Vote(v)) => v.validator != me,
            Some(_) => true,
            None => false,
        })
        .collect()
}
