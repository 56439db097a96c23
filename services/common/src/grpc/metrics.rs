//! The tower layer that counts, times and logs every RPC by service, method
//! and status code, under a `rpc` span carrying the request id (the
//! caller's `x-request-id`, or a new one, echoed in the response) and, once
//! authenticated, the tenant. The code is read where gRPC puts it: the response headers
//! (errors, "trailers-only") or the trailers at the end of the body, so a
//! streaming call is timed until its last message.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::Frame;
use pulse_proto::tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use tracing::Instrument;

use super::{code_name, grpc_status};
use crate::metrics::RpcMetrics;

pub const REQUEST_ID: &str = "x-request-id";

/// The request's id, in its extensions, for handlers that log or store it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: RpcMetrics,
}

impl MetricsLayer {
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: RpcMetrics,
}

/// Service and method labels, bounded to the known contracts so a client
/// cannot grow the metric set by inventing paths.
fn labels(path: &str) -> (String, String) {
    let known = pulse_proto::method(path).is_some()
        || path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.");
    match path.trim_start_matches('/').split_once('/') {
        Some((service, method)) if known => (service.to_string(), method.to_string()),
        _ => ("unknown".into(), "unknown".into()),
    }
}

/// Records one finished call exactly once.
struct Recorder {
    metrics: RpcMetrics,
    service: String,
    method: String,
    start: Instant,
    span: tracing::Span,
    done: bool,
}

impl Recorder {
    fn finish(&mut self, code: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let labels = [self.service.as_str(), self.method.as_str(), code];
        self.metrics.requests.with_label_values(&labels).inc();
        self.metrics.duration.with_label_values(&labels).observe(self.start.elapsed().as_secs_f64());
        self.metrics.in_flight.with_label_values(&[self.service.as_str(), self.method.as_str()]).dec();
        let _in = self.span.enter();
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        match code {
            "OK" => tracing::debug!(code, ms, "rpc finished"),
            "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => tracing::warn!(code, ms, "rpc failed"),
            _ => tracing::info!(code, ms, "rpc finished"),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The client went away before the call finished.
        self.finish("CANCELLED");
    }
}

impl<S> Service<Request<Body>> for MetricsService<S>
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let (service, method) = labels(req.uri().path());
        self.metrics.in_flight.with_label_values(&[service.as_str(), method.as_str()]).inc();
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let span = tracing::info_span!(
            "rpc",
            service = %service,
            method = %method,
            request_id = %request_id,
            tenant = tracing::field::Empty,
        );
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let mut recorder = Recorder {
            metrics: self.metrics.clone(),
            service,
            method,
            start: Instant::now(),
            span: span.clone(),
            done: false,
        };
        let future = span.in_scope(|| self.inner.call(req)).instrument(span);
        let header = http::HeaderValue::from_str(&request_id).ok();
        Box::pin(async move {
            let mut response = match future.await {
                Ok(r) => r,
                Err(e) => {
                    recorder.finish("UNKNOWN");
                    return Err(e);
                }
            };
            if let Some(h) = header {
                response.headers_mut().insert(REQUEST_ID, h);
            }
            if let Some(code) = grpc_status(response.headers()) {
                recorder.finish(code_name(code));
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(ObservedBody { inner: body, recorder })))
        })
    }
}

/// A response body that records the call when its trailers pass, or when it
/// ends or is dropped without them.
struct ObservedBody {
    inner: Body,
    recorder: Recorder,
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = pulse_proto::tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).map(code_name).unwrap_or("UNKNOWN");
                    this.recorder.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.recorder.finish("INTERNAL"),
            Poll::Ready(None) => this.recorder.finish("UNKNOWN"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
