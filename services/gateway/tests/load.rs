//! A load test: hundreds of members, each its own HTTP client, hammer one gateway from
//! this process for about a minute (`ICN_LOAD_SECONDS`). The only errors allowed are the
//! gateway's deliberate 429s; its memory must stay bounded; the latencies are printed
//! for docs/BENCHMARKS.md.

use icn_proto::ledger::v1 as ledger;
use icn_testkit::ledger::TestCoop;
use icn_testkit::{Bootstrap, Network};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 300;

/// The process's resident memory from `/proc/<pid>/status`; a process whose memory
/// cannot be read (gone, or no `VmRSS` line) fails the test rather than reading as 0.
fn rss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("gateway RSS: reading {path}: {e}"));
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
    let kib = line.and_then(|v| v.trim().strip_suffix("kB")).and_then(|v| v.trim().parse().ok());
    kib.unwrap_or_else(|| panic!("gateway RSS: no `VmRSS: <n> kB` line in {path}: {line:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_clients_for_a_minute_get_answers_or_deliberate_429s_and_memory_stays_bounded() {
    let seconds: u64 = std::env::var("ICN_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(&["netd", "gossip", "ledger", "gateway"])
        // Every client comes from 127.0.0.1: the per-address limit would throttle them
        // all as one. The per-identity limit and load shedding stay as configured.
        .env("ICN__API__ADDRESS_RATE", "1000000")
        .env("ICN__API__ADDRESS_BURST", "1000000")
        .env("ICN__LOG__LEVEL", "warn")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let base = node.http_url();
    let mut ledger_client = node.ledger().await.unwrap();
    let coop = Arc::new(TestCoop::create(&mut ledger_client, "load", CLIENTS - 1, 1_000_000_000).await.unwrap());
    let gateway_pid = node.pid("gateway").unwrap();

    // Every member logs in with its own client (its own connections).
    let mut members = Vec::new();
    for (i, m) in coop.everyone().into_iter().enumerate() {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let token = icn_testkit::gateway::login(&http, &base, m, &[]).await.unwrap();
        members.push((i, http, token));
    }
    let rss_start = rss_kib(gateway_pid);
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (ok, limited, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, http, token) in members {
        let (base, coop, latencies, ok, limited, failed, failures) = (
            base.clone(),
            coop.clone(),
            latencies.clone(),
            ok.clone(),
            limited.clone(),
            failed.clone(),
            failures.clone(),
        );
        let mut ledger_client = node.ledger().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let everyone = coop.everyone();
            let me = everyone[i];
            let mut round = 0u64;
            while Instant::now() < until {
                round += 1;
                let started = Instant::now();
                let response = match round % 10 {
                    // A payment now and then: built from the account, signed by the member.
                    0 => {
                        let payee = everyone[(i + 1) % everyone.len()];
                        let t = match coop.next(&mut ledger_client, me, payee, 1, "load").await {
                            Ok(t) => t,
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                failures.lock().unwrap().push(format!("building member {i}'s payment: {e}"));
                                continue;
                            }
                        };
                        let body = serde_json::to_value(ledger::SubmitTransferRequest { transfer: Some(t) }).unwrap();
                        http.post(format!("{base}/v1/transfers")).bearer_auth(&token).json(&body).send().await
                    }
                    1..=5 => {
                        http.get(format!("{base}/v1/coops/{}/accounts/hours/me", coop.id))
                            .bearer_auth(&token)
                            .send()
                            .await
                    }
                    _ => http.get(format!("{base}/v1/coops/{}/stats", coop.id)).send().await,
                };
                let elapsed = started.elapsed();
                match response.map(|r| r.status().as_u16()) {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        latencies.lock().unwrap().push(elapsed);
                    }
                    Ok(429) => {
                        limited.fetch_add(1, Ordering::Relaxed);
                        // Back off as a polite client would.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().unwrap().push(format!("member {i}, round {round}: {other:?}"));
                    }
                }
            }
        }));
    }
    // Memory, sampled while the load runs.
    let mut rss_max = rss_start;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(rss_kib(gateway_pid));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut sorted = latencies.lock().unwrap().clone();
    sorted.sort();
    let pick = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let (ok, limited, failed) =
        (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "{CLIENTS} clients, {seconds} s: {ok} answered ({:.0}/s), {limited} deliberate 429s, {failed} errors; \
         latency p50 {:?} p99 {:?}; gateway RSS {} MiB at start, {} MiB at most",
        ok as f64 / seconds as f64,
        pick(0.5),
        pick(0.99),
        rss_start / 1024,
        rss_max / 1024
    );
    assert_eq!(failed, 0, "errors other than 429: {:?}", failures.lock().unwrap().iter().take(5).collect::<Vec<_>>());
    assert!(ok > CLIENTS as u64 * seconds, "the gateway answered: {ok}");
    assert!(
        rss_max < rss_start + 200 * 1024,
        "gateway memory grew from {} MiB to {} MiB",
        rss_start / 1024,
        rss_max / 1024
    );
}
