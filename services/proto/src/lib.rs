//! Generated Pulse contracts. Re-exports `tonic`, `prost` and `prost_types` so
//! every crate uses the same versions.

pub use {prost, prost_types, tonic};

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/pulse.rs"));
}
pub use generated::pulse::*;

/// One RPC of a Pulse service and the options its contract declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// The HTTP/2 path, `/package.Service/Method`.
    pub path: &'static str,
    pub name: &'static str,
    /// State-changing: deduplicated by `idempotency-key`.
    pub mutation: bool,
    /// Callable without an API key.
    pub public: bool,
    /// Needs the admin key.
    pub admin_only: bool,
    /// The answer holds a secret: never stored for idempotent replays.
    pub sensitive_response: bool,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// A service of the contracts with its encoded descriptor set (the service's
/// file and its imports), for server reflection.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// Fully qualified, e.g. `pulse.lineage.v1.LineageService`.
    pub name: &'static str,
    pub descriptor_set: &'static [u8],
    pub methods: &'static [MethodInfo],
}

include!(concat!(env!("OUT_DIR"), "/services.rs"));

/// The service with this fully qualified name.
pub fn service(name: &str) -> Option<&'static ServiceInfo> {
    SERVICES.iter().find(|s| s.name == name)
}

/// The method at this HTTP/2 path, e.g. `/pulse.lineage.v1.LineageService/Trace`.
/// Every request looks its method up (metrics, auth, idempotency): one map.
pub fn method(path: &str) -> Option<&'static MethodInfo> {
    static BY_PATH: std::sync::OnceLock<std::collections::HashMap<&'static str, &'static MethodInfo>> =
        std::sync::OnceLock::new();
    BY_PATH.get_or_init(|| SERVICES.iter().flat_map(|s| s.methods).map(|m| (m.path, m)).collect()).get(path).copied()
}

/// The upper-case gRPC name of a status code, e.g. `NOT_FOUND`, as metrics,
/// the CLI and the SDK spell it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_table_reads_options_from_the_contracts() {
        let record = method("/pulse.lineage.v1.LineageService/RecordNode").unwrap();
        assert!(record.mutation && !record.public && !record.admin_only);
        let trace = method("/pulse.lineage.v1.LineageService/Trace").unwrap();
        assert!(!trace.mutation);
        let export = method("/pulse.lineage.v1.LineageService/Export").unwrap();
        assert!(export.server_streaming && !export.client_streaming);
        let create = method("/pulse.admin.v1.AdminService/CreateTenant").unwrap();
        assert!(create.mutation && create.admin_only && !create.sensitive_response);
        assert!(method("/pulse.admin.v1.AdminService/CreateApiKey").unwrap().sensitive_response);
        assert!(method("/pulse.lineage.v1.LineageService/Nope").is_none());
    }

    #[test]
    fn every_service_has_a_descriptor_set_naming_it() {
        use prost::Message;
        for s in SERVICES {
            let fds = prost_types::FileDescriptorSet::decode(s.descriptor_set).unwrap();
            let found =
                fds.file.iter().any(|f| f.service.iter().any(|sv| format!("{}.{}", f.package(), sv.name()) == s.name));
            assert!(found, "{} missing from its descriptor set", s.name);
        }
    }
}
