//! A cooperative on a test network, as its members would drive it: member keys held by
//! the test (never by a node), admin entries signed by the founder, transfers built and
//! signed the way icnctl does ([`icn_ledger_records::transfer`]).

use anyhow::Context as _;
use icn_identity::NodeIdentity;
use icn_ledger_records::sign;
use icn_ledger_records::{next_transfer, Payment};
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::transport::Channel;

/// The currency every test cooperative has.
pub const CURRENCY: &str = "hours";

pub struct TestCoop {
    pub id: String,
    pub founder: NodeIdentity,
    pub members: Vec<NodeIdentity>,
    pub limit: i64,
}

impl TestCoop {
    /// Founds a cooperative labelled `label` through `client` (its id is `label-…`,
    /// bound to the founding record): the founder, `members` more members and the
    /// currency `hours` (2 decimals) with `limit` as default credit limit.
    pub async fn create(
        client: &mut LedgerClient<Channel>,
        label: &str,
        members: usize,
        limit: i64,
    ) -> anyhow::Result<TestCoop> {
        let founder = NodeIdentity::generate();
        let members: Vec<NodeIdentity> = (0..members).map(|_| NodeIdentity::generate()).collect();
        let now = icn_runtime::now_ms();
        let coop = icn_ledger_records::coop::found(&founder, label, &format!("{label} cooperative"), now)?;
        let id = coop.id.clone();
        let admissions = members
            .iter()
            .map(|m| {
                sign(
                    &founder,
                    MemberAdmission {
                        coop_id: id.clone(),
                        member: m.did().to_string(),
                        role: MemberRole::Member as i32,
                        created_at_ms: now,
                        ..Default::default()
                    },
                )
            })
            .collect();
        client.create_coop(CreateCoopRequest { coop: Some(coop), admissions }).await.context("CreateCoop")?;
        let currency = sign(
            &founder,
            Currency {
                coop_id: id.clone(),
                symbol: CURRENCY.into(),
                decimals: 2,
                default_credit_limit: limit,
                description: "hours of work".into(),
                created_at_ms: now,
                ..Default::default()
            },
        );
        client.create_currency(CreateCurrencyRequest { currency: Some(currency) }).await.context("CreateCurrency")?;
        Ok(TestCoop { id, founder, members, limit })
    }

    /// Everyone who may pay: the founder and the members.
    pub fn everyone(&self) -> Vec<&NodeIdentity> {
        std::iter::once(&self.founder).chain(self.members.iter()).collect()
    }

    pub async fn account(
        &self,
        client: &mut LedgerClient<Channel>,
        member: &NodeIdentity,
    ) -> Result<Account, tonic::Status> {
        let r = client
            .get_balance(GetBalanceRequest {
                coop_id: self.id.clone(),
                currency: CURRENCY.into(),
                member: member.did().to_string(),
            })
            .await?;
        Ok(r.into_inner().account.unwrap_or_default())
    }

    /// `payer`'s next transfer as its client would build it from the node's view.
    pub async fn next(
        &self,
        client: &mut LedgerClient<Channel>,
        payer: &NodeIdentity,
        payee: &NodeIdentity,
        amount: i64,
        memo: &str,
    ) -> Result<Transfer, tonic::Status> {
        let account = self.account(client, payer).await?;
        Ok(next_transfer(
            payer,
            &account,
            &Payment {
                coop_id: &self.id,
                currency: CURRENCY,
                payee: payee.did().as_str(),
                amount,
                memo,
                idempotency_id: "",
            },
            icn_runtime::now_ms(),
        ))
    }

    /// Builds and submits one payment.
    pub async fn pay(
        &self,
        client: &mut LedgerClient<Channel>,
        payer: &NodeIdentity,
        payee: &NodeIdentity,
        amount: i64,
    ) -> Result<TransferRecord, tonic::Status> {
        let t = self.next(client, payer, payee, amount, "test payment").await?;
        let r = client.submit_transfer(SubmitTransferRequest { transfer: Some(t) }).await?;
        Ok(r.into_inner().record.unwrap_or_default())
    }

    /// Every account's balance on one node.
    pub async fn balances(&self, client: &mut LedgerClient<Channel>) -> anyhow::Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        let mut cursor = String::new();
        loop {
            let r = client
                .list_accounts(ListAccountsRequest {
                    coop_id: self.id.clone(),
                    currency: CURRENCY.into(),
                    page: Some(icn_proto::common::v1::PageRequest { limit: 1000, cursor }),
                    ..Default::default()
                })
                .await?
                .into_inner();
            out.extend(r.accounts.into_iter().map(|a| (a.member, a.balance)));
            if r.next_cursor.is_empty() {
                return Ok(out);
            }
            cursor = r.next_cursor;
        }
    }

    pub async fn stats(&self, client: &mut LedgerClient<Channel>) -> anyhow::Result<CoopStatsResponse> {
        Ok(client.coop_stats(CoopStatsRequest { coop_id: self.id.clone() }).await?.into_inner())
    }

    /// Checks the ledger's invariants on one node's balances: they sum to zero and none
    /// is below its floor.
    pub fn assert_invariants(&self, balances: &BTreeMap<String, i64>) {
        assert_eq!(balances.values().map(|b| *b as i128).sum::<i128>(), 0, "balances sum to zero: {balances:?}");
        for (member, b) in balances {
            assert!(*b >= -self.limit, "{member} is at {b}, below its floor of -{}", self.limit);
        }
    }
}

/// Waits until every client reports the same balances and applied-transfer count, at
/// least `min_applied`; returns the balances.
pub async fn wait_converged(
    coop: &TestCoop,
    clients: &mut [LedgerClient<Channel>],
    min_applied: u64,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut views = Vec::new();
        for c in clients.iter_mut() {
            let stats = coop.stats(c).await.ok();
            let balances = coop.balances(c).await.ok();
            views.push((stats.map(|s| s.transfer_count), balances));
        }
        let first = &views[0];
        if first.0.is_some_and(|n| n >= min_applied) && first.1.is_some() && views.iter().all(|v| v == first) {
            return Ok(first.1.clone().expect("checked"));
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("nodes did not converge within {timeout:?}: {views:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
