//! One rust-libp2p gossipsub node, as `make bench` runs ten of them beside ICN's gossip
//! (issue #12): QUIC on loopback, gossipsub's default configuration, signed messages,
//! one topic. Driven by the benchmark through stdin and stdout, a line each:
//!
//! - out `addr <multiaddr>` once it listens (with its `/p2p/<peer id>`);
//! - in `dial <multiaddr>`: connect to a peer;
//! - in `publish <per second> <count>`: publish `count` 256-byte messages at that rate,
//!   once the topic has a mesh peer; each carries its sequence number and the system's
//!   monotonic clock when it was handed to gossipsub;
//! - in `report`: out `recv <seq> <sent ns> <received ns>` for every message received,
//!   `published <n>` for this node's own, then `end`, and exit.
//!
//! The receive time is taken when gossipsub hands the message to the application, the
//! moment ICN's benchmark calls receipt. Both clocks are CLOCK_MONOTONIC, one for the
//! whole machine, so times from different processes compare.

use futures::StreamExt;
use libp2p::{gossipsub, swarm::SwarmEvent, Multiaddr};
use std::io::Write;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const PAYLOAD: usize = 256;
const TOPIC: &str = "bench";

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|key| -> Result<gossipsub::Behaviour, Box<dyn std::error::Error + Send + Sync>> {
            let config = gossipsub::ConfigBuilder::default().build()?;
            Ok(gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)?)
        })?
        // The benchmark's run is idle between phases; connections must outlive that.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    let topic = gossipsub::IdentTopic::new(TOPIC);
    swarm.behaviour_mut().subscribe(&topic)?;
    swarm.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)?;

    let (commands_tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if commands_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut received: Vec<(u64, u64, u64)> = Vec::new();
    // (interval, count) of the publishing asked for, and how far it got.
    let mut publishing: Option<(Duration, u64)> = None;
    let mut published = 0u64;
    let mut next_publish = tokio::time::Instant::now();
    let mut stdout = std::io::stdout();
    loop {
        let due = publishing.is_some_and(|(_, count)| published < count)
            && swarm.behaviour().mesh_peers(&topic.hash()).next().is_some();
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    let full = address.with(libp2p::multiaddr::Protocol::P2p(*swarm.local_peer_id()));
                    writeln!(stdout, "addr {full}")?;
                    stdout.flush()?;
                }
                SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                    let now = monotonic_ns();
                    if message.data.len() >= 16 {
                        let seq = u64::from_be_bytes(message.data[..8].try_into()?);
                        let sent = u64::from_be_bytes(message.data[8..16].try_into()?);
                        received.push((seq, sent, now));
                    }
                }
                _ => {}
            },
            command = commands.recv() => {
                let Some(command) = command else { break };
                let words: Vec<&str> = command.split_whitespace().collect();
                match words.as_slice() {
                    ["dial", address] => swarm.dial(address.parse::<Multiaddr>()?)?,
                    ["publish", rate, count] => {
                        let rate: f64 = rate.parse()?;
                        publishing = Some((Duration::from_secs_f64(1.0 / rate), count.parse()?));
                        next_publish = tokio::time::Instant::now();
                    }
                    ["report"] => {
                        let mut out = std::io::BufWriter::new(stdout.lock());
                        for (seq, sent, at) in &received {
                            writeln!(out, "recv {seq} {sent} {at}")?;
                        }
                        writeln!(out, "published {published}")?;
                        writeln!(out, "end")?;
                        out.flush()?;
                        return Ok(());
                    }
                    other => anyhow::bail!("unknown command {other:?}"),
                }
            }
            _ = tokio::time::sleep_until(next_publish), if due => {
                let (interval, _) = publishing.expect("due only while publishing");
                let mut data = vec![0u8; PAYLOAD];
                data[..8].copy_from_slice(&published.to_be_bytes());
                data[8..16].copy_from_slice(&monotonic_ns().to_be_bytes());
                swarm.behaviour_mut().publish(topic.clone(), data)?;
                published += 1;
                next_publish += interval;
            }
        }
    }
    Ok(())
}
