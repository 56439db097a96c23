//! The drift domain: CheckDrift (a window of the prediction log, or a
//! dataset version, against the model version's baseline), stored drift
//! reports, monitors and baselines. No tonic here.
//!
//! A check reads each side once, as a stream of record batches folded into
//! one compact column per monitored feature (see [`crate::columns`]), then
//! compares the columns in parallel on the blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use pulse_common::ids::{check_id, new_id, truncate};
use pulse_common::paging::{next_token, page_size};
use pulse_common::records::{ListQuery, RecordStore, Write};
use pulse_common::time::{from_millis, now_millis, to_proto};
use pulse_inference::Inference;
use pulse_proto::common::v1::{DatasetVersionRef, ModelVersionRef, PageResponse};
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::{BaselineSource, DriftMetric, DriftStatus, FeatureKind};
use pulse_proto::inference::v1::ExportPredictionsRequest;
use pulse_proto::prost_types::{Duration as PbDuration, Timestamp};
use pulse_proto::trainer::v1::{Contract, ModelStage, ModelVersion};
use pulse_snapshot::Snapshots;
use pulse_trainer::Trainer;
use pulse_trainer::artifact::Scorer;

use crate::columns::{Column, Gather, Kind, Monitored, PREDICTION, Sampler};
use crate::compare::{self, Options, Thresholds};
use crate::error::DriftError;
use crate::metrics::DriftMetrics;

pub const REPORT: &str = "drift_report";
pub const MONITOR: &str = "monitor";
pub const BASELINE: &str = "baseline";

/// Reference rows scored to get a dataset version's outputs.
pub const SCORED_ROWS: usize = 100_000;
const DEFAULT_WINDOW_SECONDS: i64 = 24 * 3600;
const DEFAULT_INTERVAL_SECONDS: i64 = 3600;
const DEFAULT_MIN_SAMPLES: u64 = 100;
const DEFAULT_MIN_FEEDBACK: u64 = 100;
const DEFAULT_BINS: u32 = 10;
const DEFAULT_PSI_EPSILON: f64 = 1e-4;
const DEFAULT_MAX_REFERENCE_ROWS: u64 = 1_000_000;
/// Loaded models kept for scoring reference rows.
const SCORERS: usize = 16;

#[derive(Clone)]
pub struct Drift {
    inner: Arc<Inner>,
}

/// Tenant, model, version and artifact SHA-256.
type ScorerKey = (String, String, u64, String);

struct Inner {
    trainer: Trainer,
    snapshots: Snapshots,
    inference: Inference,
    lineage: Option<pulse_lineage::Lineage>,
    records: Arc<dyn RecordStore>,
    metrics: DriftMetrics,
    scorers: Mutex<HashMap<ScorerKey, Arc<Scorer>>>,
}

impl std::fmt::Debug for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drift").finish_non_exhaustive()
    }
}

/// The model version a call is about.
struct Target {
    model: String,
    version: u64,
    mv: ModelVersion,
    contract: Contract,
}

impl Target {
    fn reference(&self) -> ModelVersionRef {
        ModelVersionRef { model: self.model.clone(), version: self.version }
    }
}

/// Where a side's rows come from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The version's predictions in [from, to) (`to` unset: now), only the
    /// newest `last_n` when not 0.
    Log {
        from_ms: i64,
        to_ms: Option<i64>,
        last_n: u64,
    },
    Dataset(DatasetVersionRef),
}

fn ms_ts(ms: i64) -> Timestamp {
    to_proto(from_millis(ms))
}

fn status_name(s: DriftStatus) -> &'static str {
    s.as_str_name()
}

fn short_status(s: DriftStatus) -> String {
    s.as_str_name().trim_start_matches("DRIFT_STATUS_").to_lowercase()
}

fn baseline_id(model: &str, version: u64) -> String {
    format!("{model}@{version:020}")
}

fn default_window() -> pb::Window {
    pb::Window { kind: Some(pb::window::Kind::Last(PbDuration { seconds: DEFAULT_WINDOW_SECONDS, nanos: 0 })) }
}

/// A monitor with every unset setting at its default.
pub fn with_defaults(mut m: pb::Monitor) -> pb::Monitor {
    if m.window.as_ref().and_then(|w| w.kind.as_ref()).is_none() {
        m.window = Some(default_window());
    }
    if m.interval.is_none() {
        m.interval = Some(PbDuration { seconds: DEFAULT_INTERVAL_SECONDS, nanos: 0 });
    }
    if m.min_samples == 0 {
        m.min_samples = DEFAULT_MIN_SAMPLES;
    }
    if m.min_feedback == 0 {
        m.min_feedback = DEFAULT_MIN_FEEDBACK;
    }
    let o = m.options.get_or_insert_default();
    if o.bins == 0 {
        o.bins = DEFAULT_BINS;
    }
    if o.psi_epsilon == 0.0 {
        o.psi_epsilon = DEFAULT_PSI_EPSILON;
    }
    if o.max_reference_rows == 0 {
        o.max_reference_rows = DEFAULT_MAX_REFERENCE_ROWS;
    }
    m
}

fn positive_ms(field: &str, d: &PbDuration) -> Result<i64, DriftError> {
    if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
        return Err(DriftError::invalid(field, "must be a positive duration"));
    }
    Ok((d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000).max(1))
}

/// [from, to) in milliseconds; `from` is required, `to` after it.
fn range_ms(field: &str, r: &pb::TimeRange) -> Result<(i64, Option<i64>), DriftError> {
    let from = r
        .from
        .as_ref()
        .map(pulse_common::time::proto_millis)
        .ok_or_else(|| DriftError::invalid(format!("{field}.from"), "is required"))?;
    let to = r.to.as_ref().map(pulse_common::time::proto_millis);
    if to.is_some_and(|to| to <= from) {
        return Err(DriftError::invalid(format!("{field}.to"), "must be after from"));
    }
    Ok((from, to))
}

fn window_source(field: &str, w: &pb::Window, now_ms: i64) -> Result<Source, DriftError> {
    use pb::window::Kind as W;
    match &w.kind {
        Some(W::Last(d)) => {
            let ms = positive_ms(&format!("{field}.last"), d)?;
            Ok(Source::Log { from_ms: now_ms - ms, to_ms: None, last_n: 0 })
        }
        Some(W::LastCount(0)) => Err(DriftError::invalid(format!("{field}.last_count"), "must be > 0")),
        Some(W::LastCount(n)) => Ok(Source::Log { from_ms: 0, to_ms: None, last_n: *n }),
        Some(W::Range(r)) => {
            let (from_ms, to_ms) = range_ms(&format!("{field}.range"), r)?;
            Ok(Source::Log { from_ms, to_ms, last_n: 0 })
        }
        None => Err(DriftError::invalid(field, "is empty: set last, last_count or range")),
    }
}

fn check_dataset(field: &str, d: &DatasetVersionRef) -> Result<DatasetVersionRef, DriftError> {
    if d.dataset_id.is_empty() {
        return Err(DriftError::invalid(format!("{field}.dataset_id"), "is required"));
    }
    if d.version == 0 {
        return Err(DriftError::invalid(format!("{field}.version"), "is required: a committed version number"));
    }
    Ok(d.clone())
}

fn features_list(contract: &Contract) -> String {
    contract.features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks a monitor against the model's contract; errors name the field.
fn check_monitor(m: &pb::Monitor, contract: &Contract) -> Result<(), DriftError> {
    if let Some(w) = &m.window
        && w.kind.is_some()
    {
        window_source("monitor.window", w, 0)?;
    }
    if let Some(d) = &m.interval
        && (d.seconds < 0 || d.nanos < 0)
    {
        return Err(DriftError::invalid("monitor.interval", "must not be negative (zero: only on CheckDrift)"));
    }
    for (i, f) in m.features.iter().enumerate() {
        if !contract.features.iter().any(|c| c.name == *f) {
            return Err(DriftError::invalid(
                format!("monitor.features[{i}]"),
                format!(
                    "'{}' is not a feature of model '{}' (features: {})",
                    truncate(f, 64),
                    contract.model,
                    features_list(contract)
                ),
            ));
        }
        if m.features[..i].contains(f) {
            return Err(DriftError::invalid(format!("monitor.features[{i}]"), format!("'{f}' is listed twice")));
        }
    }
    compare::check_thresholds("monitor.thresholds", &m.thresholds, contract)?;
    if let Some(o) = &m.options {
        if o.bins != 0 && !(2..=100).contains(&o.bins) {
            return Err(DriftError::invalid("monitor.options.bins", format!("{} is outside 2..100", o.bins)));
        }
        if o.psi_epsilon != 0.0 && !(o.psi_epsilon > 0.0 && o.psi_epsilon < 0.1) {
            return Err(DriftError::invalid(
                "monitor.options.psi_epsilon",
                format!("{} is outside (0, 0.1); the default is 1e-4", o.psi_epsilon),
            ));
        }
    }
    Ok(())
}

/// The features a check compares: the request's, else the monitor's, else
/// every contract feature.
fn monitored(target: &Target, requested: &[String], monitor: &[String]) -> Result<Vec<Monitored>, DriftError> {
    let contract = &target.contract;
    let (names, from_monitor) = if requested.is_empty() { (monitor, true) } else { (requested, false) };
    if names.is_empty() {
        return Ok(contract
            .features
            .iter()
            .map(|f| Monitored { name: f.name.clone(), kind: compare::feature_kind(f.r#type) })
            .collect());
    }
    let mut out: Vec<Monitored> = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let Some(f) = contract.features.iter().find(|f| f.name == *n) else {
            if from_monitor {
                return Err(DriftError::Precondition(format!(
                    "the monitor of model '{}' names feature '{n}', which the contract of version {} does not have; \
                     update the monitor (SetMonitor)",
                    target.model, target.version
                )));
            }
            return Err(DriftError::invalid(
                format!("features[{i}]"),
                format!(
                    "'{}' is not a feature of model '{}' (features: {})",
                    truncate(n, 64),
                    target.model,
                    features_list(contract)
                ),
            ));
        };
        if out.iter().any(|m| m.name == *n) {
            return Err(DriftError::invalid(format!("features[{i}]"), format!("'{n}' is listed twice")));
        }
        out.push(Monitored { name: f.name.clone(), kind: compare::feature_kind(f.r#type) });
    }
    Ok(out)
}

fn feature_kind(k: Kind) -> FeatureKind {
    match k {
        Kind::Numeric => FeatureKind::Numeric,
        Kind::Categorical => FeatureKind::Categorical,
    }
}

/// The answer of List and Check: without per-feature current statistics.
fn without_current(mut r: pb::DriftReport) -> pb::DriftReport {
    for f in &mut r.features {
        f.current = None;
    }
    if let Some(p) = r.prediction.as_mut() {
        p.current = None;
    }
    r
}

/// Counts of a column pair taken before its values go to a task.
struct Counts {
    reference: u64,
    current: u64,
    current_nulls: u64,
    current_stats: Option<pulse_proto::snapshot::v1::ColumnStatistics>,
}

impl Counts {
    fn of(reference: &Column, current: &mut Column) -> Self {
        Self {
            reference: reference.count(),
            current: current.count(),
            current_nulls: current.nulls,
            current_stats: current.statistics(),
        }
    }
}

impl Drift {
    pub fn new(
        trainer: Trainer,
        snapshots: Snapshots,
        inference: Inference,
        lineage: Option<pulse_lineage::Lineage>,
        records: Arc<dyn RecordStore>,
        metrics: DriftMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                trainer,
                snapshots,
                inference,
                lineage,
                records,
                metrics,
                scorers: Mutex::new(HashMap::new()),
            }),
        }
    }

    // ------------------------------------------------------------ resolving

    async fn resolve(&self, tenant: &str, model: &str, version: u64) -> Result<Target, DriftError> {
        if model.is_empty() {
            return Err(DriftError::invalid("model", "is required"));
        }
        let t = &self.inner.trainer;
        let m = t.model(tenant, model).await?;
        let number = match version {
            0 if m.production_version == 0 => {
                return Err(DriftError::Precondition(format!(
                    "model '{model}' has no production version; promote one (PromoteModel) or name a version"
                )));
            }
            0 => m.production_version,
            v => v,
        };
        let mv = t.model_version(tenant, model, number, ModelStage::Unspecified).await?;
        let cref = mv.contract.clone().unwrap_or_default();
        let contract = t.contract(tenant, &cref.model, cref.version).await?;
        Ok(Target { model: model.to_string(), version: number, mv, contract })
    }

    /// The version's artifact, ready to score (kept for later checks).
    async fn scorer(&self, tenant: &str, target: &Target) -> Result<Arc<Scorer>, DriftError> {
        let key = (tenant.to_string(), target.model.clone(), target.version, target.mv.artifact_sha256.clone());
        if let Some(s) = self.inner.scorers.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(s);
        }
        let artifact = self.inner.trainer.load_artifact(tenant, &target.mv).await?;
        let scorer = Arc::new(tokio::task::spawn_blocking(move || Scorer::new(artifact)).await?);
        if let Ok(mut m) = self.inner.scorers.lock() {
            if m.len() >= SCORERS {
                m.clear();
            }
            m.insert(key, scorer.clone());
        }
        Ok(scorer)
    }

    // ------------------------------------------------------------ reading

    /// A side from the prediction log: the monitored features, the served
    /// outputs and (`feedback`) the ground truth joined to them.
    async fn gather_log(
        &self,
        tenant: &str,
        target: &Target,
        monitored: &[Monitored],
        (from_ms, to_ms, last_n): (i64, Option<i64>, u64),
        with_stats: bool,
        feedback: bool,
    ) -> Result<Gather, DriftError> {
        let mut g = Gather::new(monitored, Some(compare::output_kind(&target.contract)), with_stats);
        if feedback {
            g = g.with_feedback();
        }
        let req = ExportPredictionsRequest {
            model: target.model.clone(),
            version: target.version,
            from: Some(ms_ts(from_ms)),
            to: to_ms.map(ms_ts),
            last_n,
            ..Default::default()
        };
        let (_, mut batches) = self.inner.inference.export_predictions(tenant, &req).await?;
        while let Some(batch) = batches.recv().await {
            let batch = batch?;
            g.add_features(&batch)?;
            g.add_served(&batch)?;
        }
        Ok(g)
    }

    /// A side from a dataset version: the monitored features of about
    /// `cap` rows (a deterministic sample when the version has more), and
    /// the outputs of the first `score` of them scored by the version's
    /// model. `limit` stops the read early.
    #[allow(clippy::too_many_arguments)]
    async fn gather_dataset(
        &self,
        tenant: &str,
        target: &Target,
        monitored: &[Monitored],
        dataset: &DatasetVersionRef,
        cap: Option<u64>,
        with_stats: bool,
        score: usize,
        limit: Option<u64>,
    ) -> Result<(Gather, pulse_proto::snapshot::v1::DatasetVersion), DriftError> {
        let version = self.inner.snapshots.readable(tenant, &dataset.dataset_id, dataset.version).await?;
        let manifest = version.manifest.clone().unwrap_or_default();
        let schema = manifest.schema.clone().unwrap_or_default();
        let present = |n: &str| schema.columns.iter().any(|c| c.name == n);
        let missing: Vec<String> =
            target.contract.features.iter().filter(|f| !present(&f.name)).map(|f| format!("'{}'", f.name)).collect();
        if !missing.is_empty() {
            return Err(DriftError::Precondition(format!(
                "version {} of dataset '{}' has no column {} of the contract of model '{}'; compare data with the \
                 model's features",
                dataset.version,
                dataset.dataset_id,
                missing.join(", "),
                target.model
            )));
        }
        let mut scorer = if score > 0 {
            match self.scorer(tenant, target).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(model = %target.model, version = target.version, error = %e,
                        "cannot load the model to score reference rows; no prediction drift");
                    None
                }
            }
        } else {
            None
        };
        let mut columns: Vec<String> = Vec::new();
        let wanted = monitored
            .iter()
            .map(|m| &m.name)
            .chain(scorer.as_ref().map(|_| target.contract.features.iter().map(|f| &f.name)).into_iter().flatten());
        for name in wanted {
            if present(name) && !columns.contains(name) {
                columns.push(name.clone());
            }
        }
        let output = scorer.as_ref().map(|_| compare::output_kind(&target.contract));
        let mut g = Gather::new(monitored, output, with_stats);
        if columns.is_empty() {
            // Nothing to read (no features monitored, nothing to score).
            return Ok((g, version));
        }
        let mut sampler = cap.and_then(|c| Sampler::new(c, manifest.row_count));
        let objects = self.inner.snapshots.tenant_objects(tenant)?;
        let stream = pulse_snapshot::read::read_version(objects, manifest, columns, Vec::new(), limit);
        let mut stream = std::pin::pin!(stream);
        let mut scored = 0usize;
        while let Some(item) = stream.next().await {
            let (_, mut batch) = item?;
            if let Some(s) = sampler.as_mut() {
                let mask = s.mask(batch.num_rows());
                batch = arrow::compute::filter_record_batch(&batch, &mask)?;
            }
            g.add_features(&batch)?;
            if let Some(s) = scorer.clone()
                && scored < score
                && batch.num_rows() > 0
            {
                let take = (score - scored).min(batch.num_rows());
                let rows = batch.slice(0, take);
                scored += take;
                match tokio::task::spawn_blocking(move || s.score(&[rows])).await? {
                    Ok(p) => g.add_scored(p)?,
                    Err(e) => {
                        tracing::warn!(model = %target.model, version = target.version, error = %e,
                            "reference rows do not score; no prediction drift");
                        scorer = None;
                        g.output = None;
                    }
                }
            }
        }
        Ok((g, version))
    }

    async fn gather(
        &self,
        tenant: &str,
        target: &Target,
        monitored: &[Monitored],
        source: &Source,
        cap: Option<u64>,
        current: bool,
    ) -> Result<Gather, DriftError> {
        match source {
            Source::Log { from_ms, to_ms, last_n } => {
                self.gather_log(tenant, target, monitored, (*from_ms, *to_ms, *last_n), current, current).await
            }
            Source::Dataset(d) => {
                let (g, _) = self.gather_dataset(tenant, target, monitored, d, cap, current, SCORED_ROWS, None).await?;
                Ok(g)
            }
        }
    }

    /// The stored baseline's source, else the version's training dataset.
    async fn baseline_source(
        &self,
        tenant: &str,
        target: &Target,
        cap: u64,
    ) -> Result<(BaselineSource, Source), DriftError> {
        if let Some(rec) = self.inner.records.get(tenant, BASELINE, &baseline_id(&target.model, target.version)).await?
        {
            let b: pb::Baseline = rec.decode()?;
            match BaselineSource::try_from(b.source).unwrap_or_default() {
                BaselineSource::DatasetVersion => {
                    return Ok((BaselineSource::DatasetVersion, Source::Dataset(b.dataset.unwrap_or_default())));
                }
                BaselineSource::PredictionWindow => {
                    let w = b.window.unwrap_or_default();
                    let from_ms = w.from.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
                    let source = Source::Log {
                        from_ms,
                        to_ms: w.to.as_ref().map(pulse_common::time::proto_millis),
                        last_n: cap,
                    };
                    return Ok((BaselineSource::PredictionWindow, source));
                }
                BaselineSource::Training | BaselineSource::Unspecified => {}
            }
        }
        Ok((BaselineSource::Training, Source::Dataset(self.training_dataset(target)?)))
    }

    fn training_dataset(&self, target: &Target) -> Result<DatasetVersionRef, DriftError> {
        target.mv.dataset.clone().filter(|d| !d.dataset_id.is_empty()).ok_or_else(|| {
            DriftError::Precondition(format!(
                "version {} of model '{}' names no training dataset version; give reference_dataset",
                target.version, target.model
            ))
        })
    }

    // ------------------------------------------------------------ checking

    /// Compares the current data with the reference and, unless a dry run,
    /// stores the report with its events, lineage and gauges.
    pub async fn check(&self, tenant: &str, r: &pb::CheckDriftRequest) -> Result<pb::DriftReport, DriftError> {
        self.check_as(tenant, r, "check_drift").await.map(without_current)
    }

    /// [`Drift::check`] recording who asked (`triggered_by`), with the
    /// current statistics.
    pub async fn check_as(
        &self,
        tenant: &str,
        r: &pb::CheckDriftRequest,
        triggered_by: &str,
    ) -> Result<pb::DriftReport, DriftError> {
        use pb::check_drift_request::{Current, Reference};
        let started = Instant::now();
        let pb::CheckDriftRequest { model, version, current, reference, features, thresholds, dry_run } = r;
        let target = self.resolve(tenant, model, *version).await?;
        let monitor = self.monitor_state(tenant, model).await?;
        let monitored = monitored(&target, features, &monitor.features)?;
        compare::check_thresholds("thresholds", thresholds, &target.contract)?;
        let thresholds = Thresholds::new(thresholds, &monitor.thresholds);
        let options = monitor.options.unwrap_or_default();
        let stats_options = Options { bins: options.bins as usize, psi_epsilon: options.psi_epsilon };
        let cap = options.max_reference_rows;
        let now_ms = now_millis().timestamp_millis();

        let current_source = match current {
            Some(Current::Window(w)) => window_source("window", w, now_ms)?,
            Some(Current::Dataset(d)) => Source::Dataset(check_dataset("dataset", d)?),
            None => window_source("monitor.window", monitor.window.as_ref().unwrap_or(&default_window()), now_ms)?,
        };
        let (reference_kind, reference_source) = match reference {
            Some(Reference::ReferenceDataset(d)) => {
                (BaselineSource::DatasetVersion, Source::Dataset(check_dataset("reference_dataset", d)?))
            }
            Some(Reference::ReferenceWindow(w)) => {
                let (from_ms, to_ms) = range_ms("reference_window", w)?;
                (BaselineSource::PredictionWindow, Source::Log { from_ms, to_ms, last_n: cap })
            }
            None => self.baseline_source(tenant, &target, cap).await?,
        };

        let mut reference_side = self.gather(tenant, &target, &monitored, &reference_source, Some(cap), false).await?;
        let mut current_side = self.gather(tenant, &target, &monitored, &current_source, None, true).await?;

        // One task per column, in parallel on the blocking pool.
        let mut tasks = Vec::with_capacity(monitored.len() + 1);
        for (r, c) in reference_side.columns.iter_mut().zip(current_side.columns.iter_mut()) {
            let counts = Counts::of(r, c);
            let (rv, cv) = (r.take_values(), c.take_values());
            tasks.push((counts, tokio::task::spawn_blocking(move || compare::statistics(rv, cv, stats_options))));
        }
        let prediction_task = match (reference_side.output.as_mut(), current_side.output.as_mut()) {
            (Some(r), Some(c)) => {
                let counts = Counts::of(r, c);
                let (rv, cv) = (r.take_values(), c.take_values());
                Some((counts, tokio::task::spawn_blocking(move || compare::statistics(rv, cv, stats_options))))
            }
            _ => None,
        };

        let judge = current_side.rows >= monitor.min_samples;
        let feature_drift = |name: &str, kind: Kind, counts: Counts, values: Vec<(DriftMetric, f64)>| {
            let metrics: Vec<pb::MetricValue> =
                values.into_iter().map(|(m, v)| thresholds.judge(m, name, v, judge)).collect();
            pb::FeatureDrift {
                feature: name.to_string(),
                kind: feature_kind(kind) as i32,
                reference_count: counts.reference,
                current_count: counts.current,
                current_null_count: counts.current_nulls,
                drifted: metrics.iter().any(|m| m.breached),
                metrics,
                current: counts.current_stats,
            }
        };
        let mut features_out = Vec::with_capacity(monitored.len());
        for (m, (counts, task)) in monitored.iter().zip(tasks) {
            let values = task.await??;
            features_out.push(feature_drift(&m.name, m.kind, counts, values));
        }
        let prediction = match prediction_task {
            Some((counts, task)) => {
                let values = task.await??;
                Some(feature_drift(PREDICTION, compare::output_kind(&target.contract), counts, values))
            }
            None => None,
        };
        let performance = current_side.feedback.as_ref().map(|f| {
            let reference = target.mv.metrics.clone().unwrap_or_default();
            let mut p = compare::performance(f, &reference, monitor.min_feedback, &thresholds);
            if !judge {
                // Computed, not judged, as the features.
                for m in &mut p.metrics {
                    (m.breached, m.threshold) = (false, None);
                }
                p.drifted = false;
            }
            p
        });

        let mut drifted_features: Vec<String> =
            features_out.iter().filter(|f| f.drifted).map(|f| f.feature.clone()).collect();
        let score =
            if features_out.is_empty() { 0.0 } else { drifted_features.len() as f64 / features_out.len() as f64 };
        if prediction.as_ref().is_some_and(|p| p.drifted) {
            drifted_features.push(PREDICTION.to_string());
        }
        let drift = !drifted_features.is_empty() || performance.as_ref().is_some_and(|p| p.drifted);
        let status = if !judge {
            DriftStatus::InsufficientData
        } else if drift {
            DriftStatus::Drift
        } else {
            DriftStatus::Ok
        };
        let log_range = |source: &Source, oldest: Option<i64>| match source {
            Source::Log { from_ms, to_ms, last_n } => Some(pb::TimeRange {
                // The newest N (no start asked for): from the oldest row read.
                from: if *from_ms == 0 && *last_n > 0 { oldest.map(ms_ts) } else { Some(ms_ts(*from_ms)) },
                to: Some(ms_ts(to_ms.unwrap_or(now_ms))),
            }),
            Source::Dataset(_) => None,
        };
        let dataset_of = |source: &Source| match source {
            Source::Dataset(d) => Some(d.clone()),
            Source::Log { .. } => None,
        };
        let mut report = pb::DriftReport {
            id: if *dry_run { String::new() } else { new_id("drf") },
            model_version: Some(target.reference()),
            status: status as i32,
            score,
            window: log_range(&current_source, current_side.oldest_ms),
            current_dataset: dataset_of(&current_source),
            current_rows: current_side.rows,
            reference_source: reference_kind as i32,
            reference_dataset: dataset_of(&reference_source),
            reference_window: log_range(&reference_source, reference_side.oldest_ms),
            features: features_out,
            prediction,
            performance,
            drifted_features,
            triggered_by: triggered_by.to_string(),
            compute_time: None,
            created_at: Some(to_proto(now_millis())),
        };
        let took = started.elapsed();
        report.compute_time = Some(PbDuration { seconds: took.as_secs() as i64, nanos: took.subsec_nanos() as i32 });
        if !*dry_run {
            self.store_report(tenant, &report).await?;
        }
        Ok(report)
    }

    /// The report, its events and the monitor's last check in one write;
    /// then lineage and the gauges.
    async fn store_report(&self, tenant: &str, report: &pb::DriftReport) -> Result<(), DriftError> {
        let mv = report.model_version.clone().unwrap_or_default();
        let status = DriftStatus::try_from(report.status).unwrap_or_default();
        let payload = serde_json::json!({
            "report_id": report.id,
            "model": mv.model,
            "version": mv.version,
            "status": short_status(status),
            "score": report.score,
            "drifted_features": report.drifted_features,
            "triggered_by": report.triggered_by,
        });
        loop {
            let mut writes = vec![
                Write::insert(REPORT, &report.id, &mv.model, status_name(status), report),
                Write::event("pulse.drift.checked.v1", &report.id, payload.clone()),
            ];
            if status == DriftStatus::Drift {
                writes.push(Write::event("pulse.drift.detected.v1", &report.id, payload.clone()));
            }
            if let Some(rec) = self.inner.records.get(tenant, MONITOR, &mv.model).await? {
                let mut m: pb::Monitor = rec.decode()?;
                m.last_checked_at = report.created_at;
                writes.push(Write::update(&rec, "", &m));
            }
            if self.inner.records.apply(tenant, writes).await? {
                break;
            }
        }
        self.record_lineage(tenant, report, &mv).await;
        if status != DriftStatus::InsufficientData {
            let m = &self.inner.metrics;
            for f in report.features.iter().chain(report.prediction.as_ref()) {
                for v in &f.metrics {
                    let metric = DriftMetric::try_from(v.metric).unwrap_or_default();
                    if let Some(name) = compare::gauge_name(metric) {
                        m.score.with_label_values(&[mv.model.as_str(), f.feature.as_str(), name]).set(v.value);
                    }
                }
            }
            let detected = m.detected.with_label_values(&[mv.model.as_str()]);
            if status == DriftStatus::Drift {
                detected.inc();
            } else {
                // The series exists from the first check, so alerts can use increase().
                detected.inc_by(0);
            }
        }
        Ok(())
    }

    async fn record_lineage(&self, tenant: &str, report: &pb::DriftReport, mv: &ModelVersionRef) {
        use pulse_lineage::domain::{EdgeWrite, NodeKind, NodeWrite};
        let Some(lineage) = &self.inner.lineage else { return };
        let attrs = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let model_node = pulse_trainer::domain::lineage_model_id(&mv.model, mv.version);
        let status = DriftStatus::try_from(report.status).unwrap_or_default();
        let nodes = vec![
            NodeWrite {
                id: model_node.clone(),
                kind: NodeKind::ModelVersion,
                attributes: attrs(&[("model", mv.model.clone()), ("version", mv.version.to_string())]),
            },
            NodeWrite {
                id: report.id.clone(),
                kind: NodeKind::DriftReport,
                attributes: attrs(&[
                    ("status", short_status(status)),
                    ("score", format!("{:.4}", report.score)),
                    ("model", mv.model.clone()),
                    ("version", mv.version.to_string()),
                ]),
            },
        ];
        let edges = vec![EdgeWrite { from_id: model_node, to_id: report.id.clone(), relation: "checked".into() }];
        if let Err(e) = lineage.record(tenant, nodes, edges).await {
            tracing::warn!(report = %report.id, error = %e, "could not record lineage");
        }
    }

    // ------------------------------------------------------------ reports

    pub async fn list_reports(
        &self,
        tenant: &str,
        r: &pb::ListDriftReportsRequest,
    ) -> Result<pb::ListDriftReportsResponse, DriftError> {
        let pb::ListDriftReportsRequest { model, version, status, created, page } = r;
        let page = page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let status = DriftStatus::try_from(*status).unwrap_or_default();
        let status = (status != DriftStatus::Unspecified).then(|| status_name(status));
        let (from, to) = match created {
            Some(t) => (
                t.from.as_ref().map(pulse_common::time::proto_millis),
                t.to.as_ref().map(pulse_common::time::proto_millis),
            ),
            None => (None, None),
        };
        let mut out = Vec::new();
        let mut after = page.page_token.clone();
        'scan: loop {
            let q = ListQuery {
                parent: (!model.is_empty()).then_some(model.as_str()),
                status,
                after: &after,
                limit: 500,
                newest_first: true,
            };
            let batch = self.inner.records.list(tenant, REPORT, q).await?;
            if batch.is_empty() {
                break;
            }
            for rec in &batch {
                after = rec.id.clone();
                let report: pb::DriftReport = rec.decode()?;
                let at = report.created_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
                if to.is_some_and(|to| at >= to)
                    || (*version != 0 && report.model_version.as_ref().map(|m| m.version) != Some(*version))
                {
                    continue;
                }
                if from.is_some_and(|from| at < from) {
                    break 'scan;
                }
                out.push(without_current(report));
                if out.len() == limit as usize {
                    break 'scan;
                }
            }
        }
        let token = next_token(&out, limit, |r| &r.id);
        Ok(pb::ListDriftReportsResponse { reports: out, page: Some(PageResponse { next_page_token: token }) })
    }

    pub async fn report(&self, tenant: &str, id: &str) -> Result<pb::DriftReport, DriftError> {
        check_id("report_id", "drf", id)?;
        let rec = self
            .inner
            .records
            .get(tenant, REPORT, id)
            .await?
            .ok_or_else(|| DriftError::NotFound(format!("drift report '{id}'")))?;
        Ok(rec.decode()?)
    }

    // ------------------------------------------------------------ monitors

    /// The stored monitor with defaults filled in, or the defaults.
    async fn monitor_state(&self, tenant: &str, model: &str) -> Result<pb::Monitor, DriftError> {
        Ok(match self.inner.records.get(tenant, MONITOR, model).await? {
            Some(r) => with_defaults(r.decode()?),
            None => with_defaults(pb::Monitor { model: model.to_string(), ..Default::default() }),
        })
    }

    pub async fn monitor(&self, tenant: &str, model: &str) -> Result<pb::Monitor, DriftError> {
        if model.is_empty() {
            return Err(DriftError::invalid("model", "is required"));
        }
        self.inner.trainer.model(tenant, model).await?;
        self.monitor_state(tenant, model).await
    }

    pub async fn set_monitor(&self, tenant: &str, m: pb::Monitor) -> Result<pb::Monitor, DriftError> {
        if m.model.is_empty() {
            return Err(DriftError::invalid("monitor.model", "is required"));
        }
        let model = self.inner.trainer.model(tenant, &m.model).await?;
        let contract = self.inner.trainer.contract(tenant, &m.model, model.latest_contract_version).await?;
        check_monitor(&m, &contract)?;
        let mut m = with_defaults(m);
        m.updated_at = Some(to_proto(now_millis()));
        loop {
            let existing = self.inner.records.get(tenant, MONITOR, &m.model).await?;
            let write = match &existing {
                Some(r) => {
                    m.last_checked_at = r.decode::<pb::Monitor>()?.last_checked_at;
                    Write::update(r, "", &m)
                }
                None => {
                    m.last_checked_at = None;
                    Write::insert(MONITOR, &m.model, "", "", &m)
                }
            };
            let event = Write::event(
                "pulse.drift.monitor_set.v1",
                &m.model,
                serde_json::json!({"model": m.model, "features": m.features, "thresholds": m.thresholds.len(),
                    "paused": m.paused}),
            );
            if self.inner.records.apply(tenant, vec![write, event]).await? {
                return Ok(m);
            }
        }
    }

    pub async fn list_monitors(
        &self,
        tenant: &str,
        r: &pb::ListMonitorsRequest,
    ) -> Result<pb::ListMonitorsResponse, DriftError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let q = ListQuery { after: &page.page_token, limit, ..Default::default() };
        let monitors: Vec<pb::Monitor> = self
            .inner
            .records
            .list(tenant, MONITOR, q)
            .await?
            .iter()
            .map(|r| r.decode().map(with_defaults))
            .collect::<Result<_, _>>()?;
        let token = next_token(&monitors, limit, |m| &m.model);
        Ok(pb::ListMonitorsResponse { monitors, page: Some(PageResponse { next_page_token: token }) })
    }

    // ------------------------------------------------------------ baselines

    /// A baseline computed from its source: the features' statistics (a
    /// dataset version's own, or those of a prediction window), the outputs'
    /// and the version's test metrics.
    async fn compute_baseline(
        &self,
        tenant: &str,
        target: &Target,
        kind: BaselineSource,
        source: &Source,
        cap: u64,
    ) -> Result<pb::Baseline, DriftError> {
        let (features, outputs, dataset, window) = match source {
            Source::Dataset(d) => {
                let limit = Some(SCORED_ROWS as u64);
                let (mut g, version) =
                    self.gather_dataset(tenant, target, &[], d, None, true, SCORED_ROWS, limit).await?;
                let stats = version.manifest.unwrap_or_default().statistics;
                let features = target
                    .contract
                    .features
                    .iter()
                    .filter_map(|f| stats.iter().find(|s| s.column == f.name).cloned())
                    .collect();
                (features, g.output_statistics(), Some(d.clone()), None)
            }
            Source::Log { from_ms, to_ms, .. } => {
                let all: Vec<Monitored> = target
                    .contract
                    .features
                    .iter()
                    .map(|f| Monitored { name: f.name.clone(), kind: compare::feature_kind(f.r#type) })
                    .collect();
                let mut g = self.gather_log(tenant, target, &all, (*from_ms, *to_ms, cap), true, false).await?;
                if g.rows == 0 {
                    return Err(DriftError::Precondition(format!(
                        "version {} of model '{}' has no predictions in the window; pick a window with traffic",
                        target.version, target.model
                    )));
                }
                let features = g.columns.iter_mut().filter_map(Column::statistics).collect();
                let window = pb::TimeRange { from: Some(ms_ts(*from_ms)), to: to_ms.map(ms_ts) };
                (features, g.output_statistics(), None, Some(window))
            }
        };
        let m = target.mv.metrics.clone().unwrap_or_default();
        let reference_metrics =
            [("accuracy", m.accuracy), ("f1", m.f1), ("roc_auc", m.roc_auc), ("rmse", m.rmse), ("mae", m.mae)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect();
        Ok(pb::Baseline {
            model_version: Some(target.reference()),
            source: kind as i32,
            dataset,
            window,
            features,
            outputs,
            reference_metrics,
            created_at: Some(to_proto(now_millis())),
        })
    }

    pub async fn baseline(&self, tenant: &str, r: &pb::GetBaselineRequest) -> Result<pb::Baseline, DriftError> {
        let target = self.resolve(tenant, &r.model, r.version).await?;
        if let Some(rec) = self.inner.records.get(tenant, BASELINE, &baseline_id(&target.model, target.version)).await?
        {
            return Ok(rec.decode()?);
        }
        let source = Source::Dataset(self.training_dataset(&target)?);
        let mut b = self
            .compute_baseline(tenant, &target, BaselineSource::Training, &source, DEFAULT_MAX_REFERENCE_ROWS)
            .await?;
        b.created_at = target.mv.created_at;
        Ok(b)
    }

    pub async fn set_baseline(&self, tenant: &str, r: &pb::SetBaselineRequest) -> Result<pb::Baseline, DriftError> {
        use pb::set_baseline_request::Source as In;
        let pb::SetBaselineRequest { model, version, source } = r;
        let target = self.resolve(tenant, model, *version).await?;
        let cap = self.monitor_state(tenant, model).await?.options.unwrap_or_default().max_reference_rows;
        let (kind, source) = match source {
            None => return Err(DriftError::invalid("source", "is required: from_training, dataset or window")),
            Some(In::FromTraining(_)) => (BaselineSource::Training, Source::Dataset(self.training_dataset(&target)?)),
            Some(In::Dataset(d)) => (BaselineSource::DatasetVersion, Source::Dataset(check_dataset("dataset", d)?)),
            Some(In::Window(w)) => {
                let (from_ms, to_ms) = range_ms("window", w)?;
                // A baseline does not move: an open window ends now.
                let to_ms = Some(to_ms.unwrap_or_else(|| now_millis().timestamp_millis()));
                (BaselineSource::PredictionWindow, Source::Log { from_ms, to_ms, last_n: cap })
            }
        };
        let baseline = self.compute_baseline(tenant, &target, kind, &source, cap).await?;
        let id = baseline_id(&target.model, target.version);
        loop {
            let write = match self.inner.records.get(tenant, BASELINE, &id).await? {
                Some(rec) => Write::update(&rec, "", &baseline),
                None => Write::insert(BASELINE, &id, &target.model, "", &baseline),
            };
            let event = Write::event(
                "pulse.drift.baseline_set.v1",
                &id,
                serde_json::json!({"model": target.model, "version": target.version,
                    "source": kind.as_str_name().trim_start_matches("BASELINE_SOURCE_").to_lowercase()}),
            );
            if self.inner.records.apply(tenant, vec![write, event]).await? {
                return Ok(baseline);
            }
        }
    }
}
