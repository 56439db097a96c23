//! The inference domain: which version answers a request (production,
//! canary, pinned, or the previous one while the breaker is open), input
//! validation, the cache, scoring, the prediction log, feedback and traffic
//! policies. No tonic here.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use pulse_common::Config;
use pulse_common::error::ServiceError;
use pulse_common::ids::new_id;
use pulse_common::paging::{next_token, page_size};
use pulse_common::records::{ListQuery, RecordStore, Write};
use pulse_common::time::{now_millis, to_proto};
use pulse_proto::common::v1::{ModelVersionRef, PageResponse};
use pulse_proto::inference::v1 as pb;
use pulse_proto::inference::v1::ServingRole;
use pulse_proto::trainer::v1::ModelStage;
use pulse_trainer::Trainer;
use pulse_trainer::artifact::Scorer;

use crate::batcher::BatcherConfig;
use crate::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};
use crate::error::InferenceError;
use crate::log::{PREDICTION, PredictionLog, SHADOW};
use crate::metrics::InferenceMetrics;
use crate::serving::{LoadedModel, ModelServing, Output};
use crate::validate::{ValidRow, check_rows};

pub const FEEDBACK: &str = "feedback";
pub const TRAFFIC: &str = "traffic";

/// Serving settings (from the configuration).
#[derive(Debug, Clone)]
pub struct ServingConfig {
    pub batching: BatcherConfig,
    pub cache_entries: usize,
    pub max_batch_rows: usize,
    pub poll: Duration,
    pub breaker: BreakerConfig,
}

impl ServingConfig {
    pub fn from_config(c: &Config) -> Self {
        Self {
            batching: BatcherConfig {
                max_batch_size: c.inference_max_batch_size.max(1),
                max_wait: Duration::from_micros(c.inference_max_batch_wait_us),
                queue_capacity: c.inference_queue_capacity.max(1),
            },
            cache_entries: c.inference_cache_entries,
            max_batch_rows: c.inference_max_batch_rows.max(1),
            poll: Duration::from_millis(c.model_poll_ms.max(50)),
            // A model call is sub-millisecond; a quarter second means the
            // process is starved, not a slow request.
            breaker: BreakerConfig {
                slow_call: Duration::from_millis(250),
                error_rate: c.inference_breaker_error_rate,
                min_requests: c.inference_breaker_min_requests.max(1),
                open_for: Duration::from_millis(c.inference_breaker_open_ms.max(1)),
                ..BreakerConfig::default()
            },
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    tenant: String,
    model: String,
    version: u64,
    input: String,
}

impl CacheKey {
    fn new(tenant: &str, m: &LoadedModel, row: &ValidRow) -> Self {
        Self { tenant: tenant.to_string(), model: m.model.clone(), version: m.version, input: row.input_sha256.clone() }
    }
}

#[derive(Clone)]
pub struct Inference {
    inner: Arc<Inner>,
}

struct Inner {
    trainer: Trainer,
    records: Arc<dyn RecordStore>,
    log: PredictionLog,
    models: RwLock<HashMap<(String, String), Arc<ModelServing>>>,
    cache: Option<quick_cache::sync::Cache<CacheKey, Output>>,
    config: ServingConfig,
    metrics: InferenceMetrics,
}

impl std::fmt::Debug for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inference").finish_non_exhaustive()
    }
}

/// Which version answers, and as what.
struct Route {
    model: Arc<LoadedModel>,
    role: ServingRole,
    probe: bool,
}

fn role_name(r: ServingRole) -> &'static str {
    r.as_str_name().trim_start_matches("SERVING_ROLE_")
}

impl Inference {
    pub fn new(
        trainer: Trainer,
        records: Arc<dyn RecordStore>,
        config: ServingConfig,
        metrics: InferenceMetrics,
    ) -> Self {
        let cache = (config.cache_entries > 0).then(|| quick_cache::sync::Cache::new(config.cache_entries));
        let this = Self {
            inner: Arc::new(Inner {
                trainer,
                log: PredictionLog::start(records.clone()),
                records,
                models: RwLock::new(HashMap::new()),
                cache,
                config,
                metrics,
            }),
        };
        this.spawn_registry_watch();
        this
    }

    /// Follows promotions and rollbacks: a new production version is loaded,
    /// warmed, then swapped in.
    fn spawn_registry_watch(&self) {
        let weak = Arc::downgrade(&self.inner);
        let poll = self.inner.config.poll;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(poll).await;
                let Some(inner) = weak.upgrade() else { return };
                let this = Inference { inner };
                let served: Vec<Arc<ModelServing>> =
                    this.inner.models.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
                for s in served {
                    if let Err(e) = this.refresh_serving(&s).await {
                        tracing::warn!(model = %s.model, error = %e, "could not refresh a served model");
                    }
                }
            }
        });
    }

    /// Stops taking predictions into the log and writes what it holds.
    pub async fn shutdown(&self) {
        self.inner.log.close().await;
    }

    pub fn log(&self) -> &PredictionLog {
        &self.inner.log
    }

    // ------------------------------------------------------------ loading

    async fn load(&self, tenant: &str, model: &str, version: u64) -> Result<Arc<LoadedModel>, InferenceError> {
        let t = &self.inner.trainer;
        let v = t.model_version(tenant, model, version, ModelStage::Unspecified).await?;
        let cref = v.contract.clone().unwrap_or_default();
        let contract = t.contract(tenant, &cref.model, cref.version).await?;
        let artifact = t.load_artifact(tenant, &v).await?;
        let scorer = tokio::task::spawn_blocking(move || Scorer::new(artifact))
            .await
            .map_err(|e| InferenceError::Scoring(e.to_string()))?;
        let loaded = LoadedModel::new(
            model,
            version,
            scorer,
            contract,
            self.inner.config.batching.clone(),
            self.inner.metrics.observer(model),
        )
        .with_sha(&v.artifact_sha256);
        // Warm: the first call pays for allocation; a swapped-in version
        // must not make live requests pay it.
        loaded.predict(loaded.warmup_row()).await?;
        Ok(Arc::new(loaded))
    }

    /// The serving state of a model, loading its production version on first
    /// use.
    async fn serving(&self, tenant: &str, model: &str) -> Result<Arc<ModelServing>, InferenceError> {
        let key = (tenant.to_string(), model.to_string());
        if let Some(s) = self.inner.models.read().ok().and_then(|m| m.get(&key).cloned()) {
            if ModelServing::get(&s.primary).is_none() {
                // Another request is loading the first version (it holds the
                // swap lock): wait for it rather than fail.
                self.refresh_serving(&s).await?;
            }
            return Ok(s);
        }
        let m = self.inner.trainer.model(tenant, model).await?;
        if m.production_version == 0 {
            return Err(InferenceError::Precondition(format!(
                "model '{model}' has no production version; promote one (PromoteModel) before predicting"
            )));
        }
        let serving = {
            let mut models = self.inner.models.write().map_err(|_| InferenceError::Scoring("lock".into()))?;
            models
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(ModelServing::new(
                        tenant,
                        model,
                        CircuitBreaker::new(self.inner.config.breaker.clone(), Instant::now()),
                    ))
                })
                .clone()
        };
        if let Some(rec) = self.inner.records.get(tenant, TRAFFIC, model).await? {
            let policy: pb::TrafficPolicy = rec.decode()?;
            if let Ok(mut p) = serving.policy.write() {
                *p = policy;
            }
        }
        self.refresh_serving(&serving).await?;
        Ok(serving)
    }

    /// Brings the loaded versions in line with the registry and the traffic
    /// policy. Returns once the production version is loaded and warm.
    async fn refresh_serving(&self, s: &Arc<ModelServing>) -> Result<(), InferenceError> {
        let _one = s.swap.lock().await;
        let m = self.inner.trainer.model(&s.tenant, &s.model).await?;
        let current = ModelServing::get(&s.primary);
        if m.production_version != 0 && current.as_ref().map(|c| c.version) != Some(m.production_version) {
            match self.load(&s.tenant, &s.model, m.production_version).await {
                Ok(next) => {
                    tracing::info!(model = %s.model, version = next.version, "serving a new production version");
                    let old = ModelServing::set(&s.primary, Some(next));
                    if old.is_some() {
                        ModelServing::set(&s.previous, old);
                    }
                    if let Ok(mut f) = s.failed_load.write() {
                        *f = None;
                    }
                }
                Err(e) => {
                    if let Ok(mut f) = s.failed_load.write() {
                        *f = Some(e.public_message());
                    }
                    if current.is_none() {
                        return Err(e);
                    }
                    tracing::warn!(model = %s.model, error = %e, "the new production version failed to load; serving the old one");
                }
            }
        }
        let policy = s.policy();
        for (slot, version) in [(&s.canary, policy.canary_version), (&s.shadow, policy.shadow_version)] {
            let loaded = ModelServing::get(slot).map(|l| l.version).unwrap_or(0);
            if version == 0 {
                ModelServing::set(slot, None);
            } else if loaded != version {
                let next = self.load(&s.tenant, &s.model, version).await?;
                ModelServing::set(slot, Some(next));
            }
        }
        Ok(())
    }

    async fn pinned(&self, s: &ModelServing, version: u64) -> Result<Arc<LoadedModel>, InferenceError> {
        if let Some(m) = s.pinned.read().ok().and_then(|p| p.get(&version).cloned()) {
            return Ok(m);
        }
        let v = self.inner.trainer.model_version(&s.tenant, &s.model, version, ModelStage::Unspecified).await?;
        if v.stage == ModelStage::Archived as i32 {
            return Err(InferenceError::NotFound(format!(
                "version {version} of model '{}' is archived; it is not served",
                s.model
            )));
        }
        let loaded = self.load(&s.tenant, &s.model, version).await?;
        if let Ok(mut p) = s.pinned.write() {
            p.insert(version, loaded.clone());
        }
        Ok(loaded)
    }

    /// Picks the version for a request, asking the breaker first.
    async fn route(&self, s: &ModelServing, version: u64, routing_key: &str) -> Result<Route, InferenceError> {
        if version != 0 {
            return Ok(Route { model: self.pinned(s, version).await?, role: ServingRole::Pinned, probe: false });
        }
        let probe = match s.breaker.admit(Instant::now()) {
            Admission::Allowed => false,
            Admission::Probe => true,
            Admission::Rejected { retry_after } => {
                self.set_breaker_gauge(s);
                let policy = s.policy();
                if policy.fallback_to_previous
                    && let Some(prev) = ModelServing::get(&s.previous)
                {
                    return Ok(Route { model: prev, role: ServingRole::Fallback, probe: false });
                }
                let snap = s.breaker.snapshot(Instant::now());
                return Err(InferenceError::Unavailable(format!(
                    "the circuit for model '{}' is open ({}); retry after {} ms",
                    s.model,
                    snap.reason,
                    retry_after.as_millis().max(1)
                )));
            }
        };
        let policy = s.policy();
        if policy.canary_share > 0.0
            && let Some(canary) = ModelServing::get(&s.canary)
            && chance(routing_key, "canary") < policy.canary_share
        {
            return Ok(Route { model: canary, role: ServingRole::Canary, probe });
        }
        let primary = ModelServing::get(&s.primary).ok_or_else(|| {
            InferenceError::Precondition(format!("model '{}' has no production version loaded", s.model))
        })?;
        Ok(Route { model: primary, role: ServingRole::Primary, probe })
    }

    fn set_breaker_gauge(&self, s: &ModelServing) {
        let v = match s.breaker.state(Instant::now()) {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        };
        self.inner.metrics.breaker.with_label_values(&[&s.model]).set(v);
    }

    // ------------------------------------------------------------ predicting

    async fn score_one(
        &self,
        route: &Route,
        tenant: &str,
        row: &ValidRow,
        bypass: bool,
    ) -> Result<(Output, bool), InferenceError> {
        let key = CacheKey::new(tenant, &route.model, row);
        let cache_label = |r: &str| self.inner.metrics.cache.with_label_values(&[&route.model.model, r]).inc();
        if let Some(cache) = &self.inner.cache
            && !bypass
        {
            if let Some(hit) = cache.get(&key) {
                cache_label("hit");
                return Ok((hit, true));
            }
            cache_label("miss");
        }
        let out = route.model.predict(row.cells.clone()).await?;
        if let Some(cache) = &self.inner.cache {
            cache.insert(key, out.clone());
        }
        Ok((out, false))
    }

    pub async fn predict(&self, tenant: &str, r: &pb::PredictRequest) -> Result<pb::Prediction, InferenceError> {
        let started = Instant::now();
        if r.model.is_empty() {
            return Err(InferenceError::invalid("model", "is required"));
        }
        let row = r.row.clone().unwrap_or_default();
        let s = self.serving(tenant, &r.model).await?;
        let route = self.route(&s, r.version, &r.routing_key).await?;
        let valid = check_rows(&route.model.contract, std::iter::once(&row.features))?.remove(0);
        let result = self.score_one(&route, tenant, &valid, r.bypass_cache).await;
        let latency = started.elapsed();
        self.record_outcome(&s, &route, latency, result.as_ref().err());
        let (out, hit) = result?;
        let prediction = self.prediction(&route.model, route.role, &out, hit, latency, &valid, row.features.clone());
        self.inner.log.append(tenant, PREDICTION, &prediction.id, &r.model, prediction.clone()).await;
        self.shadow(tenant, &s, &prediction.id, valid, row.features);
        Ok(public(prediction))
    }

    /// Breaker and metrics bookkeeping of one answer. Bad input is the
    /// caller's fault, not the model's: it does not count against it.
    fn record_outcome(&self, s: &ModelServing, route: &Route, latency: Duration, err: Option<&InferenceError>) {
        let outcome = err.map(|e| e.code().as_str()).unwrap_or("OK");
        let version = route.model.version.to_string();
        self.inner.metrics.predictions.with_label_values(&[&s.model, &version, role_name(route.role), outcome]).inc();
        self.inner.metrics.latency.with_label_values(&[&s.model]).observe(latency.as_secs_f64());
        if matches!(route.role, ServingRole::Primary | ServingRole::Canary) || route.probe {
            s.breaker.record(Instant::now(), latency, err.is_none());
        }
        self.set_breaker_gauge(s);
    }

    #[allow(clippy::too_many_arguments)]
    fn prediction(
        &self,
        m: &LoadedModel,
        role: ServingRole,
        out: &Output,
        cache_hit: bool,
        latency: Duration,
        row: &ValidRow,
        features: BTreeMap<String, pb::FeatureValue>,
    ) -> pb::Prediction {
        pb::Prediction {
            id: new_id("prd"),
            model_version: Some(ModelVersionRef { model: m.model.clone(), version: m.version }),
            role: role as i32,
            label: out.label.clone(),
            probabilities: out.probabilities.iter().cloned().collect(),
            value: out.value,
            cache_hit,
            latency_us: latency.as_micros().min(u128::from(u32::MAX)) as u32,
            created_at: Some(to_proto(now_millis())),
            features,
            input_sha256: row.input_sha256.clone(),
            output_sha256: out.sha256(),
            feedback: None,
            shadow: None,
        }
    }

    /// A copy of the request to the shadow version, off the request path;
    /// its answer is logged under the primary's id, never returned.
    fn shadow(
        &self,
        tenant: &str,
        s: &ModelServing,
        primary_id: &str,
        row: ValidRow,
        features: BTreeMap<String, pb::FeatureValue>,
    ) {
        let policy = s.policy();
        let Some(shadow) = ModelServing::get(&s.shadow) else { return };
        let share = if policy.shadow_share > 0.0 { policy.shadow_share } else { 1.0 };
        if chance(primary_id, "shadow") >= share {
            return;
        }
        let (this, tenant, primary_id, model) =
            (self.clone(), tenant.to_string(), primary_id.to_string(), s.model.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let Ok(shadow_row) = check_rows(&shadow.contract, std::iter::once(&features)).map(|mut v| v.remove(0))
            else {
                return;
            };
            match shadow.predict(shadow_row.cells.clone()).await {
                Ok(out) => {
                    let p =
                        this.prediction(&shadow, ServingRole::Shadow, &out, false, started.elapsed(), &row, features);
                    this.inner.log.append(&tenant, SHADOW, &primary_id, &model, p).await;
                }
                Err(e) => tracing::debug!(model = %model, error = %e, "the shadow version failed"),
            }
        });
    }

    pub async fn predict_batch(
        &self,
        tenant: &str,
        r: &pb::PredictBatchRequest,
    ) -> Result<pb::PredictBatchResponse, InferenceError> {
        let started = Instant::now();
        if r.model.is_empty() {
            return Err(InferenceError::invalid("model", "is required"));
        }
        let limit = self.inner.config.max_batch_rows;
        let rows = match &r.input {
            Some(pb::predict_batch_request::Input::Rows(rows)) => rows.rows.clone(),
            Some(pb::predict_batch_request::Input::ArrowIpc(bytes)) => crate::arrow_io::rows_from_ipc(bytes, limit)?,
            None => return Err(InferenceError::invalid("input", "is required: rows or arrow_ipc")),
        };
        if rows.len() > limit {
            return Err(InferenceError::invalid(
                "rows",
                format!("{} rows is over the limit of {limit} per call; split the batch", rows.len()),
            ));
        }
        if rows.is_empty() {
            return Err(InferenceError::invalid("rows", "is empty"));
        }
        let s = self.serving(tenant, &r.model).await?;
        let route = self.route(&s, r.version, &r.routing_key).await?;
        let valid = check_rows(&route.model.contract, rows.iter().map(|r| &r.features))?;
        // Cached rows are answered from the cache, the rest in one call.
        let mut outputs: Vec<Option<(Output, bool)>> = vec![None; valid.len()];
        let mut todo = Vec::new();
        for (i, v) in valid.iter().enumerate() {
            let key = CacheKey::new(tenant, &route.model, v);
            match self.inner.cache.as_ref().filter(|_| !r.bypass_cache).and_then(|c| c.get(&key)) {
                Some(hit) => outputs[i] = Some((hit, true)),
                None => todo.push(i),
            }
        }
        let result = if todo.is_empty() {
            Ok(Vec::new())
        } else {
            route.model.predict_batch(todo.iter().map(|&i| valid[i].cells.clone()).collect()).await
        };
        let latency = started.elapsed();
        self.record_outcome(&s, &route, latency, result.as_ref().err());
        for (i, out) in todo.iter().zip(result?) {
            if let Some(cache) = &self.inner.cache {
                cache.insert(CacheKey::new(tenant, &route.model, &valid[*i]), out.clone());
            }
            outputs[*i] = Some((out, false));
        }
        let mut predictions = Vec::with_capacity(valid.len());
        for ((v, row), out) in valid.iter().zip(rows).zip(outputs) {
            let (out, hit) = out.ok_or_else(|| InferenceError::Scoring("a row got no answer".into()))?;
            let p = self.prediction(&route.model, route.role, &out, hit, latency, v, row.features);
            self.inner.log.append(tenant, PREDICTION, &p.id, &r.model, p.clone()).await;
            predictions.push(public(p));
        }
        let arrow_ipc = if r.arrow_output {
            crate::arrow_io::predictions_to_ipc(&std::mem::take(&mut predictions))?
        } else {
            Vec::new()
        };
        Ok(pb::PredictBatchResponse {
            model_version: Some(ModelVersionRef { model: r.model.clone(), version: route.model.version }),
            role: route.role as i32,
            predictions,
            arrow_ipc,
            latency_us: latency.as_micros().min(u128::from(u32::MAX)) as u32,
        })
    }

    // ------------------------------------------------------------ the log

    async fn logged(
        &self,
        tenant: &str,
        kind: &'static str,
        id: &str,
    ) -> Result<Option<pb::Prediction>, InferenceError> {
        if let Some(p) = self.inner.log.pending(tenant, kind, id) {
            return Ok(Some(p));
        }
        match self.inner.records.get(tenant, kind, id).await? {
            Some(r) => Ok(Some(r.decode()?)),
            // Written between the two looks.
            None => Ok(self.inner.log.pending(tenant, kind, id)),
        }
    }

    pub async fn get_prediction(&self, tenant: &str, id: &str) -> Result<pb::Prediction, InferenceError> {
        let mut p = self
            .logged(tenant, PREDICTION, id)
            .await?
            .ok_or_else(|| InferenceError::NotFound(format!("prediction '{id}'")))?;
        if let Some(f) = self.inner.records.get(tenant, FEEDBACK, id).await? {
            p.feedback = Some(f.decode()?);
        }
        p.shadow = self.logged(tenant, SHADOW, id).await?.map(Box::new);
        Ok(p)
    }

    pub async fn list_predictions(
        &self,
        tenant: &str,
        r: &pb::ListPredictionsRequest,
    ) -> Result<pb::ListPredictionsResponse, InferenceError> {
        if r.model.is_empty() {
            return Err(InferenceError::invalid("model", "is required"));
        }
        self.inner.log.flush().await;
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let role = ServingRole::try_from(r.role).unwrap_or_default();
        let status = (role != ServingRole::Unspecified).then(|| role.as_str_name());
        let from = r.from.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
        let to = r.to.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
        let mut out = Vec::new();
        let mut after = page.page_token.clone();
        'scan: loop {
            let q = ListQuery { parent: Some(&r.model), status, after: &after, limit: 500, newest_first: true };
            let batch = self.inner.records.list(tenant, PREDICTION, q).await?;
            if batch.is_empty() {
                break;
            }
            for rec in &batch {
                after = rec.id.clone();
                let mut p: pb::Prediction = rec.decode()?;
                let at = p.created_at.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000).unwrap_or(0);
                if to.is_some_and(|to| at >= to)
                    || (r.version != 0 && p.model_version.as_ref().map(|m| m.version) != Some(r.version))
                {
                    continue;
                }
                if from.is_some_and(|from| at < from) {
                    break 'scan;
                }
                if let Some(f) = self.inner.records.get(tenant, FEEDBACK, &p.id).await? {
                    p.feedback = Some(f.decode()?);
                }
                if r.with_feedback && p.feedback.is_none() {
                    continue;
                }
                if !r.include_features {
                    p.features.clear();
                }
                out.push(p);
                if out.len() == limit as usize {
                    break 'scan;
                }
            }
        }
        let token = next_token(&out, limit, |p| &p.id);
        Ok(pb::ListPredictionsResponse { predictions: out, page: Some(PageResponse { next_page_token: token }) })
    }

    /// The prediction log of a model over a time window as Arrow batches,
    /// newest first, sent as they fill (memory holds one batch). The
    /// contract of the model's latest version names and types the feature
    /// columns.
    pub async fn export_predictions(
        &self,
        tenant: &str,
        r: &pb::ExportPredictionsRequest,
    ) -> Result<
        (
            arrow::datatypes::SchemaRef,
            tokio::sync::mpsc::Receiver<Result<arrow::record_batch::RecordBatch, InferenceError>>,
        ),
        InferenceError,
    > {
        const MAX_BATCH_ROWS: u32 = 1 << 20;
        if r.model.is_empty() {
            return Err(InferenceError::invalid("model", "is required"));
        }
        let Some(from) = r.from.as_ref() else {
            return Err(InferenceError::invalid("from", "is required: the start of the window"));
        };
        let from = from.seconds * 1000 + i64::from(from.nanos) / 1_000_000;
        let to = r.to.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
        if to.is_some_and(|to| to <= from) {
            return Err(InferenceError::invalid("to", "must be after from"));
        }
        if r.batch_rows > MAX_BATCH_ROWS {
            return Err(InferenceError::invalid("batch_rows", format!("is at most {MAX_BATCH_ROWS}")));
        }
        let batch_rows = if r.batch_rows == 0 { 65_536 } else { r.batch_rows as usize };
        let model = self.inner.trainer.model(tenant, &r.model).await?;
        let contract = self.inner.trainer.contract(tenant, &r.model, model.latest_contract_version).await?;
        let mut builder = crate::export::BatchBuilder::new(&contract);
        let schema = crate::export::schema(&contract);
        self.inner.log.flush().await;
        let role = ServingRole::try_from(r.role).unwrap_or_default();
        let (kind, status) = match role {
            ServingRole::Unspecified => (PREDICTION, None),
            ServingRole::Shadow => (SHADOW, None),
            other => (PREDICTION, Some(other.as_str_name())),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let (this, tenant, req) = (self.clone(), tenant.to_string(), r.clone());
        tokio::spawn(async move {
            let scan = async {
                let mut after = String::new();
                let mut sent = 0u64;
                'scan: loop {
                    let q =
                        ListQuery { parent: Some(&req.model), status, after: &after, limit: 1000, newest_first: true };
                    let page = this.inner.records.list(&tenant, kind, q).await?;
                    if page.is_empty() {
                        break;
                    }
                    for rec in &page {
                        after = rec.id.clone();
                        let mut p: pb::Prediction = rec.decode()?;
                        let at = p
                            .created_at
                            .as_ref()
                            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
                            .unwrap_or(0);
                        if to.is_some_and(|to| at >= to)
                            || (req.version != 0 && p.model_version.as_ref().map(|m| m.version) != Some(req.version))
                        {
                            continue;
                        }
                        if at < from || (req.last_n != 0 && sent == req.last_n) {
                            break 'scan;
                        }
                        if let Some(f) = this.inner.records.get(&tenant, FEEDBACK, &p.id).await? {
                            p.feedback = Some(f.decode()?);
                        }
                        if req.with_feedback && p.feedback.is_none() {
                            continue;
                        }
                        builder.push(&p);
                        sent += 1;
                        if builder.rows() == batch_rows && tx.send(builder.finish()).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                if builder.rows() > 0 {
                    let _ = tx.send(builder.finish()).await;
                }
                Ok::<(), InferenceError>(())
            };
            if let Err(e) = scan.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok((schema, rx))
    }

    // ------------------------------------------------------------ feedback

    pub async fn record_feedback(
        &self,
        tenant: &str,
        r: &pb::RecordFeedbackRequest,
    ) -> Result<pb::Feedback, InferenceError> {
        use pb::record_feedback_request::Truth as In;
        let p = self
            .logged(tenant, PREDICTION, &r.prediction_id)
            .await?
            .ok_or_else(|| InferenceError::NotFound(format!("prediction '{}'", r.prediction_id)))?;
        let mv = p.model_version.clone().unwrap_or_default();
        let mut f = pb::Feedback {
            id: new_id("fbk"),
            prediction_id: p.id.clone(),
            model_version: Some(mv.clone()),
            observed_at: r.observed_at.or_else(|| Some(to_proto(now_millis()))),
            recorded_at: Some(to_proto(now_millis())),
            ..Default::default()
        };
        match (&r.truth, p.value) {
            (Some(In::Label(l)), None) => {
                if !p.probabilities.contains_key(l) {
                    let mut classes: Vec<&String> = p.probabilities.keys().collect();
                    classes.sort();
                    return Err(InferenceError::invalid(
                        "label",
                        format!("'{l}' is not a class of model '{}' (classes: {classes:?})", mv.model),
                    ));
                }
                f.correct = Some(*l == p.label);
                f.truth = Some(pb::feedback::Truth::Label(l.clone()));
            }
            (Some(In::Value(v)), Some(predicted)) => {
                if !v.is_finite() {
                    return Err(InferenceError::invalid("value", format!("{v} is not a finite number")));
                }
                f.error = Some(predicted - v);
                f.truth = Some(pb::feedback::Truth::Value(*v));
            }
            (Some(In::Label(_)), Some(_)) => {
                return Err(InferenceError::invalid("label", "the model is a regression; send `value`"));
            }
            (Some(In::Value(_)), None) => {
                return Err(InferenceError::invalid("value", "the model is a classifier; send `label`"));
            }
            (None, _) => return Err(InferenceError::invalid("truth", "is required: label or value")),
        }
        // The log row must exist before feedback joins it.
        if self.inner.log.pending(tenant, PREDICTION, &p.id).is_some() {
            self.inner.log.flush().await;
        }
        loop {
            match self.inner.records.get(tenant, FEEDBACK, &p.id).await? {
                None => {
                    let writes = vec![
                        Write::insert(FEEDBACK, &p.id, &mv.model, "", &f),
                        Write::event(
                            "pulse.feedback.recorded.v1",
                            &p.id,
                            serde_json::json!({"prediction_id": p.id, "model": mv.model, "version": mv.version}),
                        ),
                    ];
                    if self.inner.records.apply(tenant, writes).await? {
                        return Ok(f);
                    }
                }
                Some(rec) => {
                    let first: pb::Feedback = rec.decode()?;
                    if first.truth == f.truth {
                        return Ok(first);
                    }
                    if !r.replace {
                        return Err(InferenceError::AlreadyExists(format!(
                            "prediction '{}' already has different feedback ({:?}); set replace to overwrite it",
                            p.id, first.truth
                        )));
                    }
                    f.id = first.id.clone();
                    if self.inner.records.apply(tenant, vec![Write::update(&rec, "", &f)]).await? {
                        return Ok(f);
                    }
                }
            }
        }
    }

    /// How many predictions of `model` made at or after `since_ms` have
    /// feedback, counting up to `cap` (0: no cap). Reads only the model's
    /// feedback records, newest prediction first, and stops at the first
    /// prediction older than `since_ms` (feedback records are keyed by their
    /// prediction's time-ordered id) or at the cap.
    pub async fn count_feedback(
        &self,
        tenant: &str,
        model: &str,
        since_ms: i64,
        cap: u64,
    ) -> Result<u64, InferenceError> {
        let mut count = 0u64;
        let mut after = String::new();
        loop {
            let q =
                ListQuery { parent: Some(model), after: &after, limit: 1000, newest_first: true, ..Default::default() };
            let page = self.inner.records.list(tenant, FEEDBACK, q).await?;
            let Some(last) = page.last() else { return Ok(count) };
            after = last.id.clone();
            for rec in &page {
                if id_millis(&rec.id).is_some_and(|ms| ms < since_ms) {
                    return Ok(count);
                }
                count += 1;
                if cap != 0 && count >= cap {
                    return Ok(count);
                }
            }
        }
    }

    // ------------------------------------------------------------ traffic

    pub async fn traffic_policy(&self, tenant: &str, model: &str) -> Result<pb::TrafficPolicy, InferenceError> {
        self.inner.trainer.model(tenant, model).await?;
        Ok(match self.inner.records.get(tenant, TRAFFIC, model).await? {
            Some(r) => r.decode()?,
            None => pb::TrafficPolicy { model: model.to_string(), ..Default::default() },
        })
    }

    pub async fn set_traffic_policy(
        &self,
        tenant: &str,
        mut p: pb::TrafficPolicy,
    ) -> Result<pb::TrafficPolicy, InferenceError> {
        let m = self.inner.trainer.model(tenant, &p.model).await?;
        for (field, share) in [("policy.canary_share", p.canary_share), ("policy.shadow_share", p.shadow_share)] {
            if !(0.0..=1.0).contains(&share) {
                return Err(InferenceError::invalid(field, format!("{share} is outside [0, 1]")));
            }
        }
        for (field, version) in
            [("policy.canary_version", p.canary_version), ("policy.shadow_version", p.shadow_version)]
        {
            if version == 0 {
                continue;
            }
            let v = self.inner.trainer.model_version(tenant, &p.model, version, ModelStage::Unspecified).await?;
            if v.stage == ModelStage::Archived as i32 || version == m.production_version {
                return Err(InferenceError::Precondition(format!(
                    "{field}: version {version} is {}; a canary or shadow must be a candidate or staging version",
                    if version == m.production_version { "the production version" } else { "archived" }
                )));
            }
        }
        if p.canary_version != 0 && p.canary_share == 0.0 {
            return Err(InferenceError::invalid(
                "policy.canary_share",
                "is 0 with a canary version; set a share such as 0.1",
            ));
        }
        if p.shadow_version != 0 && p.shadow_share == 0.0 {
            p.shadow_share = 1.0;
        }
        p.updated_at = Some(to_proto(now_millis()));
        loop {
            let existing = self.inner.records.get(tenant, TRAFFIC, &p.model).await?;
            let write = match &existing {
                Some(r) => Write::update(r, "", &p),
                None => Write::insert(TRAFFIC, &p.model, "", "", &p),
            };
            let event = Write::event(
                "pulse.traffic.changed.v1",
                &p.model,
                serde_json::json!({"model": p.model, "canary_version": p.canary_version, "canary_share": p.canary_share,
                    "shadow_version": p.shadow_version, "shadow_share": p.shadow_share}),
            );
            if self.inner.records.apply(tenant, vec![write, event]).await? {
                break;
            }
        }
        // Load (and warm) the new versions before they take traffic.
        let key = (tenant.to_string(), p.model.clone());
        let served = self.inner.models.read().ok().and_then(|m| m.get(&key).cloned());
        match served {
            Some(s) => {
                if let Ok(mut cur) = s.policy.write() {
                    *cur = p.clone();
                }
                self.refresh_serving(&s).await?;
            }
            None if m.production_version != 0 => {
                self.serving(tenant, &p.model).await?;
            }
            None => {}
        }
        Ok(p)
    }

    // ------------------------------------------------------------ status

    pub async fn refresh(&self, tenant: &str, model: &str) -> Result<pb::ModelServing, InferenceError> {
        let s = self.serving(tenant, model).await?;
        self.refresh_serving(&s).await?;
        Ok(self.status_of(&s))
    }

    pub async fn status(&self, tenant: &str, model: &str) -> Result<pb::ServingStatus, InferenceError> {
        let served: Vec<Arc<ModelServing>> = if model.is_empty() {
            self.inner
                .models
                .read()
                .map(|m| m.iter().filter(|(k, _)| k.0 == tenant).map(|(_, v)| v.clone()).collect())
                .unwrap_or_default()
        } else {
            vec![self.serving(tenant, model).await?]
        };
        let mut models: Vec<pb::ModelServing> = served.iter().map(|s| self.status_of(s)).collect();
        models.sort_by(|a, b| a.model.cmp(&b.model));
        Ok(pb::ServingStatus { models })
    }

    fn status_of(&self, s: &ModelServing) -> pb::ModelServing {
        let now = Instant::now();
        let snap = s.breaker.snapshot(now);
        let to_ts = |at: Instant| {
            let ago = now.saturating_duration_since(at);
            to_proto(now_millis() - chrono::TimeDelta::from_std(ago).unwrap_or_default())
        };
        let mut loaded = Vec::new();
        let mut queue = 0;
        let slots = [
            (&s.primary, ServingRole::Primary),
            (&s.canary, ServingRole::Canary),
            (&s.shadow, ServingRole::Shadow),
            (&s.previous, ServingRole::Fallback),
        ];
        for (slot, role) in slots {
            if let Some(m) = ModelServing::get(slot) {
                queue += m.queue_depth();
                loaded.push(pb::LoadedVersion {
                    model_version: Some(ModelVersionRef { model: m.model.clone(), version: m.version }),
                    role: role as i32,
                    state: pb::LoadState::Ready as i32,
                    artifact_sha256: m.artifact_sha256.clone(),
                    in_flight: m.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                    loaded_at: Some(to_proto(m.loaded_at)),
                    error: String::new(),
                });
            }
        }
        if let Some(err) = s.failed_load.read().ok().and_then(|f| f.clone()) {
            loaded.push(pb::LoadedVersion { state: pb::LoadState::Failed as i32, error: err, ..Default::default() });
        }
        let (hits, misses) =
            ["hit", "miss"].map(|r| self.inner.metrics.cache.with_label_values(&[&s.model, r]).get()).into();
        let b = &self.inner.config.batching;
        pb::ModelServing {
            model: s.model.clone(),
            production_version: s.production_version(),
            loaded,
            breaker: Some(pb::CircuitBreaker {
                state: match snap.state {
                    BreakerState::Closed => pb::BreakerState::Closed,
                    BreakerState::Open => pb::BreakerState::Open,
                    BreakerState::HalfOpen => pb::BreakerState::HalfOpen,
                } as i32,
                reason: snap.reason.clone(),
                changed_at: Some(to_ts(snap.changed_at)),
                probe_at: snap.probe_at.map(|p| {
                    let ahead = p.saturating_duration_since(now);
                    to_proto(now_millis() + chrono::TimeDelta::from_std(ahead).unwrap_or_default())
                }),
                error_rate: snap.error_rate,
                p99_latency: Some(prost_types::Duration {
                    seconds: snap.p99.as_secs() as i64,
                    nanos: snap.p99.subsec_nanos() as i32,
                }),
            }),
            traffic: Some(s.policy()),
            queue_depth: queue as u32,
            queue_capacity: b.queue_capacity as u32,
            max_batch_size: b.max_batch_size as u32,
            max_batch_wait: Some(prost_types::Duration { seconds: 0, nanos: b.max_wait.as_nanos() as i32 }),
            cache_entries: self.inner.cache.as_ref().map(|c| c.len() as u64).unwrap_or(0),
            cache_hit_ratio: if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
        }
    }
}

/// The answer as returned: the features and hashes stay in the log.
fn public(mut p: pb::Prediction) -> pb::Prediction {
    p.features.clear();
    p.input_sha256.clear();
    p.output_sha256.clear();
    p
}

/// A number in [0, 1): a hash of the key when given (the same key always
/// routes the same way), else random.
fn chance(key: &str, salt: &str) -> f64 {
    if key.is_empty() {
        return rand::random::<f64>();
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut h);
    key.hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Predictions in lineage traces, read from the prediction log: no lineage
/// write per prediction, yet `pulse lineage prd_…` walks back to the
/// datasource through the model version that answered.
#[derive(Debug, Clone)]
pub struct PredictionNodes {
    records: Arc<dyn RecordStore>,
    /// Predictions answered by this process and not yet written.
    log: Option<PredictionLog>,
}

impl PredictionNodes {
    /// Resolves predictions served by `inference` in this process.
    pub fn serving(inference: &Inference) -> Self {
        Self { records: inference.inner.records.clone(), log: Some(inference.inner.log.clone()) }
    }

    /// Resolves predictions from the inference service's store alone (a
    /// lineage process that does not serve inference).
    pub fn from_store(records: Arc<dyn RecordStore>) -> Self {
        Self { records, log: None }
    }
}

#[async_trait::async_trait]
impl pulse_lineage::domain::NodeResolver for PredictionNodes {
    async fn resolve(
        &self,
        tenant: &str,
        id: &str,
    ) -> Option<(pulse_lineage::domain::Node, Vec<pulse_lineage::domain::Edge>)> {
        use pulse_lineage::domain::{Edge, Node, NodeKind};
        if !id.starts_with("prd_") {
            return None;
        }
        let pending = || self.log.as_ref().and_then(|l| l.pending(tenant, PREDICTION, id));
        let p = match pending() {
            Some(p) => p,
            None => match self.records.get(tenant, PREDICTION, id).await.ok()? {
                Some(r) => r.decode::<pb::Prediction>().ok()?,
                None => pending()?,
            },
        };
        let mv = p.model_version.clone().unwrap_or_default();
        let created_at = p
            .created_at
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_else(chrono::Utc::now);
        let mut attributes: std::collections::BTreeMap<String, String> = [
            ("model".to_string(), mv.model.clone()),
            ("version".to_string(), mv.version.to_string()),
            ("role".to_string(), role_name(ServingRole::try_from(p.role).unwrap_or_default()).to_lowercase()),
            ("input_sha256".to_string(), p.input_sha256.clone()),
        ]
        .into_iter()
        .collect();
        match p.value {
            Some(v) => attributes.insert("value".into(), v.to_string()),
            None => attributes.insert("label".into(), p.label.clone()),
        };
        let model_node = pulse_trainer::domain::lineage_model_id(&mv.model, mv.version);
        let edge = Edge { from_id: model_node, to_id: id.to_string(), relation: "predicted".into(), created_at };
        Some((Node { id: id.to_string(), kind: NodeKind::Prediction, attributes, created_at }, vec![edge]))
    }
}

/// The creation time (ms) of an id made by `pulse_common::ids::new_id`: the
/// UUIDv7 timestamp in its 26 base32 characters.
fn id_millis(id: &str) -> Option<i64> {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let body = id.rsplit_once('_')?.1;
    if body.len() != 26 {
        return None;
    }
    let mut value: u128 = 0;
    for b in body.bytes() {
        value = (value << 5) | CROCKFORD.iter().position(|c| *c == b)? as u128;
    }
    Some((value >> 80) as i64)
}
