//! The gRPC adapter: request → domain call → response or Status.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use pulse_common::grpc::{caller, status, tenant};
use pulse_proto::tonic::{Request, Response, Status, Streaming};
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::trainer_service_server::TrainerService;

use crate::domain::{Trainer, is_final, job_status};
use crate::error::TrainerError;

#[derive(Debug, Clone)]
pub struct TrainerGrpc {
    trainer: Trainer,
}

impl TrainerGrpc {
    pub fn new(trainer: Trainer) -> Self {
        Self { trainer }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[pulse_proto::tonic::async_trait]
impl TrainerService for TrainerGrpc {
    async fn register_contract(
        &self,
        req: Request<pb::RegisterContractRequest>,
    ) -> Result<Response<pb::RegisterContractResponse>, Status> {
        let tenant = tenant(&req)?;
        let (contract, created) = self.trainer.register_contract(&tenant, &req.get_ref().yaml).await.map_err(status)?;
        Ok(Response::new(pb::RegisterContractResponse { contract: Some(contract), created }))
    }

    async fn get_contract(&self, req: Request<pb::GetContractRequest>) -> Result<Response<pb::Contract>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(self.trainer.contract(&tenant, &r.model, r.version).await.map_err(status)?))
    }

    async fn list_contracts(
        &self,
        req: Request<pb::ListContractsRequest>,
    ) -> Result<Response<pb::ListContractsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.list_contracts(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn validate_dataset(
        &self,
        req: Request<pb::ValidateDatasetRequest>,
    ) -> Result<Response<pb::ValidationReport>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.validate_dataset(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn start_training(
        &self,
        req: Request<pb::StartTrainingRequest>,
    ) -> Result<Response<pb::TrainingJob>, Status> {
        let who = caller(&req)?;
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.start(&tenant, &who.key_id, req.into_inner()).await.map_err(status)?))
    }

    async fn get_training_job(
        &self,
        req: Request<pb::GetTrainingJobRequest>,
    ) -> Result<Response<pb::TrainingJob>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.job(&tenant, &req.get_ref().job_id).await.map_err(status)?))
    }

    type WatchTrainingJobStream = BoxStream<pb::TrainingUpdate>;

    async fn watch_training_job(
        &self,
        req: Request<pb::WatchTrainingJobRequest>,
    ) -> Result<Response<Self::WatchTrainingJobStream>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let interval = r
            .min_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500))
            .max(Duration::from_millis(50));
        // Unknown ids fail the call itself, not the stream.
        self.trainer.job(&tenant, &r.job_id).await.map_err(status)?;
        let trainer = self.trainer.clone();
        let stream = async_stream::try_stream! {
            let mut last: Option<(i32, u64, u32)> = None;
            loop {
                let job = trainer.job(&tenant, &r.job_id).await.map_err(status)?;
                let done = is_final(job_status(&job));
                let key = (job.status, job.latest.as_ref().map(|m| m.step).unwrap_or(0), job.timeline.len() as u32);
                if last != Some(key) || done {
                    last = Some(key);
                    yield pb::TrainingUpdate {
                        job_id: job.id.clone(),
                        status: job.status,
                        progress: job.progress.clone(),
                        metrics: job.latest.clone(),
                        at: Some(pulse_common::time::to_proto(pulse_common::time::now_millis())),
                        job: done.then(|| job.clone()),
                    };
                }
                if done {
                    break;
                }
                tokio::time::sleep(interval).await;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_training_job(
        &self,
        req: Request<pb::CancelTrainingJobRequest>,
    ) -> Result<Response<pb::TrainingJob>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(self.trainer.cancel(&tenant, &r.job_id, &r.reason).await.map_err(status)?))
    }

    async fn retry_training_job(
        &self,
        req: Request<pb::RetryTrainingJobRequest>,
    ) -> Result<Response<pb::TrainingJob>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.retry(&tenant, &req.get_ref().job_id).await.map_err(status)?))
    }

    async fn list_training_jobs(
        &self,
        req: Request<pb::ListTrainingJobsRequest>,
    ) -> Result<Response<pb::ListTrainingJobsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.list_jobs(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn register_worker(&self, req: Request<pb::RegisterWorkerRequest>) -> Result<Response<pb::Worker>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.register_worker(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.heartbeat(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn deregister_worker(
        &self,
        req: Request<pb::DeregisterWorkerRequest>,
    ) -> Result<Response<pb::Worker>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.deregister_worker(&tenant, &req.get_ref().worker_id).await.map_err(status)?))
    }

    async fn list_workers(
        &self,
        req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.list_workers(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn save_checkpoint(
        &self,
        req: Request<Streaming<pb::SaveCheckpointRequest>>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let tenant = tenant(&req)?;
        let key = pulse_common::grpc::idempotency::streaming_key(req.metadata())?;
        let input = req.into_inner().map(|m| {
            m.map_err(|s| {
                TrainerError::Precondition(format!("the checkpoint stream broke: {}; nothing was kept", s.message()))
            })
        });
        Ok(Response::new(self.trainer.save_checkpoint(&tenant, key.as_deref(), Box::pin(input)).await.map_err(status)?))
    }

    async fn get_checkpoint(&self, req: Request<pb::GetCheckpointRequest>) -> Result<Response<pb::Checkpoint>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.checkpoint(&tenant, &req.get_ref().checkpoint_id).await.map_err(status)?))
    }

    type LoadCheckpointStream = BoxStream<pb::CheckpointChunk>;

    async fn load_checkpoint(
        &self,
        req: Request<pb::LoadCheckpointRequest>,
    ) -> Result<Response<Self::LoadCheckpointStream>, Status> {
        let tenant = tenant(&req)?;
        let stream = self.trainer.load_checkpoint(&tenant, req.get_ref()).await.map_err(status)?;
        Ok(Response::new(Box::pin(stream.map(|r| r.map_err(status)))))
    }

    async fn list_checkpoints(
        &self,
        req: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.list_checkpoints(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.list_models(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn get_model(&self, req: Request<pb::GetModelRequest>) -> Result<Response<pb::Model>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.model(&tenant, &req.get_ref().model).await.map_err(status)?))
    }

    async fn list_model_versions(
        &self,
        req: Request<pb::ListModelVersionsRequest>,
    ) -> Result<Response<pb::ListModelVersionsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.list_versions(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn get_model_version(
        &self,
        req: Request<pb::GetModelVersionRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        let stage = pb::ModelStage::try_from(r.stage).unwrap_or(pb::ModelStage::Unspecified);
        Ok(Response::new(self.trainer.model_version(&tenant, &r.model, r.version, stage).await.map_err(status)?))
    }

    async fn evaluate_model(&self, req: Request<pb::EvaluateModelRequest>) -> Result<Response<pb::Evaluation>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.evaluate(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn promote_model(
        &self,
        req: Request<pb::PromoteModelRequest>,
    ) -> Result<Response<pb::PromoteModelResponse>, Status> {
        let who = caller(&req)?;
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.promote(&tenant, &who.key_id, req.get_ref()).await.map_err(status)?))
    }

    async fn rollback_model(
        &self,
        req: Request<pb::RollbackModelRequest>,
    ) -> Result<Response<pb::RollbackModelResponse>, Status> {
        let who = caller(&req)?;
        let tenant = tenant(&req)?;
        Ok(Response::new(self.trainer.rollback(&tenant, &who.key_id, req.get_ref()).await.map_err(status)?))
    }
}
