//! gossip's errors and their one mapping to gRPC codes.

use icn_proto::gossip::v1::RejectionReason;

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("{0}")]
    InvalidArgument(String),
    /// An entry or topic refused by a rule; counted in metrics by reason.
    #[error("rejected ({}): {why}", reason.as_str_name().trim_start_matches("REJECTION_REASON_"))]
    Rejected { reason: RejectionReason, why: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("the snapshot is corrupt, nothing was changed: {0}")]
    CorruptSnapshot(String),
    #[error(
        "the snapshot has format version {found}; this build reads version {}, nothing was changed",
        crate::snapshot::FORMAT_VERSION
    )]
    SnapshotVersion { found: u32 },
    #[error("storing failed, nothing was acknowledged: {0}")]
    CommitFailed(String),
    #[error("storage: {0}")]
    Storage(#[from] icn_storage::StorageError),
    #[error("{0}")]
    NoIdentity(tonic::Status),
    /// A capability of issue #4 not built yet.
    #[error("not available yet: {0}")]
    Pending(&'static str),
}

impl From<icn_gossip_records::RecordError> for GossipError {
    fn from(e: icn_gossip_records::RecordError) -> Self {
        use icn_gossip_records::RecordError;
        match e {
            RecordError::Invalid(why) => GossipError::InvalidArgument(why),
            RecordError::Rejected { reason, why } => GossipError::Rejected { reason, why },
        }
    }
}

impl From<GossipError> for tonic::Status {
    fn from(e: GossipError) -> Self {
        use tonic::Status;
        let message = e.to_string();
        match e {
            GossipError::InvalidArgument(_) => Status::invalid_argument(message),
            GossipError::Rejected { reason, .. } => match reason {
                RejectionReason::AclViolation | RejectionReason::ReservedTopic => Status::permission_denied(message),
                RejectionReason::UnknownTopic => Status::not_found(message),
                RejectionReason::Replay | RejectionReason::Equivocation => Status::already_exists(message),
                RejectionReason::UnknownFormat => Status::failed_precondition(message),
                _ => Status::invalid_argument(message),
            },
            GossipError::NotFound(_) => Status::not_found(message),
            GossipError::AlreadyExists(_) => Status::already_exists(message),
            GossipError::ResourceExhausted(_) => Status::resource_exhausted(message),
            GossipError::CorruptSnapshot(_) => Status::data_loss(message),
            GossipError::SnapshotVersion { .. } => Status::failed_precondition(message),
            GossipError::Storage(_) | GossipError::CommitFailed(_) => Status::internal(message),
            GossipError::NoIdentity(status) => status,
            GossipError::Pending(what) => icn_runtime::pending(what),
        }
    }
}
