//! The error codes every Pulse service maps its own errors into. Each crate
//! keeps one `thiserror` enum and implements [`ServiceError`] for it;
//! [`crate::grpc::status`] turns any of them into a `tonic::Status` in one place.

use std::fmt;

/// The small set of outcomes a caller can act on. They mirror the gRPC codes
/// so the mapping is one-to-one, but domain code never imports tonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Aborted,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    OutOfRange,
    Unavailable,
    Unimplemented,
    Cancelled,
    DeadlineExceeded,
    /// Stored data failed its integrity check: never answered silently.
    DataLoss,
    /// A fault of ours, not the caller's: details are logged, not returned.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Aborted => "ABORTED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::Unavailable => "UNAVAILABLE",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Cancelled => "CANCELLED",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::DataLoss => "DATA_LOSS",
            Self::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by each crate's error enum.
pub trait ServiceError: std::error::Error {
    fn code(&self) -> ErrorCode;

    /// What the caller sees. Internal errors never leak their details: the
    /// default hides them behind a message that points at the server log.
    fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Internal => "internal error; the server log has the details".to_string(),
            _ => self.to_string(),
        }
    }
}

/// The runtime's own error, also a convenient carrier for a code and a
/// message built in domain code.
#[derive(Debug, thiserror::Error)]
pub enum PulseError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("storage: {0}")]
    Storage(#[from] crate::store::StoreError),
    #[error("objects: {0}")]
    Objects(#[from] crate::objects::ObjectError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Internal(String),
}

impl PulseError {
    /// INVALID_ARGUMENT naming the field and the reason.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }
}

impl ServiceError for PulseError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Self::Aborted(_) => ErrorCode::Aborted,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Storage(e) => e.code(),
            Self::Objects(e) => e.code(),
            Self::Config(_) | Self::Internal(_) => ErrorCode::Internal,
        }
    }
}
