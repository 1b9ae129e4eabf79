//! Payee finality on one node: the votes a validator casts (once per place, journalled,
//! none again after a restart) and the votes it takes from peers (only from validators,
//! and votes for unknown transfers within the node's bound).
//!
//! Tests only: nothing here is compiled into the service.

use super::tests::admin_entries;
use super::{Checked, GroupWrite, HoldBounds, Source, State};
use icn_identity::NodeIdentity;
use icn_ledger_records::{next_transfer, sign, Payment};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, LedgerEntry};

#[test]
fn a_validator_votes_once_per_place_and_peers_votes_are_kept_only_from_validators() {
    let founder = NodeIdentity::generate();
    let members: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
    let (payer, payee, other) = (&members[0], &members[1], &members[2]);
    let me = std::sync::Arc::new(NodeIdentity::generate());
    let (v2, v3, outsider) = (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
    let (c, mut admin) = admin_entries(&founder, &members);
    admin.push(Body::Validators(sign(
        &founder,
        icn_proto::ledger::v1::Validators {
            coop_id: c.clone(),
            validators: [me.did(), v2.did(), v3.did()].iter().map(|d| d.to_string()).collect(),
            quorum: 2,
            ..Default::default()
        },
    )));
    let bounds = HoldBounds { per_payer: 10, total: 100 };
    let mut state = State { bounds: Some(bounds), voter: Some(me.clone()), ..Default::default() };
    let mut journal = Vec::new();
    let mut step = |state: &mut State, body: Body, position: u64| {
        let mut write = GroupWrite::default();
        let group = vec![LedgerEntry { body: Some(body) }];
        state.apply(Checked::verify_all(group), Source::Peer { position }, 0, &mut write);
        state.cast_votes(0, &mut write);
        journal.extend(write.journal.iter().map(|(_, r)| r.clone()));
        write
    };
    for body in admin {
        step(&mut state, body, 1);
    }
    let payment = Payment {
        coop_id: &c,
        currency: "hours",
        payee: payee.did().as_str(),
        amount: 5,
        memo: "",
        idempotency_id: "",
    };
    let paid = next_transfer(payer, &icn_proto::ledger::v1::Account::default(), &payment, 10);
    let hash = icn_ledger_records::hash(&paid);
    let write = step(&mut state, Body::Transfer(paid.clone()), 2);
    // Applied, and this node's vote is journalled with it, as its own entry to publish.
    let mine: Vec<_> = write
        .journal
        .iter()
        .filter_map(|(_, r)| match r.entry.as_ref().and_then(|e| e.body.as_ref()) {
            Some(Body::Vote(v)) => Some((v.clone(), r.local)),
            _ => None,
        })
        .collect();
    assert_eq!(mine.len(), 1);
    assert!(mine[0].1 && mine[0].0.validator == me.did().as_str() && mine[0].0.transfer == hash.to_vec());
    assert_eq!(state.coops[&c].engine.certificate(&hash), Some((1, 2)));
    let vote_of = |v: &NodeIdentity| Body::Vote(icn_ledger_records::finality::vote(v, &paid, &hash, 11));
    // An outsider's vote is not kept: it waits for the rules, stored nowhere.
    let write = step(&mut state, vote_of(&outsider), 3);
    assert_eq!(write.evicted, vec!["rules"]);
    assert!(write.journal.is_empty());
    assert_eq!(state.coops[&c].engine.certificate(&hash), Some((1, 2)));
    // Another validator's vote certifies the transfer.
    let write = step(&mut state, vote_of(&v2), 4);
    assert_eq!(write.journal.len(), 1);
    assert!(state.coops[&c].engine.is_certified(&hash));
    // The payer's rival at the same place: quarantined, the payment stands, and this
    // node casts no second vote at that place.
    let mut rival = paid.clone();
    rival.payee = other.did().to_string();
    let rival = sign(payer, rival);
    let write = step(&mut state, Body::Transfer(rival.clone()), 5);
    assert!(write
        .journal
        .iter()
        .all(|(_, r)| !matches!(r.entry.as_ref().and_then(|e| e.body.as_ref()), Some(Body::Vote(_)))));
    let coop = &state.coops[&c];
    assert!(coop.engine.is_applied(&hash));
    assert_eq!(coop.engine.status(&icn_ledger_records::hash(&rival)), crate::engine::Status::Quarantined);
    assert_eq!(coop.engine.balance("hours", payee.did().as_str()), 5);
    // A restart replays the journal: the node owes no vote, and casts none twice.
    let mut replayed = State::default();
    for record in &journal {
        let body = record.entry.clone().unwrap().body.unwrap();
        replayed.apply(
            vec![Checked::trusted(body)],
            Source::Replay { received_at_ms: 0 },
            0,
            &mut GroupWrite::default(),
        );
    }
    replayed.voter = Some(me);
    let mut write = GroupWrite::default();
    replayed.missed_votes(&mut write).unwrap();
    assert!(!write.applied.is_empty());
    replayed.cast_votes(0, &mut write);
    assert!(write.journal.is_empty(), "no second vote after a restart");
    assert!(replayed.coops[&c].engine.is_certified(&hash));
}

#[test]
fn a_validator_flooding_votes_for_unknown_transfers_is_held_to_the_bound() {
    let founder = NodeIdentity::generate();
    let members: Vec<NodeIdentity> = (0..2).map(|_| NodeIdentity::generate()).collect();
    let (flooder, honest) = (NodeIdentity::generate(), NodeIdentity::generate());
    let (c, mut admin) = admin_entries(&founder, &members);
    admin.push(Body::Validators(sign(
        &founder,
        icn_proto::ledger::v1::Validators {
            coop_id: c.clone(),
            validators: vec![flooder.did().to_string(), honest.did().to_string()],
            quorum: 2,
            ..Default::default()
        },
    )));
    let bound = 20;
    let mut state = State { bounds: Some(HoldBounds { per_payer: 10, total: bound }), ..Default::default() };
    state.apply(
        admin.into_iter().map(Checked::trusted).collect(),
        Source::Peer { position: 1 },
        0,
        &mut GroupWrite::default(),
    );
    let payment = |memo: &'static str| Payment {
        coop_id: &c,
        currency: "hours",
        payee: members[1].did().as_str(),
        amount: 5,
        memo,
        idempotency_id: "",
    };
    let paid = next_transfer(&members[0], &icn_proto::ledger::v1::Account::default(), &payment("paid"), 10);
    let hash = icn_ledger_records::hash(&paid);
    let vote = |v: &NodeIdentity, t: &icn_proto::ledger::v1::Transfer| {
        let h = icn_ledger_records::hash(t);
        LedgerEntry { body: Some(Body::Vote(icn_ledger_records::finality::vote(v, t, &h, 11))) }
    };
    // The flooder, a named validator, votes for transfers no one will ever send.
    let mut evicted = Vec::new();
    for i in 0..bound + 5 {
        let mut ghost = paid.clone();
        ghost.payer_seq = 100 + i as u64;
        let ghost = sign(&members[0], ghost);
        let mut write = GroupWrite::default();
        state.apply(
            Checked::verify_all(vec![vote(&flooder, &ghost)]),
            Source::Peer { position: 2 + i as u64 },
            0,
            &mut write,
        );
        evicted.extend(write.evicted);
    }
    let coop = &state.coops[&c];
    assert_eq!(coop.engine.orphan_votes(), bound, "votes for unknown transfers stop at the bound");
    assert_eq!(evicted, vec!["room"; 5], "the rest wait for room, counted");
    assert_eq!(coop.hold_floor(), Some(2 + bound as u64), "and are read again from the topic later");
    // Votes for a transfer the node holds are still taken: the flood blocks no payment's
    // certificate.
    let group =
        vec![LedgerEntry { body: Some(Body::Transfer(paid.clone())) }, vote(&flooder, &paid), vote(&honest, &paid)];
    state.apply(Checked::verify_all(group), Source::Peer { position: 100 }, 0, &mut GroupWrite::default());
    assert!(state.coops[&c].engine.is_certified(&hash));
}
