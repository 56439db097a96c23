//! Datasource, snapshot, trainer, inference and drift calls for the SDK, as
//! proto3 JSON: Python sends a request as JSON and gets the answer as JSON,
//! both in the contracts' canonical mapping (snake_case fields, enum names),
//! so the Python layer needs no generated code and every field of the
//! contracts is reachable.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use pulse_client::pulse_proto::datasource::v1 as ds;
use pulse_client::pulse_proto::drift::v1 as dr;
use pulse_client::pulse_proto::inference::v1 as inf;
use pulse_client::pulse_proto::prost::Message;
use pulse_client::pulse_proto::snapshot::v1 as sn;
use pulse_client::pulse_proto::trainer::v1 as tr;
use pulse_client::{Client, ClientError};

fn pool() -> Result<&'static DescriptorPool, ClientError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = DescriptorPool::new();
        for service in [
            "pulse.snapshot.v1.SnapshotService",
            "pulse.trainer.v1.TrainerService",
            "pulse.inference.v1.InferenceService",
            "pulse.drift.v1.DriftService",
        ] {
            let set = pulse_client::pulse_proto::service(service)
                .ok_or_else(|| format!("the {service} contract is missing from this build"))?
                .descriptor_set;
            pool.decode_file_descriptor_set(set).map_err(|e| e.to_string())?;
        }
        Ok(pool)
    })
    .as_ref()
    .map_err(|e| ClientError::InvalidArgument(format!("contracts: {e}")))
}

/// Decodes a request from proto3 JSON; errors name the message.
fn from_json<M: Message + Default>(name: &str, json: &str) -> Result<M, ClientError> {
    let desc = pool()?
        .get_message_by_name(name)
        .ok_or_else(|| ClientError::InvalidArgument(format!("unknown message {name}")))?;
    let mut de = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize(desc, &mut de)
        .map_err(|e| ClientError::InvalidArgument(format!("request: {e}")))?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| ClientError::InvalidArgument(format!("request: {e}")))
}

/// The prediction log of a window (an `ExportPredictionsRequest` as JSON)
/// as Arrow IPC bytes.
pub async fn export_predictions(client: Client, request_json: String) -> Result<Vec<u8>, ClientError> {
    let req: inf::ExportPredictionsRequest = from_json("pulse.inference.v1.ExportPredictionsRequest", &request_json)?;
    client.export_predictions(req).await
}

/// Encodes an answer as proto3 JSON with snake_case names, enum names, and
/// 64-bit integers as numbers.
fn to_json<M: Message>(name: &str, msg: &M) -> Result<String, ClientError> {
    let desc = pool()?
        .get_message_by_name(name)
        .ok_or_else(|| ClientError::InvalidArgument(format!("unknown message {name}")))?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| ClientError::InvalidArgument(format!("answer: {e}")))?;
    let options =
        SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(false);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    dynamic
        .serialize_with_options(&mut ser, &options)
        .map_err(|e| ClientError::InvalidArgument(format!("answer: {e}")))?;
    String::from_utf8(out).map_err(|e| ClientError::InvalidArgument(e.to_string()))
}

/// Runs one unary call by its SDK name (e.g. `check_drift`).
/// `idempotency_key` is used by the mutations that take one ("" generates
/// one).
pub(crate) async fn call(
    client: Client,
    method: String,
    request: String,
    idempotency_key: String,
) -> Result<String, ClientError> {
    const I: &str = "pulse.inference.v1.";
    const D: &str = "pulse.datasource.v1.";
    const R: &str = "pulse.drift.v1.";
    const S: &str = "pulse.snapshot.v1.";
    const T: &str = "pulse.trainer.v1.";
    let r = request.as_str();
    match method.as_str() {
        "register_datasource" => {
            let req: ds::RegisterDatasourceRequest = from_json(&format!("{D}RegisterDatasourceRequest"), r)?;
            to_json(&format!("{D}Datasource"), &client.register_datasource(req, &idempotency_key).await?)
        }
        "get_datasource" => {
            let req: ds::GetDatasourceRequest = from_json(&format!("{D}GetDatasourceRequest"), r)?;
            to_json(&format!("{D}Datasource"), &client.get_datasource(&req.id).await?)
        }
        "list_datasources" => {
            let req: ds::ListDatasourcesRequest = from_json(&format!("{D}ListDatasourcesRequest"), r)?;
            let page = req.page.unwrap_or_default();
            to_json(
                &format!("{D}ListDatasourcesResponse"),
                &client.list_datasources(&page.page_token, page.page_size).await?,
            )
        }
        "validate_datasource" => {
            let req: ds::ValidateDatasourceRequest = from_json(&format!("{D}ValidateDatasourceRequest"), r)?;
            to_json(&format!("{D}DatasourceValidation"), &client.validate_datasource(&req.id).await?)
        }
        "inspect_schema" => {
            let req: ds::InspectSchemaRequest = from_json(&format!("{D}InspectSchemaRequest"), r)?;
            to_json(&format!("{D}InspectSchemaResponse"), &client.inspect_schema(&req.id, &req.objects).await?)
        }
        "estimate_size" => {
            let req: ds::EstimateSizeRequest = from_json(&format!("{D}EstimateSizeRequest"), r)?;
            to_json(&format!("{D}EstimateSizeResponse"), &client.estimate_size(req).await?)
        }
        "start_extraction" => {
            let req: sn::StartExtractionRequest = from_json(&format!("{S}StartExtractionRequest"), r)?;
            to_json(&format!("{S}ExtractionJob"), &client.start_extraction(req, &idempotency_key).await?)
        }
        "get_extraction_job" => {
            let req: sn::GetExtractionJobRequest = from_json(&format!("{S}GetExtractionJobRequest"), r)?;
            to_json(&format!("{S}ExtractionJob"), &client.get_extraction_job(&req.job_id).await?)
        }
        "cancel_extraction_job" => {
            let req: sn::CancelExtractionJobRequest = from_json(&format!("{S}CancelExtractionJobRequest"), r)?;
            to_json(&format!("{S}ExtractionJob"), &client.cancel_extraction_job(&req.job_id, &req.reason).await?)
        }
        "resume_extraction_job" => {
            let req: sn::ResumeExtractionJobRequest = from_json(&format!("{S}ResumeExtractionJobRequest"), r)?;
            to_json(&format!("{S}ExtractionJob"), &client.resume_extraction_job(&req.job_id).await?)
        }
        "list_datasets" => {
            let req: sn::ListDatasetsRequest = from_json(&format!("{S}ListDatasetsRequest"), r)?;
            let page = req.page.unwrap_or_default();
            to_json(&format!("{S}ListDatasetsResponse"), &client.list_datasets(&page.page_token, page.page_size).await?)
        }
        "get_dataset" => {
            let req: sn::GetDatasetRequest = from_json(&format!("{S}GetDatasetRequest"), r)?;
            to_json(&format!("{S}Dataset"), &client.get_dataset(&req.dataset_id).await?)
        }
        "list_dataset_versions" => {
            let req: sn::ListDatasetVersionsRequest = from_json(&format!("{S}ListDatasetVersionsRequest"), r)?;
            to_json(&format!("{S}ListDatasetVersionsResponse"), &client.list_dataset_versions(&req.dataset_id).await?)
        }
        "get_dataset_version" => {
            let req: sn::GetDatasetVersionRequest = from_json(&format!("{S}GetDatasetVersionRequest"), r)?;
            to_json(&format!("{S}DatasetVersion"), &client.get_dataset_version(&req.dataset_id, req.version).await?)
        }
        "pin_dataset_version" => {
            let req: sn::PinDatasetVersionRequest = from_json(&format!("{S}PinDatasetVersionRequest"), r)?;
            to_json(
                &format!("{S}Dataset"),
                &client.pin_dataset_version(&req.dataset_id, req.version, &req.reason).await?,
            )
        }
        "unpin_dataset" => {
            let req: sn::UnpinDatasetRequest = from_json(&format!("{S}UnpinDatasetRequest"), r)?;
            to_json(&format!("{S}Dataset"), &client.unpin_dataset(&req.dataset_id).await?)
        }
        "rollback_dataset" => {
            let req: sn::RollbackDatasetRequest = from_json(&format!("{S}RollbackDatasetRequest"), r)?;
            to_json(
                &format!("{S}Dataset"),
                &client.rollback_dataset(&req.dataset_id, req.to_version, &req.reason).await?,
            )
        }
        "set_retention_policy" => {
            let req: sn::SetRetentionPolicyRequest = from_json(&format!("{S}SetRetentionPolicyRequest"), r)?;
            to_json(
                &format!("{S}Dataset"),
                &client.set_retention_policy(&req.dataset_id, req.retention.unwrap_or_default()).await?,
            )
        }
        "register_contract" => {
            let req: tr::RegisterContractRequest = from_json(&format!("{T}RegisterContractRequest"), r)?;
            to_json(&format!("{T}RegisterContractResponse"), &client.register_contract(&req.yaml).await?)
        }
        "get_contract" => {
            let req: tr::GetContractRequest = from_json(&format!("{T}GetContractRequest"), r)?;
            to_json(&format!("{T}Contract"), &client.get_contract(&req.model, req.version).await?)
        }
        "list_contracts" => {
            let req: tr::ListContractsRequest = from_json(&format!("{T}ListContractsRequest"), r)?;
            to_json(&format!("{T}ListContractsResponse"), &client.list_contracts(req).await?)
        }
        "validate_dataset" => {
            let req: tr::ValidateDatasetRequest = from_json(&format!("{T}ValidateDatasetRequest"), r)?;
            to_json(&format!("{T}ValidationReport"), &client.validate_dataset(req).await?)
        }
        "start_training" => {
            let req: tr::StartTrainingRequest = from_json(&format!("{T}StartTrainingRequest"), r)?;
            to_json(&format!("{T}TrainingJob"), &client.start_training(req, &idempotency_key).await?)
        }
        "get_training_job" => {
            let req: tr::GetTrainingJobRequest = from_json(&format!("{T}GetTrainingJobRequest"), r)?;
            to_json(&format!("{T}TrainingJob"), &client.get_training_job(&req.job_id).await?)
        }
        "cancel_training_job" => {
            let req: tr::CancelTrainingJobRequest = from_json(&format!("{T}CancelTrainingJobRequest"), r)?;
            to_json(&format!("{T}TrainingJob"), &client.cancel_training_job(&req.job_id, &req.reason).await?)
        }
        "retry_training_job" => {
            let req: tr::RetryTrainingJobRequest = from_json(&format!("{T}RetryTrainingJobRequest"), r)?;
            to_json(&format!("{T}TrainingJob"), &client.retry_training_job(&req.job_id).await?)
        }
        "list_training_jobs" => {
            let req: tr::ListTrainingJobsRequest = from_json(&format!("{T}ListTrainingJobsRequest"), r)?;
            to_json(&format!("{T}ListTrainingJobsResponse"), &client.list_training_jobs(req).await?)
        }
        "list_models" => {
            let req: tr::ListModelsRequest = from_json(&format!("{T}ListModelsRequest"), r)?;
            to_json(&format!("{T}ListModelsResponse"), &client.list_models(req).await?)
        }
        "get_model" => {
            let req: tr::GetModelRequest = from_json(&format!("{T}GetModelRequest"), r)?;
            to_json(&format!("{T}Model"), &client.get_model(&req.model).await?)
        }
        "list_model_versions" => {
            let req: tr::ListModelVersionsRequest = from_json(&format!("{T}ListModelVersionsRequest"), r)?;
            to_json(&format!("{T}ListModelVersionsResponse"), &client.list_model_versions(req).await?)
        }
        "get_model_version" => {
            let req: tr::GetModelVersionRequest = from_json(&format!("{T}GetModelVersionRequest"), r)?;
            to_json(&format!("{T}ModelVersion"), &client.get_model_version(req).await?)
        }
        "evaluate_model" => {
            let req: tr::EvaluateModelRequest = from_json(&format!("{T}EvaluateModelRequest"), r)?;
            to_json(&format!("{T}Evaluation"), &client.evaluate_model(req).await?)
        }
        "promote_model" => {
            let req: tr::PromoteModelRequest = from_json(&format!("{T}PromoteModelRequest"), r)?;
            to_json(&format!("{T}PromoteModelResponse"), &client.promote_model(req).await?)
        }
        "rollback_model" => {
            let req: tr::RollbackModelRequest = from_json(&format!("{T}RollbackModelRequest"), r)?;
            to_json(&format!("{T}RollbackModelResponse"), &client.rollback_model(req).await?)
        }
        "register_worker" => {
            let req: tr::RegisterWorkerRequest = from_json(&format!("{T}RegisterWorkerRequest"), r)?;
            to_json(&format!("{T}Worker"), &client.register_worker(req).await?)
        }
        "heartbeat" => {
            let req: tr::HeartbeatRequest = from_json(&format!("{T}HeartbeatRequest"), r)?;
            to_json(&format!("{T}HeartbeatResponse"), &client.heartbeat(req).await?)
        }
        "deregister_worker" => {
            let req: tr::DeregisterWorkerRequest = from_json(&format!("{T}DeregisterWorkerRequest"), r)?;
            to_json(&format!("{T}Worker"), &client.deregister_worker(&req.worker_id).await?)
        }
        "list_workers" => {
            let req: tr::ListWorkersRequest = from_json(&format!("{T}ListWorkersRequest"), r)?;
            to_json(&format!("{T}ListWorkersResponse"), &client.list_workers(req).await?)
        }
        "get_checkpoint" => {
            let req: tr::GetCheckpointRequest = from_json(&format!("{T}GetCheckpointRequest"), r)?;
            to_json(&format!("{T}Checkpoint"), &client.get_checkpoint(&req.checkpoint_id).await?)
        }
        "list_checkpoints" => {
            let req: tr::ListCheckpointsRequest = from_json(&format!("{T}ListCheckpointsRequest"), r)?;
            to_json(&format!("{T}ListCheckpointsResponse"), &client.list_checkpoints(req).await?)
        }
        "predict" => {
            let req: inf::PredictRequest = from_json(&format!("{I}PredictRequest"), r)?;
            to_json(&format!("{I}Prediction"), &client.predict(req).await?)
        }
        "predict_batch" => {
            let req: inf::PredictBatchRequest = from_json(&format!("{I}PredictBatchRequest"), r)?;
            to_json(&format!("{I}PredictBatchResponse"), &client.predict_batch(req).await?)
        }
        "record_feedback" => {
            let req: inf::RecordFeedbackRequest = from_json(&format!("{I}RecordFeedbackRequest"), r)?;
            to_json(&format!("{I}Feedback"), &client.record_feedback(req).await?)
        }
        "get_prediction" => {
            let req: inf::GetPredictionRequest = from_json(&format!("{I}GetPredictionRequest"), r)?;
            to_json(&format!("{I}Prediction"), &client.get_prediction(&req.prediction_id).await?)
        }
        "list_predictions" => {
            let req: inf::ListPredictionsRequest = from_json(&format!("{I}ListPredictionsRequest"), r)?;
            to_json(&format!("{I}ListPredictionsResponse"), &client.list_predictions(req).await?)
        }
        "get_traffic_policy" => {
            let req: inf::GetTrafficPolicyRequest = from_json(&format!("{I}GetTrafficPolicyRequest"), r)?;
            to_json(&format!("{I}TrafficPolicy"), &client.get_traffic_policy(&req.model).await?)
        }
        "set_traffic_policy" => {
            let req: inf::SetTrafficPolicyRequest = from_json(&format!("{I}SetTrafficPolicyRequest"), r)?;
            to_json(&format!("{I}TrafficPolicy"), &client.set_traffic_policy(req.policy.unwrap_or_default()).await?)
        }
        "get_serving_status" => {
            let req: inf::GetServingStatusRequest = from_json(&format!("{I}GetServingStatusRequest"), r)?;
            to_json(&format!("{I}ServingStatus"), &client.serving_status(&req.model).await?)
        }
        "refresh_model" => {
            let req: inf::RefreshModelRequest = from_json(&format!("{I}RefreshModelRequest"), r)?;
            to_json(&format!("{I}ModelServing"), &client.refresh_model(&req.model).await?)
        }
        "check_drift" => {
            let req: dr::CheckDriftRequest = from_json(&format!("{R}CheckDriftRequest"), r)?;
            to_json(&format!("{R}DriftReport"), &client.check_drift(req).await?)
        }
        "list_drift_reports" => {
            let req: dr::ListDriftReportsRequest = from_json(&format!("{R}ListDriftReportsRequest"), r)?;
            to_json(&format!("{R}ListDriftReportsResponse"), &client.list_drift_reports(req).await?)
        }
        "get_drift_report" => {
            let req: dr::GetDriftReportRequest = from_json(&format!("{R}GetDriftReportRequest"), r)?;
            to_json(&format!("{R}DriftReport"), &client.get_drift_report(&req.report_id).await?)
        }
        "set_baseline" => {
            let req: dr::SetBaselineRequest = from_json(&format!("{R}SetBaselineRequest"), r)?;
            to_json(&format!("{R}Baseline"), &client.set_baseline(req).await?)
        }
        "get_baseline" => {
            let req: dr::GetBaselineRequest = from_json(&format!("{R}GetBaselineRequest"), r)?;
            to_json(&format!("{R}Baseline"), &client.get_baseline(&req.model, req.version).await?)
        }
        "set_monitor" => {
            let req: dr::SetMonitorRequest = from_json(&format!("{R}SetMonitorRequest"), r)?;
            to_json(&format!("{R}Monitor"), &client.set_monitor(req.monitor.unwrap_or_default()).await?)
        }
        "get_monitor" => {
            let req: dr::GetMonitorRequest = from_json(&format!("{R}GetMonitorRequest"), r)?;
            to_json(&format!("{R}Monitor"), &client.get_monitor(&req.model).await?)
        }
        "list_monitors" => {
            let req: dr::ListMonitorsRequest = from_json(&format!("{R}ListMonitorsRequest"), r)?;
            let page = req.page.unwrap_or_default();
            to_json(&format!("{R}ListMonitorsResponse"), &client.list_monitors(&page.page_token, page.page_size).await?)
        }
        other => Err(ClientError::InvalidArgument(format!("method: unknown call '{other}'"))),
    }
}

/// Saves a checkpoint streamed from a file (read in 4 MiB pieces) or from
/// bytes; `header_json` is a `CheckpointHeader`. Answers the `Checkpoint` as
/// JSON.
pub(crate) async fn save_checkpoint(
    client: Client,
    header_json: String,
    path: Option<String>,
    data: Option<Vec<u8>>,
    idempotency_key: String,
) -> Result<String, ClientError> {
    const PIECE: usize = 4 << 20;
    let header: tr::CheckpointHeader = from_json("pulse.trainer.v1.CheckpointHeader", &header_json)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    match (path, data) {
        (Some(p), _) => {
            let mut file = std_file(p, false).await?;
            // A read error ends the data early; the size check then fails the
            // save on the server, so nothing partial is kept.
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                loop {
                    let mut buf = vec![0u8; PIECE];
                    let mut filled = 0;
                    while filled < PIECE {
                        match file.read(&mut buf[filled..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => filled += n,
                        }
                    }
                    buf.truncate(filled);
                    if filled == 0 || tx.send(buf).await.is_err() {
                        break;
                    }
                }
            });
        }
        (None, Some(d)) => {
            tokio::spawn(async move {
                for piece in d.chunks(PIECE) {
                    if tx.send(piece.to_vec()).await.is_err() {
                        break;
                    }
                }
            });
        }
        (None, None) => drop(tx),
    }
    let key = (!idempotency_key.is_empty()).then_some(idempotency_key);
    let ckpt = client.save_checkpoint(header, rx, key).await?;
    to_json("pulse.trainer.v1.Checkpoint", &ckpt)
}

/// Loads a checkpoint into a file (bounded memory) or into memory. Answers
/// the `Checkpoint` as JSON, and the bytes when no path was given.
pub(crate) async fn load_checkpoint(
    client: Client,
    request_json: String,
    path: Option<String>,
) -> Result<(String, Option<Vec<u8>>), ClientError> {
    use tokio::io::AsyncWriteExt;
    let req: tr::LoadCheckpointRequest = from_json("pulse.trainer.v1.LoadCheckpointRequest", &request_json)?;
    let mut stream = client.load_checkpoint(req).await?;
    let mut ckpt = None;
    let mut file = match &path {
        Some(p) => Some(std_file(p.clone(), true).await?),
        None => None,
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        if let Some(c) = chunk.checkpoint {
            ckpt = Some(c);
        }
        match &mut file {
            Some(f) => {
                f.write_all(&chunk.data).await.map_err(|e| ClientError::InvalidArgument(format!("path: {e}")))?
            }
            None => bytes.extend_from_slice(&chunk.data),
        }
    }
    if let Some(f) = &mut file {
        f.flush().await.map_err(|e| ClientError::InvalidArgument(format!("path: {e}")))?;
    }
    let ckpt = ckpt.ok_or_else(|| ClientError::InvalidArgument("the server sent no checkpoint description".into()))?;
    Ok((to_json("pulse.trainer.v1.Checkpoint", &ckpt)?, path.is_none().then_some(bytes)))
}

/// Opens (or creates) a file on a blocking thread: the future stays `Send`
/// for every lifetime, which tokio's borrowed-path `open` is not.
async fn std_file(path: String, create: bool) -> Result<tokio::fs::File, ClientError> {
    let p = path.clone();
    let opened =
        tokio::task::spawn_blocking(move || if create { std::fs::File::create(&p) } else { std::fs::File::open(&p) })
            .await
            .map_err(|e| ClientError::InvalidArgument(format!("path: {e}")))?;
    let file = opened.map_err(|e| {
        ClientError::InvalidArgument(format!("path: cannot {} {path}: {e}", if create { "create" } else { "open" }))
    })?;
    Ok(tokio::fs::File::from_std(file))
}
