//! Workers and checkpoints for training loops that run outside Pulse (a
//! PyTorch notebook, a cluster job): register, heartbeat (silent workers are
//! marked lost), deregister; checkpoints saved as a stream of parts — each
//! part its own object, so a multi-GB checkpoint is never held in memory —
//! made visible only once complete and verified, and read back part by part,
//! each checked against its SHA-256.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use pulse_common::ids::new_id;
use pulse_common::paging::{next_token, page_size};
use pulse_common::records::{ListQuery, Write};
use pulse_common::time::{now_millis, to_proto};
use pulse_proto::common::v1::PageResponse;
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::{WorkerKind, WorkerState};
use sha2::{Digest, Sha256};

use crate::domain::{CHECKPOINT, JOB, Trainer};
use crate::error::TrainerError;
use crate::worker::CheckpointRecord;

pub(crate) const WORKER: &str = "worker";
/// Bytes per stored part: the most a save holds in memory at once.
pub const PART_BYTES: usize = 8 << 20;
/// Bytes per message when loading.
const CHUNK_BYTES: usize = 1 << 20;
/// Largest data message a save accepts.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Records `key_<sha256 of an idempotency key>` → the checkpoint its first
/// save made.
const CHECKPOINT_KEY: &str = "checkpoint_key";

/// The trainer's domain metrics.
#[derive(Debug, Clone)]
pub struct TrainerMetrics {
    pub checkpoints_saved: IntCounter,
    pub checkpoint_bytes: IntCounter,
    pub checkpoint_save_seconds: Histogram,
    pub active_workers: IntGauge,
    pub jobs: pulse_common::metrics::JobMetrics,
    /// `pulse_training_epochs_total{model}`
    pub epochs: prometheus::IntCounterVec,
    /// `pulse_training_loss{model, split}`: the last epoch's loss.
    pub loss: prometheus::GaugeVec,
}

pub(crate) const JOB_KIND: &str = "training";

impl TrainerMetrics {
    pub fn new(metrics: &pulse_common::metrics::Metrics) -> Self {
        let registry = &metrics.registry;
        metrics.jobs.declare(JOB_KIND);
        let m = Self {
            jobs: metrics.jobs.clone(),
            epochs: prometheus::IntCounterVec::new(
                prometheus::Opts::new("pulse_training_epochs_total", "Training epochs finished, by model"),
                &["model"],
            )
            .unwrap(),
            loss: prometheus::GaugeVec::new(
                prometheus::Opts::new("pulse_training_loss", "Loss at the end of the last epoch, by model and split"),
                &["model", "split"],
            )
            .unwrap(),
            checkpoints_saved: IntCounter::new("pulse_checkpoints_saved_total", "Checkpoints saved and verified")
                .unwrap(),
            checkpoint_bytes: IntCounter::new("pulse_checkpoint_bytes_total", "Bytes of checkpoints saved").unwrap(),
            checkpoint_save_seconds: Histogram::with_opts(
                HistogramOpts::new("pulse_checkpoint_save_seconds", "Time to save a checkpoint, first byte to commit")
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0]),
            )
            .unwrap(),
            active_workers: IntGauge::new("pulse_training_workers_active", "Registered workers heartbeating in time")
                .unwrap(),
        };
        // A second registration (tests opening the service twice) keeps the first.
        let _ = registry.register(Box::new(m.checkpoints_saved.clone()));
        let _ = registry.register(Box::new(m.checkpoint_bytes.clone()));
        let _ = registry.register(Box::new(m.checkpoint_save_seconds.clone()));
        let _ = registry.register(Box::new(m.active_workers.clone()));
        let _ = registry.register(Box::new(m.epochs.clone()));
        let _ = registry.register(Box::new(m.loss.clone()));
        m
    }
}

fn check_worker_id(id: &str) -> Result<(), TrainerError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok { Ok(()) } else { Err(TrainerError::invalid("worker_id", "is 1 to 128 characters of A-Z a-z 0-9 _ . : -")) }
}

fn timeout_of(w: &pb::Worker) -> Duration {
    w.heartbeat_timeout.and_then(|d| Duration::try_from(d).ok()).unwrap_or(Duration::from_secs(30))
}

fn overdue(w: &pb::Worker) -> bool {
    let last = w.last_heartbeat_at.as_ref().and_then(pulse_common::time::from_proto);
    let limit = chrono::Duration::from_std(timeout_of(w)).unwrap_or_default();
    last.is_none_or(|t| t + limit < chrono::Utc::now())
}

impl Trainer {
    pub async fn register_worker(
        &self,
        tenant: &str,
        r: &pb::RegisterWorkerRequest,
    ) -> Result<pb::Worker, TrainerError> {
        check_worker_id(&r.worker_id)?;
        let timeout = match r.heartbeat_timeout.map(Duration::try_from) {
            None => Duration::from_secs(30),
            Some(Ok(d)) if (Duration::from_secs(5)..=Duration::from_secs(600)).contains(&d) => d,
            Some(_) => return Err(TrainerError::invalid("heartbeat_timeout", "is 5 s to 10 min")),
        };
        let kind = match WorkerKind::try_from(r.kind).unwrap_or(WorkerKind::Unspecified) {
            WorkerKind::Unspecified => WorkerKind::External,
            k => k,
        };
        loop {
            let now = to_proto(now_millis());
            let existing = self.records.get(tenant, WORKER, &r.worker_id).await?;
            let mut w = match &existing {
                Some(rec) => rec.decode::<pb::Worker>()?,
                None => pb::Worker { id: r.worker_id.clone(), registered_at: Some(now), ..Default::default() },
            };
            w.kind = kind as i32;
            w.state = WorkerState::Active as i32;
            w.metadata = r.metadata.clone();
            w.heartbeat_timeout = prost_types::Duration::try_from(timeout).ok();
            w.last_heartbeat_at = Some(now);
            let state = WorkerState::Active.as_str_name();
            let write = match &existing {
                Some(rec) => Write::update(rec, state, &w),
                None => Write::insert(WORKER, &w.id, "", state, &w),
            };
            if self.records.apply(tenant, vec![write]).await? {
                self.refresh_active_gauge().await;
                return Ok(w);
            }
        }
    }

    async fn worker_record(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(pulse_common::records::Record, pb::Worker), TrainerError> {
        check_worker_id(id)?;
        let rec = self
            .records
            .get(tenant, WORKER, id)
            .await?
            .ok_or_else(|| TrainerError::NotFound(format!("worker '{id}' (register it with RegisterWorker)")))?;
        let w = rec.decode()?;
        Ok((rec, w))
    }

    pub async fn heartbeat(
        &self,
        tenant: &str,
        r: &pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse, TrainerError> {
        loop {
            let (rec, mut w) = self.worker_record(tenant, &r.worker_id).await?;
            let state = WorkerState::try_from(w.state).unwrap_or(WorkerState::Unspecified);
            if state == WorkerState::Active && overdue(&w) {
                self.mark_lost(tenant, &rec, w.clone()).await?;
                continue;
            }
            if state != WorkerState::Active {
                return Err(TrainerError::Precondition(format!(
                    "worker '{}' is {}; register it again to continue",
                    w.id,
                    state.as_str_name().trim_start_matches("WORKER_STATE_").to_lowercase()
                )));
            }
            w.metadata.extend(r.metadata.clone());
            w.last_heartbeat_at = Some(to_proto(now_millis()));
            if self.records.apply(tenant, vec![Write::update(&rec, WorkerState::Active.as_str_name(), &w)]).await? {
                return Ok(pb::HeartbeatResponse {
                    next_heartbeat_within: w.heartbeat_timeout,
                    worker: Some(w),
                    cancel_requested: false,
                });
            }
        }
    }

    async fn mark_lost(
        &self,
        tenant: &str,
        rec: &pulse_common::records::Record,
        mut w: pb::Worker,
    ) -> Result<(), TrainerError> {
        w.state = WorkerState::Lost as i32;
        let writes = vec![
            Write::update(rec, WorkerState::Lost.as_str_name(), &w),
            Write::event("pulse.worker.lost.v1", &w.id, serde_json::json!({"worker_id": w.id})),
        ];
        self.records.apply(tenant, writes).await?;
        self.refresh_active_gauge().await;
        Ok(())
    }

    /// Marks every overdue active worker lost (run periodically).
    pub async fn sweep_workers(&self) -> Result<usize, TrainerError> {
        let mut lost = 0;
        for rec in self.records.by_status(WORKER, &[WorkerState::Active.as_str_name()], 500).await? {
            let w: pb::Worker = rec.decode()?;
            if overdue(&w) {
                self.mark_lost(&rec.tenant, &rec, w).await?;
                lost += 1;
            }
        }
        Ok(lost)
    }

    async fn refresh_active_gauge(&self) {
        if let Ok(active) = self.records.by_status(WORKER, &[WorkerState::Active.as_str_name()], 10_000).await {
            self.metrics.active_workers.set(active.len() as i64);
        }
    }

    pub async fn deregister_worker(&self, tenant: &str, id: &str) -> Result<pb::Worker, TrainerError> {
        loop {
            let (rec, mut w) = self.worker_record(tenant, id).await?;
            w.state = WorkerState::Deregistered as i32;
            if self
                .records
                .apply(tenant, vec![Write::update(&rec, WorkerState::Deregistered.as_str_name(), &w)])
                .await?
            {
                self.refresh_active_gauge().await;
                return Ok(w);
            }
        }
    }

    pub async fn list_workers(
        &self,
        tenant: &str,
        r: &pb::ListWorkersRequest,
    ) -> Result<pb::ListWorkersResponse, TrainerError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let state = WorkerState::try_from(r.state).unwrap_or(WorkerState::Unspecified);
        let q = ListQuery {
            status: (state != WorkerState::Unspecified).then(|| state.as_str_name()),
            after: &page.page_token,
            limit,
            ..Default::default()
        };
        let mut workers = Vec::new();
        for rec in self.records.list(tenant, WORKER, q).await? {
            let mut w: pb::Worker = rec.decode()?;
            // Shown as they are now, even before the sweeper runs.
            if w.state == WorkerState::Active as i32 && overdue(&w) {
                w.state = WorkerState::Lost as i32;
            }
            if r.kind == 0 || r.kind == w.kind {
                workers.push(w);
            }
        }
        let token = next_token(&workers, limit, |w| &w.id);
        Ok(pb::ListWorkersResponse { workers, page: Some(PageResponse { next_page_token: token }) })
    }

    // ------------------------------------------------------------ checkpoints

    /// Saves a streamed checkpoint: the header, then data. Parts are stored as
    /// they fill; the checkpoint becomes visible only after the last one, and
    /// only when the size and SHA-256 (if given) match.
    ///
    /// With an idempotency key, a retry of a save that completed returns the
    /// first checkpoint and stores nothing; the same key with other bytes or
    /// another owner is refused.
    pub async fn save_checkpoint<S>(
        &self,
        tenant: &str,
        idempotency_key: Option<&str>,
        mut input: S,
    ) -> Result<pb::Checkpoint, TrainerError>
    where
        S: Stream<Item = Result<pb::SaveCheckpointRequest, TrainerError>> + Unpin,
    {
        let started = Instant::now();
        let header = match input.next().await {
            Some(Ok(pb::SaveCheckpointRequest { part: Some(pb::save_checkpoint_request::Part::Header(h)) })) => h,
            Some(Err(e)) => return Err(e),
            _ => return Err(TrainerError::invalid("header", "the first message must be the checkpoint header")),
        };
        let key_id = idempotency_key.map(|k| format!("key_{}", hex::encode(Sha256::digest(k.as_bytes()))));
        if let (Some(key), Some(key_id)) = (idempotency_key, &key_id)
            && let Some(first) = self.records.get(tenant, CHECKPOINT_KEY, key_id).await?
        {
            return replay_checkpoint(key, first.decode()?, &header, input).await;
        }
        let (worker_id, job_id) = match &header.owner {
            Some(pb::checkpoint_header::Owner::WorkerId(w)) => {
                let (_, worker) = self.worker_record(tenant, w).await?;
                if worker.state != WorkerState::Active as i32 || overdue(&worker) {
                    return Err(TrainerError::Precondition(format!(
                        "worker '{w}' is not active; register it again before saving checkpoints"
                    )));
                }
                (w.clone(), String::new())
            }
            Some(pb::checkpoint_header::Owner::TrainingJobId(j)) => {
                self.records
                    .get(tenant, JOB, j)
                    .await?
                    .ok_or_else(|| TrainerError::NotFound(format!("training job '{j}'")))?;
                (String::new(), j.clone())
            }
            None => return Err(TrainerError::invalid("header.owner", "is required: worker_id or training_job_id")),
        };
        if !header.sha256.is_empty() && (header.sha256.len() != 64 || hex::decode(&header.sha256).is_err()) {
            return Err(TrainerError::invalid("header.sha256", "is 64 hexadecimal characters"));
        }
        let owner = if worker_id.is_empty() { job_id.clone() } else { worker_id.clone() };
        let id = new_id("ckpt");
        let objects = self.tenant_objects(tenant)?;
        let mut whole = Sha256::new();
        let mut part = BytesMut::with_capacity(PART_BYTES);
        let mut keys = Vec::new();
        let mut part_sums = Vec::new();
        let mut size = 0u64;
        let flush =
            async |part: &mut BytesMut, keys: &mut Vec<String>, sums: &mut Vec<String>| -> Result<(), TrainerError> {
                let bytes = part.split().freeze();
                let key = format!("checkpoints/{owner}/{id}/part-{:05}", keys.len());
                sums.push(hex::encode(Sha256::digest(&bytes)));
                with_retry(|| objects.put(&key, bytes.clone())).await?;
                keys.push(key);
                Ok(())
            };
        while let Some(msg) = input.next().await {
            let data = match msg?.part {
                Some(pb::save_checkpoint_request::Part::Data(d)) => d,
                Some(pb::save_checkpoint_request::Part::Header(_)) => {
                    return Err(TrainerError::invalid("header", "only the first message is a header"));
                }
                None => continue,
            };
            if data.len() > MAX_MESSAGE_BYTES {
                return Err(TrainerError::invalid(
                    "data",
                    format!("a message holds at most 4 MiB, not {}", data.len()),
                ));
            }
            whole.update(&data);
            size += data.len() as u64;
            let mut rest: &[u8] = &data;
            while !rest.is_empty() {
                let take = (PART_BYTES - part.len()).min(rest.len());
                part.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if part.len() == PART_BYTES {
                    flush(&mut part, &mut keys, &mut part_sums).await?;
                }
            }
        }
        if !part.is_empty() || keys.is_empty() {
            flush(&mut part, &mut keys, &mut part_sums).await?;
        }
        let sha = hex::encode(whole.finalize());
        if let Some(expected) = header.size_bytes
            && expected != size
        {
            return Err(TrainerError::DataLoss(format!(
                "the checkpoint is {size} bytes, the header said {expected}; nothing was kept"
            )));
        }
        if !header.sha256.is_empty() && !header.sha256.eq_ignore_ascii_case(&sha) {
            return Err(TrainerError::DataLoss(format!(
                "the checkpoint's SHA-256 is {sha}, the header said {}; nothing was kept",
                header.sha256
            )));
        }
        let parent = owner.clone();
        let sequence = self
            .records
            .list(
                tenant,
                CHECKPOINT,
                ListQuery { parent: Some(&parent), limit: 1, newest_first: true, ..Default::default() },
            )
            .await?
            .first()
            .map(|r| r.decode::<CheckpointRecord>().map(|c| c.checkpoint.unwrap_or_default().sequence))
            .transpose()?
            .unwrap_or(0)
            + 1;
        let ckpt = pb::Checkpoint {
            id: id.clone(),
            worker_id,
            training_job_id: job_id,
            sequence,
            metadata: header.metadata,
            size_bytes: size,
            sha256: sha,
            parts: keys.len() as u32,
            created_at: Some(to_proto(now_millis())),
        };
        let body = CheckpointRecord { checkpoint: Some(ckpt.clone()), keys, part_sha256: part_sums };
        let mut writes = vec![
            Write::insert(CHECKPOINT, &id, &parent, "", &body),
            Write::event(
                "pulse.checkpoint.saved.v1",
                &id,
                serde_json::json!({"checkpoint_id": id, "owner": parent, "sequence": sequence, "bytes": size}),
            ),
        ];
        if let Some(key_id) = &key_id {
            writes.push(Write::insert(CHECKPOINT_KEY, key_id, &parent, "", &ckpt));
        }
        if !self.records.apply(tenant, writes).await? {
            // A concurrent save with the same key committed first; its
            // answer stands (this save's parts stay unreferenced).
            if let (Some(key), Some(key_id)) = (idempotency_key, &key_id)
                && let Some(first) = self.records.get(tenant, CHECKPOINT_KEY, key_id).await?
            {
                let first: pb::Checkpoint = first.decode()?;
                return same_checkpoint(key, first, &parent, ckpt.size_bytes, &ckpt.sha256);
            }
            return Err(TrainerError::Precondition(format!("checkpoint '{id}' could not be committed; save it again")));
        }
        self.metrics.checkpoints_saved.inc();
        self.metrics.checkpoint_bytes.inc_by(size);
        self.metrics.checkpoint_save_seconds.observe(started.elapsed().as_secs_f64());
        Ok(ckpt)
    }

    async fn checkpoint_record(
        &self,
        tenant: &str,
        r: &pb::LoadCheckpointRequest,
    ) -> Result<CheckpointRecord, TrainerError> {
        use pb::load_checkpoint_request::Target;
        let rec = match &r.target {
            Some(Target::CheckpointId(id)) => self.records.get(tenant, CHECKPOINT, id).await?,
            Some(Target::LatestForWorker(o)) | Some(Target::LatestForTrainingJob(o)) => self
                .records
                .list(
                    tenant,
                    CHECKPOINT,
                    ListQuery { parent: Some(o), limit: 1, newest_first: true, ..Default::default() },
                )
                .await?
                .into_iter()
                .next(),
            None => return Err(TrainerError::invalid("target", "is required: checkpoint_id or latest_for_worker/job")),
        };
        let rec = rec.ok_or_else(|| TrainerError::NotFound("checkpoint".into()))?;
        Ok(rec.decode()?)
    }

    pub async fn checkpoint(&self, tenant: &str, id: &str) -> Result<pb::Checkpoint, TrainerError> {
        let r = pb::LoadCheckpointRequest {
            target: Some(pb::load_checkpoint_request::Target::CheckpointId(id.to_string())),
            offset: 0,
        };
        Ok(self.checkpoint_record(tenant, &r).await?.checkpoint.unwrap_or_default())
    }

    /// The checkpoint's description, then its bytes from `offset`, part by
    /// part, each verified before any of it is sent.
    pub async fn load_checkpoint(
        &self,
        tenant: &str,
        r: &pb::LoadCheckpointRequest,
    ) -> Result<impl Stream<Item = Result<pb::CheckpointChunk, TrainerError>> + use<>, TrainerError> {
        let rec = self.checkpoint_record(tenant, r).await?;
        let ckpt = rec.checkpoint.clone().unwrap_or_default();
        if r.offset > ckpt.size_bytes {
            return Err(TrainerError::invalid(
                "offset",
                format!("{} is past the end of the checkpoint ({} bytes)", r.offset, ckpt.size_bytes),
            ));
        }
        let objects = self.tenant_objects(tenant)?;
        let offset = r.offset;
        Ok(async_stream::try_stream! {
            yield pb::CheckpointChunk { checkpoint: Some(ckpt.clone()), offset, data: Vec::new() };
            let mut at = 0u64;
            for (i, key) in rec.keys.iter().enumerate() {
                let bytes: Bytes = with_retry(|| objects.get(key)).await?;
                let end = at + bytes.len() as u64;
                if end <= offset {
                    at = end;
                    continue;
                }
                if let Some(expected) = rec.part_sha256.get(i)
                    && &hex::encode(Sha256::digest(&bytes)) != expected
                {
                    Err(TrainerError::DataLoss(format!("part {i} of checkpoint {} failed its SHA-256 check", ckpt.id)))?;
                }
                let skip = offset.saturating_sub(at) as usize;
                for chunk in bytes[skip..].chunks(CHUNK_BYTES) {
                    yield pb::CheckpointChunk { checkpoint: None, offset: at + skip as u64, data: chunk.to_vec() };
                    at += chunk.len() as u64;
                }
                at = end;
            }
        })
    }

    pub async fn list_checkpoints(
        &self,
        tenant: &str,
        r: &pb::ListCheckpointsRequest,
    ) -> Result<pb::ListCheckpointsResponse, TrainerError> {
        let page = r.page.clone().unwrap_or_default();
        let limit = page_size(page.page_size);
        let parent = if !r.worker_id.is_empty() {
            Some(r.worker_id.as_str())
        } else if !r.training_job_id.is_empty() {
            Some(r.training_job_id.as_str())
        } else {
            None
        };
        let q = ListQuery { parent, after: &page.page_token, limit, newest_first: true, ..Default::default() };
        let records = self.records.list(tenant, CHECKPOINT, q).await?;
        let checkpoints: Vec<pb::Checkpoint> = records
            .iter()
            .map(|r| r.decode::<CheckpointRecord>().map(|c| c.checkpoint.unwrap_or_default()))
            .collect::<Result<_, _>>()?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let token = next_token(&ids, limit, |s| s);
        Ok(pb::ListCheckpointsResponse { checkpoints, page: Some(PageResponse { next_page_token: token }) })
    }
}

/// An object-store call retried with backoff while the store is unavailable.
async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, TrainerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, pulse_common::objects::ObjectError>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.code() == pulse_common::error::ErrorCode::Unavailable && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A retried save: the answer is the first checkpoint if the retry carries
/// the same bytes for the same owner. With the header's SHA-256 that is known
/// at once; without it the stream is read (and hashed, not stored).
async fn replay_checkpoint<S>(
    key: &str,
    first: pb::Checkpoint,
    header: &pb::CheckpointHeader,
    mut input: S,
) -> Result<pb::Checkpoint, TrainerError>
where
    S: Stream<Item = Result<pb::SaveCheckpointRequest, TrainerError>> + Unpin,
{
    let owner = match &header.owner {
        Some(pb::checkpoint_header::Owner::WorkerId(w)) => w.clone(),
        Some(pb::checkpoint_header::Owner::TrainingJobId(j)) => j.clone(),
        None => return Err(TrainerError::invalid("header.owner", "is required: worker_id or training_job_id")),
    };
    if !header.sha256.is_empty() {
        let size = header.size_bytes.unwrap_or(first.size_bytes);
        return same_checkpoint(key, first, &owner, size, &header.sha256.to_ascii_lowercase());
    }
    let mut whole = Sha256::new();
    let mut size = 0u64;
    while let Some(msg) = input.next().await {
        if let Some(pb::save_checkpoint_request::Part::Data(d)) = msg?.part {
            whole.update(&d);
            size += d.len() as u64;
        }
    }
    same_checkpoint(key, first, &owner, size, &hex::encode(whole.finalize()))
}

fn same_checkpoint(
    key: &str,
    first: pb::Checkpoint,
    owner: &str,
    size: u64,
    sha: &str,
) -> Result<pb::Checkpoint, TrainerError> {
    let first_owner = if first.worker_id.is_empty() { &first.training_job_id } else { &first.worker_id };
    if first_owner == owner && first.size_bytes == size && first.sha256 == sha {
        return Ok(first);
    }
    Err(TrainerError::Precondition(format!(
        "idempotency-key '{key}' was already used for a different checkpoint ('{}' of '{first_owner}', {} bytes, \
         SHA-256 {}); send a new key for a new checkpoint",
        first.id, first.size_bytes, first.sha256
    )))
}
