//! What a fired retraining policy starts: the built-in `retrain` pipeline
//! with inputs read from how the production version was made (its dataset's
//! last extraction, its algorithm and parameters) and the policy's
//! `retrain` overrides, or the policy's own pipeline.

use pulse_common::json;
use pulse_proto::common::v1::JobStatus;
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::RunOrigin;
use pulse_proto::snapshot::v1::{ExtractionMode, ListExtractionJobsRequest};
use pulse_proto::trainer::v1::{Algorithm, ModelStage};
use pulse_snapshot::Snapshots;
use pulse_trainer::Trainer;

use crate::error::DriftError;
use crate::pipeline::{Pipelines, RunRequest, definition};
use crate::policy::RunStarter;

#[derive(Clone)]
pub struct PolicyRuns {
    pipelines: Pipelines,
    trainer: Trainer,
    snapshots: Snapshots,
}

impl PolicyRuns {
    pub fn new(pipelines: Pipelines, trainer: Trainer, snapshots: Snapshots) -> Self {
        Self { pipelines, trainer, snapshots }
    }

    /// The built-in pipeline's inputs for `model`.
    pub async fn retrain_inputs(
        &self,
        tenant: &str,
        model: &str,
        spec: &pb::RetrainSpec,
    ) -> Result<serde_json::Map<String, serde_json::Value>, DriftError> {
        let production = self.trainer.model_version(tenant, model, 0, ModelStage::Production).await.map_err(|_| {
            DriftError::Precondition(format!(
                "model '{model}' has no production version to retrain from; train and promote one first"
            ))
        })?;
        if spec.skip_extraction {
            return Err(DriftError::invalid(
                "policy.retrain.skip_extraction",
                "is not supported by the built-in pipeline yet; leave it unset (an incremental extraction with no new rows is quick), or name your own pipeline",
            ));
        }
        let dataset_id = if spec.dataset_id.is_empty() {
            production.dataset.as_ref().map(|d| d.dataset_id.clone()).unwrap_or_default()
        } else {
            spec.dataset_id.clone()
        };
        let (jobs, _) = self
            .snapshots
            .list_jobs(
                tenant,
                ListExtractionJobsRequest {
                    dataset_id: dataset_id.clone(),
                    status: JobStatus::Succeeded as i32,
                    ..Default::default()
                },
            )
            .await?;
        let last = jobs.into_iter().next().ok_or_else(|| {
            DriftError::Precondition(format!(
                "dataset {dataset_id} has no successful extraction to repeat; snapshot it once with create_snapshot"
            ))
        })?;
        let mode = match ExtractionMode::try_from(spec.mode).unwrap_or_default() {
            ExtractionMode::Unspecified if !last.cursor_field.is_empty() => ExtractionMode::Incremental,
            ExtractionMode::Unspecified => ExtractionMode::Full,
            m => m,
        };
        let extraction = serde_json::json!({
            "datasource_id": last.datasource_id,
            "object": last.object,
            "dataset": dataset_id,
            "mode": mode.as_str_name(),
            "cursor_field": last.cursor_field,
            "primary_key": last.primary_key,
            "columns": last.columns,
            "parallelism": last.parallelism,
            "partition_column": last.partition_column,
        });
        let algorithm = match Algorithm::try_from(spec.algorithm).unwrap_or_default() {
            Algorithm::Unspecified => Algorithm::try_from(production.algorithm).unwrap_or_default(),
            a => a,
        };
        let params = spec.params.as_ref().or(production.params.as_ref()).map(json::to_json).unwrap_or_default();
        let stage = match ModelStage::try_from(spec.promote_to).unwrap_or_default() {
            ModelStage::Unspecified => ModelStage::Production,
            s => s,
        };
        let mut inputs = serde_json::Map::new();
        inputs.insert("model".into(), model.into());
        inputs.insert("extraction".into(), extraction);
        inputs.insert("algorithm".into(), algorithm.as_str_name().into());
        inputs.insert("params".into(), if params.is_null() { serde_json::json!({}) } else { params });
        inputs.insert("stage".into(), stage.as_str_name().into());
        Ok(inputs)
    }
}

#[async_trait::async_trait]
impl RunStarter for PolicyRuns {
    async fn start_policy_run(
        &self,
        tenant: &str,
        policy: &pb::RetrainingPolicy,
        decision: &pb::PolicyDecision,
    ) -> Result<String, DriftError> {
        let reasons: Vec<String> = decision.triggers.iter().filter(|t| t.met).map(|t| t.reason.clone()).collect();
        let (pipeline, mut inputs) = if policy.pipeline_id.is_empty() {
            let mut p = definition::built_in_retrain();
            p.id = definition::BUILT_IN.into();
            let spec = policy.retrain.clone().unwrap_or_default();
            (p, self.retrain_inputs(tenant, &policy.model, &spec).await?)
        } else {
            let p = self.pipelines.get(tenant, &policy.pipeline_id).await?;
            let mut inputs = serde_json::Map::new();
            inputs.insert("model".into(), policy.model.clone().into());
            (p, inputs)
        };
        inputs.insert("policy_decision_id".into(), decision.id.clone().into());
        inputs.insert("reasons".into(), reasons.into());
        let at = decision.decided_at.as_ref().map(|t| t.seconds * 1000).unwrap_or(0);
        let run = self
            .pipelines
            .start(
                tenant,
                &pipeline,
                RunRequest {
                    inputs,
                    origin: RunOrigin::Policy,
                    policy_decision_id: decision.id.clone(),
                    derived_id: Some((at, format!("policy decision {}", decision.id))),
                    ..Default::default()
                },
            )
            .await?;
        Ok(run.id)
    }
}
