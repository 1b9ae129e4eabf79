//! A transfer's form is judged with its signature, on every core ([`Checked::verify_all`]),
//! and the committer trusts that judgement only when it passed: a malformed transfer
//! signed by a member is refused exactly as before, from a member's API call or a peer.
//!
//! Tests only: nothing here is compiled into the service.

use super::tests::admin_entries;
use super::{Checked, GroupWrite, Outcome, Source, State};
use icn_identity::NodeIdentity;
use icn_ledger_records::{next_transfer, sign, Payment};
use icn_proto::ledger::v1::{Account, Transfer, TransferStatus};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerEntry};

/// The payer's first transfer, 5 hours to the payee: well formed.
fn well_formed(c: &str, payer: &NodeIdentity, payee: &NodeIdentity) -> Transfer {
    let payment =
        Payment { coop_id: c, currency: "hours", payee: payee.did().as_str(), amount: 5, memo: "", idempotency_id: "" };
    next_transfer(payer, &Account::default(), &payment, 100)
}

/// One transfer per rule of `engine::check_form`, each signed by the payer.
fn malformed(c: &str, payer: &NodeIdentity, payee: &NodeIdentity) -> Vec<(&'static str, Transfer)> {
    let good = well_formed(c, payer, payee);
    let with = |change: &dyn Fn(&mut Transfer)| {
        let mut t = good.clone();
        change(&mut t);
        sign(payer, t)
    };
    vec![
        ("a payee that is no DID", with(&|t| t.payee = "did:key:zNotAKey".into())),
        ("a zero amount", with(&|t| t.amount = 0)),
        ("a negative amount", with(&|t| t.amount = -5)),
        ("a payment to oneself", with(&|t| t.payee = t.payer.clone())),
        ("sequence number zero", with(&|t| t.payer_seq = 0)),
        ("a dep named twice", with(&|t| t.deps = vec![vec![7; 32], vec![7; 32]])),
        ("a dep that is no hash", with(&|t| t.deps = vec![vec![7; 31]])),
        ("a memo past its bound", with(&|t| t.memo = "m".repeat(100_000))),
    ]
}

fn founded() -> (String, NodeIdentity, NodeIdentity, State) {
    let founder = NodeIdentity::generate();
    let members = [NodeIdentity::generate(), NodeIdentity::generate()];
    let (c, admin) = admin_entries(&founder, &members);
    let mut state = State::default();
    state.apply(
        admin.into_iter().map(Checked::trusted).collect(),
        Source::Peer { position: 1 },
        0,
        &mut GroupWrite::default(),
    );
    let [payer, payee] = members;
    (c, payer, payee, state)
}

fn checked(t: &Transfer) -> Checked {
    let mut out = Checked::verify_all(vec![LedgerEntry { body: Some(Body::Transfer(t.clone())) }]);
    out.pop().expect("one entry")
}

#[test]
fn a_malformed_transfer_with_a_good_signature_is_refused_from_a_member_and_from_a_peer() {
    let (c, payer, payee, mut state) = founded();
    for (what, t) in malformed(&c, &payer, &payee) {
        let hash = icn_ledger_records::hash(&t);
        let one = checked(&t);
        assert_eq!(one.hash.as_ref().ok(), Some(&hash), "{what}: its signature holds");
        assert!(!one.formed, "{what}: the signature check must not pass its form");

        let mut write = GroupWrite::default();
        let outcomes = state.apply(vec![one], Source::Local, 100, &mut write);
        match &outcomes[..] {
            [Outcome::Transfer { record, duplicate: false }] => {
                assert_eq!(record.status, TransferStatus::Rejected as i32, "{what}: {record:?}")
            }
            other => panic!("{what}: {} outcomes, not one transfer's", other.len()),
        }
        assert!(write.journal.is_empty(), "{what}: a member's malformed transfer is not stored");

        let mut write = GroupWrite::default();
        let outcomes = state.apply(vec![checked(&t)], Source::Peer { position: 2 }, 100, &mut write);
        assert!(matches!(outcomes[..], [Outcome::Dropped]), "{what}: a peer's is dropped");
        assert!(write.journal.is_empty(), "{what}: a peer's malformed transfer is not stored");
        let coop = state.coops.get(&c).expect("founded");
        assert!(!coop.knows(&hash), "{what}: nor kept");
    }
}

#[test]
fn a_well_formed_transfer_is_judged_once_and_applies() {
    let (c, payer, payee, mut state) = founded();
    let t = well_formed(&c, &payer, &payee);
    let one = checked(&t);
    assert!(one.formed, "its form passed with its signature");
    let mut write = GroupWrite::default();
    state.apply(vec![one], Source::Local, 100, &mut write);
    assert_eq!(write.journal.len(), 1);
    let coop = state.coops.get(&c).expect("founded");
    assert!(coop.engine.is_applied(&icn_ledger_records::hash(&t)));
}
