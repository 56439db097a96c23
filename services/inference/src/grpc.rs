//! The gRPC adapter: request → domain call → response or Status.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use pulse_common::error::ServiceError;
use pulse_common::grpc::{status, tenant};
use pulse_proto::inference::v1 as pb;
use pulse_proto::inference::v1::inference_service_server::InferenceService;
use pulse_proto::tonic::{Request, Response, Status, Streaming};

use crate::domain::Inference;
use crate::error::InferenceError;

#[derive(Debug, Clone)]
pub struct InferenceGrpc {
    inference: Inference,
}

impl InferenceGrpc {
    pub fn new(inference: Inference) -> Self {
        Self { inference }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn stream_error(e: &InferenceError) -> pb::PredictionError {
    let problems = match e {
        InferenceError::Rows(p) => p
            .iter()
            .map(|p| pb::FeatureProblem {
                row: p.row,
                feature: p.feature.clone(),
                problem: p.problem.to_string(),
                message: p.message.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    pb::PredictionError { code: e.code().as_str().to_string(), message: e.public_message(), problems }
}

#[pulse_proto::tonic::async_trait]
impl InferenceService for InferenceGrpc {
    async fn predict(&self, req: Request<pb::PredictRequest>) -> Result<Response<pb::Prediction>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.predict(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn predict_batch(
        &self,
        req: Request<pb::PredictBatchRequest>,
    ) -> Result<Response<pb::PredictBatchResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.predict_batch(&tenant, req.get_ref()).await.map_err(status)?))
    }

    type PredictStreamStream = BoxStream<pb::PredictStreamResponse>;

    async fn predict_stream(
        &self,
        req: Request<Streaming<pb::PredictStreamRequest>>,
    ) -> Result<Response<Self::PredictStreamStream>, Status> {
        let tenant = tenant(&req)?;
        let mut input = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let inference = self.inference.clone();
        // Each request is answered on its own task: answers may overtake
        // each other, matched by request_id.
        tokio::spawn(async move {
            while let Some(msg) = input.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(_) => break,
                };
                let (inference, tenant, tx) = (inference.clone(), tenant.clone(), tx.clone());
                tokio::spawn(async move {
                    let result = match msg.request {
                        Some(r) => match inference.predict(&tenant, &r).await {
                            Ok(p) => pb::predict_stream_response::Result::Prediction(p),
                            Err(e) => pb::predict_stream_response::Result::Error(stream_error(&e)),
                        },
                        None => pb::predict_stream_response::Result::Error(stream_error(&InferenceError::invalid(
                            "request",
                            "is required",
                        ))),
                    };
                    let _ = tx
                        .send(Ok(pb::PredictStreamResponse { request_id: msg.request_id, result: Some(result) }))
                        .await;
                });
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn record_feedback(&self, req: Request<pb::RecordFeedbackRequest>) -> Result<Response<pb::Feedback>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.record_feedback(&tenant, req.get_ref()).await.map_err(status)?))
    }

    async fn get_prediction(&self, req: Request<pb::GetPredictionRequest>) -> Result<Response<pb::Prediction>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.get_prediction(&tenant, &req.get_ref().prediction_id).await.map_err(status)?))
    }

    async fn list_predictions(
        &self,
        req: Request<pb::ListPredictionsRequest>,
    ) -> Result<Response<pb::ListPredictionsResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.list_predictions(&tenant, req.get_ref()).await.map_err(status)?))
    }

    type ExportPredictionsStream = BoxStream<pb::ArrowChunk>;

    async fn export_predictions(
        &self,
        req: Request<pb::ExportPredictionsRequest>,
    ) -> Result<Response<Self::ExportPredictionsStream>, Status> {
        let tenant = tenant(&req)?;
        let (schema, mut batches) = self.inference.export_predictions(&tenant, req.get_ref()).await.map_err(status)?;
        let stream = async_stream::try_stream! {
            // One IPC stream, cut at message boundaries: the schema first,
            // then one chunk per batch, the end-of-stream marker last.
            let ipc = |e: arrow::error::ArrowError| Status::internal(format!("Arrow IPC: {e}"));
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(ipc)?;
            let mut sequence = 0;
            yield pb::ArrowChunk { sequence, arrow_ipc: std::mem::take(writer.get_mut()), rows: 0 };
            while let Some(batch) = batches.recv().await {
                let batch = batch.map_err(status)?;
                writer.write(&batch).map_err(ipc)?;
                sequence += 1;
                yield pb::ArrowChunk { sequence, arrow_ipc: std::mem::take(writer.get_mut()), rows: batch.num_rows() as u64 };
            }
            writer.finish().map_err(ipc)?;
            sequence += 1;
            yield pb::ArrowChunk { sequence, arrow_ipc: std::mem::take(writer.get_mut()), rows: 0 };
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_traffic_policy(
        &self,
        req: Request<pb::GetTrafficPolicyRequest>,
    ) -> Result<Response<pb::TrafficPolicy>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.traffic_policy(&tenant, &req.get_ref().model).await.map_err(status)?))
    }

    async fn set_traffic_policy(
        &self,
        req: Request<pb::SetTrafficPolicyRequest>,
    ) -> Result<Response<pb::TrafficPolicy>, Status> {
        let tenant = tenant(&req)?;
        let policy = req.into_inner().policy.ok_or_else(|| status(InferenceError::invalid("policy", "is required")))?;
        Ok(Response::new(self.inference.set_traffic_policy(&tenant, policy).await.map_err(status)?))
    }

    async fn get_serving_status(
        &self,
        req: Request<pb::GetServingStatusRequest>,
    ) -> Result<Response<pb::ServingStatus>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.status(&tenant, &req.get_ref().model).await.map_err(status)?))
    }

    async fn refresh_model(&self, req: Request<pb::RefreshModelRequest>) -> Result<Response<pb::ModelServing>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.inference.refresh(&tenant, &req.get_ref().model).await.map_err(status)?))
    }
}
