//! The peer gossip's figures stand beside: rust-libp2p gossipsub (`testing/gossipsub-peer`)
//! in as many processes as ICN's run has nodes, on loopback, QUIC, the library's default
//! configuration, every node connected to every other (ICN's layout: a full mesh of netd
//! links). One node publishes 256-byte messages at a steady rate, one per publish call;
//! the time measured is publish → handed to the application at each other node, and an
//! entry's figure is its last node's. Also the CPU of all the processes together.

use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Time for gossipsub's meshes to form after the dials (its heartbeat is 1 s).
const WARM_UP: Duration = Duration::from_secs(3);
/// Time after the last publish for the last messages to arrive.
const DRAIN: Duration = Duration::from_secs(2);

pub struct Outcome {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Published messages that reached every other node.
    pub delivered: f64,
    pub published: u64,
    /// CPU of all the nodes together while publishing, in cores.
    pub cores: f64,
}

struct Node {
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

impl Node {
    async fn say(&mut self, line: &str) -> anyhow::Result<()> {
        self.input.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(self.input.flush().await?)
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        tokio::time::timeout(Duration::from_secs(30), self.output.next_line())
            .await
            .context("a gossipsub node went silent")??
            .context("a gossipsub node exited")
    }

    fn cpu(&self) -> anyhow::Result<f64> {
        crate::ledger::cpu_seconds(&self.child.id().context("exited")?.to_string())
    }
}

pub async fn run(nodes: usize, rate: u64, seconds: u64) -> anyhow::Result<Outcome> {
    let binary = icn_testkit::binary("gossipsub-peer")?;
    let mut all = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..nodes {
        let mut child = Command::new(&binary)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let input = child.stdin.take().context("stdin")?;
        let output = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut node = Node { child, input, output };
        let line = node.line().await?;
        let address = line.strip_prefix("addr ").with_context(|| format!("expected its address, got {line:?}"))?;
        addresses.push(address.to_string());
        all.push(node);
    }
    for (i, node) in all.iter_mut().enumerate() {
        for address in &addresses[..i] {
            node.say(&format!("dial {address}")).await?;
        }
    }
    tokio::time::sleep(WARM_UP).await;
    let count = rate * seconds;
    let cpu_before: f64 = all.iter().map(Node::cpu).sum::<anyhow::Result<f64>>()?;
    let started = Instant::now();
    all[0].say(&format!("publish {rate} {count}")).await?;
    tokio::time::sleep(Duration::from_secs(seconds) + DRAIN).await;
    let cores =
        (all.iter().map(Node::cpu).sum::<anyhow::Result<f64>>()? - cpu_before) / started.elapsed().as_secs_f64();

    // seq → (sent, receivers, last receipt)
    let mut arrivals: std::collections::HashMap<u64, (u64, usize, u64)> = Default::default();
    let mut published = 0;
    for (i, node) in all.iter_mut().enumerate() {
        node.say("report").await?;
        loop {
            let line = node.line().await?;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["recv", seq, sent, at] => {
                    let (seq, sent, at): (u64, u64, u64) = (seq.parse()?, sent.parse()?, at.parse()?);
                    let e = arrivals.entry(seq).or_insert((sent, 0, at));
                    e.1 += 1;
                    e.2 = e.2.max(at);
                }
                ["published", n] if i == 0 => published = n.parse()?,
                ["published", _] => {}
                ["end"] => break,
                _ => bail!("unexpected line from a gossipsub node: {line:?}"),
            }
        }
    }
    if published == 0 {
        bail!("the gossipsub publisher never found a mesh peer");
    }
    let mut latencies: Vec<f64> = arrivals
        .values()
        .filter(|(_, receivers, _)| *receivers == nodes - 1)
        .map(|(sent, _, last)| last.saturating_sub(*sent) as f64 / 1e6)
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    Ok(Outcome {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        delivered: latencies.len() as f64 / published as f64,
        published,
        cores,
    })
}
