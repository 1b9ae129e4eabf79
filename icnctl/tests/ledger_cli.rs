//! The mutual-credit ledger from the command line, against a real node (netd, gossip,
//! ledger): members create their own keys, the founder creates a cooperative and its
//! currency, members pay each other, and the ledger's rules come back as clear errors.
//! Every key stays in its keystore; icnctl signs, the node only checks.

use icn_testkit::{Bootstrap, Network};
use std::path::Path;
use std::process::{Command, Output};

const PASSPHRASE: &str = "member secret";

/// icnctl as the members run it, against one ledger endpoint, with their keys in `keys`.
struct Icnctl<'a> {
    endpoint: &'a str,
    keys: &'a Path,
}

impl Icnctl<'_> {
    /// The keystore file of member `name`.
    fn key(&self, name: &str) -> String {
        self.keys.join(format!("{name}.key")).to_str().unwrap().to_string()
    }

    /// Runs one command line; arguments are separated by whitespace (none has any).
    fn run(&self, line: &str) -> Output {
        Command::new(icn_testkit::binary("icnctl").unwrap())
            .arg("--endpoint")
            .arg(self.endpoint)
            .args(line.split_whitespace())
            .env("ICN_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap()
    }

    /// Stdout of a command that must succeed.
    fn ok(&self, line: &str) -> String {
        let out = self.run(line);
        assert!(
            out.status.success(),
            "icnctl {line} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stderr of a command that must fail with exit code 1.
    fn fails(&self, line: &str) -> String {
        let out = self.run(line);
        assert_eq!(out.status.code(), Some(1), "icnctl {line}: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, line: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&format!("--json {line}"))).unwrap()
    }

    /// Creates member `name`'s key and returns its DID.
    fn keygen(&self, name: &str) -> String {
        let created = self.json(&format!("member keygen --key {}", self.key(name)));
        assert_eq!(created["created"], true);
        created["did"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn members_found_a_cooperative_and_pay_each_other_within_their_credit_limits() {
    let net =
        Network::builder(1).bootstrap(Bootstrap::None).services(&["netd", "gossip", "ledger"]).start().await.unwrap();
    let endpoint = net.nodes[0].endpoint("ledger");
    let keys = tempfile::tempdir().unwrap();
    let cli = Icnctl { endpoint: &endpoint, keys: keys.path() };
    let (founder_key, alice_key, bob_key) = (cli.key("founder"), cli.key("alice"), cli.key("bob"));

    // Each member creates a key of their own; an existing key is never overwritten.
    let founder = cli.keygen("founder");
    let alice = cli.keygen("alice");
    let bob = cli.keygen("bob");
    assert!(cli.fails(&format!("member keygen --key {alice_key}")).contains("never overwritten"));
    assert!(cli.ok(&format!("member show --key {alice_key}")).contains(&alice));

    // The founder creates the cooperative with Alice and Bob, and its currency.
    // Its id is the label and 26 characters bound to the founding record.
    let created =
        cli.ok(&format!("coop create bakery --name Bakery --key {founder_key} --member {alice} --member {bob}"));
    let bakery = created
        .lines()
        .find_map(|l| l.strip_prefix("created cooperative "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    assert!(bakery.starts_with("bakery-") && bakery.len() == "bakery-".len() + 26, "{created}");
    let hours = format!("--coop {bakery} --currency hours");
    let hours = hours.as_str();
    let currency =
        cli.ok(&format!("currency create hours --coop {bakery} --decimals 2 --credit-limit 50 --key {founder_key}"));
    assert!(currency.contains("default credit limit 50.00"), "{currency}");
    let shown = cli.ok(&format!("coop show {bakery}"));
    for did in [&founder, &alice, &bob] {
        assert!(shown.contains(did.as_str()), "{shown}");
    }
    assert!(shown.contains("admin") && shown.contains("hours"), "{shown}");

    // Only an admin signs a currency.
    let refused =
        cli.fails(&format!("currency create tokens --coop {bakery} --decimals 0 --credit-limit 5 --key {alice_key}"));
    assert!(refused.contains("not an admin"), "{refused}");

    // Alice pays Bob 12.50 hours.
    let pay = |key: &str, to: &str, amount: &str, memo: &str| {
        format!("transfer {hours} --to {to} --amount {amount} --memo {memo} --key {key}")
    };
    let paid = cli.ok(&pay(&alice_key, &bob, "12.5", "bread"));
    assert!(paid.contains("status   applied"), "{paid}");
    let hash = paid.lines().find_map(|l| l.strip_prefix("hash     ")).unwrap();
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{paid}");

    let balance = cli.ok(&format!("balance {hours} --key {alice_key}"));
    assert!(balance.contains("balance       -12.50 hours") && balance.contains("seq           1"), "{balance}");
    let balance = cli.ok(&format!("balance {hours} --member {bob}"));
    assert!(balance.contains("balance       12.50 hours"), "{balance}");
    let balance = cli.json(&format!("balance {hours} --member {bob}"));
    assert_eq!(balance["account"]["balance"], 1250, "{balance}");
    assert_eq!(balance["account"]["credit_limit"], 5000, "{balance}");

    let history = cli.ok(&format!("history {hours} --key {alice_key}"));
    let row = history.lines().find(|l| l.contains(&bob)).unwrap_or_else(|| panic!("{history}"));
    assert!(row.contains("out") && row.contains("-12.50") && row.contains("applied") && row.contains("bread"), "{row}");
    let history = cli.json(&format!("history {hours} --member {bob}"));
    assert_eq!(history["transfers"][0]["hash"], hash, "{history}");

    let stats = cli.ok(&format!("stats --coop {bakery}"));
    assert!(stats.contains("members      3") && stats.contains("transfers    1"), "{stats}");
    let row = stats.lines().find(|l| l.starts_with("hours")).unwrap_or_else(|| panic!("{stats}"));
    let figures: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(figures, ["hours", "2", "1", "12.50", "12.50", "0", "0"], "{stats}");

    // 100 more would take Alice below her floor of -50: refused, naming the rule.
    let refused = cli.fails(&pay(&alice_key, &bob, "100", "oven"));
    assert!(refused.contains("BELOW_FLOOR"), "{refused}");

    // The founder raises Alice's limit to 200; now the payment goes through.
    let raised = cli.ok(&format!("limits set {hours} --member {alice} --limit 200 --key {founder_key}"));
    assert!(raised.contains("is 200.00"), "{raised}");
    let limits = cli.ok(&format!("limits {hours}"));
    let row = limits.lines().find(|l| l.starts_with(&alice)).unwrap_or_else(|| panic!("{limits}"));
    assert!(row.contains("200.00") && row.contains("-12.50"), "{row}");
    assert!(cli.ok(&pay(&alice_key, &bob, "100", "oven")).contains("status   applied"));
    let balance = cli.ok(&format!("balance {hours} --key {alice_key}"));
    assert!(balance.contains("balance       -112.50 hours"), "{balance}");

    // An admin admits Carol; Bob spends what he earned on her flour.
    let carol_key = cli.key("carol");
    let carol = cli.keygen("carol");
    let admitted = cli.ok(&format!("coop admit {carol} --coop {bakery} --key {founder_key}"));
    assert!(admitted.contains(&format!("{carol} is member of cooperative {bakery}")), "{admitted}");
    assert!(cli.ok(&pay(&bob_key, &carol, "20", "flour")).contains("status   applied"));
    assert_eq!(cli.json(&format!("balance {hours} --key {carol_key}"))["account"]["balance"], 2000);

    // A retry with the same idempotency id pays once; the id cannot name another payment.
    let rent = |amount: &str| {
        format!("transfer {hours} --to {carol} --amount {amount} --idempotency-id rent-may --key {bob_key}")
    };
    assert!(cli.ok(&rent("5")).contains("status   applied"));
    assert!(cli.ok(&rent("5")).contains("submitted before with idempotency id `rent-may`"));
    assert!(cli.fails(&rent("7")).contains("nothing was paid"));
    assert_eq!(cli.json(&format!("balance {hours} --member {carol}"))["account"]["balance"], 2500);

    assert_eq!(cli.ok(&format!("quarantine --coop {bakery}")).trim(), "no forks");

    // The founder removes Carol: she can pay no more, and what she was paid stands.
    let removed = cli.ok(&format!("coop remove {carol} --coop {bakery} --key {founder_key}"));
    assert!(removed.contains(&format!("{carol} is removed from cooperative {bakery}")), "{removed}");
    assert!(cli.fails(&pay(&carol_key, &bob, "1", "after")).contains("NOT_A_MEMBER"));
    assert_eq!(cli.json(&format!("balance {hours} --member {carol}"))["account"]["balance"], 2500);

    // The founder names the node the cooperative's one validator: from then on each
    // payment carries the node's vote and is final for its payee. A member cannot.
    let node = net.nodes[0].did().to_string();
    assert!(cli.fails(&format!("coop validators {node} --coop {bakery} --key {alice_key}")).contains("not an admin"));
    let named = cli.ok(&format!("coop validators {node} --coop {bakery} --key {founder_key}"));
    assert!(named.contains("certified by 1 of these 1 validators"), "{named}");
    let shown = cli.ok(&format!("coop show {bakery}"));
    assert!(shown.contains("validators   quorum 1 of 1") && shown.contains(&node), "{shown}");
    let paid = cli.ok(&pay(&alice_key, &bob, "1", "final"));
    assert!(paid.contains("votes    1 of quorum 1: certified"), "{paid}");
    let paid = cli.json(&pay(&alice_key, &bob, "1", "final-too"));
    assert_eq!((paid["record"]["certified"].clone(), paid["record"]["votes"].clone()), (true.into(), 1.into()));
}
