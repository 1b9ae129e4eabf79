//! netd's measurements: raw quinn (the ceiling), durable and best-effort sends between
//! two nodes, reconnection after a partition heals.

use anyhow::Context;
use icn_proto::net::v1::{PeerState, SendBatch, SendRequest, SubscribeRequest};
use icn_testkit::{Bootstrap, Network};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The answer stream of a send load: (answered, refused) per item.
type Answers = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<(u64, u64), tonic::Status>> + Send>>;

/// Two quinn endpoints with netd's own TLS identities: the transport ceiling.
pub async fn raw_quinn() -> anyhow::Result<(f64, f64)> {
    use icn_identity::tls::TlsIdentity;
    let server_tls = TlsIdentity::new(&icn_identity::NodeIdentity::generate())?;
    let client_tls = TlsIdentity::new(&icn_identity::NodeIdentity::generate())?;
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(
        server_tls.server_crypto()?,
    )?));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let address = server.local_addr()?;
    let client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let client_config = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(
        client_tls.client_crypto()?,
    )?));
    let accept = tokio::spawn(async move {
        let conn = server.accept().await.expect("incoming").await.expect("handshake");
        let mut results = Vec::new();
        for _ in 0..2 {
            let mut stream = conn.accept_uni().await.expect("stream");
            let start = Instant::now();
            let mut total = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            while let Some(n) = stream.read(&mut buf).await.expect("read") {
                total += n;
            }
            results.push((total, start.elapsed()));
        }
        results
    });
    let conn = client.connect_with(client_config, address, "icn")?.await?;
    // 1 KiB frames, as many as fit in ~3 s at the expected rate.
    let frames = 400_000usize;
    let frame = vec![7u8; 1024];
    let mut s = conn.open_uni().await?;
    for _ in 0..frames {
        s.write_all(&frame).await?;
    }
    s.finish()?;
    let bulk = 1024usize * 1024 * 1024;
    let chunk = vec![7u8; 1 << 16];
    let mut s = conn.open_uni().await?;
    for _ in 0..bulk / chunk.len() {
        s.write_all(&chunk).await?;
    }
    s.finish()?;
    let results = accept.await?;
    let msgs = frames as f64 / results[0].1.as_secs_f64();
    let mib = (results[1].0 as f64 / (1024.0 * 1024.0)) / results[1].1.as_secs_f64();
    Ok((msgs, mib))
}

/// The disk's ceiling for the durable class's large messages: 256 KiB appended to one
/// file and synced (`fdatasync`) after each, for `seconds`, in the temporary directory
/// the nodes keep their data in. Returns MiB/s halved: on one machine both nodes write
/// every byte to this one disk (the sender's outbox, the receiver's inbox).
pub async fn disk_ceiling(seconds: u64) -> anyhow::Result<f64> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = tempfile::Builder::new().prefix("icn-disk-").tempdir()?;
        let mut file = std::fs::File::create(dir.path().join("ceiling"))?;
        let block = vec![7u8; 256 * 1024];
        let (start, mut written) = (Instant::now(), 0usize);
        while start.elapsed() < Duration::from_secs(seconds) {
            file.write_all(&block)?;
            file.sync_data()?;
            written += block.len();
        }
        let mib = written as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64();
        anyhow::Ok(mib / 2.0)
    })
    .await?
}

/// Two connected nodes running netd alone, syncing their queues or not. The per-peer
/// inbound limit (`network.rate_limit`, 20,000 messages/s by default) is lifted: these
/// rows measure the path, not the limit.
async fn two_nodes(fsync: bool) -> anyhow::Result<Network> {
    let net = Network::builder(2)
        .services(&["netd"])
        .bootstrap(Bootstrap::Star)
        .env("ICN__NETWORK__QUEUE_FSYNC", if fsync { "true" } else { "false" })
        .env("ICN__NETWORK__RATE_LIMIT__MESSAGES_PER_SECOND", "10000000")
        .env("ICN__NETWORK__RATE_LIMIT__BURST", "10000000")
        .env("ICN__LOG__LEVEL", "warn")
        .start()
        .await?;
    net.wait_full_mesh(Duration::from_secs(20)).await?;
    Ok(net)
}

/// One sender streams `size`-byte messages of `class` to the other node for `seconds`
/// through one `SendStream` (`batch` 1) or one `SendBatches` stream (`batch` messages per
/// item), as fast as netd takes them; returns the messages/s and MiB/s
/// delivered to the receiver's subscriber (`SubscribeBestEffort` or `Subscribe`), and
/// the share of sends refused (%: a full queue).
pub async fn netd_stream(
    size: usize,
    seconds: u64,
    class: icn_proto::net::v1::DeliveryClass,
    batch: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    use icn_proto::net::v1::{DeliveryClass, SubscribeBestEffortRequest};
    use tokio_stream::StreamExt;
    let net = two_nodes(true).await?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let mut receiver = b.netd().await?;
    let protocols = vec!["bench".to_string()];
    // Messages delivered, as counts per item of the subscriber's stream.
    let mut delivered: std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<u64, tonic::Status>> + Send>> =
        match class {
            DeliveryClass::BestEffort => Box::pin(
                receiver
                    .subscribe_best_effort(SubscribeBestEffortRequest { protocols })
                    .await?
                    .into_inner()
                    .map(|batch| batch.map(|b| b.messages.len() as u64)),
            ),
            DeliveryClass::Durable => Box::pin(
                receiver
                    .subscribe_batches(SubscribeRequest { protocols, after_position: None })
                    .await?
                    .into_inner()
                    .map(|batch| batch.map(|b| b.messages.len() as u64)),
            ),
        };
    let request = SendRequest {
        to: b.did().to_string(),
        protocol: "bench".into(),
        payload: vec![1u8; size],
        sealed: false,
        class: class as i32,
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut client = a.netd().await?;
    // Results as (answered, refused) per item of the answer stream.
    let mut results: Answers;
    let producer =
        if batch <= 1 {
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            results = Box::pin(
                client
                    .send_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await?
                    .into_inner()
                    .map(|r| r.map(|r| (1, u64::from(r.code != 0)))),
            );
            tokio::spawn(async move {
                while Instant::now() < end {
                    if tx.send(request.clone()).await.is_err() {
                        break;
                    }
                }
            })
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel(1024 / batch.min(1024));
            results =
                Box::pin(client.send_batches(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner().map(
                    |r| r.map(|r| (r.results.len() as u64, r.results.iter().filter(|r| r.code != 0).count() as u64)),
                ));
            let messages = SendBatch { messages: vec![request; batch] };
            tokio::spawn(async move {
                while Instant::now() < end {
                    if tx.send(messages.clone()).await.is_err() {
                        break;
                    }
                }
            })
        };
    let answers = tokio::spawn(async move {
        let (mut sent, mut refused) = (0u64, 0u64);
        while let Some(r) = results.next().await {
            let (answered, refusals) = r?;
            sent += answered;
            refused += refusals;
        }
        anyhow::Ok((sent, refused))
    });
    let mut received = 0u64;
    let mut last = start;
    // Counted until nothing more arrives for a second after the sender stopped.
    loop {
        match tokio::time::timeout(Duration::from_secs(1), delivered.next()).await {
            Ok(count) => {
                received += count.context("the subscriber's stream ended")??;
                last = Instant::now();
            }
            Err(_) if Instant::now() > end => break,
            Err(_) => {}
        }
    }
    producer.await?;
    let (sent, refused) = answers.await??;
    let elapsed = last.duration_since(start).as_secs_f64().max(f64::EPSILON);
    let msgs = received as f64 / elapsed;
    Ok((msgs, msgs * size as f64 / (1024.0 * 1024.0), refused as f64 * 100.0 / sent.max(1) as f64))
}

/// `senders` concurrent gRPC clients send `size`-byte messages for `seconds` from node 1
/// to node 2; the rate counts messages until the last one is delivered to node 2's
/// subscriber. Returns (messages/s, MiB/s).
pub async fn netd_load(size: usize, senders: usize, seconds: u64, fsync: bool) -> anyhow::Result<(f64, f64)> {
    let net = two_nodes(fsync).await?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let mut inbox = b
        .netd()
        .await?
        .subscribe(SubscribeRequest { protocols: vec!["bench".into()], after_position: None })
        .await?
        .into_inner();
    let client = a.netd().await?;
    let to = b.did().to_string();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let mut client = client.clone();
        let to = to.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < end {
                let r = SendRequest {
                    to: to.clone(),
                    protocol: "bench".into(),
                    payload: vec![1u8; size],
                    sealed: false,
                    ..Default::default()
                };
                match client.send(r).await {
                    Ok(_) => sent += 1,
                    // A full queue is netd's back-pressure: wait for it to drain, as any
                    // client should.
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(status) => panic!("send: {status}"),
                }
            }
            sent
        }));
    }
    let mut sent = 0u64;
    for t in tasks {
        sent += t.await?;
    }
    let mut received = 0u64;
    while received < sent {
        tokio::time::timeout(Duration::from_secs(60), inbox.message())
            .await
            .context("delivery stalled")??
            .context("stream ended")?;
        received += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let msgs = received as f64 / elapsed;
    Ok((msgs, msgs * size as f64 / (1024.0 * 1024.0)))
}

/// In the lab: cut the link long enough for the connection to die, heal, time until the
/// peer is connected again.
pub async fn reconnect_after_heal() -> anyhow::Result<f64> {
    let lab = icn_netlab::Lab::new(2)?;
    let net = Network::builder(2)
        .services(&["netd"])
        .placements(lab.placements())
        .env("ICN__NETWORK__KEEP_ALIVE_INTERVAL", "500ms")
        .env("ICN__NETWORK__IDLE_TIMEOUT", "2s")
        .env("ICN__NETWORK__RECONNECT__CAP", "1s")
        .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "0")
        .start()
        .await?;
    net.wait_full_mesh(Duration::from_secs(20)).await?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let mut samples = Vec::new();
    for _ in 0..3 {
        lab.partition(&[1], &[2])?;
        a.wait_peer_state(b.did(), PeerState::Reconnecting, Duration::from_secs(20)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        lab.heal()?;
        let healed = Instant::now();
        a.wait_peer_state(b.did(), PeerState::Connected, Duration::from_secs(30)).await?;
        samples.push(healed.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    Ok(samples[1])
}
