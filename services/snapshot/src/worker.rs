//! Extraction workers. A worker claims a queued job (or one whose lease
//! expired: its worker died) with compare-and-set, plans it once (schema,
//! cursor window, ranges), streams each range from the source into Parquet
//! chunks, records every chunk as it lands (the resume point), and finally
//! commits the version, its events and lineage in one transaction.

use std::time::{Duration, Instant};

use futures::StreamExt;
use pulse_common::objects::sha256_hex;
use pulse_common::records::Write;
use pulse_common::time::{now_millis, to_proto};
use pulse_datasource::connector::values::{arrow_schema, value_at};
use pulse_datasource::connector::{CursorWindow, RangeFilter, ReadSpec, project};
use pulse_datasource::domain::plan_from_bounds;
use pulse_lineage::domain::{EdgeWrite, NodeKind, NodeWrite};
use pulse_proto::common::v1::{DatasetVersionRef, JobError, JobStatus};
use pulse_proto::datasource::v1::ConnectorKind;
use pulse_proto::snapshot::v1 as pb;
use pulse_proto::snapshot::v1::{DatasetVersionState, ExtractionMode};

use crate::chunk::Chunker;
use crate::domain::{
    ChunkState, DATASET, JOB, JOB_KIND, JobRecord, JobState, RangeState, Snapshots, VERSION, is_final, job_status,
    status_name, timeline, version_id,
};
use crate::error::SnapshotError;
use crate::read::read_version;
use crate::stats::StatsAccumulator;

const POLL: Duration = Duration::from_millis(500);
const MAX_TRANSIENT_RETRIES: u32 = 5;

/// Runs CPU-bound work (encoding, statistics) so that, on a multi-threaded
/// runtime, the other tasks of the worker thread move elsewhere meanwhile.
fn cpu<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Snapshots {
    /// Runs `n` worker loops until `shutdown` resolves.
    pub fn spawn_workers(&self, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let this = self.clone();
                tokio::spawn(async move { this.worker_loop().await })
            })
            .collect()
    }

    async fn worker_loop(self) {
        loop {
            match self.claim_next().await {
                Ok(Some((tenant, id))) => {
                    if let Err(e) = self.run(&tenant, &id).await {
                        tracing::warn!(job = %id, error = %e, "extraction job stopped");
                    }
                    continue;
                }
                Ok(None) => self.report_queue().await,
                Err(e) => tracing::warn!(error = %e, "could not look for extraction jobs"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Sets `pulse_jobs_queued` from the store (every worker process reports
    /// the same shared queue).
    async fn report_queue(&self) {
        if let Ok(n) = self.records.count(JOB, &[status_name(JobStatus::Queued)]).await {
            self.metrics.jobs.queued.with_label_values(&[JOB_KIND]).set(n as i64);
        }
    }

    /// Claims one runnable job: queued, or running with an expired lease.
    async fn claim_next(&self) -> Result<Option<(String, String)>, SnapshotError> {
        let statuses =
            [status_name(JobStatus::Queued), status_name(JobStatus::Running), status_name(JobStatus::Canceling)];
        let until = now_ms() + self.lease.as_millis() as i64;
        while let Some(record) = self.records.claim(JOB, &statuses, until).await? {
            let mut rec: JobRecord = record.decode()?;
            let mut job = rec.job.clone().unwrap_or_default();
            let mut state = rec.state.clone().unwrap_or_default();
            let status = job_status(&job);
            if status == JobStatus::Canceling {
                // Its worker died while canceling: finish the cancel here.
                job.status = JobStatus::Canceled as i32;
                job.finished_at = Some(to_proto(now_millis()));
                timeline(&mut job, JobStatus::Canceled, "canceled");
                rec.job = Some(job.clone());
                self.records
                    .apply(
                        &record.tenant,
                        vec![Write::update(&record, status_name(JobStatus::Canceled), &rec).leased_until(0)],
                    )
                    .await?;
                continue;
            }
            let resumed = status == JobStatus::Running;
            if resumed {
                self.metrics.jobs.taken_over(JOB_KIND);
            }
            state.lease_worker = self.worker_id.clone();
            state.lease_until_ms = until;
            job.status = JobStatus::Running as i32;
            job.attempts += 1;
            job.worker = self.worker_id.clone();
            if job.started_at.is_none() {
                job.started_at = Some(to_proto(now_millis()));
            }
            timeline(
                &mut job,
                JobStatus::Running,
                if resumed { "resumed by a new worker after the previous one stopped" } else { "started" },
            );
            rec.job = Some(job.clone());
            rec.state = Some(state);
            let mut writes = vec![Write::update(&record, status_name(JobStatus::Running), &rec).leased_until(until)];
            if job.attempts == 1 {
                writes.push(Write::event(
                    "pulse.extraction.started.v1",
                    &job.id,
                    serde_json::json!({"job_id": job.id, "dataset_id": job.dataset_id, "datasource_id": job.datasource_id, "object": job.object}),
                ));
            }
            if self.records.apply(&record.tenant, writes).await? {
                return Ok(Some((record.tenant.clone(), job.id)));
            }
        }
        Ok(None)
    }

    /// Read-modify-write of a job held by this worker. Fails with
    /// `LeaseLost` when another worker took it, `Canceled` when a cancel
    /// arrived (unless `allow_cancel`).
    async fn update_job<F>(
        &self,
        tenant: &str,
        id: &str,
        allow_cancel: bool,
        mut change: F,
    ) -> Result<JobRecord, SnapshotError>
    where
        F: FnMut(&mut pb::ExtractionJob, &mut JobState) -> Vec<Write>,
    {
        loop {
            let (record, mut rec) = self.job_record(tenant, id).await?;
            let mut job = rec.job.clone().unwrap_or_default();
            let mut state = rec.state.clone().unwrap_or_default();
            if state.lease_worker != self.worker_id || is_final(job_status(&job)) {
                return Err(SnapshotError::LeaseLost);
            }
            if job_status(&job) == JobStatus::Canceling && !allow_cancel {
                return Err(SnapshotError::Canceled);
            }
            state.lease_until_ms = now_ms() + self.lease.as_millis() as i64;
            let mut writes = change(&mut job, &mut state);
            let lease = if is_final(job_status(&job)) { 0 } else { state.lease_until_ms };
            let status = status_name(job_status(&job));
            rec.job = Some(job);
            rec.state = Some(state);
            writes.insert(0, Write::update(&record, status, &rec).leased_until(lease));
            if self.records.apply(tenant, writes).await? {
                return Ok(rec);
            }
        }
    }

    /// Runs a claimed job to its end (or until its lease is lost).
    async fn run(&self, tenant: &str, id: &str) -> Result<(), SnapshotError> {
        // Renew the lease while the job runs, so a slow chunk does not look
        // like a dead worker.
        let heartbeat = {
            let this = self.clone();
            let (tenant, id) = (tenant.to_string(), id.to_string());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(this.lease / 3).await;
                    if this.update_job(&tenant, &id, true, |_, _| Vec::new()).await.is_err() {
                        break;
                    }
                }
            })
        };
        let result = self.run_inner(tenant, id).await;
        heartbeat.abort();
        match result {
            Ok(()) => Ok(()),
            Err(SnapshotError::LeaseLost) => Err(SnapshotError::LeaseLost),
            Err(SnapshotError::Canceled) => {
                self.update_job(tenant, id, true, |job, _| {
                    job.status = JobStatus::Canceled as i32;
                    job.finished_at = Some(to_proto(now_millis()));
                    timeline(job, JobStatus::Canceled, "canceled; its chunks are discarded");
                    vec![Write::event(
                        "pulse.extraction.canceled.v1",
                        &job.id,
                        serde_json::json!({"job_id": job.id, "dataset_id": job.dataset_id}),
                    )]
                })
                .await?;
                self.metrics.jobs.finished(JOB_KIND, "canceled");
                Ok(())
            }
            Err(e) => {
                let code = pulse_common::error::ServiceError::code(&e);
                let retryable = e.is_transient()
                    || !matches!(e, SnapshotError::Source(pulse_datasource::DatasourceError::SchemaChanged(_)));
                let message = pulse_common::error::ServiceError::public_message(&e);
                tracing::warn!(job = %id, error = %e, "extraction failed");
                self.update_job(tenant, id, true, |job, _| {
                    job.status = JobStatus::Failed as i32;
                    job.finished_at = Some(to_proto(now_millis()));
                    job.error = Some(JobError { code: code.as_str().into(), message: message.clone(), step: String::new(), retryable });
                    timeline(job, JobStatus::Failed, message.clone());
                    vec![Write::event(
                        "pulse.extraction.failed.v1",
                        &job.id,
                        serde_json::json!({"job_id": job.id, "dataset_id": job.dataset_id, "code": code.as_str(), "message": message, "retryable": retryable}),
                    )]
                })
                .await?;
                self.metrics.jobs.finished(JOB_KIND, "failed");
                Err(e)
            }
        }
    }

    async fn run_inner(&self, tenant: &str, id: &str) -> Result<(), SnapshotError> {
        let (_, rec) = self.job_record(tenant, id).await?;
        let job = rec.job.clone().unwrap_or_default();
        let open = self.datasources.open(tenant, &job.datasource_id, &job.object, "object").await?;
        let inspected = open.connector.inspect(&open.object).await?;
        let source_schema = project(&inspected.schema.clone().unwrap_or_default(), &job.columns, "columns")?;
        let mut state = rec.state.clone().unwrap_or_default();
        if !state.planned {
            state = self.plan(tenant, &job, &open, &source_schema).await?;
        } else if state.schema.as_ref() != Some(&source_schema) {
            return Err(SnapshotError::Source(pulse_datasource::DatasourceError::SchemaChanged(format!(
                "the columns of {} changed since the job started: {}",
                job.object,
                schema_diff(state.schema.as_ref().unwrap_or(&Default::default()), &source_schema)
            ))));
        }
        // Planning filled in the cursor window and ranges: use the job as stored.
        let job = self.job(tenant, id).await?;
        let ranges: Vec<usize> = (0..state.ranges.len()).filter(|i| !state.ranges[*i].done).collect();
        // One task per range, so ranges use every core.
        let tasks: Vec<_> = ranges
            .into_iter()
            .map(|i| {
                let (this, tenant, job, open, state) =
                    (self.clone(), tenant.to_string(), job.clone(), open.clone(), state.clone());
                tokio::spawn(async move { this.run_range(&tenant, &job, &open, &state, i).await })
            })
            .collect();
        let mut first_error = None;
        for t in tasks {
            let result = t.await.map_err(|e| SnapshotError::Precondition(format!("range task failed: {e}")))?;
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.commit(tenant, id, &open.datasource).await
    }

    /// Fixes the job's schema, cursor window and ranges.
    async fn plan(
        &self,
        tenant: &str,
        job: &pb::ExtractionJob,
        open: &pulse_datasource::domain::OpenObject,
        schema: &pulse_proto::common::v1::Schema,
    ) -> Result<JobState, SnapshotError> {
        let mode = ExtractionMode::try_from(job.mode).unwrap_or(ExtractionMode::Full);
        let dataset = self.dataset(tenant, &job.dataset_id).await?;
        let mut after = None;
        let mut base_version = 0;
        if mode == ExtractionMode::Incremental && dataset.latest_version > 0 {
            let base = self.version(tenant, &job.dataset_id, dataset.latest_version).await?;
            base_version = base.version;
            after = base
                .manifest
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .and_then(|s| s.cursor_range.as_ref())
                .and_then(|c| c.until.clone())
                .filter(|v| v.kind.is_some());
        }
        // The upper bound is fixed now: rows written later go to the next
        // version. A full extraction reads every row and records the bound.
        let (total, until) = if job.cursor_field.is_empty() {
            let size = open.connector.estimate(&open.object, false, None).await?;
            (size.rows, None)
        } else {
            let window = CursorWindow { field: job.cursor_field.clone(), after: after.clone(), until: None };
            let size = open.connector.estimate(&open.object, true, Some(&window)).await?;
            (size.rows, size.cursor_max.filter(|v| v.kind.is_some()))
        };
        let cursor_until = until.clone().or_else(|| after.clone());
        let window = match mode {
            ExtractionMode::Incremental if base_version > 0 => Some(CursorWindow {
                field: job.cursor_field.clone(),
                after: after.clone(),
                until: cursor_until.clone(),
            }),
            _ => None,
        };
        let mut ranges = vec![RangeState { range: None, include_nulls: true, ..Default::default() }];
        if job.parallelism > 1 && !job.partition_column.is_empty() {
            let bounds = open
                .connector
                .column_bounds(&open.object, &job.partition_column, job.parallelism, window.as_ref())
                .await?;
            let plan = plan_from_bounds(bounds);
            ranges = plan
                .ranges
                .into_iter()
                .enumerate()
                .map(|(i, r)| RangeState {
                    range: Some(r),
                    include_nulls: i as u32 == plan.null_range,
                    ..Default::default()
                })
                .collect();
        }
        let rec = self
            .update_job(tenant, &job.id, false, |job, state| {
                state.planned = true;
                state.schema = Some(schema.clone());
                state.ranges = ranges.clone();
                state.base_version = base_version;
                state.rate_since_ms = now_ms();
                job.cursor_range = Some(pb::CursorRange { after: after.clone(), until: cursor_until.clone() });
                job.ranges = ranges
                    .iter()
                    .enumerate()
                    .map(|(i, r)| pb::RangeProgress {
                        index: i as u32,
                        range: r.range.clone(),
                        status: JobStatus::Running as i32,
                        ..Default::default()
                    })
                    .collect();
                if let Some(p) = &mut job.progress {
                    p.total = total;
                    p.phase = format!("extracting {} range(s)", ranges.len());
                }
                Vec::new()
            })
            .await?;
        Ok(rec.state.unwrap_or_default())
    }

    /// Extracts one range, resuming after its last committed chunk.
    async fn run_range(
        &self,
        tenant: &str,
        job: &pb::ExtractionJob,
        open: &pulse_datasource::domain::OpenObject,
        state: &JobState,
        index: usize,
    ) -> Result<(), SnapshotError> {
        let mut attempt = 0;
        loop {
            match self.run_range_once(tenant, job, open, state, index).await {
                Err(e) if e.is_transient() && attempt < MAX_TRANSIENT_RETRIES => {
                    attempt += 1;
                    let backoff = Duration::from_millis(200 * 2u64.pow(attempt));
                    tracing::warn!(job = %job.id, range = index, attempt, error = %e, "transient error; retrying the range from its last chunk");
                    tokio::time::sleep(backoff).await;
                }
                other => return other,
            }
        }
    }

    async fn run_range_once(
        &self,
        tenant: &str,
        job: &pb::ExtractionJob,
        open: &pulse_datasource::domain::OpenObject,
        plan: &JobState,
        index: usize,
    ) -> Result<(), SnapshotError> {
        // The latest committed chunks of this range (a retry may follow others).
        let (_, rec) = self.job_record(tenant, &job.id).await?;
        let state = rec.state.unwrap_or_default();
        let range = state.ranges.get(index).cloned().unwrap_or_default();
        let keyset = !job.primary_key.is_empty();
        let mut committed = range.chunks.len();
        if !keyset && committed > 0 {
            // Without a key there is no resume point inside a range: redo it.
            self.update_job(tenant, &job.id, false, |_, s| {
                s.ranges[index].chunks.clear();
                Vec::new()
            })
            .await?;
            committed = 0;
        }
        let after_key =
            if keyset { range.chunks.last().map(|c| c.last_key.clone()).unwrap_or_default() } else { Vec::new() };
        let mode = ExtractionMode::try_from(job.mode).unwrap_or(ExtractionMode::Full);
        let cursor = match (mode, &job.cursor_range) {
            (ExtractionMode::Incremental, Some(c)) if plan.base_version > 0 => Some(CursorWindow {
                field: job.cursor_field.clone(),
                after: c.after.clone().filter(|v| v.kind.is_some()),
                until: c.until.clone().filter(|v| v.kind.is_some()),
            }),
            _ => None,
        };
        let chunk_rows = plan.chunk_rows.max(1) as usize;
        let spec = ReadSpec {
            columns: job.columns.clone(),
            cursor,
            range: range.range.as_ref().map(|r| RangeFilter {
                column: job.partition_column.clone(),
                lower: r.lower.clone().filter(|v| v.kind.is_some()),
                upper: r.upper.clone().filter(|v| v.kind.is_some()),
                include_nulls: range.include_nulls,
            }),
            order_by: job.primary_key.clone(),
            after_key,
            batch_rows: chunk_rows.min(65_536),
            limit: None,
            statement_timeout: open.statement_timeout,
        };
        let schema = arrow_schema(plan.schema.as_ref().unwrap_or(&Default::default()));
        let mut stream = open.connector.stream(&open.object, spec).await?;
        let mut chunker = Chunker::new(schema.clone(), chunk_rows);
        let objects = self.tenant_objects(tenant)?;
        let mut chunk_index = committed;
        // Statistics on the way, when this attempt reads the whole range.
        let mut stats = (committed == 0).then(|| StatsAccumulator::new(&schema));
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.schema().fields() != schema.fields() {
                return Err(SnapshotError::Source(pulse_datasource::DatasourceError::SchemaChanged(format!(
                    "{} now answers columns {:?}",
                    job.object,
                    batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| format!("{}:{}", f.name(), f.data_type()))
                        .collect::<Vec<_>>()
                ))));
            }
            // Encoding is CPU work: let the runtime move other tasks away.
            let done = cpu(|| {
                if let Some(acc) = &mut stats {
                    acc.add(&batch);
                }
                chunker.push(batch)
            })?;
            for (bytes, rows, last) in done {
                self.commit_chunk(tenant, job, &objects, index, chunk_index, bytes, rows, &last).await?;
                chunk_index += 1;
            }
        }
        if let Some((bytes, rows, last)) = cpu(|| chunker.finish())? {
            self.commit_chunk(tenant, job, &objects, index, chunk_index, bytes, rows, &last).await?;
        }
        if let Some(acc) = stats {
            self.range_stats.0.lock().unwrap_or_else(|p| p.into_inner()).insert((job.id.clone(), index), acc);
        }
        self.update_job(tenant, &job.id, false, |job, s| {
            s.ranges[index].done = true;
            if let Some(r) = job.ranges.get_mut(index) {
                r.status = JobStatus::Succeeded as i32;
            }
            Vec::new()
        })
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_chunk(
        &self,
        tenant: &str,
        job: &pb::ExtractionJob,
        objects: &pulse_common::objects::TenantObjects,
        range: usize,
        index: usize,
        bytes: bytes::Bytes,
        rows: usize,
        last: &arrow::record_batch::RecordBatch,
    ) -> Result<(), SnapshotError> {
        let key = format!("datasets/{}/{}/r{range:02}-{index:06}.parquet", job.dataset_id, job.id);
        let sha256 = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        let mut attempt = 0;
        loop {
            match objects.put(&key, bytes.clone()).await {
                Ok(_) => break,
                Err(e) if e.code() == pulse_common::ErrorCode::Unavailable && attempt < MAX_TRANSIENT_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let last_key: Vec<_> =
            job.primary_key.iter().filter_map(|k| last.column_by_name(k).map(|a| value_at(a.as_ref(), 0))).collect();
        let chunk = ChunkState { key, rows: rows as u64, bytes: size, sha256, last_key };
        self.update_job(tenant, &job.id, false, |job, state| {
            state.ranges[range].chunks.push(chunk.clone());
            job.chunks_committed = state.ranges.iter().map(|r| r.chunks.len() as u32).sum();
            if let Some(r) = job.ranges.get_mut(range) {
                r.rows += rows as u64;
                r.chunks_committed += 1;
            }
            if let Some(p) = &mut job.progress {
                p.done += rows as u64;
                p.bytes_done += size;
                let elapsed = (now_ms() - state.rate_since_ms).max(1) as f64 / 1000.0;
                p.rate = (p.done - state.rate_since_rows.min(p.done)) as f64 / elapsed;
                p.phase = format!("{} chunk(s) committed", job.chunks_committed);
            }
            Vec::new()
        })
        .await?;
        self.metrics.chunk(&job.dataset_id, rows, size);
        Ok(())
    }

    /// Commits the version: manifest, statistics (over the rows as read
    /// back), dataset pointers, job result, events, all at once.
    async fn commit(
        &self,
        tenant: &str,
        id: &str,
        datasource: &pulse_proto::datasource::v1::Datasource,
    ) -> Result<(), SnapshotError> {
        let (_, rec) = self.job_record(tenant, id).await?;
        let job = rec.job.clone().unwrap_or_default();
        let state = rec.state.clone().unwrap_or_default();
        let objects = self.tenant_objects(tenant)?;
        let base_chunks = if state.base_version > 0 {
            self.version(tenant, &job.dataset_id, state.base_version).await?.manifest.unwrap_or_default().chunks
        } else {
            Vec::new()
        };
        let started = Instant::now();
        loop {
            let (ds_record, mut d) = self
                .dataset_record(tenant, &job.dataset_id)
                .await?
                .ok_or_else(|| SnapshotError::NotFound(format!("dataset '{}'", job.dataset_id)))?;
            let mut ds = d.dataset.clone().unwrap_or_default();
            let version = ds.latest_version + 1;
            let mut chunks = base_chunks.clone();
            for r in &state.ranges {
                for c in &r.chunks {
                    chunks.push(pb::Chunk {
                        index: 0,
                        key: c.key.clone(),
                        rows: c.rows,
                        bytes: c.bytes,
                        sha256: c.sha256.clone(),
                        written_by_version: version,
                    });
                }
            }
            for (i, c) in chunks.iter_mut().enumerate() {
                c.index = i as u32;
            }
            let schema = state.schema.clone().unwrap_or_default();
            let source = pb::VersionSource {
                datasource_id: datasource.id.clone(),
                datasource_name: datasource.name.clone(),
                connector: datasource.connector,
                object: job.object.clone(),
                mode: job.mode,
                cursor_field: job.cursor_field.clone(),
                cursor_range: job.cursor_range.clone(),
                primary_key: job.primary_key.clone(),
                extraction_job_id: job.id.clone(),
                base_version: state.base_version,
            };
            let digest = manifest_digest(&schema, &source, &chunks);
            let mut manifest = pb::Manifest {
                format_version: 1,
                r#ref: Some(DatasetVersionRef { dataset_id: job.dataset_id.clone(), version }),
                source: Some(source),
                schema: Some(schema.clone()),
                row_count: 0,
                chunks,
                sha256: digest.clone(),
                statistics: Vec::new(),
                committed_at: None,
            };
            let (acc, rows) = match self.streamed_stats(&job.id, &state) {
                Some(acc) => (acc, manifest.chunks.iter().map(|c| c.rows).sum()),
                None => {
                    // Resumed, or merged onto a base version: statistics and
                    // the row count over the rows as read back.
                    let mut acc = StatsAccumulator::new(&arrow_schema(&schema));
                    let mut rows = 0u64;
                    let reader = read_version(objects.clone(), manifest.clone(), Vec::new(), Vec::new(), None);
                    futures::pin_mut!(reader);
                    while let Some(item) = reader.next().await {
                        let (_, batch) = item?;
                        rows += batch.num_rows() as u64;
                        cpu(|| acc.add(&batch));
                    }
                    (acc, rows)
                }
            };
            manifest.row_count = rows;
            manifest.statistics = acc.finish();
            let now = to_proto(now_millis());
            manifest.committed_at = Some(now);
            let bytes: u64 = manifest.chunks.iter().map(|c| c.bytes).sum();
            let v = pb::DatasetVersion {
                dataset_id: job.dataset_id.clone(),
                version,
                state: DatasetVersionState::Available as i32,
                rows,
                bytes,
                sha256: digest.clone(),
                current: false,
                holds: Vec::new(),
                manifest: Some(manifest.clone()),
                committed_at: Some(now),
                expired_at: None,
            };
            if !ds.current_pinned {
                if ds.current_version != 0 {
                    d.history.push(ds.current_version);
                }
                ds.current_version = version;
            }
            ds.latest_version = version;
            ds.available_versions += 1;
            ds.schema = Some(schema);
            if !job.cursor_field.is_empty() {
                ds.cursor_field = job.cursor_field.clone();
            }
            ds.primary_key = job.primary_key.clone();
            ds.updated_at = Some(now);
            d.dataset = Some(ds);
            let mut done_job = job.clone();
            done_job.status = JobStatus::Succeeded as i32;
            done_job.result = Some(DatasetVersionRef { dataset_id: job.dataset_id.clone(), version });
            done_job.finished_at = Some(now);
            if let Some(p) = &mut done_job.progress {
                p.phase = format!("committed version {version}");
            }
            timeline(
                &mut done_job,
                JobStatus::Succeeded,
                format!("committed {}@{version} ({rows} rows)", job.dataset_id),
            );
            let (job_record, mut jr) = self.job_record(tenant, id).await?;
            if jr.state.as_ref().is_none_or(|s| s.lease_worker != self.worker_id) {
                return Err(SnapshotError::LeaseLost);
            }
            if job_status(jr.job.as_ref().unwrap_or(&job)) == JobStatus::Canceling {
                return Err(SnapshotError::Canceled);
            }
            jr.job = Some(done_job);
            let payload = serde_json::json!({
                "dataset_id": job.dataset_id, "version": version, "rows": rows, "sha256": digest,
                "job_id": job.id, "datasource_id": datasource.id,
            });
            let writes = vec![
                Write::update(&job_record, status_name(JobStatus::Succeeded), &jr).leased_until(0),
                Write::update(&ds_record, "", &d),
                Write::insert(VERSION, &version_id(&job.dataset_id, version), &job.dataset_id, "available", &v),
                Write::event("pulse.extraction.completed.v1", &job.id, payload.clone()),
                Write::event("pulse.snapshot.created.v1", &format!("{}@{version}", job.dataset_id), payload),
            ];
            if !self.records.apply(tenant, writes).await? {
                // Another job committed a version of this dataset meanwhile
                // (or the job record moved): take the next number.
                continue;
            }
            self.metrics.jobs.finished(JOB_KIND, "succeeded");
            tracing::info!(tenant, job = %id, dataset = %job.dataset_id, version, rows, commit_ms = started.elapsed().as_millis() as u64, "committed dataset version");
            // The manifest next to the chunks, for readers that go to storage
            // directly. The database record is authoritative.
            let manifest_json = manifest_json(&manifest);
            if let Err(e) = objects
                .put(&format!("datasets/{}/v{version}/manifest.json", job.dataset_id), manifest_json.into())
                .await
            {
                tracing::warn!(error = %e, "could not write manifest.json");
            }
            self.record_lineage(tenant, &job, datasource, version, &digest, rows).await;
            if let Err(e) = self.apply_retention(tenant, &job.dataset_id).await {
                tracing::warn!(error = %e, "retention sweep failed");
            }
            let _ = DATASET;
            return Ok(());
        }
    }

    /// The statistics gathered while every range of a full extraction was
    /// read by this process, merged in range order; `None` otherwise.
    fn streamed_stats(&self, job_id: &str, state: &JobState) -> Option<StatsAccumulator> {
        let mut map = self.range_stats.0.lock().unwrap_or_else(|p| p.into_inner());
        let complete =
            state.base_version == 0 && (0..state.ranges.len()).all(|i| map.contains_key(&(job_id.to_string(), i)));
        let parts: Vec<_> = (0..state.ranges.len()).filter_map(|i| map.remove(&(job_id.to_string(), i))).collect();
        if !complete {
            return None;
        }
        let mut parts = parts.into_iter();
        let mut acc = parts.next()?;
        for p in parts {
            acc.merge(p);
        }
        Some(acc)
    }

    async fn record_lineage(
        &self,
        tenant: &str,
        job: &pb::ExtractionJob,
        datasource: &pulse_proto::datasource::v1::Datasource,
        version: u64,
        sha256: &str,
        rows: u64,
    ) {
        let Some(lineage) = &self.lineage else { return };
        let connector = ConnectorKind::try_from(datasource.connector).unwrap_or(ConnectorKind::Unspecified);
        let attrs = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let dv = format!("{}@{version}", job.dataset_id);
        let nodes = vec![
            NodeWrite {
                id: datasource.id.clone(),
                kind: NodeKind::Datasource,
                attributes: attrs(&[
                    ("name", datasource.name.clone()),
                    ("connector", connector.as_str_name().trim_start_matches("CONNECTOR_KIND_").to_lowercase()),
                ]),
            },
            NodeWrite {
                id: job.id.clone(),
                kind: NodeKind::Extraction,
                attributes: attrs(&[("object", job.object.clone()), ("mode", mode_name(job.mode))]),
            },
            NodeWrite {
                id: dv.clone(),
                kind: NodeKind::DatasetVersion,
                attributes: attrs(&[
                    ("dataset", job.dataset_id.clone()),
                    ("version", version.to_string()),
                    ("rows", rows.to_string()),
                    ("sha256", sha256.to_string()),
                ]),
            },
        ];
        let edges = vec![
            EdgeWrite { from_id: datasource.id.clone(), to_id: job.id.clone(), relation: "extracted_by".into() },
            EdgeWrite { from_id: job.id.clone(), to_id: dv, relation: "produced".into() },
        ];
        if let Err(e) = lineage.record(tenant, nodes, edges).await {
            tracing::warn!(job = %job.id, error = %e, "could not record lineage");
        }
    }
}

fn mode_name(mode: i32) -> String {
    match ExtractionMode::try_from(mode).unwrap_or(ExtractionMode::Full) {
        ExtractionMode::Incremental => "incremental".into(),
        _ => "full".into(),
    }
}

/// The version's SHA-256: over the canonical encoding of the schema, source
/// object, cursor range, primary key and chunk digests in order — nothing
/// that differs between an interrupted and an uninterrupted run.
pub fn manifest_digest(
    schema: &pulse_proto::common::v1::Schema,
    source: &pb::VersionSource,
    chunks: &[pb::Chunk],
) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Digest {
        #[prost(message, optional, tag = "1")]
        schema: Option<pulse_proto::common::v1::Schema>,
        #[prost(string, tag = "2")]
        object: String,
        #[prost(message, optional, tag = "3")]
        cursor_range: Option<pb::CursorRange>,
        #[prost(string, repeated, tag = "4")]
        primary_key: Vec<String>,
        #[prost(string, repeated, tag = "5")]
        chunks: Vec<String>,
        #[prost(string, tag = "6")]
        datasource_id: String,
    }
    let d = Digest {
        schema: Some(schema.clone()),
        object: source.object.clone(),
        cursor_range: source.cursor_range.clone(),
        primary_key: source.primary_key.clone(),
        chunks: chunks.iter().map(|c| c.sha256.clone()).collect(),
        datasource_id: source.datasource_id.clone(),
    };
    sha256_hex(&prost::Message::encode_to_vec(&d))
}

fn manifest_json(m: &pb::Manifest) -> Vec<u8> {
    let chunks: Vec<serde_json::Value> = m
        .chunks
        .iter()
        .map(|c| serde_json::json!({"index": c.index, "key": c.key, "rows": c.rows, "bytes": c.bytes, "sha256": c.sha256, "written_by_version": c.written_by_version}))
        .collect();
    let r = m.r#ref.clone().unwrap_or_default();
    let src = m.source.clone().unwrap_or_default();
    let v = serde_json::json!({
        "format_version": m.format_version,
        "dataset_id": r.dataset_id,
        "version": r.version,
        "sha256": m.sha256,
        "row_count": m.row_count,
        "source": {"datasource_id": src.datasource_id, "object": src.object, "primary_key": src.primary_key, "cursor_field": src.cursor_field, "base_version": src.base_version},
        "columns": m.schema.clone().unwrap_or_default().columns.iter().map(|c| serde_json::json!({"name": c.name, "source_type": c.source_type, "nullable": c.nullable})).collect::<Vec<_>>(),
        "chunks": chunks,
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

fn schema_diff(old: &pulse_proto::common::v1::Schema, new: &pulse_proto::common::v1::Schema) -> String {
    let describe = |s: &pulse_proto::common::v1::Schema| {
        s.columns.iter().map(|c| format!("{} {}", c.name, c.source_type)).collect::<Vec<_>>()
    };
    let (o, n) = (describe(old), describe(new));
    let removed: Vec<_> = o.iter().filter(|c| !n.contains(c)).cloned().collect();
    let added: Vec<_> = n.iter().filter(|c| !o.contains(c)).cloned().collect();
    format!("removed or changed [{}], added [{}]", removed.join(", "), added.join(", "))
}
