//! ledger's errors and their one mapping to gRPC codes.

use icn_proto::ledger::v1::TransferRejection;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A transfer refused by a rule of the ledger, named in the message.
    #[error("transfer refused ({}): {detail}", rejection.as_str_name().trim_start_matches("TRANSFER_REJECTION_"))]
    Rejected { rejection: TransferRejection, detail: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The node's gossip service, which the ledger replicates through, cannot be reached.
    #[error("gossip is unavailable, nothing was stored: {0}")]
    GossipUnavailable(String),
    #[error("{0}")]
    Aborted(String),
    #[error("storing failed, nothing was acknowledged: {0}")]
    CommitFailed(String),
    #[error("storage: {0}")]
    Storage(#[from] icn_storage::StorageError),
    #[error("{0}")]
    NoIdentity(tonic::Status),
}

impl LedgerError {
    pub fn rejected(rejection: TransferRejection, detail: impl Into<String>) -> Self {
        LedgerError::Rejected { rejection, detail: detail.into() }
    }
}

impl From<LedgerError> for tonic::Status {
    fn from(e: LedgerError) -> Self {
        use tonic::Status;
        let message = e.to_string();
        match e {
            // What is wrong with the transfer itself: the client must change it.
            LedgerError::Rejected {
                rejection:
                    TransferRejection::BadSignature
                    | TransferRejection::Malformed
                    | TransferRejection::InvalidAmount
                    | TransferRejection::BadTime,
                ..
            } => Status::invalid_argument(message),
            // What is wrong given the ledger's state: the client may retry once it changes.
            LedgerError::Rejected { .. } => Status::failed_precondition(message),
            LedgerError::InvalidArgument(_) => Status::invalid_argument(message),
            LedgerError::NotFound(_) => Status::not_found(message),
            LedgerError::AlreadyExists(_) => Status::already_exists(message),
            LedgerError::PermissionDenied(_) => Status::permission_denied(message),
            LedgerError::FailedPrecondition(_) => Status::failed_precondition(message),
            LedgerError::ResourceExhausted(_) => Status::resource_exhausted(message),
            LedgerError::GossipUnavailable(_) => Status::unavailable(message),
            LedgerError::Aborted(_) => Status::aborted(message),
            LedgerError::CommitFailed(_) | LedgerError::Storage(_) => Status::internal(message),
            LedgerError::NoIdentity(status) => status,
        }
    }
}
