//! What a cooperative's admin entries decide for transfers, as the engine reads them:
//! who is a member, which currencies exist, and the credit limit in force at any
//! moment; and the one rule that reads the limit, the balance floor.
//!
//! Owns the limit-in-time lookup, so that every node judges a transfer against the same
//! limit whatever order the limit changes arrived in. It must never read the applied
//! set or any balance but the one it is handed: the engine computes the balance.

use super::refusal::Refusal;
use icn_ledger_records::Hash;
// foldhash, not std's SipHash: members are looked up several times per transfer judged
// (a twentieth of a recompute went to SipHash); seeded per process all the same.
use foldhash::{HashMap, HashSet};
use std::collections::BTreeSet;

/// A validator set in force for transfers signed at or after `at_ms`, until the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    pub at_ms: i64,
    /// Orders sets with the same time alike on every node (the admin entry's hash).
    pub tie: Hash,
    pub validators: BTreeSet<String>,
    /// Votes that certify; 0 turns certification off from `at_ms` on.
    pub quorum: u32,
}

/// One change of a credit limit, effective for transfers signed at or after `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LimitChange {
    pub at_ms: i64,
    /// Orders changes with the same time alike on every node (the admin entry's hash).
    pub tie: Hash,
    pub limit: i64,
}

/// A currency's rules, as far as transfers need them.
///
/// The limit that judges a transfer is the one in force at the transfer's
/// `created_at_ms`, so a limit change arriving late changes the outcome nowhere but
/// everywhere alike, and lowering a limit never undoes transfers signed before it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurrencyRules {
    /// The currency's own default, before any change.
    pub default_credit_limit: i64,
    /// Changes of the default, sorted.
    pub default_changes: Vec<LimitChange>,
    /// Changes of one account's limit, sorted.
    pub account_changes: HashMap<String, Vec<LimitChange>>,
}

impl CurrencyRules {
    pub fn flat(limit: i64) -> Self {
        Self { default_credit_limit: limit, ..Default::default() }
    }

    /// The credit limit of `account` for a transfer signed at `at_ms`.
    pub fn limit(&self, account: &str, at_ms: i64) -> i64 {
        let in_force = |changes: &[LimitChange]| changes.iter().rev().find(|c| c.at_ms <= at_ms).map(|c| c.limit);
        self.account_changes
            .get(account)
            .and_then(|c| in_force(c))
            .or_else(|| in_force(&self.default_changes))
            .unwrap_or(self.default_credit_limit)
    }

    /// The balance-floor rule: a payer's balance, as its own chain and deps show it,
    /// stays at or above minus its credit limit in force when the transfer was signed.
    pub(super) fn check_floor(&self, account: &str, at_ms: i64, balance: i128) -> Result<(), Refusal> {
        let floor = self.floor(account, at_ms);
        if balance < floor {
            return Err(Refusal::Overdraft { balance, floor });
        }
        Ok(())
    }

    fn floor(&self, account: &str, at_ms: i64) -> i128 {
        -(self.limit(account, at_ms) as i128)
    }
}

/// What the cooperative's admin entries decide for transfers: who is a member, which
/// currencies exist and their limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// Everyone who is or was a member.
    pub members: HashSet<String>,
    /// When each was a member, [from, until); a member listed in `members` but not here
    /// is one at every time.
    pub membership: HashMap<String, Vec<(i64, i64)>>,
    pub currencies: HashMap<String, CurrencyRules>,
    /// The founding record's time: nothing of the cooperative is from before it.
    pub founded_at_ms: i64,
    /// Validator sets that count, sorted by (time, tie): the one in force at a
    /// transfer's time decides whether its votes certify it.
    pub validators: Vec<ValidatorSet>,
}

impl Rules {
    /// Whether `new` only adds to these rules: members who were never members here and
    /// currencies that did not exist, with everything else as it was. No transfer judged
    /// under these rules can involve what was added, so under `new` nothing applied is
    /// undone and more may apply.
    pub fn only_added_to_by(&self, new: &Rules) -> bool {
        self.founded_at_ms == new.founded_at_ms
            && self.validators == new.validators
            && self.members.is_subset(&new.members)
            && self.members.iter().all(|m| self.membership.get(m) == new.membership.get(m))
            && self.membership.iter().all(|(m, periods)| new.membership.get(m) == Some(periods))
            && self.currencies.iter().all(|(symbol, rules)| new.currencies.get(symbol) == Some(rules))
    }

    /// Whether `did` was a member at `at_ms`, when a transfer it is party to was signed.
    pub fn is_member_at(&self, did: &str, at_ms: i64) -> bool {
        match self.membership.get(did) {
            Some(periods) => periods.iter().any(|(from, until)| *from <= at_ms && at_ms < *until),
            None => self.members.contains(did),
        }
    }

    /// The validator set in force for a transfer signed at `at_ms`, if it certifies.
    pub fn validators_at(&self, at_ms: i64) -> Option<&ValidatorSet> {
        self.validators.iter().rev().find(|v| v.at_ms <= at_ms).filter(|v| v.quorum > 0)
    }

    /// Whether `did` is named by any validator set, at any time: what a node checks
    /// before it keeps a vote.
    pub fn names_validator(&self, did: &str) -> bool {
        self.validators.iter().any(|v| v.validators.contains(did))
    }

    /// The latest validator set: the one a node checks before it votes at all.
    pub fn latest_validators(&self) -> Option<&ValidatorSet> {
        self.validators.last().filter(|v| v.quorum > 0)
    }
}
