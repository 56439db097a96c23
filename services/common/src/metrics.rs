//! Prometheus metrics: the per-RPC families every service shares (filled by
//! one tower layer, [`crate::grpc::metrics`]), a registry services add their
//! domain metrics to, and the `/metrics` HTTP endpoint.

use std::future::Future;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub rpc: RpcMetrics,
    pub jobs: JobMetrics,
}

/// The job-queue families shared by every service with workers (extraction,
/// training, pipeline runs), labelled by `kind`.
#[derive(Clone, Debug)]
pub struct JobMetrics {
    /// `pulse_jobs_queued{kind}`: jobs waiting for a worker.
    pub queued: IntGaugeVec,
    /// `pulse_jobs_finished_total{kind, status}`: succeeded, failed, canceled.
    pub finished: IntCounterVec,
    /// `pulse_jobs_taken_over_total{kind}`: jobs whose worker stopped renewing
    /// its lease and that another worker resumed.
    pub taken_over: IntCounterVec,
}

impl JobMetrics {
    /// Starts `kind`'s series at zero, so a first failure shows as an
    /// increase (alerts use `increase()`).
    pub fn declare(&self, kind: &str) {
        self.queued.with_label_values(&[kind]).set(0);
        for status in ["succeeded", "failed", "canceled"] {
            self.finished.with_label_values(&[kind, status]).inc_by(0);
        }
        self.taken_over.with_label_values(&[kind]).inc_by(0);
    }

    pub fn finished(&self, kind: &str, status: &str) {
        self.finished.with_label_values(&[kind, status]).inc();
    }

    pub fn taken_over(&self, kind: &str) {
        self.taken_over.with_label_values(&[kind]).inc();
    }
}

#[derive(Clone, Debug)]
pub struct RpcMetrics {
    /// `pulse_grpc_requests_total{service, method, code}`
    pub requests: IntCounterVec,
    /// `pulse_grpc_request_duration_seconds{service, method, code}`
    pub duration: HistogramVec,
    /// `pulse_grpc_requests_in_flight{service, method}`
    pub in_flight: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("pulse_grpc_requests_total", "gRPC requests finished, by service, method and status code"),
            &["service", "method", "code"],
        )
        .unwrap();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "pulse_grpc_request_duration_seconds",
                "gRPC request latency until the last response byte",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["service", "method", "code"],
        )
        .unwrap();
        let in_flight = IntGaugeVec::new(
            Opts::new("pulse_grpc_requests_in_flight", "gRPC requests being served"),
            &["service", "method"],
        )
        .unwrap();
        let jobs = JobMetrics {
            queued: IntGaugeVec::new(Opts::new("pulse_jobs_queued", "Jobs waiting for a worker, by kind"), &["kind"])
                .unwrap(),
            finished: IntCounterVec::new(
                Opts::new("pulse_jobs_finished_total", "Jobs that ended, by kind and final status"),
                &["kind", "status"],
            )
            .unwrap(),
            taken_over: IntCounterVec::new(
                Opts::new(
                    "pulse_jobs_taken_over_total",
                    "Jobs resumed by another worker after theirs stopped renewing its lease, by kind",
                ),
                &["kind"],
            )
            .unwrap(),
        };
        registry.register(Box::new(requests.clone())).unwrap();
        registry.register(Box::new(duration.clone())).unwrap();
        registry.register(Box::new(in_flight.clone())).unwrap();
        registry.register(Box::new(jobs.queued.clone())).unwrap();
        registry.register(Box::new(jobs.finished.clone())).unwrap();
        registry.register(Box::new(jobs.taken_over.clone())).unwrap();
        Self { registry, rpc: RpcMetrics { requests, duration, in_flight }, jobs }
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }
}

/// Serves `GET /metrics` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render()) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
