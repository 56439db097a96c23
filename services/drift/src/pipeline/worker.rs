//! The step worker: claims a run under a lease and drives it step by step,
//! every change a compare-and-set of the run record; and the dispatcher,
//! which turns events and cron ticks into runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pulse_client::dynamic::{self, Method};
use pulse_common::json;
use pulse_common::records::{Record, Write};
use pulse_common::time::now_millis;
use pulse_proto::common::v1::{JobError, JobStatus};
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::{OnFalse, RunEventKind, StepStatus, step};
use tokio::sync::Mutex;

use super::definition::{self, Retry};
use super::expr::{self, Expression};
use super::{
    Entry, Pipelines, RUN, SKIPPED_AFTER_FAILURE, entry_writes, finish_canceled, now_ts, progress, status_name,
};
use crate::error::DriftError;

/// Longer waits release the run until they are due.
const HOLD_MAX_MS: i64 = 3_000;
const JOB_POLL: Duration = Duration::from_millis(500);

/// Why a call failed. Transient failures (the service unreachable or
/// restarting) are retried with the same idempotency key within the
/// attempt's timeout; others end the attempt.
#[derive(Debug, Clone)]
pub struct CallFailure {
    pub code: String,
    pub message: String,
    pub transient: bool,
}

/// Calls Pulse as a tenant. The gRPC adapter implements it over the
/// process's own endpoint, so a step's call passes the same authentication,
/// idempotency and forwarding as any client's.
#[async_trait::async_trait]
pub trait ActionCaller: Send + Sync {
    async fn call(
        &self,
        tenant: &str,
        method: &Method,
        body: Vec<u8>,
        idempotency_key: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallFailure>;
}

/// Codes that no retry can fix.
fn retryable(code: &str) -> bool {
    !matches!(
        code,
        "INVALID_ARGUMENT"
            | "NOT_FOUND"
            | "ALREADY_EXISTS"
            | "PERMISSION_DENIED"
            | "UNAUTHENTICATED"
            | "FAILED_PRECONDITION"
            | "UNIMPLEMENTED"
            | "OUT_OF_RANGE"
    )
}

/// Long jobs an action may start: how to read and cancel them.
fn job_methods(output: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match output {
        "pulse.snapshot.v1.ExtractionJob" => (
            "pulse.snapshot.v1.SnapshotService/GetExtractionJob",
            "pulse.snapshot.v1.SnapshotService/CancelExtractionJob",
            "job_id",
        ),
        "pulse.trainer.v1.TrainingJob" => (
            "pulse.trainer.v1.TrainerService/GetTrainingJob",
            "pulse.trainer.v1.TrainerService/CancelTrainingJob",
            "job_id",
        ),
        "pulse.drift.v1.PipelineRun" => {
            ("pulse.drift.v1.DriftService/GetPipelineRun", "pulse.drift.v1.DriftService/CancelPipelineRun", "run_id")
        }
        _ => return None,
    })
}

fn job_final(status: &serde_json::Value) -> Option<bool> {
    match status.as_str()? {
        "JOB_STATUS_SUCCEEDED" => Some(true),
        "JOB_STATUS_FAILED" | "JOB_STATUS_CANCELED" => Some(false),
        _ => None,
    }
}

/// How a sequence of steps ended.
#[derive(Debug, Clone)]
enum Flow {
    Done,
    /// A condition stopped the run.
    Stop,
    Failed(JobError),
    /// Nothing to do before this time (ms): a delay or a retry backoff.
    Wait(i64),
}

/// Why a driver stops driving.
#[derive(Debug)]
enum Halt {
    /// The run was canceled meanwhile.
    Canceled,
    /// Another worker holds the run now, or the store failed.
    Lost,
}

type Step<'a> = Pin<Box<dyn Future<Output = Result<Flow, Halt>> + Send + 'a>>;

/// Starts `workers` run drivers holding runs for `lease` between renewals
/// (the job lease every Pulse queue uses), and the trigger dispatcher.
pub fn spawn_workers(
    pipelines: Pipelines,
    caller: Arc<dyn ActionCaller>,
    workers: usize,
    lease: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let lease_ms = (lease.as_millis() as i64).max(1_000);
    let mut handles: Vec<_> = (0..workers.max(1))
        .map(|i| {
            let (p, c) = (pipelines.clone(), caller.clone());
            let id = format!("{}-{}-{i}", hostname(), std::process::id());
            tokio::spawn(async move { worker_loop(p, c, id, lease_ms).await })
        })
        .collect();
    let p = pipelines.clone();
    handles.push(tokio::spawn(async move { dispatch_loop(p).await }));
    handles
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "pulse".into())
}

async fn worker_loop(pipelines: Pipelines, caller: Arc<dyn ActionCaller>, worker: String, lease_ms: i64) {
    let statuses = [
        status_name(JobStatus::Pending),
        status_name(JobStatus::Queued),
        status_name(JobStatus::Running),
        status_name(JobStatus::Canceling),
    ];
    loop {
        let claimed = pipelines.records().claim(RUN, &statuses, now_millis().timestamp_millis() + lease_ms).await;
        match claimed {
            Ok(Some(record)) => {
                if record.status == status_name(JobStatus::Running)
                    && let Some(jobs) = pipelines.job_metrics()
                {
                    // Running but claimable: its worker stopped renewing.
                    jobs.taken_over(super::JOB_KIND);
                }
                let tenant = record.tenant.clone();
                let id = record.id.clone();
                match Driver::new(&pipelines, caller.clone(), &worker, record, lease_ms).await {
                    Ok(driver) => driver.drive().await,
                    Err(e) => tracing::warn!(run = %id, tenant = %tenant, error = %e, "cannot drive pipeline run"),
                }
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim pipeline runs");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Turns new events into runs, and cron ticks. Many replicas may run it:
/// run ids derive from their cause, so a second delivery starts nothing.
async fn dispatch_loop(pipelines: Pipelines) {
    let mut last_cron = chrono::Utc::now();
    loop {
        if let Err(e) = dispatch_events(&pipelines).await {
            tracing::warn!(error = %e, "pipeline event dispatch failed");
        }
        let now = chrono::Utc::now();
        if now - last_cron >= chrono::Duration::seconds(1) {
            // Queue depth once a second for the whole process, not per idle
            // worker poll.
            if let Some(jobs) = pipelines.job_metrics()
                && let Ok(n) = pipelines
                    .records()
                    .count(RUN, &[status_name(JobStatus::Pending), status_name(JobStatus::Queued)])
                    .await
            {
                jobs.queued.with_label_values(&[super::JOB_KIND]).set(n as i64);
            }
            match pipelines.cron_tick(last_cron, now).await {
                Ok(_) => last_cron = now,
                Err(e) => tracing::warn!(error = %e, "pipeline cron triggers failed"),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn dispatch_events(pipelines: &Pipelines) -> Result<(), DriftError> {
    let (record, mut position) = super::cursor(pipelines.records(), "dispatch").await?;
    if record.is_none() {
        // A new deployment starts from now: past events are replayed only
        // on request.
        position = pipelines.log().head().await?;
        super::save_cursor(pipelines.records(), "dispatch", None, position).await?;
        return Ok(());
    }
    let batch = pipelines.log().since(position, 200).await?;
    let Some(last) = batch.last().map(|(p, _)| *p) else { return Ok(()) };
    let events: Vec<_> = batch.into_iter().map(|(_, e)| e).collect();
    pipelines.deliver_all(&events).await?;
    super::save_cursor(pipelines.records(), "dispatch", record.as_ref(), last).await?;
    Ok(())
}

struct Driver {
    pipelines: Pipelines,
    caller: Arc<dyn ActionCaller>,
    worker: String,
    tenant: String,
    definition: pb::Pipeline,
    state: Mutex<(Record, pb::PipelineRun)>,
    /// Set when a branch fails: its siblings start no new step.
    abort: AtomicBool,
    lease_ms: i64,
}

impl Driver {
    async fn new(
        pipelines: &Pipelines,
        caller: Arc<dyn ActionCaller>,
        worker: &str,
        record: Record,
        lease_ms: i64,
    ) -> Result<Self, DriftError> {
        let run: pb::PipelineRun = record.decode()?;
        let definition = pipelines.definition(&record.tenant, &run.id).await?;
        Ok(Self {
            pipelines: pipelines.clone(),
            caller,
            worker: worker.into(),
            tenant: record.tenant.clone(),
            definition,
            state: Mutex::new((record, run)),
            abort: AtomicBool::new(false),
            lease_ms,
        })
    }

    async fn run(&self) -> pb::PipelineRun {
        self.state.lock().await.1.clone()
    }

    /// Applies `change` to the run and writes it at the revision held, with
    /// the entries it returns, renewing the lease (or setting it to `lease`).
    async fn commit_with_lease<F>(&self, lease: Option<i64>, change: F) -> Result<(), Halt>
    where
        F: FnOnce(&mut pb::PipelineRun) -> Vec<Entry>,
    {
        let mut state = self.state.lock().await;
        let mut run = state.1.clone();
        let entries = change(&mut run);
        run.progress = Some(progress(&run));
        let status = super::status_of(run.status);
        let until = lease.unwrap_or_else(|| now_millis().timestamp_millis() + self.lease_ms);
        let mut writes = vec![Write::update(&state.0, status_name(status), &run).leased_until(until)];
        writes.extend(entry_writes(&run, entries));
        match self.pipelines.records().apply(&self.tenant, writes).await {
            Ok(true) => {
                state.0.revision += 1;
                state.0.status = status_name(status).into();
                state.1 = run;
                Ok(())
            }
            Ok(false) => {
                // Someone else wrote: a cancel request, or a worker that took
                // the run after our lease lapsed.
                match self.pipelines.run_record(&self.tenant, &state.1.id).await {
                    Ok((record, fresh)) if fresh.status == JobStatus::Canceling as i32 => {
                        *state = (record, fresh);
                        Err(Halt::Canceled)
                    }
                    _ => Err(Halt::Lost),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write pipeline run");
                Err(Halt::Lost)
            }
        }
    }

    async fn commit<F>(&self, change: F) -> Result<(), Halt>
    where
        F: FnOnce(&mut pb::PipelineRun) -> Vec<Entry>,
    {
        self.commit_with_lease(None, change).await
    }

    fn renew_every(&self) -> Duration {
        Duration::from_millis((self.lease_ms / 3) as u64)
    }

    /// Keeps the lease while waiting.
    async fn renew(&self) -> Result<(), Halt> {
        self.commit(|_| Vec::new()).await
    }

    async fn sleep_until(&self, due_ms: i64) -> Result<(), Halt> {
        loop {
            let left = due_ms - now_millis().timestamp_millis();
            if left <= 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(left as u64).min(self.renew_every())).await;
            self.renew().await?;
        }
    }

    async fn drive(self) {
        let run = self.run().await;
        let result = if run.status == JobStatus::Canceling as i32 { Err(Halt::Canceled) } else { self.go().await };
        match result {
            Ok(()) | Err(Halt::Lost) => {}
            Err(Halt::Canceled) => {
                if let Err(e) = self.cancel_now().await {
                    tracing::warn!(run = %run.id, error = ?e, "cannot finish canceling the run");
                }
            }
        }
    }

    async fn go(&self) -> Result<(), Halt> {
        let run = self.run().await;
        if run.status != JobStatus::Running as i32 {
            self.commit(|r| {
                r.status = JobStatus::Running as i32;
                if r.started_at.is_none() {
                    r.started_at = Some(now_ts());
                }
                Vec::new()
            })
            .await?;
        }
        let steps = self.definition.steps.clone();
        match self.sequence(&steps, "").await? {
            Flow::Done | Flow::Stop => {
                let result = self
                    .commit_with_lease(Some(0), |r| {
                        for s in &mut r.steps {
                            if s.status == StepStatus::Pending as i32 {
                                s.status = StepStatus::Skipped as i32;
                                s.skip_reason = "the run was stopped by a condition".into();
                            }
                        }
                        r.status = JobStatus::Succeeded as i32;
                        r.waiting = None;
                        r.finished_at = Some(now_ts());
                        vec![Entry::run(RunEventKind::RunCompleted, "completed")]
                    })
                    .await;
                self.count_if_finished(&result).await;
                result
            }
            Flow::Failed(error) => {
                let result = self
                    .commit_with_lease(Some(0), |r| {
                        let mut entries = Vec::new();
                        for s in &mut r.steps {
                            if [StepStatus::Pending as i32, StepStatus::Scheduled as i32].contains(&s.status) {
                                s.status = StepStatus::Skipped as i32;
                                s.skip_reason = SKIPPED_AFTER_FAILURE.into();
                                entries.push(Entry::step(RunEventKind::StepSkipped, s, SKIPPED_AFTER_FAILURE));
                            }
                        }
                        r.status = JobStatus::Failed as i32;
                        r.waiting = None;
                        r.finished_at = Some(now_ts());
                        let message = format!("step {} failed: {}", error.step, error.message);
                        r.error = Some(error);
                        entries.push(Entry::run(RunEventKind::RunFailed, message));
                        entries
                    })
                    .await;
                self.count_if_finished(&result).await;
                result
            }
            Flow::Wait(due) => {
                // Release the run until it is due: the lease column keeps
                // every worker off it meanwhile, across restarts.
                self.commit_with_lease(Some(due), |_| Vec::new()).await
            }
        }
    }

    async fn count_if_finished(&self, result: &Result<(), Halt>) {
        if result.is_ok() {
            self.pipelines.finished(&self.run().await);
        }
    }

    /// Stops the running steps' jobs and ends the run CANCELED.
    async fn cancel_now(&self) -> Result<(), Halt> {
        let run = self.run().await;
        for s in run.steps.iter().filter(|s| s.status == StepStatus::Running as i32 && !s.job_id.is_empty()) {
            let Some(action) = find_step(&self.definition.steps, &s.step_id).and_then(|d| match &d.kind {
                Some(step::Kind::Action(a)) => Some(a.clone()),
                _ => None,
            }) else {
                continue;
            };
            let Ok(method) = dynamic::method(&action.method) else { continue };
            if let Some((_, cancel, field)) = job_methods(method.output.full_name()) {
                let request =
                    serde_json::json!({ field: s.job_id, "reason": format!("pipeline run {} canceled", run.id) });
                if let Err(f) = self.call_json(cancel, &request, &format!("{}/{}/cancel", run.id, s.path)).await {
                    tracing::info!(job = %s.job_id, code = %f.code, "could not cancel the step's job: {}", f.message);
                }
            }
        }
        // The cancel request freed the lease; take the run back to finish.
        loop {
            let (record, mut fresh) = match self.pipelines.run_record(&self.tenant, &run.id).await {
                Ok(x) => x,
                Err(_) => return Err(Halt::Lost),
            };
            if super::is_final(fresh.status) {
                return Ok(());
            }
            let entries = finish_canceled(&mut fresh);
            let mut writes = vec![Write::update(&record, status_name(JobStatus::Canceled), &fresh).leased_until(0)];
            writes.extend(entry_writes(&fresh, entries));
            match self.pipelines.records().apply(&self.tenant, writes).await {
                Ok(true) => {
                    self.pipelines.finished(&fresh);
                    return Ok(());
                }
                Ok(false) => continue,
                Err(_) => return Err(Halt::Lost),
            }
        }
    }

    async fn call_json(
        &self,
        method: &str,
        request: &serde_json::Value,
        key: &str,
    ) -> Result<serde_json::Value, CallFailure> {
        let m = dynamic::method(method).map_err(|e| CallFailure {
            code: "INVALID_ARGUMENT".into(),
            message: e,
            transient: false,
        })?;
        let body = m.encode(request).map_err(|e| CallFailure {
            code: "INVALID_ARGUMENT".into(),
            message: e,
            transient: false,
        })?;
        let key = if m.info.mutation { key } else { "" };
        let answer = self.caller.call(&self.tenant, &m, body, key, Duration::from_secs(60)).await?;
        m.decode(&answer).map_err(|e| CallFailure { code: "INTERNAL".into(), message: e, transient: false })
    }

    /// What `${…}` and conditions see.
    fn context(run: &pb::PipelineRun) -> serde_json::Value {
        let mut steps = serde_json::Map::new();
        for s in &run.steps {
            if let Some(out) = &s.output {
                steps.insert(s.step_id.clone(), serde_json::json!({ "output": json::to_json(out) }));
            }
        }
        let trigger = match &run.trigger {
            Some(t) => serde_json::json!({
                "name": t.name,
                "message_id": t.message_id,
                "payload": t.payload.as_ref().map(json::to_json).unwrap_or_else(|| serde_json::json!({})),
                "metadata": t.metadata,
            }),
            None => serde_json::json!({}),
        };
        serde_json::json!({
            "inputs": run.inputs.as_ref().map(json::to_json).unwrap_or_else(|| serde_json::json!({})),
            "trigger": trigger,
            "steps": steps,
            "run": {"id": run.id},
        })
    }

    fn sequence<'a>(&'a self, steps: &'a [pb::Step], prefix: &'a str) -> Step<'a> {
        Box::pin(async move {
            for s in steps {
                let path = if prefix.is_empty() { s.id.clone() } else { format!("{prefix}/{}", s.id) };
                let current = self.step_run(&path).await;
                match StepStatus::try_from(current.status).unwrap_or_default() {
                    StepStatus::Completed | StepStatus::Skipped => continue,
                    StepStatus::Failed => {
                        return Ok(Flow::Failed(current.error.unwrap_or_else(|| JobError {
                            code: "FAILED".into(),
                            message: "failed".into(),
                            step: path.clone(),
                            retryable: true,
                        })));
                    }
                    StepStatus::Canceled => return Err(Halt::Canceled),
                    _ => {}
                }
                if self.abort.load(Ordering::Relaxed) {
                    return Ok(Flow::Failed(JobError {
                        code: "ABORTED".into(),
                        message: "a parallel branch failed".into(),
                        step: path,
                        retryable: true,
                    }));
                }
                let flow = match &s.kind {
                    Some(step::Kind::Action(a)) => self.action(s, a, &path).await?,
                    Some(step::Kind::Condition(c)) => self.condition(steps, s, c, &path, prefix).await?,
                    Some(step::Kind::Delay(d)) => self.delay(d, &path).await?,
                    Some(step::Kind::Parallel(p)) => self.parallel(p, &path).await?,
                    None => Flow::Done,
                };
                if !matches!(flow, Flow::Done) {
                    return Ok(flow);
                }
            }
            Ok(Flow::Done)
        })
    }

    async fn step_run(&self, path: &str) -> pb::StepRun {
        self.state.lock().await.1.steps.iter().find(|s| s.path == path).cloned().unwrap_or_default()
    }

    async fn condition(
        &self,
        siblings: &[pb::Step],
        s: &pb::Step,
        c: &pb::ConditionStep,
        path: &str,
        prefix: &str,
    ) -> Result<Flow, Halt> {
        let run = self.run().await;
        let result = Expression::parse(&c.expression).and_then(|e| e.eval(&Self::context(&run)));
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                let error = JobError {
                    code: "INVALID_ARGUMENT".into(),
                    message: format!("condition '{}': {e}", s.id),
                    step: path.into(),
                    retryable: false,
                };
                let err = error.clone();
                self.commit(|r| {
                    let st = step_mut(r, path);
                    st.status = StepStatus::Failed as i32;
                    st.attempt = 1;
                    st.error = Some(err.clone());
                    st.finished_at = Some(now_ts());
                    vec![Entry::step(RunEventKind::StepFailed, st, err.message.clone())]
                })
                .await?;
                return Ok(Flow::Failed(error));
            }
        };
        let on_false = OnFalse::try_from(c.on_false).unwrap_or(OnFalse::Stop);
        let skip = if value {
            0
        } else {
            match on_false {
                OnFalse::SkipNext => 1,
                OnFalse::SkipN => c.skip_count as usize,
                _ => 0,
            }
        };
        let index = siblings.iter().position(|x| x.id == s.id).unwrap_or(0);
        let mut skipped_paths = Vec::new();
        for next in siblings.iter().skip(index + 1).take(skip) {
            let mut flat = Vec::new();
            let base = if prefix.is_empty() { String::new() } else { prefix.to_string() };
            definition::flatten(std::slice::from_ref(next), &base, &mut flat);
            skipped_paths.extend(flat.into_iter().map(|(p, _)| p));
        }
        let reason = format!("condition '{}' was false", s.id);
        let stop = !value && matches!(on_false, OnFalse::Stop | OnFalse::Unspecified);
        self.commit(|r| {
            let st = step_mut(r, path);
            st.status = StepStatus::Completed as i32;
            st.attempt = 1;
            st.started_at = Some(now_ts());
            st.finished_at = Some(now_ts());
            st.output = Some(json::to_struct(&serde_json::json!({"result": value})));
            let message = format!("{} → {value}", c.expression);
            let mut entries = vec![Entry::step(RunEventKind::StepCompleted, st, message)];
            let mark = |st: &mut pb::StepRun, entries: &mut Vec<Entry>| {
                if st.status == StepStatus::Pending as i32 {
                    st.status = StepStatus::Skipped as i32;
                    st.skip_reason = reason.clone();
                    entries.push(Entry::step(RunEventKind::StepSkipped, st, reason.clone()));
                }
            };
            for st in r.steps.iter_mut() {
                if skipped_paths.contains(&st.path) || stop {
                    mark(st, &mut entries);
                }
            }
            entries
        })
        .await?;
        Ok(if stop { Flow::Stop } else { Flow::Done })
    }

    async fn delay(&self, d: &pb::DelayStep, path: &str) -> Result<Flow, Halt> {
        let current = self.step_run(path).await;
        let due = match current.scheduled_at.as_ref() {
            Some(t) if current.status == StepStatus::Scheduled as i32 => pulse_common::time::proto_millis(t),
            _ => {
                let now = now_millis().timestamp_millis();
                let due = match &d.until {
                    Some(pb::delay_step::Until::Duration(x)) => now + (definition::seconds(x) * 1000.0) as i64,
                    Some(pb::delay_step::Until::At(t)) => pulse_common::time::proto_millis(t),
                    None => now,
                };
                let until = pulse_common::time::to_proto(pulse_common::time::from_millis(due));
                self.commit(|r| {
                    let st = step_mut(r, path);
                    st.status = StepStatus::Scheduled as i32;
                    st.attempt = 1;
                    st.started_at = Some(now_ts());
                    st.scheduled_at = Some(until);
                    let e = Entry::step(RunEventKind::StepScheduled, st, "delay");
                    let reason = format!("delay until {}", pulse_common::time::from_millis(due).to_rfc3339());
                    r.waiting = Some(pb::Waiting { step: path.into(), reason: reason.clone(), until: Some(until) });
                    vec![e, Entry::run(RunEventKind::RunWaiting, reason)]
                })
                .await?;
                due
            }
        };
        if due - now_millis().timestamp_millis() > HOLD_MAX_MS {
            return Ok(Flow::Wait(due));
        }
        self.sleep_until(due).await?;
        self.commit(|r| {
            r.waiting = None;
            let st = step_mut(r, path);
            st.status = StepStatus::Completed as i32;
            st.finished_at = Some(now_ts());
            vec![Entry::step(RunEventKind::StepCompleted, st, "delay over")]
        })
        .await?;
        Ok(Flow::Done)
    }

    async fn parallel(&self, p: &pb::ParallelStep, path: &str) -> Result<Flow, Halt> {
        if self.step_run(path).await.status != StepStatus::Running as i32 {
            self.commit(|r| {
                let st = step_mut(r, path);
                st.status = StepStatus::Running as i32;
                st.attempt = 1;
                st.started_at = Some(now_ts());
                vec![Entry::step(RunEventKind::StepStarted, st, format!("{} branches", p.branches.len()))]
            })
            .await?;
        }
        let prefixes: Vec<String> = p.branches.iter().map(|b| format!("{path}/{}", b.name)).collect();
        let flows = futures::future::join_all(p.branches.iter().zip(&prefixes).map(|(b, prefix)| async move {
            let flow = self.sequence(&b.steps, prefix).await;
            if matches!(flow, Ok(Flow::Failed(_))) {
                self.abort.store(true, Ordering::Relaxed);
            }
            flow
        }))
        .await;
        self.abort.store(false, Ordering::Relaxed);
        let mut wait: Option<i64> = None;
        let mut failed: Option<JobError> = None;
        let mut stop = false;
        for f in flows {
            match f? {
                Flow::Done => {}
                Flow::Stop => stop = true,
                Flow::Wait(due) => wait = Some(wait.map_or(due, |w| w.min(due))),
                Flow::Failed(e) => {
                    if failed.is_none() || e.code != "ABORTED" {
                        failed = Some(e);
                    }
                }
            }
        }
        if let Some(e) = failed {
            let err = e.clone();
            self.commit(|r| {
                let st = step_mut(r, path);
                st.status = StepStatus::Failed as i32;
                st.error = Some(err.clone());
                st.finished_at = Some(now_ts());
                vec![Entry::step(RunEventKind::StepFailed, st, format!("branch step {} failed", err.step))]
            })
            .await?;
            return Ok(Flow::Failed(JobError { step: path.into(), ..e }));
        }
        if let Some(due) = wait {
            return Ok(Flow::Wait(due));
        }
        self.commit(|r| {
            let st = step_mut(r, path);
            st.status = StepStatus::Completed as i32;
            st.finished_at = Some(now_ts());
            vec![Entry::step(RunEventKind::StepCompleted, st, "every branch finished")]
        })
        .await?;
        Ok(if stop { Flow::Stop } else { Flow::Done })
    }

    async fn action(&self, s: &pb::Step, a: &pb::ActionStep, path: &str) -> Result<Flow, Halt> {
        let retry = Retry::of(s);
        let timeout_ms = (definition::timeout_s(s) * 1000.0) as i64;
        loop {
            let current = self.step_run(path).await;
            if current.status == StepStatus::Scheduled as i32 {
                let due = current.scheduled_at.as_ref().map(pulse_common::time::proto_millis).unwrap_or(0);
                if due - now_millis().timestamp_millis() > HOLD_MAX_MS {
                    return Ok(Flow::Wait(due));
                }
                self.sleep_until(due).await?;
            }
            if current.status != StepStatus::Running as i32 {
                let worker = self.worker.clone();
                self.commit(|r| {
                    r.waiting = None;
                    let st = step_mut(r, path);
                    st.status = StepStatus::Running as i32;
                    st.attempt += 1;
                    st.started_at = Some(now_ts());
                    st.worker = worker;
                    st.job_id.clear();
                    let message = format!("attempt {} of {}: {}", st.attempt, st.max_attempts, a.method);
                    vec![Entry::step(RunEventKind::StepStarted, st, message)]
                })
                .await?;
            }
            let current = self.step_run(path).await;
            let run = self.run().await;
            let started = current
                .started_at
                .as_ref()
                .map(pulse_common::time::proto_millis)
                .unwrap_or_else(|| now_millis().timestamp_millis());
            let deadline = started + timeout_ms;
            let key = format!("{}/{}/{}.{}", run.id, path, run.attempt, current.attempt);
            match self.attempt(a, &run, &current, &key, deadline).await? {
                Ok(output) => {
                    let message = summary(&a.method, &output);
                    self.commit(|r| {
                        r.waiting = None;
                        let st = step_mut(r, path);
                        st.status = StepStatus::Completed as i32;
                        st.finished_at = Some(now_ts());
                        st.worker.clear();
                        st.error = None;
                        st.output = Some(json::to_struct(&output));
                        vec![Entry::step(RunEventKind::StepCompleted, st, message).with_data(output.clone())]
                    })
                    .await?;
                    return Ok(Flow::Done);
                }
                Err(failure) => {
                    let again = retryable(&failure.code) && current.attempt < retry.max_attempts;
                    let error = JobError {
                        code: failure.code.clone(),
                        message: failure.message.clone(),
                        step: path.into(),
                        retryable: retryable(&failure.code),
                    };
                    let backoff_ms = (retry.backoff_s(current.attempt + 1) * 1000.0) as i64;
                    let err = error.clone();
                    self.commit(|r| {
                        r.waiting = None;
                        let st = step_mut(r, path);
                        st.error = Some(err.clone());
                        st.worker.clear();
                        let mut entries = Vec::new();
                        if again {
                            let due = now_millis().timestamp_millis() + backoff_ms;
                            st.status = StepStatus::Scheduled as i32;
                            st.scheduled_at = Some(pulse_common::time::to_proto(pulse_common::time::from_millis(due)));
                            let failed_entry = Entry::step(
                                RunEventKind::StepFailed,
                                st,
                                format!("attempt {} failed: {}: {}", st.attempt, err.code, err.message),
                            );
                            entries.push(failed_entry);
                            let sched = Entry::step(
                                RunEventKind::StepScheduled,
                                st,
                                format!("retry in {:.1} s", backoff_ms as f64 / 1000.0),
                            );
                            entries.push(sched);
                        } else {
                            st.status = StepStatus::Failed as i32;
                            st.finished_at = Some(now_ts());
                            entries.push(Entry::step(
                                RunEventKind::StepFailed,
                                st,
                                format!("{}: {}", err.code, err.message),
                            ));
                        }
                        entries
                    })
                    .await?;
                    if !again {
                        return Ok(Flow::Failed(error));
                    }
                }
            }
        }
    }

    /// One attempt: the call (transient failures retried with the same key
    /// until the deadline) and, for a job, the wait until it is final.
    async fn attempt(
        &self,
        a: &pb::ActionStep,
        run: &pb::PipelineRun,
        current: &pb::StepRun,
        key: &str,
        deadline: i64,
    ) -> Result<Result<serde_json::Value, CallFailure>, Halt> {
        let invalid =
            |m: String| Ok(Err(CallFailure { code: "INVALID_ARGUMENT".into(), message: m, transient: false }));
        let method = match dynamic::method(&a.method) {
            Ok(m) => m,
            Err(e) => return invalid(e),
        };
        let template = a.request.as_ref().map(json::to_json).unwrap_or_else(|| serde_json::json!({}));
        let request = match expr::substitute(&template, &Self::context(run)) {
            Ok(r) => r,
            Err(e) => return invalid(format!("request: {e}")),
        };
        let body = match method.encode(&request) {
            Ok(b) => b,
            Err(e) => return invalid(e),
        };
        let idempotency = if method.info.mutation { key } else { "" };
        // A job already started by this attempt (before a restart) is
        // waited on again, not started again.
        let mut answer = if current.job_id.is_empty() {
            let mut pause = Duration::from_millis(200);
            loop {
                let left = deadline - now_millis().timestamp_millis();
                if left <= 0 {
                    return Ok(Err(CallFailure {
                        code: "DEADLINE_EXCEEDED".into(),
                        message: "the step's timeout passed".into(),
                        transient: false,
                    }));
                }
                let call = self.caller.call(
                    &self.tenant,
                    &method,
                    body.clone(),
                    idempotency,
                    Duration::from_millis(left.min(60_000) as u64),
                );
                match call.await {
                    Ok(bytes) => match method.decode(&bytes) {
                        Ok(v) => break v,
                        Err(e) => {
                            return Ok(Err(CallFailure { code: "INTERNAL".into(), message: e, transient: false }));
                        }
                    },
                    Err(f) if f.transient => {
                        tracing::info!(run = %run.id, step = %current.path, code = %f.code, "step call failed, retrying: {}", f.message);
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(10));
                        self.renew().await?;
                    }
                    Err(f) => return Ok(Err(f)),
                }
            }
        } else {
            serde_json::Value::Null
        };
        let Some((get, _, field)) = job_methods(method.output.full_name()) else { return Ok(Ok(answer)) };
        if a.wait == Some(false) {
            return Ok(Ok(answer));
        }
        let job_id = if current.job_id.is_empty() {
            answer.get("id").and_then(|v| v.as_str()).unwrap_or_default().to_string()
        } else {
            current.job_id.clone()
        };
        if current.job_id.is_empty() && !job_id.is_empty() {
            let (path, id) = (current.path.clone(), job_id.clone());
            self.commit(|r| {
                let st = step_mut(r, &path);
                st.job_id = id.clone();
                let e = Entry::step(RunEventKind::Log, st, format!("waiting for {id}"));
                r.waiting = Some(pb::Waiting { step: path.clone(), reason: format!("waiting for {id}"), until: None });
                vec![e]
            })
            .await?;
        }
        let mut last_renew = std::time::Instant::now();
        loop {
            if let Some(ok) = answer.get("status").and_then(job_final) {
                if ok {
                    return Ok(Ok(answer));
                }
                let error = answer.get("error").cloned().unwrap_or_default();
                let code = error.get("code").and_then(|c| c.as_str()).filter(|c| !c.is_empty()).unwrap_or("JOB_FAILED");
                let message = error.get("message").and_then(|c| c.as_str()).unwrap_or("the job did not succeed");
                let status =
                    answer["status"].as_str().unwrap_or_default().trim_start_matches("JOB_STATUS_").to_lowercase();
                return Ok(Err(CallFailure {
                    // The job's own failure: another attempt starts a new job.
                    code: if retryable(code) { code.to_string() } else { "ABORTED".into() },
                    message: format!("{job_id} {status}: {message}"),
                    transient: false,
                }));
            }
            if now_millis().timestamp_millis() > deadline {
                return Ok(Err(CallFailure {
                    code: "DEADLINE_EXCEEDED".into(),
                    message: format!("{job_id} did not finish within the step's timeout"),
                    transient: false,
                }));
            }
            tokio::time::sleep(JOB_POLL).await;
            if last_renew.elapsed() >= self.renew_every() {
                self.renew().await?;
                last_renew = std::time::Instant::now();
            }
            match self.call_json(get, &serde_json::json!({ field: job_id }), "").await {
                Ok(v) => answer = v,
                Err(f) if f.transient => continue,
                Err(f) => return Ok(Err(f)),
            }
        }
    }
}

fn step_mut<'a>(run: &'a mut pb::PipelineRun, path: &str) -> &'a mut pb::StepRun {
    let i = run.steps.iter().position(|s| s.path == path).expect("every step of the definition has a step run");
    &mut run.steps[i]
}

fn find_step<'a>(steps: &'a [pb::Step], id: &str) -> Option<&'a pb::Step> {
    for s in steps {
        if s.id == id {
            return Some(s);
        }
        if let Some(step::Kind::Parallel(p)) = &s.kind {
            for b in &p.branches {
                if let Some(found) = find_step(&b.steps, id) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// One line for the timeline: a refused promotion says why.
fn summary(method: &str, output: &serde_json::Value) -> String {
    let short = method.rsplit('/').next().unwrap_or(method);
    if output.get("promoted") == Some(&serde_json::Value::Bool(false)) {
        let refusal = output.get("refusal").and_then(|r| r.as_str()).unwrap_or("gates failed");
        return format!("{short}: promotion refused: {refusal}");
    }
    if output.get("promoted") == Some(&serde_json::Value::Bool(true)) {
        // PromoteModelResponse.model_version is a ModelVersion: its `ref`
        // names it.
        let v = &output["model_version"]["ref"];
        return format!("{short}: promoted {} v{}", v["model"].as_str().unwrap_or("?"), v["version"]);
    }
    match output.get("id").and_then(|v| v.as_str()) {
        Some(id) => format!("{short}: {id}"),
        None => short.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use pulse_proto::prost::Message as _;

    use super::*;

    #[test]
    fn summaries_name_the_promoted_version_or_the_refusal() {
        use pulse_proto::common::v1::ModelVersionRef;
        use pulse_proto::trainer::v1::{ModelVersion, PromoteModelResponse};
        let m = dynamic::method("pulse.trainer.v1.TrainerService/PromoteModel").unwrap();
        let promoted = PromoteModelResponse {
            promoted: true,
            model_version: Some(ModelVersion {
                r#ref: Some(ModelVersionRef { model: "churn".into(), version: 2 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = m.decode(&promoted.encode_to_vec()).unwrap();
        assert_eq!(summary(&m.name, &json), "PromoteModel: promoted churn v2");
        let refused = PromoteModelResponse { refusal: "roc_auc 0.61 < 0.75".into(), ..Default::default() };
        let json = m.decode(&refused.encode_to_vec()).unwrap();
        assert_eq!(summary(&m.name, &json), "PromoteModel: promotion refused: roc_auc 0.61 < 0.75");
    }
}
