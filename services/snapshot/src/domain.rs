//! Extraction jobs, datasets and versions: the API side. Jobs are queued
//! here and run by [`crate::worker`]; a version appears only when its job
//! commits it, in one transaction with the dataset's pointers and the events.

use std::sync::Arc;
use std::time::Duration;

use pulse_common::ids::new_id;
use pulse_common::objects::{ObjectStore, TenantObjects};
use pulse_common::paging::page_size;
use pulse_common::records::{ListQuery, Record, RecordStore, Write};
use pulse_common::time::{now_millis, to_proto};
use pulse_datasource::Datasources;
use pulse_datasource::connector::{project, require_column};
use pulse_datasource::names::check_resource_name;
use pulse_proto::common::v1::{DatasetVersionRef, JobProgress, JobStatus, PageRequest, Schema, TimelineEntry};
use pulse_proto::datasource::v1::{ObjectKind, Value};
use pulse_proto::snapshot::v1 as pb;
use pulse_proto::snapshot::v1::{DatasetVersionState, ExtractionMode};

use crate::error::SnapshotError;

pub(crate) const JOB: &str = "job";
pub(crate) const DATASET: &str = "dataset";
pub(crate) const VERSION: &str = "version";

/// Rows per chunk when the first extraction of a dataset does not say.
pub const DEFAULT_CHUNK_ROWS: u32 = 1_048_576;

/// One committed chunk of a running job.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkState {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(uint64, tag = "2")]
    pub rows: u64,
    #[prost(uint64, tag = "3")]
    pub bytes: u64,
    #[prost(string, tag = "4")]
    pub sha256: String,
    /// Primary-key values of the chunk's last row: the resume point.
    #[prost(message, repeated, tag = "5")]
    pub last_key: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeState {
    #[prost(message, optional, tag = "1")]
    pub range: Option<pulse_proto::datasource::v1::Range>,
    #[prost(bool, tag = "2")]
    pub include_nulls: bool,
    #[prost(message, repeated, tag = "3")]
    pub chunks: Vec<ChunkState>,
    #[prost(bool, tag = "4")]
    pub done: bool,
}

/// What a worker needs to resume a job, beside its public view.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JobState {
    #[prost(string, tag = "1")]
    pub lease_worker: String,
    #[prost(int64, tag = "2")]
    pub lease_until_ms: i64,
    #[prost(bool, tag = "3")]
    pub planned: bool,
    /// The logical schema fixed when the job was planned.
    #[prost(message, optional, tag = "4")]
    pub schema: Option<Schema>,
    #[prost(message, repeated, tag = "5")]
    pub ranges: Vec<RangeState>,
    #[prost(uint64, tag = "6")]
    pub base_version: u64,
    #[prost(uint32, tag = "7")]
    pub chunk_rows: u32,
    #[prost(int64, tag = "8")]
    pub rate_since_ms: i64,
    #[prost(uint64, tag = "9")]
    pub rate_since_rows: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct JobRecord {
    #[prost(message, optional, tag = "1")]
    pub job: Option<pb::ExtractionJob>,
    #[prost(message, optional, tag = "2")]
    pub state: Option<JobState>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DatasetRecord {
    #[prost(message, optional, tag = "1")]
    pub dataset: Option<pb::Dataset>,
    /// Earlier values of the current pointer, newest last (for rollback).
    #[prost(uint64, repeated, tag = "2")]
    pub history: Vec<u64>,
    #[prost(uint32, tag = "3")]
    pub chunk_rows: u32,
}

pub(crate) fn status_name(s: JobStatus) -> &'static str {
    s.as_str_name()
}

pub(crate) fn job_status(job: &pb::ExtractionJob) -> JobStatus {
    JobStatus::try_from(job.status).unwrap_or(JobStatus::Unspecified)
}

pub(crate) fn is_final(s: JobStatus) -> bool {
    matches!(s, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)
}

pub(crate) fn version_id(dataset: &str, version: u64) -> String {
    format!("{dataset}@{version:020}")
}

pub(crate) fn timeline(job: &mut pb::ExtractionJob, status: JobStatus, message: impl Into<String>) {
    job.timeline.push(TimelineEntry {
        at: Some(to_proto(now_millis())),
        status: status as i32,
        step: String::new(),
        message: message.into(),
    });
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    pub(crate) records: Arc<dyn RecordStore>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) datasources: Datasources,
    pub(crate) lineage: Option<pulse_lineage::Lineage>,
    pub(crate) worker_id: String,
    pub(crate) lease: Duration,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Statistics of ranges extracted start to end by this process, so a
    /// full snapshot need not be read back to compute them.
    pub(crate) range_stats: Arc<RangeStats>,
    pub(crate) metrics: SnapshotMetrics,
}

/// Extraction counters and the shared job-queue families.
#[derive(Clone, Debug)]
pub struct SnapshotMetrics {
    pub jobs: pulse_common::metrics::JobMetrics,
    rows: prometheus::IntCounterVec,
    bytes: prometheus::IntCounterVec,
}

pub(crate) const JOB_KIND: &str = "extraction";

impl SnapshotMetrics {
    pub fn new(metrics: &pulse_common::metrics::Metrics) -> Self {
        use prometheus::{IntCounterVec, Opts};
        let rows = IntCounterVec::new(
            Opts::new("pulse_extraction_rows_total", "Rows extracted into committed chunks, by dataset"),
            &["dataset"],
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new("pulse_extraction_bytes_total", "Parquet bytes written in committed chunks, by dataset"),
            &["dataset"],
        )
        .expect("valid metric");
        // A second service instance in one process (tests) keeps the first.
        let _ = metrics.registry.register(Box::new(rows.clone()));
        let _ = metrics.registry.register(Box::new(bytes.clone()));
        metrics.jobs.declare(JOB_KIND);
        Self { jobs: metrics.jobs.clone(), rows, bytes }
    }

    pub(crate) fn chunk(&self, dataset: &str, rows: usize, bytes: u64) {
        self.rows.with_label_values(&[dataset]).inc_by(rows as u64);
        self.bytes.with_label_values(&[dataset]).inc_by(bytes);
    }
}

#[derive(Default)]
pub(crate) struct RangeStats(
    pub std::sync::Mutex<std::collections::HashMap<(String, usize), crate::stats::StatsAccumulator>>,
);

impl std::fmt::Debug for RangeStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RangeStats")
    }
}

impl Snapshots {
    pub fn new(
        records: Arc<dyn RecordStore>,
        objects: Arc<dyn ObjectStore>,
        datasources: Datasources,
        lineage: Option<pulse_lineage::Lineage>,
        lease: Duration,
        metrics: SnapshotMetrics,
    ) -> Self {
        Self {
            metrics,
            records,
            objects,
            datasources,
            lineage,
            worker_id: new_id("wrk"),
            lease,
            wake: Arc::new(tokio::sync::Notify::new()),
            range_stats: Arc::default(),
        }
    }

    pub fn tenant_objects(&self, tenant: &str) -> Result<TenantObjects, SnapshotError> {
        Ok(TenantObjects::new(self.objects.clone(), tenant)?)
    }

    pub(crate) async fn job_record(&self, tenant: &str, id: &str) -> Result<(Record, JobRecord), SnapshotError> {
        if id.is_empty() {
            return Err(SnapshotError::invalid("job_id", "is required"));
        }
        let record = self
            .records
            .get(tenant, JOB, id)
            .await?
            .ok_or_else(|| SnapshotError::NotFound(format!("extraction job '{id}'")))?;
        let job: JobRecord = record.decode()?;
        Ok((record, job))
    }

    pub(crate) async fn dataset_record(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Record, DatasetRecord)>, SnapshotError> {
        match self.records.get(tenant, DATASET, id).await? {
            Some(r) => {
                let d = r.decode()?;
                Ok(Some((r, d)))
            }
            None => Ok(None),
        }
    }

    async fn dataset_required(&self, tenant: &str, id: &str) -> Result<(Record, DatasetRecord), SnapshotError> {
        if id.is_empty() {
            return Err(SnapshotError::invalid("dataset_id", "is required"));
        }
        self.dataset_record(tenant, id)
            .await?
            .ok_or_else(|| SnapshotError::NotFound(format!("dataset '{id}' (list them with ListDatasets)")))
    }

    pub(crate) async fn version_record(
        &self,
        tenant: &str,
        dataset: &str,
        version: u64,
    ) -> Result<(Record, pb::DatasetVersion), SnapshotError> {
        let (_, d) = self.dataset_required(tenant, dataset).await?;
        let ds = d.dataset.unwrap_or_default();
        let version = if version == 0 { ds.current_version } else { version };
        if version == 0 {
            return Err(SnapshotError::Precondition(format!(
                "dataset '{dataset}' has no committed version yet; wait for its extraction to finish"
            )));
        }
        let record = self
            .records
            .get(tenant, VERSION, &version_id(dataset, version))
            .await?
            .ok_or_else(|| SnapshotError::NotFound(format!("version {version} of dataset '{dataset}'")))?;
        let mut v: pb::DatasetVersion = record.decode()?;
        v.current = v.version == ds.current_version;
        Ok((record, v))
    }

    // ------------------------------------------------------------ jobs

    pub async fn start(
        &self,
        tenant: &str,
        req: pb::StartExtractionRequest,
    ) -> Result<pb::ExtractionJob, SnapshotError> {
        check_resource_name("dataset", &req.dataset)?;
        if req.datasource_id.is_empty() {
            return Err(SnapshotError::invalid("datasource_id", "is required"));
        }
        if req.parallelism > 16 {
            return Err(SnapshotError::invalid("parallelism", "must be at most 16"));
        }
        if req.chunk_rows > 16 * 1_048_576 {
            return Err(SnapshotError::invalid("chunk_rows", "must be at most 16777216"));
        }
        let mode = match ExtractionMode::try_from(req.mode).unwrap_or(ExtractionMode::Unspecified) {
            ExtractionMode::Unspecified => ExtractionMode::Full,
            m => m,
        };
        // Checked before any work: datasource, allowlist, names, columns.
        let open = self.datasources.open(tenant, &req.datasource_id, &req.object, "object").await?;
        let inspected = open.connector.inspect(&open.object).await?;
        let schema = inspected.schema.clone().unwrap_or_default();
        project(&schema, &req.columns, "columns")?;
        let existing = self.dataset_record(tenant, &req.dataset).await?;
        let object = open.object.canonical();
        let mut cursor_field = req.cursor_field.clone();
        let mut primary_key = req.primary_key.clone();
        let mut chunk_rows = if req.chunk_rows == 0 { DEFAULT_CHUNK_ROWS } else { req.chunk_rows };
        if let Some((_, d)) = &existing {
            let ds = d.dataset.clone().unwrap_or_default();
            if ds.datasource_id != open.datasource.id || ds.object != object {
                return Err(SnapshotError::Precondition(format!(
                    "dataset '{}' is bound to {} of datasource {}; extract {} into another dataset",
                    req.dataset, ds.object, ds.datasource_id, object
                )));
            }
            if req.chunk_rows != 0 && req.chunk_rows != d.chunk_rows {
                return Err(SnapshotError::invalid(
                    "chunk_rows",
                    format!("is fixed at {} for dataset '{}' so its versions chunk alike", d.chunk_rows, req.dataset),
                ));
            }
            chunk_rows = d.chunk_rows;
            if cursor_field.is_empty() {
                cursor_field = ds.cursor_field.clone();
            }
            if primary_key.is_empty() {
                primary_key = ds.primary_key.clone();
            }
        }
        if primary_key.is_empty() {
            primary_key = inspected.primary_key.clone();
        }
        for (i, k) in primary_key.iter().enumerate() {
            require_column(&schema, k, &format!("primary_key[{i}]"))?;
        }
        if !req.columns.is_empty() {
            for k in &primary_key {
                if !req.columns.contains(k) {
                    return Err(SnapshotError::invalid(
                        "columns",
                        format!("must include the primary key column '{k}'"),
                    ));
                }
            }
        }
        if !cursor_field.is_empty() {
            let field = if req.cursor_field.is_empty() { "cursor_field (from the dataset)" } else { "cursor_field" };
            require_column(&schema, &cursor_field, field)?;
        }
        if mode == ExtractionMode::Incremental && cursor_field.is_empty() {
            return Err(SnapshotError::invalid(
                "cursor_field",
                "is required for an INCREMENTAL extraction (the column whose growth marks new or changed rows)",
            ));
        }
        let parallelism = req.parallelism.max(1);
        let mut partition_column = req.partition_column.clone();
        if parallelism > 1 && partition_column.is_empty() {
            let splittable = |c: &str| {
                schema.columns.iter().find(|x| x.name == c).is_some_and(|x| {
                    use pulse_proto::common::v1::DataType as T;
                    matches!(T::try_from(x.data_type), Ok(T::Int | T::Decimal | T::Date | T::Timestamp))
                })
            };
            if primary_key.len() == 1 && splittable(&primary_key[0]) {
                partition_column = primary_key[0].clone();
            } else if !cursor_field.is_empty() && splittable(&cursor_field) {
                partition_column = cursor_field.clone();
            } else {
                return Err(SnapshotError::invalid(
                    "partition_column",
                    "is required for parallelism > 1: name an integer, decimal, date or timestamp column",
                ));
            }
        }
        if !partition_column.is_empty() {
            require_column(&schema, &partition_column, "partition_column")?;
        }
        if inspected.kind == ObjectKind::StoredQuery as i32
            && primary_key.is_empty()
            && mode == ExtractionMode::Incremental
        {
            return Err(SnapshotError::invalid(
                "primary_key",
                "is required to merge an incremental extraction of a stored query",
            ));
        }

        let id = new_id("ext");
        let now = to_proto(now_millis());
        let mut job = pb::ExtractionJob {
            id: id.clone(),
            datasource_id: open.datasource.id.clone(),
            object: object.clone(),
            dataset_id: req.dataset.clone(),
            mode: mode as i32,
            cursor_field: cursor_field.clone(),
            primary_key: primary_key.clone(),
            columns: req.columns.clone(),
            parallelism,
            partition_column,
            status: JobStatus::Queued as i32,
            progress: Some(JobProgress { unit: "rows".into(), phase: "queued".into(), ..Default::default() }),
            description: req.description.clone(),
            labels: req.labels.clone(),
            created_at: Some(now),
            ..Default::default()
        };
        timeline(&mut job, JobStatus::Queued, "queued");
        let state = JobState { chunk_rows, ..Default::default() };
        let mut writes = vec![Write::insert(
            JOB,
            &id,
            &req.dataset,
            status_name(JobStatus::Queued),
            &JobRecord { job: Some(job.clone()), state: Some(state) },
        )];
        if existing.is_none() {
            let dataset = pb::Dataset {
                id: req.dataset.clone(),
                datasource_id: open.datasource.id.clone(),
                object,
                schema: Some(project(&schema, &req.columns, "columns")?),
                cursor_field,
                primary_key,
                retention: Some(pb::RetentionPolicy::default()),
                description: req.description.clone(),
                labels: req.labels.clone(),
                created_at: Some(now),
                updated_at: Some(now),
                ..Default::default()
            };
            writes.push(Write::insert(
                DATASET,
                &req.dataset,
                &open.datasource.id,
                "",
                &DatasetRecord { dataset: Some(dataset), history: Vec::new(), chunk_rows },
            ));
        }
        if !self.records.apply(tenant, writes).await? {
            return Err(SnapshotError::Precondition(format!(
                "dataset '{}' was created by another request at the same moment; retry",
                req.dataset
            )));
        }
        self.wake.notify_waiters();
        Ok(job)
    }

    pub async fn job(&self, tenant: &str, id: &str) -> Result<pb::ExtractionJob, SnapshotError> {
        Ok(self.job_record(tenant, id).await?.1.job.unwrap_or_default())
    }

    pub async fn cancel(&self, tenant: &str, id: &str, reason: &str) -> Result<pb::ExtractionJob, SnapshotError> {
        loop {
            let (record, mut rec) = self.job_record(tenant, id).await?;
            let mut job = rec.job.clone().unwrap_or_default();
            let status = job_status(&job);
            let next = match status {
                JobStatus::Queued | JobStatus::Pending => JobStatus::Canceled,
                JobStatus::Running => JobStatus::Canceling,
                JobStatus::Canceling => return Ok(job),
                _ => {
                    return Err(SnapshotError::Precondition(format!(
                        "job '{id}' is {} and cannot be canceled",
                        status.as_str_name()
                    )));
                }
            };
            job.status = next as i32;
            let msg =
                if reason.is_empty() { "cancel requested".to_string() } else { format!("cancel requested: {reason}") };
            timeline(&mut job, next, msg);
            let mut writes = Vec::new();
            if next == JobStatus::Canceled {
                job.finished_at = Some(to_proto(now_millis()));
                writes.push(Write::event(
                    "pulse.extraction.canceled.v1",
                    id,
                    serde_json::json!({"job_id": id, "dataset_id": job.dataset_id, "reason": reason}),
                ));
            }
            rec.job = Some(job.clone());
            writes.insert(0, Write::update(&record, status_name(next), &rec));
            if self.records.apply(tenant, writes).await? {
                return Ok(job);
            }
        }
    }

    pub async fn resume(&self, tenant: &str, id: &str) -> Result<pb::ExtractionJob, SnapshotError> {
        let (record, mut rec) = self.job_record(tenant, id).await?;
        let mut job = rec.job.clone().unwrap_or_default();
        if job_status(&job) != JobStatus::Failed {
            return Err(SnapshotError::Precondition(format!(
                "job '{id}' is {}; only a FAILED job can be resumed (running jobs whose worker died resume on their own)",
                job_status(&job).as_str_name()
            )));
        }
        if job.error.as_ref().is_some_and(|e| !e.retryable) {
            return Err(SnapshotError::Precondition(format!(
                "job '{id}' failed for a reason a retry will not fix: {}; start a new extraction",
                job.error.as_ref().map(|e| e.message.as_str()).unwrap_or("")
            )));
        }
        job.status = JobStatus::Queued as i32;
        job.error = None;
        job.finished_at = None;
        timeline(&mut job, JobStatus::Queued, "resume requested");
        rec.job = Some(job.clone());
        if !self
            .records
            .apply(tenant, vec![Write::update(&record, status_name(JobStatus::Queued), &rec).leased_until(0)])
            .await?
        {
            return Err(SnapshotError::Precondition(format!("job '{id}' changed while resuming; retry")));
        }
        self.wake.notify_waiters();
        Ok(job)
    }

    pub async fn list_jobs(
        &self,
        tenant: &str,
        req: pb::ListExtractionJobsRequest,
    ) -> Result<(Vec<pb::ExtractionJob>, String), SnapshotError> {
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size);
        let status = JobStatus::try_from(req.status).unwrap_or(JobStatus::Unspecified);
        let status_filter = (status != JobStatus::Unspecified).then(|| status_name(status));
        let mut out = Vec::new();
        let mut after = page.page_token.clone();
        loop {
            let q = ListQuery {
                parent: (!req.dataset_id.is_empty()).then_some(req.dataset_id.as_str()),
                status: status_filter,
                after: &after,
                limit: limit + 1,
                newest_first: true,
            };
            let batch = self.records.list(tenant, JOB, q).await?;
            let exhausted = batch.len() <= limit as usize;
            for r in batch.iter().take(limit as usize) {
                after = r.id.clone();
                let job = r.decode::<JobRecord>()?.job.unwrap_or_default();
                if req.datasource_id.is_empty() || job.datasource_id == req.datasource_id {
                    out.push(job);
                    if out.len() == limit as usize {
                        return Ok((out, after));
                    }
                }
            }
            if exhausted {
                return Ok((out, String::new()));
            }
        }
    }

    // ------------------------------------------------------------ datasets

    pub async fn list_datasets(
        &self,
        tenant: &str,
        datasource_id: &str,
        page: Option<PageRequest>,
    ) -> Result<(Vec<pb::Dataset>, String), SnapshotError> {
        let page = page.unwrap_or_default();
        let limit = page_size(page.page_size);
        let q = ListQuery {
            parent: (!datasource_id.is_empty()).then_some(datasource_id),
            after: &page.page_token,
            limit: limit + 1,
            ..Default::default()
        };
        let rows = self.records.list(tenant, DATASET, q).await?;
        let next = if rows.len() > limit as usize { rows[limit as usize - 1].id.clone() } else { String::new() };
        let datasets = rows
            .iter()
            .take(limit as usize)
            .map(|r| Ok(r.decode::<DatasetRecord>()?.dataset.unwrap_or_default()))
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        Ok((datasets, next))
    }

    pub async fn dataset(&self, tenant: &str, id: &str) -> Result<pb::Dataset, SnapshotError> {
        Ok(self.dataset_required(tenant, id).await?.1.dataset.unwrap_or_default())
    }

    pub async fn list_versions(
        &self,
        tenant: &str,
        req: pb::ListDatasetVersionsRequest,
    ) -> Result<(Vec<pb::DatasetVersion>, String), SnapshotError> {
        let ds = self.dataset(tenant, &req.dataset_id).await?;
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size);
        let full = req.view == pb::DatasetVersionView::Full as i32;
        let state = DatasetVersionState::try_from(req.state).unwrap_or(DatasetVersionState::Unspecified);
        let mut out = Vec::new();
        let mut after = page.page_token.clone();
        loop {
            let q = ListQuery {
                parent: Some(&req.dataset_id),
                after: &after,
                limit: limit + 1,
                newest_first: true,
                ..Default::default()
            };
            let rows = self.records.list(tenant, VERSION, q).await?;
            let exhausted = rows.len() <= limit as usize;
            for r in rows.iter().take(limit as usize) {
                after = r.id.clone();
                let mut v: pb::DatasetVersion = r.decode()?;
                if state != DatasetVersionState::Unspecified && v.state != state as i32 {
                    continue;
                }
                v.current = v.version == ds.current_version;
                if !full && let Some(m) = &mut v.manifest {
                    m.chunks.clear();
                    m.statistics.clear();
                }
                out.push(v);
                if out.len() == limit as usize {
                    return Ok((out, after));
                }
            }
            if exhausted {
                return Ok((out, String::new()));
            }
        }
    }

    pub async fn version(
        &self,
        tenant: &str,
        dataset: &str,
        version: u64,
    ) -> Result<pb::DatasetVersion, SnapshotError> {
        Ok(self.version_record(tenant, dataset, version).await?.1)
    }

    /// The version to read, checked readable.
    pub async fn readable(
        &self,
        tenant: &str,
        dataset: &str,
        version: u64,
    ) -> Result<pb::DatasetVersion, SnapshotError> {
        let v = self.version(tenant, dataset, version).await?;
        if v.state == DatasetVersionState::Expired as i32 {
            return Err(SnapshotError::Precondition(format!(
                "version {} of dataset '{dataset}' expired under the retention policy; its manifest remains, its rows do not",
                v.version
            )));
        }
        Ok(v)
    }

    // ------------------------------------------------------------ pointer

    async fn update_dataset<F>(&self, tenant: &str, id: &str, mut change: F) -> Result<pb::Dataset, SnapshotError>
    where
        F: FnMut(&mut DatasetRecord) -> Result<Vec<Write>, SnapshotError>,
    {
        loop {
            let (record, mut d) = self.dataset_required(tenant, id).await?;
            let mut writes = change(&mut d)?;
            if let Some(ds) = &mut d.dataset {
                ds.updated_at = Some(to_proto(now_millis()));
            }
            writes.insert(0, Write::update(&record, "", &d));
            if self.records.apply(tenant, writes).await? {
                return Ok(d.dataset.unwrap_or_default());
            }
        }
    }

    async fn available(&self, tenant: &str, dataset: &str, version: u64, field: &str) -> Result<(), SnapshotError> {
        if version == 0 {
            return Err(SnapshotError::invalid(field, "is required"));
        }
        let v = self.version_record(tenant, dataset, version).await?.1;
        if v.state != DatasetVersionState::Available as i32 {
            return Err(SnapshotError::Precondition(format!("version {version} of '{dataset}' is expired")));
        }
        Ok(())
    }

    pub async fn pin(
        &self,
        tenant: &str,
        dataset: &str,
        version: u64,
        reason: &str,
    ) -> Result<pb::Dataset, SnapshotError> {
        self.available(tenant, dataset, version, "version").await?;
        let reason = reason.to_string();
        self.update_dataset(tenant, dataset, |d| {
            let ds = d.dataset.get_or_insert_default();
            if ds.current_version != version {
                d.history.push(ds.current_version);
            }
            ds.current_version = version;
            ds.current_pinned = true;
            Ok(vec![Write::event(
                "pulse.dataset.current_changed.v1",
                dataset,
                serde_json::json!({"dataset_id": dataset, "current_version": version, "pinned": true, "reason": reason}),
            )])
        })
        .await
    }

    pub async fn unpin(&self, tenant: &str, dataset: &str) -> Result<pb::Dataset, SnapshotError> {
        self.update_dataset(tenant, dataset, |d| {
            let ds = d.dataset.get_or_insert_default();
            if ds.current_version != ds.latest_version {
                d.history.push(ds.current_version);
            }
            ds.current_version = ds.latest_version;
            ds.current_pinned = false;
            Ok(vec![Write::event(
                "pulse.dataset.current_changed.v1",
                dataset,
                serde_json::json!({"dataset_id": dataset, "current_version": ds.latest_version, "pinned": false}),
            )])
        })
        .await
    }

    pub async fn rollback(
        &self,
        tenant: &str,
        dataset: &str,
        to: u64,
        reason: &str,
    ) -> Result<pb::Dataset, SnapshotError> {
        let ds = self.dataset(tenant, dataset).await?;
        let (_, d) = self.dataset_required(tenant, dataset).await?;
        let target = if to == 0 {
            *d.history.iter().rev().find(|v| **v != 0 && **v != ds.current_version).ok_or_else(|| {
                SnapshotError::Precondition(format!(
                    "dataset '{dataset}' has no earlier current version to roll back to; name one with to_version"
                ))
            })?
        } else {
            if to >= ds.current_version {
                return Err(SnapshotError::invalid(
                    "to_version",
                    format!("must be older than the current version {}", ds.current_version),
                ));
            }
            to
        };
        self.available(tenant, dataset, target, "to_version").await?;
        let reason = reason.to_string();
        self.update_dataset(tenant, dataset, |d| {
            let ds = d.dataset.get_or_insert_default();
            // Rolling back consumes the history entry it returns to.
            if let Some(pos) = d.history.iter().rposition(|v| *v == target) {
                d.history.truncate(pos);
            }
            ds.current_version = target;
            ds.current_pinned = true;
            Ok(vec![Write::event(
                "pulse.dataset.current_changed.v1",
                dataset,
                serde_json::json!({"dataset_id": dataset, "current_version": target, "pinned": true, "rollback": true, "reason": reason}),
            )])
        })
        .await
    }

    // ------------------------------------------------------------ retention

    pub async fn set_retention(
        &self,
        tenant: &str,
        dataset: &str,
        retention: pb::RetentionPolicy,
    ) -> Result<pb::Dataset, SnapshotError> {
        if let Some(age) = &retention.max_age
            && (age.seconds < 0 || age.nanos < 0)
        {
            return Err(SnapshotError::invalid("retention.max_age", "must not be negative"));
        }
        self.update_dataset(tenant, dataset, |d| {
            d.dataset.get_or_insert_default().retention = Some(retention);
            Ok(Vec::new())
        })
        .await?;
        self.apply_retention(tenant, dataset).await?;
        self.dataset(tenant, dataset).await
    }

    pub async fn add_hold(
        &self,
        tenant: &str,
        r: Option<DatasetVersionRef>,
        holder: &str,
        reason: &str,
    ) -> Result<pb::DatasetVersion, SnapshotError> {
        let r = r.ok_or_else(|| SnapshotError::invalid("ref", "is required: dataset_id and version"))?;
        if holder.is_empty() || holder.len() > 200 {
            return Err(SnapshotError::invalid("holder", "is 1 to 200 characters, e.g. training_job:trn_…"));
        }
        loop {
            let (record, mut v) = self.version_record(tenant, &r.dataset_id, r.version).await?;
            if v.holds.iter().any(|h| h.holder == holder) {
                return Ok(v);
            }
            if v.state == DatasetVersionState::Expired as i32 {
                return Err(SnapshotError::Precondition(format!("version {} is already expired", v.version)));
            }
            v.holds.push(pb::RetentionHold {
                holder: holder.to_string(),
                reason: reason.to_string(),
                created_at: Some(to_proto(now_millis())),
            });
            if self.records.apply(tenant, vec![Write::update(&record, &record.status, &v)]).await? {
                return Ok(v);
            }
        }
    }

    pub async fn remove_hold(
        &self,
        tenant: &str,
        r: Option<DatasetVersionRef>,
        holder: &str,
    ) -> Result<pb::DatasetVersion, SnapshotError> {
        let r = r.ok_or_else(|| SnapshotError::invalid("ref", "is required: dataset_id and version"))?;
        loop {
            let (record, mut v) = self.version_record(tenant, &r.dataset_id, r.version).await?;
            let before = v.holds.len();
            v.holds.retain(|h| h.holder != holder);
            if v.holds.len() == before {
                return Err(SnapshotError::NotFound(format!("hold '{holder}' on {}@{}", r.dataset_id, v.version)));
            }
            if self.records.apply(tenant, vec![Write::update(&record, &record.status, &v)]).await? {
                self.apply_retention(tenant, &r.dataset_id).await?;
                return Ok(v);
            }
        }
    }

    /// Expires versions beyond the policy. Never expired: the current and
    /// latest versions, held versions, and chunks still listed by a kept
    /// version (incremental versions share their base's chunks).
    pub async fn apply_retention(&self, tenant: &str, dataset: &str) -> Result<Vec<u64>, SnapshotError> {
        let ds = self.dataset(tenant, dataset).await?;
        let policy = ds.retention.unwrap_or_default();
        if policy.keep_last == 0 && policy.max_age.is_none_or(|a| a.seconds == 0 && a.nanos == 0) {
            return Ok(Vec::new());
        }
        let q = ListQuery { parent: Some(dataset), limit: 100_000, newest_first: true, ..Default::default() };
        let rows = self.records.list(tenant, VERSION, q).await?;
        let now = chrono::Utc::now();
        let mut expired = Vec::new();
        let mut kept = 0u32;
        for r in rows {
            let mut v: pb::DatasetVersion = r.decode()?;
            if v.state == DatasetVersionState::Expired as i32 {
                continue;
            }
            let protected = v.version == ds.current_version || v.version == ds.latest_version || !v.holds.is_empty();
            let too_many = policy.keep_last > 0 && kept >= policy.keep_last;
            let too_old = policy.max_age.as_ref().is_some_and(|age| {
                let committed = v.committed_at.as_ref().and_then(pulse_common::time::from_proto).unwrap_or(now);
                age.seconds > 0 && (now - committed).num_seconds() > age.seconds
            });
            kept += 1;
            if protected || !(too_many || too_old) {
                continue;
            }
            v.state = DatasetVersionState::Expired as i32;
            v.expired_at = Some(to_proto(now_millis()));
            let written = self
                .records
                .apply(
                    tenant,
                    vec![
                        Write::update(&r, "expired", &v),
                        Write::event(
                            "pulse.dataset.version_expired.v1",
                            &format!("{dataset}@{}", v.version),
                            serde_json::json!({"dataset_id": dataset, "version": v.version}),
                        ),
                    ],
                )
                .await?;
            if written {
                expired.push(v.version);
            }
        }
        if !expired.is_empty() {
            self.update_dataset(tenant, dataset, |d| {
                let ds = d.dataset.get_or_insert_default();
                ds.available_versions = ds.available_versions.saturating_sub(expired.len() as u64);
                Ok(Vec::new())
            })
            .await?;
        }
        Ok(expired)
    }
}
