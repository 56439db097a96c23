use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::objects::ObjectError;
use pulse_common::store::StoreError;
use pulse_datasource::DatasourceError;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    /// A chunk whose bytes do not match the manifest: never read silently.
    #[error("chunk {index} of {dataset} v{version} ('{key}') failed its SHA-256 check: {detail}")]
    DataLoss { dataset: String, version: u64, index: u32, key: String, detail: String },
    #[error("the job's lease was taken over by another worker")]
    LeaseLost,
    #[error("the job was canceled")]
    Canceled,
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Source(#[from] DatasourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Common(#[from] pulse_common::PulseError),
}

impl SnapshotError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// Whether retrying the same work later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Source(e) => e.is_transient(),
            Self::Store(e) => e.code() == ErrorCode::Unavailable,
            Self::Object(e) => e.code() == ErrorCode::Unavailable,
            _ => false,
        }
    }
}

impl ServiceError for SnapshotError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Precondition(_) => ErrorCode::FailedPrecondition,
            Self::DataLoss { .. } => ErrorCode::DataLoss,
            Self::LeaseLost | Self::Canceled => ErrorCode::Aborted,
            Self::Parquet(_) | Self::Arrow(_) => ErrorCode::Internal,
            Self::Source(e) => e.code(),
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
            Self::Source(e) => e.public_message(),
            Self::Common(e) => e.public_message(),
            Self::DataLoss { .. } | Self::Object(ObjectError::Corrupt { .. }) => self.to_string(),
            other if other.code() == ErrorCode::Internal => {
                "internal error in the snapshot service; the server log has the details".into()
            }
            other => other.to_string(),
        }
    }
}
