//! Reading the ledger's answers: a refusal becomes an error carrying the ledger's own
//! message, and lists are asked for in the largest pages the service serves.

use anyhow::anyhow;
use icn_proto::common::v1::PageRequest;

/// The answer to a call, or an error with the ledger's own message, which names the
/// rule or what is missing, under what was being done.
pub trait Answer<T> {
    fn answer(self, doing: &str) -> anyhow::Result<T>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answer(self, doing: &str) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner).map_err(|status| {
            let message = if status.message().is_empty() { status.code().description() } else { status.message() };
            anyhow!("{doing}: {message}")
        })
    }
}

/// Lists (accounts, forks) are read whole, in the largest pages the service serves.
pub fn page(cursor: String) -> Option<PageRequest> {
    Some(PageRequest { limit: icn_runtime::paging::MAX_PAGE, cursor })
}
