//! The gRPC adapter: request → domain call → response or Status. The
//! drift part of the contract is served; retraining policies, pipelines and
//! the event log answer UNIMPLEMENTED, saying so.

use std::pin::Pin;

use futures::Stream;
use pulse_common::grpc::{status, tenant};
use pulse_proto::common::v1::EventEnvelope;
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::drift_service_server::DriftService;
use pulse_proto::tonic::{Request, Response, Status};

use crate::domain::Drift;
use crate::error::DriftError;

#[derive(Debug, Clone)]
pub struct DriftGrpc {
    drift: Drift,
}

impl DriftGrpc {
    pub fn new(drift: Drift) -> Self {
        Self { drift }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn not_served(method: &str) -> Status {
    status(DriftError::Unimplemented(format!(
        "pulse.drift.v1.DriftService/{method} is not served yet: this Pulse build serves drift checks, reports, \
         baselines and monitors; retraining policies, pipelines and the event log come later"
    )))
}

#[pulse_proto::tonic::async_trait]
impl DriftService for DriftGrpc {
    async fn check_drift(&self, req: Request<pb::CheckDriftRequest>) -> Result<Response<pb::DriftReport>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.drift.check(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn list_drift_reports(
        &self,
        req: Request<pb::ListDriftReportsRequest>,
    ) -> Result<Response<pb::ListDriftReportsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.drift.list_reports(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn get_drift_report(
        &self,
        req: Request<pb::GetDriftReportRequest>,
    ) -> Result<Response<pb::DriftReport>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.drift.report(&tenant, &req.get_ref().report_id).await.map_err(status)?))
    }

    async fn set_baseline(&self, req: Request<pb::SetBaselineRequest>) -> Result<Response<pb::Baseline>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.drift.set_baseline(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn get_baseline(&self, req: Request<pb::GetBaselineRequest>) -> Result<Response<pb::Baseline>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.drift.baseline(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn set_monitor(&self, req: Request<pb::SetMonitorRequest>) -> Result<Response<pb::Monitor>, Status> {
        let tenant = tenant(&req)?;
        let monitor = req.into_inner().monitor.ok_or_else(|| status(DriftError::invalid("monitor", "is required")))?;
        Ok(Response::new(self.drift.set_monitor(&tenant, monitor).await.map_err(status)?))
    }

    async fn get_monitor(&self, req: Request<pb::GetMonitorRequest>) -> Result<Response<pb::Monitor>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.drift.monitor(&tenant, &req.get_ref().model).await.map_err(status)?))
    }

    async fn list_monitors(
        &self,
        req: Request<pb::ListMonitorsRequest>,
    ) -> Result<Response<pb::ListMonitorsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.drift.list_monitors(&tenant, req.get_ref()).await.map_err(status)?))
    }

    // ---- not served yet ----

    async fn set_retraining_policy(
        &self,
        _: Request<pb::SetRetrainingPolicyRequest>,
    ) -> Result<Response<pb::RetrainingPolicy>, Status> {
        Err(not_served("SetRetrainingPolicy"))
    }

    async fn get_retraining_policy(
        &self,
        _: Request<pb::GetRetrainingPolicyRequest>,
    ) -> Result<Response<pb::RetrainingPolicy>, Status> {
        Err(not_served("GetRetrainingPolicy"))
    }

    async fn list_retraining_policies(
        &self,
        _: Request<pb::ListRetrainingPoliciesRequest>,
    ) -> Result<Response<pb::ListRetrainingPoliciesResponse>, Status> {
        Err(not_served("ListRetrainingPolicies"))
    }

    async fn evaluate_policies(
        &self,
        _: Request<pb::EvaluatePoliciesRequest>,
    ) -> Result<Response<pb::EvaluatePoliciesResponse>, Status> {
        Err(not_served("EvaluatePolicies"))
    }

    async fn list_policy_decisions(
        &self,
        _: Request<pb::ListPolicyDecisionsRequest>,
    ) -> Result<Response<pb::ListPolicyDecisionsResponse>, Status> {
        Err(not_served("ListPolicyDecisions"))
    }

    async fn create_pipeline(&self, _: Request<pb::CreatePipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        Err(not_served("CreatePipeline"))
    }

    async fn update_pipeline(&self, _: Request<pb::UpdatePipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        Err(not_served("UpdatePipeline"))
    }

    async fn get_pipeline(&self, _: Request<pb::GetPipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        Err(not_served("GetPipeline"))
    }

    async fn list_pipelines(
        &self,
        _: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        Err(not_served("ListPipelines"))
    }

    async fn start_pipeline_run(
        &self,
        _: Request<pb::StartPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        Err(not_served("StartPipelineRun"))
    }

    async fn get_pipeline_run(
        &self,
        _: Request<pb::GetPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        Err(not_served("GetPipelineRun"))
    }

    async fn list_pipeline_runs(
        &self,
        _: Request<pb::ListPipelineRunsRequest>,
    ) -> Result<Response<pb::ListPipelineRunsResponse>, Status> {
        Err(not_served("ListPipelineRuns"))
    }

    async fn cancel_pipeline_run(
        &self,
        _: Request<pb::CancelPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        Err(not_served("CancelPipelineRun"))
    }

    async fn retry_pipeline_run(
        &self,
        _: Request<pb::RetryPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        Err(not_served("RetryPipelineRun"))
    }

    async fn get_run_timeline(
        &self,
        _: Request<pb::GetRunTimelineRequest>,
    ) -> Result<Response<pb::RunTimeline>, Status> {
        Err(not_served("GetRunTimeline"))
    }

    async fn publish_events(
        &self,
        _: Request<pb::PublishEventsRequest>,
    ) -> Result<Response<pb::PublishEventsResponse>, Status> {
        Err(not_served("PublishEvents"))
    }

    async fn list_events(&self, _: Request<pb::ListEventsRequest>) -> Result<Response<pb::ListEventsResponse>, Status> {
        Err(not_served("ListEvents"))
    }

    type WatchEventsStream = BoxStream<EventEnvelope>;

    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(not_served("WatchEvents"))
    }

    async fn replay_events(
        &self,
        _: Request<pb::ReplayEventsRequest>,
    ) -> Result<Response<pb::ReplayEventsResponse>, Status> {
        Err(not_served("ReplayEvents"))
    }
}
