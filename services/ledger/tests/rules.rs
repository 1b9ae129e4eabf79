//! The ledger's rules through its API on one real node: each refusal has its gRPC code
//! and names its rule, and nothing refused moves a balance or stops the node.

use icn_identity::{NodeIdentity, Purpose};
use icn_ledger_records::{hash, sign};
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::*;
use icn_testkit::ledger::{TestCoop, CURRENCY};
use icn_testkit::{Bootstrap, Network};
use tonic::transport::Channel;
use tonic::Code;

async fn node() -> (Network, LedgerClient<Channel>) {
    let net =
        Network::builder(1).bootstrap(Bootstrap::None).services(&["netd", "gossip", "ledger"]).start().await.unwrap();
    let client = net.nodes[0].ledger().await.unwrap();
    (net, client)
}

async fn submit(client: &mut LedgerClient<Channel>, t: Transfer) -> Result<SubmitTransferResponse, tonic::Status> {
    client.submit_transfer(SubmitTransferRequest { transfer: Some(t) }).await.map(|r| r.into_inner())
}

fn refused(result: Result<SubmitTransferResponse, tonic::Status>, code: Code, rule: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(rule), "the message names {rule}: {}", status.message());
}

/// `by`'s signed admission of `who` to `coop_id` in `role`, timed `at`.
fn admit(coop_id: &str, by: &NodeIdentity, who: &NodeIdentity, role: MemberRole, at: i64) -> MemberAdmission {
    sign(
        by,
        MemberAdmission {
            coop_id: coop_id.into(),
            member: who.did().to_string(),
            role: role as i32,
            created_at_ms: at,
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_broken_rule_is_refused_with_its_code_and_name_and_moves_nothing() {
    let (_net, mut c) = node().await;
    let coop = TestCoop::create(&mut c, "rules", 2, 5_000).await.unwrap();
    let (a, b) = (&coop.members[0], &coop.members[1]);

    // Overdraft beyond the floor: -5,000 is the floor.
    let t = coop.next(&mut c, a, b, 5_001, "too much").await.unwrap();
    refused(submit(&mut c, t).await, Code::FailedPrecondition, "BELOW_FLOOR");

    // A signature that is not the payer's.
    let mut t = coop.next(&mut c, a, b, 10, "forged").await.unwrap();
    t.amount = 20;
    refused(submit(&mut c, t).await, Code::InvalidArgument, "BAD_SIGNATURE");

    // The payer's own signature over the transfer's hash, made for another purpose: what a
    // malicious gateway would get by sending the hash as a login challenge, or a bare
    // Ed25519 signature of the old format. Neither pays.
    let t = coop.next(&mut c, a, b, 10, "signed for logging in").await.unwrap();
    for purpose in [Purpose::Login, Purpose::GossipEntry, Purpose::CreditLimit] {
        let mut wrong = t.clone();
        wrong.signature = a.sign_for(purpose, &hash(&t)).to_bytes().to_vec();
        refused(submit(&mut c, wrong).await, Code::InvalidArgument, "BAD_SIGNATURE");
    }
    // Signed for paying, the same transfer is valid: only the purpose was wrong.
    assert_eq!(icn_ledger_records::verify(&t), Ok(hash(&t)));

    // Zero, negative, and more than the largest amount.
    for amount in [0, -7] {
        let t = coop.next(&mut c, a, b, amount, "not positive").await.unwrap();
        refused(submit(&mut c, t).await, Code::InvalidArgument, "INVALID_AMOUNT");
    }
    let t = coop.next(&mut c, a, b, i64::MAX, "overflow").await.unwrap();
    refused(submit(&mut c, t).await, Code::InvalidArgument, "INVALID_AMOUNT");

    // Unknown currency, unknown cooperative, a payee who is not a member.
    let mut t = coop.next(&mut c, a, b, 10, "other currency").await.unwrap();
    t.currency = "euro".into();
    refused(submit(&mut c, sign(a, t)).await, Code::FailedPrecondition, "UNKNOWN_CURRENCY");
    let mut t = coop.next(&mut c, a, b, 10, "other coop").await.unwrap();
    t.coop_id = "nowhere".into();
    refused(submit(&mut c, sign(a, t)).await, Code::FailedPrecondition, "UNKNOWN_COOP");
    let outsider = NodeIdentity::generate();
    let t = coop.next(&mut c, a, &outsider, 10, "to a stranger").await.unwrap();
    refused(submit(&mut c, t).await, Code::FailedPrecondition, "NOT_A_MEMBER");

    // A valid first transfer, then one whose chain link names something else.
    let first = coop.next(&mut c, a, b, 100, "first").await.unwrap();
    let r = submit(&mut c, first.clone()).await.unwrap();
    assert_eq!(r.record.unwrap().status, TransferStatus::Applied as i32);
    let mut t = coop.next(&mut c, a, b, 10, "bad link").await.unwrap();
    t.prev_hash = vec![7; 32];
    refused(submit(&mut c, sign(a, t)).await, Code::FailedPrecondition, "BROKEN_CHAIN");
    // A memo above 256 bytes.
    let t = coop.next(&mut c, a, b, 10, &"x".repeat(300)).await.unwrap();
    refused(submit(&mut c, t).await, Code::InvalidArgument, "MALFORMED");
    // A later release's record format, at this node's API: refused, saying why.
    let mut t = coop.next(&mut c, a, b, 10, "from the future").await.unwrap();
    t.format = 1;
    let status = submit(&mut c, sign(a, t)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("format 1 is newer"), "{status:?}");

    // Signer-chosen time (issue #11): reaching back before the payer's own previous
    // transfer is refused by the rule every node applies; an hour off this node's clock
    // is refused at this node's API (a peer's would be judged by signed data alone).
    let mut t = coop.next(&mut c, a, b, 10, "before my first").await.unwrap();
    t.created_at_ms = first.created_at_ms - 1;
    refused(submit(&mut c, sign(a, t)).await, Code::InvalidArgument, "BAD_TIME");
    let mut t = coop.next(&mut c, a, b, 10, "from the future").await.unwrap();
    t.created_at_ms += 3_600_000;
    refused(submit(&mut c, sign(a, t)).await, Code::InvalidArgument, "BAD_TIME");
    // An admin's limit backdated by an hour, to judge transfers already applied anew.
    let limit = sign(
        &coop.founder,
        CreditLimit {
            coop_id: coop.id.clone(),
            currency: CURRENCY.into(),
            member: a.did().to_string(),
            limit: 0,
            created_at_ms: icn_runtime::now_ms() - 3_600_000,
            ..Default::default()
        },
    );
    let status = c.set_credit_limit(SetCreditLimitRequest { limit: Some(limit) }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("credit.max_clock_skew"), "{status:?}");

    // Nothing refused moved anything.
    let balances = coop.balances(&mut c).await.unwrap();
    assert_eq!(balances[a.did().as_str()], -100);
    assert_eq!(balances[b.did().as_str()], 100);
    coop.assert_invariants(&balances);

    // Retrying the same signed transfer returns the first outcome, once.
    let again = submit(&mut c, first.clone()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.record.unwrap().hash, hash(&first).to_vec());
    // And so does another transfer reusing its idempotency id.
    let mut reuse = coop.next(&mut c, a, b, 999, "reused id").await.unwrap();
    reuse.idempotency_id = first.idempotency_id.clone();
    let reused = submit(&mut c, sign(a, reuse)).await.unwrap();
    assert!(reused.duplicate);
    assert_eq!(reused.record.unwrap().hash, hash(&first).to_vec());
    assert_eq!(coop.balances(&mut c).await.unwrap()[b.did().as_str()], 100, "paid once");
    let by_id = c
        .get_transfer(GetTransferRequest {
            key: Some(get_transfer_request::Key::Idempotency(IdempotencyKey {
                coop_id: coop.id.clone(),
                currency: CURRENCY.into(),
                payer: a.did().to_string(),
                idempotency_id: first.idempotency_id.clone(),
            })),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.record.unwrap().hash, hash(&first).to_vec());

    // A batch: each transfer has its own result, and a refused one stops nothing.
    let ok = coop.next(&mut c, b, a, 30, "batch ok").await.unwrap();
    let bad = coop.next(&mut c, a, b, 0, "batch zero").await.unwrap();
    let r = c.submit_transfers(SubmitTransfersRequest { transfers: vec![bad, ok] }).await.unwrap().into_inner();
    let statuses: Vec<i32> = r.results.iter().map(|r| r.record.as_ref().unwrap().status).collect();
    assert_eq!(statuses, vec![TransferStatus::Rejected as i32, TransferStatus::Applied as i32]);
    assert_eq!(r.results[0].record.as_ref().unwrap().rejection, TransferRejection::InvalidAmount as i32);

    let drift = c
        .recompute_balances(RecomputeBalancesRequest { coop_id: coop.id.clone(), ..Default::default() })
        .await
        .unwrap();
    assert!(drift.into_inner().drifts.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn deps_wait_forks_quarantine_and_only_admins_change_the_rules() {
    let (_net, mut c) = node().await;
    let coop = TestCoop::create(&mut c, "rules-two", 3, 100).await.unwrap();
    let (a, b, m) = (&coop.members[0], &coop.members[1], &coop.members[2]);

    // b relies on income that has not reached this node yet: pending, then applied.
    let income = coop.next(&mut c, a, b, 80, "income").await.unwrap();
    let mut spend = coop.next(&mut c, b, a, 150, "relies on the income").await.unwrap();
    spend.deps = vec![hash(&income).to_vec()];
    let spend = sign(b, spend);
    let r = submit(&mut c, spend.clone()).await.unwrap().record.unwrap();
    assert_eq!(r.status, TransferStatus::PendingDeps as i32);
    assert_eq!(r.missing_deps, vec![hash(&income).to_vec()]);
    // b's client continues after the waiting transfer, not after the last applied one.
    let account = coop.account(&mut c, b).await.unwrap();
    assert_eq!((account.seq, account.tip_seq, account.pending), (0, 1, 1));
    let after = coop.next(&mut c, b, a, 5, "after the waiting one").await.unwrap();
    assert_eq!((after.payer_seq, after.prev_hash.clone()), (2, hash(&spend).to_vec()));
    let r = submit(&mut c, after.clone()).await.unwrap().record.unwrap();
    assert_eq!(r.status, TransferStatus::PendingDeps as i32);
    submit(&mut c, income).await.unwrap();
    let r =
        c.get_transfer(GetTransferRequest { key: Some(get_transfer_request::Key::Hash(hash(&after).to_vec())) }).await;
    assert_eq!(r.unwrap().into_inner().record.unwrap().status, TransferStatus::Applied as i32);
    let r =
        c.get_transfer(GetTransferRequest { key: Some(get_transfer_request::Key::Hash(hash(&spend).to_vec())) }).await;
    assert_eq!(r.unwrap().into_inner().record.unwrap().status, TransferStatus::Applied as i32);
    assert_eq!(coop.balances(&mut c).await.unwrap()[b.did().as_str()], 80 - 150 - 5);

    // m signs two transfers with one sequence number: both quarantined, nothing moves.
    let one = coop.next(&mut c, m, a, 10, "one").await.unwrap();
    let mut other = coop.next(&mut c, m, b, 10, "the same place").await.unwrap();
    // Another idempotency id: with the same one this node would answer with `one`.
    other.idempotency_id = "another".into();
    let other = sign(m, other);
    assert_eq!(submit(&mut c, one.clone()).await.unwrap().record.unwrap().status, TransferStatus::Applied as i32);
    let r = submit(&mut c, other).await.unwrap().record.unwrap();
    assert_eq!(r.status, TransferStatus::Quarantined as i32);
    let q =
        c.list_quarantine(ListQuarantineRequest { coop_id: coop.id.clone(), page: None }).await.unwrap().into_inner();
    assert_eq!(q.forks.len(), 1);
    assert_eq!(q.forks[0].payer, m.did().as_str());
    assert!(q.forks[0].transfers.iter().all(|t| t.status == TransferStatus::Quarantined as i32));
    assert_eq!(coop.balances(&mut c).await.unwrap()[m.did().as_str()], 0);
    let stats = coop.stats(&mut c).await.unwrap();
    assert_eq!(stats.currencies[0].quarantined_transfers, 2);

    // A member is no admin: it cannot create a currency or change a limit.
    let currency =
        sign(a, Currency { coop_id: coop.id.clone(), symbol: "euro".into(), decimals: 2, ..Default::default() });
    let e = c.create_currency(CreateCurrencyRequest { currency: Some(currency) }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let limit = |by: &NodeIdentity, member: &NodeIdentity, limit: i64| {
        sign(
            by,
            CreditLimit {
                coop_id: coop.id.clone(),
                currency: CURRENCY.into(),
                member: member.did().to_string(),
                limit,
                created_at_ms: icn_runtime::now_ms(),
                ..Default::default()
            },
        )
    };
    let e = c.set_credit_limit(SetCreditLimitRequest { limit: Some(limit(a, a, 1_000_000)) }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The founder raises a's limit: a transfer refused before now applies.
    let big = coop.next(&mut c, a, b, 500, "needs more credit").await.unwrap();
    refused(submit(&mut c, big).await, Code::FailedPrecondition, "BELOW_FLOOR");
    let r = c.set_credit_limit(SetCreditLimitRequest { limit: Some(limit(&coop.founder, a, 1_000)) }).await.unwrap();
    assert_eq!(r.into_inner().account.unwrap().credit_limit, 1_000);
    let big = coop.next(&mut c, a, b, 500, "needs more credit").await.unwrap();
    assert_eq!(submit(&mut c, big).await.unwrap().record.unwrap().status, TransferStatus::Applied as i32);
    // A forged admin entry is refused outright.
    let mut forged = limit(&coop.founder, a, 9_999);
    forged.limit = 10_000;
    let e = c.set_credit_limit(SetCreditLimitRequest { limit: Some(forged) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_is_revoked_from_the_removal_on_and_what_it_did_before_stands() {
    let (_net, mut c) = node().await;
    let coop = TestCoop::create(&mut c, "revoke", 2, 1_000).await.unwrap();
    let (a, b) = (&coop.members[0], &coop.members[1]);
    let admission =
        |by: &NodeIdentity, who: &NodeIdentity, role: MemberRole| admit(&coop.id, by, who, role, icn_runtime::now_ms());
    let admin_client = c.clone();
    let add = |m: MemberAdmission| {
        let mut c = admin_client.clone();
        async move { c.add_member(AddMemberRequest { admission: Some(m) }).await.map(|r| r.into_inner()) }
    };
    // The founder makes A an admin; A admits Carol; A pays B.
    add(admission(&coop.founder, a, MemberRole::Admin)).await.unwrap();
    // Admin entries are read in (time, hash) order: an admission A signs in the same
    // millisecond as its promotion may sort before it, and would be refused
    // (`an_entry_read_before_its_signers_promotion_is_refused_not_acknowledged`).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let carol = NodeIdentity::generate();
    add(admission(a, &carol, MemberRole::Member)).await.unwrap();
    let paid = coop.pay(&mut c, a, b, 100).await.unwrap();
    assert_eq!(paid.status, TransferStatus::Applied as i32);
    // The founder removes A, a moment later (a removal counts from its millisecond on:
    // a payment signed in the same one would not stand).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let removed = add(admission(&coop.founder, a, MemberRole::Removed)).await.unwrap();
    assert_eq!(removed.member.unwrap().role, MemberRole::Removed as i32);
    // A can admit no one any more, and cannot pay: it is no member. (Signed a moment
    // later: an entry of the removal's own millisecond is read in (time, hash) order and
    // may sort before it, as above.)
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let status = add(admission(a, &NodeIdentity::generate(), MemberRole::Member)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let t = coop.next(&mut c, a, b, 10, "after my removal").await.unwrap();
    refused(submit(&mut c, t).await, Code::FailedPrecondition, "NOT_A_MEMBER");
    // What A did before stands: Carol is a member, A's payment to B is applied.
    let held = c.get_coop(GetCoopRequest { coop_id: coop.id.clone() }).await.unwrap().into_inner();
    assert!(held.members.iter().any(|m| m.did == carol.did().as_str()));
    assert!(!held.members.iter().any(|m| m.did == a.did().as_str()));
    assert_eq!(coop.account(&mut c, b).await.unwrap().balance, 100);
    let r = c
        .get_transfer(GetTransferRequest { key: Some(get_transfer_request::Key::Hash(paid.hash.clone())) })
        .await
        .unwrap();
    assert_eq!(r.into_inner().record.unwrap().status, TransferStatus::Applied as i32);
    // No one removes the founder, an admin included.
    add(admission(&coop.founder, b, MemberRole::Admin)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let status = add(admission(b, &coop.founder, MemberRole::Removed)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_read_before_its_signers_promotion_is_refused_not_acknowledged() {
    let (_net, mut c) = node().await;
    let coop = TestCoop::create(&mut c, "promoted", 1, 1_000).await.unwrap();
    let a = &coop.members[0];
    let at = icn_runtime::now_ms();
    let admission = |by: &NodeIdentity, who: &NodeIdentity, at: i64| admit(&coop.id, by, who, MemberRole::Member, at);
    let promotion = admit(&coop.id, &coop.founder, a, MemberRole::Admin, at);
    c.add_member(AddMemberRequest { admission: Some(promotion.clone()) }).await.unwrap();
    // A, an admin now, signs admissions in the promotion's millisecond: those whose hash
    // reads before the promotion's would never count, so the API must refuse them.
    let (mut before, mut after) = (None, None);
    while before.is_none() || after.is_none() {
        let m = admission(a, &NodeIdentity::generate(), at);
        if hash(&m) < hash(&promotion) {
            before.get_or_insert(m)
        } else {
            after.get_or_insert(m)
        };
    }
    let held = |c: &mut LedgerClient<Channel>, who: String| {
        let mut c = c.clone();
        let id = coop.id.clone();
        async move {
            let coop = c.get_coop(GetCoopRequest { coop_id: id }).await.unwrap().into_inner();
            coop.members.iter().any(|m| m.did == who)
        }
    };
    for early in [before.unwrap(), admission(a, &NodeIdentity::generate(), at - 1)] {
        let e = c.add_member(AddMemberRequest { admission: Some(early.clone()) }).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("sign it again with a later created_at_ms"), "{}", e.message());
        assert!(!held(&mut c, early.member.clone()).await, "a refused admission admits no one");
    }
    let after = after.unwrap();
    c.add_member(AddMemberRequest { admission: Some(after.clone()) }).await.unwrap();
    assert!(held(&mut c, after.member.clone()).await, "read after the promotion, it counts");
    // An entry timed before the founding is refused too, even the founder's.
    let founded = c.get_coop(GetCoopRequest { coop_id: coop.id.clone() }).await.unwrap().into_inner();
    let founded_at = founded.coop.unwrap().created_at_ms;
    let early = admission(&coop.founder, &NodeIdentity::generate(), founded_at - 1);
    let e = c.add_member(AddMemberRequest { admission: Some(early) }).await.unwrap_err();
    assert!(matches!(e.code(), Code::InvalidArgument), "{e:?}");
}
