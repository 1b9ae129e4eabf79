//! `icnctl topics` and `icnctl topic …`: the gossip service.

use crate::output::Output;
use crate::TopicCommand;
use anyhow::bail;
use icn_proto::common::v1::PageRequest;
use icn_proto::gossip::v1::gossip_client::GossipClient;
use icn_proto::gossip::v1::*;
use tonic::transport::Channel;

async fn client(endpoint: &str) -> anyhow::Result<GossipClient<Channel>> {
    Ok(GossipClient::new(crate::net::channel(endpoint).await?))
}

pub async fn list(endpoint: &str, out: &Output) -> anyhow::Result<()> {
    let topics = client(endpoint).await?.list_topics(ListTopicsRequest::default()).await?.into_inner().topics;
    out.topics(&topics);
    Ok(())
}

pub async fn run(endpoint: &str, command: TopicCommand, out: &Output) -> anyhow::Result<()> {
    let mut gossip = client(endpoint).await?;
    match command {
        TopicCommand::Create { name, participants, min_trust, max_entries } => {
            let rule = match (participants.is_empty(), min_trust) {
                (false, _) => acl::Rule::Participants(acl::Participants { dids: participants }),
                (true, Some(score)) => acl::Rule::MinTrust(acl::MinTrust { score }),
                (true, None) => acl::Rule::Public(acl::Public {}),
            };
            let spec =
                TopicSpec { name, acl: Some(Acl { rule: Some(rule) }), max_entries, scope: TopicScope::Network as i32 };
            let r = gossip
                .create_topic(CreateTopicRequest { signing: Some(create_topic_request::Signing::Spec(spec)) })
                .await?
                .into_inner();
            let topic = r.topic.unwrap_or_default();
            out.done(&format!("{} topic {}", if r.created { "created" } else { "already had" }, topic.name));
        }
        TopicCommand::Publish { topic, payload, .. } => {
            let request = PublishRequest {
                signing: Some(publish_request::Signing::Payload(PublishPayload {
                    topic,
                    payload: payload.into_bytes(),
                })),
            };
            let r = gossip.publish(request).await?.into_inner();
            if let Some(stored) = r.entry {
                out.entry(&stored);
            }
        }
        TopicCommand::Subscribe { topic, after, count } => {
            let start = after.map(subscribe_request::Start::AfterPosition);
            let mut stream =
                gossip.subscribe(SubscribeRequest { topic, reader: String::new(), start }).await?.into_inner();
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                match stream.message().await? {
                    Some(stored) => {
                        out.entry(&stored);
                        seen += 1;
                    }
                    None => bail!("the subscription ended (the service is shutting down)"),
                }
            }
        }
        TopicCommand::Entries { topic, author, limit } => {
            let request = GetEntriesRequest {
                topic,
                reader: String::new(),
                author: author.unwrap_or_default(),
                page: Some(PageRequest { limit, cursor: String::new() }),
            };
            for stored in gossip.get_entries(request).await?.into_inner().entries {
                out.entry(&stored);
            }
        }
    }
    Ok(())
}
