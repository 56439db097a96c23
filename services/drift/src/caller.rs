//! The pipeline steps' way out: calls to Pulse's own gRPC endpoint with a
//! service token for the run's tenant, so a step's call passes the same
//! authentication, idempotency layer and forwarding as any client's.

use std::sync::Arc;
use std::time::Duration;

use pulse_client::dynamic::Method;
use pulse_common::auth::Auth;
use pulse_proto::tonic::Code;
use pulse_proto::tonic::transport::Channel;

use crate::pipeline::{ActionCaller, CallFailure};

pub struct GrpcCaller {
    auth: Arc<Auth>,
    channel: Channel,
}

impl GrpcCaller {
    /// `endpoint` is where this process serves (or any Pulse endpoint);
    /// `ca_pem` verifies it when it is `https://`.
    pub fn new(auth: Arc<Auth>, endpoint: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let channel = pulse_client::channel_endpoint(endpoint, ca_pem).map_err(|e| e.to_string())?.connect_lazy();
        Ok(Self { auth, channel })
    }
}

#[async_trait::async_trait]
impl ActionCaller for GrpcCaller {
    async fn call(
        &self,
        tenant: &str,
        method: &Method,
        body: Vec<u8>,
        idempotency_key: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallFailure> {
        let token = self.auth.service_token(tenant).await.map_err(|e| CallFailure {
            code: "UNAVAILABLE".into(),
            message: format!("cannot make a service token: {e}"),
            transient: true,
        })?;
        let mut metadata = vec![("authorization", format!("Bearer {token}"))];
        if !idempotency_key.is_empty() {
            metadata.push(("idempotency-key", idempotency_key.to_string()));
        }
        method.call(self.channel.clone(), body, &metadata, timeout).await.map_err(|e| {
            let code = e.code();
            CallFailure {
                code: pulse_proto::code_name(code).into(),
                message: e.message(),
                // Unreachable or restarting: the same call again is safe
                // (same idempotency key) and likely to succeed.
                transient: matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Aborted),
            }
        })
    }
}
