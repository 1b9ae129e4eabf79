//! Member operations through a node's gateway, as a member's app does: log in with the
//! member key, then balance, transfer, history and stats with the saved token; log out
//! revokes it. The founder's admin commands go to the ledger service directly.

use icn_testkit::{Bootstrap, Network};
use std::path::Path;
use std::process::{Command, Output};

const PASSPHRASE: &str = "member secret";

fn icnctl(args: &[&str], token_file: &Path) -> Output {
    Command::new(icn_testkit::binary("icnctl").unwrap())
        .args(args)
        .env("ICN_PASSPHRASE", PASSPHRASE)
        .env("ICN_TOKEN_FILE", token_file)
        .output()
        .unwrap()
}

fn ok(args: &[&str], token_file: &Path) -> String {
    let out = icnctl(args, token_file);
    assert!(
        out.status.success(),
        "icnctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_logs_in_and_pays_through_the_gateway() {
    let net = Network::builder(1)
        .bootstrap(Bootstrap::None)
        .services(&["netd", "gossip", "ledger", "gateway"])
        .start()
        .await
        .unwrap();
    let node = &net.nodes[0];
    let (ledger, gateway) = (node.endpoint("ledger"), node.endpoint("gateway"));
    let dir = tempfile::tempdir().unwrap();
    let key = |n: &str| dir.path().join(format!("{n}.key")).to_str().unwrap().to_string();
    let token = dir.path().join("alice.token");
    let did = |n: &str| {
        let out = ok(&["--json", "member", "keygen", "--key", &key(n)], &token);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["did"].as_str().unwrap().to_string()
    };
    let (founder, alice, bob) = (did("founder"), did("alice"), did("bob"));
    let _ = founder;
    let created = ok(
        &[
            "--json",
            "--endpoint",
            &ledger,
            "coop",
            "create",
            "gwc",
            "--name",
            "Gateway",
            "--key",
            &key("founder"),
            "--member",
            &alice,
            "--member",
            &bob,
        ],
        &token,
    );
    // The id is bound to the founding record: `gwc-` and 26 characters.
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let gwc = created["coop"]["id"].as_str().unwrap().to_string();
    assert!(gwc.starts_with("gwc-"), "{created}");
    let gwc = gwc.as_str();
    ok(
        &[
            "--endpoint",
            &ledger,
            "currency",
            "create",
            "hours",
            "--coop",
            gwc,
            "--decimals",
            "2",
            "--credit-limit",
            "50",
            "--key",
            &key("founder"),
        ],
        &token,
    );

    // Without a token the gateway path says how to get one.
    let out = icnctl(
        &["--gateway", &gateway, "balance", "--coop", gwc, "--currency", "hours", "--key", &key("alice")],
        &token,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("icnctl login"), "{}", String::from_utf8_lossy(&out.stderr));

    // A login meant for another node signs nothing and saves no token: the challenge names
    // this node, as a gateway relaying this node's challenge to a member of another would.
    let elsewhere = icnctl(&["--gateway", &gateway, "login", "--key", &key("alice"), "--node", &bob], &token);
    assert_eq!(elsewhere.status.code(), Some(1));
    let said = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(said.contains("not the expected node") && said.contains("not signed"), "{said}");
    assert!(!token.exists());
    // A token file left readable by others (an older icnctl, a copy) is replaced by one
    // only its owner reads: checked after the login below.
    std::fs::write(&token, "stale").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    let node_did = node.did().to_string();
    let logged = ok(&["--gateway", &gateway, "login", "--key", &key("alice"), "--node", &node_did], &token);
    assert!(logged.contains(&alice) && logged.contains("ledger:write"), "{logged}");
    let saved = std::fs::read_to_string(&token).unwrap();
    assert!(!logged.contains(saved.trim()), "the token is never printed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);

    let gw = ["--gateway", gateway.as_str()];
    let hours = ["--coop", gwc, "--currency", "hours"];
    let paid = ok(
        &[&gw[..], &["transfer"], &hours[..], &["--to", &bob, "--amount", "12.5", "--key", &key("alice")]].concat(),
        &token,
    );
    assert!(paid.contains("applied"), "{paid}");
    let balance = ok(&[&gw[..], &["balance"], &hours[..], &["--key", &key("alice")]].concat(), &token);
    assert!(balance.contains("-12.50"), "{balance}");
    let json = ok(&[&["--json"], &gw[..], &["balance"], &hours[..], &["--member", &bob]].concat(), &token);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap()["account"]["balance"], 1250, "{json}");
    let history = ok(&[&gw[..], &["history"], &hours[..], &["--key", &key("alice")]].concat(), &token);
    assert!(history.contains(&bob), "{history}");
    // Alice's token cannot read bob's history: members read their own.
    let out = icnctl(&[&gw[..], &["history"], &hours[..], &["--member", &bob]].concat(), &token);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("their own history"));
    let stats = ok(&[&gw[..], &["stats", "--coop", gwc]].concat(), &token);
    assert!(stats.contains("12.50"), "{stats}");
    // A transfer in bob's name with alice's token is refused by the gateway.
    let out = icnctl(
        &[&gw[..], &["transfer"], &hours[..], &["--to", &alice, "--amount", "1", "--key", &key("bob")]].concat(),
        &token,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not the caller"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Publishing as the member: signed with alice's key, numbered after her last entry.
    let gossip = node.endpoint("gossip");
    ok(&["--endpoint", &gossip, "topic", "create", "square"], &token);
    for text in ["first", "second"] {
        ok(&["--gateway", &gateway, "topic", "publish", "square", "--payload", text, "--key", &key("alice")], &token);
    }
    let entries = ok(&["--json", "--endpoint", &gossip, "topic", "entries", "square"], &token);
    assert!(entries.contains(&alice) && entries.contains("\"seq\":2"), "{entries}");

    ok(&["--gateway", &gateway, "logout"], &token);
    assert!(!token.exists());
    // A token file left readable by others (an older icnctl, a copy) is replaced by one
    // only its owner reads: checked after the login below.
    std::fs::write(&token, "stale").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}
