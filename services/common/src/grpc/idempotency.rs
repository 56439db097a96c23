//! The tower layer that makes every mutation idempotent by its
//! `idempotency-key` metadata, once, for all services: which methods are
//! mutations is read from the contracts (`option (pulse.common.v1.mutation)`).
//!
//! Same key and same request bytes → the first answer, replayed byte for byte
//! (marked `idempotent-replay: true`); same key and a different request →
//! FAILED_PRECONDITION; same key while the first is still running → ABORTED.
//! Failed calls are not remembered, so a retry after an error runs again.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use pulse_proto::tonic::Status;
use pulse_proto::tonic::body::Body;
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use super::grpc_status;
use crate::auth::Caller;
use crate::idempotency::{Claim, IdempotencyStore};

pub const HEADER: &str = "idempotency-key";
pub const REPLAY_HEADER: &str = "idempotent-replay";
/// A claim older than this is taken over: its process died mid-request.
const STALE_CLAIM: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

#[derive(Clone, Debug)]
pub struct IdempotencyLayer {
    store: Arc<dyn IdempotencyStore>,
    max_request_bytes: usize,
}

impl IdempotencyLayer {
    pub fn new(store: Arc<dyn IdempotencyStore>, max_request_bytes: usize) -> Self {
        Self { store, max_request_bytes }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService { inner, store: self.store.clone(), max_request_bytes: self.max_request_bytes }
    }
}

#[derive(Clone, Debug)]
pub struct IdempotencyService<S> {
    inner: S,
    store: Arc<dyn IdempotencyStore>,
    max_request_bytes: usize,
}

fn check_key(key: &HeaderValue) -> Result<String, Status> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Status::invalid_argument("idempotency-key: must be 1 to 128 printable ASCII characters, e.g. a UUID")
        })?;
    Ok(key.to_string())
}

/// The `idempotency-key` of a streaming call, which this layer does not
/// handle (it would have to hold the whole stream): services that honour keys
/// on a stream read them here and keep their own record of the answer.
pub fn streaming_key(metadata: &pulse_proto::tonic::metadata::MetadataMap) -> Result<Option<String>, Status> {
    let Some(raw) = metadata.get(HEADER) else { return Ok(None) };
    let value = HeaderValue::from_bytes(raw.as_bytes())
        .map_err(|_| Status::invalid_argument("idempotency-key: must be printable ASCII"))?;
    check_key(&value).map(Some)
}

/// A unary gRPC response rebuilt from its body bytes, with OK trailers.
fn replayed(headers: HeaderMap, body: Bytes, replay: bool) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = futures::stream::iter([Ok::<_, Status>(Frame::data(body)), Ok(Frame::trailers(trailers))]);
    let mut response = Response::new(Body::new(StreamBody::new(frames)));
    *response.headers_mut() = headers;
    if replay {
        response.headers_mut().insert(REPLAY_HEADER, HeaderValue::from_static("true"));
    }
    response
}

fn grpc_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h
}

impl<S> Service<Request<Body>> for IdempotencyService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_string();
        let info = pulse_proto::method(&path).filter(|m| m.mutation && !m.client_streaming && !m.server_streaming);
        let (Some(info), Some(raw_key)) = (info, req.headers().get(HEADER).cloned()) else {
            return Box::pin(inner.call(req));
        };
        let store = self.store.clone();
        let limit = self.max_request_bytes;
        Box::pin(async move {
            let key = match check_key(&raw_key) {
                Ok(k) => k,
                Err(status) => return Ok(status.into_http()),
            };
            // Keys are scoped by tenant: two tenants never share an answer.
            let scope = match req.extensions().get::<Caller>() {
                Some(Caller { tenant_id: Some(t), .. }) => t.clone(),
                Some(Caller { admin: true, .. }) => "admin".to_string(),
                _ => return Ok(Status::unauthenticated("idempotency needs an authenticated caller").into_http()),
            };
            let (parts, body) = req.into_parts();
            // The body is one framed message: a 5-byte prefix, then at most
            // `limit` bytes, as tonic's own decoder allows.
            let body = match Limited::new(body, limit + 5).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(Status::out_of_range(format!(
                        "request message is larger than the server limit of {limit} bytes (max_message_bytes)"
                    ))
                    .into_http());
                }
                Err(e) => return Ok(Status::cancelled(format!("reading the request failed: {e}")).into_http()),
            };
            let mut hasher = Sha256::new();
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(&body);
            let request_sha = hex::encode(hasher.finalize());
            let now = crate::time::now_millis();
            let token = match store.claim(&scope, &key, &path, &request_sha, now, STALE_CLAIM).await {
                Ok(Claim::Claimed(token)) => token,
                Ok(Claim::Replay(stored)) if stored.is_empty() => {
                    return Ok(Status::already_exists(format!(
                        "the request with idempotency-key '{key}' already completed; its answer held a secret \
                         that is shown only once and was not kept (list the keys to find it)"
                    ))
                    .into_http());
                }
                Ok(Claim::Replay(stored)) => return Ok(replayed(grpc_headers(), Bytes::from(stored), true)),
                Ok(Claim::Mismatch { method }) => {
                    let first = method.rsplit('/').next().unwrap_or(&method).to_string();
                    return Ok(Status::failed_precondition(format!(
                        "idempotency-key '{key}' was already used for a different {first} request; \
                         send a new key for a new request"
                    ))
                    .into_http());
                }
                Ok(Claim::InProgress) => {
                    return Ok(Status::aborted(format!(
                        "a request with idempotency-key '{key}' is still running; retry in a moment to get its answer"
                    ))
                    .into_http());
                }
                Err(e) => return Ok(super::status(crate::PulseError::from(e)).into_http()),
            };
            // Run the call and record its outcome to the end even if the
            // caller goes away (reset, deadline): a dropped future would
            // leave the claim pending and lose the first answer.
            let request = Request::from_parts(parts, Body::new(http_body_util::Full::new(body)));
            let claim = Held { store, scope, key, token, sensitive: info.sensitive_response };
            match tokio::spawn(run_claimed(inner, request, claim)).await {
                Ok(result) => result,
                Err(e) => Ok(Status::internal(format!("the request's task failed: {e}")).into_http()),
            }
        })
    }
}

/// A claim this request holds.
struct Held {
    store: Arc<dyn IdempotencyStore>,
    scope: String,
    key: String,
    token: crate::idempotency::ClaimToken,
    sensitive: bool,
}

impl Held {
    async fn release(self) {
        if let Err(e) = self.store.release(&self.scope, &self.key, self.token).await {
            tracing::warn!(error = %e, "could not release an idempotency claim; it expires on its own");
        }
    }

    async fn complete(self, response: &[u8]) {
        // A sensitive answer is not kept: the empty record marks it done.
        let kept: &[u8] = if self.sensitive { &[] } else { response };
        if let Err(e) = self.store.complete(&self.scope, &self.key, self.token, kept, crate::time::now_millis()).await {
            tracing::warn!(error = %e, "could not record an idempotent answer; a retry after the claim expires runs again");
        }
    }
}

/// Calls `inner` under a held claim and completes or releases it.
async fn run_claimed<S>(mut inner: S, request: Request<Body>, claim: Held) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    let response = match inner.call(request).await {
        Ok(r) => r,
        Err(e) => {
            claim.release().await;
            return Err(e);
        }
    };
    if grpc_status(response.headers()).is_some() {
        // Trailers-only: an error. Not remembered.
        claim.release().await;
        return Ok(response);
    }
    let (parts, mut body) = response.into_parts();
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Err(status) => {
                claim.release().await;
                return Ok(status.into_http());
            }
        }
    }
    let data = data.freeze();
    if trailers.as_ref().and_then(grpc_status) == Some(0) {
        claim.complete(&data).await;
        Ok(replayed(parts.headers, data, false))
    } else {
        claim.release().await;
        let frames = futures::stream::iter(
            [Ok::<_, Status>(Frame::data(data))].into_iter().chain(trailers.map(|t| Ok(Frame::trailers(t)))),
        );
        Ok(Response::from_parts(parts, Body::new(StreamBody::new(frames))))
    }
}
