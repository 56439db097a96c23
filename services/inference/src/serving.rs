//! Loaded model versions and the per-model serving state: the production
//! version (plus canary, shadow, the previous production version for
//! fallback, and versions pinned by requests), each with its own
//! micro-batcher; one circuit breaker per model.
//!
//! A version is swapped in only once it is loaded and warm; requests hold an
//! `Arc` of the version they started on, so a swap never fails or moves an
//! in-flight request, and the old version is dropped after its last one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use pulse_proto::inference::v1 as pb;
use pulse_proto::trainer::v1::{Contract, FeatureType};
use pulse_trainer::artifact::{Predictions, Scorer};

use crate::batcher::{BatchObserver, Batcher, BatcherConfig, SubmitError};
use crate::breaker::CircuitBreaker;
use crate::error::InferenceError;
use crate::validate::{Cell, to_batch};

/// One row's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub label: String,
    /// Class label and probability, in the model's class order.
    pub probabilities: Vec<(String, f64)>,
    pub value: Option<f64>,
}

impl Output {
    /// SHA-256 of the answer, for the log.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.label.as_bytes());
        for (c, p) in &self.probabilities {
            h.update(c.as_bytes());
            h.update(p.to_bits().to_le_bytes());
        }
        if let Some(v) = self.value {
            h.update(v.to_bits().to_le_bytes());
        }
        hex::encode(h.finalize())
    }
}

type Answer = Result<Output, String>;

/// One model version, loaded and ready.
pub struct LoadedModel {
    pub model: String,
    pub version: u64,
    pub artifact_sha256: String,
    pub contract: Arc<Contract>,
    batcher: Batcher<Vec<Cell>, Answer>,
    pub in_flight: AtomicU64,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    scorer: Arc<Scorer>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("model", &self.model).field("version", &self.version).finish()
    }
}

impl LoadedModel {
    pub fn new(
        model: &str,
        version: u64,
        scorer: Scorer,
        contract: Contract,
        batching: BatcherConfig,
        observer: Arc<dyn BatchObserver>,
    ) -> Self {
        let artifact_sha256 = String::new();
        let contract = Arc::new(contract);
        let scorer = Arc::new(scorer);
        let (c, s) = (contract.clone(), scorer.clone());
        let batcher = Batcher::spawn(batching, move |rows: Vec<Vec<Cell>>| score(&s, &c, &rows), observer);
        Self {
            model: model.to_string(),
            version,
            artifact_sha256,
            contract,
            batcher,
            in_flight: AtomicU64::new(0),
            loaded_at: pulse_common::time::now_millis(),
            scorer,
        }
    }

    pub fn with_sha(mut self, sha: &str) -> Self {
        self.artifact_sha256 = sha.to_string();
        self
    }

    pub fn queue_depth(&self) -> usize {
        self.batcher.queue_depth()
    }

    /// Scores one validated row through the micro-batcher.
    pub async fn predict(&self, cells: Vec<Cell>) -> Result<Output, InferenceError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let out = self.batcher.submit(cells).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match out {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => {
                Err(InferenceError::ModelFailed(format!("model '{}' version {}: {e}", self.model, self.version)))
            }
            Err(SubmitError::QueueFull { capacity }) => Err(InferenceError::Exhausted(format!(
                "model '{}' has {capacity} requests queued; shedding load, retry with backoff",
                self.model
            ))),
            Err(SubmitError::Closed) => Err(InferenceError::Unavailable(format!(
                "model '{}' version {} is unloading; retry",
                self.model, self.version
            ))),
            Err(SubmitError::Failed(e)) => Err(InferenceError::Scoring(e)),
        }
    }

    /// Scores rows that already form a batch in one model call, on the
    /// blocking pool (they need no coalescing).
    pub async fn predict_batch(&self, rows: Vec<Vec<Cell>>) -> Result<Vec<Output>, InferenceError> {
        let (scorer, contract) = (self.scorer.clone(), self.contract.clone());
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let out = tokio::task::spawn_blocking(move || score(&scorer, &contract, &rows)).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        out.map_err(|e| InferenceError::Scoring(e.to_string()))?
            .into_iter()
            .map(|r| {
                r.map_err(|e| {
                    InferenceError::ModelFailed(format!("model '{}' version {}: {e}", self.model, self.version))
                })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.batcher.close().await;
    }

    /// A valid row made from the contract alone, to warm a new version.
    pub fn warmup_row(&self) -> Vec<Cell> {
        self.contract
            .features
            .iter()
            .map(|f| match FeatureType::try_from(f.r#type).unwrap_or(FeatureType::Unspecified) {
                FeatureType::Float => Cell::Float(f.min.unwrap_or(0.0).min(f.max.unwrap_or(f64::MAX))),
                FeatureType::Int => Cell::Int(f.min.unwrap_or(0.0).min(f.max.unwrap_or(f64::MAX)) as i64),
                FeatureType::Bool => Cell::Bool(false),
                _ => Cell::Category(f.categories.first().cloned().unwrap_or_else(|| "warmup".to_string())),
            })
            .collect()
    }
}

fn score(scorer: &Scorer, contract: &Contract, rows: &[Vec<Cell>]) -> Vec<Answer> {
    let refs: Vec<&[Cell]> = rows.iter().map(Vec::as_slice).collect();
    let result = to_batch(contract, &refs)
        .map_err(|e| e.to_string())
        .and_then(|b| scorer.score(&[b]).map_err(|e| e.to_string()));
    // A non-finite answer is never returned: the model failed on that row
    // (and the breaker counts it).
    let non_finite = |what: f64| Err(format!("the model produced a non-finite value ({what}) for this input"));
    match result {
        Err(e) => rows.iter().map(|_| Err(e.clone())).collect(),
        Ok(Predictions::Values(values)) => values
            .into_iter()
            .map(|v| {
                if !v.is_finite() {
                    return non_finite(v);
                }
                Ok(Output { label: String::new(), probabilities: Vec::new(), value: Some(v) })
            })
            .collect(),
        Ok(Predictions::Classes { classes, probabilities }) => {
            let k = classes.len().max(1);
            probabilities
                .chunks(k)
                .map(|p| {
                    if let Some(bad) = p.iter().find(|x| !x.is_finite()) {
                        return non_finite(*bad);
                    }
                    let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
                    Ok(Output {
                        label: classes.get(best).cloned().unwrap_or_default(),
                        probabilities: classes.iter().cloned().zip(p.iter().copied()).collect(),
                        value: None,
                    })
                })
                .collect()
        }
    }
}

/// The serving state of one (tenant, model).
pub struct ModelServing {
    pub tenant: String,
    pub model: String,
    pub primary: RwLock<Option<Arc<LoadedModel>>>,
    pub previous: RwLock<Option<Arc<LoadedModel>>>,
    pub canary: RwLock<Option<Arc<LoadedModel>>>,
    pub shadow: RwLock<Option<Arc<LoadedModel>>>,
    /// Versions asked for by number.
    pub pinned: RwLock<HashMap<u64, Arc<LoadedModel>>>,
    pub policy: RwLock<pb::TrafficPolicy>,
    pub breaker: CircuitBreaker,
    /// One load or swap at a time.
    pub swap: tokio::sync::Mutex<()>,
    pub failed_load: RwLock<Option<String>>,
}

impl std::fmt::Debug for ModelServing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServing").field("tenant", &self.tenant).field("model", &self.model).finish()
    }
}

impl ModelServing {
    pub fn new(tenant: &str, model: &str, breaker: CircuitBreaker) -> Self {
        Self {
            tenant: tenant.to_string(),
            model: model.to_string(),
            primary: RwLock::new(None),
            previous: RwLock::new(None),
            canary: RwLock::new(None),
            shadow: RwLock::new(None),
            pinned: RwLock::new(HashMap::new()),
            policy: RwLock::new(pb::TrafficPolicy { model: model.to_string(), ..Default::default() }),
            breaker,
            swap: tokio::sync::Mutex::new(()),
            failed_load: RwLock::new(None),
        }
    }

    pub fn get(slot: &RwLock<Option<Arc<LoadedModel>>>) -> Option<Arc<LoadedModel>> {
        slot.read().ok().and_then(|s| s.clone())
    }

    pub fn set(slot: &RwLock<Option<Arc<LoadedModel>>>, v: Option<Arc<LoadedModel>>) -> Option<Arc<LoadedModel>> {
        slot.write().map(|mut s| std::mem::replace(&mut *s, v)).unwrap_or(None)
    }

    pub fn policy(&self) -> pb::TrafficPolicy {
        self.policy.read().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn production_version(&self) -> u64 {
        Self::get(&self.primary).map(|m| m.version).unwrap_or(0)
    }
}
