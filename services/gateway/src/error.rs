//! The gateway's errors, and their one mapping to gRPC codes and to HTTP statuses with a
//! JSON body `{"error": {"code", "reason", "message"}}`.

use crate::auth::AuthError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// A backing service's answer, passed on with its code.
    #[error("{}", .0.message())]
    Upstream(tonic::Status),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    /// Over a rate limit, or shedding load: try again later.
    #[error("{0}")]
    Busy(String),
}

impl From<tonic::Status> for GatewayError {
    fn from(s: tonic::Status) -> Self {
        GatewayError::Upstream(s)
    }
}

impl GatewayError {
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            GatewayError::Auth(AuthError::Scope(_) | AuthError::NotYours) => Code::PermissionDenied,
            GatewayError::Auth(AuthError::BadDid(_) | AuthError::UnknownScope(_)) => Code::InvalidArgument,
            GatewayError::Auth(AuthError::Store(_)) => Code::Internal,
            GatewayError::Auth(AuthError::NoNodeIdentity) => Code::FailedPrecondition,
            GatewayError::Auth(AuthError::TooManyChallenges(_)) => Code::ResourceExhausted,
            GatewayError::Auth(_) => Code::Unauthenticated,
            GatewayError::Upstream(s) => s.code(),
            GatewayError::InvalidArgument(_) => Code::InvalidArgument,
            GatewayError::PermissionDenied(_) => Code::PermissionDenied,
            GatewayError::NotFound(_) => Code::NotFound,
            GatewayError::Busy(_) => Code::ResourceExhausted,
        }
    }

    /// A finer, stable reason for clients to branch on.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::Auth(e) => match e {
                AuthError::Missing => "TOKEN_MISSING",
                AuthError::Malformed => "TOKEN_MALFORMED",
                AuthError::Forged => "TOKEN_FORGED",
                AuthError::Expired => "TOKEN_EXPIRED",
                AuthError::Revoked => "TOKEN_REVOKED",
                AuthError::Scope(_) => "SCOPE_MISSING",
                AuthError::BadDid(_) => "BAD_DID",
                AuthError::UnknownChallenge => "CHALLENGE_UNKNOWN",
                AuthError::BadSignature(_) => "BAD_SIGNATURE",
                AuthError::UnknownScope(_) => "UNKNOWN_SCOPE",
                AuthError::NotYours => "NOT_YOURS",
                AuthError::Store(_) => "TOKEN_STORE",
                AuthError::NoNodeIdentity => "NO_NODE_IDENTITY",
                AuthError::TooManyChallenges(_) => "TOO_MANY_CHALLENGES",
            },
            GatewayError::Busy(_) => "RATE_LIMITED",
            _ => "",
        }
    }
}

/// The HTTP status of a gRPC code (the mapping grpc-gateway and Google APIs use).
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).expect("valid status"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The stable name of a gRPC code, as JSON errors carry it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl From<GatewayError> for tonic::Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Upstream(s) => s,
            other => tonic::Status::new(other.code(), other.to_string()),
        }
    }
}

/// A JSON error response for a status and message.
pub fn json_error(status: StatusCode, code: &str, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "reason": reason, "message": message } });
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let code = self.code();
        let mut response = json_error(http_status(code), code_name(code), self.reason(), &self.to_string());
        if code == tonic::Code::Unauthenticated {
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
