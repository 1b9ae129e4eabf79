//! The JavaScript SDK (`sdk/js`) against a real node: this test starts netd, gossip,
//! ledger and gateway, creates a cooperative whose member keys only the test holds,
//! and runs the SDK's own tests (`node --test sdk/js/test/`) with the gateway's URL, the
//! members' keys and reference transfers built and hashed by the Rust ledger code, so
//! the SDK's protobuf encoding is checked byte for byte against prost as well as by a
//! ledger that verifies what the SDK signed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use icn_identity::NodeIdentity;
use icn_ledger_records::{next_transfer, Payment};
use icn_proto::ledger::v1::{Account, Transfer};
use icn_testkit::ledger::{TestCoop, CURRENCY};
use icn_testkit::{Bootstrap, Network};
use prost::Message;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const SERVICES: &[&str] = &["netd", "gossip", "ledger", "gateway"];
/// The public topic the SDK publishes to.
const TOPIC: &str = "sdk-square";
/// Longest the SDK's tests may run; they take a few seconds.
const NODE_TEST_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_sdk_logs_in_pays_reads_and_follows_events_through_a_real_gateway() {
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(SERVICES)
        // The gateway follows new topics at this interval.
        .env("ICN__API__POLL_INTERVAL", "100ms")
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let coop = TestCoop::create(&mut node.ledger().await.unwrap(), "sdk", 2, 10_000).await.unwrap();
    let (alice, bob) = (&coop.members[0], &coop.members[1]);
    node.create_public_topic(TOPIC).await.unwrap();

    let key = |m: &NodeIdentity| B64.encode(m.signing_key_pkcs8_der());
    let env = [
        ("ICN_GATEWAY_URL", node.http_url()),
        ("ICN_SDK_COOP", coop.id.clone()),
        ("ICN_SDK_CURRENCY", CURRENCY.to_string()),
        ("ICN_SDK_TOPIC", TOPIC.to_string()),
        ("ICN_SDK_ALICE_KEY", key(alice)),
        ("ICN_SDK_ALICE_DID", alice.did().to_string()),
        ("ICN_SDK_BOB_KEY", key(bob)),
        ("ICN_SDK_BOB_DID", bob.did().to_string()),
        ("ICN_SDK_VECTORS", reference_vectors(alice, bob).to_string()),
    ];

    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let run = tokio::process::Command::new("node")
        .args(["--test", "sdk/js/test/"])
        .current_dir(&workspace)
        .envs(env)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(NODE_TEST_TIMEOUT, run)
        .await
        .expect("the SDK's tests finish in time")
        .expect("node runs: install Node 20 or later (scripts/install-deps.sh installs nodejs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node --test sdk/js/test/ failed ({}):\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
        output.status,
        node.log_tail("gateway", 40)
    );
    // A runner that found no test, or skipped them for want of the variables above,
    // passes too; these lines say it ran them all.
    assert!(stdout.contains("# fail 0") && stdout.contains("# skipped 0") && !stdout.contains("# pass 0"), "{stdout}");
}

/// Transfers built and hashed by the ledger's own code, for the SDK to reproduce: the
/// next transfer after a known account (it must match field for field, and the Ed25519
/// signature, being deterministic, byte for byte), and transfers at the edges of the
/// encoding (negative int64s, the largest uint64, an empty dep, no fields at all).
fn reference_vectors(alice: &NodeIdentity, bob: &NodeIdentity) -> Value {
    let account = Account {
        coop_id: "sdk".into(),
        currency: CURRENCY.into(),
        member: alice.did().to_string(),
        balance: -1234,
        credit_limit: 10_000,
        seq: 4,
        head_hash: vec![0xa4; 32],
        unclaimed_incoming: vec![vec![0x01; 32], vec![0xfe; 32]],
        tip_seq: 5,
        tip_hash: vec![0xb5; 32],
        ..Default::default()
    };
    let payment = Payment {
        coop_id: "sdk",
        currency: CURRENCY,
        payee: bob.did().as_str(),
        amount: 1 << 40,
        memo: "café ☕ for the 5th",
        idempotency_id: "",
    };
    let created_at_ms = 1_700_000_000_123;
    let next = next_transfer(alice, &account, &payment, created_at_ms);

    let edges = [
        Transfer {
            coop_id: "edge".into(),
            payer: alice.did().to_string(),
            amount: i64::MIN,
            payer_seq: u64::MAX,
            deps: vec![Vec::new(), vec![0x80; 3]],
            created_at_ms: -1,
            signature: vec![7; 64],
            ..Default::default()
        },
        Transfer { amount: -1, memo: "x".repeat(300), payer_seq: 1 << 7, ..Default::default() },
        Transfer::default(),
    ];
    let vector = |t: &Transfer| {
        json!({
            "transfer": t,
            "hash": hex::encode(icn_ledger_records::hash(t)),
            "encoding": hex::encode(t.encode_to_vec()),
        })
    };
    json!({
        "next": {
            "account": account,
            "payment": {
                "coopId": payment.coop_id,
                "currency": payment.currency,
                "payee": payment.payee,
                "amount": payment.amount.to_string(),
                "memo": payment.memo,
            },
            "createdAtMs": created_at_ms.to_string(),
            "expected": vector(&next),
        },
        "edges": edges.iter().map(vector).collect::<Vec<_>>(),
    })
}
