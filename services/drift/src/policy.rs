//! Retraining policies: definitions, decisions and the scheduler.
//!
//! A policy (one per model) lists triggers; the scheduler evaluates every
//! tenant's policies each tick and records a [`pb::PolicyDecision`]. What
//! each trigger checks:
//!
//! - **drift**: the newest drift report of the model's production version,
//!   if not older than `max_report_age` (default 24 h) and judged (not
//!   INSUFFICIENT_DATA). A metric value breaches when it passes the
//!   condition's threshold (p-values: below it) or, without one, when the
//!   report marked it breached (the monitor's thresholds). Features (and
//!   `_prediction`) are filtered by `feature` and metrics by `metric`; met
//!   when at least `min_features` (default 1) features breach.
//! - **performance**: the same report's performance section: at least
//!   `min_feedback` (default 100) feedback records joined, and the metric's
//!   drop against the version's test metric (rise for RMSE and MAE) above
//!   `max_drop`.
//! - **feedback**: feedback records on the model's predictions made since
//!   the later of the production version's creation and the policy's last
//!   firing, counted up to `new_feedback` (a cheap, capped count).
//! - **freshness**: the retraining dataset (`retrain.dataset_id`, else the
//!   production version's) against its source. With a datasource handle
//!   ([`Policies::with_datasources`]) and a cursor field: `new_rows` is the
//!   source's count of rows past the newest version's upper cursor bound
//!   (an exact `count(*)` through EstimateSize) and `max_lag` the distance
//!   from that bound to the source's newest cursor (timestamp and date
//!   cursors). Otherwise `max_lag` falls back to "the newest version was
//!   committed longer than `max_lag` ago" and `new_rows` is not met (it
//!   cannot be known without the source). Met when any check that is set is.
//! - **schedule**: a cron tick in (the later of the scheduler's last
//!   evaluation, the last firing and the policy's last update, now].
//!
//! Firing happens once even with many replicas: the decision, the policy's
//! `last_fired_at` (compare-and-set on the policy record) and the event
//! `pulse.drift.policy_fired.v1` are one atomic write; the replica whose
//! write loses does nothing. The run is started after that through a
//! [`RunStarter`]; a decision keeps the status `starting` until its run id
//! is written back, and every tick retries those (the starter is idempotent
//! per decision id), so a crash in between is repaired.
//!
//! Only one replica ticks at a time: it holds a lease record (`lease` /
//! `scheduler`, holder and expiry, taken and renewed by compare-and-set);
//! the compare-and-set on firing keeps firing single even if two replicas
//! ever both believed they led.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulse_common::ids::new_id;
use pulse_common::paging::{next_token, page_size};
use pulse_common::records::{ListQuery, Record, RecordStore, Write};
use pulse_common::time::{from_millis, to_proto};
use pulse_inference::Inference;
use pulse_proto::common::v1::{PageRequest, PageResponse};
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::{DriftMetric, DriftStatus, TriggerCombination};
use pulse_proto::prost_types::{Duration as PbDuration, Timestamp};
use pulse_proto::trainer::v1::ModelStage;
use pulse_snapshot::Snapshots;
use pulse_trainer::Trainer;
use tokio::task::JoinHandle;

use crate::domain::{Drift, MONITOR, with_defaults};
use crate::error::DriftError;
use crate::schedule::Schedule;

/// Record kinds of the drift schema.
pub const POLICY: &str = "retraining_policy";
pub const DECISION: &str = "policy_decision";
pub const POLICY_STATE: &str = "policy_state";
pub const LEASE: &str = "lease";
/// The scheduler's lease: one record in a tenant of its own.
pub const LEASE_ID: &str = "scheduler";
pub const SYSTEM_TENANT: &str = "_system";

/// Policy record statuses (for the scheduler's cross-tenant listing).
const ACTIVE: &str = "active";
const PAUSED: &str = "paused";
/// Decision record statuses: fired and waiting for its run id, fired with a
/// run, fired in dry-run mode, not fired.
const STARTING: &str = "starting";
const FIRED: &str = "fired";
const DRY_RUN: &str = "dry_run";
const NOT_FIRED: &str = "not_fired";

const HOUR: i64 = 3600;
const DEFAULT_COOLDOWN_SECONDS: i64 = 24 * HOUR;
const DEFAULT_REPORT_AGE_SECONDS: i64 = 24 * HOUR;
const DEFAULT_MIN_FEEDBACK: u64 = 100;
/// Policies and monitors one tick looks at, across tenants.
const SCAN_LIMIT: u32 = 10_000;

/// The scheduler's memory of a policy (record `policy_state`, id = model).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PolicyState {
    /// When the scheduler last evaluated the policy.
    #[prost(int64, tag = "1")]
    pub evaluated_ms: i64,
    /// What the last recorded decision said, in short (see [`Outcome`]): a
    /// not-fired decision is recorded only when this changes.
    #[prost(string, tag = "2")]
    pub signature: String,
}

/// The scheduler lease.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    #[prost(string, tag = "1")]
    pub holder: String,
    #[prost(int64, tag = "2")]
    pub until_ms: i64,
}

/// Starts the pipeline run of a fired decision. Implementations must be
/// idempotent per decision id: a second call for the same decision answers
/// the run the first started.
#[async_trait::async_trait]
pub trait RunStarter: Send + Sync {
    async fn start_policy_run(
        &self,
        tenant: &str,
        policy: &pb::RetrainingPolicy,
        decision: &pb::PolicyDecision,
    ) -> Result<String, DriftError>;
}

// ---------------------------------------------------------------- helpers

fn ms_ts(ms: i64) -> Timestamp {
    to_proto(from_millis(ms))
}

fn dur_ms(d: &PbDuration) -> i64 {
    d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000
}

fn hours(h: i64) -> PbDuration {
    PbDuration { seconds: h * HOUR, nanos: 0 }
}

/// "2025-06-06T14:00Z" (seconds only when not zero).
fn when(ms: i64) -> String {
    let t = from_millis(ms);
    if ms % 60_000 == 0 { t.format("%Y-%m-%dT%H:%MZ").to_string() } else { t.format("%Y-%m-%dT%H:%M:%SZ").to_string() }
}

/// "90 min", "24 h", "2 d", "45 s".
fn span(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s % 86_400 == 0 && s >= 86_400 * 2 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 && s >= 3600 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Two decimals, or scientific for small values (p-values).
fn num(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 { format!("{v:.2e}") } else { format!("{v:.2}") }
}

fn metric_name(m: DriftMetric) -> &'static str {
    match m {
        DriftMetric::Unspecified => "any metric",
        DriftMetric::Psi => "PSI",
        DriftMetric::KsStatistic => "KS",
        DriftMetric::KsPValue => "KS p-value",
        DriftMetric::JensenShannon => "JS",
        DriftMetric::Wasserstein => "Wasserstein",
        DriftMetric::ChiSquareStatistic => "chi²",
        DriftMetric::ChiSquarePValue => "chi² p-value",
        DriftMetric::Accuracy => "accuracy",
        DriftMetric::F1 => "F1",
        DriftMetric::RocAuc => "ROC AUC",
        DriftMetric::Rmse => "RMSE",
        DriftMetric::Mae => "MAE",
    }
}

/// P-values breach below their threshold, everything else above.
fn breaches_below(m: DriftMetric) -> bool {
    matches!(m, DriftMetric::KsPValue | DriftMetric::ChiSquarePValue)
}

fn is_performance(m: DriftMetric) -> bool {
    matches!(m, DriftMetric::Accuracy | DriftMetric::F1 | DriftMetric::RocAuc | DriftMetric::Rmse | DriftMetric::Mae)
}

fn kind_name(k: &pb::policy_trigger::Kind) -> &'static str {
    use pb::policy_trigger::Kind as K;
    match k {
        K::Drift(_) => "drift",
        K::Performance(_) => "performance",
        K::Feedback(_) => "feedback",
        K::Freshness(_) => "freshness",
        K::Schedule(_) => "schedule",
    }
}

fn policy_status(p: &pb::RetrainingPolicy) -> &'static str {
    if p.paused { PAUSED } else { ACTIVE }
}

fn result(trigger: &str, met: bool, reason: impl Into<String>) -> pb::TriggerResult {
    pb::TriggerResult { trigger: trigger.to_string(), met, reason: reason.into(), observed: None, threshold: None }
}

// ---------------------------------------------------------------- validation

fn check_duration(field: &str, d: &PbDuration, positive: bool) -> Result<(), DriftError> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(DriftError::invalid(field, "must not be negative"));
    }
    if positive && d.seconds == 0 && d.nanos == 0 {
        return Err(DriftError::invalid(field, "must be a positive duration"));
    }
    Ok(())
}

fn check_trigger_name(field: &str, name: &str) -> Result<(), DriftError> {
    if name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(DriftError::invalid(
            field,
            format!("'{name}' must be 1 to 63 characters of a-z, 0-9, '_' and '-'"),
        ));
    }
    Ok(())
}

/// Checks a policy and fills in its defaults: trigger names (the kind, then
/// `drift_2`, …), combination ANY, cooldown 24 h, drift `min_features` 1 and
/// `max_report_age` 24 h, performance `min_feedback` 100, schedule timezone
/// "UTC". Every error names its field, e.g.
/// `policy.triggers[2].schedule.cron`.
pub fn validate(policy: &pb::RetrainingPolicy) -> Result<pb::RetrainingPolicy, DriftError> {
    use pb::policy_trigger::Kind as K;
    let mut p = policy.clone();
    if p.model.trim().is_empty() {
        return Err(DriftError::invalid("policy.model", "is required"));
    }
    if p.triggers.is_empty() {
        return Err(DriftError::invalid(
            "policy.triggers",
            "needs at least one trigger: drift, performance, feedback, freshness or schedule",
        ));
    }
    match TriggerCombination::try_from(p.combine) {
        Ok(TriggerCombination::Unspecified) => p.combine = TriggerCombination::Any as i32,
        Ok(_) => {}
        Err(_) => return Err(DriftError::invalid("policy.combine", format!("{} is not ANY or ALL", p.combine))),
    }
    match &p.cooldown {
        None => p.cooldown = Some(hours(DEFAULT_COOLDOWN_SECONDS / HOUR)),
        Some(d) => check_duration("policy.cooldown", d, false)?,
    }
    // Explicit names first, so defaults step around them.
    for (i, t) in p.triggers.iter().enumerate() {
        if !t.name.is_empty() {
            check_trigger_name(&format!("policy.triggers[{i}].name"), &t.name)?;
            if let Some(j) = p.triggers[..i].iter().position(|u| u.name == t.name) {
                return Err(DriftError::invalid(
                    format!("policy.triggers[{i}].name"),
                    format!("'{}' is already the name of triggers[{j}]; names are unique", t.name),
                ));
            }
        }
    }
    for i in 0..p.triggers.len() {
        let f = format!("policy.triggers[{i}]");
        let Some(kind) = p.triggers[i].kind.clone() else {
            return Err(DriftError::invalid(
                f,
                "has no condition: set one of drift, performance, feedback, freshness or schedule",
            ));
        };
        if p.triggers[i].name.is_empty() {
            let base = kind_name(&kind);
            let taken = |n: &str| p.triggers.iter().any(|t| t.name == n);
            let mut name = base.to_string();
            let mut n = 1;
            while taken(&name) {
                n += 1;
                name = format!("{base}_{n}");
            }
            p.triggers[i].name = name;
        }
        let kind = match kind {
            K::Drift(mut c) => {
                let metric = DriftMetric::try_from(c.metric).map_err(|_| {
                    DriftError::invalid(format!("{f}.drift.metric"), format!("{} is unknown", c.metric))
                })?;
                if is_performance(metric) {
                    return Err(DriftError::invalid(
                        format!("{f}.drift.metric"),
                        format!("{} is a performance metric: use a performance trigger", metric.as_str_name()),
                    ));
                }
                if let Some(t) = c.threshold {
                    if !t.is_finite() || t < 0.0 {
                        return Err(DriftError::invalid(
                            format!("{f}.drift.threshold"),
                            format!("{t} must be a finite number ≥ 0"),
                        ));
                    }
                    if metric == DriftMetric::Unspecified {
                        return Err(DriftError::invalid(
                            format!("{f}.drift.threshold"),
                            "needs a metric: a threshold is in the metric's units (e.g. PSI 0.2)",
                        ));
                    }
                    if breaches_below(metric) && t > 1.0 {
                        return Err(DriftError::invalid(
                            format!("{f}.drift.threshold"),
                            format!("{t} is not a p-value (0 to 1)"),
                        ));
                    }
                }
                if c.min_features == 0 {
                    c.min_features = 1;
                }
                match &c.max_report_age {
                    None => c.max_report_age = Some(hours(DEFAULT_REPORT_AGE_SECONDS / HOUR)),
                    Some(d) => check_duration(&format!("{f}.drift.max_report_age"), d, true)?,
                }
                K::Drift(c)
            }
            K::Performance(mut c) => {
                let metric = DriftMetric::try_from(c.metric).unwrap_or(DriftMetric::Unspecified);
                if !is_performance(metric) {
                    return Err(DriftError::invalid(
                        format!("{f}.performance.metric"),
                        "must be ACCURACY, F1, ROC_AUC, RMSE or MAE",
                    ));
                }
                if !c.max_drop.is_finite() || c.max_drop <= 0.0 {
                    return Err(DriftError::invalid(
                        format!("{f}.performance.max_drop"),
                        format!("{} must be a finite number > 0, in the metric's units (e.g. 0.05)", c.max_drop),
                    ));
                }
                if c.min_feedback == 0 {
                    c.min_feedback = DEFAULT_MIN_FEEDBACK;
                }
                K::Performance(c)
            }
            K::Feedback(c) => {
                if c.new_feedback == 0 {
                    return Err(DriftError::invalid(format!("{f}.feedback.new_feedback"), "must be at least 1"));
                }
                K::Feedback(c)
            }
            K::Freshness(c) => {
                if c.new_rows == 0 && c.max_lag.is_none() {
                    return Err(DriftError::invalid(format!("{f}.freshness"), "set new_rows, max_lag or both"));
                }
                if let Some(d) = &c.max_lag {
                    check_duration(&format!("{f}.freshness.max_lag"), d, true)?;
                }
                K::Freshness(c)
            }
            K::Schedule(mut c) => {
                let s = Schedule::parse(&format!("{f}.schedule.cron"), &c.cron, &c.timezone)?;
                c.cron = s.expression().to_string();
                c.timezone = s.timezone().to_string();
                K::Schedule(c)
            }
        };
        p.triggers[i].kind = Some(kind);
    }
    if let Some(r) = &p.retrain {
        let stage = ModelStage::try_from(r.promote_to).unwrap_or(ModelStage::Archived);
        if stage == ModelStage::Archived {
            return Err(DriftError::invalid(
                "policy.retrain.promote_to",
                "must be PRODUCTION (the default), STAGING or CANDIDATE",
            ));
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------- policies

#[derive(Clone)]
pub struct Policies {
    inner: Arc<Inner>,
}

struct Inner {
    drift: Drift,
    inference: Inference,
    trainer: Trainer,
    snapshots: Snapshots,
    datasources: Option<pulse_datasource::Datasources>,
    records: Arc<dyn RecordStore>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").finish_non_exhaustive()
    }
}

/// What a policy's evaluation came to, before it is recorded.
#[derive(Debug, Clone)]
struct Outcome {
    decision: pb::PolicyDecision,
    /// The decision in short, for "record a not-fired decision only when
    /// this changes": the policy revision and paused, cooldown or which
    /// triggers were met.
    signature: String,
}

/// What one scheduler tick did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TickSummary {
    pub policies_evaluated: usize,
    /// Decisions recorded (fired or not) by this tick.
    pub decisions_recorded: usize,
    /// Ids of the decisions this tick fired (dry runs included).
    pub fired: Vec<String>,
    /// Runs started (or confirmed) for fired decisions.
    pub runs_started: usize,
    pub monitors_checked: usize,
}

/// Memoized reads shared by the triggers of one policy's evaluation.
#[derive(Default)]
struct Facts {
    production: Option<Result<pulse_proto::trainer::v1::ModelVersion, String>>,
    report: Option<Result<Option<pb::DriftReport>, String>>,
}

impl Policies {
    pub fn new(
        drift: Drift,
        inference: Inference,
        trainer: Trainer,
        snapshots: Snapshots,
        records: Arc<dyn RecordStore>,
    ) -> Self {
        Self { inner: Arc::new(Inner { drift, inference, trainer, snapshots, datasources: None, records }) }
    }

    /// Lets freshness triggers ask the source (EstimateSize) how many rows
    /// are past the newest dataset version's cursor.
    pub fn with_datasources(self, datasources: pulse_datasource::Datasources) -> Self {
        let i = &self.inner;
        Self {
            inner: Arc::new(Inner {
                drift: i.drift.clone(),
                inference: i.inference.clone(),
                trainer: i.trainer.clone(),
                snapshots: i.snapshots.clone(),
                datasources: Some(datasources),
                records: i.records.clone(),
            }),
        }
    }

    pub fn records(&self) -> &Arc<dyn RecordStore> {
        &self.inner.records
    }

    // ------------------------------------------------------------ definitions

    /// Creates or replaces the model's policy (revision + 1); the model must
    /// exist. `last_fired_at` is kept.
    pub async fn set(&self, tenant: &str, policy: pb::RetrainingPolicy) -> Result<pb::RetrainingPolicy, DriftError> {
        let mut p = validate(&policy)?;
        self.inner.trainer.model(tenant, &p.model).await?;
        loop {
            let existing = self.inner.records.get(tenant, POLICY, &p.model).await?;
            p.updated_at = Some(to_proto(pulse_common::time::now_millis()));
            let write = match &existing {
                Some(r) => {
                    let old: pb::RetrainingPolicy = r.decode()?;
                    p.revision = old.revision + 1;
                    p.last_fired_at = old.last_fired_at;
                    Write::update(r, policy_status(&p), &p)
                }
                None => {
                    p.revision = 1;
                    p.last_fired_at = None;
                    Write::insert(POLICY, &p.model, "", policy_status(&p), &p)
                }
            };
            let event = Write::event(
                "pulse.drift.policy_set.v1",
                &p.model,
                serde_json::json!({
                    "model": p.model,
                    "revision": p.revision,
                    "triggers": p.triggers.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
                    "paused": p.paused,
                    "dry_run": p.dry_run,
                }),
            );
            if self.inner.records.apply(tenant, vec![write, event]).await? {
                return Ok(p);
            }
        }
    }

    async fn policy_record(&self, tenant: &str, model: &str) -> Result<(Record, pb::RetrainingPolicy), DriftError> {
        if model.is_empty() {
            return Err(DriftError::invalid("model", "is required"));
        }
        let rec = self.inner.records.get(tenant, POLICY, model).await?.ok_or_else(|| {
            DriftError::NotFound(format!("retraining policy for model '{model}' (set one with SetRetrainingPolicy)"))
        })?;
        let p = rec.decode()?;
        Ok((rec, p))
    }

    pub async fn get(&self, tenant: &str, model: &str) -> Result<pb::RetrainingPolicy, DriftError> {
        Ok(self.policy_record(tenant, model).await?.1)
    }

    pub async fn list(
        &self,
        tenant: &str,
        r: &pb::ListRetrainingPoliciesRequest,
    ) -> Result<pb::ListRetrainingPoliciesResponse, DriftError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let q = ListQuery { after: &page.page_token, limit, ..Default::default() };
        let policies: Vec<pb::RetrainingPolicy> =
            self.inner.records.list(tenant, POLICY, q).await?.iter().map(|r| r.decode()).collect::<Result<_, _>>()?;
        let token = next_token(&policies, limit, |p| &p.model);
        Ok(pb::ListRetrainingPoliciesResponse { policies, page: Some(PageResponse { next_page_token: token }) })
    }

    async fn all(&self, tenant: &str) -> Result<Vec<pb::RetrainingPolicy>, DriftError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let r = pb::ListRetrainingPoliciesRequest {
                page: Some(PageRequest { page_size: 1000, page_token: token.clone() }),
            };
            let page = self.list(tenant, &r).await?;
            out.extend(page.policies);
            token = page.page.unwrap_or_default().next_page_token;
            if token.is_empty() {
                return Ok(out);
            }
        }
    }

    // ------------------------------------------------------------ decisions

    /// Evaluates the model's policy (empty: every policy of the tenant) as
    /// the scheduler would at `now`, cooldown included. Records nothing,
    /// starts nothing; the decisions have no id.
    pub async fn evaluate(
        &self,
        tenant: &str,
        model: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<pb::PolicyDecision>, DriftError> {
        let policies = if model.is_empty() { self.all(tenant).await? } else { vec![self.get(tenant, model).await?] };
        let mut out = Vec::with_capacity(policies.len());
        for p in &policies {
            let state = self.state(tenant, &p.model).await?.map(|(_, s)| s).unwrap_or_default();
            out.push(self.decide(tenant, p, &state, now.timestamp_millis()).await.decision);
        }
        Ok(out)
    }

    /// Recorded decisions, newest first.
    pub async fn decisions(
        &self,
        tenant: &str,
        r: &pb::ListPolicyDecisionsRequest,
    ) -> Result<pb::ListPolicyDecisionsResponse, DriftError> {
        let pb::ListPolicyDecisionsRequest { model, fired_only, decided, page } = r;
        let page = page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let (from, to) = match decided {
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
                after: &after,
                limit: 500,
                newest_first: true,
                ..Default::default()
            };
            let batch = self.inner.records.list(tenant, DECISION, q).await?;
            if batch.is_empty() {
                break;
            }
            for rec in &batch {
                after = rec.id.clone();
                if *fired_only && rec.status == NOT_FIRED {
                    continue;
                }
                let d: pb::PolicyDecision = rec.decode()?;
                let at = d.decided_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
                if to.is_some_and(|to| at >= to) {
                    continue;
                }
                if from.is_some_and(|from| at < from) {
                    break 'scan;
                }
                out.push(d);
                if out.len() == limit as usize {
                    break 'scan;
                }
            }
        }
        let token = next_token(&out, limit, |d| &d.id);
        Ok(pb::ListPolicyDecisionsResponse { decisions: out, page: Some(PageResponse { next_page_token: token }) })
    }

    async fn state(&self, tenant: &str, model: &str) -> Result<Option<(Record, PolicyState)>, DriftError> {
        Ok(match self.inner.records.get(tenant, POLICY_STATE, model).await? {
            Some(r) => {
                let s = r.decode()?;
                Some((r, s))
            }
            None => None,
        })
    }

    // ------------------------------------------------------------ evaluation

    /// The policy's decision at `now_ms` (no id, nothing recorded).
    async fn decide(&self, tenant: &str, p: &pb::RetrainingPolicy, state: &PolicyState, now_ms: i64) -> Outcome {
        let mut decision = pb::PolicyDecision {
            id: String::new(),
            model: p.model.clone(),
            policy_revision: p.revision,
            fired: false,
            dry_run: false,
            triggers: Vec::new(),
            reason: String::new(),
            pipeline_run_id: String::new(),
            decided_at: Some(ms_ts(now_ms)),
        };
        let rev = p.revision;
        if p.paused {
            decision.reason = "not fired: paused".into();
            return Outcome { decision, signature: format!("r{rev}:paused") };
        }
        let mut facts = Facts::default();
        let mut results = Vec::with_capacity(p.triggers.len());
        for t in &p.triggers {
            results.push(self.trigger(tenant, p, t, state, now_ms, &mut facts).await);
        }
        let explain = |met: bool| {
            results
                .iter()
                .filter(|t| t.met == met)
                .map(|t| format!("{}: {}", t.trigger, t.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let met = results.iter().filter(|t| t.met).count();
        let all = p.combine == TriggerCombination::All as i32;
        let would_fire = if all { met == results.len() } else { met > 0 };
        let (reason, signature) = if !would_fire {
            let reason = if all && met > 0 {
                format!("not fired: {} of {} triggers not met ({})", results.len() - met, results.len(), explain(false))
            } else {
                format!("not fired: no trigger met ({})", explain(false))
            };
            let which: Vec<&str> = results.iter().filter(|t| t.met).map(|t| t.trigger.as_str()).collect();
            (reason, format!("r{rev}:not_met:{}", which.join(",")))
        } else {
            let fired_ms = p.last_fired_at.as_ref().map(pulse_common::time::proto_millis);
            let cooldown_ms = p.cooldown.as_ref().map(dur_ms).unwrap_or(DEFAULT_COOLDOWN_SECONDS * 1000);
            match fired_ms {
                Some(fired) if fired + cooldown_ms > now_ms => (
                    format!(
                        "not fired: in cooldown until {} (fired {}, cooldown {}); met: {}",
                        when(fired + cooldown_ms),
                        when(fired),
                        span(cooldown_ms),
                        explain(true)
                    ),
                    format!("r{rev}:cooldown:{fired}"),
                ),
                _ => {
                    decision.fired = true;
                    decision.dry_run = p.dry_run;
                    let head = if p.dry_run { "fired (dry run)" } else { "fired" };
                    (format!("{head}: {}", explain(true)), format!("r{rev}:fired:{now_ms}"))
                }
            }
        };
        decision.reason = reason;
        decision.triggers = results;
        Outcome { decision, signature }
    }

    async fn production(
        &self,
        tenant: &str,
        model: &str,
        facts: &mut Facts,
    ) -> Result<pulse_proto::trainer::v1::ModelVersion, String> {
        if facts.production.is_none() {
            let r = self
                .inner
                .trainer
                .model_version(tenant, model, 0, ModelStage::Production)
                .await
                .map_err(|e| pulse_common::error::ServiceError::public_message(&e));
            facts.production = Some(r);
        }
        facts.production.clone().unwrap_or_else(|| Err("unreachable".into()))
    }

    /// The newest drift report of the production version.
    async fn latest_report(
        &self,
        tenant: &str,
        model: &str,
        facts: &mut Facts,
    ) -> Result<Option<pb::DriftReport>, String> {
        if facts.report.is_none() {
            let r = match self.production(tenant, model, facts).await {
                Err(e) => Err(e),
                Ok(mv) => {
                    let version = mv.r#ref.as_ref().map(|r| r.version).unwrap_or_default();
                    let req = pb::ListDriftReportsRequest {
                        model: model.to_string(),
                        version,
                        page: Some(PageRequest { page_size: 1, page_token: String::new() }),
                        ..Default::default()
                    };
                    match self.inner.drift.list_reports(tenant, &req).await {
                        Ok(r) => Ok(r.reports.into_iter().next()),
                        Err(e) => Err(pulse_common::error::ServiceError::public_message(&e)),
                    }
                }
            };
            facts.report = Some(r);
        }
        facts.report.clone().unwrap_or_else(|| Err("unreachable".into()))
    }

    /// The newest report if fresh and judged, else why not.
    async fn usable_report(
        &self,
        tenant: &str,
        model: &str,
        max_age_ms: i64,
        now_ms: i64,
        facts: &mut Facts,
    ) -> Result<pb::DriftReport, String> {
        let report = self.latest_report(tenant, model, facts).await?.ok_or_else(|| {
            "no drift report of the production version yet (the monitor or CheckDrift makes one)".to_string()
        })?;
        let at = report.created_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
        if at + max_age_ms < now_ms {
            return Err(format!(
                "the newest drift report ({}) is from {}, older than {}",
                report.id,
                when(at),
                span(max_age_ms)
            ));
        }
        if report.status == DriftStatus::InsufficientData as i32 {
            return Err(format!(
                "the newest drift report ({}) had too few rows to judge ({})",
                report.id, report.current_rows
            ));
        }
        Ok(report)
    }

    async fn trigger(
        &self,
        tenant: &str,
        p: &pb::RetrainingPolicy,
        t: &pb::PolicyTrigger,
        state: &PolicyState,
        now_ms: i64,
        facts: &mut Facts,
    ) -> pb::TriggerResult {
        use pb::policy_trigger::Kind as K;
        let name = t.name.as_str();
        match &t.kind {
            None => result(name, false, "no condition"),
            Some(K::Drift(c)) => {
                let age = c.max_report_age.as_ref().map(dur_ms).unwrap_or(DEFAULT_REPORT_AGE_SECONDS * 1000);
                match self.usable_report(tenant, &p.model, age, now_ms, facts).await {
                    Ok(r) => drift_result(name, c, &r),
                    Err(why) => result(name, false, why),
                }
            }
            Some(K::Performance(c)) => {
                match self.usable_report(tenant, &p.model, DEFAULT_REPORT_AGE_SECONDS * 1000, now_ms, facts).await {
                    Ok(r) => performance_result(name, c, &r),
                    Err(why) => result(name, false, why),
                }
            }
            Some(K::Feedback(c)) => self.feedback_result(tenant, p, name, c, facts).await,
            Some(K::Freshness(c)) => self.freshness_result(tenant, p, name, c, now_ms, facts).await,
            Some(K::Schedule(c)) => schedule_result(name, c, p, state, now_ms),
        }
    }

    async fn feedback_result(
        &self,
        tenant: &str,
        p: &pb::RetrainingPolicy,
        name: &str,
        c: &pb::FeedbackCondition,
        facts: &mut Facts,
    ) -> pb::TriggerResult {
        let mv = match self.production(tenant, &p.model, facts).await {
            Ok(mv) => mv,
            Err(e) => return result(name, false, e),
        };
        let created = mv.created_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
        let fired = p.last_fired_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
        let since = created.max(fired);
        let need = c.new_feedback.max(1);
        match self.inner.inference.count_feedback(tenant, &p.model, since, need).await {
            Err(e) => result(name, false, format!("feedback not counted: {}", e)),
            Ok(n) => {
                let what = if fired > created { "since the last firing" } else { "since the production version" };
                let mut r = if n >= need {
                    result(name, true, format!("{n} new feedback ≥ {need} ({what})"))
                } else {
                    result(name, false, format!("{n} new feedback < {need} ({what})"))
                };
                (r.observed, r.threshold) = (Some(n as f64), Some(need as f64));
                r
            }
        }
    }

    async fn freshness_result(
        &self,
        tenant: &str,
        p: &pb::RetrainingPolicy,
        name: &str,
        c: &pb::FreshnessCondition,
        now_ms: i64,
        facts: &mut Facts,
    ) -> pb::TriggerResult {
        let dataset = match p.retrain.as_ref().map(|r| r.dataset_id.clone()).filter(|d| !d.is_empty()) {
            Some(d) => d,
            None => match self.production(tenant, &p.model, facts).await {
                Ok(mv) => match mv.dataset.map(|d| d.dataset_id).filter(|d| !d.is_empty()) {
                    Some(d) => d,
                    None => {
                        return result(name, false, "the production version names no dataset; set retrain.dataset_id");
                    }
                },
                Err(e) => return result(name, false, e),
            },
        };
        let snapshots = &self.inner.snapshots;
        let version = match snapshots.dataset(tenant, &dataset).await {
            Ok(d) if d.latest_version == 0 => {
                return result(name, false, format!("dataset '{dataset}' has no version"));
            }
            Ok(d) => snapshots.version(tenant, &dataset, d.latest_version).await,
            Err(e) => Err(e),
        };
        let version = match version {
            Ok(v) => v,
            Err(e) => {
                return result(name, false, pulse_common::error::ServiceError::public_message(&e));
            }
        };
        let committed = version.committed_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
        let source = version.manifest.as_ref().and_then(|m| m.source.clone()).unwrap_or_default();
        let until = source.cursor_range.as_ref().and_then(|r| r.until.clone()).filter(|v| v.kind.is_some());
        let label = format!("{dataset}@{}", version.version);

        // The source side, when it can be asked.
        let mut source_view: Option<Result<(u64, Option<pulse_proto::datasource::v1::Value>), String>> = None;
        if let (Some(ds), false) = (&self.inner.datasources, source.cursor_field.is_empty()) {
            let req = pulse_proto::datasource::v1::EstimateSizeRequest {
                id: source.datasource_id.clone(),
                objects: vec![source.object.clone()],
                exact: true,
                cursor_field: source.cursor_field.clone(),
                cursor_after: until.clone(),
            };
            source_view = Some(match ds.estimate(tenant, req).await {
                Ok(r) => {
                    let o = r.objects.into_iter().next().unwrap_or_default();
                    Ok((o.rows, o.cursor_max.filter(|v| v.kind.is_some())))
                }
                Err(e) => Err(format!("the source could not be asked: {e}")),
            });
        }
        let mut checks: Vec<pb::TriggerResult> = Vec::new();
        if c.new_rows > 0 {
            let r = match &source_view {
                Some(Ok((rows, _))) => {
                    let mut r = if *rows >= c.new_rows {
                        result(name, true, format!("{rows} source rows past {label}'s cursor ≥ {}", c.new_rows))
                    } else {
                        result(name, false, format!("{rows} source rows past {label}'s cursor < {}", c.new_rows))
                    };
                    (r.observed, r.threshold) = (Some(*rows as f64), Some(c.new_rows as f64));
                    r
                }
                Some(Err(e)) => result(name, false, e.clone()),
                None if source.cursor_field.is_empty() => {
                    result(name, false, format!("{label} has no cursor field: new rows cannot be counted"))
                }
                None => result(name, false, "new rows need the source, and this scheduler has no datasource access"),
            };
            checks.push(r);
        }
        if let Some(lag) = &c.max_lag {
            let lag_ms = dur_ms(lag);
            let cursor_lag = match (&source_view, &until) {
                (Some(Ok((_, Some(max)))), Some(until)) => cursor_distance_ms(until, max),
                _ => None,
            };
            let mut r = match cursor_lag {
                Some(d) if d >= lag_ms => result(
                    name,
                    true,
                    format!("the source's newest cursor is {} past {label}'s ≥ {}", span(d), span(lag_ms)),
                ),
                Some(d) => result(
                    name,
                    false,
                    format!("the source's newest cursor is {} past {label}'s < {}", span(d), span(lag_ms)),
                ),
                None => {
                    let age = now_ms - committed;
                    let op = if age >= lag_ms { "≥" } else { "<" };
                    result(
                        name,
                        age >= lag_ms,
                        format!("{label} was committed {} ago {op} {}", span(age.max(0)), span(lag_ms)),
                    )
                }
            };
            let observed = cursor_lag.unwrap_or(now_ms - committed);
            (r.observed, r.threshold) = (Some(observed as f64 / 1000.0), Some(lag_ms as f64 / 1000.0));
            checks.push(r);
        }
        // Met when any check is; the first met (else the first) speaks.
        let pick = checks.iter().position(|r| r.met).unwrap_or(0);
        let mut r = checks.swap_remove(pick);
        if let Some(other) = checks.first() {
            r.reason = format!("{}; {}", r.reason, other.reason);
        }
        r
    }

    // ------------------------------------------------------------ scheduling

    /// Evaluates one policy as the scheduler and records the outcome: a
    /// fired decision with the policy's `last_fired_at` and the event in one
    /// write, or (when it changed) a not-fired decision. `None` when
    /// another replica got there first.
    async fn evaluate_and_record(
        &self,
        tenant: &str,
        model: &str,
        now_ms: i64,
    ) -> Result<Option<pb::PolicyDecision>, DriftError> {
        let Some(prec) = self.inner.records.get(tenant, POLICY, model).await? else { return Ok(None) };
        let mut policy: pb::RetrainingPolicy = prec.decode()?;
        let existing = self.state(tenant, model).await?;
        let state = existing.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        let Outcome { mut decision, signature } = self.decide(tenant, &policy, &state, now_ms).await;
        let new_state = PolicyState {
            evaluated_ms: now_ms,
            signature: if decision.fired || signature != state.signature { signature.clone() } else { state.signature },
        };
        let mut writes = vec![match &existing {
            Some((rec, _)) => Write::update(rec, "", &new_state),
            None => Write::insert(POLICY_STATE, model, "", "", &new_state),
        }];
        let record =
            decision.fired || signature != existing.as_ref().map(|(_, s)| s.signature.clone()).unwrap_or_default();
        if record {
            decision.id = new_id("dec");
            let status = match (decision.fired, decision.dry_run) {
                (true, true) => DRY_RUN,
                (true, false) => STARTING,
                (false, _) => NOT_FIRED,
            };
            writes.push(Write::insert(DECISION, &decision.id, model, status, &decision));
        }
        if decision.fired {
            policy.last_fired_at = decision.decided_at;
            writes.push(Write::update(&prec, policy_status(&policy), &policy));
            writes.push(Write::event(
                "pulse.drift.policy_fired.v1",
                model,
                serde_json::json!({
                    "decision_id": decision.id,
                    "model": model,
                    "policy_revision": decision.policy_revision,
                    "dry_run": decision.dry_run,
                    "reason": decision.reason,
                    "triggers": decision.triggers.iter().filter(|t| t.met).map(|t| t.trigger.clone())
                        .collect::<Vec<_>>(),
                }),
            ));
        }
        if !self.inner.records.apply(tenant, writes).await? {
            // Another replica evaluated (or fired) this policy meanwhile.
            return Ok(None);
        }
        Ok(record.then_some(decision))
    }

    /// Starts (or confirms) the run of a fired decision still `starting`
    /// and writes its id into the decision.
    async fn start_run(
        &self,
        tenant: &str,
        decision_id: &str,
        starter: &dyn RunStarter,
    ) -> Result<Option<String>, DriftError> {
        let Some(rec) = self.inner.records.get(tenant, DECISION, decision_id).await? else { return Ok(None) };
        if rec.status != STARTING {
            return Ok(None);
        }
        let decision: pb::PolicyDecision = rec.decode()?;
        let policy = self.get(tenant, &decision.model).await?;
        let run_id = starter.start_policy_run(tenant, &policy, &decision).await?;
        let mut rec = rec;
        loop {
            let mut d: pb::PolicyDecision = rec.decode()?;
            d.pipeline_run_id = run_id.clone();
            let event = Write::event(
                "pulse.drift.policy_run_started.v1",
                &d.id,
                serde_json::json!({"decision_id": d.id, "model": d.model, "pipeline_run_id": run_id}),
            );
            if self.inner.records.apply(tenant, vec![Write::update(&rec, FIRED, &d), event]).await? {
                return Ok(Some(run_id));
            }
            match self.inner.records.get(tenant, DECISION, decision_id).await? {
                Some(r) if r.status == STARTING => rec = r,
                // Another replica wrote it.
                _ => return Ok(None),
            }
        }
    }
}

fn drift_result(name: &str, c: &pb::DriftCondition, r: &pb::DriftReport) -> pb::TriggerResult {
    struct Breach<'a> {
        feature: &'a str,
        metric: DriftMetric,
        value: f64,
        threshold: Option<f64>,
    }
    let describe = |b: &Breach, breached: bool| {
        let below = breaches_below(b.metric);
        let op = match (breached, below) {
            (true, false) => ">",
            (true, true) => "<",
            (false, false) => "≤",
            (false, true) => "≥",
        };
        match b.threshold {
            Some(t) => format!("{}({}) {} {op} {}", metric_name(b.metric), b.feature, num(b.value), num(t)),
            None => format!("{}({}) {}", metric_name(b.metric), b.feature, num(b.value)),
        }
    };
    let mut breaches: Vec<Breach> = Vec::new();
    let mut watched: Option<Breach> = None;
    for f in r.features.iter().chain(r.prediction.as_ref()) {
        if !c.feature.is_empty() && f.feature != c.feature {
            continue;
        }
        for v in &f.metrics {
            if c.metric != 0 && v.metric != c.metric {
                continue;
            }
            let metric = DriftMetric::try_from(v.metric).unwrap_or_default();
            let (threshold, breached) = match c.threshold {
                Some(t) => (Some(t), if breaches_below(metric) { v.value < t } else { v.value > t }),
                None => (v.threshold, v.breached),
            };
            let b = Breach { feature: &f.feature, metric, value: v.value, threshold };
            if breached {
                breaches.push(b);
            } else if watched.is_none() && threshold.is_some() {
                watched = Some(b);
            }
        }
    }
    let mut drifted: Vec<&str> = Vec::new();
    for b in &breaches {
        if !drifted.contains(&b.feature) {
            drifted.push(b.feature);
        }
    }
    let need = c.min_features.max(1) as usize;
    let met = drifted.len() >= need;
    let mut reason = match breaches.first() {
        Some(b) => {
            let more = breaches.len() - 1;
            if more > 0 { format!("{} (+{more} more breaches)", describe(b, true)) } else { describe(b, true) }
        }
        None => match &watched {
            Some(w) => format!("no threshold breached in {}: {}", r.id, describe(w, false)),
            None => format!("no threshold breached in {}", r.id),
        },
    };
    if need > 1 || (!met && !breaches.is_empty()) {
        let op = if met { "≥" } else { "<" };
        reason = format!("{reason}; {} drifted feature(s) {op} {need}", drifted.len());
    }
    let mut out = result(name, met, reason);
    let single = !c.feature.is_empty() && c.metric != 0;
    if single {
        let b = breaches.first().or(watched.as_ref());
        (out.observed, out.threshold) = (b.map(|b| b.value), b.and_then(|b| b.threshold));
    } else {
        (out.observed, out.threshold) = (Some(drifted.len() as f64), Some(need as f64));
    }
    out
}

fn performance_result(name: &str, c: &pb::PerformanceCondition, r: &pb::DriftReport) -> pb::TriggerResult {
    let metric = DriftMetric::try_from(c.metric).unwrap_or_default();
    let mname = metric_name(metric);
    let Some(p) = &r.performance else {
        return result(name, false, format!("the newest drift report ({}) measured no performance", r.id));
    };
    let need = if c.min_feedback == 0 { DEFAULT_MIN_FEEDBACK } else { c.min_feedback };
    if p.feedback_count < need {
        let mut out = result(name, false, format!("{} feedback < {need} needed to judge {mname}", p.feedback_count));
        (out.observed, out.threshold) = (None, Some(c.max_drop));
        return out;
    }
    let Some(v) = p.metrics.iter().find(|m| m.metric == c.metric) else {
        return result(
            name,
            false,
            format!("the newest drift report ({}) has no {mname} ({} feedback)", r.id, p.feedback_count),
        );
    };
    let Some(reference) = v.reference_value else {
        return result(name, false, format!("no {mname} from the version's training to compare with"));
    };
    let higher_better = matches!(metric, DriftMetric::Accuracy | DriftMetric::F1 | DriftMetric::RocAuc);
    let drop = if higher_better { reference - v.value } else { v.value - reference };
    let met = drop > c.max_drop;
    let verb = if higher_better { "dropped" } else { "rose" };
    let op = if met { ">" } else { "≤" };
    let mut out = result(
        name,
        met,
        format!(
            "{mname} {verb} {} ({} → {}, {} feedback) {op} {}",
            num(drop),
            num(reference),
            num(v.value),
            p.feedback_count,
            num(c.max_drop)
        ),
    );
    (out.observed, out.threshold) = (Some(drop), Some(c.max_drop));
    out
}

fn schedule_result(
    name: &str,
    c: &pb::ScheduleCondition,
    p: &pb::RetrainingPolicy,
    state: &PolicyState,
    now_ms: i64,
) -> pb::TriggerResult {
    let schedule = match Schedule::parse("cron", &c.cron, &c.timezone) {
        Ok(s) => s,
        Err(e) => return result(name, false, e.to_string()),
    };
    let since = [
        state.evaluated_ms,
        p.last_fired_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0),
        p.updated_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    match schedule.fired_between(from_millis(since), from_millis(now_ms)) {
        Some(t) => result(name, true, format!("cron '{}' ticked at {}", schedule, when(t.timestamp_millis()))),
        None => {
            let next = schedule.next_after(from_millis(now_ms)).map(|t| when(t.timestamp_millis()));
            result(
                name,
                false,
                format!("cron '{}': no tick since {}; next {}", schedule, when(since), next.unwrap_or("never".into())),
            )
        }
    }
}

/// How far `max` is past `until`, for timestamp and date cursors.
fn cursor_distance_ms(
    until: &pulse_proto::datasource::v1::Value,
    max: &pulse_proto::datasource::v1::Value,
) -> Option<i64> {
    use pulse_proto::datasource::v1::value::Kind as V;
    let ms = |v: &pulse_proto::datasource::v1::Value| match &v.kind {
        Some(V::TimestampValue(t)) => Some(pulse_common::time::proto_millis(t)),
        Some(V::DateValue(d)) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp_millis()),
        _ => None,
    };
    Some((ms(max)? - ms(until)?).max(0))
}

// ---------------------------------------------------------------- scheduler

/// One replica's scheduler: leadership through the lease, and the work of a
/// tick. [`spawn_scheduler`] drives it; tests may drive it by hand.
pub struct Scheduler {
    policies: Policies,
    starter: Arc<dyn RunStarter>,
    holder: String,
    lease_ms: i64,
    /// Monitors whose last scheduled check failed: not before this time.
    backoff: Mutex<HashMap<(String, String), i64>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("holder", &self.holder).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler holding the lease for `lease` at a time once it leads.
    pub fn new(policies: Policies, starter: Arc<dyn RunStarter>, lease: Duration) -> Self {
        Self {
            policies,
            starter,
            holder: new_id("sch"),
            lease_ms: (lease.as_millis() as i64).max(1),
            backoff: Mutex::new(HashMap::new()),
        }
    }

    /// This replica's id in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the lease when it is free or expired, renews it when held: true
    /// when this replica leads until `now + lease`.
    pub async fn try_lead(&self, now: DateTime<Utc>) -> Result<bool, DriftError> {
        let records = &self.policies.inner.records;
        let now_ms = now.timestamp_millis();
        let mine = Lease { holder: self.holder.clone(), until_ms: now_ms + self.lease_ms };
        let write = match records.get(SYSTEM_TENANT, LEASE, LEASE_ID).await? {
            None => Write::insert(LEASE, LEASE_ID, "", "", &mine),
            Some(rec) => {
                let held: Lease = rec.decode()?;
                if held.holder != self.holder && held.until_ms > now_ms {
                    return Ok(false);
                }
                Write::update(&rec, "", &mine)
            }
        };
        Ok(records.apply(SYSTEM_TENANT, vec![write]).await?)
    }

    /// Gives the lease up (on shutdown) so another replica leads at once.
    pub async fn release(&self) -> Result<(), DriftError> {
        let records = &self.policies.inner.records;
        if let Some(rec) = records.get(SYSTEM_TENANT, LEASE, LEASE_ID).await? {
            let held: Lease = rec.decode()?;
            if held.holder == self.holder {
                let free = Lease { holder: String::new(), until_ms: 0 };
                records.apply(SYSTEM_TENANT, vec![Write::update(&rec, "", &free)]).await?;
            }
        }
        Ok(())
    }

    /// The current lease holder and expiry, if any.
    pub async fn lease(&self) -> Result<Option<Lease>, DriftError> {
        let rec = self.policies.inner.records.get(SYSTEM_TENANT, LEASE, LEASE_ID).await?;
        Ok(rec.map(|r| r.decode()).transpose()?)
    }

    /// One tick's work, whether or not this replica leads (the caller
    /// checks): retry starting runs of fired decisions, evaluate every
    /// policy, fire, start, then run due monitors.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickSummary, DriftError> {
        let p = &self.policies;
        let records = &p.inner.records;
        let now_ms = now.timestamp_millis();
        let mut summary = TickSummary::default();

        // Runs that did not start (a crash, a starter error).
        for rec in records.by_status(DECISION, &[STARTING], 1000).await? {
            match p.start_run(&rec.tenant, &rec.id, self.starter.as_ref()).await {
                Ok(Some(_)) => summary.runs_started += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(tenant = %rec.tenant, decision = %rec.id, error = %e, "could not start the run")
                }
            }
        }

        let policies = records.by_status(POLICY, &[ACTIVE, PAUSED], SCAN_LIMIT).await?;
        let mut watched: Vec<(String, String)> = Vec::new();
        for rec in &policies {
            let policy: pb::RetrainingPolicy = match rec.decode() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(tenant = %rec.tenant, model = %rec.id, error = %e, "unreadable policy");
                    continue;
                }
            };
            if policy.triggers.iter().any(|t| {
                matches!(
                    t.kind,
                    Some(pb::policy_trigger::Kind::Drift(_)) | Some(pb::policy_trigger::Kind::Performance(_))
                )
            }) {
                watched.push((rec.tenant.clone(), rec.id.clone()));
            }
            summary.policies_evaluated += 1;
            match p.evaluate_and_record(&rec.tenant, &rec.id, now_ms).await {
                Ok(Some(d)) => {
                    summary.decisions_recorded += 1;
                    if d.fired {
                        tracing::info!(tenant = %rec.tenant, model = %d.model, decision = %d.id, reason = %d.reason,
                            "retraining policy fired");
                        summary.fired.push(d.id.clone());
                        if !d.dry_run {
                            match p.start_run(&rec.tenant, &d.id, self.starter.as_ref()).await {
                                Ok(Some(_)) => summary.runs_started += 1,
                                Ok(None) => {}
                                Err(e) => tracing::warn!(tenant = %rec.tenant, decision = %d.id, error = %e,
                                    "could not start the run; the next tick retries"),
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(tenant = %rec.tenant, model = %rec.id, error = %e, "policy not evaluated"),
            }
        }

        summary.monitors_checked = self.run_due_monitors(now_ms, watched).await?;
        Ok(summary)
    }

    /// Checks drift for every monitor (and every model whose policy watches
    /// drift or performance but has no monitor, with the default monitor)
    /// whose last check is older than its interval.
    async fn run_due_monitors(&self, now_ms: i64, watched: Vec<(String, String)>) -> Result<usize, DriftError> {
        let p = &self.policies;
        let mut candidates: Vec<(String, String, Option<pb::Monitor>)> = Vec::new();
        for rec in p.inner.records.by_status(MONITOR, &[""], SCAN_LIMIT).await? {
            match rec.decode::<pb::Monitor>() {
                Ok(m) => candidates.push((rec.tenant.clone(), rec.id.clone(), Some(m))),
                Err(e) => tracing::warn!(tenant = %rec.tenant, model = %rec.id, error = %e, "unreadable monitor"),
            }
        }
        for (tenant, model) in watched {
            if !candidates.iter().any(|(t, m, _)| *t == tenant && *m == model) {
                candidates.push((tenant, model, None));
            }
        }
        let mut checked = 0;
        for (tenant, model, stored) in candidates {
            let has_record = stored.is_some();
            let m = with_defaults(stored.unwrap_or_else(|| pb::Monitor { model: model.clone(), ..Default::default() }));
            let interval = m.interval.as_ref().map(dur_ms).unwrap_or(0);
            if m.paused || interval <= 0 {
                continue;
            }
            let key = (tenant.clone(), model.clone());
            if self.backoff.lock().ok().and_then(|b| b.get(&key).copied()).is_some_and(|until| until > now_ms) {
                continue;
            }
            let last = if has_record {
                m.last_checked_at.as_ref().map(pulse_common::time::proto_millis)
            } else {
                let req = pb::ListDriftReportsRequest {
                    model: model.clone(),
                    page: Some(PageRequest { page_size: 1, page_token: String::new() }),
                    ..Default::default()
                };
                p.inner
                    .drift
                    .list_reports(&tenant, &req)
                    .await?
                    .reports
                    .first()
                    .and_then(|r| r.created_at.as_ref().map(pulse_common::time::proto_millis))
            };
            if last.is_some_and(|l| l + interval > now_ms) {
                continue;
            }
            // Still leading? A long round of checks must not outlive the lease.
            if !self.try_lead(Utc::now()).await? {
                break;
            }
            let req = pb::CheckDriftRequest { model: model.clone(), ..Default::default() };
            match p.inner.drift.check_as(&tenant, &req, "monitor").await {
                Ok(r) => {
                    checked += 1;
                    tracing::info!(tenant = %tenant, model = %model, report = %r.id, "scheduled drift check");
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, model = %model, error = %e,
                        "scheduled drift check failed; retrying after the monitor's interval");
                    if let Ok(mut b) = self.backoff.lock() {
                        b.insert(key, now_ms + interval);
                    }
                }
            }
        }
        Ok(checked)
    }
}

/// Runs the scheduler every `interval` until `shutdown` turns true (or its
/// sender is dropped): each tick the replica takes or renews the lease (held
/// for three intervals) and, when it leads, runs [`Scheduler::tick`]. On
/// shutdown it gives the lease up.
pub fn spawn_scheduler(
    policies: Policies,
    starter: Arc<dyn RunStarter>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    let scheduler = Scheduler::new(policies, starter, interval * 3);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            let now = pulse_common::time::now_millis();
            match scheduler.try_lead(now).await {
                Ok(true) => {
                    if let Err(e) = scheduler.tick(now).await {
                        tracing::warn!(holder = %scheduler.holder, error = %e, "scheduler tick failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(holder = %scheduler.holder, error = %e, "scheduler lease not checked"),
            }
        }
        if let Err(e) = scheduler.release().await {
            tracing::warn!(holder = %scheduler.holder, error = %e, "scheduler lease not released");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::policy_trigger::Kind as K;

    fn trigger(kind: K) -> pb::PolicyTrigger {
        pb::PolicyTrigger { name: String::new(), kind: Some(kind) }
    }

    fn policy(triggers: Vec<pb::PolicyTrigger>) -> pb::RetrainingPolicy {
        pb::RetrainingPolicy { model: "churn".into(), triggers, ..Default::default() }
    }

    fn invalid(p: &pb::RetrainingPolicy) -> (String, String) {
        match validate(p).unwrap_err() {
            DriftError::Invalid { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        }
    }

    fn schedule(cron: &str) -> K {
        K::Schedule(pb::ScheduleCondition { cron: cron.into(), timezone: String::new() })
    }

    #[test]
    fn defaults_are_filled_in() {
        let p = validate(&policy(vec![
            trigger(K::Drift(pb::DriftCondition::default())),
            trigger(schedule("@daily")),
            trigger(K::Drift(pb::DriftCondition::default())),
            pb::PolicyTrigger {
                name: "drift_2".into(),
                kind: Some(K::Feedback(pb::FeedbackCondition { new_feedback: 5 })),
            },
            trigger(K::Performance(pb::PerformanceCondition {
                metric: DriftMetric::F1 as i32,
                max_drop: 0.05,
                min_feedback: 0,
            })),
        ]))
        .unwrap();
        let names: Vec<&str> = p.triggers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["drift", "schedule", "drift_3", "drift_2", "performance"]);
        assert_eq!(p.combine, TriggerCombination::Any as i32);
        assert_eq!(p.cooldown, Some(hours(24)));
        let Some(K::Drift(d)) = &p.triggers[0].kind else { panic!() };
        assert_eq!((d.min_features, d.max_report_age), (1, Some(hours(24))));
        let Some(K::Schedule(s)) = &p.triggers[1].kind else { panic!() };
        assert_eq!(s.timezone, "UTC");
        let Some(K::Performance(c)) = &p.triggers[4].kind else { panic!() };
        assert_eq!(c.min_feedback, 100);
        // A zero cooldown stays zero.
        let mut z = policy(vec![trigger(schedule("@daily"))]);
        z.cooldown = Some(PbDuration::default());
        assert_eq!(validate(&z).unwrap().cooldown, Some(PbDuration::default()));
    }

    #[test]
    fn errors_name_the_field() {
        let e = invalid(&pb::RetrainingPolicy::default());
        assert_eq!(e.0, "policy.model");
        assert_eq!(invalid(&policy(vec![])).0, "policy.triggers");
        assert_eq!(invalid(&policy(vec![pb::PolicyTrigger::default()])).0, "policy.triggers[0]");
        let e = invalid(&policy(vec![
            trigger(schedule("@daily")),
            trigger(schedule("@daily")),
            trigger(schedule("61 * * * *")),
        ]));
        assert_eq!(e.0, "policy.triggers[2].schedule.cron");
        assert!(e.1.contains("minute 61 is out of range 0-59"), "{e:?}");
        let e = invalid(&policy(vec![trigger(K::Schedule(pb::ScheduleCondition {
            cron: "@daily".into(),
            timezone: "Mars/Base".into(),
        }))]));
        assert_eq!(e.0, "policy.triggers[0].schedule.timezone");
        let named = |n: &str| pb::PolicyTrigger { name: n.into(), kind: Some(schedule("@daily")) };
        let e = invalid(&policy(vec![named("nightly"), named("nightly")]));
        assert_eq!(e.0, "policy.triggers[1].name");
        assert!(e.1.contains("triggers[0]"));
        assert_eq!(invalid(&policy(vec![named("no spaces")])).0, "policy.triggers[0].name");
        let drift = |c: pb::DriftCondition| policy(vec![trigger(K::Drift(c))]);
        let e = invalid(&drift(pb::DriftCondition {
            metric: DriftMetric::Psi as i32,
            threshold: Some(f64::NAN),
            ..Default::default()
        }));
        assert_eq!(e.0, "policy.triggers[0].drift.threshold");
        let e = invalid(&drift(pb::DriftCondition {
            metric: DriftMetric::Psi as i32,
            threshold: Some(-0.1),
            ..Default::default()
        }));
        assert_eq!(e.0, "policy.triggers[0].drift.threshold");
        let e = invalid(&drift(pb::DriftCondition { threshold: Some(0.2), ..Default::default() }));
        assert!(e.1.contains("needs a metric"));
        let e = invalid(&drift(pb::DriftCondition { metric: DriftMetric::Accuracy as i32, ..Default::default() }));
        assert_eq!(e.0, "policy.triggers[0].drift.metric");
        let e =
            invalid(&drift(pb::DriftCondition { max_report_age: Some(PbDuration::default()), ..Default::default() }));
        assert_eq!(e.0, "policy.triggers[0].drift.max_report_age");
        let perf = |metric: DriftMetric, max_drop: f64| {
            policy(vec![trigger(K::Performance(pb::PerformanceCondition {
                metric: metric as i32,
                max_drop,
                min_feedback: 0,
            }))])
        };
        assert_eq!(invalid(&perf(DriftMetric::Psi, 0.1)).0, "policy.triggers[0].performance.metric");
        assert_eq!(invalid(&perf(DriftMetric::Unspecified, 0.1)).0, "policy.triggers[0].performance.metric");
        assert_eq!(invalid(&perf(DriftMetric::Rmse, 0.0)).0, "policy.triggers[0].performance.max_drop");
        assert_eq!(invalid(&perf(DriftMetric::Mae, f64::INFINITY)).0, "policy.triggers[0].performance.max_drop");
        let fb = policy(vec![trigger(K::Feedback(pb::FeedbackCondition { new_feedback: 0 }))]);
        assert_eq!(invalid(&fb).0, "policy.triggers[0].feedback.new_feedback");
        let fr = policy(vec![trigger(K::Freshness(pb::FreshnessCondition::default()))]);
        assert_eq!(invalid(&fr).0, "policy.triggers[0].freshness");
        let fr = policy(vec![trigger(K::Freshness(pb::FreshnessCondition {
            new_rows: 0,
            max_lag: Some(PbDuration { seconds: -5, nanos: 0 }),
        }))]);
        assert_eq!(invalid(&fr).0, "policy.triggers[0].freshness.max_lag");
        let mut neg = policy(vec![trigger(schedule("@daily"))]);
        neg.cooldown = Some(PbDuration { seconds: -1, nanos: 0 });
        assert_eq!(invalid(&neg).0, "policy.cooldown");
        let mut comb = policy(vec![trigger(schedule("@daily"))]);
        comb.combine = 9;
        assert_eq!(invalid(&comb).0, "policy.combine");
        let mut retrain = policy(vec![trigger(schedule("@daily"))]);
        retrain.retrain = Some(pb::RetrainSpec { promote_to: ModelStage::Archived as i32, ..Default::default() });
        assert_eq!(invalid(&retrain).0, "policy.retrain.promote_to");
    }

    fn report(features: Vec<pb::FeatureDrift>) -> pb::DriftReport {
        pb::DriftReport { id: "drf_x".into(), status: DriftStatus::Drift as i32, features, ..Default::default() }
    }

    fn feature(name: &str, metrics: Vec<(DriftMetric, f64, Option<f64>, bool)>) -> pb::FeatureDrift {
        pb::FeatureDrift {
            feature: name.into(),
            metrics: metrics
                .into_iter()
                .map(|(m, value, threshold, breached)| pb::MetricValue {
                    metric: m as i32,
                    value,
                    threshold,
                    breached,
                    reference_value: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn drift_conditions_read_the_report() {
        let r = report(vec![
            feature(
                "tenure",
                vec![(DriftMetric::Psi, 0.31, Some(0.2), true), (DriftMetric::KsPValue, 0.001, Some(0.05), true)],
            ),
            feature("spend", vec![(DriftMetric::Psi, 0.05, Some(0.2), false)]),
        ]);
        let any = drift_result("drift", &pb::DriftCondition { min_features: 1, ..Default::default() }, &r);
        assert!(any.met);
        assert_eq!(any.reason, "PSI(tenure) 0.31 > 0.20 (+1 more breaches)");
        assert_eq!((any.observed, any.threshold), (Some(1.0), Some(1.0)));
        let two = drift_result("drift", &pb::DriftCondition { min_features: 2, ..Default::default() }, &r);
        assert!(!two.met);
        assert!(two.reason.ends_with("1 drifted feature(s) < 2"), "{}", two.reason);
        // Our own threshold on one feature and metric.
        let c = pb::DriftCondition {
            metric: DriftMetric::Psi as i32,
            feature: "spend".into(),
            threshold: Some(0.04),
            min_features: 1,
            ..Default::default()
        };
        let own = drift_result("d", &c, &r);
        assert!(own.met);
        assert_eq!(own.reason, "PSI(spend) 0.05 > 0.04");
        assert_eq!((own.observed, own.threshold), (Some(0.05), Some(0.04)));
        let c = pb::DriftCondition { threshold: Some(0.1), ..c };
        let calm = drift_result("d", &c, &r);
        assert!(!calm.met);
        assert_eq!(calm.reason, "no threshold breached in drf_x: PSI(spend) 0.05 ≤ 0.10");
        // P-values breach below.
        let c = pb::DriftCondition {
            metric: DriftMetric::KsPValue as i32,
            threshold: Some(0.01),
            min_features: 1,
            ..Default::default()
        };
        let p = drift_result("d", &c, &r);
        assert!(p.met);
        assert_eq!(p.reason, "KS p-value(tenure) 1.00e-3 < 0.01");
    }

    #[test]
    fn performance_conditions_compare_with_training() {
        let mut r = report(vec![]);
        r.performance = Some(pb::PerformanceDrift {
            feedback_count: 400,
            metrics: vec![
                pb::MetricValue {
                    metric: DriftMetric::Accuracy as i32,
                    value: 0.83,
                    reference_value: Some(0.91),
                    ..Default::default()
                },
                pb::MetricValue {
                    metric: DriftMetric::Rmse as i32,
                    value: 1.2,
                    reference_value: Some(1.0),
                    ..Default::default()
                },
            ],
            drifted: true,
        });
        let c = |m: DriftMetric, max_drop: f64, min_feedback: u64| pb::PerformanceCondition {
            metric: m as i32,
            max_drop,
            min_feedback,
        };
        let a = performance_result("p", &c(DriftMetric::Accuracy, 0.05, 100), &r);
        assert!(a.met);
        assert_eq!(a.reason, "accuracy dropped 0.08 (0.91 → 0.83, 400 feedback) > 0.05");
        assert!(!performance_result("p", &c(DriftMetric::Accuracy, 0.1, 100), &r).met);
        let e = performance_result("p", &c(DriftMetric::Rmse, 0.1, 100), &r);
        assert!(e.met && e.reason.starts_with("RMSE rose 0.20"), "{}", e.reason);
        let few = performance_result("p", &c(DriftMetric::Accuracy, 0.05, 1000), &r);
        assert!(!few.met);
        assert_eq!(few.reason, "400 feedback < 1000 needed to judge accuracy");
        assert!(!performance_result("p", &c(DriftMetric::F1, 0.05, 100), &r).met);
    }

    #[test]
    fn schedules_tick_since_the_last_look() {
        let p = pb::RetrainingPolicy { updated_at: Some(ms_ts(0)), last_fired_at: None, ..policy(vec![]) };
        let c = pb::ScheduleCondition { cron: "0 * * * *".into(), timezone: "UTC".into() };
        let hour = 3_600_000;
        let state = PolicyState { evaluated_ms: 10 * hour + 1, signature: String::new() };
        let r = schedule_result("s", &c, &p, &state, 10 * hour + 30 * 60_000);
        assert!(!r.met);
        assert!(r.reason.contains("next 1970-01-01T11:00Z"), "{}", r.reason);
        let r = schedule_result("s", &c, &p, &state, 11 * hour + 5);
        assert!(r.met);
        assert_eq!(r.reason, "cron '0 * * * * (UTC)' ticked at 1970-01-01T11:00Z");
    }

    #[test]
    fn times_and_spans_read_well() {
        assert_eq!(when(0), "1970-01-01T00:00Z");
        assert_eq!(when(1500), "1970-01-01T00:00:01Z");
        assert_eq!(span(24 * 3_600_000), "24 h");
        assert_eq!(span(90 * 60_000), "90 min");
        assert_eq!(span(3 * 86_400_000), "3 d");
        assert_eq!(span(45_000), "45 s");
        assert_eq!(num(0.3149), "0.31");
        assert_eq!(num(0.0012), "1.20e-3");
    }
}
