use pulse_proto::code_name;
use pulse_proto::tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to Pulse at {endpoint}: {reason}. Is `pulse up` running? (PULSE_ENDPOINT sets the address)"
    )]
    Connect { endpoint: String, reason: String },
    #[error("{0}")]
    InvalidArgument(String),
    /// The server answered with a gRPC error.
    #[error("{}: {message}", code_name(*code))]
    Status { code: Code, message: String },
}

impl ClientError {
    /// The gRPC code, UNAVAILABLE for connection failures.
    pub fn code(&self) -> Code {
        match self {
            Self::Connect { .. } => Code::Unavailable,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Status { code, .. } => *code,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        let message = if s.code() == Code::Unavailable && s.message().contains("transport") {
            format!("{} (is the server running?)", s.message())
        } else {
            s.message().to_string()
        };
        Self::Status { code: s.code(), message }
    }
}

/// An error and its causes on one line: transport errors hide the useful
/// part ("connection refused") in their sources.
pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
