//! The inference service's Prometheus metrics.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::batcher::BatchObserver;

#[derive(Clone, Debug)]
pub struct InferenceMetrics {
    pub predictions: IntCounterVec,
    pub latency: HistogramVec,
    pub batch_size: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub cache: IntCounterVec,
    pub breaker: IntGaugeVec,
}

fn registered<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    // A second service instance in one process (tests) finds it registered.
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl InferenceMetrics {
    pub fn new(registry: &Registry) -> Self {
        let predictions = IntCounterVec::new(
            Opts::new(
                "pulse_predictions_total",
                "Predictions by model, version, role and outcome (ok or a gRPC code).",
            ),
            &["model", "version", "role", "outcome"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("pulse_prediction_latency_seconds", "Server time per prediction request, by model.")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            &["model"],
        )
        .expect("valid metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("pulse_inference_batch_size", "Rows per model call (micro-batches), by model.")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            &["model"],
        )
        .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("pulse_inference_queue_depth", "Requests waiting for a model call, by model."),
            &["model"],
        )
        .expect("valid metric");
        let cache = IntCounterVec::new(
            Opts::new("pulse_inference_cache_requests_total", "Prediction cache lookups by result (hit or miss)."),
            &["model", "result"],
        )
        .expect("valid metric");
        let breaker = IntGaugeVec::new(
            Opts::new(
                "pulse_inference_breaker_state",
                "Circuit breaker state by model: 0 closed, 1 open, 2 half-open.",
            ),
            &["model"],
        )
        .expect("valid metric");
        Self {
            predictions: registered(registry, predictions),
            latency: registered(registry, latency),
            batch_size: registered(registry, batch_size),
            queue_depth: registered(registry, queue_depth),
            cache: registered(registry, cache),
            breaker: registered(registry, breaker),
        }
    }

    pub fn observer(&self, model: &str) -> std::sync::Arc<dyn BatchObserver> {
        std::sync::Arc::new(ModelObserver {
            batch: self.batch_size.with_label_values(&[model]),
            depth: self.queue_depth.with_label_values(&[model]),
        })
    }
}

struct ModelObserver {
    batch: prometheus::Histogram,
    depth: prometheus::IntGauge,
}

impl BatchObserver for ModelObserver {
    fn batch(&self, size: usize, _waited: Duration) {
        self.batch.observe(size as f64);
    }

    fn queue_depth(&self, depth: usize) {
        self.depth.set(depth as i64);
    }
}
