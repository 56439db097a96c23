//! The drift service's one error enum and its codes.

use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::store::StoreError;
use pulse_inference::InferenceError;
use pulse_snapshot::SnapshotError;
use pulse_trainer::TrainerError;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// Bad input: the request field (e.g. `thresholds[1].value`) and why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    /// A contract RPC whose implementation has not landed.
    #[error("{0}")]
    Unimplemented(String),
    /// A statistic or a blocking task failed: ours, not the caller's.
    #[error("drift computation failed: {0}")]
    Compute(String),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Trainer(#[from] TrainerError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Common(#[from] pulse_common::PulseError),
}

impl DriftError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl From<crate::stats::StatsError> for DriftError {
    fn from(e: crate::stats::StatsError) -> Self {
        Self::Compute(e.to_string())
    }
}

impl From<tokio::task::JoinError> for DriftError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Compute(format!("a statistics task failed: {e}"))
    }
}

impl ServiceError for DriftError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Precondition(_) => ErrorCode::FailedPrecondition,
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Compute(_) | Self::Arrow(_) => ErrorCode::Internal,
            Self::Trainer(e) => e.code(),
            Self::Snapshot(e) => e.code(),
            Self::Inference(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Common(e) => e.code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Trainer(e) => e.public_message(),
            Self::Snapshot(e) => e.public_message(),
            Self::Inference(e) => e.public_message(),
            Self::Common(e) => e.public_message(),
            other if other.code() == ErrorCode::Internal => {
                "internal error in the drift service; the server log has the details".into()
            }
            other => other.to_string(),
        }
    }
}
