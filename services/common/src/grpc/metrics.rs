//! The tower layer that counts and times every RPC by service, method and
//! status code. The code is read where gRPC puts it: the response headers
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

use super::{code_name, grpc_status};
use crate::metrics::RpcMetrics;

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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (service, method) = labels(req.uri().path());
        self.metrics.in_flight.with_label_values(&[service.as_str(), method.as_str()]).inc();
        let mut recorder =
            Recorder { metrics: self.metrics.clone(), service, method, start: Instant::now(), done: false };
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = match future.await {
                Ok(r) => r,
                Err(e) => {
                    recorder.finish("UNKNOWN");
                    return Err(e);
                }
            };
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
