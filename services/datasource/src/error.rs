use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::objects::ObjectError;
use pulse_common::secrets::SecretError;
use pulse_common::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DatasourceError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("datasource '{0}' not found; list them with ListDatasources, or check the API key's tenant")]
    NotFound(String),
    #[error("a datasource named '{0}' already exists in this tenant; pick another name or update it")]
    NameTaken(String),
    #[error(
        "object '{object}' is not in the allowlist of datasource '{datasource}'; add it (UpdateDatasource) to read it"
    )]
    NotAllowlisted { datasource: String, object: String },
    /// Outside what the server allows (e.g. a `file://` path outside the
    /// allowed file roots).
    #[error("{0}")]
    Forbidden(String),
    #[error("object '{0}' does not exist at the source (or the role cannot see it)")]
    ObjectMissing(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Precondition(String),
    /// The source could not be reached or refused us; retrying may help.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The source answered with an error for this read (timeout, type, …).
    #[error("source error: {0}")]
    Source(String),
    /// The source's schema changed while a read was running.
    #[error("the source schema changed during the read: {0}")]
    SchemaChanged(String),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Common(#[from] pulse_common::PulseError),
}

impl DatasourceError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// Whether a job may retry the same read later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Object(e) => e.code() == ErrorCode::Unavailable,
            Self::Store(e) => e.code() == ErrorCode::Unavailable,
            _ => false,
        }
    }
}

impl ServiceError for DatasourceError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidArgument,
            Self::NotFound(_) | Self::ObjectMissing(_) => ErrorCode::NotFound,
            Self::NameTaken(_) => ErrorCode::AlreadyExists,
            Self::NotAllowlisted { .. } | Self::Forbidden(_) => ErrorCode::PermissionDenied,
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Precondition(_) | Self::Source(_) => ErrorCode::FailedPrecondition,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::SchemaChanged(_) => ErrorCode::Aborted,
            Self::Arrow(_) => ErrorCode::Internal,
            Self::Store(e) => e.code(),
            Self::Secret(e) => e.code(),
            Self::Object(e) => e.code(),
            Self::Common(e) => e.code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Common(e) => e.public_message(),
            other if other.code() == ErrorCode::Internal => {
                "internal error in the datasource service; the server log has the details".into()
            }
            other => other.to_string(),
        }
    }
}
