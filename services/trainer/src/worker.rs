//! Training workers. A worker claims a queued job (or a running one whose
//! lease expired: its worker died) by compare-and-set on the job's row, so
//! two workers never run a job at once; it renews the lease while training
//! and checkpoints to object storage after epochs. A job taken over resumes
//! from its last checkpoint and ends with the same model hash as an
//! uninterrupted run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use pulse_common::ids::new_id;
use pulse_common::records::{ListQuery, Write};
use pulse_common::time::{now_millis, to_proto};
use pulse_proto::common::v1::{DatasetVersionRef, JobError, JobProgress, JobStatus, ModelVersionRef};
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::{ModelStage, Task};

use crate::algo::{self, Control, Head, Matrix, TrainState};
use crate::artifact::{self, ModelArtifact, Predictions};
use crate::checkpoints::JOB_KIND;
use crate::domain::{
    CHECKPOINT, JOB, JobRecord, Trainer, is_final, job_status, lineage_model_id, status_name, timeline,
};
use crate::error::TrainerError;
use crate::{contract, metrics, params, pipeline};

const POLL: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The rows of one training run, transformed.
struct Prepared {
    pipeline: pipeline::FeaturePipeline,
    task: Task,
    head: Head,
    train: Matrix,
    val: Matrix,
    test: Matrix,
}

fn select(x: &[f32], y: &[f32], cols: usize, rows: &[usize]) -> Matrix {
    let mut m = Matrix { cols, rows: rows.len(), ..Default::default() };
    m.x.reserve(rows.len() * cols);
    for &r in rows {
        m.x.extend_from_slice(&x[r * cols..(r + 1) * cols]);
        m.y.push(y[r]);
    }
    m
}

impl Trainer {
    /// Runs `n` worker loops.
    pub fn spawn_workers(&self, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles: Vec<_> = (0..n)
            .map(|_| {
                let this = self.clone();
                tokio::spawn(async move { this.worker_loop().await })
            })
            .collect();
        // External workers silent past their timeout are marked lost.
        let this = self.clone();
        handles.push(tokio::spawn(async move {
            loop {
                if let Err(e) = this.sweep_workers().await {
                    tracing::warn!(error = %e, "could not sweep training workers");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }));
        handles
    }

    async fn worker_loop(self) {
        loop {
            match self.claim_next().await {
                Ok(Some((tenant, id))) => {
                    self.run(&tenant, &id).await;
                    continue;
                }
                Ok(None) => {
                    if let Ok(n) = self.records.count(JOB, &[status_name(JobStatus::Queued)]).await {
                        self.metrics.jobs.queued.with_label_values(&[JOB_KIND]).set(n as i64);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not look for training jobs"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn claim_next(&self) -> Result<Option<(String, String)>, TrainerError> {
        let statuses =
            [status_name(JobStatus::Queued), status_name(JobStatus::Running), status_name(JobStatus::Canceling)];
        // A free lease: queued, or running (or canceling) with its worker
        // silent past the lease.
        let until = now_ms() + self.lease.as_millis() as i64;
        while let Some(record) = self.records.claim(JOB, &statuses, until).await? {
            let mut rec: JobRecord = record.decode()?;
            let mut job = rec.job.clone().unwrap_or_default();
            let status = job_status(&job);
            if status == JobStatus::Canceling {
                // Its worker died while canceling: finish the cancel here.
                job.status = JobStatus::Canceled as i32;
                job.finished_at = Some(to_proto(now_millis()));
                timeline(&mut job, JobStatus::Canceled, "canceled");
                rec.job = Some(job.clone());
                let writes = vec![
                    Write::update(&record, status_name(JobStatus::Canceled), &rec).leased_until(0),
                    Write::event("pulse.training.canceled.v1", &job.id, serde_json::json!({"job_id": job.id})),
                ];
                self.records.apply(&record.tenant, writes).await?;
                continue;
            }
            let resumed = status == JobStatus::Running;
            if resumed {
                self.metrics.jobs.taken_over(JOB_KIND);
            }
            rec.lease_worker = self.worker_id.clone();
            rec.lease_until_ms = until;
            job.status = JobStatus::Running as i32;
            job.attempts += 1;
            job.worker_id = self.worker_id.clone();
            if job.started_at.is_none() {
                job.started_at = Some(to_proto(now_millis()));
            }
            timeline(
                &mut job,
                JobStatus::Running,
                if resumed { "resumed by a new worker after the previous one stopped" } else { "started" },
            );
            rec.job = Some(job.clone());
            let mut writes = vec![Write::update(&record, status_name(JobStatus::Running), &rec).leased_until(until)];
            if job.attempts == 1 {
                writes.push(Write::event(
                    "pulse.training.started.v1",
                    &job.id,
                    serde_json::json!({"job_id": job.id, "model": job.contract.as_ref().map(|c| c.model.clone())}),
                ));
            }
            if self.records.apply(&record.tenant, writes).await? {
                return Ok(Some((record.tenant.clone(), job.id)));
            }
        }
        Ok(None)
    }

    /// Read-modify-write of a job this worker holds, renewing its lease.
    /// `LeaseLost` when another worker has it; `Canceled` when a cancel
    /// arrived (unless `allow_cancel`).
    async fn update_job<F>(
        &self,
        tenant: &str,
        id: &str,
        allow_cancel: bool,
        mut change: F,
    ) -> Result<JobRecord, TrainerError>
    where
        F: FnMut(&mut pb::TrainingJob) -> Vec<Write>,
    {
        loop {
            let (record, mut rec) = self.job_record(tenant, id).await?;
            let mut job = rec.job.clone().unwrap_or_default();
            if rec.lease_worker != self.worker_id || is_final(job_status(&job)) {
                return Err(TrainerError::LeaseLost);
            }
            if job_status(&job) == JobStatus::Canceling && !allow_cancel {
                return Err(TrainerError::Canceled);
            }
            rec.lease_until_ms = now_ms() + self.lease.as_millis() as i64;
            let mut writes = change(&mut job);
            let lease = if is_final(job_status(&job)) { 0 } else { rec.lease_until_ms };
            let status = status_name(job_status(&job));
            rec.job = Some(job);
            writes.insert(0, Write::update(&record, status, &rec).leased_until(lease));
            if self.records.apply(tenant, writes).await? {
                return Ok(rec);
            }
        }
    }

    /// Runs a claimed job to its end, or until its lease is lost.
    async fn run(&self, tenant: &str, id: &str) {
        let stop = Arc::new(AtomicBool::new(false));
        // Renew the lease while training; a cancel or a lost lease stops the
        // training loop at its next step.
        let renewer = {
            let (this, tenant, id, stop) = (self.clone(), tenant.to_string(), id.to_string(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(this.lease / 3).await;
                    match this.update_job(&tenant, &id, false, |_| Vec::new()).await {
                        Ok(_) => {}
                        Err(TrainerError::Canceled | TrainerError::LeaseLost) => {
                            stop.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(job = %id, error = %e, "could not renew the training lease"),
                    }
                }
            })
        };
        let outcome = self.execute(tenant, id, stop.clone()).await;
        renewer.abort();
        if let Ok(mut live) = self.live.lock() {
            live.remove(id);
        }
        let result = match outcome {
            Ok(()) => Ok(()),
            Err(TrainerError::LeaseLost) => {
                tracing::info!(job = %id, "training lease lost; another worker continues the job");
                Ok(())
            }
            Err(TrainerError::Canceled) => self.finish_canceled(tenant, id).await,
            Err(e) => self.fail(tenant, id, e).await,
        };
        if let Err(e) = result {
            tracing::warn!(job = %id, error = %e, "could not record the end of a training job");
        }
    }

    async fn finish_canceled(&self, tenant: &str, id: &str) -> Result<(), TrainerError> {
        match self
            .update_job(tenant, id, true, |job| {
                job.status = JobStatus::Canceled as i32;
                job.finished_at = Some(to_proto(now_millis()));
                job.stop_reason = format!("canceled at step {}", job.latest.as_ref().map(|m| m.step).unwrap_or(0));
                timeline(job, JobStatus::Canceled, "canceled at the next step");
                vec![Write::event("pulse.training.canceled.v1", id, serde_json::json!({"job_id": id}))]
            })
            .await
        {
            Ok(_) => {
                self.metrics.jobs.finished(JOB_KIND, "canceled");
                Ok(())
            }
            Err(TrainerError::LeaseLost) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn fail(&self, tenant: &str, id: &str, e: TrainerError) -> Result<(), TrainerError> {
        use pulse_common::error::ServiceError;
        tracing::warn!(job = %id, error = %e, "training job failed");
        let code = e.code();
        let message = e.public_message();
        let retryable = e.is_transient();
        match self
            .update_job(tenant, id, true, |job| {
                job.status = JobStatus::Failed as i32;
                job.finished_at = Some(to_proto(now_millis()));
                job.error = Some(JobError {
                    code: code.as_str().to_string(),
                    message: message.clone(),
                    step: "train".into(),
                    retryable,
                });
                timeline(job, JobStatus::Failed, message.clone());
                vec![Write::event(
                    "pulse.training.failed.v1",
                    id,
                    serde_json::json!({"job_id": id, "code": code.as_str(), "message": message}),
                )]
            })
            .await
        {
            Ok(_) => {
                self.metrics.jobs.finished(JOB_KIND, "failed");
                Ok(())
            }
            Err(TrainerError::LeaseLost) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads, validates, splits and transforms the job's dataset version.
    async fn prepare(
        &self,
        tenant: &str,
        job: &pb::TrainingJob,
        c: &pb::Contract,
        fit: bool,
    ) -> Result<(Prepared, contract::ValidationOutcome, Vec<Vec<usize>>), TrainerError> {
        let dataset = job.dataset.clone().unwrap_or_default();
        let (batches, _) = self.read_rows(tenant, &dataset, c).await?;
        let outcome = contract::validate_batches(c, &batches, 5);
        let task = Task::try_from(c.task).unwrap_or(Task::Unspecified);
        let target = c.target.clone().unwrap_or_default();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let split = job.split.unwrap_or_default();
        let strata = if split.stratify == Some(true) { Some(pipeline::labels(&batches, &target.name)?) } else { None };
        let (train, val, test) =
            pipeline::split(rows, strata.as_deref(), (split.train, split.validation, split.test), job.seed);
        if !fit || !outcome.passed {
            let empty = Prepared {
                pipeline: Default::default(),
                task,
                head: Head::Regression,
                train: Matrix::default(),
                val: Matrix::default(),
                test: Matrix::default(),
            };
            return Ok((empty, outcome, vec![train, val, test]));
        }
        let fitted = pipeline::fit(c, &batches, &train)?;
        let (x, _) = pipeline::transform(&fitted, &batches)?;
        let y = pipeline::encode_target(&fitted, task, &batches)?;
        let cols = fitted.width();
        let head = match task {
            Task::Regression => Head::Regression,
            _ if fitted.classes.len() <= 2 => Head::Binary,
            _ => Head::Multiclass(fitted.classes.len()),
        };
        let mut train_m = select(&x, &y, cols, &train);
        let p = params::parse(
            pb::Algorithm::try_from(job.algorithm).unwrap_or(pb::Algorithm::Unspecified),
            job.params.as_ref(),
            job.seed,
        )?;
        if p.class_weight_balanced && head != Head::Regression {
            let k = fitted.classes.len().max(1);
            let mut counts = vec![0usize; k];
            for c in &train_m.y {
                counts[*c as usize] += 1;
            }
            let n = train_m.rows as f32;
            train_m.w = train_m.y.iter().map(|c| n / (k as f32 * counts[*c as usize].max(1) as f32)).collect();
        }
        let prepared = Prepared {
            val: select(&x, &y, cols, &val),
            test: select(&x, &y, cols, &test),
            train: train_m,
            pipeline: fitted,
            task,
            head,
        };
        Ok((prepared, outcome, vec![train, val, test]))
    }

    async fn execute(&self, tenant: &str, id: &str, stop: Arc<AtomicBool>) -> Result<(), TrainerError> {
        let (_, rec) = self.job_record(tenant, id).await?;
        let job = rec.job.clone().unwrap_or_default();
        let cref = job.contract.clone().unwrap_or_default();
        let c = self.contract(tenant, &cref.model, cref.version).await?;
        let algorithm = pb::Algorithm::try_from(job.algorithm).unwrap_or(pb::Algorithm::Unspecified);
        let p = params::parse(algorithm, job.params.as_ref(), job.seed)?;
        let (prepared, outcome, _) = self.prepare(tenant, &job, &c, true).await?;
        let dataset = job.dataset.clone().unwrap_or_default();
        let report = pb::ValidationReport {
            dataset: Some(dataset.clone()),
            contract: Some(cref.clone()),
            passed: outcome.passed,
            rows_checked: outcome.rows_checked,
            violations: outcome.violations.clone(),
            checked_at: Some(to_proto(now_millis())),
        };
        if !outcome.passed {
            let summary: Vec<String> = outcome.violations.iter().take(5).map(|v| v.message.clone()).collect();
            self.update_job(tenant, id, true, |j| {
                j.validation = Some(report.clone());
                Vec::new()
            })
            .await?;
            return Err(TrainerError::Precondition(format!(
                "dataset {}@{} breaks contract '{}' v{} ({} violations): {}; see the job's validation report",
                dataset.dataset_id,
                dataset.version,
                c.model,
                c.version,
                outcome.violations.len(),
                summary.join("; ")
            )));
        }
        let steps_per_epoch = prepared.train.rows.div_ceil(p.batch_size.min(prepared.train.rows).max(1)) as u64;
        let total = steps_per_epoch * u64::from(p.epochs);
        self.update_job(tenant, id, false, |j| {
            j.validation = Some(report.clone());
            j.progress = Some(JobProgress { done: 0, total, unit: "steps".into(), ..Default::default() });
            timeline(j, JobStatus::Running, format!("dataset valid ({} rows); training", outcome.rows_checked));
            Vec::new()
        })
        .await?;

        let resume = self.latest_job_checkpoint(tenant, id).await?;
        let handle = tokio::runtime::Handle::current();
        let this = self.clone();
        let (tenant_s, id_s) = (tenant.to_string(), id.to_string());
        let head = prepared.head;
        let metric_name = if head == Head::Regression { "rmse" } else { "accuracy" };
        let train_m = prepared.train.clone();
        let train_rows = train_m.rows;
        let val_m = prepared.val.clone();
        let p2 = p.clone();
        let stop2 = stop.clone();
        let model_s = c.model.clone();
        let state = tokio::task::spawn_blocking(move || {
            let mut last = Instant::now();
            let mut on_step = |epoch: u32, step: u64, loss: f64| {
                if last.elapsed() >= Duration::from_millis(200) {
                    last = Instant::now();
                    if let Ok(mut live) = this.live.lock() {
                        let m = live.entry(id_s.clone()).or_default();
                        (m.epoch, m.epochs, m.step, m.steps_per_epoch, m.loss) =
                            (epoch, p2.epochs, step, steps_per_epoch, loss);
                    }
                }
                if stop2.load(Ordering::SeqCst) { Control::Stop } else { Control::Continue }
            };
            let mut on_epoch = |r: &algo::EpochReport, s: &TrainState| -> Result<Control, TrainerError> {
                let every = p2.checkpoint_every_epochs;
                let checkpoint = every > 0 && (r.epoch.is_multiple_of(every) || r.epoch == r.epochs || s.stopped);
                let metrics = pb::TrainingMetrics {
                    epoch: r.epoch,
                    epochs: r.epochs,
                    step: r.step,
                    steps_per_epoch: r.steps_per_epoch,
                    loss: r.loss,
                    validation_loss: r.val_loss,
                    validation_metric: metric_name.into(),
                    validation_metric_value: None,
                    learning_rate: r.learning_rate,
                    throughput: r.throughput,
                };
                if let Ok(mut live) = this.live.lock() {
                    live.insert(id_s.clone(), metrics.clone());
                }
                this.metrics.epochs.with_label_values(&[model_s.as_str()]).inc();
                this.metrics.loss.with_label_values(&[model_s.as_str(), "train"]).set(r.loss);
                if let Some(v) = r.val_loss {
                    this.metrics.loss.with_label_values(&[model_s.as_str(), "validation"]).set(v);
                }
                handle.block_on(async {
                    let ckpt =
                        if checkpoint { Some(this.save_job_checkpoint(&tenant_s, &id_s, s, r).await?) } else { None };
                    this.update_job(&tenant_s, &id_s, false, |j| {
                        j.latest = Some(metrics.clone());
                        if let Some(pr) = j.progress.as_mut() {
                            pr.done = r.step;
                            // Steps per second: rows per second over rows per step.
                            pr.rate = r.throughput / p2.batch_size.min(train_rows).max(1) as f64;
                        }
                        if let Some(c) = &ckpt {
                            j.last_checkpoint_id = c.id.clone();
                        }
                        Vec::new()
                    })
                    .await
                })?;
                Ok(if stop2.load(Ordering::SeqCst) { Control::Stop } else { Control::Continue })
            };
            algo::train(&p2, head, &train_m, Some(&val_m), resume, &mut on_step, &mut on_epoch)
        })
        .await
        .map_err(|e| TrainerError::Training(format!("the training task failed: {e}")))??;

        // Test-split metrics and the artifact.
        let artifact = ModelArtifact {
            format_version: artifact::FORMAT_VERSION,
            task: prepared.task as i32,
            algorithm: job.algorithm,
            activation: if p.hidden_layers.is_empty() {
                String::new()
            } else {
                artifact::activation_name(p.activation).into()
            },
            pipeline: Some(prepared.pipeline.clone()),
            weights: state.weights.clone(),
            contract: Some(cref.clone()),
        };
        let test_metrics = score(&artifact, &prepared.test)?;
        let bytes = artifact.to_bytes();
        let sha = artifact::sha256_hex(&bytes);
        let key = format!("models/{}/{}.artifact", cref.model, id);
        let objects = self.tenant_objects(tenant)?;
        objects.put(&key, Bytes::from(bytes.clone())).await?;
        let version = pb::ModelVersion {
            stage: ModelStage::Candidate as i32,
            artifact_key: key,
            artifact_sha256: sha.clone(),
            artifact_bytes: bytes.len() as u64,
            feature_pipeline_sha256: artifact.pipeline_sha256(),
            metrics: Some(test_metrics.clone()),
            contract: Some(cref.clone()),
            dataset: Some(dataset.clone()),
            training_job_id: id.to_string(),
            algorithm: job.algorithm,
            params: job.params.clone(),
            seed: job.seed,
            created_by: rec.created_by.clone(),
            r#ref: Some(ModelVersionRef { model: cref.model.clone(), version: 0 }),
            ..Default::default()
        };
        let (record, mut current) = self.job_record(tenant, id).await?;
        if current.lease_worker != self.worker_id {
            return Err(TrainerError::LeaseLost);
        }
        if job_status(current.job.as_ref().unwrap_or(&job)) == JobStatus::Canceling {
            return Err(TrainerError::Canceled);
        }
        if let Some(j) = current.job.as_mut() {
            j.metrics = Some(test_metrics);
            j.artifact_sha256 = sha;
            j.stop_reason = state.stop_reason.clone();
            if let Some(pr) = j.progress.as_mut() {
                pr.done = pr.total;
            }
        }
        let registered = self.register_version(tenant, &record, &mut current, version, prepared.task).await?;
        let number = registered.r#ref.as_ref().map(|r| r.version).unwrap_or(0);
        // Retention must never delete the rows a model was trained on.
        if let Err(e) = self
            .snapshots
            .add_hold(
                tenant,
                Some(DatasetVersionRef { dataset_id: dataset.dataset_id.clone(), version: dataset.version }),
                &format!("model:{}@{number}", cref.model),
                &format!("model '{}' version {number} was trained on it (job {id})", cref.model),
            )
            .await
        {
            tracing::warn!(job = %id, error = %e, "could not hold the training dataset version");
        }
        self.record_training_lineage(tenant, id, &dataset, &cref.model, number, &registered.artifact_sha256).await;
        Ok(())
    }

    async fn record_training_lineage(
        &self,
        tenant: &str,
        job_id: &str,
        dataset: &DatasetVersionRef,
        model: &str,
        version: u64,
        sha: &str,
    ) {
        use pulse_lineage::domain::{EdgeWrite, NodeKind, NodeWrite};
        let Some(lineage) = &self.lineage else { return };
        let attrs = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let dv = format!("{}@{}", dataset.dataset_id, dataset.version);
        let mv = lineage_model_id(model, version);
        let nodes = vec![
            NodeWrite {
                id: dv.clone(),
                kind: NodeKind::DatasetVersion,
                attributes: attrs(&[("dataset", dataset.dataset_id.clone()), ("version", dataset.version.to_string())]),
            },
            NodeWrite {
                id: job_id.to_string(),
                kind: NodeKind::TrainingRun,
                attributes: attrs(&[("model", model.to_string())]),
            },
            NodeWrite {
                id: mv.clone(),
                kind: NodeKind::ModelVersion,
                attributes: attrs(&[
                    ("model", model.to_string()),
                    ("version", version.to_string()),
                    ("sha256", sha.to_string()),
                ]),
            },
        ];
        let edges = vec![
            EdgeWrite { from_id: dv, to_id: job_id.to_string(), relation: "trained".into() },
            EdgeWrite { from_id: job_id.to_string(), to_id: mv, relation: "produced".into() },
        ];
        if let Err(e) = lineage.record(tenant, nodes, edges).await {
            tracing::warn!(job = %job_id, error = %e, "could not record lineage");
        }
    }

    // ------------------------------------------------------------ checkpoints

    async fn save_job_checkpoint(
        &self,
        tenant: &str,
        job_id: &str,
        state: &TrainState,
        r: &algo::EpochReport,
    ) -> Result<pb::Checkpoint, TrainerError> {
        let bytes = state.encode_to_vec();
        let sha = artifact::sha256_hex(&bytes);
        let id = new_id("ckpt");
        let key = format!("checkpoints/{job_id}/{:06}-{id}.pb", state.epoch);
        self.tenant_objects(tenant)?.put(&key, Bytes::from(bytes.clone())).await?;
        let mut fields = std::collections::BTreeMap::new();
        let num = |n: f64| prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(n)) };
        fields.insert("epoch".to_string(), num(state.epoch.into()));
        fields.insert("step".to_string(), num(state.step as f64));
        fields.insert("loss".to_string(), num(r.loss));
        if let Some(v) = r.val_loss {
            fields.insert("validation_loss".to_string(), num(v));
        }
        let ckpt = pb::Checkpoint {
            id: id.clone(),
            worker_id: String::new(),
            training_job_id: job_id.to_string(),
            sequence: u64::from(state.epoch),
            metadata: Some(prost_types::Struct { fields }),
            size_bytes: bytes.len() as u64,
            sha256: sha,
            parts: 1,
            created_at: Some(to_proto(now_millis())),
        };
        let body = CheckpointRecord { checkpoint: Some(ckpt.clone()), keys: vec![key], part_sha256: Vec::new() };
        self.records
            .apply(
                tenant,
                vec![
                    Write::insert(CHECKPOINT, &id, job_id, "", &body),
                    Write::event(
                        "pulse.checkpoint.saved.v1",
                        &id,
                        serde_json::json!({"checkpoint_id": id, "training_job_id": job_id, "epoch": state.epoch}),
                    ),
                ],
            )
            .await?;
        Ok(ckpt)
    }

    /// The newest checkpoint of a job, verified.
    async fn latest_job_checkpoint(&self, tenant: &str, job_id: &str) -> Result<Option<TrainState>, TrainerError> {
        let q = ListQuery { parent: Some(job_id), limit: 1, newest_first: true, ..Default::default() };
        let Some(record) = self.records.list(tenant, CHECKPOINT, q).await?.into_iter().next() else { return Ok(None) };
        let body: CheckpointRecord = record.decode()?;
        let ckpt = body.checkpoint.unwrap_or_default();
        let mut bytes = Vec::new();
        for key in &body.keys {
            bytes.extend_from_slice(&self.tenant_objects(tenant)?.get(key).await?);
        }
        if artifact::sha256_hex(&bytes) != ckpt.sha256 {
            return Err(TrainerError::DataLoss(format!(
                "checkpoint {} of job {job_id} does not match its SHA-256; refusing to resume from it",
                ckpt.id
            )));
        }
        let state = TrainState::decode(bytes.as_slice())
            .map_err(|e| TrainerError::DataLoss(format!("checkpoint {} does not decode: {e}", ckpt.id)))?;
        Ok(Some(state))
    }

    // ------------------------------------------------------------ evaluation

    /// A version's artifact, verified against its SHA-256 (inference loads
    /// models through this).
    pub async fn load_artifact(&self, tenant: &str, v: &pb::ModelVersion) -> Result<ModelArtifact, TrainerError> {
        let bytes = self.tenant_objects(tenant)?.get(&v.artifact_key).await?;
        if artifact::sha256_hex(&bytes) != v.artifact_sha256 {
            return Err(TrainerError::DataLoss(format!(
                "the artifact of {}@{} does not match its SHA-256",
                v.r#ref.as_ref().map(|r| r.model.as_str()).unwrap_or(""),
                v.r#ref.as_ref().map(|r| r.version).unwrap_or(0)
            )));
        }
        ModelArtifact::from_bytes(&bytes)
    }

    /// Metrics of `scorer` on the held-out test split of `split_of`'s
    /// training run (the same rows for a candidate and its baseline).
    pub(crate) async fn evaluate_on_split_of(
        &self,
        tenant: &str,
        scorer: &pb::ModelVersion,
        split_of: &pb::ModelVersion,
    ) -> Result<pb::EvaluationMetrics, TrainerError> {
        let (_, rec) = self.job_record(tenant, &split_of.training_job_id).await?;
        let job = rec.job.unwrap_or_default();
        let cref = split_of.contract.clone().unwrap_or_default();
        let c = self.contract(tenant, &cref.model, cref.version).await?;
        let (_, _, splits) = self.prepare(tenant, &job, &c, false).await?;
        let (batches, _) = self.read_rows(tenant, &job.dataset.clone().unwrap_or_default(), &c).await?;
        let artifact = self.load_artifact(tenant, scorer).await?;
        score_rows(&artifact, &c, &batches, Some(&splits[2]))
    }

    pub async fn evaluate(&self, tenant: &str, r: &pb::EvaluateModelRequest) -> Result<pb::Evaluation, TrainerError> {
        let mv = r.model_version.clone().ok_or_else(|| TrainerError::invalid("model_version", "is required"))?;
        let (vrecord, mut version) = self.version_record(tenant, &mv.model, mv.version).await?;
        let cref = version.contract.clone().unwrap_or_default();
        let c = self.contract(tenant, &cref.model, cref.version).await?;
        let (metrics, dataset, split) = match &r.dataset {
            None => (self.evaluate_on_split_of(tenant, &version, &version).await?, version.dataset.clone(), "test"),
            Some(d) => {
                let d = crate::domain::check_dataset_ref(Some(d))?;
                let (batches, dv) = self.read_rows(tenant, &d, &c).await?;
                let outcome = contract::validate_batches(&c, &batches, 5);
                if !outcome.passed {
                    let summary: Vec<String> = outcome.violations.iter().take(5).map(|v| v.message.clone()).collect();
                    return Err(TrainerError::Precondition(format!(
                        "dataset {}@{} breaks the model's contract: {}",
                        dv.dataset_id,
                        dv.version,
                        summary.join("; ")
                    )));
                }
                let artifact = self.load_artifact(tenant, &version).await?;
                let m = score_rows(&artifact, &c, &batches, None)?;
                (m, Some(DatasetVersionRef { dataset_id: dv.dataset_id, version: dv.version }), "all")
            }
        };
        let mut evaluation = pb::Evaluation {
            id: new_id("evl"),
            model_version: Some(mv.clone()),
            dataset: dataset.clone(),
            split: split.into(),
            metrics: Some(metrics),
            evaluated_at: Some(to_proto(now_millis())),
            ..Default::default()
        };
        if r.compare_with_production {
            let model = self.model(tenant, &mv.model).await?;
            if model.production_version > 0 {
                let (_, prod) = self.version_record(tenant, &mv.model, model.production_version).await?;
                let pm = match &r.dataset {
                    None => self.evaluate_on_split_of(tenant, &prod, &version).await?,
                    Some(d) => {
                        let (batches, _) = self.read_rows(tenant, d, &c).await?;
                        score_rows(&self.load_artifact(tenant, &prod).await?, &c, &batches, None)?
                    }
                };
                evaluation.production_version = prod.r#ref.clone();
                evaluation.production_metrics = Some(pm);
            }
        }
        version.evaluations.insert(0, evaluation.clone());
        version.evaluations.truncate(20);
        let status = vrecord.status.clone();
        if !self.records.apply(tenant, vec![Write::update(&vrecord, &status, &version)]).await? {
            // A stage change raced the write: the evaluation still answers.
            tracing::info!(model = %mv.model, "evaluation not stored: the version changed meanwhile");
        }
        Ok(evaluation)
    }
}

/// Checkpoint metadata and where its bytes are.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckpointRecord {
    #[prost(message, optional, tag = "1")]
    pub checkpoint: Option<pb::Checkpoint>,
    /// Object keys of the parts, in order.
    #[prost(string, repeated, tag = "2")]
    pub keys: Vec<String>,
    /// SHA-256 of each part, checked before any of it is served.
    #[prost(string, repeated, tag = "3")]
    pub part_sha256: Vec<String>,
}

/// Metrics of an artifact on a transformed matrix.
fn score(a: &ModelArtifact, m: &Matrix) -> Result<pb::EvaluationMetrics, TrainerError> {
    let pred = a.predict_matrix(&m.x, m.rows)?;
    let p = a.pipeline.clone().unwrap_or_default();
    Ok(match pred {
        Predictions::Values(v) => {
            let actual: Vec<f64> = m.y.iter().map(|y| f64::from(*y) * p.target_std + p.target_mean).collect();
            metrics::regression(&actual, &v)
        }
        Predictions::Classes { classes, probabilities } => {
            let actual: Vec<usize> = m.y.iter().map(|y| *y as usize).collect();
            metrics::classification(&classes, &actual, &probabilities)
        }
    })
}

/// Metrics of an artifact on raw rows (its own pipeline transforms them).
fn score_rows(
    a: &ModelArtifact,
    c: &pb::Contract,
    batches: &[arrow::record_batch::RecordBatch],
    rows: Option<&[usize]>,
) -> Result<pb::EvaluationMetrics, TrainerError> {
    let p = a.pipeline.clone().unwrap_or_default();
    let (x, n) = pipeline::transform(&p, batches)?;
    let task = Task::try_from(c.task).unwrap_or(Task::Unspecified);
    let y = pipeline::encode_target(&p, task, batches)?;
    let all: Vec<usize> = (0..n).collect();
    let m = select(&x, &y, p.width(), rows.unwrap_or(&all));
    score(a, &m)
}
