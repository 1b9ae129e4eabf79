//! A cooperative as its signed admin entries define it: founder, members and their
//! roles, currencies and credit limits.
//!
//! Entries may arrive in any order, so what they decide is derived from the whole set,
//! the same on every node:
//! - the cooperative is its founding record, the one record its id is bound to
//!   ([`icn_ledger_records::coop::is_bound`], checked before a record gets here), signed
//!   by its founder, the first admin; until it arrives, the cooperative has no members,
//!   so nothing else counts yet;
//! - an admission counts when its signer is an admin, which may itself rest on another
//!   admission (a fixpoint); roles only grow, so the fixpoint is unique;
//! - a currency is defined by its first valid record (by time, then hash); a later one
//!   with the same symbol changes nothing;
//! - credit-limit changes take effect for transfers signed at or after their time
//!   ([`crate::engine::CurrencyRules`]);
//! - nothing timed before the founding record counts: an admin cannot place a record
//!   before the cooperative existed.

use crate::engine::{CurrencyRules, LimitChange, Rules};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::{Coop, CreditLimit, Currency, Member, MemberAdmission, MemberRole};
use std::collections::{BTreeMap, HashMap};

#[derive(Default, Debug, Clone)]
pub struct CoopModel {
    /// The founding record: one per id, since the id is bound to it.
    genesis: Option<Coop>,
    admissions: BTreeMap<(i64, Hash), MemberAdmission>,
    currency_records: BTreeMap<(i64, Hash), Currency>,
    limit_records: BTreeMap<(i64, Hash), CreditLimit>,
    // Derived by `derive`.
    members: BTreeMap<String, Member>,
    currencies: BTreeMap<String, Currency>,
}

/// An admin entry of a cooperative, with its hash.
pub enum AdminEntry {
    Coop(Coop),
    Admission(MemberAdmission),
    Currency(Currency),
    Limit(CreditLimit),
}

impl CoopModel {
    /// Adds an entry whose signature the caller checked; false when it was known.
    pub fn add(&mut self, entry: AdminEntry, hash: Hash) -> bool {
        let added = match entry {
            AdminEntry::Coop(c) => {
                debug_assert!(icn_ledger_records::coop::is_bound(&c), "founding records are checked first");
                let known = self.genesis.is_some();
                self.genesis.get_or_insert(c);
                !known
            }
            AdminEntry::Admission(a) => self.admissions.insert((a.created_at_ms, hash), a).is_none(),
            AdminEntry::Currency(c) => self.currency_records.insert((c.created_at_ms, hash), c).is_none(),
            AdminEntry::Limit(l) => self.limit_records.insert((l.created_at_ms, hash), l).is_none(),
        };
        if added {
            self.derive();
        }
        added
    }

    fn derive(&mut self) {
        self.members.clear();
        self.currencies.clear();
        let Some(coop) = self.coop().cloned() else { return };
        self.members.insert(
            coop.founder.clone(),
            Member {
                did: coop.founder.clone(),
                role: MemberRole::Admin as i32,
                admitted_at_ms: coop.created_at_ms,
                admitted_by: coop.founder.clone(),
            },
        );
        loop {
            let mut changed = false;
            for a in self.admissions.values() {
                if !self.is_admin(&a.signer) || a.coop_id != coop.id || a.created_at_ms < coop.created_at_ms {
                    continue;
                }
                let role = MemberRole::try_from(a.role).unwrap_or(MemberRole::Unspecified);
                if role == MemberRole::Unspecified {
                    continue;
                }
                match self.members.get_mut(&a.member) {
                    Some(m) if m.role >= role as i32 => {}
                    Some(m) => {
                        m.role = role as i32;
                        changed = true;
                    }
                    None => {
                        self.members.insert(
                            a.member.clone(),
                            Member {
                                did: a.member.clone(),
                                role: role as i32,
                                admitted_at_ms: a.created_at_ms,
                                admitted_by: a.signer.clone(),
                            },
                        );
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for c in self.currency_records.values() {
            if c.coop_id == coop.id
                && c.created_at_ms >= coop.created_at_ms
                && self.is_admin(&c.signer)
                && !self.currencies.contains_key(&c.symbol)
            {
                self.currencies.insert(c.symbol.clone(), c.clone());
            }
        }
    }

    /// The cooperative record in force, once one has arrived.
    pub fn coop(&self) -> Option<&Coop> {
        self.genesis.as_ref()
    }

    pub fn is_admin(&self, did: &str) -> bool {
        self.members.get(did).is_some_and(|m| m.role == MemberRole::Admin as i32)
    }

    pub fn member(&self, did: &str) -> Option<&Member> {
        self.members.get(did)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn currency(&self, symbol: &str) -> Option<&Currency> {
        self.currencies.get(symbol)
    }

    pub fn currencies(&self) -> impl Iterator<Item = &Currency> {
        self.currencies.values()
    }

    /// Valid limit records of a currency, oldest first.
    fn limits<'a>(&'a self, currency: &'a str) -> impl Iterator<Item = (&'a (i64, Hash), &'a CreditLimit)> + 'a {
        let (coop_id, founded) = self.coop().map(|c| (c.id.clone(), c.created_at_ms)).unwrap_or_default();
        self.limit_records
            .iter()
            .filter(move |(_, l)| {
                l.currency == currency && l.coop_id == coop_id && l.limit >= 0 && l.created_at_ms >= founded
            })
            .filter(|(_, l)| self.is_admin(&l.signer))
    }

    /// The latest limit record of an account (or of the default, for `member` empty).
    pub fn latest_limit<'a>(&'a self, currency: &'a str, member: &str) -> Option<&'a CreditLimit> {
        self.limits(currency).filter(|(_, l)| l.member == member).map(|(_, l)| l).last()
    }

    /// What transfers need: members, currencies and limit timelines.
    pub fn rules(&self) -> Rules {
        let mut rules = Rules {
            members: self.members.keys().cloned().collect(),
            currencies: HashMap::new(),
            founded_at_ms: self.coop().map(|c| c.created_at_ms).unwrap_or_default(),
        };
        for (symbol, c) in &self.currencies {
            let mut r = CurrencyRules::flat(c.default_credit_limit);
            for ((at_ms, tie), l) in self.limits(symbol) {
                let change = LimitChange { at_ms: *at_ms, tie: *tie, limit: l.limit };
                if l.member.is_empty() {
                    r.default_changes.push(change);
                } else {
                    r.account_changes.entry(l.member.clone()).or_default().push(change);
                }
            }
            rules.currencies.insert(symbol.clone(), r);
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;
    use icn_ledger_records::{hash, sign};

    fn admit(coop: &str, by: &NodeIdentity, who: &NodeIdentity, role: MemberRole, at: i64) -> MemberAdmission {
        sign(
            by,
            MemberAdmission {
                coop_id: coop.into(),
                member: who.did().to_string(),
                role: role as i32,
                created_at_ms: at,
                ..Default::default()
            },
        )
    }

    #[test]
    fn admissions_count_whatever_order_they_arrive_in_and_only_from_admins() {
        let (founder, admin, member, outsider) =
            (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
        let coop = icn_ledger_records::coop::found(&founder, "c", "C", 1).unwrap();
        let id = coop.id.clone();
        let entries = vec![
            AdminEntry::Admission(admit(&id, &admin, &member, MemberRole::Member, 3)),
            AdminEntry::Admission(admit(&id, &founder, &admin, MemberRole::Admin, 2)),
            AdminEntry::Admission(admit(&id, &outsider, &outsider, MemberRole::Admin, 4)),
            AdminEntry::Coop(coop),
        ];
        let hashes: Vec<Hash> = entries
            .iter()
            .map(|e| match e {
                AdminEntry::Coop(c) => hash(c),
                AdminEntry::Admission(a) => hash(a),
                _ => unreachable!(),
            })
            .collect();
        let mut m = CoopModel::default();
        for (e, h) in entries.into_iter().zip(hashes) {
            m.add(e, h);
        }
        assert!(m.is_admin(founder.did().as_str()));
        assert!(m.is_admin(admin.did().as_str()));
        assert_eq!(m.member(member.did().as_str()).map(|m| m.role), Some(MemberRole::Member as i32));
        assert!(m.member(outsider.did().as_str()).is_none(), "self-admission by a non-admin counts for nothing");
        assert_eq!(m.rules().members.len(), 3);
    }
}
