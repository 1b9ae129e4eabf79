//! One node of a test network: its identity, ports, environment and service processes.

use anyhow::{bail, Context as _};
use icn_identity::{Did, KdfParams, Keystore, NodeIdentity};
use icn_proto::net::v1::{netd_client::NetdClient, GetPeerRequest, InboundMessage, Peer, PeerState, SubscribeRequest};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub const SERVICES: [&str; 5] = ["netd", "gossip", "ledger", "compute", "gateway"];

/// A node's ports: QUIC, gRPC + metrics for each service in [`SERVICES`] order, and the
/// gateway's HTTP API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ports {
    pub quic: u16,
    pub grpc: [u16; 5],
    pub metrics: [u16; 5],
    pub http: u16,
}

impl Ports {
    /// `base` QUIC, `base + 1..=5` gRPC, `base + 11..=15` metrics, `base + 20` HTTP.
    pub fn fixed(base: u16) -> Self {
        Self {
            quic: base,
            grpc: std::array::from_fn(|i| base + 1 + i as u16),
            metrics: std::array::from_fn(|i| base + 11 + i as u16),
            http: base + 20,
        }
    }

    /// Ports free right now, never handed out before by this process. They come from
    /// below the kernel's ephemeral range (where outgoing connections take their local
    /// ports), so nothing else grabs them between this check and the service's bind.
    pub fn free() -> anyhow::Result<Self> {
        let take = next_free_port;
        let quic = take()?;
        let grpc = [take()?, take()?, take()?, take()?, take()?];
        let metrics = [take()?, take()?, take()?, take()?, take()?];
        Ok(Self { quic, grpc, metrics, http: take()? })
    }
}

/// Test ports: a window below Linux's default ephemeral range (32768 and up).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

fn next_free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Each test process starts at its own place in the window, so processes that run one
    // after the other do not reuse ports a killed service may still hold briefly.
    let _ = NEXT.compare_exchange(
        0,
        TEST_PORTS.start + (std::process::id() % 1000) as u16 * 10,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..TEST_PORTS.len() {
        let mut port = NEXT.fetch_add(1, Ordering::SeqCst);
        if !TEST_PORTS.contains(&port) {
            port = TEST_PORTS.start + port % TEST_PORTS.len() as u16;
        }
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return Ok(port);
        }
    }
    bail!("no free port left in {TEST_PORTS:?}")
}

fn index(service: &str) -> usize {
    SERVICES.iter().position(|s| *s == service).unwrap_or_else(|| panic!("unknown service {service}"))
}

/// Where a node's processes run: on this host's loopback (the default), or on a lab
/// host, through a command prefix (`ip netns exec <ns>`) and with its own addresses.
#[derive(Clone, Debug)]
pub struct Placement {
    pub exec_prefix: Vec<String>,
    /// Address the node's QUIC endpoint binds and peers dial.
    pub data_ip: String,
    /// Address its gRPC and metrics listen on, reached by the test.
    pub control_ip: String,
}

impl Default for Placement {
    fn default() -> Self {
        Self { exec_prefix: Vec::new(), data_ip: "127.0.0.1".into(), control_ip: "127.0.0.1".into() }
    }
}

pub struct TestNode {
    pub name: String,
    /// `None` for a node prepared without identity (limited mode).
    pub did: Option<Did>,
    pub dir: PathBuf,
    pub ports: Ports,
    pub bootstrap: Vec<String>,
    /// Extra environment for every service.
    pub env: Vec<(String, String)>,
    pub placement: Placement,
    children: std::sync::Mutex<HashMap<&'static str, Child>>,
}

impl TestNode {
    /// Creates the node's folder and, when `with_identity`, its keystore and passphrase
    /// file (both reused when they already exist).
    pub fn prepare(name: &str, dir: &Path, ports: Ports, with_identity: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let did = if with_identity {
            let passphrase_file = dir.join("passphrase");
            let keystore = dir.join("keystore.json");
            if !keystore.exists() {
                let passphrase = hex::encode(rand::random::<[u8; 16]>());
                write_private(&passphrase_file, passphrase.as_bytes())?;
                Keystore::create(&keystore, &passphrase, &NodeIdentity::generate(), KdfParams::default())?;
            }
            Some(Keystore::did(&keystore)?)
        } else {
            None
        };
        Ok(Self {
            name: name.into(),
            did,
            dir: dir.into(),
            ports,
            bootstrap: Vec::new(),
            env: Vec::new(),
            placement: Placement::default(),
            children: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn did(&self) -> &Did {
        self.did.as_ref().expect("this node has an identity")
    }

    pub fn quic_address(&self) -> String {
        format!("{}:{}", self.placement.data_ip, self.ports.quic)
    }

    pub fn endpoint(&self, service: &str) -> String {
        format!("http://{}:{}", self.placement.control_ip, self.ports.grpc[index(service)])
    }

    /// Base URL of the gateway's HTTP API (REST under `/v1`, the dashboard at `/`).
    pub fn http_url(&self) -> String {
        format!("http://{}:{}", self.placement.control_ip, self.ports.http)
    }

    pub fn metrics_url(&self, service: &str) -> String {
        format!("http://{}:{}/metrics", self.placement.control_ip, self.ports.metrics[index(service)])
    }

    pub fn log_path(&self, service: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{service}.log"))
    }

    /// The environment a service of this node runs with.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("ICN__NODE__NAME".to_string(), self.name.clone()),
            ("ICN__NODE__DATA_DIR".to_string(), self.dir.display().to_string()),
            ("ICN__NETWORK__LISTEN".to_string(), self.quic_address()),
            ("ICN__NETWORK__BOOTSTRAP".to_string(), self.bootstrap.join(",")),
        ];
        let passphrase = self.dir.join("passphrase");
        if passphrase.exists() {
            env.push(("ICN__NODE__PASSPHRASE_FILE".into(), passphrase.display().to_string()));
        }
        for (i, svc) in SERVICES.iter().enumerate() {
            let upper = svc.to_uppercase();
            let ip = &self.placement.control_ip;
            env.push((format!("ICN__{upper}__GRPC_LISTEN"), format!("{ip}:{}", self.ports.grpc[i])));
            env.push((format!("ICN__{upper}__METRICS_LISTEN"), format!("{ip}:{}", self.ports.metrics[i])));
            env.push((format!("ICN__ENDPOINTS__{upper}"), self.endpoint(svc)));
        }
        env.push(("ICN__API__HTTP_LISTEN".into(), format!("{}:{}", self.placement.control_ip, self.ports.http)));
        env.extend(self.env.iter().cloned());
        env
    }

    /// Starts one service process; its output is appended to `logs/<service>.log`.
    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Child>> {
        self.children.lock().expect("children lock")
    }

    pub async fn start(&mut self, service: &'static str) -> anyhow::Result<()> {
        if self.is_running(service) {
            bail!("{} {service} is already running", self.name);
        }
        let binary = crate::binary(&format!("icn-{service}"))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(service))?;
        let mut command = match self.placement.exec_prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let child = command
            .envs(self.service_env())
            .env_remove("ICN_PASSPHRASE")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.children().insert(service, child);
        Ok(())
    }

    pub fn is_running(&self, service: &str) -> bool {
        match self.children().get_mut(service) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn pid(&self, service: &str) -> Option<u32> {
        self.children().get(service).and_then(|c| c.id())
    }

    pub fn signal(&self, service: &str, signal: i32) -> anyhow::Result<()> {
        let pid = self.pid(service).with_context(|| format!("{} {service} is not running", self.name))?;
        // SAFETY: sending a signal to a child process we started and still own.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            bail!("signalling {} {service}: {}", self.name, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for a service process to exit and forgets it.
    pub async fn wait_exit(&mut self, service: &str, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut child =
            self.children().remove(service).with_context(|| format!("{} {service} was not started", self.name))?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                let name = self.name.clone();
                self.children().insert(SERVICES[index(service)], child);
                bail!("{name} {service} did not exit within {timeout:?}")
            }
        }
    }

    /// SIGTERM, then wait for the exit.
    pub async fn stop(&mut self, service: &str, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(service, libc::SIGTERM)?;
        self.wait_exit(service, timeout).await
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub async fn kill(&mut self, service: &str) -> anyhow::Result<()> {
        self.signal(service, libc::SIGKILL)?;
        self.wait_exit(service, Duration::from_secs(10)).await.map(|_| ())
    }

    pub async fn channel(&self, service: &str) -> anyhow::Result<Channel> {
        Ok(tonic::transport::Endpoint::from_shared(self.endpoint(service))?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await?)
    }

    pub async fn netd(&self) -> anyhow::Result<NetdClient<Channel>> {
        Ok(NetdClient::new(self.channel("netd").await?))
    }

    pub async fn gossip(&self) -> anyhow::Result<icn_proto::gossip::v1::gossip_client::GossipClient<Channel>> {
        Ok(icn_proto::gossip::v1::gossip_client::GossipClient::new(self.channel("gossip").await?))
    }

    /// Creates a public topic `name` on this node's gossip, signed by the node.
    pub async fn create_public_topic(&self, name: &str) -> anyhow::Result<()> {
        use icn_proto::gossip::v1::{acl, create_topic_request::Signing, Acl, CreateTopicRequest, TopicSpec};
        let acl = Acl { rule: Some(acl::Rule::Public(Default::default())) };
        let spec = TopicSpec { name: name.into(), acl: Some(acl), ..Default::default() };
        self.gossip().await?.create_topic(CreateTopicRequest { signing: Some(Signing::Spec(spec)) }).await?;
        Ok(())
    }

    pub async fn ledger(&self) -> anyhow::Result<icn_proto::ledger::v1::ledger_client::LedgerClient<Channel>> {
        Ok(icn_proto::ledger::v1::ledger_client::LedgerClient::new(self.channel("ledger").await?))
    }

    /// Polls the gRPC health service until it answers SERVING.
    pub async fn wait_healthy(&self, service: &str, timeout: Duration) -> anyhow::Result<()> {
        use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = async {
                let mut client = HealthClient::new(self.channel(service).await?);
                let r = client.check(HealthCheckRequest { service: String::new() }).await?;
                anyhow::Ok(r.into_inner().status)
            }
            .await;
            if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                return Ok(());
            }
            let exited = !self.is_running(service);
            if exited || tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log_path(service)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let why = if exited {
                    "exited during start-up".to_string()
                } else {
                    format!("not healthy within {timeout:?}")
                };
                bail!(
                    "{} {service} {why} ({status:?}); log tail:\n{}",
                    self.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages of `protocol` in this node's netd inbound log, from the oldest retained,
    /// then live ones.
    pub async fn inbox(&self, protocol: &str) -> anyhow::Result<tonic::Streaming<InboundMessage>> {
        let request = SubscribeRequest { protocols: vec![protocol.to_string()], after_position: Some(0) };
        Ok(self.netd().await?.subscribe(request).await?.into_inner())
    }

    /// What this node's netd reports about `did`.
    pub async fn peer(&self, did: &Did) -> anyhow::Result<Peer> {
        Ok(self.netd().await?.get_peer(GetPeerRequest { did: did.to_string() }).await?.into_inner())
    }

    /// Waits until this node's netd reports `did` in `state`.
    pub async fn wait_peer_state(&self, did: &Did, state: PeerState, timeout: Duration) -> anyhow::Result<Peer> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let peer = self.peer(did).await;
            if let Ok(p) = &peer {
                if p.state == state as i32 {
                    return peer;
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} never saw {did} {state:?} within {timeout:?}; last: {peer:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of one sample on a service's `/metrics` (0 when absent), matched by the
    /// start of its line, e.g. `icn_netd_reconnect_attempts_total`.
    pub async fn metric(&self, service: &str, line_start: &str) -> anyhow::Result<f64> {
        let body = crate::http_get(&self.metrics_url(service)).await?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with(line_start))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum())
    }

    /// Waits until a sample on a service's `/metrics` reads `value`: a counter moves
    /// after the work it counts is visible (a delivery is counted once recorded), so a
    /// test that saw the work reads the counter until it catches up.
    pub async fn wait_metric(
        &self,
        service: &str,
        line_start: &str,
        value: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.metric(service, line_start).await?;
            if now == value {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{service}'s {line_start} read {now}, not {value}, for {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `service`'s log holds `line` (in its last 1,000 lines).
    pub async fn wait_for_log(&self, service: &str, line: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.log_tail(service, 1000).contains(line) {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "{service} never logged `{line}`");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The last `lines` lines of a service's log, for failure messages.
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(service)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The service's log lines that are JSON (run it with `ICN__LOG__FORMAT=json`).
    pub fn json_logs(&self, service: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.log_path(service))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// DIDs of the peers netd reports as connected.
    pub async fn connected_peers(&self) -> anyhow::Result<Vec<String>> {
        let peers = self.netd().await?.list_peers(icn_proto::net::v1::ListPeersRequest {}).await?.into_inner().peers;
        Ok(peers.into_iter().filter(|p| p.state == PeerState::Connected as i32).map(|p| p.did).collect())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    Ok(())
}
