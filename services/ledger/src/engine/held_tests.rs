//! What an outsider makes the engine hold: nothing, once the node forgets its transfers
//! (refused at the API, or evicted at `credit.max_unapplied_*`): no account number, no
//! place, no waiter. Tests only.

use super::tests::{ledger, transfer, CURRENCY};
use super::Status;
use icn_identity::NodeIdentity;
use icn_ledger_records::signed::hash as transfer_hash;

#[test]
fn an_outsiders_forgotten_transfers_leave_no_account_place_or_waiter_behind() {
    let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
    let mut l = ledger(&[&alice, &bob]);
    let paid = transfer(&alice, &bob, 10, 1, None, Vec::new(), "");
    assert_eq!(l.submit(paid.clone()), Status::Applied);
    let held = (l.ids.held(), l.slots.len(), l.waiters.len());
    // Keys the cooperative never admitted, each signing a transfer that waits for its
    // admission and names a dep: what a node evicts at its bound, and forgets.
    for _ in 0..50 {
        let stranger = NodeIdentity::generate();
        let junk = transfer(&stranger, &NodeIdentity::generate(), 5, 1, None, vec![[7; 32]], "");
        let hash = transfer_hash(&junk);
        assert!(matches!(l.submit(junk), Status::Pending(_)));
        l.forget(&hash);
    }
    assert_eq!((l.ids.held(), l.slots.len(), l.waiters.len()), held, "nothing of the outsiders is held");
    assert_eq!(l.ids.len(), 4, "their numbers were reused, not added to");
    assert_eq!(l.balance(CURRENCY, bob.did().as_str()), 10);
    assert_eq!(l.head(CURRENCY, alice.did().as_str()), Some((1, transfer_hash(&paid))));
}
