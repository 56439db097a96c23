use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::objects::ObjectError;
use pulse_common::store::StoreError;
use pulse_snapshot::SnapshotError;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// Bad input: the field (a request field or a YAML path) and why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    DataLoss(String),
    #[error("the job's lease was taken over by another worker")]
    LeaseLost,
    #[error("the job was canceled")]
    Canceled,
    /// The numerical side of training (burn) failed.
    #[error("training failed: {0}")]
    Training(String),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Common(#[from] pulse_common::PulseError),
}

impl TrainerError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// Whether retrying the same work later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Snapshot(e) => e.is_transient(),
            Self::Store(e) => e.code() == ErrorCode::Unavailable,
            Self::Object(e) => e.code() == ErrorCode::Unavailable,
            _ => false,
        }
    }
}

impl ServiceError for TrainerError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Precondition(_) => ErrorCode::FailedPrecondition,
            Self::DataLoss(_) => ErrorCode::DataLoss,
            Self::LeaseLost | Self::Canceled => ErrorCode::Aborted,
            Self::Training(_) | Self::Arrow(_) => ErrorCode::Internal,
            Self::Snapshot(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Object(e) => match e {
                ObjectError::Corrupt { .. } | ObjectError::NoChecksum(_) => ErrorCode::DataLoss,
                other => other.code(),
            },
            Self::Common(e) => e.code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Snapshot(e) => e.public_message(),
            Self::Common(e) => e.public_message(),
            Self::Training(m) => format!("training failed: {m}"),
            other if other.code() == ErrorCode::Internal => {
                "internal error in the trainer service; the server log has the details".into()
            }
            other => other.to_string(),
        }
    }
}
