//! The gRPC adapter: request → domain call → response or Status.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use pulse_common::grpc::{status, tenant};
use pulse_proto::common::v1::{DatasetVersionRef, PageResponse};
use pulse_proto::snapshot::v1 as pb;
use pulse_proto::snapshot::v1::snapshot_service_server::SnapshotService;
use pulse_proto::tonic::{Request, Response, Status};

use crate::domain::{Snapshots, is_final, job_status};
use crate::error::SnapshotError;
use crate::read::read_version;

#[derive(Debug, Clone)]
pub struct SnapshotGrpc {
    snapshots: Snapshots,
}

impl SnapshotGrpc {
    pub fn new(snapshots: Snapshots) -> Self {
        Self { snapshots }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[pulse_proto::tonic::async_trait]
impl SnapshotService for SnapshotGrpc {
    async fn start_extraction(
        &self,
        req: Request<pb::StartExtractionRequest>,
    ) -> Result<Response<pb::ExtractionJob>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.snapshots.start(&tenant, req.into_inner()).await.map_err(status)?))
    }

    async fn get_extraction_job(
        &self,
        req: Request<pb::GetExtractionJobRequest>,
    ) -> Result<Response<pb::ExtractionJob>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.snapshots.job(&tenant, &req.get_ref().job_id).await.map_err(status)?))
    }

    type WatchExtractionJobStream = BoxStream<pb::ExtractionJob>;

    async fn watch_extraction_job(
        &self,
        req: Request<pb::WatchExtractionJobRequest>,
    ) -> Result<Response<Self::WatchExtractionJobStream>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let interval = r
            .min_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500))
            .max(Duration::from_millis(50));
        let first = self.snapshots.job(&tenant, &r.job_id).await.map_err(status)?;
        let snapshots = self.snapshots.clone();
        let stream = async_stream::try_stream! {
            let mut last = first.clone();
            yield first;
            while !is_final(job_status(&last)) {
                tokio::time::sleep(interval).await;
                let job = snapshots.job(&tenant, &r.job_id).await.map_err(status)?;
                if job != last {
                    last = job.clone();
                    yield job;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_extraction_job(
        &self,
        req: Request<pb::CancelExtractionJobRequest>,
    ) -> Result<Response<pb::ExtractionJob>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(self.snapshots.cancel(&tenant, &r.job_id, &r.reason).await.map_err(status)?))
    }

    async fn resume_extraction_job(
        &self,
        req: Request<pb::ResumeExtractionJobRequest>,
    ) -> Result<Response<pb::ExtractionJob>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.snapshots.resume(&tenant, &req.get_ref().job_id).await.map_err(status)?))
    }

    async fn list_extraction_jobs(
        &self,
        req: Request<pb::ListExtractionJobsRequest>,
    ) -> Result<Response<pb::ListExtractionJobsResponse>, Status> {
        let tenant = tenant(&req)?;
        let (jobs, next) = self.snapshots.list_jobs(&tenant, req.into_inner()).await.map_err(status)?;
        Ok(Response::new(pb::ListExtractionJobsResponse { jobs, page: Some(PageResponse { next_page_token: next }) }))
    }

    async fn list_datasets(
        &self,
        req: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let (datasets, next) = self.snapshots.list_datasets(&tenant, &r.datasource_id, r.page).await.map_err(status)?;
        Ok(Response::new(pb::ListDatasetsResponse { datasets, page: Some(PageResponse { next_page_token: next }) }))
    }

    async fn get_dataset(&self, req: Request<pb::GetDatasetRequest>) -> Result<Response<pb::Dataset>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.snapshots.dataset(&tenant, &req.get_ref().dataset_id).await.map_err(status)?))
    }

    async fn list_dataset_versions(
        &self,
        req: Request<pb::ListDatasetVersionsRequest>,
    ) -> Result<Response<pb::ListDatasetVersionsResponse>, Status> {
        let tenant = tenant(&req)?;
        let (versions, next) = self.snapshots.list_versions(&tenant, req.into_inner()).await.map_err(status)?;
        Ok(Response::new(pb::ListDatasetVersionsResponse {
            versions,
            page: Some(PageResponse { next_page_token: next }),
        }))
    }

    async fn get_dataset_version(
        &self,
        req: Request<pb::GetDatasetVersionRequest>,
    ) -> Result<Response<pb::DatasetVersion>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(self.snapshots.version(&tenant, &r.dataset_id, r.version).await.map_err(status)?))
    }

    type ReadDatasetVersionStream = BoxStream<pb::ReadChunk>;

    async fn read_dataset_version(
        &self,
        req: Request<pb::ReadDatasetVersionRequest>,
    ) -> Result<Response<Self::ReadDatasetVersionStream>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let version = self.snapshots.readable(&tenant, &r.dataset_id, r.version).await.map_err(status)?;
        let manifest = version.manifest.clone().unwrap_or_default();
        let schema = manifest.schema.clone().unwrap_or_default();
        let projected = pulse_datasource::connector::project(&schema, &r.columns, "columns")
            .map_err(SnapshotError::from)
            .map_err(status)?;
        for (i, c) in r.chunks.iter().enumerate() {
            if *c as usize >= manifest.chunks.len() {
                return Err(status(SnapshotError::invalid(
                    format!("chunks[{i}]"),
                    format!("chunk {c} does not exist; the version has {}", manifest.chunks.len()),
                )));
            }
        }
        let objects = self.snapshots.tenant_objects(&tenant).map_err(status)?;
        let arrow = pulse_datasource::connector::values::arrow_schema(&projected);
        let mut framer = pulse_datasource::ipc::IpcFramer::new(&arrow).map_err(SnapshotError::from).map_err(status)?;
        let rows =
            read_version(objects, manifest, r.columns.clone(), r.chunks.clone(), (r.limit > 0).then_some(r.limit));
        let stream = async_stream::try_stream! {
            yield pb::ReadChunk {
                sequence: 0,
                arrow_ipc: framer.take(),
                rows: 0,
                r#ref: Some(DatasetVersionRef { dataset_id: version.dataset_id.clone(), version: version.version }),
                schema: Some(projected),
                version_sha256: version.sha256.clone(),
                chunk_index: 0,
            };
            futures::pin_mut!(rows);
            let mut sequence = 0;
            while let Some(item) = rows.next().await {
                let (chunk_index, batch) = item.map_err(status)?;
                sequence += 1;
                let bytes = framer.batch(&batch).map_err(SnapshotError::from).map_err(status)?;
                yield pb::ReadChunk {
                    sequence,
                    arrow_ipc: bytes,
                    rows: batch.num_rows() as u64,
                    chunk_index,
                    ..Default::default()
                };
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_read_urls(
        &self,
        _req: Request<pb::GetReadUrlsRequest>,
    ) -> Result<Response<pb::GetReadUrlsResponse>, Status> {
        Err(Status::unimplemented(
            "presigned reads are not available in this version; read versions with ReadDatasetVersion (the SDK's \
             read_snapshot), which verifies every chunk's SHA-256 for you",
        ))
    }

    async fn pin_dataset_version(
        &self,
        req: Request<pb::PinDatasetVersionRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(self.snapshots.pin(&tenant, &r.dataset_id, r.version, &r.reason).await.map_err(status)?))
    }

    async fn unpin_dataset(&self, req: Request<pb::UnpinDatasetRequest>) -> Result<Response<pb::Dataset>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.snapshots.unpin(&tenant, &req.get_ref().dataset_id).await.map_err(status)?))
    }

    async fn rollback_dataset(
        &self,
        req: Request<pb::RollbackDatasetRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(
            self.snapshots.rollback(&tenant, &r.dataset_id, r.to_version, &r.reason).await.map_err(status)?,
        ))
    }

    async fn set_retention_policy(
        &self,
        req: Request<pb::SetRetentionPolicyRequest>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let retention = r.retention.ok_or_else(|| Status::invalid_argument("retention: is required"))?;
        Ok(Response::new(self.snapshots.set_retention(&tenant, &r.dataset_id, retention).await.map_err(status)?))
    }

    async fn add_retention_hold(
        &self,
        req: Request<pb::AddRetentionHoldRequest>,
    ) -> Result<Response<pb::DatasetVersion>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        Ok(Response::new(self.snapshots.add_hold(&tenant, r.r#ref, &r.holder, &r.reason).await.map_err(status)?))
    }

    async fn remove_retention_hold(
        &self,
        req: Request<pb::RemoveRetentionHoldRequest>,
    ) -> Result<Response<pb::DatasetVersion>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        Ok(Response::new(self.snapshots.remove_hold(&tenant, r.r#ref, &r.holder).await.map_err(status)?))
    }
}
