//! The gRPC adapter: request → domain call → response or Status.

use std::pin::Pin;

use futures::Stream;
use pulse_common::grpc::{status, tenant};
use pulse_proto::common::v1::EventEnvelope;
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::drift_service_server::DriftService;
use pulse_proto::tonic::{Request, Response, Status};

use crate::DriftHost;
use crate::domain::Drift;
use crate::error::DriftError;
use crate::pipeline::RunRequest;

#[derive(Clone)]
pub struct DriftGrpc {
    drift: Drift,
    host: DriftHost,
}

impl DriftGrpc {
    pub fn new(host: DriftHost) -> Self {
        Self { drift: host.drift.clone(), host }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

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
        req: Request<pb::SetRetrainingPolicyRequest>,
    ) -> Result<Response<pb::RetrainingPolicy>, Status> {
        let tenant = tenant(&req)?;
        let policy = req.into_inner().policy.unwrap_or_default();
        Ok(Response::new(self.host.policies.set(&tenant, policy).await.map_err(status)?))
    }

    async fn get_retraining_policy(
        &self,
        req: Request<pb::GetRetrainingPolicyRequest>,
    ) -> Result<Response<pb::RetrainingPolicy>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.policies.get(&tenant, &req.get_ref().model).await.map_err(status)?))
    }

    async fn list_retraining_policies(
        &self,
        req: Request<pb::ListRetrainingPoliciesRequest>,
    ) -> Result<Response<pb::ListRetrainingPoliciesResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.policies.list(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn evaluate_policies(
        &self,
        req: Request<pb::EvaluatePoliciesRequest>,
    ) -> Result<Response<pb::EvaluatePoliciesResponse>, Status> {
        let tenant = tenant(&req)?;
        let decisions =
            self.host.policies.evaluate(&tenant, &req.get_ref().model, chrono::Utc::now()).await.map_err(status)?;
        Ok(Response::new(pb::EvaluatePoliciesResponse { decisions }))
    }

    async fn list_policy_decisions(
        &self,
        req: Request<pb::ListPolicyDecisionsRequest>,
    ) -> Result<Response<pb::ListPolicyDecisionsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.policies.decisions(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn create_pipeline(&self, req: Request<pb::CreatePipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        let tenant = tenant(&req)?;
        let p = req.into_inner().pipeline.unwrap_or_default();
        Ok(Response::new(self.host.pipelines.create(&tenant, p).await.map_err(status)?))
    }

    async fn update_pipeline(&self, req: Request<pb::UpdatePipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        let tenant = tenant(&req)?;
        let p = req.into_inner().pipeline.unwrap_or_default();
        Ok(Response::new(self.host.pipelines.update(&tenant, p).await.map_err(status)?))
    }

    async fn get_pipeline(&self, req: Request<pb::GetPipelineRequest>) -> Result<Response<pb::Pipeline>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.pipelines.get(&tenant, &req.get_ref().pipeline_id).await.map_err(status)?))
    }

    async fn list_pipelines(
        &self,
        req: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        let tenant = tenant(&req)?;
        let page = req.get_ref().page.clone().unwrap_or_default();
        Ok(Response::new(self.host.pipelines.list(&tenant, &page).await.map_err(status)?))
    }

    async fn start_pipeline_run(
        &self,
        req: Request<pb::StartPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let pipeline = self.host.pipelines.get(&tenant, &r.pipeline_id).await.map_err(status)?;
        let inputs = match r.inputs.as_ref().map(pulse_common::json::to_json) {
            Some(serde_json::Value::Object(map)) => map,
            _ => Default::default(),
        };
        let (origin, trigger) = match r.signal {
            Some(mut signal) => {
                signal.tenant_id = tenant.clone();
                (pb::RunOrigin::Event, Some(signal))
            }
            None => (pb::RunOrigin::Manual, None),
        };
        let run = self
            .host
            .pipelines
            .start(&tenant, &pipeline, RunRequest { inputs, origin, trigger, ..Default::default() })
            .await
            .map_err(status)?;
        Ok(Response::new(run))
    }

    async fn get_pipeline_run(
        &self,
        req: Request<pb::GetPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.pipelines.run(&tenant, &req.get_ref().run_id).await.map_err(status)?))
    }

    async fn list_pipeline_runs(
        &self,
        req: Request<pb::ListPipelineRunsRequest>,
    ) -> Result<Response<pb::ListPipelineRunsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.pipelines.list_runs(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn cancel_pipeline_run(
        &self,
        req: Request<pb::CancelPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(self.host.pipelines.cancel(&tenant, &r.run_id, &r.reason).await.map_err(status)?))
    }

    async fn retry_pipeline_run(
        &self,
        req: Request<pb::RetryPipelineRunRequest>,
    ) -> Result<Response<pb::PipelineRun>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.pipelines.retry(&tenant, &req.get_ref().run_id).await.map_err(status)?))
    }

    async fn get_run_timeline(
        &self,
        req: Request<pb::GetRunTimelineRequest>,
    ) -> Result<Response<pb::RunTimeline>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.pipelines.timeline(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn publish_events(
        &self,
        req: Request<pb::PublishEventsRequest>,
    ) -> Result<Response<pb::PublishEventsResponse>, Status> {
        let tenant = tenant(&req)?;
        let key = req.metadata().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let outcome = self.host.log.publish(&tenant, req.into_inner().events, &key).await.map_err(status)?;
        // Triggers fire now for the caller to see; the dispatcher would start
        // the same runs (same ids) a moment later.
        let started = self.host.pipelines.deliver_all(&outcome.stored).await.map_err(status)?;
        Ok(Response::new(pb::PublishEventsResponse {
            message_ids: outcome.message_ids,
            published: outcome.published,
            duplicates: outcome.duplicates,
            started_run_ids: started,
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        let selector = r.selector.clone().unwrap_or_default();
        let page = r.page.clone().unwrap_or_default();
        let (events, next) = self.host.log.list(&tenant, &selector, r.newest_first, &page).await.map_err(status)?;
        Ok(Response::new(pb::ListEventsResponse {
            events,
            page: Some(pulse_proto::common::v1::PageResponse { next_page_token: next }),
        }))
    }

    type WatchEventsStream = BoxStream<EventEnvelope>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        use futures::StreamExt;
        let tenant = tenant(&req)?;
        let r = req.into_inner();
        let selector = r.selector.unwrap_or_default();
        let after = (!r.after_message_id.is_empty()).then_some(r.after_message_id.as_str());
        let stream = self.host.log.watch(&tenant, &selector, after).await.map_err(status)?;
        Ok(Response::new(Box::pin(stream.map(|item| item.map_err(status)))))
    }

    async fn replay_events(
        &self,
        req: Request<pb::ReplayEventsRequest>,
    ) -> Result<Response<pb::ReplayEventsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.host.pipelines.replay(&tenant, req.get_ref()).await.map_err(status)?))
    }
}
