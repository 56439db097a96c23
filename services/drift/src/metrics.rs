//! The drift service's Prometheus metrics.

use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};

#[derive(Clone, Debug)]
pub struct DriftMetrics {
    /// `pulse_drift_score{model, feature, metric}`: the latest checked value
    /// (metric: psi, ks, ks_p_value, js, wasserstein, chi2, chi2_p_value).
    pub score: GaugeVec,
    /// `pulse_drift_detected_total{model}`: checks that found drift.
    pub detected: IntCounterVec,
    /// `pulse_pipeline_runs_total{pipeline, status}`: finished pipeline runs
    /// (succeeded, failed, canceled).
    pub pipeline_runs: IntCounterVec,
}

fn registered<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    // A second service instance in one process (tests) finds it registered.
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl DriftMetrics {
    pub fn new(registry: &Registry) -> Self {
        let score = GaugeVec::new(
            Opts::new(
                "pulse_drift_score",
                "Latest drift statistic by model, feature (\"_prediction\" for the outputs) and metric.",
            ),
            &["model", "feature", "metric"],
        )
        .expect("valid metric");
        let detected = IntCounterVec::new(
            Opts::new("pulse_drift_detected_total", "Drift checks that breached a threshold, by model."),
            &["model"],
        )
        .expect("valid metric");
        let pipeline_runs = IntCounterVec::new(
            Opts::new("pulse_pipeline_runs_total", "Finished pipeline runs by pipeline name and final status."),
            &["pipeline", "status"],
        )
        .expect("valid metric");
        Self {
            score: registered(registry, score),
            detected: registered(registry, detected),
            pipeline_runs: registered(registry, pipeline_runs),
        }
    }
}
