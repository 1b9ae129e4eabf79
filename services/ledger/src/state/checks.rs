//! What this node's API refuses before anything changes, and the rule name each refusal
//! carries to the member.
//!
//! A member hears at once that an entry can never count here: a malformed or unknown
//! cooperative, a currency or party the cooperative does not have, an admin entry that
//! is malformed or not signed by an admin. These checks run only for `Source::Local`
//! (or drop a peer's entry whose cooperative id is malformed); they must never judge
//! whether a transfer applies, which is the engine's rule and the same on every node,
//! and they must never change the state.

use super::{CoopState, Outcome, Source, State};
use crate::engine::Refusal;
use crate::error::LedgerError;
use icn_ledger_records::coop::{valid_name, BIND_LEN, MAX_COOP_ID, MAX_DECIMALS, MAX_SYMBOL};
use icn_ledger_records::transfer::MAX_AMOUNT;
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::{Transfer, TransferRecord, TransferRejection, TransferStatus};
use icn_proto::ledger::wire::v1::ledger_entry::Body;

impl State {
    /// What this node says of an entry's cooperative before anything else: its id must
    /// be well formed, a founding record must be the one its id is bound to (from any
    /// source: this is what keeps anyone from founding someone else's cooperative), and
    /// an entry through this node's API must name a cooperative this node holds (a
    /// founding entry brings its own). `None` lets the entry through; a
    /// peer's entry refused here is dropped.
    pub(super) fn coop_refusal(&self, coop_id: &str, body: &Body, source: Source) -> Option<Outcome> {
        if !valid_name(coop_id, MAX_COOP_ID) {
            return Some(match (body, source) {
                (Body::Transfer(t), Source::Local) => Outcome::Transfer {
                    record: rejected(t, TransferRejection::Malformed, format!("`{coop_id}` is not a cooperative id")),
                    duplicate: false,
                },
                (_, Source::Local) => Outcome::Admin(Err(LedgerError::InvalidArgument(format!(
                    "`{coop_id}` is not a cooperative id: lower-case letters, digits and '-', at most {} bytes",
                    MAX_COOP_ID
                )))),
                _ => Outcome::Dropped,
            });
        }
        if let Body::Coop(c) = body {
            if !icn_ledger_records::coop::is_bound(c) {
                // Not a founding record of this id: signed, perhaps, but by someone who
                // would take over the cooperative the id names.
                return Some(match source {
                    Source::Local => Outcome::Admin(Err(unbound_coop(coop_id))),
                    _ => Outcome::Dropped,
                });
            }
        }
        if source == Source::Local && !matches!(body, Body::Coop(_)) && !self.coops.contains_key(coop_id) {
            return Some(match body {
                Body::Transfer(t) => Outcome::Transfer {
                    record: rejected(t, TransferRejection::UnknownCoop, format!("no cooperative `{coop_id}` here")),
                    duplicate: false,
                },
                _ => Outcome::Admin(Err(LedgerError::NotFound(format!("no cooperative `{coop_id}` here")))),
            });
        }
        None
    }
}

/// The refusal of a founding record its id is not bound to.
pub fn unbound_coop(coop_id: &str) -> LedgerError {
    LedgerError::InvalidArgument(format!(
        "cooperative id `{coop_id}` is not bound to this founding record: an id is \
         `<label>-<{BIND_LEN} characters>`, made from the record when it is founded \
         (icn_ledger_records::coop::found, `icnctl coop create <label>`)"
    ))
}

impl CoopState {
    /// What this node can tell a member at once: the transfer names a currency or a
    /// party the cooperative does not have.
    pub(super) fn preflight(&self, t: &Transfer) -> Option<(TransferRejection, String)> {
        let coop = self.model.coop()?;
        if self.model.currency(&t.currency).is_none() {
            return Some((
                TransferRejection::UnknownCurrency,
                format!("cooperative `{}` has no currency `{}`", coop.id, t.currency),
            ));
        }
        for (role, did) in [("payer", &t.payer), ("payee", &t.payee)] {
            if self.model.member(did).is_none() {
                return Some((
                    TransferRejection::NotAMember,
                    format!("the {role} {did} is not a member of cooperative `{}`", coop.id),
                ));
            }
        }
        None
    }

    /// What this node's API refuses of an admin entry timed `at`: whatever would not
    /// count where the entry is read, given the entries this node holds.
    pub(super) fn check_admin(&self, body: &Body, hash: &Hash, at: i64) -> Result<(), LedgerError> {
        let invalid = |m: String| Err(LedgerError::InvalidArgument(m));
        let coop_id = self.model.coop().map(|c| c.id.clone()).unwrap_or_default();
        let signer = match body {
            Body::Coop(c) => {
                if c.name.is_empty() || c.name.len() > 256 {
                    return invalid("a cooperative needs a name of at most 256 bytes".into());
                }
                return match self.model.coop() {
                    Some(existing) if icn_ledger_records::hash(existing) != *hash => Err(LedgerError::AlreadyExists(
                        format!("cooperative `{}` exists, founded by {}", existing.id, existing.founder),
                    )),
                    _ => Ok(()),
                };
            }
            Body::Admission(a) => {
                if a.member.parse::<icn_identity::Did>().is_err() {
                    return invalid(format!("member `{}` is not a DID", a.member));
                }
                if a.role == 0 || icn_proto::ledger::v1::MemberRole::try_from(a.role).is_err() {
                    return invalid("an admission names the role MEMBER, ADMIN or REMOVED".into());
                }
                if self.model.coop().is_some_and(|c| c.founder == a.member) {
                    return invalid("the founder's role is the founding record's: no admission changes it".into());
                }
                if a.role == icn_proto::ledger::v1::MemberRole::Removed as i32 && self.model.member(&a.member).is_none()
                {
                    return Err(LedgerError::NotFound(format!(
                        "{} is not a member of cooperative `{coop_id}`",
                        a.member
                    )));
                }
                &a.signer
            }
            Body::Currency(c) => {
                if !valid_name(&c.symbol, MAX_SYMBOL) {
                    return invalid(format!(
                        "currency symbol `{}`: lower-case letters, digits and '-', at most {} bytes",
                        c.symbol, MAX_SYMBOL
                    ));
                }
                if c.decimals > MAX_DECIMALS {
                    return invalid(format!("decimals {} exceed the most, {}", c.decimals, MAX_DECIMALS));
                }
                check_limit(c.default_credit_limit)?;
                if let Some(existing) = self.model.currency(&c.symbol) {
                    if icn_ledger_records::hash(existing) != *hash {
                        return Err(LedgerError::AlreadyExists(format!(
                            "cooperative `{coop_id}` already has currency `{}`",
                            c.symbol
                        )));
                    }
                }
                &c.signer
            }
            Body::Limit(l) => {
                check_limit(l.limit)?;
                if self.model.currency(&l.currency).is_none() {
                    return Err(LedgerError::NotFound(format!(
                        "cooperative `{coop_id}` has no currency `{}`",
                        l.currency
                    )));
                }
                if !l.member.is_empty() && self.model.member(&l.member).is_none() {
                    return Err(LedgerError::NotFound(format!(
                        "{} is not a member of cooperative `{coop_id}`",
                        l.member
                    )));
                }
                &l.signer
            }
            Body::Validators(v) => {
                icn_ledger_records::finality::check(v).map_err(|e| LedgerError::InvalidArgument(e.to_string()))?;
                &v.signer
            }
            Body::Transfer(_) | Body::Fork(_) | Body::Vote(_) => return Ok(()),
        };
        let before_founding = self.model.coop().is_some_and(|c| at < c.created_at_ms);
        if self.model.is_admin_at(signer, (at, *hash)) || (before_founding && self.model.is_admin(signer)) {
            // An admin's entry timed before the founding is refused after the clock
            // check ([`CoopState::before_founding`]), which names the likelier mistake.
            return Ok(());
        }
        Err(LedgerError::PermissionDenied(match self.model.admin_since(signer) {
            // An admin now, but not where this entry is read: it would be stored and
            // never count, so the member must hear it.
            Some((since, _)) => format!(
                "{signer} became an admin of cooperative `{coop_id}` at {since} ms, and an entry signed at {at} ms \
                 is read before that (entries of one millisecond are read in hash order): sign it again with a \
                 later created_at_ms"
            ),
            None => format!(
                "{signer} is not an admin of cooperative `{coop_id}`: only admins sign admissions, currencies, \
                 credit limits and validator sets"
            ),
        }))
    }

    /// The API's refusal of an admin entry timed before the cooperative's founding: it
    /// would never count.
    pub(super) fn before_founding(&self, at: i64) -> Option<LedgerError> {
        let coop = self.model.coop()?;
        (at < coop.created_at_ms).then(|| {
            LedgerError::InvalidArgument(format!(
                "created_at_ms {at} is before cooperative `{}` was founded ({}): nothing timed before the founding \
                 counts",
                coop.id, coop.created_at_ms
            ))
        })
    }
}

/// A credit limit is an amount: never negative, never above the largest amount.
fn check_limit(limit: i64) -> Result<(), LedgerError> {
    if !(0..=MAX_AMOUNT).contains(&limit) {
        return Err(LedgerError::InvalidArgument(format!(
            "a credit limit is between 0 and {} minor units, got {limit}",
            MAX_AMOUNT
        )));
    }
    Ok(())
}

/// A transfer this node refuses, as the API answers it.
pub(super) fn rejected(t: &Transfer, rejection: TransferRejection, detail: String) -> TransferRecord {
    TransferRecord {
        hash: icn_ledger_records::hash(t).to_vec(),
        transfer: Some(t.clone()),
        status: TransferStatus::Rejected as i32,
        rejection: rejection as i32,
        detail,
        ..Default::default()
    }
}

/// The rule a refusal broke, as the API names it.
pub(super) fn rejection_of(r: &Refusal) -> TransferRejection {
    match r {
        Refusal::BadSignature => TransferRejection::BadSignature,
        Refusal::BadDid(_) | Refusal::Malformed(_) => TransferRejection::Malformed,
        Refusal::NonPositiveAmount(_) | Refusal::SelfTransfer | Refusal::AmountTooLarge(_) => {
            TransferRejection::InvalidAmount
        }
        Refusal::UnknownCurrency(_) => TransferRejection::UnknownCurrency,
        Refusal::ZeroSequence => TransferRejection::BadSequence,
        Refusal::BadChainLink(_) => TransferRejection::BrokenChain,
        Refusal::DepNotIncoming(_) | Refusal::DepClaimed(_) => TransferRejection::InvalidDep,
        Refusal::Overdraft { .. } => TransferRejection::BelowFloor,
        Refusal::TimeBeforePrevious { .. } | Refusal::BeforeFounding { .. } => TransferRejection::BadTime,
    }
}
