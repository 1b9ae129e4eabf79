//! The dashboard in a real browser: Debian's headless Chromium opens `/` on a node's
//! gateway, signed in through the URL fragment, and must show the node's peer and an
//! event that happens while it is open. A screenshot stays in
//! `target/artifacts/dashboard.png` for people to look at.
//!
//! Chromium is driven over the DevTools protocol, which needs nothing but a WebSocket:
//! the few lines of one that it needs are at the end of this file.

use anyhow::{bail, ensure, Context as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use icn_identity::NodeIdentity;
use icn_proto::ledger::v1::SubmitTransferRequest;
use icn_testkit::ledger::TestCoop;
use icn_testkit::{Network, TestNode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SERVICES: &[&str] = &["netd", "gossip", "ledger", "gateway"];
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may take to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_nodes_peer_and_a_transfer_made_while_it_is_open() {
    let net = Network::builder(2).services(SERVICES).start().await.unwrap();
    net.wait_full_mesh(Duration::from_secs(30)).await.unwrap();
    let (node, peer) = (&net.nodes[0], &net.nodes[1]);
    let mut ledger = node.ledger().await.unwrap();
    let coop = TestCoop::create(&mut ledger, "dash", 2, 10_000).await.unwrap();
    let (alice, bob) = (&coop.members[0], &coop.members[1]);
    coop.pay(&mut ledger, alice, bob, 250).await.unwrap();
    let token = login(node, alice).await;

    // The page itself is public and may only talk to its own origin.
    let page = reqwest::get(node.http_url()).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));

    let mut browser =
        Browser::open(&format!("{}/#token={token}&coop={}&currency=hours", node.http_url(), coop.id)).await.unwrap();
    // Alice's dashboard shows node 2 as a connected peer, her earlier payment, and an
    // event stream that is following.
    let view = browser
        .wait_for("the peer, alice's first payment and a live event stream", |v| {
            text(v, "peers").contains(peer.did().as_str())
                && text(v, "peers").to_lowercase().contains("connected")
                && text(v, "balances").contains("-2.50")
                && text(v, "transfers").contains("test payment")
                && v["stream"] == "live"
        })
        .await
        .unwrap();
    assert_eq!(view["hash"], "", "the token is taken out of the address bar");
    assert!(text(&view, "node").contains("serving"), "{view:#}");

    // While the page is open, alice pays bob again: it arrives as a live event, and the
    // balances follow. Once the gateway follows the ledger's transfers: the services
    // start together, and one the gateway could not reach yet is tried again a second
    // later (`api.poll_interval`); a transfer from before that reaches no live stream.
    node.wait_for_log("gateway", "following the stream stream=\"ledger transfers\"", PAGE_TIMEOUT).await.unwrap();
    let live = coop.next(&mut ledger, alice, bob, 1_234, "paid while the dashboard watched").await.unwrap();
    ledger.submit_transfer(SubmitTransferRequest { transfer: Some(live) }).await.unwrap();
    let view = browser
        .wait_for("the live transfer in the event log", |v| {
            text(v, "events").contains("paid while the dashboard watched") && text(v, "balances").contains("-14.84")
        })
        .await
        .unwrap();
    assert_eq!(text(&view, "errors"), "", "no section reported an error");

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("dashboard.png");
    browser.screenshot(&screenshot).await.unwrap();
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "{} bytes", png.len());
    println!("screenshot: {}", screenshot.canonicalize().unwrap().display());

    // A cooperative that does not exist: the gateway's JSON error is shown, not swallowed.
    let url = format!("{}/?again#token={token}&coop=no-such-coop", node.http_url());
    browser.navigate(&url).await.unwrap();
    browser.wait_for("the gateway's error", |v| text(v, "errors").contains("404 NOT_FOUND")).await.unwrap();
    browser.close().await;
}

fn text<'a>(view: &'a Value, section: &str) -> &'a str {
    view[section].as_str().unwrap_or_default()
}

/// Logs `who` in through REST: challenge, signature, token.
async fn login(node: &TestNode, who: &NodeIdentity) -> String {
    icn_testkit::gateway::login(&reqwest::Client::new(), &node.http_url(), who, &[]).await.unwrap()
}

/// What the test reads of the page: the text of each section as rendered.
const VIEW: &str = "JSON.stringify({
    node: document.querySelector('#node')?.innerText ?? '',
    peers: document.querySelector('#peers')?.innerText ?? '',
    balances: document.querySelector('#balances')?.innerText ?? '',
    transfers: document.querySelector('#transfers')?.innerText ?? '',
    events: document.querySelector('#events')?.innerText ?? '',
    errors: document.querySelector('#errors')?.innerText ?? '',
    stream: document.querySelector('#stream-status')?.dataset.state ?? '',
    hash: location.hash,
})";

/// Headless Chromium with one page, driven over the DevTools protocol.
struct Browser {
    process: tokio::process::Child,
    page: WebSocket,
    next_id: u64,
    profile: tempfile::TempDir,
}

impl Browser {
    async fn open(url: &str) -> anyhow::Result<Browser> {
        let profile = tempfile::Builder::new().prefix("icn-chromium-").tempdir()?;
        let log = std::fs::File::create(profile.path().join("chromium.log"))?;
        let mut process = tokio::process::Command::new(CHROMIUM)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .args(["--no-first-run", "--no-default-browser-check", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,1100"])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {CHROMIUM} (scripts/install-deps.sh installs it)"))?;
        match connect_to_page(&mut process, profile.path()).await {
            Ok(page) => Ok(Browser { process, page, next_id: 0, profile }),
            Err(e) => Err(e.context(chromium_log(profile.path()))),
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.page.send(&json!({ "id": id, "method": method, "params": params }).to_string()).await?;
        // No domain is enabled, so nothing but answers should arrive; anything else is skipped.
        loop {
            let message: Value = serde_json::from_str(&self.page.receive().await?)?;
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    bail!("{method}: {error}");
                }
                return Ok(message["result"].clone());
            }
        }
    }

    async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        self.call("Page.navigate", json!({ "url": url })).await?;
        Ok(())
    }

    async fn view(&mut self) -> anyhow::Result<Value> {
        let r = self.call("Runtime.evaluate", json!({ "expression": VIEW, "returnByValue": true })).await?;
        if let Some(exception) = r.get("exceptionDetails") {
            bail!("the page threw: {exception}");
        }
        Ok(serde_json::from_str(r["result"]["value"].as_str().context("the view as a string")?)?)
    }

    /// Reads the page until `done` holds of it; the last view and Chromium's log if not.
    async fn wait_for(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        loop {
            let view = self.view().await?;
            if done(&view) {
                return Ok(view);
            }
            if tokio::time::Instant::now() > deadline {
                let log = chromium_log(self.profile.path());
                bail!("the page did not show {what} within {PAGE_TIMEOUT:?}: {view:#}\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The whole page as a PNG.
    async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &metrics["cssContentSize"];
        let clip = json!({ "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 });
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png", "clip": clip, "captureBeyondViewport": true }))
            .await?;
        std::fs::write(path, B64.decode(shot["data"].as_str().context("image data")?)?)?;
        Ok(())
    }

    /// Asks Chromium to quit; dropping the browser kills it otherwise.
    async fn close(mut self) {
        let _ = self.call("Browser.close", json!({})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.process.wait()).await;
    }
}

/// Chromium picks a free port and writes it to `DevToolsActivePort` in its profile; the
/// page is then listed at `/json/list` with the address of its WebSocket.
async fn connect_to_page(process: &mut tokio::process::Child, profile: &Path) -> anyhow::Result<WebSocket> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    loop {
        if let Some(status) = process.try_wait()? {
            bail!("chromium exited with {status}");
        }
        let port = std::fs::read_to_string(profile.join("DevToolsActivePort"))
            .ok()
            .and_then(|s| s.lines().next()?.parse::<u16>().ok());
        if let Some(port) = port {
            let targets = match http.get(format!("http://127.0.0.1:{port}/json/list")).send().await {
                Ok(r) => r.json::<Vec<Value>>().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            let page = targets.iter().find(|t| t["type"] == "page").and_then(|t| t["webSocketDebuggerUrl"].as_str());
            if let Some(page) = page {
                return WebSocket::connect(page).await;
            }
        }
        ensure!(tokio::time::Instant::now() < deadline, "no page to drive within {PAGE_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chromium_log(profile: &Path) -> String {
    let log = std::fs::read_to_string(profile.join("chromium.log")).unwrap_or_default();
    format!("chromium's log:\n{log}")
}

/// The client side of a WebSocket (RFC 6455) as far as the DevTools protocol needs it:
/// text messages, no extensions. What the client sends is masked, as the RFC requires.
struct WebSocket {
    stream: BufReader<TcpStream>,
}

impl WebSocket {
    async fn connect(url: &str) -> anyhow::Result<WebSocket> {
        let rest = url.strip_prefix("ws://").context("a ws:// address")?;
        let (host, path) = rest.split_once('/').context("a path")?;
        let mut stream = BufReader::new(TcpStream::connect(host).await?);
        let key = B64.encode(rand::random::<[u8; 16]>());
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.get_mut().write_all(request.as_bytes()).await?;
        let mut status = String::new();
        stream.read_line(&mut status).await?;
        ensure!(status.starts_with("HTTP/1.1 101"), "upgrading {url}: {status}");
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await? == 0 || header == "\r\n" {
                break;
            }
        }
        Ok(WebSocket { stream })
    }

    async fn send(&mut self, text: &str) -> anyhow::Result<()> {
        let payload = text.as_bytes();
        // FIN and the text opcode, then the length with the mask bit set.
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = rand::random();
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await?;
        Ok(())
    }

    /// The next text message, its fragments joined.
    async fn receive(&mut self) -> anyhow::Result<String> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await?;
            let (fin, opcode, masked) = (head[0] & 0x80 != 0, head[0] & 0x0f, head[1] & 0x80 != 0);
            let len = match head[1] & 0x7f {
                126 => self.stream.read_u16().await? as usize,
                127 => self.stream.read_u64().await? as usize,
                n => n as usize,
            };
            let mut mask = [0u8; 4];
            if masked {
                self.stream.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await?;
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
            match opcode {
                0x8 => bail!("the browser closed the connection"),
                // Pings and pongs: Chromium sends none unasked.
                0x9 | 0xa => continue,
                _ => message.extend(payload),
            }
            if fin {
                return Ok(String::from_utf8(message)?);
            }
        }
    }
}
