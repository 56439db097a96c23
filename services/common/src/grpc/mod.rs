//! Everything that knows about tonic: the one mapping of errors to
//! `tonic::Status`, the tower layers every service shares (metrics, auth,
//! idempotency), the admin service, and the placeholder for services whose
//! implementation has not landed.

pub mod admin;
pub mod auth;
pub mod forward;
pub mod idempotency;
pub mod metrics;
pub mod pending;

use pulse_proto::tonic::{Code, Status};

use crate::auth::Caller;
use crate::error::{ErrorCode, ServiceError};

pub fn code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Aborted => Code::Aborted,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Unimplemented => Code::Unimplemented,
        ErrorCode::Cancelled => Code::Cancelled,
        ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorCode::DataLoss => Code::DataLoss,
        ErrorCode::Internal => Code::Internal,
    }
}

/// The one way a service error becomes a `tonic::Status`. Internal errors are
/// logged here with their details and reach the caller without them.
pub fn status<E: ServiceError>(err: E) -> Status {
    let code = err.code();
    if code == ErrorCode::Internal {
        tracing::error!(error = %err, "internal error");
    } else if code == ErrorCode::Unavailable {
        tracing::warn!(error = %err, "dependency unavailable");
    }
    Status::new(self::code(code), err.public_message())
}

/// The caller the auth layer attached to the request.
pub fn caller<T>(req: &pulse_proto::tonic::Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no caller on the request: the auth layer is not installed"))
}

/// The caller's tenant: what every tenant-scoped handler starts with.
pub fn tenant<T>(req: &pulse_proto::tonic::Request<T>) -> Result<String, Status> {
    caller(req)?.tenant().map(str::to_string).map_err(status)
}

/// The upper-case name of a gRPC status code number, as metrics label it.
pub fn code_name(code: i32) -> &'static str {
    pulse_proto::code_name(Code::from_i32(code))
}

/// The grpc-status in a header map, if any.
pub(crate) fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Paths the runtime serves without an API key: health and reflection.
pub(crate) fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}
