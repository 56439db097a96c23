//! Pipelines: definitions, runs, the step worker and the timeline.
//!
//! A run is one record (its steps inside), changed only by compare-and-set:
//! claiming a step, finishing it and cancelling the run are each one write
//! at the revision read, with the timeline entries and the envelope events
//! of the change in the same transaction. One worker drives a run at a time
//! under a lease (the job-queue claim every Pulse queue uses); a worker that
//! dies loses its lease and another resumes the run where the record says it
//! is. Actions call Pulse through its own gRPC endpoint with the idempotency
//! key `<run>/<step path>/<run attempt>.<step attempt>`, so a step resumed
//! after a crash gets the answer of the call already made instead of making
//! it again.

pub mod definition;
pub mod expr;
mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pulse_common::ids::{derived_id, new_id};
use pulse_common::json;
use pulse_common::paging::{next_token, page_size};
use pulse_common::records::{ListQuery, Record, RecordStore, Write};
use pulse_common::time::{now_millis, to_proto};
use pulse_proto::common::v1::{EventEnvelope, JobStatus, PageRequest, PageResponse, TimelineEntry};
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::{RunEventKind, RunOrigin, StepStatus, pipeline_trigger};

pub use worker::{ActionCaller, CallFailure, spawn_workers};

use crate::error::DriftError;
use crate::events::{self, EventLog};
use crate::policy::SYSTEM_TENANT;
use crate::schedule::Schedule;

pub const PIPELINE: &str = "pipeline";
pub const PIPELINE_NAME: &str = "pipeline_name";
pub const RUN: &str = "pipeline_run";
pub const RUN_ENTRY: &str = "run_entry";
pub const CURSOR: &str = "cursor";
const ACTIVE: &str = "active";
const PAUSED: &str = "paused";

pub fn status_name(s: JobStatus) -> &'static str {
    s.as_str_name()
}

pub fn is_final(s: i32) -> bool {
    [JobStatus::Succeeded as i32, JobStatus::Failed as i32, JobStatus::Canceled as i32].contains(&s)
}

fn now_ts() -> pulse_proto::prost_types::Timestamp {
    to_proto(now_millis())
}

/// A timeline entry to write with a run change.
pub(crate) struct Entry {
    pub kind: RunEventKind,
    pub step: String,
    pub step_status: StepStatus,
    pub attempt: u32,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

impl Entry {
    pub fn run(kind: RunEventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            step: String::new(),
            step_status: StepStatus::Unspecified,
            attempt: 0,
            message: message.into(),
            data: None,
        }
    }

    pub fn step(kind: RunEventKind, s: &pb::StepRun, message: impl Into<String>) -> Self {
        Self {
            kind,
            step: s.path.clone(),
            step_status: StepStatus::try_from(s.status).unwrap_or_default(),
            attempt: s.attempt,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// The event name of a timeline entry kind, in the envelope log.
fn event_name(kind: RunEventKind) -> Option<&'static str> {
    Some(match kind {
        RunEventKind::RunCreated => "pulse.pipeline.run_created.v1",
        RunEventKind::StepStarted => "pulse.pipeline.step_started.v1",
        RunEventKind::StepCompleted => "pulse.pipeline.step_completed.v1",
        RunEventKind::StepFailed => "pulse.pipeline.step_failed.v1",
        RunEventKind::StepSkipped => "pulse.pipeline.step_skipped.v1",
        RunEventKind::RunCompleted => "pulse.pipeline.run_completed.v1",
        RunEventKind::RunFailed => "pulse.pipeline.run_failed.v1",
        RunEventKind::RunCancelRequested => "pulse.pipeline.run_cancel_requested.v1",
        RunEventKind::RunCanceled => "pulse.pipeline.run_canceled.v1",
        RunEventKind::RunRetried => "pulse.pipeline.run_retried.v1",
        _ => return None,
    })
}

/// The writes of a run change's entries: timeline records and events.
pub(crate) fn entry_writes(run: &pb::PipelineRun, entries: Vec<Entry>) -> Vec<Write> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let at = now_ts();
    let micros = chrono::Utc::now().timestamp_micros();
    let mut writes = Vec::new();
    for e in entries {
        let n = SEQ.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        let entry = pb::RunTimelineEntry {
            entry: Some(TimelineEntry {
                at: Some(at),
                status: run.status,
                step: e.step.clone(),
                message: e.message.clone(),
            }),
            kind: e.kind as i32,
            step_status: e.step_status as i32,
            attempt: e.attempt,
            data: e.data.as_ref().map(json::to_struct),
        };
        writes.push(Write::insert(RUN_ENTRY, &format!("{}.{micros:017}.{n:06}", run.id), &run.id, "", &entry));
        if let Some(name) = event_name(e.kind) {
            writes.push(Write::event(
                name,
                &run.id,
                serde_json::json!({
                    "run_id": run.id,
                    "pipeline_id": run.pipeline_id,
                    "pipeline": run.pipeline_name,
                    "status": JobStatus::try_from(run.status).unwrap_or_default().as_str_name(),
                    "step": e.step,
                    "attempt": e.attempt,
                    "message": e.message,
                    "dry_run": run.dry_run,
                }),
            ));
        }
    }
    writes
}

/// How a run is to start.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub origin: RunOrigin,
    pub trigger: Option<EventEnvelope>,
    pub policy_decision_id: String,
    pub replay_of: String,
    pub dry_run: bool,
    pub allow_unsafe: bool,
    /// Fixes the run id (triggers, policies): a second start for the same
    /// cause finds the run already there.
    pub derived_id: Option<(i64, String)>,
}

#[derive(Clone)]
pub struct Pipelines {
    inner: Arc<Inner>,
}

struct Inner {
    records: Arc<dyn RecordStore>,
    log: EventLog,
    metrics: Option<(crate::metrics::DriftMetrics, pulse_common::metrics::JobMetrics)>,
}

/// The job kind of pipeline runs in `pulse_jobs_*`.
pub const JOB_KIND: &str = "pipeline_run";

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines").finish_non_exhaustive()
    }
}

impl Pipelines {
    pub fn new(records: Arc<dyn RecordStore>, log: EventLog) -> Self {
        Self { inner: Arc::new(Inner { records, log, metrics: None }) }
    }

    /// Counts finished runs in `pulse_pipeline_runs_total` and the shared
    /// job families.
    pub fn with_metrics(
        records: Arc<dyn RecordStore>,
        log: EventLog,
        drift: crate::metrics::DriftMetrics,
        jobs: pulse_common::metrics::JobMetrics,
    ) -> Self {
        jobs.declare(JOB_KIND);
        Self { inner: Arc::new(Inner { records, log, metrics: Some((drift, jobs)) }) }
    }

    /// Records a run that just reached a final status.
    pub(crate) fn finished(&self, run: &pb::PipelineRun) {
        if let Some((drift, jobs)) = &self.inner.metrics {
            let status = short(run.status);
            drift.pipeline_runs.with_label_values(&[&run.pipeline_name, &status]).inc();
            jobs.finished(JOB_KIND, &status);
        }
    }

    pub(crate) fn job_metrics(&self) -> Option<&pulse_common::metrics::JobMetrics> {
        self.inner.metrics.as_ref().map(|(_, j)| j)
    }

    pub fn records(&self) -> &Arc<dyn RecordStore> {
        &self.inner.records
    }

    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    // ------------------------------------------------------------ definitions

    pub async fn create(&self, tenant: &str, p: pb::Pipeline) -> Result<pb::Pipeline, DriftError> {
        if p.name == definition::BUILT_IN {
            return Err(DriftError::invalid(
                "pipeline.name",
                "'retrain' is the built-in retraining pipeline; choose another name",
            ));
        }
        let mut p = definition::validate("pipeline", &p)?;
        let now = now_ts();
        p.id = new_id("pip");
        p.built_in = false;
        p.revision = 1;
        p.created_at = Some(now);
        p.updated_at = Some(now);
        let status = if p.paused { PAUSED } else { ACTIVE };
        let name = pb::Pipeline { id: p.id.clone(), ..Default::default() };
        let writes = vec![
            Write::insert(PIPELINE_NAME, &p.name, "", "", &name),
            Write::insert(PIPELINE, &p.id, &p.name, status, &p),
            Write::event(
                "pulse.pipeline.created.v1",
                &p.id,
                serde_json::json!({"pipeline_id": p.id, "name": p.name, "revision": 1}),
            ),
        ];
        if !self.inner.records.apply(tenant, writes).await? {
            return Err(DriftError::Common(pulse_common::PulseError::AlreadyExists(format!(
                "a pipeline named '{}' exists; update it, or choose another name",
                p.name
            ))));
        }
        Ok(p)
    }

    pub async fn update(&self, tenant: &str, p: pb::Pipeline) -> Result<pb::Pipeline, DriftError> {
        if p.id == definition::BUILT_IN || p.name == definition::BUILT_IN && p.id.is_empty() {
            return Err(DriftError::Precondition(
                "the built-in 'retrain' pipeline cannot be changed; create your own pipeline and name it in the policy"
                    .into(),
            ));
        }
        let (record, current) = self.pipeline_record(tenant, &p.id).await?;
        if p.name != current.name {
            return Err(DriftError::invalid(
                "pipeline.name",
                format!("is '{}'; a pipeline keeps its name (create a new one to rename)", current.name),
            ));
        }
        let mut next = definition::validate("pipeline", &p)?;
        next.id = current.id.clone();
        next.built_in = false;
        next.revision = current.revision + 1;
        next.created_at = current.created_at;
        next.updated_at = Some(now_ts());
        let status = if next.paused { PAUSED } else { ACTIVE };
        let writes = vec![
            Write::update(&record, status, &next),
            Write::event(
                "pulse.pipeline.updated.v1",
                &next.id,
                serde_json::json!({"pipeline_id": next.id, "name": next.name, "revision": next.revision}),
            ),
        ];
        if !self.inner.records.apply(tenant, writes).await? {
            return Err(DriftError::Precondition("the pipeline changed meanwhile; read it again and retry".into()));
        }
        Ok(next)
    }

    async fn pipeline_record(&self, tenant: &str, id_or_name: &str) -> Result<(Record, pb::Pipeline), DriftError> {
        if id_or_name.is_empty() {
            return Err(DriftError::invalid("pipeline_id", "is required: a pipeline id (pip_…) or name"));
        }
        let id = if id_or_name.starts_with("pip_") {
            id_or_name.to_string()
        } else {
            match self.inner.records.get(tenant, PIPELINE_NAME, id_or_name).await? {
                Some(r) => r.decode::<pb::Pipeline>()?.id,
                None => return Err(DriftError::NotFound(format!("pipeline '{id_or_name}'"))),
            }
        };
        let record = self
            .inner
            .records
            .get(tenant, PIPELINE, &id)
            .await?
            .ok_or_else(|| DriftError::NotFound(format!("pipeline '{id_or_name}'")))?;
        let p = record.decode::<pb::Pipeline>()?;
        Ok((record, p))
    }

    /// A pipeline by id or name; `retrain` is the built-in one.
    pub async fn get(&self, tenant: &str, id_or_name: &str) -> Result<pb::Pipeline, DriftError> {
        if id_or_name == definition::BUILT_IN {
            let mut p = definition::built_in_retrain();
            p.id = definition::BUILT_IN.into();
            return Ok(p);
        }
        Ok(self.pipeline_record(tenant, id_or_name).await?.1)
    }

    pub async fn list(&self, tenant: &str, page: &PageRequest) -> Result<pb::ListPipelinesResponse, DriftError> {
        let limit = page_size(page.page_size);
        let records = self
            .inner
            .records
            .list(tenant, PIPELINE, ListQuery { after: &page.page_token, limit, ..Default::default() })
            .await?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let mut pipelines = records.iter().map(|r| r.decode()).collect::<Result<Vec<pb::Pipeline>, _>>()?;
        if page.page_token.is_empty() {
            let mut b = definition::built_in_retrain();
            b.id = definition::BUILT_IN.into();
            pipelines.insert(0, b);
        }
        Ok(pb::ListPipelinesResponse {
            pipelines,
            page: Some(PageResponse { next_page_token: next_token(&ids, limit, |s| s) }),
        })
    }

    // ------------------------------------------------------------ runs

    /// Creates a run (PENDING; the workers take it from there). With a
    /// derived id, a second start for the same cause returns the first run.
    pub async fn start(
        &self,
        tenant: &str,
        pipeline: &pb::Pipeline,
        req: RunRequest,
    ) -> Result<pb::PipelineRun, DriftError> {
        let mut inputs = pipeline.default_inputs.as_ref().map(json::to_json).unwrap_or_else(|| serde_json::json!({}));
        if let serde_json::Value::Object(map) = &mut inputs {
            for (k, v) in req.inputs {
                map.insert(k, v);
            }
        }
        let id = match &req.derived_id {
            Some((at, seed)) => derived_id("run", *at, seed),
            None => new_id("run"),
        };
        let mut run = pb::PipelineRun {
            id: id.clone(),
            pipeline_id: pipeline.id.clone(),
            pipeline_name: pipeline.name.clone(),
            pipeline_revision: pipeline.revision,
            status: JobStatus::Pending as i32,
            steps: definition::initial_steps(pipeline, req.origin == RunOrigin::Replay, req.allow_unsafe),
            origin: req.origin as i32,
            trigger: req.trigger,
            policy_decision_id: req.policy_decision_id,
            inputs: Some(json::to_struct(&inputs)),
            dry_run: req.dry_run,
            replay_of: req.replay_of,
            attempt: 1,
            created_at: Some(now_ts()),
            ..Default::default()
        };
        run.progress = Some(progress(&run));
        if req.dry_run {
            run.id.clear();
            return Ok(run);
        }
        // The definition travels with the run: updates do not change it.
        let definition = RunDefinition { pipeline: Some(pipeline.clone()) };
        let mut entries = vec![Entry::run(
            RunEventKind::RunCreated,
            format!("{} run of '{}'", origin_word(req.origin), pipeline.name),
        )];
        for s in run.steps.iter().filter(|s| s.status == StepStatus::Skipped as i32) {
            entries.push(Entry::step(RunEventKind::StepSkipped, s, s.skip_reason.clone()));
        }
        let mut writes = vec![
            Write::insert(RUN, &id, &pipeline.id, status_name(JobStatus::Pending), &run),
            Write::insert(RUN_DEFINITION, &id, "", "", &definition),
        ];
        writes.extend(entry_writes(&run, entries));
        if !self.inner.records.apply(tenant, writes).await? {
            if req.derived_id.is_some() {
                return self.run(tenant, &id).await;
            }
            return Err(DriftError::Compute(format!("run id {id} collided")));
        }
        Ok(run)
    }

    pub async fn run(&self, tenant: &str, id: &str) -> Result<pb::PipelineRun, DriftError> {
        Ok(self.run_record(tenant, id).await?.1)
    }

    pub(crate) async fn run_record(&self, tenant: &str, id: &str) -> Result<(Record, pb::PipelineRun), DriftError> {
        if id.is_empty() {
            return Err(DriftError::invalid("run_id", "is required"));
        }
        let r = self
            .inner
            .records
            .get(tenant, RUN, id)
            .await?
            .ok_or_else(|| DriftError::NotFound(format!("pipeline run '{id}'")))?;
        let run = r.decode()?;
        Ok((r, run))
    }

    pub(crate) async fn definition(&self, tenant: &str, run_id: &str) -> Result<pb::Pipeline, DriftError> {
        let r = self
            .inner
            .records
            .get(tenant, RUN_DEFINITION, run_id)
            .await?
            .ok_or_else(|| DriftError::NotFound(format!("definition of run '{run_id}'")))?;
        Ok(r.decode::<RunDefinition>()?.pipeline.unwrap_or_default())
    }

    pub async fn list_runs(
        &self,
        tenant: &str,
        r: &pb::ListPipelineRunsRequest,
    ) -> Result<pb::ListPipelineRunsResponse, DriftError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let parent = if r.pipeline_id.is_empty() { None } else { Some(self.get(tenant, &r.pipeline_id).await?.id) };
        let status = (r.status != 0).then(|| JobStatus::try_from(r.status).unwrap_or_default().as_str_name());
        let mut runs = Vec::new();
        let mut after = page.page_token.clone();
        let mut last = String::new();
        // Origin is filtered here; the store filters pipeline and status.
        loop {
            let records = self
                .inner
                .records
                .list(
                    tenant,
                    RUN,
                    ListQuery { parent: parent.as_deref(), status, after: &after, limit, newest_first: true },
                )
                .await?;
            let n = records.len();
            for rec in records {
                last = rec.id.clone();
                let run: pb::PipelineRun = rec.decode()?;
                if r.origin == 0 || run.origin == r.origin {
                    runs.push(run);
                    if runs.len() as u32 == limit {
                        break;
                    }
                }
            }
            if (n as u32) < limit || runs.len() as u32 == limit {
                break;
            }
            after = last.clone();
        }
        let token = if runs.len() as u32 == limit { last } else { String::new() };
        Ok(pb::ListPipelineRunsResponse { runs, page: Some(PageResponse { next_page_token: token }) })
    }

    /// Marks a run CANCELING (the worker driving it stops its running step
    /// and cancels the job it started) or, when no step is running,
    /// CANCELED at once with pending steps skipped.
    pub async fn cancel(&self, tenant: &str, id: &str, reason: &str) -> Result<pb::PipelineRun, DriftError> {
        for _ in 0..20 {
            let (record, mut run) = self.run_record(tenant, id).await?;
            if is_final(run.status) {
                return Err(DriftError::Precondition(format!(
                    "run {id} is {} already; only pending or running runs can be canceled",
                    short(run.status)
                )));
            }
            if run.status == JobStatus::Canceling as i32 {
                return Ok(run);
            }
            run.cancel_reason = if reason.is_empty() { "canceled by request".into() } else { reason.to_string() };
            let running = run.steps.iter().any(|s| s.status == StepStatus::Running as i32);
            let mut entries = vec![Entry::run(RunEventKind::RunCancelRequested, run.cancel_reason.clone())];
            let lease = if running {
                run.status = JobStatus::Canceling as i32;
                // Free the lease so a worker takes the run at once, even one
                // waiting out a delay.
                0
            } else {
                entries.extend(finish_canceled(&mut run));
                0
            };
            let mut writes = vec![Write::update(&record, status_name(status_of(run.status)), &run).leased_until(lease)];
            writes.extend(entry_writes(&run, entries));
            if self.inner.records.apply(tenant, writes).await? {
                if is_final(run.status) {
                    self.finished(&run);
                }
                return Ok(run);
            }
        }
        Err(DriftError::Precondition(format!("run {id} is changing too fast to cancel; try again")))
    }

    /// Runs a FAILED run again from its failed steps.
    pub async fn retry(&self, tenant: &str, id: &str) -> Result<pb::PipelineRun, DriftError> {
        let (record, mut run) = self.run_record(tenant, id).await?;
        if run.status != JobStatus::Failed as i32 {
            return Err(DriftError::Precondition(format!(
                "run {id} is {}; only a failed run can be retried",
                short(run.status)
            )));
        }
        run.attempt += 1;
        run.status = JobStatus::Queued as i32;
        run.error = None;
        run.finished_at = None;
        for s in &mut run.steps {
            if s.status == StepStatus::Failed as i32 || s.status == StepStatus::Canceled as i32 {
                s.status = StepStatus::Pending as i32;
                s.attempt = 0;
                s.error = None;
                s.finished_at = None;
                s.job_id.clear();
            } else if s.status == StepStatus::Skipped as i32 && s.skip_reason == SKIPPED_AFTER_FAILURE {
                s.status = StepStatus::Pending as i32;
                s.skip_reason.clear();
            }
        }
        run.progress = Some(progress(&run));
        let mut writes = vec![Write::update(&record, status_name(JobStatus::Queued), &run).leased_until(0)];
        writes
            .extend(entry_writes(&run, vec![Entry::run(RunEventKind::RunRetried, format!("attempt {}", run.attempt))]));
        if !self.inner.records.apply(tenant, writes).await? {
            return Err(DriftError::Precondition(format!("run {id} changed meanwhile; read it again and retry")));
        }
        Ok(run)
    }

    pub async fn timeline(&self, tenant: &str, r: &pb::GetRunTimelineRequest) -> Result<pb::RunTimeline, DriftError> {
        let run = self.run(tenant, &r.run_id).await?;
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let records = self
            .inner
            .records
            .list(
                tenant,
                RUN_ENTRY,
                ListQuery { parent: Some(&run.id), after: &page.page_token, limit, ..Default::default() },
            )
            .await?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        Ok(pb::RunTimeline {
            run_id: run.id,
            status: run.status,
            entries: records.iter().map(|r| r.decode()).collect::<Result<_, _>>()?,
            page: Some(PageResponse { next_page_token: next_token(&ids, limit, |s| s) }),
        })
    }

    // ------------------------------------------------------------ triggers

    /// Every active pipeline of every tenant with a trigger.
    async fn triggered(&self) -> Result<Vec<(String, pb::Pipeline)>, DriftError> {
        let records = self.inner.records.by_status(PIPELINE, &[ACTIVE], 10_000).await?;
        let mut out = Vec::new();
        for r in records {
            let p: pb::Pipeline = r.decode()?;
            if p.trigger.as_ref().is_some_and(|t| t.kind.is_some()) {
                out.push((r.tenant.clone(), p));
            }
        }
        Ok(out)
    }

    /// Starts the runs an event triggers (one per matching pipeline, with an
    /// id derived from the pipeline and the event, so delivering it twice
    /// starts nothing more).
    pub async fn deliver(&self, event: &EventEnvelope) -> Result<Vec<String>, DriftError> {
        self.deliver_all(std::slice::from_ref(event)).await
    }

    /// [`Pipelines::deliver`] for a batch, reading the triggered pipelines
    /// once.
    pub async fn deliver_all(&self, events: &[EventEnvelope]) -> Result<Vec<String>, DriftError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let pipelines = self.triggered().await?;
        let mut started = Vec::new();
        for event in events {
            let at = event.timestamp.as_ref().map(pulse_common::time::proto_millis);
            for (tenant, p) in &pipelines {
                if *tenant != event.tenant_id || !event_trigger_matches(p, event) {
                    continue;
                }
                // A trigger applies to events from its (re)definition on;
                // older events reach it only by replay, even when relayed late.
                let defined = p.updated_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
                if at.unwrap_or(i64::MAX) < defined {
                    continue;
                }
                let cause = if event.idempotency_key.is_empty() { &event.message_id } else { &event.idempotency_key };
                let run = self
                    .start(
                        tenant,
                        p,
                        RunRequest {
                            origin: RunOrigin::Event,
                            trigger: Some(event.clone()),
                            derived_id: Some((at.unwrap_or(0), format!("{} event {cause}", p.id))),
                            ..Default::default()
                        },
                    )
                    .await?;
                started.push(run.id);
            }
        }
        Ok(started)
    }

    /// Starts the runs of cron triggers with a tick in (after, until].
    pub async fn cron_tick(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<String>, DriftError> {
        let mut started = Vec::new();
        for (tenant, p) in self.triggered().await? {
            let Some(pipeline_trigger::Kind::Cron(c)) = p.trigger.as_ref().and_then(|t| t.kind.as_ref()) else {
                continue;
            };
            let Ok(schedule) = Schedule::parse("trigger.cron.expression", &c.expression, &c.timezone) else {
                continue;
            };
            let updated = p.updated_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
            let from = after.max(DateTime::from_timestamp_millis(updated).unwrap_or(after));
            if let Some(tick) = schedule.fired_between(from, until) {
                let at = tick.timestamp_millis();
                let trigger = EventEnvelope {
                    protocol: events::PROTOCOL.into(),
                    kind: pulse_proto::common::v1::EnvelopeKind::Event as i32,
                    name: "pulse.pipeline.cron_fired.v1".into(),
                    version: 1,
                    message_id: format!("cron-{}-{at}", p.id),
                    timestamp: Some(to_proto(tick)),
                    tenant_id: tenant.clone(),
                    payload: Some(json::to_struct(
                        &serde_json::json!({"expression": c.expression, "tick": tick.to_rfc3339()}),
                    )),
                    ..Default::default()
                };
                let run = self
                    .start(
                        &tenant,
                        &p,
                        RunRequest {
                            origin: RunOrigin::Cron,
                            trigger: Some(trigger),
                            derived_id: Some((at, format!("{} cron {at}", p.id))),
                            ..Default::default()
                        },
                    )
                    .await?;
                started.push(run.id);
            }
        }
        Ok(started)
    }

    /// Delivers past events again (see ReplayEvents).
    pub async fn replay(
        &self,
        tenant: &str,
        r: &pb::ReplayEventsRequest,
    ) -> Result<pb::ReplayEventsResponse, DriftError> {
        let max = match r.max_events {
            0 => 100,
            n if n > 1000 => return Err(DriftError::invalid("max_events", format!("{n} is more than 1000"))),
            n => n,
        };
        let mut chosen = Vec::new();
        match &r.events {
            Some(pb::replay_events_request::Events::MessageIds(ids)) => {
                if ids.ids.is_empty() {
                    return Err(DriftError::invalid("message_ids.ids", "is empty: name at least one event"));
                }
                if ids.ids.len() as u32 > max {
                    return Err(DriftError::invalid(
                        "message_ids.ids",
                        format!("names {} events, more than max_events {max}", ids.ids.len()),
                    ));
                }
                for id in &ids.ids {
                    chosen.push(self.inner.log.get(tenant, id).await?);
                }
            }
            Some(pb::replay_events_request::Events::Selector(sel)) => {
                let (events, next) = self
                    .inner
                    .log
                    .list(tenant, sel, false, &PageRequest { page_size: max, page_token: String::new() })
                    .await?;
                if !next.is_empty() {
                    return Err(DriftError::invalid(
                        "selector",
                        format!(
                            "matches more than max_events ({max}) events; narrow it (name, entity_id, range) or raise max_events"
                        ),
                    ));
                }
                chosen = events;
            }
            None => return Err(DriftError::invalid("events", "set message_ids or selector")),
        }
        let targets: Vec<pb::Pipeline> = if r.pipeline_id.is_empty() {
            self.triggered().await?.into_iter().filter(|(t, _)| t == tenant).map(|(_, p)| p).collect()
        } else {
            vec![self.get(tenant, &r.pipeline_id).await?]
        };
        let mut replays = Vec::new();
        for event in &chosen {
            let mut runs = Vec::new();
            for p in &targets {
                if r.pipeline_id.is_empty() && !event_trigger_matches(p, event) {
                    continue;
                }
                let run = self
                    .start(
                        tenant,
                        p,
                        RunRequest {
                            origin: RunOrigin::Replay,
                            trigger: Some(event.clone()),
                            replay_of: event.message_id.clone(),
                            dry_run: r.dry_run,
                            allow_unsafe: r.allow_unsafe_steps,
                            ..Default::default()
                        },
                    )
                    .await?;
                runs.push(run);
            }
            replays.push(pb::Replay { event: Some(event.clone()), runs });
        }
        Ok(pb::ReplayEventsResponse { dry_run: r.dry_run, matched_events: chosen.len() as u32, replays })
    }
}

pub const RUN_DEFINITION: &str = "run_definition";
pub(crate) const SKIPPED_AFTER_FAILURE: &str = "an earlier step failed";

/// The definition a run was started with (kept apart from the run so the
/// run record stays small and changes often).
#[derive(Clone, PartialEq, pulse_proto::prost::Message)]
pub struct RunDefinition {
    #[prost(message, optional, tag = "1")]
    pub pipeline: Option<pb::Pipeline>,
}

fn origin_word(o: RunOrigin) -> &'static str {
    match o {
        RunOrigin::Manual => "manual",
        RunOrigin::Event => "event-triggered",
        RunOrigin::Cron => "scheduled",
        RunOrigin::Policy => "policy",
        RunOrigin::Replay => "replay",
        RunOrigin::Unspecified => "manual",
    }
}

pub(crate) fn status_of(s: i32) -> JobStatus {
    JobStatus::try_from(s).unwrap_or_default()
}

pub(crate) fn short(s: i32) -> String {
    status_of(s).as_str_name().trim_start_matches("JOB_STATUS_").to_lowercase()
}

pub(crate) fn progress(run: &pb::PipelineRun) -> pulse_proto::common::v1::JobProgress {
    let done = run
        .steps
        .iter()
        .filter(|s| [StepStatus::Completed as i32, StepStatus::Skipped as i32].contains(&s.status))
        .count() as u64;
    pulse_proto::common::v1::JobProgress {
        done,
        total: run.steps.len() as u64,
        unit: "steps".into(),
        ..Default::default()
    }
}

/// Ends a run as CANCELED: running steps CANCELED, pending ones skipped.
pub(crate) fn finish_canceled(run: &mut pb::PipelineRun) -> Vec<Entry> {
    let mut entries = Vec::new();
    for s in &mut run.steps {
        if s.status == StepStatus::Running as i32 {
            s.status = StepStatus::Canceled as i32;
            s.finished_at = Some(now_ts());
            s.worker.clear();
            entries.push(Entry::step(RunEventKind::StepCanceled, s, "run canceled"));
        } else if [StepStatus::Pending as i32, StepStatus::Scheduled as i32].contains(&s.status) {
            s.status = StepStatus::Skipped as i32;
            s.skip_reason = "run canceled".into();
            entries.push(Entry::step(RunEventKind::StepSkipped, s, "run canceled"));
        }
    }
    run.status = JobStatus::Canceled as i32;
    run.waiting = None;
    run.finished_at = Some(now_ts());
    run.progress = Some(progress(run));
    entries.push(Entry::run(RunEventKind::RunCanceled, run.cancel_reason.clone()));
    entries
}

fn event_trigger_matches(p: &pb::Pipeline, e: &EventEnvelope) -> bool {
    let Some(pipeline_trigger::Kind::Event(t)) = p.trigger.as_ref().and_then(|t| t.kind.as_ref()) else {
        return false;
    };
    let name_ok = match t.name.strip_suffix(".*") {
        Some(prefix) => e.name.starts_with(&format!("{prefix}.")),
        None => e.name == t.name,
    };
    name_ok && events::filter_matches(&t.filters, e)
}

/// The system tenant's record of a cursor (dispatch position, cron time).
pub(crate) async fn cursor(records: &Arc<dyn RecordStore>, id: &str) -> Result<(Option<Record>, i64), DriftError> {
    match records.get(SYSTEM_TENANT, CURSOR, id).await? {
        Some(r) => {
            let value = r.decode::<CursorValue>()?.value;
            Ok((Some(r), value))
        }
        None => Ok((None, 0)),
    }
}

pub(crate) async fn save_cursor(
    records: &Arc<dyn RecordStore>,
    id: &str,
    previous: Option<&Record>,
    value: i64,
) -> Result<bool, DriftError> {
    let body = CursorValue { value };
    let write = match previous {
        Some(r) => Write::update(r, "", &body),
        None => Write::insert(CURSOR, id, "", "", &body),
    };
    Ok(records.apply(SYSTEM_TENANT, vec![write]).await?)
}

#[derive(Clone, PartialEq, pulse_proto::prost::Message)]
pub struct CursorValue {
    #[prost(int64, tag = "1")]
    pub value: i64,
}
