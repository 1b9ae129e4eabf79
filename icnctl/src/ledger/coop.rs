//! `icnctl coop create | show | admit | remove | validators` and `icnctl stats`: cooperatives, the admissions
//! of their members, and their public figures.
//!
//! Creating a cooperative and admitting members are admin records, signed with the
//! founder's or an admin's key and sent to the ledger service; the figures are public
//! and go through whichever [`MemberApi`] the member uses.

use super::answer::Answer as _;
use crate::gateway::MemberApi;
use crate::member::{parse_did, KeyArgs};
use crate::output::Output;
use clap::Subcommand;
use icn_ledger_records::sign;
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::{
    AddMemberRequest, CoopStatsRequest, CreateCoopRequest, GetCoopRequest, MemberAdmission, MemberRole,
    SetValidatorsRequest, Validators,
};
use icn_runtime::now_ms;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum CoopCommand {
    /// Found a cooperative; the founder (--key) becomes its first admin. Prints its id,
    /// `<label>-<26 characters>`, bound to the founding record: every later command
    /// names the cooperative by that id.
    Create {
        /// Lower-case letters, digits and '-', at most 37 bytes.
        label: String,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        /// Members admitted with the cooperative (repeat the flag for each DID).
        #[arg(long = "member")]
        members: Vec<String>,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// The cooperative's founder, members with their roles, and currencies.
    Show { id: String },
    /// Admit a member, or change a member's role; signed by an admin (--key).
    Admit {
        did: String,
        #[arg(long)]
        coop: String,
        /// Admit as an admin, who may sign admissions, currencies and credit limits.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Remove a member (or revoke an admin) from now on; signed by an admin (--key).
    /// What the member signed before still counts.
    Remove {
        did: String,
        #[arg(long)]
        coop: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Name the nodes (by DID, `icnctl id show` or `icnctl status` on each) whose votes certify the
    /// cooperative's transfers from now on, and how many votes certify one: more than
    /// half of them (2f + 1 of 3f + 1 tolerates f dishonest nodes). A certified
    /// transfer is final for its payee. No DIDs and --quorum 0 turn certification off.
    /// Signed by an admin (--key).
    Validators {
        dids: Vec<String>,
        #[arg(long)]
        coop: String,
        /// Votes that certify a transfer; defaults to the least majority.
        #[arg(long)]
        quorum: Option<u32>,
        #[command(flatten)]
        key: KeyArgs,
    },
}

pub async fn run(ledger: &mut LedgerClient<Channel>, command: CoopCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        CoopCommand::Create { label, name, members, key } => {
            let members = members.iter().map(|m| parse_did(m, "--member")).collect::<anyhow::Result<Vec<_>>>()?;
            let founder = key.open()?;
            let now = now_ms();
            let coop = icn_ledger_records::coop::found(&founder, &label, &name, now)?;
            let id = coop.id.clone();
            let admissions = members
                .into_iter()
                .map(|member| {
                    let role = MemberRole::Member as i32;
                    sign(
                        &founder,
                        MemberAdmission { coop_id: id.clone(), member, role, created_at_ms: now, ..Default::default() },
                    )
                })
                .collect::<Vec<_>>();
            let admitted = admissions.len();
            let request = CreateCoopRequest { coop: Some(coop), admissions };
            out.coop_created(&ledger.create_coop(request).await.answer("creating the cooperative")?, admitted);
        }
        CoopCommand::Show { id } => {
            out.coop(&ledger.get_coop(GetCoopRequest { coop_id: id }).await.answer("reading the cooperative")?);
        }
        CoopCommand::Admit { did, coop, admin, key } => {
            let role = if admin { MemberRole::Admin } else { MemberRole::Member };
            admit(ledger, &did, &coop, role, &key, out).await?;
        }
        CoopCommand::Remove { did, coop, key } => admit(ledger, &did, &coop, MemberRole::Removed, &key, out).await?,
        CoopCommand::Validators { dids, coop, quorum, key } => {
            let validators = dids.iter().map(|d| parse_did(d, "a validator")).collect::<anyhow::Result<Vec<_>>>()?;
            let quorum = quorum.unwrap_or(validators.len() as u32 / 2 + u32::from(!validators.is_empty()));
            let signer = key.open()?;
            let record = sign(
                &signer,
                Validators { coop_id: coop, validators, quorum, created_at_ms: now_ms(), ..Default::default() },
            );
            icn_ledger_records::finality::check(&record)?;
            let request = SetValidatorsRequest { validators: Some(record.clone()) };
            let r = ledger.set_validators(request).await.answer("setting the validators")?;
            out.validators_set(&record, &r);
        }
    }
    Ok(())
}

/// Signs and sends an admission giving `did` the role `role` (REMOVED removes it).
async fn admit(
    ledger: &mut LedgerClient<Channel>,
    did: &str,
    coop: &str,
    role: MemberRole,
    key: &KeyArgs,
    out: &Output,
) -> anyhow::Result<()> {
    let member = parse_did(did, "the member")?;
    let signer = key.open()?;
    let admission = sign(
        &signer,
        MemberAdmission {
            coop_id: coop.to_string(),
            member,
            role: role as i32,
            created_at_ms: now_ms(),
            ..Default::default()
        },
    );
    let what = if role == MemberRole::Removed { "removing the member" } else { "admitting the member" };
    let added = ledger.add_member(AddMemberRequest { admission: Some(admission) }).await.answer(what)?;
    out.member_admitted(coop, &added.member.unwrap_or_default());
    Ok(())
}

/// `icnctl stats`: the cooperative's public figures.
pub async fn stats(api: &mut MemberApi, coop: String, out: &Output) -> anyhow::Result<()> {
    let stats = api.coop_stats(CoopStatsRequest { coop_id: coop }).await.answer("reading the figures")?;
    out.coop_stats(&stats);
    Ok(())
}
