//! `icnctl quarantine`: the forks of a cooperative, transfers quarantined because their
//! payer signed two with one sequence number, shown in their currencies' units.

use super::answer::{page, Answer as _};
use crate::output::Output;
use icn_proto::ledger::v1::ledger_client::LedgerClient;
use icn_proto::ledger::v1::{ListCurrenciesRequest, ListQuarantineRequest};
use tonic::transport::Channel;

pub async fn list(ledger: &mut LedgerClient<Channel>, coop: String, out: &Output) -> anyhow::Result<()> {
    let currencies = ledger
        .list_currencies(ListCurrenciesRequest { coop_id: coop.clone() })
        .await
        .answer("reading the currencies")?
        .currencies;
    let mut forks = Vec::new();
    let mut cursor = String::new();
    loop {
        let request = ListQuarantineRequest { coop_id: coop.clone(), page: page(cursor) };
        let listed = ledger.list_quarantine(request).await.answer("listing the quarantine")?;
        forks.extend(listed.forks);
        if listed.next_cursor.is_empty() {
            break;
        }
        cursor = listed.next_cursor;
    }
    out.quarantine(&forks, &currencies);
    Ok(())
}
