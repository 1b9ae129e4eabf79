//! Every service of a node, as an operator meets it: discoverable with grpcurl, healthy,
//! stopped cleanly by SIGTERM, rejoining after a restart, usable without an identity in
//! limited mode, refusing a wrong passphrase, and inspected with icnctl.

use icn_proto::net::v1::SendRequest;
use icn_testkit::{Bootstrap, Network, Ports, TestNode, SERVICES};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The real grpcurl: `GRPCURL`, else `.tools/bin/grpcurl` (installed by
/// `scripts/install-deps.sh`), else the PATH.
fn grpcurl() -> PathBuf {
    if let Some(p) = std::env::var_os("GRPCURL") {
        return p.into();
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/grpcurl");
    if local.is_file() {
        local
    } else {
        PathBuf::from("grpcurl")
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e} (install with scripts/install-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn icnctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(icn_testkit::binary("icnctl").unwrap()).arg("--endpoint").arg(endpoint).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_and_describes_every_service_and_health_is_serving() {
    let net = Network::builder(1).bootstrap(Bootstrap::None).start().await.unwrap();
    let node = &net.nodes[0];
    let expected = [
        ("netd", "icn.net.v1.Netd"),
        ("gossip", "icn.gossip.v1.Gossip"),
        ("ledger", "icn.ledger.v1.Ledger"),
        ("compute", "icn.compute.v1.Compute"),
        ("gateway", "icn.gateway.v1.Gateway"),
    ];
    for (svc, grpc_name) in expected {
        let address = node.endpoint(svc).trim_start_matches("http://").to_string();
        let list = run(Command::new(grpcurl()).args(["-plaintext", &address, "list"]));
        let names: Vec<&str> = list.lines().collect();
        assert!(names.contains(&grpc_name), "{svc}: {names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{svc}: {names:?}");
        let described = run(Command::new(grpcurl()).args(["-plaintext", &address, "describe", grpc_name]));
        assert!(described.contains(&format!("service {}", grpc_name.rsplit('.').next().unwrap())), "{described}");
        let health = run(Command::new(grpcurl()).args(["-plaintext", &address, "grpc.health.v1.Health/Check"]));
        assert!(health.contains("SERVING"), "{svc}: {health}");
    }
    // A method whose capability is not built yet says so.
    let address = node.endpoint("compute").trim_start_matches("http://").to_string();
    let out = Command::new(grpcurl())
        .args(["-plaintext", "-d", "{}", &address, "icn.compute.v1.Compute/GetTask"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("Unimplemented") && text.contains("later issue"), "{text}");
    // A built one answers through reflection, with a specific status for bad input.
    let address = node.endpoint("ledger").trim_start_matches("http://").to_string();
    let out = Command::new(grpcurl())
        .args(["-plaintext", "-d", r#"{"coop_id":"nowhere"}"#, &address, "icn.ledger.v1.Ledger/CoopStats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("NotFound") && text.contains("no cooperative `nowhere`"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_every_service_with_code_0_and_restarted_services_rejoin() {
    let mut net = Network::builder(3).env("ICN__SHUTDOWN__TIMEOUT", "5s").start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();

    // A subscriber holds a stream open: shutdown must end it, not wait on it.
    let mut inbox = net.nodes[1]
        .netd()
        .await
        .unwrap()
        .subscribe(icn_proto::net::v1::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    for svc in SERVICES {
        let node = &mut net.nodes[1];
        let started = Instant::now();
        let status = node.stop(svc, Duration::from_secs(10)).await.unwrap();
        assert_eq!(status.code(), Some(0), "{svc} exit status");
        assert!(started.elapsed() < Duration::from_secs(5), "{svc} took {:?}", started.elapsed());
        let log = std::fs::read_to_string(node.log_path(svc)).unwrap();
        assert!(log.contains("stopped"), "{svc} logs its orderly stop");
    }
    assert!(inbox.message().await.map(|m| m.is_none()).unwrap_or(true), "the stream ended at shutdown");

    // node2 restarts with its state: it rejoins both peers.
    for svc in SERVICES {
        net.nodes[1].start(svc).await.unwrap();
    }
    for svc in SERVICES {
        net.nodes[1].wait_healthy(svc, Duration::from_secs(20)).await.unwrap();
    }
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();

    // The bootstrap node itself has no bootstrap peers: it finds the others from the
    // peers it remembered in its store.
    let status = net.nodes[0].stop("netd", Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(0));
    net.nodes[0].start("netd").await.unwrap();
    net.nodes[0].wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let to = net.nodes[2].did().to_string();
    net.nodes[0]
        .netd()
        .await
        .unwrap()
        .send(SendRequest {
            to,
            protocol: "test".into(),
            payload: b"back".to_vec(),
            sealed: false,
            ..Default::default()
        })
        .await
        .unwrap();

    for (node, svc, code) in net.stop().await.unwrap() {
        assert_eq!(code, Some(0), "{node} {svc}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_keystore_services_run_in_limited_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::prepare("bare", dir.path(), Ports::free().unwrap(), false).unwrap();
    node.start("netd").await.unwrap();
    node.start("ledger").await.unwrap();
    node.wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    node.wait_healthy("ledger", Duration::from_secs(20)).await.unwrap();

    let mut netd = node.netd().await.unwrap();
    let status = netd.status(icn_proto::net::v1::StatusRequest {}).await.unwrap().into_inner();
    let info = status.info.unwrap();
    assert!(info.limited_mode);
    assert!(info.did.is_empty());
    assert!(netd.list_peers(icn_proto::net::v1::ListPeersRequest {}).await.unwrap().into_inner().peers.is_empty());
    let err = netd
        .send(SendRequest {
            to: icn_identity::NodeIdentity::generate().did().to_string(),
            protocol: "t".into(),
            payload: vec![],
            sealed: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("icnctl id init") && err.message().contains("limited mode"), "{}", err.message());

    let metrics = icn_testkit::http_get(&node.metrics_url("netd")).await.unwrap();
    assert!(metrics.contains("icn_netd_connected_peers 0"), "{metrics}");
    let out = icnctl(&node.endpoint("netd"), &["status"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("limited mode"));
    node.stop("netd", Duration::from_secs(10)).await.unwrap();
    node.stop("ledger", Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_passphrase_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::prepare("locked", dir.path(), Ports::free().unwrap(), true).unwrap();
    std::fs::write(dir.path().join("passphrase"), "not the passphrase\n").unwrap();
    node.start("netd").await.unwrap();
    let status = node.wait_exit("netd", Duration::from_secs(20)).await.unwrap();
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(node.log_path("netd")).unwrap();
    assert!(log.contains("wrong passphrase for the keystore"), "{log}");
    assert!(!log.contains("not the passphrase"), "the passphrase is never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn icnctl_status_and_peers_show_the_other_nodes_connected() {
    let net = Network::builder(3).services(&["netd"]).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let node = &net.nodes[2];
    let out = icnctl(&node.endpoint("netd"), &["--json", "peers"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let connected: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "connected")
        .map(|p| p["did"].as_str().unwrap())
        .collect();
    for other in &net.nodes[..2] {
        assert!(connected.contains(&other.did().as_str()), "{connected:?}");
    }
    let out = icnctl(&node.endpoint("netd"), &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(node.did().as_str()) && text.contains("2 connected"), "{text}");
    let out = icnctl(&node.endpoint("netd"), &["peers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connected") && text.contains(" ms"), "{text}");

    // An unreachable endpoint is a clear error, exit 1.
    let out = icnctl("http://127.0.0.1:1", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach http://127.0.0.1:1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn icnctl_id_init_creates_a_keystore_that_a_service_unlocks() {
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("keystore.json");
    let icnctl_id = |args: &[&str], passphrase: Option<&str>| {
        let mut cmd = Command::new(icn_testkit::binary("icnctl").unwrap());
        cmd.arg("--json").arg("id").args(args).arg("--keystore").arg(&keystore).env_remove("ICN_PASSPHRASE");
        if let Some(p) = passphrase {
            cmd.env("ICN_PASSPHRASE", p);
        }
        cmd.output().unwrap()
    };
    let out = icnctl_id(&["init"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ICN_PASSPHRASE"), "no passphrase is a clear error");

    let out = icnctl_id(&["init"], Some("operator secret"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let did = created["did"].as_str().unwrap().to_string();
    assert!(did.starts_with("did:icn:z") && created["created"] == true);

    let out = icnctl_id(&["init"], Some("operator secret"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    let out = icnctl_id(&["init", "--if-missing"], Some("other"));
    assert!(out.status.success());
    let out = icnctl_id(&["show"], None);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["did"], did.as_str());

    // A service started with that keystore and passphrase runs as that DID.
    let mut node = TestNode::prepare("cli", dir.path(), Ports::free().unwrap(), false).unwrap();
    std::fs::write(dir.path().join("passphrase"), "operator secret\n").unwrap();
    node.start("netd").await.unwrap();
    node.wait_healthy("netd", Duration::from_secs(20)).await.unwrap();
    let status = node.netd().await.unwrap().status(icn_proto::net::v1::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.info.unwrap().did, did);
    assert!(!std::fs::read_to_string(node.log_path("netd")).unwrap().contains("operator secret"));
    node.stop("netd", Duration::from_secs(10)).await.unwrap();
}

#[test]
fn print_config_shows_the_effective_configuration_and_bad_configuration_exits_2() {
    let netd = icn_testkit::binary("icn-netd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("icn.toml");
    std::fs::write(&file, "[network]\nlisten = \"127.0.0.1:7777\"\npeer_exchange_max = 7\n").unwrap();
    let out = Command::new(&netd)
        .args(["--print-config", "--config"])
        .arg(&file)
        .env("ICN__NETWORK__PEER_EXCHANGE_MAX", "9")
        .env("ICN__NETWORK__BOOTSTRAP", "a:1,b:2")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(printed["network"]["listen"].as_str(), Some("127.0.0.1:7777"), "file beats defaults");
    assert_eq!(printed["network"]["peer_exchange_max"].as_integer(), Some(9), "environment beats file");
    assert_eq!(printed["network"]["bootstrap"].as_array().unwrap().len(), 2);
    assert_eq!(printed["shutdown"]["timeout"].as_str(), Some("10s"), "defaults fill the rest");

    let out =
        Command::new(&netd).arg("--print-config").env("ICN__NETD__GRPC_LISTEN", "not-an-address").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("netd.grpc_listen"));
    let out = Command::new(&netd).args(["--config", "/nonexistent/icn.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn icnctl_sends_subscribes_measures_and_disconnects() {
    let net = Network::builder(2).services(&["netd"]).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let (n1, n2) = (&net.nodes[0], &net.nodes[1]);
    let out = icnctl(
        &n1.endpoint("netd"),
        &["send", "--to", n2.did().as_str(), "--protocol", "cli", "--payload", "from the cli"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        icnctl(&n2.endpoint("netd"), &["--json", "subscribe", "--protocol", "cli", "--after", "0", "--count", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(line["payload"], "from the cli");
    assert_eq!(line["from"], n1.did().as_str());
    let out = icnctl(&n1.endpoint("netd"), &["--json", "rtt", n2.did().as_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rtt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rtt["measured"], true);
    // Best effort while connected: sent, with no sequence number; once disconnected,
    // refused with the reason (nothing is kept for an absent peer).
    let best_effort =
        ["--json", "send", "--best-effort", "--to", n2.did().as_str(), "--protocol", "cli", "--payload", "x"];
    let out = icnctl(&n1.endpoint("netd"), &best_effort);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((sent["seq"].as_u64(), sent["best_effort"].as_bool()), (Some(0), Some(true)));
    let out = icnctl(&n1.endpoint("netd"), &["disconnect", n2.did().as_str()]);
    assert!(out.status.success());
    n1.wait_peer_state(n2.did(), icn_proto::net::v1::PeerState::Closed, Duration::from_secs(5)).await.unwrap();
    let out = icnctl(&n1.endpoint("netd"), &best_effort);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not connected"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = icnctl(&n1.endpoint("netd"), &["disconnect", "did:icn:zNope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`did`"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_worker_threads_sets_how_many_threads_run_a_services_async_tasks() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let one = Network::builder(1)
        .services(&["netd", "gossip"])
        .bootstrap(Bootstrap::None)
        .env("ICN__RUNTIME__WORKER_THREADS", "1")
        .start()
        .await
        .unwrap();
    let default = Network::builder(1).services(&["netd", "gossip"]).bootstrap(Bootstrap::None).start().await.unwrap();
    for service in ["netd", "gossip"] {
        let workers = one.nodes[0].metric(service, "icn_runtime_workers").await.unwrap();
        assert_eq!(workers, 1.0, "{service} with runtime.worker_threads = 1");
        let workers = default.nodes[0].metric(service, "icn_runtime_workers").await.unwrap();
        assert_eq!(workers, cores as f64, "{service} by default: one per core");
    }
    // The node still does its work on one thread: a topic is created and read back.
    one.nodes[0].create_public_topic("one-thread").await.unwrap();
    let mut gossip = one.nodes[0].gossip().await.unwrap();
    let topic = gossip
        .get_topic(icn_proto::gossip::v1::GetTopicRequest { name: "one-thread".into(), reader: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(topic.topic.unwrap().name, "one-thread");
}
