//! Helpers for end-to-end tests that drive a real server through the client
//! (feature `testing`): snapshot a CSV file, wait for a training job.

use std::time::{Duration, Instant};

use pulse_proto::common::v1::{DatasetVersionRef, JobStatus};
use pulse_proto::datasource::v1 as ds;
use pulse_proto::snapshot::v1 as sn;
use pulse_proto::trainer::v1 as tr;

use crate::Client;

/// Registers the directory `dir` as an object-storage datasource allowing
/// `file`, snapshots it as `dataset`, and waits for the version.
pub async fn snapshot_csv(client: &Client, dir: &std::path::Path, file: &str, dataset: &str) -> DatasetVersionRef {
    let d = client
        .register_datasource(
            ds::RegisterDatasourceRequest {
                name: format!("{dataset}-files"),
                connector: ds::ConnectorKind::ObjectStorage as i32,
                connection: Some(ds::ConnectionSpec {
                    spec: Some(ds::connection_spec::Spec::ObjectStorage(ds::ObjectStorageConnection {
                        uri: format!("file://{}/", dir.display()),
                        ..Default::default()
                    })),
                }),
                allowlist: Some(ds::Allowlist { paths: vec![file.into()], ..Default::default() }),
                ..Default::default()
            },
            "",
        )
        .await
        .expect("datasource registers");
    let job = client
        .start_extraction(
            sn::StartExtractionRequest {
                datasource_id: d.id,
                object: file.into(),
                dataset: dataset.into(),
                mode: sn::ExtractionMode::Full as i32,
                ..Default::default()
            },
            "",
        )
        .await
        .expect("extraction starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = client.get_extraction_job(&job.id).await.expect("job reads");
        if j.status == JobStatus::Succeeded as i32 {
            return j.result.expect("a version");
        }
        assert!(j.status != JobStatus::Failed as i32, "{j:?}");
        assert!(Instant::now() < deadline, "extraction did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a training job to end (any final status).
pub async fn wait_training(client: &Client, job_id: &str) -> tr::TrainingJob {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job = client.get_training_job(job_id).await.expect("job reads");
        let status = JobStatus::try_from(job.status).unwrap_or_default();
        if matches!(status, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled) {
            return job;
        }
        assert!(Instant::now() < deadline, "training did not finish: {job:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The churn contract the serving and drift end-to-end tests train under.
pub const CHURN_CONTRACT: &str = "
model: churn
task: binary_classification
target: {name: churned, type: bool}
features:
  - {name: tenure, type: int, min: 0, max: 600}
  - {name: spend, type: float, nullable: true, impute: median}
  - {name: plan, type: category, categories: [basic, pro]}
";

/// The code and message of a failed call (panics on any other error).
pub fn status(e: crate::ClientError) -> (pulse_proto::tonic::Code, String) {
    match e {
        crate::ClientError::Status { code, message } => (code, message),
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Trains a logistic regression of `model` on `data` (learning rate 0.05)
/// and waits for it to succeed; answers the new version.
pub async fn train_logistic(client: &Client, data: &DatasetVersionRef, model: &str, seed: u64, epochs: f64) -> u64 {
    let num = |n: f64| prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(n)) };
    let job = client
        .start_training(
            tr::StartTrainingRequest {
                dataset: Some(data.clone()),
                model: model.into(),
                algorithm: tr::Algorithm::LogisticRegression as i32,
                params: Some(prost_types::Struct {
                    fields: [("epochs".to_string(), num(epochs)), ("learning_rate".to_string(), num(0.05))].into(),
                }),
                seed: Some(seed),
                ..Default::default()
            },
            "",
        )
        .await
        .expect("training starts");
    let job = wait_training(client, &job.id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    job.model_version.expect("a model version").version
}

/// Promotes `model`@`version` to production, skipping the gates.
pub async fn promote(client: &Client, model: &str, version: u64) {
    client
        .promote_model(tr::PromoteModelRequest {
            model_version: Some(pulse_proto::common::v1::ModelVersionRef { model: model.into(), version }),
            stage: tr::ModelStage::Production as i32,
            force: true,
            reason: "test".into(),
            ..Default::default()
        })
        .await
        .expect("promotion");
}
