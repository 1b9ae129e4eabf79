//! What a peer can make a node hold by flooding it: transfers signed by keys nobody
//! admitted are evicted at `credit.max_unapplied_*`, and nothing of them stays, not even
//! the engine's number for their accounts.
//!
//! Tests only: nothing here is compiled into the service.

use super::tests::bounded_node;
use super::{Checked, GroupWrite, Source};
use icn_identity::NodeIdentity;
use icn_ledger_records::{next_transfer, Payment};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerEntry};

#[test]
fn a_peer_flooding_transfers_from_new_keys_leaves_no_account_behind() {
    let founder = NodeIdentity::generate();
    let member = NodeIdentity::generate();
    let (c, mut state) = bounded_node(&founder, &member);
    let account = icn_proto::ledger::v1::Account::default();
    let pay = |payer: &NodeIdentity, payee: &NodeIdentity| {
        let payee = payee.did().to_string();
        let payment =
            Payment { coop_id: &c, currency: "hours", payee: &payee, amount: 5, memo: "", idempotency_id: "" };
        next_transfer(payer, &account, &payment, 100)
    };
    // A member's payment applies and its two accounts stay.
    let paid = pay(&member, &founder);
    let group = vec![LedgerEntry { body: Some(Body::Transfer(paid.clone())) }];
    state.apply(Checked::verify_all(group), Source::Peer { position: 2 }, 0, &mut GroupWrite::default());
    assert!(state.coops[&c].engine.is_applied(&icn_ledger_records::hash(&paid)));
    let held = state.coops[&c].engine.accounts_held();
    assert_eq!(held, 2);
    // A peer sends transfers signed by keys nobody admitted, to a member or to more such
    // keys: each waits for an admission, is evicted and read again only if one comes.
    let mut evicted = 0;
    for i in 0..400u64 {
        let stranger = NodeIdentity::generate();
        let t = if i % 2 == 0 { pay(&stranger, &member) } else { pay(&stranger, &NodeIdentity::generate()) };
        let mut write = GroupWrite::default();
        let group = vec![LedgerEntry { body: Some(Body::Transfer(t)) }];
        state.apply(Checked::verify_all(group), Source::Peer { position: 3 + i }, 0, &mut write);
        evicted += write.evicted.len();
    }
    assert_eq!(evicted, 400, "every one was evicted, none kept");
    let coop = &state.coops[&c];
    assert_eq!(coop.engine.accounts_held(), held, "no account of theirs is held");
    assert_eq!(coop.engine.unapplied_total(), 0);
    assert_eq!(coop.engine.balance("hours", founder.did().as_str()), 5);
}
