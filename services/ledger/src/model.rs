//! A cooperative as its signed admin entries define it: founder, members and their
//! roles, currencies and credit limits.
//!
//! Entries may arrive in any order, so what they decide is derived from the whole set,
//! the same on every node:
//! - the cooperative is its founding record, the one record its id is bound to
//!   ([`icn_ledger_records::coop::is_bound`], checked before a record gets here), signed
//!   by its founder, the first admin for good;
//! - the other admin entries are read in the order of their own time, then hash: each
//!   counts when its signer is an admin at that point. An admission gives its member the
//!   role it names from its time on; the role REMOVED ends a membership (or an admin's
//!   rights) from then on, so what the member signed before still counts and nothing
//!   after. Nothing timed before the founding record counts;
//! - a currency is defined by its first counting record; a later one with the same
//!   symbol changes nothing;
//! - credit-limit changes take effect for transfers signed at or after their time
//!   ([`crate::engine::CurrencyRules`]);
//! - a validator set certifies transfers signed at or after its time, until the next
//!   ([`crate::engine::ValidatorSet`]); one whose fields are invalid
//!   ([`icn_ledger_records::finality::check`]) counts for nothing.
//!
//! Reading in time order makes the result a function of the set (times are signed), but
//! times are the signers' own: an admin who is removed can still sign records timed
//! before the removal, and they count (docs/SECURITY.md, "Time").

use crate::engine::{CurrencyRules, LimitChange, Rules, ValidatorSet};
use icn_ledger_records::Hash;
use icn_proto::ledger::v1::{Coop, CreditLimit, Currency, Member, MemberAdmission, MemberRole, Validators};
use std::collections::{BTreeMap, HashMap};

/// Where an admin entry is read: its time, then its hash.
pub type ReadAt = (i64, Hash);

#[derive(Default, Debug, Clone)]
pub struct CoopModel {
    /// The founding record: one per id, since the id is bound to it.
    genesis: Option<Coop>,
    admissions: BTreeMap<(i64, Hash), MemberAdmission>,
    currency_records: BTreeMap<(i64, Hash), Currency>,
    limit_records: BTreeMap<(i64, Hash), CreditLimit>,
    validator_records: BTreeMap<(i64, Hash), Validators>,
    // Derived by `derive`.
    members: BTreeMap<String, Member>,
    currencies: BTreeMap<String, Currency>,
    /// Everyone who was ever a member, with the times they were: [from, until).
    membership: HashMap<String, Vec<(i64, i64)>>,
    /// The limit records that count (signed by an admin at their time).
    counting_limits: std::collections::HashSet<(i64, Hash)>,
    /// When each admin other than the founder became one (true) or stopped being one
    /// (false), at the place in the order of the entry that changed it: what decides
    /// whether an entry they signed counts where it is read ([`Self::is_admin_at`]).
    admin_changes: HashMap<String, Vec<(ReadAt, bool)>>,
    /// The validator sets that count, in time order.
    validator_sets: Vec<ValidatorSet>,
    /// The record of the latest of them.
    latest_validators: Option<Validators>,
}

/// An admin entry of a cooperative, with its hash.
pub enum AdminEntry {
    Coop(Coop),
    Admission(MemberAdmission),
    Currency(Currency),
    Limit(CreditLimit),
    Validators(Validators),
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
            AdminEntry::Validators(v) => self.validator_records.insert((v.created_at_ms, hash), v).is_none(),
        };
        if added {
            self.derive();
        }
        added
    }

    fn derive(&mut self) {
        self.members.clear();
        self.currencies.clear();
        self.membership.clear();
        self.admin_changes.clear();
        self.counting_limits.clear();
        self.validator_sets.clear();
        self.latest_validators = None;
        let Some(coop) = self.coop().cloned() else { return };
        let founded = coop.created_at_ms;
        self.members.insert(
            coop.founder.clone(),
            Member {
                did: coop.founder.clone(),
                role: MemberRole::Admin as i32,
                admitted_at_ms: founded,
                admitted_by: coop.founder.clone(),
            },
        );
        self.membership.insert(coop.founder.clone(), vec![(founded, i64::MAX)]);
        // Every admin entry, in the order of its time, then hash.
        enum Record<'a> {
            Admission(&'a MemberAdmission),
            Currency(&'a Currency),
            Limit(&'a CreditLimit),
            Validators(&'a Validators),
        }
        let mut records: Vec<((i64, Hash), Record)> = Vec::new();
        records.extend(self.admissions.iter().map(|(k, a)| (*k, Record::Admission(a))));
        records.extend(self.currency_records.iter().map(|(k, c)| (*k, Record::Currency(c))));
        records.extend(self.limit_records.iter().map(|(k, l)| (*k, Record::Limit(l))));
        records.extend(self.validator_records.iter().map(|(k, v)| (*k, Record::Validators(v))));
        records.sort_by_key(|a| a.0);
        let mut currencies = BTreeMap::new();
        let mut counting_limits = std::collections::HashSet::new();
        for (key, record) in records {
            let at = key.0;
            if at < founded {
                continue;
            }
            match record {
                Record::Admission(a) => {
                    let role = MemberRole::try_from(a.role).unwrap_or(MemberRole::Unspecified);
                    if a.coop_id != coop.id
                        || !self.is_admin(&a.signer)
                        || role == MemberRole::Unspecified
                        || a.member == coop.founder
                    {
                        continue;
                    }
                    let was_admin = self.is_admin(&a.member);
                    if was_admin != (role == MemberRole::Admin) {
                        self.admin_changes.entry(a.member.clone()).or_default().push((key, !was_admin));
                    }
                    let periods = self.membership.entry(a.member.clone()).or_default();
                    if role == MemberRole::Removed {
                        if self.members.remove(&a.member).is_some() {
                            if let Some(open) = periods.last_mut() {
                                open.1 = at;
                            }
                        }
                        continue;
                    }
                    match self.members.get_mut(&a.member) {
                        Some(m) => m.role = role as i32,
                        None => {
                            periods.push((at, i64::MAX));
                            self.members.insert(
                                a.member.clone(),
                                Member {
                                    did: a.member.clone(),
                                    role: role as i32,
                                    admitted_at_ms: at,
                                    admitted_by: a.signer.clone(),
                                },
                            );
                        }
                    }
                }
                Record::Currency(c) => {
                    if c.coop_id == coop.id && self.is_admin(&c.signer) && !currencies.contains_key(&c.symbol) {
                        currencies.insert(c.symbol.clone(), c.clone());
                    }
                }
                Record::Limit(l) => {
                    if l.coop_id == coop.id && self.is_admin(&l.signer) {
                        counting_limits.insert(key);
                    }
                }
                Record::Validators(v) => {
                    if v.coop_id == coop.id
                        && self.is_admin(&v.signer)
                        && icn_ledger_records::finality::check(v).is_ok()
                    {
                        self.validator_sets.push(ValidatorSet {
                            at_ms: at,
                            tie: key.1,
                            validators: v.validators.iter().cloned().collect(),
                            quorum: v.quorum,
                        });
                        self.latest_validators = Some(v.clone());
                    }
                }
            }
        }
        self.membership.retain(|_, periods| !periods.is_empty());
        self.currencies = currencies;
        self.counting_limits = counting_limits;
    }

    /// The cooperative record in force, once one has arrived.
    pub fn coop(&self) -> Option<&Coop> {
        self.genesis.as_ref()
    }

    pub fn is_admin(&self, did: &str) -> bool {
        self.members.get(did).is_some_and(|m| m.role == MemberRole::Admin as i32)
    }

    /// Whether an admin entry `did` signed at `key` (its time, then hash) would count:
    /// whether `did` is an admin once every entry read before it is. This, not the
    /// current role, is what an API must judge: an admin promoted in the same
    /// millisecond as an entry they sign is one only if the promotion's hash reads first.
    pub fn is_admin_at(&self, did: &str, key: ReadAt) -> bool {
        let Some(coop) = self.coop() else { return false };
        if key.0 < coop.created_at_ms {
            return false;
        }
        if coop.founder == did {
            return true;
        }
        let changes = self.admin_changes.get(did).map(Vec::as_slice).unwrap_or_default();
        // Changes are pushed in reading order; the last one read before `key` holds.
        let read_before = changes.partition_point(|(at, _)| *at < key);
        read_before > 0 && changes[read_before - 1].1
    }

    /// When `did` last became an admin, if they are one now (and are not the founder).
    pub fn admin_since(&self, did: &str) -> Option<ReadAt> {
        let (key, now_admin) = self.admin_changes.get(did)?.last()?;
        now_admin.then_some(*key)
    }

    pub fn member(&self, did: &str) -> Option<&Member> {
        self.members.get(did)
    }

    /// Whether `did` is or was a member (a removed member's history stands).
    pub fn was_member(&self, did: &str) -> bool {
        self.membership.contains_key(did)
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

    /// The latest validator set that counts, as its record.
    pub fn validators(&self) -> Option<&Validators> {
        self.latest_validators.as_ref()
    }

    /// Limit records of a currency that count, oldest first.
    fn limits<'a>(&'a self, currency: &'a str) -> impl Iterator<Item = (&'a (i64, Hash), &'a CreditLimit)> + 'a {
        self.limit_records
            .iter()
            .filter(move |(k, l)| l.currency == currency && l.limit >= 0 && self.counting_limits.contains(k))
    }

    /// The latest limit record of an account (or of the default, for `member` empty).
    pub fn latest_limit<'a>(&'a self, currency: &'a str, member: &str) -> Option<&'a CreditLimit> {
        self.limits(currency).filter(|(_, l)| l.member == member).map(|(_, l)| l).last()
    }

    /// What transfers need: members, currencies and limit timelines.
    pub fn rules(&self) -> Rules {
        let mut rules = Rules {
            members: self.membership.keys().cloned().collect(),
            membership: self.membership.iter().map(|(m, p)| (m.clone(), p.clone())).collect(),
            currencies: Default::default(),
            founded_at_ms: self.coop().map(|c| c.created_at_ms).unwrap_or_default(),
            validators: self.validator_sets.clone(),
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

    #[test]
    fn a_removal_counts_from_its_time_on_in_any_arrival_order() {
        let (founder, a, b, x, y) = (
            NodeIdentity::generate(),
            NodeIdentity::generate(),
            NodeIdentity::generate(),
            NodeIdentity::generate(),
            NodeIdentity::generate(),
        );
        let coop = icn_ledger_records::coop::found(&founder, "c", "C", 1).unwrap();
        let id = coop.id.clone();
        // Founder admits admins A and B at 2. A admits X at 5; the founder removes A at
        // 10; A "admits" Y at 15 (too late). A and B try to remove each other: A at 12
        // (A is no admin by then), B at 11 (counts, though A is gone already).
        let entries = vec![
            admit(&id, &founder, &a, MemberRole::Admin, 2),
            admit(&id, &founder, &b, MemberRole::Admin, 2),
            admit(&id, &a, &x, MemberRole::Member, 5),
            admit(&id, &founder, &a, MemberRole::Removed, 10),
            admit(&id, &b, &a, MemberRole::Removed, 11),
            admit(&id, &a, &b, MemberRole::Removed, 12),
            admit(&id, &a, &y, MemberRole::Member, 15),
            admit(&id, &a, &founder, MemberRole::Removed, 3),
        ];
        let mut results = Vec::new();
        for rotation in 0..entries.len() {
            let mut m = CoopModel::default();
            let mut order = entries.clone();
            order.rotate_left(rotation);
            if rotation % 2 == 1 {
                order.reverse();
            }
            for e in order {
                let h = hash(&e);
                m.add(AdminEntry::Admission(e), h);
            }
            m.add(AdminEntry::Coop(coop.clone()), icn_ledger_records::hash(&coop));
            let mut members: Vec<(String, i32)> = m.members().map(|m| (m.did.clone(), m.role)).collect();
            members.sort();
            results.push((members, m.rules()));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "the same whatever the order");
        let (members, rules) = &results[0];
        let role = |who: &NodeIdentity| members.iter().find(|(d, _)| d == who.did().as_str()).map(|(_, r)| *r);
        assert_eq!(role(&founder), Some(MemberRole::Admin as i32), "the founder cannot be removed");
        assert_eq!(role(&a), None, "A is removed");
        assert_eq!(role(&b), Some(MemberRole::Admin as i32), "A's removal of B came after A's own");
        assert_eq!(role(&x), Some(MemberRole::Member as i32), "admitted by A while A was an admin");
        assert_eq!(role(&y), None, "A's admission after its removal counts for nothing");
        // What A signed as a member before its removal still counts; after, it does not.
        assert!(rules.is_member_at(a.did().as_str(), 9) && !rules.is_member_at(a.did().as_str(), 10));
        assert!(!rules.is_member_at(x.did().as_str(), 4) && rules.is_member_at(x.did().as_str(), 5));
    }

    #[test]
    fn an_admin_counts_as_one_only_where_entries_are_read_after_the_promotion() {
        let (founder, a) = (NodeIdentity::generate(), NodeIdentity::generate());
        let coop = icn_ledger_records::coop::found(&founder, "c", "C", 1).unwrap();
        let id = coop.id.clone();
        let mut m = CoopModel::default();
        m.add(AdminEntry::Coop(coop.clone()), hash(&coop));
        let promotion = admit(&id, &founder, &a, MemberRole::Admin, 5);
        let removal = admit(&id, &founder, &a, MemberRole::Removed, 10);
        let (p, r) = (hash(&promotion), hash(&removal));
        m.add(AdminEntry::Admission(removal), r);
        m.add(AdminEntry::Admission(promotion), p);
        let (lowest, highest) = ([0u8; 32], [0xffu8; 32]);
        let a = a.did().to_string();
        assert!(!m.is_admin_at(&a, (4, highest)), "before the promotion");
        assert!(!m.is_admin_at(&a, (5, lowest)) && !m.is_admin_at(&a, (5, p)), "read before it in its millisecond");
        assert!(m.is_admin_at(&a, (5, highest)) && m.is_admin_at(&a, (9, lowest)), "read after it");
        assert!(m.is_admin_at(&a, (10, lowest)) && !m.is_admin_at(&a, (10, highest)), "the removal's millisecond");
        assert!(!m.is_admin_at(&a, (11, lowest)) && m.admin_since(&a).is_none(), "removed");
        let f = founder.did().to_string();
        assert!(m.is_admin_at(&f, (1, lowest)) && !m.is_admin_at(&f, (0, highest)), "the founder, from the founding");
    }
}
