//! The trainer's domain: contracts, training jobs (queued here, run by
//! workers in worker.rs), the model registry and gated promotion. State lives
//! in the shared record store (one versioned row per entity, changed by
//! compare-and-set) with its events written in the same transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use pulse_common::ids::new_id;
use pulse_common::objects::{ObjectStore, TenantObjects};
use pulse_common::paging::{next_token, page_size};
use pulse_common::records::{ListQuery, Record, RecordStore, Write};
use pulse_common::time::{now_millis, to_proto};
use pulse_proto::common::v1::{
    DatasetVersionRef, JobProgress, JobStatus, ModelVersionRef, PageResponse, TimelineEntry,
};
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::{ModelStage, StageChangeKind, Task};
use pulse_snapshot::Snapshots;

use crate::contract;
use crate::error::TrainerError;
use crate::metrics;
use crate::params;

pub(crate) const CONTRACT: &str = "contract";
pub(crate) const JOB: &str = "job";
pub(crate) const MODEL: &str = "model";
pub(crate) const VERSION: &str = "version";
pub(crate) const CHANGE: &str = "change";
pub(crate) const CHECKPOINT: &str = "checkpoint";
/// Default allowed regression of a metric against production.
pub const DEFAULT_MAX_REGRESSION: f64 = 0.01;
const MAX_CONTRACT_BYTES: usize = 1 << 20;

/// A training job with the state only workers see.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JobRecord {
    #[prost(message, optional, tag = "1")]
    pub job: Option<pb::TrainingJob>,
    #[prost(string, tag = "2")]
    pub lease_worker: String,
    #[prost(int64, tag = "3")]
    pub lease_until_ms: i64,
    /// The API key id that started it.
    #[prost(string, tag = "4")]
    pub created_by: String,
}

/// A model and the stage history that rollback walks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelRecord {
    #[prost(message, optional, tag = "1")]
    pub model: Option<pb::Model>,
    /// Versions that were in production, oldest first.
    #[prost(uint64, repeated, tag = "2")]
    pub production_history: Vec<u64>,
}

pub(crate) fn contract_id(model: &str, version: u32) -> String {
    format!("{model}@{version:010}")
}

pub(crate) fn version_id(model: &str, version: u64) -> String {
    format!("{model}@{version:020}")
}

pub(crate) fn status_name(s: JobStatus) -> &'static str {
    s.as_str_name()
}

pub(crate) fn job_status(job: &pb::TrainingJob) -> JobStatus {
    JobStatus::try_from(job.status).unwrap_or(JobStatus::Unspecified)
}

pub(crate) fn is_final(s: JobStatus) -> bool {
    matches!(s, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)
}

pub(crate) fn timeline(job: &mut pb::TrainingJob, status: JobStatus, message: impl Into<String>) {
    job.timeline.push(TimelineEntry {
        at: Some(to_proto(now_millis())),
        status: status as i32,
        step: String::new(),
        message: message.into(),
    });
}

fn stage_name(s: ModelStage) -> String {
    s.as_str_name().trim_start_matches("MODEL_STAGE_").to_lowercase()
}

#[derive(Debug, Clone)]
pub struct Trainer {
    pub(crate) records: Arc<dyn RecordStore>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) snapshots: Snapshots,
    pub(crate) lineage: Option<pulse_lineage::Lineage>,
    pub(crate) worker_id: String,
    pub(crate) lease: Duration,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Live metrics of jobs running in this process (between the epoch-end
    /// writes), for watchers.
    pub(crate) live: Arc<Mutex<HashMap<String, pb::TrainingMetrics>>>,
    pub(crate) metrics: crate::checkpoints::TrainerMetrics,
}

impl Trainer {
    pub fn new(
        records: Arc<dyn RecordStore>,
        objects: Arc<dyn ObjectStore>,
        snapshots: Snapshots,
        lineage: Option<pulse_lineage::Lineage>,
        lease: Duration,
        metrics: crate::checkpoints::TrainerMetrics,
    ) -> Self {
        Self {
            metrics,
            records,
            objects,
            snapshots,
            lineage,
            worker_id: new_id("wrk"),
            lease,
            wake: Arc::new(tokio::sync::Notify::new()),
            live: Arc::default(),
        }
    }

    pub(crate) fn tenant_objects(&self, tenant: &str) -> Result<TenantObjects, TrainerError> {
        Ok(TenantObjects::new(self.objects.clone(), tenant)?)
    }

    // ------------------------------------------------------------ contracts

    pub async fn register_contract(&self, tenant: &str, yaml: &str) -> Result<(pb::Contract, bool), TrainerError> {
        if yaml.len() > MAX_CONTRACT_BYTES {
            return Err(TrainerError::invalid("yaml", format!("is {} bytes; the limit is 1 MiB", yaml.len())));
        }
        let mut parsed = contract::parse_contract(yaml)?;
        loop {
            let latest = self.latest_contract(tenant, &parsed.model).await?;
            if let Some(l) = &latest
                && l.sha256 == parsed.sha256
            {
                return Ok((l.clone(), false));
            }
            parsed.version = latest.as_ref().map(|l| l.version + 1).unwrap_or(1);
            parsed.created_at = Some(to_proto(now_millis()));
            let id = contract_id(&parsed.model, parsed.version);
            let writes = vec![
                Write::insert(CONTRACT, &id, &parsed.model, "", &parsed),
                Write::event(
                    "pulse.contract.registered.v1",
                    &id,
                    serde_json::json!({"model": parsed.model, "version": parsed.version, "sha256": parsed.sha256}),
                ),
            ];
            // A concurrent registration took the number: read again.
            if self.records.apply(tenant, writes).await? {
                self.ensure_model_index(tenant, &parsed.model).await?;
                return Ok((parsed, true));
            }
        }
    }

    async fn latest_contract(&self, tenant: &str, model: &str) -> Result<Option<pb::Contract>, TrainerError> {
        let q = ListQuery { parent: Some(model), limit: 1, newest_first: true, ..Default::default() };
        match self.records.list(tenant, CONTRACT, q).await?.first() {
            Some(r) => Ok(Some(r.decode()?)),
            None => Ok(None),
        }
    }

    pub async fn contract(&self, tenant: &str, model: &str, version: u32) -> Result<pb::Contract, TrainerError> {
        if model.is_empty() {
            return Err(TrainerError::invalid("model", "is required"));
        }
        let found = if version == 0 {
            self.latest_contract(tenant, model).await?
        } else {
            match self.records.get(tenant, CONTRACT, &contract_id(model, version)).await? {
                Some(r) => Some(r.decode()?),
                None => None,
            }
        };
        found.ok_or_else(|| {
            TrainerError::NotFound(if version == 0 {
                format!("contract of model '{model}' (register one with RegisterContract)")
            } else {
                format!("version {version} of the contract of model '{model}'")
            })
        })
    }

    pub async fn list_contracts(
        &self,
        tenant: &str,
        r: &pb::ListContractsRequest,
    ) -> Result<pb::ListContractsResponse, TrainerError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let contracts: Vec<pb::Contract> = if r.model.is_empty() {
            // The latest contract of every model: one per model record.
            let q = ListQuery { after: &page.page_token, limit, ..Default::default() };
            let mut out = Vec::new();
            for m in self.records.list(tenant, MODEL_CONTRACTS_INDEX, q).await? {
                if let Some(c) = self.latest_contract(tenant, &m.id).await? {
                    out.push(c);
                }
            }
            out
        } else {
            let q = ListQuery {
                parent: Some(&r.model),
                after: &page.page_token,
                limit,
                newest_first: true,
                ..Default::default()
            };
            self.records.list(tenant, CONTRACT, q).await?.iter().map(Record::decode).collect::<Result<_, _>>()?
        };
        let token = if r.model.is_empty() {
            next_token(&contracts, limit, |c| &c.model)
        } else {
            let ids: Vec<String> = contracts.iter().map(|c| contract_id(&c.model, c.version)).collect();
            next_token(&ids, limit, |s| s)
        };
        Ok(pb::ListContractsResponse { contracts, page: Some(PageResponse { next_page_token: token }) })
    }

    /// Every row of a dataset version (verified), with the columns the
    /// contract names.
    pub(crate) async fn read_rows(
        &self,
        tenant: &str,
        dataset: &DatasetVersionRef,
        contract: &pb::Contract,
    ) -> Result<(Vec<RecordBatch>, pulse_proto::snapshot::v1::DatasetVersion), TrainerError> {
        let version = self.snapshots.readable(tenant, &dataset.dataset_id, dataset.version).await?;
        let manifest = version.manifest.clone().unwrap_or_default();
        let schema = manifest.schema.clone().unwrap_or_default();
        // Only the contract's columns that exist: a missing one is a
        // validation finding, not a read error.
        let mut wanted: Vec<String> = contract.features.iter().map(|f| f.name.clone()).collect();
        if let Some(t) = &contract.target {
            wanted.push(t.name.clone());
        }
        for r in &contract.rules {
            if !r.column.is_empty() {
                wanted.push(r.column.clone());
            }
        }
        let mut columns: Vec<String> = Vec::new();
        for w in wanted {
            if schema.columns.iter().any(|c| c.name == w) && !columns.contains(&w) {
                columns.push(w);
            }
        }
        let objects = self.snapshots.tenant_objects(tenant)?;
        let batches: Vec<RecordBatch> =
            pulse_snapshot::read::read_version(objects, manifest, columns, Vec::new(), None)
                .map_ok(|(_, b)| b)
                .try_collect()
                .await?;
        Ok((batches, version))
    }

    pub async fn validate_dataset(
        &self,
        tenant: &str,
        r: &pb::ValidateDatasetRequest,
    ) -> Result<pb::ValidationReport, TrainerError> {
        let dataset = check_dataset_ref(r.dataset.as_ref())?;
        let c = self.contract(tenant, &r.model, r.contract_version).await?;
        let (batches, version) = self.read_rows(tenant, &dataset, &c).await?;
        if r.max_examples > 100 {
            return Err(TrainerError::invalid("max_examples", format!("{} is over the limit of 100", r.max_examples)));
        }
        let outcome = contract::validate_batches(&c, &batches, r.max_examples);
        Ok(pb::ValidationReport {
            dataset: Some(DatasetVersionRef { dataset_id: version.dataset_id, version: version.version }),
            contract: Some(pb::ContractRef { model: c.model, version: c.version }),
            passed: outcome.passed,
            rows_checked: outcome.rows_checked,
            violations: outcome.violations,
            checked_at: Some(to_proto(now_millis())),
        })
    }

    // ------------------------------------------------------------ jobs

    pub async fn start(
        &self,
        tenant: &str,
        actor: &str,
        r: pb::StartTrainingRequest,
    ) -> Result<pb::TrainingJob, TrainerError> {
        let dataset = check_dataset_ref(r.dataset.as_ref())?;
        if r.model.is_empty() {
            return Err(TrainerError::invalid("model", "is required: the contract's model name"));
        }
        let c = self.contract(tenant, &r.model, r.contract_version).await?;
        let task = Task::try_from(c.task).unwrap_or(Task::Unspecified);
        let target = c.target.clone().unwrap_or_default();
        if !r.target.is_empty() && r.target != target.name {
            return Err(TrainerError::invalid(
                "target",
                format!("'{}' is not the contract's target '{}'", r.target, target.name),
            ));
        }
        let algorithm = pb::Algorithm::try_from(r.algorithm).unwrap_or(pb::Algorithm::Unspecified);
        params::check_algorithm(algorithm, task)?;
        // A server-picked seed fits in 32 bits, so it prints and types easily.
        let seed = r.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
        let p = params::parse(algorithm, r.params.as_ref(), seed)?;
        let split = check_split(r.split.as_ref(), task)?;
        // The version must exist and be readable now, not at run time.
        let version = self.snapshots.readable(tenant, &dataset.dataset_id, dataset.version).await?;
        let mut job = pb::TrainingJob {
            id: new_id("trn"),
            dataset: Some(DatasetVersionRef { dataset_id: version.dataset_id.clone(), version: version.version }),
            contract: Some(pb::ContractRef { model: c.model.clone(), version: c.version }),
            algorithm: algorithm as i32,
            params: Some(params::effective(algorithm, &p)),
            seed,
            split: Some(split),
            status: JobStatus::Queued as i32,
            progress: Some(JobProgress { unit: "steps".into(), ..Default::default() }),
            description: r.description,
            labels: r.labels,
            created_at: Some(to_proto(now_millis())),
            ..Default::default()
        };
        timeline(&mut job, JobStatus::Queued, "queued");
        let rec = JobRecord { job: Some(job.clone()), created_by: actor.to_string(), ..Default::default() };
        let writes = vec![
            Write::insert(JOB, &job.id, &c.model, status_name(JobStatus::Queued), &rec),
            Write::event(
                "pulse.training.queued.v1",
                &job.id,
                serde_json::json!({"job_id": job.id, "model": c.model, "dataset_id": version.dataset_id, "version": version.version}),
            ),
        ];
        self.records.apply(tenant, writes).await?;
        self.wake.notify_waiters();
        Ok(job)
    }

    /// A row per model name with a contract, so the latest contract of every
    /// model can be listed.
    async fn ensure_model_index(&self, tenant: &str, model: &str) -> Result<(), TrainerError> {
        if self.records.get(tenant, MODEL_CONTRACTS_INDEX, model).await?.is_none() {
            let marker = pb::ContractRef { model: model.to_string(), version: 0 };
            let _ =
                self.records.apply(tenant, vec![Write::insert(MODEL_CONTRACTS_INDEX, model, "", "", &marker)]).await?;
        }
        Ok(())
    }

    pub(crate) async fn job_record(&self, tenant: &str, id: &str) -> Result<(Record, JobRecord), TrainerError> {
        if id.is_empty() {
            return Err(TrainerError::invalid("job_id", "is required"));
        }
        let record = self
            .records
            .get(tenant, JOB, id)
            .await?
            .ok_or_else(|| TrainerError::NotFound(format!("training job '{id}'")))?;
        let job: JobRecord = record.decode()?;
        Ok((record, job))
    }

    pub async fn job(&self, tenant: &str, id: &str) -> Result<pb::TrainingJob, TrainerError> {
        let mut job = self.job_record(tenant, id).await?.1.job.unwrap_or_default();
        if let Some(live) = self.live.lock().ok().and_then(|m| m.get(id).cloned())
            && job_status(&job) == JobStatus::Running
        {
            job.progress.get_or_insert_with(Default::default).done = live.step;
            job.latest = Some(live);
        }
        Ok(job)
    }

    pub async fn cancel(&self, tenant: &str, id: &str, reason: &str) -> Result<pb::TrainingJob, TrainerError> {
        loop {
            let (record, mut rec) = self.job_record(tenant, id).await?;
            let mut job = rec.job.clone().unwrap_or_default();
            let status = job_status(&job);
            if is_final(status) {
                return Err(TrainerError::Precondition(format!(
                    "training job '{id}' already ended ({}); there is nothing to cancel",
                    status.as_str_name()
                )));
            }
            let reason = if reason.is_empty() { "canceled by request".to_string() } else { reason.to_string() };
            let next = if status == JobStatus::Running { JobStatus::Canceling } else { JobStatus::Canceled };
            job.status = next as i32;
            timeline(&mut job, next, reason.clone());
            let mut writes = Vec::new();
            if next == JobStatus::Canceled {
                job.finished_at = Some(to_proto(now_millis()));
                writes.push(Write::event(
                    "pulse.training.canceled.v1",
                    id,
                    serde_json::json!({"job_id": id, "reason": reason}),
                ));
            }
            rec.job = Some(job.clone());
            writes.insert(0, Write::update(&record, status_name(next), &rec));
            if self.records.apply(tenant, writes).await? {
                return Ok(job);
            }
        }
    }

    pub async fn retry(&self, tenant: &str, id: &str) -> Result<pb::TrainingJob, TrainerError> {
        loop {
            let (record, mut rec) = self.job_record(tenant, id).await?;
            let mut job = rec.job.clone().unwrap_or_default();
            if job_status(&job) != JobStatus::Failed {
                return Err(TrainerError::Precondition(format!(
                    "only a FAILED job can be retried; '{id}' is {}",
                    job_status(&job).as_str_name()
                )));
            }
            job.status = JobStatus::Queued as i32;
            job.error = None;
            job.finished_at = None;
            timeline(&mut job, JobStatus::Queued, "queued again by a retry; it continues from its last checkpoint");
            rec.job = Some(job.clone());
            rec.lease_worker.clear();
            rec.lease_until_ms = 0;
            if self
                .records
                .apply(tenant, vec![Write::update(&record, status_name(JobStatus::Queued), &rec).leased_until(0)])
                .await?
            {
                self.wake.notify_waiters();
                return Ok(job);
            }
        }
    }

    pub async fn list_jobs(
        &self,
        tenant: &str,
        r: &pb::ListTrainingJobsRequest,
    ) -> Result<pb::ListTrainingJobsResponse, TrainerError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let status = JobStatus::try_from(r.status).unwrap_or(JobStatus::Unspecified);
        let q = ListQuery {
            parent: (!r.model.is_empty()).then_some(r.model.as_str()),
            status: (status != JobStatus::Unspecified).then(|| status_name(status)),
            after: &page.page_token,
            limit: if r.dataset_id.is_empty() { limit } else { crate::domain::SCAN_LIMIT },
            newest_first: true,
        };
        let mut jobs: Vec<pb::TrainingJob> = Vec::new();
        for rec in self.records.list(tenant, JOB, q).await? {
            let j: JobRecord = rec.decode()?;
            let job = j.job.unwrap_or_default();
            if r.dataset_id.is_empty() || job.dataset.as_ref().is_some_and(|d| d.dataset_id == r.dataset_id) {
                jobs.push(job);
            }
        }
        jobs.truncate(limit as usize);
        let token = next_token(&jobs, limit, |j| &j.id);
        Ok(pb::ListTrainingJobsResponse { jobs, page: Some(PageResponse { next_page_token: token }) })
    }

    // ------------------------------------------------------------ registry

    pub(crate) async fn model_record(&self, tenant: &str, model: &str) -> Result<(Record, ModelRecord), TrainerError> {
        if model.is_empty() {
            return Err(TrainerError::invalid("model", "is required"));
        }
        let r = self.records.get(tenant, MODEL, model).await?.ok_or_else(|| {
            TrainerError::NotFound(format!("model '{model}' (a model exists once its first training succeeds)"))
        })?;
        let m = r.decode()?;
        Ok((r, m))
    }

    pub async fn model(&self, tenant: &str, model: &str) -> Result<pb::Model, TrainerError> {
        Ok(self.model_record(tenant, model).await?.1.model.unwrap_or_default())
    }

    pub async fn list_models(
        &self,
        tenant: &str,
        r: &pb::ListModelsRequest,
    ) -> Result<pb::ListModelsResponse, TrainerError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let q = ListQuery { after: &page.page_token, limit, ..Default::default() };
        let models: Vec<pb::Model> = self
            .records
            .list(tenant, MODEL, q)
            .await?
            .iter()
            .map(|r| r.decode::<ModelRecord>().map(|m| m.model.unwrap_or_default()))
            .collect::<Result<_, _>>()?;
        let token = next_token(&models, limit, |m| &m.name);
        Ok(pb::ListModelsResponse { models, page: Some(PageResponse { next_page_token: token }) })
    }

    pub(crate) async fn version_record(
        &self,
        tenant: &str,
        model: &str,
        version: u64,
    ) -> Result<(Record, pb::ModelVersion), TrainerError> {
        let r = self
            .records
            .get(tenant, VERSION, &version_id(model, version))
            .await?
            .ok_or_else(|| TrainerError::NotFound(format!("version {version} of model '{model}'")))?;
        let v = r.decode()?;
        Ok((r, v))
    }

    pub async fn model_version(
        &self,
        tenant: &str,
        model: &str,
        version: u64,
        stage: ModelStage,
    ) -> Result<pb::ModelVersion, TrainerError> {
        let m = self.model(tenant, model).await?;
        let version = match (version, stage) {
            (0, ModelStage::Production) => m.production_version,
            (0, ModelStage::Staging) => m.staging_version,
            (0, ModelStage::Unspecified) => m.latest_version,
            (0, s) => {
                return Err(TrainerError::invalid(
                    "stage",
                    format!("{} has many versions; ask for a version number", stage_name(s)),
                ));
            }
            (v, _) => v,
        };
        if version == 0 {
            return Err(TrainerError::Precondition(format!(
                "model '{model}' has no {} version; promote one with PromoteModel",
                stage_name(stage)
            )));
        }
        Ok(self.version_record(tenant, model, version).await?.1)
    }

    pub async fn list_versions(
        &self,
        tenant: &str,
        r: &pb::ListModelVersionsRequest,
    ) -> Result<pb::ListModelVersionsResponse, TrainerError> {
        self.model(tenant, &r.model).await?;
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let stage = ModelStage::try_from(r.stage).unwrap_or(ModelStage::Unspecified);
        let status = stage_name(stage);
        let q = ListQuery {
            parent: Some(&r.model),
            status: (stage != ModelStage::Unspecified).then_some(status.as_str()),
            after: &page.page_token,
            limit,
            newest_first: true,
        };
        let records = self.records.list(tenant, VERSION, q).await?;
        let versions: Vec<pb::ModelVersion> = records.iter().map(Record::decode).collect::<Result<_, _>>()?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let token = next_token(&ids, limit, |s| s);
        Ok(pb::ListModelVersionsResponse { versions, page: Some(PageResponse { next_page_token: token }) })
    }

    /// Registers a trained version: the model record (created by its first
    /// version), the version at stage CANDIDATE, the job's success and the
    /// events, in one transaction.
    pub(crate) async fn register_version(
        &self,
        tenant: &str,
        job_record: &Record,
        rec: &mut JobRecord,
        mut version: pb::ModelVersion,
        task: Task,
    ) -> Result<pb::ModelVersion, TrainerError> {
        let model_name = version.r#ref.clone().unwrap_or_default().model;
        let mut job_record = job_record.clone();
        loop {
            let existing = self.records.get(tenant, MODEL, &model_name).await?;
            let now = to_proto(now_millis());
            let mut mrec = match &existing {
                Some(r) => r.decode::<ModelRecord>()?,
                None => ModelRecord {
                    model: Some(pb::Model {
                        name: model_name.clone(),
                        task: task as i32,
                        created_at: Some(now),
                        ..Default::default()
                    }),
                    production_history: Vec::new(),
                },
            };
            let model = mrec.model.get_or_insert_with(Default::default);
            let number = model.latest_version + 1;
            model.latest_version = number;
            model.latest_contract_version =
                model.latest_contract_version.max(version.contract.as_ref().map(|c| c.version).unwrap_or(0));
            model.updated_at = Some(now);
            version.r#ref = Some(ModelVersionRef { model: model_name.clone(), version: number });
            version.created_at = Some(now);
            version.stage_changed_at = Some(now);
            let mut job = rec.job.clone().unwrap_or_default();
            job.model_version = version.r#ref.clone();
            job.status = JobStatus::Succeeded as i32;
            job.finished_at = Some(now);
            timeline(&mut job, JobStatus::Succeeded, format!("registered as version {number} of '{model_name}'"));
            let mut done = rec.clone();
            done.job = Some(job.clone());
            done.lease_worker.clear();
            let mut writes = vec![
                Write::update(&job_record, status_name(JobStatus::Succeeded), &done).leased_until(0),
                Write::insert(
                    VERSION,
                    &version_id(&model_name, number),
                    &model_name,
                    &stage_name(ModelStage::Candidate),
                    &version,
                ),
                Write::event(
                    "pulse.training.completed.v1",
                    &job.id,
                    serde_json::json!({"job_id": job.id, "model": model_name, "version": number, "artifact_sha256": version.artifact_sha256}),
                ),
                Write::event(
                    "pulse.model.registered.v1",
                    &version_id(&model_name, number),
                    serde_json::json!({"model": model_name, "version": number, "training_job_id": job.id}),
                ),
            ];
            writes.push(match &existing {
                Some(r) => Write::update(r, "", &mrec),
                None => Write::insert(MODEL, &model_name, "", "", &mrec),
            });
            if self.records.apply(tenant, writes).await? {
                self.metrics.jobs.finished(crate::checkpoints::JOB_KIND, "succeeded");
                *rec = done;
                return Ok(version);
            }
            // Lost a race with another registration or a stage change (the
            // model row), or with a takeover of the job.
            let (fresh_record, fresh) = self.job_record(tenant, &job.id).await?;
            if fresh.lease_worker != self.worker_id {
                return Err(TrainerError::LeaseLost);
            }
            job_record = fresh_record;
        }
    }

    // ------------------------------------------------------------ promotion

    fn gates(
        contract: &pb::Contract,
        candidate: &pb::EvaluationMetrics,
        production: Option<&pb::EvaluationMetrics>,
    ) -> Vec<pb::GateResult> {
        let mut gates = Vec::new();
        let promotion = contract.promotion.clone().unwrap_or_default();
        let mut mins: Vec<(&String, &f64)> = promotion.min_metrics.iter().collect();
        mins.sort_by(|a, b| a.0.cmp(b.0));
        for (name, threshold) in mins {
            let lower = metrics::lower_is_better(name);
            let value = metrics::value(candidate, name);
            let (passed, slack) = match value {
                Some(v) if lower => (v <= *threshold, threshold - v),
                Some(v) => (v >= *threshold, v - threshold),
                None => (false, f64::NEG_INFINITY),
            };
            let message = match value {
                None => format!("{name} is not measured for this version"),
                Some(v) if passed => {
                    format!("{name} {v:.4} meets the {} {threshold:.4}", if lower { "maximum" } else { "minimum" })
                }
                Some(v) => format!(
                    "{name} {v:.4} is {:.4} {} the {} {threshold:.4}",
                    slack.abs(),
                    if lower { "above" } else { "below" },
                    if lower { "maximum" } else { "minimum" }
                ),
            };
            gates.push(pb::GateResult {
                name: format!("min_metric:{name}"),
                kind: pb::GateKind::MinMetric as i32,
                metric: name.clone(),
                passed,
                value: value.unwrap_or(f64::NAN),
                threshold: *threshold,
                baseline: None,
                slack,
                message,
            });
        }
        if let Some(prod) = production {
            let mut names: Vec<&str> =
                metrics::METRIC_NAMES.iter().copied().filter(|n| metrics::value(candidate, n).is_some()).collect();
            names.retain(|n| metrics::value(prod, n).is_some());
            for name in names {
                let margin = promotion.max_regression.get(name).copied().unwrap_or(DEFAULT_MAX_REGRESSION);
                let (v, b) = (
                    metrics::value(candidate, name).unwrap_or(f64::NAN),
                    metrics::value(prod, name).unwrap_or(f64::NAN),
                );
                let regression = if metrics::lower_is_better(name) { v - b } else { b - v };
                let passed = regression <= margin + 1e-12;
                gates.push(pb::GateResult {
                    name: format!("no_regression:{name}"),
                    kind: pb::GateKind::NoRegression as i32,
                    metric: name.to_string(),
                    passed,
                    value: v,
                    threshold: margin,
                    baseline: Some(b),
                    slack: margin - regression,
                    message: if passed {
                        format!("{name} {v:.4} vs production {b:.4}: within the margin {margin:.4}")
                    } else {
                        format!("{name} {v:.4} is {regression:.4} worse than production's {b:.4} (margin {margin:.4})")
                    },
                });
            }
        }
        gates
    }

    pub async fn promote(
        &self,
        tenant: &str,
        actor: &str,
        r: &pb::PromoteModelRequest,
    ) -> Result<pb::PromoteModelResponse, TrainerError> {
        let target = r.model_version.clone().ok_or_else(|| {
            TrainerError::invalid("model_version", "is required: the model and the version to promote")
        })?;
        if target.version == 0 {
            return Err(TrainerError::invalid("model_version.version", "is required"));
        }
        let stage = match ModelStage::try_from(r.stage).unwrap_or(ModelStage::Unspecified) {
            ModelStage::Unspecified => ModelStage::Production,
            ModelStage::Candidate => {
                return Err(TrainerError::invalid(
                    "stage",
                    "versions start as candidates; promote to staging or production",
                ));
            }
            s => s,
        };
        if r.force && r.reason.trim().is_empty() {
            return Err(TrainerError::invalid("reason", "is required when force skips the gates"));
        }
        loop {
            let (mrecord, mut mrec) = self.model_record(tenant, &target.model).await?;
            let (vrecord, mut version) = self.version_record(tenant, &target.model, target.version).await?;
            let current = ModelStage::try_from(version.stage).unwrap_or(ModelStage::Unspecified);
            if current == ModelStage::Archived && stage != ModelStage::Archived {
                return Err(TrainerError::Precondition(format!(
                    "version {} of '{}' is archived; roll back to it with RollbackModel instead",
                    target.version, target.model
                )));
            }
            if current == stage {
                return Err(TrainerError::Precondition(format!(
                    "version {} of '{}' is already in {}",
                    target.version,
                    target.model,
                    stage_name(stage)
                )));
            }
            let model = mrec.model.clone().unwrap_or_default();
            if stage == ModelStage::Archived && model.production_version == target.version {
                return Err(TrainerError::Precondition(
                    "the production version cannot be archived: roll back or promote another version first".into(),
                ));
            }
            let mut gates = Vec::new();
            if stage == ModelStage::Production && !r.force {
                let cref = version.contract.clone().unwrap_or_default();
                let contract = self.contract(tenant, &cref.model, cref.version).await?;
                let production = if model.production_version > 0 {
                    Some(self.version_record(tenant, &target.model, model.production_version).await?.1)
                } else {
                    None
                };
                // Compare on the same held-out rows: the candidate's test
                // split, scored by the production model too.
                let prod_metrics = match &production {
                    Some(p) => Some(self.evaluate_on_split_of(tenant, p, &version).await?),
                    None => None,
                };
                gates = Self::gates(
                    &contract,
                    version.metrics.as_ref().unwrap_or(&Default::default()),
                    prod_metrics.as_ref(),
                );
                if let Some(p) = &production {
                    let same = p.contract.as_ref().map(|c| c.model.clone())
                        == version.contract.as_ref().map(|c| c.model.clone());
                    let latest = model.latest_contract_version;
                    let vcv = version.contract.as_ref().map(|c| c.version).unwrap_or(0);
                    let passed = same && (vcv == latest || p.contract.as_ref().map(|c| c.version) == Some(vcv));
                    gates.push(pb::GateResult {
                        name: "contract".into(),
                        kind: pb::GateKind::Contract as i32,
                        passed,
                        message: if passed {
                            format!("contract version {vcv} is current")
                        } else {
                            format!("contract version {vcv} is neither the latest ({latest}) nor production's")
                        },
                        ..Default::default()
                    });
                }
            }
            let failed: Vec<&pb::GateResult> = gates.iter().filter(|g| !g.passed).collect();
            if !failed.is_empty() || r.dry_run {
                let refusal = failed.iter().map(|g| g.message.clone()).collect::<Vec<_>>().join("; ");
                if !failed.is_empty() && !r.dry_run {
                    let _ = self
                        .records
                        .apply(
                            tenant,
                            vec![Write::event(
                                "pulse.model.promotion_refused.v1",
                                &version_id(&target.model, target.version),
                                serde_json::json!({"model": target.model, "version": target.version, "refusal": refusal}),
                            )],
                        )
                        .await?;
                }
                return Ok(pb::PromoteModelResponse {
                    promoted: false,
                    model_version: Some(version),
                    gates,
                    change: None,
                    refusal,
                });
            }
            let now = to_proto(now_millis());
            let mut writes = Vec::new();
            let model = mrec.model.get_or_insert_with(Default::default);
            let replaced_number = match stage {
                ModelStage::Production => std::mem::replace(&mut model.production_version, target.version),
                ModelStage::Staging => std::mem::replace(&mut model.staging_version, target.version),
                _ => 0,
            };
            if current == ModelStage::Staging && stage != ModelStage::Staging && model.staging_version == target.version
            {
                model.staging_version = 0;
            }
            if stage == ModelStage::Production {
                mrec.production_history.push(target.version);
            }
            if let Some(m) = mrec.model.as_mut() {
                m.updated_at = Some(now);
            }
            let mut replaced_ref = None;
            if replaced_number > 0 && replaced_number != target.version {
                let (rrec, mut rv) = self.version_record(tenant, &target.model, replaced_number).await?;
                // The replaced production version is archived; a replaced
                // staging version goes back to candidate.
                let to = if stage == ModelStage::Production { ModelStage::Archived } else { ModelStage::Candidate };
                rv.stage = to as i32;
                rv.stage_changed_at = Some(now);
                writes.push(Write::update(&rrec, &stage_name(to), &rv));
                replaced_ref = rv.r#ref.clone();
            }
            version.stage = stage as i32;
            version.stage_changed_at = Some(now);
            let change = pb::StageChange {
                id: new_id("chg"),
                kind: StageChangeKind::Promotion as i32,
                model_version: Some(target.clone()),
                from_stage: current as i32,
                to_stage: stage as i32,
                replaced: replaced_ref,
                forced: r.force,
                reason: r.reason.clone(),
                actor: actor.to_string(),
                at: Some(now),
            };
            writes.push(Write::update(&vrecord, &stage_name(stage), &version));
            writes.push(Write::update(&mrecord, "", &mrec));
            writes.push(Write::insert(CHANGE, &change.id, &target.model, "", &change));
            writes.push(Write::event(
                "pulse.model.promoted.v1",
                &version_id(&target.model, target.version),
                serde_json::json!({"model": target.model, "version": target.version, "stage": stage_name(stage), "forced": r.force, "change_id": change.id}),
            ));
            if self.records.apply(tenant, writes).await? {
                self.record_deployment_lineage(tenant, &change).await;
                return Ok(pb::PromoteModelResponse {
                    promoted: true,
                    model_version: Some(version),
                    gates,
                    change: Some(change),
                    refusal: String::new(),
                });
            }
        }
    }

    pub async fn rollback(
        &self,
        tenant: &str,
        actor: &str,
        r: &pb::RollbackModelRequest,
    ) -> Result<pb::RollbackModelResponse, TrainerError> {
        loop {
            let (mrecord, mut mrec) = self.model_record(tenant, &r.model).await?;
            let model = mrec.model.clone().unwrap_or_default();
            if model.production_version == 0 {
                return Err(TrainerError::Precondition(format!(
                    "model '{}' has no production version to roll back",
                    r.model
                )));
            }
            let earlier: Vec<u64> =
                mrec.production_history.iter().copied().filter(|v| *v != model.production_version).collect();
            let to = if r.to_version == 0 {
                *earlier.last().ok_or_else(|| {
                    TrainerError::Precondition(format!(
                        "model '{}' has had no production version before {}; there is nothing to roll back to",
                        r.model, model.production_version
                    ))
                })?
            } else if earlier.contains(&r.to_version) {
                r.to_version
            } else {
                return Err(TrainerError::Precondition(format!(
                    "version {} of '{}' was never in production; roll back only to one of {:?}",
                    r.to_version, r.model, earlier
                )));
            };
            let now = to_proto(now_millis());
            let (crec, mut cur) = self.version_record(tenant, &r.model, model.production_version).await?;
            let (trec, mut target) = self.version_record(tenant, &r.model, to).await?;
            let from = ModelStage::try_from(target.stage).unwrap_or(ModelStage::Unspecified);
            cur.stage = ModelStage::Archived as i32;
            cur.stage_changed_at = Some(now);
            target.stage = ModelStage::Production as i32;
            target.stage_changed_at = Some(now);
            if let Some(m) = mrec.model.as_mut() {
                m.production_version = to;
                m.updated_at = Some(now);
                if m.staging_version == to {
                    m.staging_version = 0;
                }
            }
            // History ends with the restored version, so a second rollback
            // goes further back.
            mrec.production_history.retain(|v| *v != model.production_version);
            let change = pb::StageChange {
                id: new_id("chg"),
                kind: StageChangeKind::Rollback as i32,
                model_version: target.r#ref.clone(),
                from_stage: from as i32,
                to_stage: ModelStage::Production as i32,
                replaced: cur.r#ref.clone(),
                forced: false,
                reason: r.reason.clone(),
                actor: actor.to_string(),
                at: Some(now),
            };
            let writes = vec![
                Write::update(&crec, &stage_name(ModelStage::Archived), &cur),
                Write::update(&trec, &stage_name(ModelStage::Production), &target),
                Write::update(&mrecord, "", &mrec),
                Write::insert(CHANGE, &change.id, &r.model, "", &change),
                Write::event(
                    "pulse.model.rolled_back.v1",
                    &version_id(&r.model, to),
                    serde_json::json!({"model": r.model, "from_version": model.production_version, "to_version": to, "reason": r.reason}),
                ),
            ];
            if self.records.apply(tenant, writes).await? {
                self.record_deployment_lineage(tenant, &change).await;
                return Ok(pb::RollbackModelResponse { production: Some(target), change: Some(change) });
            }
        }
    }

    async fn record_deployment_lineage(&self, tenant: &str, change: &pb::StageChange) {
        use pulse_lineage::domain::{EdgeWrite, NodeKind, NodeWrite};
        let Some(lineage) = &self.lineage else { return };
        let Some(mv) = &change.model_version else { return };
        let mv_id = lineage_model_id(&mv.model, mv.version);
        let attrs = [
            ("model".to_string(), mv.model.clone()),
            ("version".to_string(), mv.version.to_string()),
            ("stage".to_string(), stage_name(ModelStage::try_from(change.to_stage).unwrap_or_default())),
        ]
        .into_iter()
        .collect();
        let nodes = vec![NodeWrite { id: change.id.clone(), kind: NodeKind::Deployment, attributes: attrs }];
        let edges = vec![EdgeWrite { from_id: mv_id, to_id: change.id.clone(), relation: "deployed_as".into() }];
        if let Err(e) = lineage.record(tenant, nodes, edges).await {
            tracing::warn!(change = %change.id, error = %e, "could not record lineage");
        }
    }
}

/// Lists that filter in memory scan at most this many rows.
pub(crate) const SCAN_LIMIT: u32 = 1000;
/// Marker rows: one per model with a contract or a job.
pub(crate) const MODEL_CONTRACTS_INDEX: &str = "model_index";

pub(crate) fn check_dataset_ref(r: Option<&DatasetVersionRef>) -> Result<DatasetVersionRef, TrainerError> {
    let r = r.ok_or_else(|| TrainerError::invalid("dataset", "is required: dataset_id and version"))?;
    if r.dataset_id.is_empty() {
        return Err(TrainerError::invalid("dataset.dataset_id", "is required"));
    }
    if r.version == 0 {
        return Err(TrainerError::invalid(
            "dataset.version",
            "is required: training reads one committed version, never the moving current one",
        ));
    }
    Ok(r.clone())
}

fn check_split(s: Option<&pb::Split>, task: Task) -> Result<pb::Split, TrainerError> {
    let classification = task != Task::Regression;
    let mut s = s.cloned().unwrap_or(pb::Split { train: 0.7, validation: 0.15, test: 0.15, stratify: None });
    if s.train == 0.0 && s.validation == 0.0 && s.test == 0.0 {
        (s.train, s.validation, s.test) = (0.7, 0.15, 0.15);
    }
    for (name, v) in [("split.train", s.train), ("split.validation", s.validation), ("split.test", s.test)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(TrainerError::invalid(name, format!("{v} is outside [0, 1]")));
        }
    }
    if (s.train + s.validation + s.test - 1.0).abs() > 1e-9 {
        return Err(TrainerError::invalid(
            "split",
            format!("train + validation + test is {}, not 1", s.train + s.validation + s.test),
        ));
    }
    if s.test <= 0.0 {
        return Err(TrainerError::invalid(
            "split.test",
            "must be > 0: metrics are measured on the held-out test split",
        ));
    }
    if s.train <= 0.0 {
        return Err(TrainerError::invalid("split.train", "must be > 0"));
    }
    if s.stratify.is_none() {
        s.stratify = Some(classification);
    }
    if s.stratify == Some(true) && !classification {
        return Err(TrainerError::invalid("split.stratify", "only classification splits can be stratified"));
    }
    Ok(s)
}

/// A model version's lineage node id: `model:churn@3` (a dataset version's
/// is `churn@3`, so a model and a dataset may share a name).
pub fn lineage_model_id(model: &str, version: u64) -> String {
    format!("model:{model}@{version}")
}
