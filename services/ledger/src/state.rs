//! What a ledger node knows, in memory: every cooperative's model, its transfer engine
//! and the indexes reads need. It is rebuilt at start-up by replaying the journal, and
//! changed only by [`State::apply`], which also says what to write in one batch.
//!
//! Entries arrive from three places, with one difference: what comes through this
//! node's API (`Source::Local`) is checked against what the node knows first, so a
//! member hears at once that a transfer can never apply, and such a transfer is never
//! stored or sent on. Peers' entries and the journal's own are taken as they are: the
//! engine's rules decide, the same on every node.

use crate::engine::{Ledger, Refusal, Status};
use crate::error::LedgerError;
use crate::model::{AdminEntry, CoopModel};
use icn_ledger_records::coop::{coop_of, valid_name, MAX_COOP_ID, MAX_DECIMALS, MAX_SYMBOL};
use icn_ledger_records::transfer::MAX_AMOUNT;
use icn_ledger_records::{Hash, SignatureError};
use icn_proto::ledger::v1::{
    Account, Coop, CoopStatsResponse, CurrencyStats, Fork, Member, Transfer, TransferRecord, TransferRejection,
    TransferStatus,
};
use icn_proto::ledger::wire::v1::{ledger_entry::Body, ForkReport, JournalRecord, LedgerEntry};
use std::collections::{BTreeMap, HashMap};

/// Where an entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This node's API.
    Local,
    /// A peer, through the cooperative's gossip topic.
    Peer,
    /// This node's journal, at start-up.
    Replay { received_at_ms: i64 },
}

/// An entry with the outcome of checking its signature (done off the state lock).
pub struct Checked {
    pub body: Body,
    pub hash: Result<Hash, SignatureError>,
}

impl Checked {
    /// Verifies the signature of every entry, on every core.
    pub fn verify_all(entries: Vec<LedgerEntry>) -> Vec<Checked> {
        use icn_ledger_records::{verify, verify_all};
        let bodies: Vec<Body> = entries.into_iter().filter_map(|e| e.body).collect();
        // Transfers are the many; they go through the parallel path together.
        let transfers: Vec<Transfer> =
            bodies.iter().filter_map(|b| if let Body::Transfer(t) = b { Some(t.clone()) } else { None }).collect();
        let mut transfer_hashes = verify_all(&transfers).into_iter();
        bodies
            .into_iter()
            .map(|body| {
                let hash = match &body {
                    Body::Transfer(_) => transfer_hashes.next().expect("one result per transfer"),
                    Body::Coop(c) => verify(c),
                    Body::Admission(a) => verify(a),
                    Body::Currency(c) => verify(c),
                    Body::Limit(l) => verify(l),
                    // A report is signed by the gossip entry around it; its evidence is
                    // checked when the transfers themselves arrive.
                    Body::Fork(_) => Ok([0; 32]),
                };
                Checked { body, hash }
            })
            .collect()
    }

    /// Entries whose signature needs no checking: the journal holds only checked ones.
    pub fn trusted(body: Body) -> Checked {
        let hash = match &body {
            Body::Transfer(t) => icn_ledger_records::hash(t),
            Body::Coop(c) => icn_ledger_records::hash(c),
            Body::Admission(a) => icn_ledger_records::hash(a),
            Body::Currency(c) => icn_ledger_records::hash(c),
            Body::Limit(l) => icn_ledger_records::hash(l),
            Body::Fork(_) => [0; 32],
        };
        Checked { body, hash: Ok(hash) }
    }
}

/// What became of one entry.
#[derive(Debug)]
pub enum Outcome {
    Transfer {
        record: TransferRecord,
        duplicate: bool,
    },
    Admin(Result<AdminOutcome, LedgerError>),
    /// A peer's entry that is refused or was known; nothing to answer.
    Dropped,
}

#[derive(Debug, Clone)]
pub struct AdminOutcome {
    pub hash: Hash,
    /// False when this exact entry was known.
    pub created: bool,
}

/// What one group of applied entries writes, in one atomic batch.
#[derive(Default, Debug)]
pub struct GroupWrite {
    pub journal: Vec<(u64, JournalRecord)>,
    /// (coop, account) → the account as it now stands.
    pub accounts: Vec<Account>,
    /// Gossip positions processed, per cooperative.
    pub cursors: Vec<(String, u64)>,
    /// The journal version after this group.
    pub version: u64,
    /// Forks found in this group, to report.
    pub forks: Vec<ForkReport>,
    /// Entries submitted through this node's API, to publish.
    pub local_entries: usize,
    /// Transfers stored or newly applied in this group, for watchers: (coop, hash).
    pub transfer_events: Vec<(String, Hash)>,
}

impl GroupWrite {
    pub fn is_empty(&self) -> bool {
        self.journal.is_empty() && self.accounts.is_empty() && self.cursors.is_empty()
    }
}

struct TransferMeta {
    position: u64,
    received_at_ms: i64,
    applied_at_ms: i64,
}

/// One cooperative on this node.
#[derive(Default)]
pub struct CoopState {
    pub model: CoopModel,
    pub engine: Ledger,
    meta: HashMap<Hash, TransferMeta>,
    /// (currency, member) → transfers in or out, in journal order.
    history: HashMap<(String, String), Vec<Hash>>,
    /// (currency, payer, idempotency id) → the first transfer that used it.
    idempotency: HashMap<(String, String, String), Hash>,
    /// Forks found, by place, with when.
    forks: BTreeMap<(String, String, u64), i64>,
    /// Groups that changed this cooperative; keys the statistics cache.
    changes: u64,
    /// CoopStats is public and walks every transfer: it is computed once per change.
    stats_cache: std::sync::Mutex<Option<(u64, CoopStatsResponse)>>,
}

#[derive(Default)]
pub struct State {
    pub coops: BTreeMap<String, CoopState>,
    /// The journal's last position: it moves with every stored entry.
    pub version: u64,
}

impl State {
    /// Applies a group of entries. `now` stamps them; the caller writes the returned
    /// batch (unless the source is the journal) before anyone reads the new state.
    pub fn apply(&mut self, entries: Vec<Checked>, source: Source, now: i64, write: &mut GroupWrite) -> Vec<Outcome> {
        let received_at_ms = match source {
            Source::Replay { received_at_ms } => received_at_ms,
            _ => now,
        };
        let mut touched: Vec<String> = Vec::new();
        let mut outcomes = Vec::with_capacity(entries.len());
        for checked in entries {
            let coop_id = coop_of(&checked.body).to_string();
            if !valid_name(&coop_id, MAX_COOP_ID) {
                outcomes.push(match (&checked.body, source) {
                    (Body::Transfer(t), Source::Local) => Outcome::Transfer {
                        record: rejected(
                            t,
                            TransferRejection::Malformed,
                            format!("`{coop_id}` is not a cooperative id"),
                        ),
                        duplicate: false,
                    },
                    (_, Source::Local) => Outcome::Admin(Err(LedgerError::InvalidArgument(format!(
                        "`{coop_id}` is not a cooperative id: lower-case letters, digits and '-', at most {} bytes",
                        MAX_COOP_ID
                    )))),
                    _ => Outcome::Dropped,
                });
                continue;
            }
            if source == Source::Local && !matches!(checked.body, Body::Coop(_)) && !self.coops.contains_key(&coop_id) {
                outcomes.push(match &checked.body {
                    Body::Transfer(t) => Outcome::Transfer {
                        record: rejected(t, TransferRejection::UnknownCoop, format!("no cooperative `{coop_id}` here")),
                        duplicate: false,
                    },
                    _ => Outcome::Admin(Err(LedgerError::NotFound(format!("no cooperative `{coop_id}` here")))),
                });
                continue;
            }
            let coop = self.coops.entry(coop_id.clone()).or_default();
            let (outcome, stored) = match checked.body.clone() {
                Body::Transfer(t) => coop.transfer(t, checked.hash.clone(), source, received_at_ms),
                Body::Fork(_) => (Outcome::Dropped, false),
                admin => coop.admin(admin, checked.hash.clone(), source),
            };
            if stored {
                self.version += 1;
                if let (Body::Transfer(t), Ok(hash)) = (&checked.body, &checked.hash) {
                    coop.index(t, *hash, self.version, received_at_ms);
                    write.transfer_events.push((coop_id.clone(), *hash));
                }
                if !matches!(source, Source::Replay { .. }) {
                    let local = source == Source::Local;
                    write.local_entries += local as usize;
                    write.journal.push((
                        self.version,
                        JournalRecord { entry: Some(LedgerEntry { body: Some(checked.body) }), received_at_ms, local },
                    ));
                }
                if !touched.contains(&coop_id) {
                    touched.push(coop_id);
                }
            }
            outcomes.push(outcome);
        }
        for coop_id in touched {
            let coop = self.coops.get_mut(&coop_id).expect("touched coops exist");
            coop.changes += 1;
            let changes = coop.engine.take_changes();
            for hash in changes.applied {
                if let Some(m) = coop.meta.get_mut(&hash) {
                    if m.applied_at_ms == 0 {
                        m.applied_at_ms = received_at_ms;
                    }
                }
                if !write.transfer_events.iter().any(|(c, h)| *h == hash && *c == coop_id) {
                    write.transfer_events.push((coop_id.clone(), hash));
                }
            }
            for place in changes.forks {
                if coop.forks.contains_key(&place) {
                    continue;
                }
                coop.forks.insert(place.clone(), received_at_ms);
                let transfers = coop.engine.forks().get(&place).cloned().unwrap_or_default();
                write.forks.push(ForkReport {
                    coop_id: coop_id.clone(),
                    currency: place.0,
                    payer: place.1,
                    payer_seq: place.2,
                    transfers: transfers.iter().map(|h| h.to_vec()).collect(),
                    detected_at_ms: received_at_ms,
                });
            }
            if !matches!(source, Source::Replay { .. }) {
                for (currency, member) in changes.accounts {
                    write.accounts.push(coop.row(&coop_id, &currency, &member, received_at_ms));
                }
            }
        }
        write.version = self.version;
        // Stored transfers: their status once the whole group is applied.
        let replaying = matches!(source, Source::Replay { .. });
        for outcome in outcomes.iter_mut().filter(|_| !replaying) {
            if let Outcome::Transfer { record, duplicate: false } = outcome {
                if record.status == TransferStatus::Unspecified as i32 {
                    let coop = record.transfer.as_ref().and_then(|t| self.coops.get(&t.coop_id));
                    if let (Some(coop), Ok(hash)) = (coop, <Hash>::try_from(record.hash.as_slice())) {
                        *record = coop.record(&hash);
                    }
                }
            }
        }
        outcomes
    }

    pub fn coop(&self, id: &str) -> Result<&CoopState, LedgerError> {
        self.coops
            .get(id)
            .filter(|c| c.model.coop().is_some())
            .ok_or_else(|| LedgerError::NotFound(format!("no cooperative `{id}` here")))
    }
}

fn rejected(t: &Transfer, rejection: TransferRejection, detail: String) -> TransferRecord {
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
pub fn rejection_of(r: &Refusal) -> TransferRejection {
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
    }
}

impl CoopState {
    /// Takes a transfer; the flag says whether it is stored (journalled).
    fn transfer(
        &mut self,
        t: Transfer,
        hash: Result<Hash, SignatureError>,
        source: Source,
        now: i64,
    ) -> (Outcome, bool) {
        let local = source == Source::Local;
        let hash = match hash {
            Ok(h) => h,
            Err(e) if local => {
                let record = rejected(&t, TransferRejection::BadSignature, e.to_string());
                return (Outcome::Transfer { record, duplicate: false }, false);
            }
            Err(_) => return (Outcome::Dropped, false),
        };
        if self.meta.contains_key(&hash) {
            let outcome = if local {
                Outcome::Transfer { record: self.record(&hash), duplicate: true }
            } else {
                Outcome::Dropped
            };
            return (outcome, false);
        }
        if local {
            let idem = (t.currency.clone(), t.payer.clone(), t.idempotency_id.clone());
            if !t.idempotency_id.is_empty() {
                if let Some(first) = self.idempotency.get(&idem) {
                    return (Outcome::Transfer { record: self.record(first), duplicate: true }, false);
                }
            }
            if let Some(refusal) = self.preflight(&t) {
                return (Outcome::Transfer { record: rejected(&t, refusal.0, refusal.1), duplicate: false }, false);
            }
        }
        match self.engine.submit_verified(t.clone(), hash) {
            Status::Refused(refusal) if local => {
                // Never stored nor sent on: as if it had not been submitted.
                self.engine.forget(&hash);
                let record = rejected(&t, rejection_of(&refusal), refusal.to_string());
                (Outcome::Transfer { record, duplicate: false }, false)
            }
            Status::Refused(refusal) if !refusal.is_stateful() => {
                self.engine.forget(&hash);
                (Outcome::Dropped, false)
            }
            Status::Refused(_) => {
                // A peer's transfer refused for what this node holds now (a limit, a
                // chain head) may be judged again when that changes, as it is on nodes
                // that receive it later: it is kept, like any other.
                self.meta.insert(hash, TransferMeta { position: 0, received_at_ms: now, applied_at_ms: 0 });
                (Outcome::Dropped, true)
            }
            _ => {
                self.meta.insert(hash, TransferMeta { position: 0, received_at_ms: now, applied_at_ms: 0 });
                let outcome = Outcome::Transfer {
                    record: TransferRecord { hash: hash.to_vec(), transfer: Some(t), ..Default::default() },
                    duplicate: false,
                };
                (outcome, true)
            }
        }
    }

    /// What this node can tell a member at once: the transfer names a currency or a
    /// party the cooperative does not have.
    fn preflight(&self, t: &Transfer) -> Option<(TransferRejection, String)> {
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

    /// Records a stored transfer in the read indexes.
    fn index(&mut self, t: &Transfer, hash: Hash, position: u64, received_at_ms: i64) {
        if let Some(m) = self.meta.get_mut(&hash) {
            m.position = position;
            m.received_at_ms = received_at_ms;
            if self.engine.is_applied(&hash) && m.applied_at_ms == 0 {
                m.applied_at_ms = received_at_ms;
            }
        }
        for member in [&t.payer, &t.payee] {
            self.history.entry((t.currency.clone(), member.clone())).or_default().push(hash);
        }
        if !t.idempotency_id.is_empty() {
            self.idempotency.entry((t.currency.clone(), t.payer.clone(), t.idempotency_id.clone())).or_insert(hash);
        }
    }

    fn admin(&mut self, body: Body, hash: Result<Hash, SignatureError>, source: Source) -> (Outcome, bool) {
        let local = source == Source::Local;
        let hash = match hash {
            Ok(h) => h,
            Err(e) => {
                let outcome = if local {
                    Outcome::Admin(Err(LedgerError::InvalidArgument(format!("refused: {e}"))))
                } else {
                    Outcome::Dropped
                };
                return (outcome, false);
            }
        };
        if local {
            if let Err(e) = self.check_admin(&body, &hash) {
                return (Outcome::Admin(Err(e)), false);
            }
        }
        let entry = match body {
            Body::Coop(c) => AdminEntry::Coop(c),
            Body::Admission(a) => AdminEntry::Admission(a),
            Body::Currency(c) => AdminEntry::Currency(c),
            Body::Limit(l) => AdminEntry::Limit(l),
            Body::Transfer(_) | Body::Fork(_) => unreachable!("admin entries only"),
        };
        let created = self.model.add(entry, hash);
        if created {
            self.engine.set_rules(self.model.rules());
        }
        let outcome = if local { Outcome::Admin(Ok(AdminOutcome { hash, created })) } else { Outcome::Dropped };
        (outcome, created)
    }

    /// What this node's API refuses of an admin entry: whatever would never count.
    fn check_admin(&self, body: &Body, hash: &Hash) -> Result<(), LedgerError> {
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
                    return invalid("an admission names the role MEMBER or ADMIN".into());
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
            Body::Transfer(_) | Body::Fork(_) => return Ok(()),
        };
        if !self.model.is_admin(signer) {
            return Err(LedgerError::PermissionDenied(format!(
                "{signer} is not an admin of cooperative `{coop_id}`: only admins sign admissions, currencies and \
                 credit limits"
            )));
        }
        Ok(())
    }

    /// A transfer as this node holds it.
    pub fn record(&self, hash: &Hash) -> TransferRecord {
        let Some(t) = self.engine.transfer(hash) else {
            return TransferRecord { hash: hash.to_vec(), ..Default::default() };
        };
        let meta = self.meta.get(hash);
        let mut record = TransferRecord {
            hash: hash.to_vec(),
            transfer: Some(t.clone()),
            received_at_ms: meta.map(|m| m.received_at_ms).unwrap_or_default(),
            ..Default::default()
        };
        match self.engine.status(hash) {
            Status::Applied => {
                record.status = TransferStatus::Applied as i32;
                record.applied_at_ms = meta.map(|m| m.applied_at_ms).unwrap_or_default();
            }
            Status::Pending(missing) => {
                record.status = TransferStatus::PendingDeps as i32;
                record.detail = format!("waiting for {}", missing.join(", "));
                record.missing_deps = t
                    .deps
                    .iter()
                    .filter(|d| <Hash>::try_from(d.as_slice()).is_ok_and(|d| !self.engine.is_applied(&d)))
                    .cloned()
                    .collect();
            }
            Status::Quarantined => {
                record.status = TransferStatus::Quarantined as i32;
                record.detail = format!(
                    "the payer signed another transfer with sequence number {}: a fork, neither applies",
                    t.payer_seq
                );
            }
            Status::Refused(r) => {
                record.status = TransferStatus::Rejected as i32;
                record.rejection = rejection_of(&r) as i32;
                record.detail = r.to_string();
            }
        }
        record
    }

    /// What the store keeps of an account: balance and chain head.
    fn row(&self, coop_id: &str, currency: &str, member: &str, at_ms: i64) -> Account {
        let (seq, head) = self.engine.head(currency, member).unwrap_or((0, [0; 32]));
        Account {
            coop_id: coop_id.to_string(),
            currency: currency.to_string(),
            member: member.to_string(),
            balance: clamp(self.engine.balance(currency, member)),
            seq,
            head_hash: if seq == 0 { Vec::new() } else { head.to_vec() },
            updated_at_ms: at_ms,
            ..Default::default()
        }
    }

    /// One account as it stands; `max_deps` caps its unclaimed incoming transfers.
    pub fn account(&self, coop_id: &str, currency: &str, member: &str, now: i64, max_deps: usize) -> Account {
        let (seq, head) = self.engine.head(currency, member).unwrap_or((0, [0; 32]));
        let limit = self.engine.rules().currencies.get(currency).map(|r| r.limit(member, now)).unwrap_or_default();
        let history = self.history.get(&(currency.to_string(), member.to_string()));
        let mut pending = 0;
        let (mut tip_seq, mut tip_hash) = (seq, head);
        // Incoming transfers a waiting transfer of the account already names.
        let mut named = std::collections::HashSet::new();
        let mut updated_at_ms = 0;
        for hash in history.into_iter().flatten() {
            let Some(t) = self.engine.transfer(hash) else { continue };
            if self.engine.is_applied(hash) {
                updated_at_ms = updated_at_ms.max(self.meta.get(hash).map(|m| m.applied_at_ms).unwrap_or_default());
                continue;
            }
            if t.payer == member && matches!(self.engine.status(hash), Status::Pending(_)) {
                pending += 1;
                if t.payer_seq > tip_seq {
                    (tip_seq, tip_hash) = (t.payer_seq, *hash);
                }
                named.extend(t.deps.iter().cloned());
            }
        }
        let unclaimed: Vec<Vec<u8>> = history
            .into_iter()
            .flatten()
            .filter(|h| self.engine.is_applied(h) && !self.engine.is_claimed(h) && !named.contains(h.as_slice()))
            .filter(|h| self.engine.transfer(h).is_some_and(|t| t.payee == member))
            .take(max_deps)
            .map(|h| h.to_vec())
            .collect();
        let hash_or_empty = |seq: u64, hash: Hash| if seq == 0 { Vec::new() } else { hash.to_vec() };
        Account {
            coop_id: coop_id.to_string(),
            currency: currency.to_string(),
            member: member.to_string(),
            balance: clamp(self.engine.balance(currency, member)),
            credit_limit: limit,
            seq,
            head_hash: hash_or_empty(seq, head),
            pending,
            updated_at_ms,
            unclaimed_incoming: unclaimed,
            tip_seq,
            tip_hash: hash_or_empty(tip_seq, tip_hash),
        }
    }

    /// Transfers in and out of an account, newest first, from before `before` (a journal
    /// position; 0 for the newest).
    pub fn history(
        &self,
        currency: &str,
        member: &str,
        before: u64,
        include_unapplied: bool,
        limit: usize,
    ) -> (Vec<TransferRecord>, Option<u64>) {
        let Some(hashes) = self.history.get(&(currency.to_string(), member.to_string())) else {
            return (Vec::new(), None);
        };
        let mut out = Vec::new();
        let mut last = None;
        for hash in hashes.iter().rev() {
            let position = self.meta.get(hash).map(|m| m.position).unwrap_or_default();
            if before != 0 && position >= before {
                continue;
            }
            if !include_unapplied && !self.engine.is_applied(hash) {
                continue;
            }
            if out.len() == limit {
                return (out, last);
            }
            out.push(self.record(hash));
            last = Some(position);
        }
        (out, None)
    }

    /// Members of the cooperative.
    pub fn members(&self) -> Vec<Member> {
        self.model.members().cloned().collect()
    }

    pub fn coop_record(&self) -> Option<&Coop> {
        self.model.coop()
    }

    /// Forks found here, oldest place first.
    pub fn quarantine(&self) -> Vec<Fork> {
        let forks = self.engine.forks();
        self.forks
            .iter()
            .filter_map(|(place, detected)| {
                let hashes = forks.get(place)?;
                Some(Fork {
                    coop_id: self.model.coop().map(|c| c.id.clone()).unwrap_or_default(),
                    currency: place.0.clone(),
                    payer: place.1.clone(),
                    payer_seq: place.2,
                    transfers: hashes.iter().map(|h| self.record(h)).collect(),
                    detected_at_ms: *detected,
                })
            })
            .collect()
    }

    /// The cooperative's public figures, computed at most once per change.
    pub fn stats(&self, coop_id: &str, now: i64) -> CoopStatsResponse {
        let mut cache = self.stats_cache.lock().expect("not poisoned");
        if let Some((at, stats)) = cache.as_ref() {
            if *at == self.changes {
                return stats.clone();
            }
        }
        let stats = self.compute_stats(coop_id, now);
        *cache = Some((self.changes, stats.clone()));
        stats
    }

    fn compute_stats(&self, coop_id: &str, now: i64) -> CoopStatsResponse {
        let mut per: BTreeMap<String, CurrencyStats> = self
            .model
            .currencies()
            .map(|c| {
                (
                    c.symbol.clone(),
                    CurrencyStats { symbol: c.symbol.clone(), decimals: c.decimals, ..Default::default() },
                )
            })
            .collect();
        for (hash, t) in self.engine.transfers() {
            let Some(s) = per.get_mut(&t.currency) else { continue };
            if self.engine.is_applied(hash) {
                s.transfer_count += 1;
                s.volume += t.amount as u64;
                continue;
            }
            match self.engine.status(hash) {
                Status::Pending(_) => s.pending_transfers += 1,
                Status::Quarantined => s.quarantined_transfers += 1,
                _ => {}
            }
        }
        let mut moved: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
        for hash in self.engine.applied() {
            if let Some(t) = self.engine.transfer(hash) {
                moved.entry(t.currency.as_str()).or_default().extend([t.payer.as_str(), t.payee.as_str()]);
            }
        }
        for ((currency, _), balance) in self.engine.balances() {
            if let Some(s) = per.get_mut(currency) {
                if *balance < 0 {
                    s.outstanding_credit += (-*balance).min(u64::MAX as i128) as u64;
                }
            }
        }
        for (currency, accounts) in moved {
            if let Some(s) = per.get_mut(currency) {
                s.accounts = accounts.len() as u64;
            }
        }
        let currencies: Vec<CurrencyStats> = per.into_values().collect();
        CoopStatsResponse {
            coop_id: coop_id.to_string(),
            name: self.model.coop().map(|c| c.name.clone()).unwrap_or_default(),
            members: self.model.members().count() as u64,
            transfer_count: currencies.iter().map(|c| c.transfer_count).sum(),
            currencies,
            computed_at_ms: now,
        }
    }

    /// Finds a transfer by its payer's idempotency id.
    pub fn by_idempotency(&self, currency: &str, payer: &str, id: &str) -> Option<Hash> {
        self.idempotency.get(&(currency.to_string(), payer.to_string(), id.to_string())).copied()
    }

    pub fn knows(&self, hash: &Hash) -> bool {
        self.meta.contains_key(hash)
    }
}

fn check_limit(limit: i64) -> Result<(), LedgerError> {
    if !(0..=MAX_AMOUNT).contains(&limit) {
        return Err(LedgerError::InvalidArgument(format!(
            "a credit limit is between 0 and {} minor units, got {limit}",
            MAX_AMOUNT
        )));
    }
    Ok(())
}

/// Balances are exact in the engine (i128); the API's i64 holds any balance a
/// cooperative of fewer than 1,024 members at the largest credit limit can reach.
pub fn clamp(balance: i128) -> i64 {
    balance.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_identity::NodeIdentity;
    use icn_ledger_records::{next_transfer, sign, Payment};
    use icn_proto::ledger::v1::{CreditLimit, Currency, MemberAdmission, MemberRole};
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    const CURRENCIES: [&str; 2] = ["hours", "meals"];
    const LIMIT: i64 = 100;

    fn admin_entries(founder: &NodeIdentity, members: &[NodeIdentity]) -> Vec<Body> {
        let mut out = vec![Body::Coop(sign(founder, Coop { id: "c".into(), name: "C".into(), ..Default::default() }))];
        for m in members {
            out.push(Body::Admission(sign(
                founder,
                MemberAdmission {
                    coop_id: "c".into(),
                    member: m.did().to_string(),
                    role: MemberRole::Member as i32,
                    ..Default::default()
                },
            )));
        }
        for symbol in CURRENCIES {
            out.push(Body::Currency(sign(
                founder,
                Currency {
                    coop_id: "c".into(),
                    symbol: symbol.into(),
                    default_credit_limit: LIMIT,
                    ..Default::default()
                },
            )));
        }
        // A limit raised for member 0 in "hours" from t = 500 on.
        out.push(Body::Limit(sign(
            founder,
            CreditLimit {
                coop_id: "c".into(),
                currency: "hours".into(),
                member: members[0].did().to_string(),
                limit: 300,
                created_at_ms: 500,
                ..Default::default()
            },
        )));
        out
    }

    /// A random history as members' clients write it, judged by one node that sees
    /// everything in order, plus forks and forged signatures.
    fn history(seed: u64) -> (Vec<NodeIdentity>, Vec<Body>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let founder = NodeIdentity::generate();
        let members: Vec<NodeIdentity> = (0..5).map(|_| NodeIdentity::generate()).collect();
        let mut entries = admin_entries(&founder, &members);
        let mut truth = State::default();
        let checked = entries.iter().cloned().map(Checked::trusted).collect();
        truth.apply(checked, Source::Peer, 0, &mut GroupWrite::default());
        for k in 0..80 {
            let p = rng.gen_range(0..members.len());
            let q = (p + rng.gen_range(1..members.len())) % members.len();
            let currency = CURRENCIES[rng.gen_range(0..2)];
            let coop = &truth.coops["c"];
            let account = coop.account("c", currency, members[p].did().as_str(), 0, 64);
            let payment = Payment {
                coop_id: "c",
                currency,
                payee: members[q].did().as_str(),
                amount: rng.gen_range(1..90),
                memo: "",
                idempotency_id: "",
            };
            let mut t = next_transfer(&members[p], &account, &payment, k * 10);
            if rng.gen_bool(0.04) {
                t.signature[3] ^= 1;
            }
            if rng.gen_bool(0.05) {
                let mut rival = t.clone();
                rival.memo = format!("fork {k}");
                entries.push(Body::Transfer(sign(&members[p], rival)));
            }
            entries.push(Body::Transfer(t.clone()));
            let checked = Checked::verify_all(vec![LedgerEntry { body: Some(Body::Transfer(t)) }]);
            truth.apply(checked, Source::Peer, 0, &mut GroupWrite::default());
        }
        (members, entries)
    }

    fn deliver(entries: &[Body], rng: &mut StdRng) -> State {
        let mut order: Vec<Body> = entries.to_vec();
        for e in entries {
            if rng.gen_bool(0.3) {
                order.push(e.clone());
            }
        }
        order.shuffle(rng);
        let mut state = State::default();
        // Peers' entries arrive in groups of random size.
        while !order.is_empty() {
            let n = rng.gen_range(1..=order.len().min(8));
            let group: Vec<LedgerEntry> = order.drain(..n).map(|b| LedgerEntry { body: Some(b) }).collect();
            state.apply(Checked::verify_all(group), Source::Peer, 0, &mut GroupWrite::default());
        }
        state
    }

    #[test]
    fn nodes_agree_whatever_the_order_of_admin_entries_and_transfers() {
        for seed in 0..40 {
            let (members, entries) = history(seed);
            let mut rng = StdRng::seed_from_u64(seed + 7);
            let replicas: Vec<State> = (0..3).map(|_| deliver(&entries, &mut rng)).collect();
            let reference = &replicas[0].coops["c"];
            assert!(!reference.engine.applied().is_empty(), "seed {seed}: transfers apply");
            for r in &replicas {
                let coop = &r.coops["c"];
                assert_eq!(coop.engine.applied(), reference.engine.applied(), "seed {seed}");
                assert_eq!(coop.engine.quarantine(), reference.engine.quarantine(), "seed {seed}");
                for currency in CURRENCIES {
                    let sum: i128 = members.iter().map(|m| coop.engine.balance(currency, m.did().as_str())).sum();
                    assert_eq!(sum, 0, "seed {seed}: {currency} sums to zero");
                    for (i, m) in members.iter().enumerate() {
                        let floor = if i == 0 && currency == "hours" { -300 } else { -LIMIT } as i128;
                        let balance = coop.engine.balance(currency, m.did().as_str());
                        assert!(balance >= floor, "seed {seed}: {balance} below {floor}");
                        assert_eq!(balance, reference.engine.balance(currency, m.did().as_str()), "seed {seed}");
                    }
                }
                // Applied once each: the replay of the applied set gives the balances.
                let replay = coop.engine.replay();
                for ((currency, member), b) in coop.engine.balances() {
                    assert_eq!(
                        replay.get(&(currency.clone(), member.clone())).copied().unwrap_or(0),
                        *b,
                        "seed {seed}"
                    );
                }
            }
        }
    }
}
