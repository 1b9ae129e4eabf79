//! netd's errors and their single mapping to gRPC status codes.

use icn_identity::Did;

#[derive(Clone, Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("peer {0} is not connected")]
    NotConnected(Did),
    #[error("no peer {0} is known to this node")]
    UnknownPeer(Did),
    #[error("the queue to {did} is full ({limit}); retry once the peer has caught up")]
    QueueFull { did: Did, bound: &'static str, limit: String },
    #[error("storing the message failed: {0}")]
    Storage(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("no RTT measurement or coordinate is known for {0} yet")]
    NoEstimate(Did),
    #[error("dialing {address}: {reason}")]
    Dial { address: String, kind: DialFailure, reason: String },
    /// The two identities boxed: a rare error should not make every `Result` of netd's
    /// per-message path carry 136 bytes.
    #[error("the peer at {address} proved identity {actual}, not the dialled {expected}; connection refused")]
    IdentityMismatch { address: String, expected: Box<Did>, actual: Box<Did> },
    #[error("the peer at {address} refused the connection: {reason}")]
    Refused { address: String, reason: String },
    #[error("this node is at its limit of {0} peers")]
    TooManyPeers(usize),
    #[error("peer {did} speaks protocol version {version}, which has no best-effort class; send it durably")]
    NoBestEffort { did: Did, version: u32 },
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    NoIdentity(Box<tonic::Status>),
}

/// Why a dial did not reach a peer, decided where it failed (never read back from the
/// message text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialFailure {
    /// The address did not resolve, or resolved to nothing.
    Unresolvable,
    /// No QUIC handshake and Hello within `network.handshake_timeout`.
    Timeout,
    /// Anything else on the way: the connection could not be made or was lost.
    Unreachable,
}

impl NetError {
    /// The kind of a dial failure, for counting identical failures in a row: the same
    /// kind again and again means the peer is gone, not briefly unreachable.
    pub fn failure_kind(&self) -> &'static str {
        match self {
            NetError::Dial { kind: DialFailure::Timeout, .. } => "timeout",
            NetError::Dial { kind: DialFailure::Unresolvable, .. } => "unresolvable",
            NetError::Dial { kind: DialFailure::Unreachable, .. } => "unreachable",
            NetError::IdentityMismatch { .. } => "identity",
            NetError::Refused { .. } => "refused",
            _ => "other",
        }
    }
}

impl From<NetError> for tonic::Status {
    fn from(e: NetError) -> Self {
        use tonic::Status;
        let message = e.to_string();
        match e {
            NetError::InvalidArgument(_) => Status::invalid_argument(message),
            NetError::NotConnected(_) | NetError::Dial { .. } | NetError::ShuttingDown | NetError::NoEstimate(_) => {
                Status::unavailable(message)
            }
            NetError::UnknownPeer(_) => Status::not_found(message),
            NetError::QueueFull { .. } | NetError::TooManyPeers(_) => Status::resource_exhausted(message),
            NetError::IdentityMismatch { .. } => Status::permission_denied(message),
            NetError::Storage(_) => Status::internal(message),
            NetError::OutOfRange(_) => Status::out_of_range(message),
            NetError::Refused { .. } | NetError::NoBestEffort { .. } => Status::failed_precondition(message),
            NetError::NoIdentity(status) => *status,
        }
    }
}

/// Parses a DID from a request field, naming the field when it is wrong.
pub fn parse_did(field: &str, value: &str) -> Result<Did, NetError> {
    if value.is_empty() {
        return Err(NetError::InvalidArgument(format!("`{field}` is required: a did:icn: identifier")));
    }
    value.parse().map_err(|e| NetError::InvalidArgument(format!("`{field}`: {e}")))
}
