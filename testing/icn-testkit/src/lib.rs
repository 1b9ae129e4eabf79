//! Starts real ICN nodes — every service as its own process, on loopback ports, with
//! a temporary (or given) data folder — and waits until they are healthy. Used by the
//! integration tests and by `make run` (the `icn-localnet` binary), so what the tests
//! exercise is exactly what an operator starts.
//!
//! Binaries come from `ICN_BIN_DIR`, else `<target>/release` of this workspace; build
//! them first with `cargo build --release --workspace --bins`.

pub mod gateway;
pub mod ledger;
mod node;
pub mod raw_peer;

pub use node::{Placement, Ports, TestNode, SERVICES};

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Folder holding the service binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ICN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    target.join("release")
}

pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release --workspace --bins` (or set ICN_BIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// How the nodes find each other at start-up.
#[derive(Clone, Copy, Debug)]
pub enum Bootstrap {
    /// Every node but the first bootstraps to the first; the rest comes from peer exchange.
    Star,
    /// Nobody bootstraps; the test dials.
    None,
}

pub struct NetworkBuilder {
    nodes: usize,
    services: Vec<&'static str>,
    root: Option<PathBuf>,
    base_port: Option<u16>,
    bootstrap: Bootstrap,
    env: Vec<(String, String)>,
    /// (node index, key, value): settings of one node only.
    node_env: Vec<(usize, String, String)>,
    placements: Vec<Placement>,
}

impl NetworkBuilder {
    /// Which services each node runs (default: all five).
    pub fn services(mut self, services: &[&'static str]) -> Self {
        self.services = services.to_vec();
        self
    }

    /// Keep state in `root` (created if missing; reused on the next start) instead of a
    /// temporary folder.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// Fixed ports: node `i` (from 0) uses `base + 100 * i + offset` (see [`Ports`]).
    pub fn base_port(mut self, base: u16) -> Self {
        self.base_port = Some(base);
        self
    }

    pub fn bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    /// Runs node `i` as `placements[i]` says (lab hosts); each gets the default ports,
    /// since each has addresses of its own.
    pub fn placements(mut self, placements: Vec<Placement>) -> Self {
        self.placements = placements;
        self
    }

    /// An extra environment variable for every service process (`ICN__…` settings).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// An extra environment variable for every service process of node `i` (from 0)
    /// only, after those of [`NetworkBuilder::env`].
    pub fn node_env(mut self, i: usize, key: &str, value: &str) -> Self {
        self.node_env.push((i, key.into(), value.into()));
        self
    }

    /// Creates identities, starts every service of every node and waits until all are healthy.
    pub async fn start(self) -> anyhow::Result<Network> {
        let (root, tmp) = match &self.root {
            Some(r) => (r.clone(), None),
            None => {
                let t = tempfile::Builder::new().prefix("icn-net-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut nodes = Vec::with_capacity(self.nodes);
        for i in 0..self.nodes {
            let placement = self.placements.get(i).cloned();
            let ports = match (self.base_port, &placement) {
                (_, Some(_)) => Ports::fixed(7000),
                (Some(base), None) => Ports::fixed(base + 100 * i as u16),
                (None, None) => Ports::free()?,
            };
            let mut node =
                TestNode::prepare(&format!("node{}", i + 1), &root.join(format!("node{}", i + 1)), ports, true)?;
            node.env.extend(self.env.iter().cloned());
            node.env.extend(self.node_env.iter().filter(|(n, _, _)| *n == i).map(|(_, k, v)| (k.clone(), v.clone())));
            if let Some(placement) = placement {
                node.placement = placement;
            }
            nodes.push(node);
        }
        if let Bootstrap::Star = self.bootstrap {
            let first =
                format!("{}@{}", nodes[0].did.as_ref().expect("prepared with identity"), nodes[0].quic_address());
            for node in nodes.iter_mut().skip(1) {
                node.bootstrap = vec![first.clone()];
            }
        }
        let mut network = Network { nodes, services: self.services, root, _tmp: tmp };
        for i in 0..network.nodes.len() {
            let services = network.services.clone();
            for svc in services {
                network.nodes[i].start(svc).await?;
            }
        }
        for node in &network.nodes {
            for svc in &network.services {
                node.wait_healthy(svc, Duration::from_secs(30)).await?;
            }
        }
        Ok(network)
    }
}

/// Running nodes; every process is killed when this is dropped.
pub struct Network {
    pub nodes: Vec<TestNode>,
    services: Vec<&'static str>,
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Network {
    pub fn builder(nodes: usize) -> NetworkBuilder {
        NetworkBuilder {
            nodes,
            services: SERVICES.to_vec(),
            root: None,
            base_port: None,
            bootstrap: Bootstrap::Star,
            env: Vec::new(),
            node_env: Vec::new(),
            placements: Vec::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn services(&self) -> &[&'static str] {
        &self.services
    }

    /// Waits until every node reports every other node as connected.
    pub async fn wait_full_mesh(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let want = self.nodes.len() - 1;
        loop {
            let mut missing = Vec::new();
            for node in &self.nodes {
                let connected = node.connected_peers().await.unwrap_or_default();
                if connected.len() < want {
                    missing.push(format!("{} sees {}/{want}", node.name, connected.len()));
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the network did not fully connect within {timeout:?}: {}", missing.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops every service with SIGTERM (those that already exited, say on the terminal's
    /// own Ctrl-C, are just reaped), newest node first, and returns the exit codes.
    pub async fn stop(&mut self) -> anyhow::Result<Vec<(String, &'static str, Option<i32>)>> {
        let mut codes = Vec::new();
        for node in self.nodes.iter_mut().rev() {
            for svc in SERVICES.iter().rev() {
                if node.pid(svc).is_none() {
                    continue;
                }
                if node.is_running(svc) {
                    node.signal(svc, libc::SIGTERM)?;
                }
                let status = node
                    .wait_exit(svc, Duration::from_secs(20))
                    .await
                    .with_context(|| format!("stopping {} {svc}", node.name))?;
                codes.push((node.name.clone(), *svc, status.code()));
            }
        }
        Ok(codes)
    }
}

/// A plain HTTP/1.0 GET returning the body, so tests of `/metrics` need no HTTP client.
pub async fn http_get(url: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host).await.with_context(|| format!("connecting to {host}"))?;
    stream.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}
