//! The inference service's one error enum and its codes.

use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::store::StoreError;
use pulse_trainer::TrainerError;

/// One problem with one input row.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub row: u32,
    pub feature: String,
    /// "missing", "unknown", "type", "null", "non_finite", "min", "max",
    /// "category".
    pub problem: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Rows that break the model's contract, every problem listed.
    #[error("{}", describe(.0))]
    Rows(Vec<Problem>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The breaker is open (or the model cannot be loaded).
    #[error("{0}")]
    Unavailable(String),
    /// The model's queue is full: shed, not queued.
    #[error("{0}")]
    Exhausted(String),
    #[error("scoring failed: {0}")]
    Scoring(String),
    /// The model failed on an input it accepted (counts against its breaker).
    #[error("{0}")]
    ModelFailed(String),
    #[error(transparent)]
    Trainer(#[from] TrainerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Common(#[from] pulse_common::PulseError),
}

fn describe(problems: &[Problem]) -> String {
    const SHOWN: usize = 20;
    let mut parts: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(|p| if p.row > 0 { format!("row {}: {}", p.row, p.message) } else { p.message.clone() })
        .collect();
    if problems.len() > SHOWN {
        parts.push(format!("and {} more", problems.len() - SHOWN));
    }
    format!("the input breaks the model's contract: {}", parts.join("; "))
}

impl InferenceError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl ServiceError for InferenceError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } | Self::Rows(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Precondition(_) => ErrorCode::FailedPrecondition,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Exhausted(_) => ErrorCode::ResourceExhausted,
            Self::Scoring(_) | Self::ModelFailed(_) => ErrorCode::Internal,
            Self::Trainer(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Common(e) => e.code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Trainer(e) => e.public_message(),
            Self::Common(e) => e.public_message(),
            // Says which model failed and why; nothing internal to hide.
            Self::ModelFailed(m) => m.clone(),
            other if other.code() == ErrorCode::Internal => {
                "internal error in the inference service; the server log has the details".into()
            }
            other => other.to_string(),
        }
    }
}
