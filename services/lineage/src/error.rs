use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("lineage node '{0}' not found; record it first (RecordNode), or check the id and the API key's tenant")]
    NodeNotFound(String),
    #[error("node '{id}' already exists as a {existing}, not a {requested}; node ids are unique within a tenant")]
    KindConflict { id: String, existing: &'static str, requested: &'static str },
    #[error("edge {from} ({from_kind}) → {to} ({to_kind}) is not a lineage link: a {from_kind} can lead to {allowed}")]
    KindsNotLinked { from: String, to: String, from_kind: &'static str, to_kind: &'static str, allowed: String },
    #[error(
        "edge {from} → {to} would form a cycle: {to} already leads to {from}; lineage edges point from an input to what was made from it"
    )]
    Cycle { from: String, to: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Common(#[from] pulse_common::PulseError),
}

impl LineageError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl ServiceError for LineageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } | Self::KindsNotLinked { .. } => ErrorCode::InvalidArgument,
            Self::NodeNotFound(_) => ErrorCode::NotFound,
            Self::KindConflict { .. } => ErrorCode::AlreadyExists,
            Self::Cycle { .. } => ErrorCode::FailedPrecondition,
            Self::Store(e) => e.code(),
            Self::Common(e) => e.code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Common(e) => e.public_message(),
            other if other.code() == ErrorCode::Internal => {
                "internal error in the lineage service; the server log has the details".into()
            }
            other => other.to_string(),
        }
    }
}
