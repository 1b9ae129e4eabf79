//! Rendering the ledger's answers. JSON mirrors the protobuf response, field for field:
//! amounts in minor units, hashes and signatures in hex, enums by their short name.
//! Text shows amounts in the currency's units.

use super::Output;
use icn_ledger_records::format_amount;
use icn_proto::ledger::v1::*;
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

fn role_name(role: i32) -> &'static str {
    match MemberRole::try_from(role).unwrap_or(MemberRole::Unspecified) {
        MemberRole::Unspecified => "unspecified",
        MemberRole::Member => "member",
        MemberRole::Admin => "admin",
        MemberRole::Removed => "removed",
    }
}

fn status_name(status: i32) -> &'static str {
    match TransferStatus::try_from(status).unwrap_or(TransferStatus::Unspecified) {
        TransferStatus::Unspecified => "unspecified",
        TransferStatus::Applied => "applied",
        TransferStatus::PendingDeps => "pending",
        TransferStatus::Quarantined => "quarantined",
        TransferStatus::Rejected => "rejected",
    }
}

/// `below_floor` for TRANSFER_REJECTION_BELOW_FLOOR; empty when unset.
fn rejection_name(rejection: i32) -> String {
    match TransferRejection::try_from(rejection).unwrap_or(TransferRejection::Unspecified) {
        TransferRejection::Unspecified => String::new(),
        r => r.as_str_name().trim_start_matches("TRANSFER_REJECTION_").to_lowercase(),
    }
}

/// UTC to the second; `-` for an unset time.
fn time_text(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// Totals the ledger reports unsigned; none comes near i64::MAX minor units.
fn units(minor: u64, decimals: u32) -> String {
    format_amount(i64::try_from(minor).unwrap_or(i64::MAX), decimals)
}

fn hashes(list: &[Vec<u8>]) -> Vec<String> {
    list.iter().map(hex::encode).collect()
}

fn coop_json(c: &Coop) -> Value {
    json!({
        "id": c.id, "name": c.name, "founder": c.founder, "created_at_ms": c.created_at_ms,
        "signature": hex::encode(&c.signature),
    })
}

fn member_json(m: &Member) -> Value {
    json!({ "did": m.did, "role": role_name(m.role), "admitted_at_ms": m.admitted_at_ms, "admitted_by": m.admitted_by })
}

fn currency_json(c: &Currency) -> Value {
    json!({
        "coop_id": c.coop_id, "symbol": c.symbol, "decimals": c.decimals,
        "default_credit_limit": c.default_credit_limit, "description": c.description, "signer": c.signer,
        "created_at_ms": c.created_at_ms, "signature": hex::encode(&c.signature),
    })
}

fn limit_json(l: &CreditLimit) -> Value {
    json!({
        "coop_id": l.coop_id, "currency": l.currency, "member": l.member, "limit": l.limit, "signer": l.signer,
        "created_at_ms": l.created_at_ms, "signature": hex::encode(&l.signature),
    })
}

fn transfer_json(t: &Transfer) -> Value {
    json!({
        "coop_id": t.coop_id, "currency": t.currency, "payer": t.payer, "payee": t.payee, "amount": t.amount,
        "memo": t.memo, "idempotency_id": t.idempotency_id, "payer_seq": t.payer_seq,
        "prev_hash": hex::encode(&t.prev_hash), "deps": hashes(&t.deps), "created_at_ms": t.created_at_ms,
        "signature": hex::encode(&t.signature),
    })
}

fn record_json(r: &TransferRecord) -> Value {
    json!({
        "hash": hex::encode(&r.hash), "transfer": r.transfer.as_ref().map(transfer_json),
        "status": status_name(r.status), "rejection": rejection_name(r.rejection), "detail": r.detail,
        "missing_deps": hashes(&r.missing_deps), "received_at_ms": r.received_at_ms,
        "applied_at_ms": r.applied_at_ms, "votes": r.votes, "quorum": r.quorum, "certified": r.certified,
    })
}

fn account_json(a: &Account) -> Value {
    json!({
        "coop_id": a.coop_id, "currency": a.currency, "member": a.member, "balance": a.balance,
        "credit_limit": a.credit_limit, "seq": a.seq, "head_hash": hex::encode(&a.head_hash),
        "pending": a.pending, "updated_at_ms": a.updated_at_ms,
        "unclaimed_incoming": hashes(&a.unclaimed_incoming),
    })
}

fn validators_json(v: &Validators) -> Value {
    json!({
        "coop_id": v.coop_id, "validators": v.validators, "quorum": v.quorum, "signer": v.signer,
        "created_at_ms": v.created_at_ms,
    })
}

fn fork_json(f: &Fork) -> Value {
    json!({
        "coop_id": f.coop_id, "currency": f.currency, "payer": f.payer, "payer_seq": f.payer_seq,
        "transfers": f.transfers.iter().map(record_json).collect::<Vec<_>>(), "detected_at_ms": f.detected_at_ms,
    })
}

fn stats_json(s: &CurrencyStats) -> Value {
    json!({
        "symbol": s.symbol, "decimals": s.decimals, "accounts": s.accounts, "transfer_count": s.transfer_count,
        "volume": s.volume, "outstanding_credit": s.outstanding_credit,
        "pending_transfers": s.pending_transfers, "quarantined_transfers": s.quarantined_transfers,
    })
}

impl Output {
    pub fn coop_created(&self, r: &CreateCoopResponse, admitted: usize) {
        let coop = r.coop.clone().unwrap_or_default();
        if self.json {
            println!("{}", json!({ "coop": coop_json(&coop), "hash": hex::encode(&r.hash), "created": r.created }));
            return;
        }
        let verb = if r.created { "created" } else { "already had" };
        println!("{verb} cooperative {} ({})", coop.id, coop.name);
        println!("founder   {} (admin)", coop.founder);
        println!("members   {admitted} admitted with it");
    }

    pub fn coop(&self, r: &GetCoopResponse) {
        let coop = r.coop.clone().unwrap_or_default();
        if self.json {
            println!(
                "{}",
                json!({
                    "coop": coop_json(&coop),
                    "members": r.members.iter().map(member_json).collect::<Vec<_>>(),
                    "currencies": r.currencies.iter().map(currency_json).collect::<Vec<_>>(),
                    "validators": r.validators.as_ref().map(validators_json),
                })
            );
            return;
        }
        println!("cooperative  {} ({})", coop.id, coop.name);
        println!("founder      {}", coop.founder);
        println!("created      {}", time_text(coop.created_at_ms));
        match r.validators.as_ref().filter(|v| v.quorum > 0) {
            Some(v) => {
                println!(
                    "validators   quorum {} of {}, since {}",
                    v.quorum,
                    v.validators.len(),
                    time_text(v.created_at_ms)
                );
                for did in &v.validators {
                    println!("             {did}");
                }
            }
            None => println!("validators   none: a fork quarantines both transfers (`icnctl coop validators`)"),
        }
        println!("\n{:<58} {:<7} ADMITTED", "MEMBER", "ROLE");
        for m in &r.members {
            println!("{:<58} {:<7} {}", m.did, role_name(m.role), time_text(m.admitted_at_ms));
        }
        if r.currencies.is_empty() {
            println!("\nno currencies yet (`icnctl currency create`)");
            return;
        }
        println!("\n{:<17} {:>8} {:>16}  DESCRIPTION", "CURRENCY", "DECIMALS", "CREDIT LIMIT");
        for c in &r.currencies {
            let limit = format_amount(c.default_credit_limit, c.decimals);
            println!("{:<17} {:>8} {:>16}  {}", c.symbol, c.decimals, limit, c.description);
        }
    }

    pub fn validators_set(&self, v: &Validators, r: &SetValidatorsResponse) {
        if self.json {
            println!(
                "{}",
                json!({ "validators": validators_json(v), "hash": hex::encode(&r.hash), "created": r.created })
            );
        } else if v.quorum == 0 {
            println!("cooperative {} has no validators from now on", v.coop_id);
        } else {
            println!(
                "cooperative {}: transfers are certified by {} of these {} validators from now on",
                v.coop_id,
                v.quorum,
                v.validators.len()
            );
        }
    }

    pub fn member_admitted(&self, coop: &str, m: &Member) {
        if self.json {
            println!("{}", json!({ "member": member_json(m) }));
        } else {
            if m.role == MemberRole::Removed as i32 {
                println!("{} is removed from cooperative {coop}", m.did);
            } else {
                println!("{} is {} of cooperative {coop}", m.did, role_name(m.role));
            }
        }
    }

    pub fn currency_created(&self, r: &CreateCurrencyResponse) {
        let c = r.currency.clone().unwrap_or_default();
        if self.json {
            println!("{}", json!({ "currency": currency_json(&c), "created": r.created }));
            return;
        }
        let verb = if r.created { "created" } else { "already had" };
        let limit = format_amount(c.default_credit_limit, c.decimals);
        println!(
            "{verb} currency {} of {}: {} decimals, default credit limit {limit}",
            c.symbol, c.coop_id, c.decimals
        );
    }

    pub fn account(&self, a: &Account, decimals: u32) {
        if self.json {
            println!("{}", json!({ "account": account_json(a) }));
            return;
        }
        println!("member        {}", a.member);
        println!("balance       {} {}", format_amount(a.balance, decimals), a.currency);
        println!(
            "credit limit  {} (the balance may go down to {})",
            format_amount(a.credit_limit, decimals),
            format_amount(-a.credit_limit, decimals)
        );
        println!("seq           {}", a.seq);
        println!("pending       {}", a.pending);
    }

    pub fn transfer_submitted(&self, r: &SubmitTransferResponse, decimals: u32) {
        let record = r.record.clone().unwrap_or_default();
        if self.json {
            println!("{}", json!({ "record": record_json(&record), "duplicate": r.duplicate }));
            return;
        }
        let t = record.transfer.clone().unwrap_or_default();
        println!("hash     {}", hex::encode(&record.hash));
        println!("status   {}", status_name(record.status));
        if record.quorum > 0 {
            let final_ = if record.certified { "certified" } else { "not certified yet" };
            println!("votes    {} of quorum {}: {final_}", record.votes, record.quorum);
        }
        println!("paid     {} {} to {}", format_amount(t.amount, decimals), t.currency, t.payee);
        if !record.detail.is_empty() {
            println!("detail   {}", record.detail);
        }
        if r.duplicate {
            println!("(submitted before with idempotency id `{}`: this is that transfer)", t.idempotency_id);
        }
    }

    /// A member's transfers, newest first; `member` tells incoming from outgoing.
    pub fn history(&self, r: &GetHistoryResponse, member: &str, decimals: u32) {
        if self.json {
            let transfers: Vec<_> = r.transfers.iter().map(record_json).collect();
            println!("{}", json!({ "transfers": transfers, "next_cursor": r.next_cursor }));
            return;
        }
        if r.transfers.is_empty() {
            println!("no transfers");
            return;
        }
        println!("{:<21} {:<4} {:<58} {:>14}  {:<11} MEMO", "TIME", "DIR", "COUNTERPARTY", "AMOUNT", "STATUS");
        for record in &r.transfers {
            let t = record.transfer.clone().unwrap_or_default();
            let (direction, counterparty, amount) =
                if t.payer == member { ("out", &t.payee, -t.amount) } else { ("in", &t.payer, t.amount) };
            let line = format!(
                "{:<21} {:<4} {:<58} {:>14}  {:<11} {}",
                time_text(t.created_at_ms),
                direction,
                counterparty,
                format_amount(amount, decimals),
                status_name(record.status),
                t.memo
            );
            println!("{}", line.trim_end());
        }
        if !r.next_cursor.is_empty() {
            println!("(older transfers not shown: raise --limit)");
        }
    }

    pub fn coop_stats(&self, s: &CoopStatsResponse) {
        if self.json {
            println!(
                "{}",
                json!({
                    "coop_id": s.coop_id, "name": s.name, "members": s.members,
                    "currencies": s.currencies.iter().map(stats_json).collect::<Vec<_>>(),
                    "transfer_count": s.transfer_count, "computed_at_ms": s.computed_at_ms,
                })
            );
            return;
        }
        println!("cooperative  {} ({})", s.coop_id, s.name);
        println!("members      {}", s.members);
        println!("transfers    {}", s.transfer_count);
        if s.currencies.is_empty() {
            println!("\nno currencies yet");
            return;
        }
        println!(
            "\n{:<17} {:>8}  {:>9}  {:>16}  {:>16}  {:>7}  {:>11}",
            "CURRENCY", "ACCOUNTS", "TRANSFERS", "VOLUME", "OUTSTANDING", "PENDING", "QUARANTINED"
        );
        for c in &s.currencies {
            println!(
                "{:<17} {:>8}  {:>9}  {:>16}  {:>16}  {:>7}  {:>11}",
                c.symbol,
                c.accounts,
                c.transfer_count,
                units(c.volume, c.decimals),
                units(c.outstanding_credit, c.decimals),
                c.pending_transfers,
                c.quarantined_transfers
            );
        }
    }

    /// Every account's credit limit in one currency (the list is complete: no cursor).
    pub fn limits(&self, currency: &Currency, accounts: &[Account]) {
        if self.json {
            let accounts: Vec<_> = accounts.iter().map(account_json).collect();
            println!("{}", json!({ "accounts": accounts, "next_cursor": "" }));
            return;
        }
        let d = currency.decimals;
        println!("default credit limit of {}: {}", currency.symbol, format_amount(currency.default_credit_limit, d));
        println!("\n{:<58} {:>16} {:>16}", "MEMBER", "CREDIT LIMIT", "BALANCE");
        for a in accounts {
            println!("{:<58} {:>16} {:>16}", a.member, format_amount(a.credit_limit, d), format_amount(a.balance, d));
        }
    }

    pub fn limit_set(&self, r: &SetCreditLimitResponse, decimals: u32) {
        let limit = r.limit.clone().unwrap_or_default();
        if self.json {
            println!("{}", json!({ "limit": limit_json(&limit), "account": r.account.as_ref().map(account_json) }));
            return;
        }
        match &r.account {
            Some(a) => {
                let amount = format_amount(a.credit_limit, decimals);
                println!("credit limit of {} in {} is {amount}", a.member, a.currency);
                println!(
                    "balance {}, which may go down to {}",
                    format_amount(a.balance, decimals),
                    format_amount(-a.credit_limit, decimals)
                );
            }
            None => println!("default credit limit of {} is {}", limit.currency, format_amount(limit.limit, decimals)),
        }
    }

    /// Forks, with each currency's decimals from `currencies`.
    pub fn quarantine(&self, forks: &[Fork], currencies: &[Currency]) {
        if self.json {
            let forks: Vec<_> = forks.iter().map(fork_json).collect();
            println!("{}", json!({ "forks": forks, "next_cursor": "" }));
            return;
        }
        if forks.is_empty() {
            println!("no forks");
            return;
        }
        for f in forks {
            let decimals = currencies.iter().find(|c| c.symbol == f.currency).map(|c| c.decimals).unwrap_or(0);
            println!(
                "{} signed {} transfers with seq {} in {} (found {})",
                f.payer,
                f.transfers.len(),
                f.payer_seq,
                f.currency,
                time_text(f.detected_at_ms)
            );
            for record in &f.transfers {
                let t = record.transfer.clone().unwrap_or_default();
                let amount = format_amount(t.amount, decimals);
                println!("  {}  {amount:>14} to {}  {}", hex::encode(&record.hash), t.payee, t.memo);
            }
        }
    }
}
