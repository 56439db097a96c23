//! Training end to end on a real server: a CSV snapshot (datasource,
//! snapshot, trainer and lineage services on a real gRPC port), contracts,
//! training jobs on burn, the registry, evaluation and gated promotion,
//! driven by the client.

use std::time::{Duration, Instant};

use pulse_client::testing::{snapshot_csv, wait_training as wait};
use pulse_client::{Client, ClientError};
use pulse_common::testing::Sandbox;
use pulse_proto::common::v1::{DatasetVersionRef, JobStatus, ModelVersionRef};
use pulse_proto::tonic::Code;
use pulse_proto::trainer::v1 as tr;

async fn sandbox(roots: Vec<std::path::PathBuf>) -> Sandbox {
    Sandbox::start(
        false,
        move |c| {
            c.file_roots = roots;
            c.job_lease_seconds = 3;
        },
        async |platform| {
            let datasources = pulse_datasource::open(&platform).await.unwrap();
            let lineage = pulse_lineage::open(&platform).await.unwrap();
            let snapshots =
                pulse_snapshot::open(&platform, datasources.clone(), Some(lineage.clone()), true).await.unwrap();
            let trainer = pulse_trainer::open(&platform, snapshots.clone(), Some(lineage.clone()), true).await.unwrap();
            vec![
                pulse_datasource::hosted(datasources, &platform),
                pulse_snapshot::hosted(snapshots, &platform),
                pulse_trainer::hosted(trainer, &platform),
                pulse_lineage::hosted_with(lineage, &platform),
            ]
        },
    )
    .await
}

/// A deterministic pseudo-random stream (no dependency on a generator's
/// version).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Churn-like rows whose label depends on the features (a logistic model
/// can learn it), with nulls in `spend`.
fn write_churn(path: &std::path::Path, rows: usize, seed: u64) {
    let mut r = Lcg(seed);
    let mut text = String::from("id,tenure,spend,plan,vip,churned,segment,value\n");
    let plans = ["basic", "pro", "enterprise"];
    for id in 0..rows {
        let tenure = (r.next() * 60.0) as i64;
        let spend = 20.0 + r.next() * 80.0;
        let plan = plans[(r.next() * 3.0) as usize % 3];
        let vip = r.next() < 0.3;
        let z = 2.0 - 0.08 * tenure as f64 + 0.02 * (spend - 60.0) + if plan == "basic" { 0.8 } else { -0.4 }
            - if vip { 1.0 } else { 0.0 };
        let churned = r.next() < 1.0 / (1.0 + (-z).exp());
        // Three segments by tenure and spend, for a multiclass target.
        let segment = if tenure < 20 {
            "new"
        } else if spend > 60.0 {
            "loyal_high"
        } else {
            "loyal_low"
        };
        let value = 3.0 * tenure as f64 + 0.5 * spend + (r.next() - 0.5) * 4.0;
        let spend_text = if id % 17 == 0 { String::new() } else { format!("{spend:.2}") };
        text.push_str(&format!("{id},{tenure},{spend_text},{plan},{vip},{churned},{segment},{value:.3}\n"));
    }
    std::fs::write(path, text).unwrap();
}

const CHURN: &str = "
model: churn
task: binary_classification
target: {name: churned, type: bool}
features:
  - {name: tenure, type: int, nullable: false, min: 0, max: 600}
  - {name: spend, type: float, nullable: true, impute: median}
  - {name: plan, type: category, categories: [basic, pro, enterprise]}
  - {name: vip, type: bool}
rules:
  - {kind: min_rows, value: 100}
promotion:
  min_metrics: {roc_auc: 0.7}
";

fn params(pairs: &[(&str, prost_types::Value)]) -> prost_types::Struct {
    prost_types::Struct { fields: pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
}

fn num(n: f64) -> prost_types::Value {
    prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(n)) }
}

fn training(dataset: &DatasetVersionRef, model: &str, algorithm: tr::Algorithm, seed: u64) -> tr::StartTrainingRequest {
    tr::StartTrainingRequest {
        dataset: Some(dataset.clone()),
        model: model.into(),
        algorithm: algorithm as i32,
        params: Some(params(&[("epochs", num(8.0)), ("batch_size", num(64.0)), ("learning_rate", num(0.05))])),
        seed: Some(seed),
        ..Default::default()
    }
}

fn code(e: ClientError) -> (Code, String) {
    match e {
        ClientError::Status { code, message } => (code, message),
        other => panic!("expected a status, got {other:?}"),
    }
}

#[tokio::test]
async fn train_register_evaluate_promote_and_roll_back() {
    let data = tempfile::tempdir().unwrap();
    write_churn(&data.path().join("churn.csv"), 3000, 11);
    let sb = sandbox(vec![data.path().to_path_buf()]).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let dv = snapshot_csv(&client, data.path(), "churn.csv", "churn").await;

    // Contracts are versioned; the same YAML again is the same version.
    let c = client.register_contract(CHURN).await.unwrap();
    assert!(c.created);
    assert_eq!(c.contract.as_ref().unwrap().version, 1);
    let again = client.register_contract(CHURN).await.unwrap();
    assert!(!again.created);
    let listed = client.list_contracts(Default::default()).await.unwrap();
    let latest: Vec<(String, u32)> = listed.contracts.iter().map(|c| (c.model.clone(), c.version)).collect();
    assert_eq!(latest, vec![("churn".to_string(), 1)], "the latest contract of every model");
    assert_eq!(again.contract.unwrap().sha256, c.contract.unwrap().sha256);
    let report = client
        .validate_dataset(tr::ValidateDatasetRequest {
            dataset: Some(dv.clone()),
            model: "churn".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.passed, "{report:?}");
    assert_eq!(report.rows_checked, 3000);

    // Train; the same seed trains the same bytes; another seed does not.
    let job = client.start_training(training(&dv, "churn", tr::Algorithm::LogisticRegression, 7), "").await.unwrap();
    assert_eq!(job.status, JobStatus::Queued as i32);
    let first = wait(&client, &job.id).await;
    assert_eq!(first.status, JobStatus::Succeeded as i32, "{first:?}");
    let m = first.metrics.clone().unwrap();
    assert!(m.accuracy.unwrap() > 0.7, "{m:?}");
    assert!(m.roc_auc.unwrap() > 0.75, "{m:?}");
    assert_eq!(m.confusion_matrix.as_ref().unwrap().counts.iter().sum::<u64>(), m.samples);
    assert!((430..=470).contains(&m.samples), "a 15% test split of 3000 rows: {}", m.samples);
    let progress = first.progress.clone().unwrap();
    assert_eq!((progress.done, progress.total), (progress.total, 8 * 2100u64.div_ceil(64)));
    assert!(first.latest.as_ref().unwrap().validation_loss.is_some());
    assert!(!first.last_checkpoint_id.is_empty(), "every epoch checkpoints by default");
    assert_eq!(first.model_version, Some(ModelVersionRef { model: "churn".into(), version: 1 }));
    let second = wait(
        &client,
        &client.start_training(training(&dv, "churn", tr::Algorithm::LogisticRegression, 7), "").await.unwrap().id,
    )
    .await;
    assert_eq!(second.artifact_sha256, first.artifact_sha256, "same data, contract, parameters and seed");
    let third = wait(
        &client,
        &client.start_training(training(&dv, "churn", tr::Algorithm::LogisticRegression, 8), "").await.unwrap().id,
    )
    .await;
    assert_ne!(third.artifact_sha256, first.artifact_sha256);

    let model = client.get_model("churn").await.unwrap();
    assert_eq!((model.latest_version, model.production_version), (3, 0));
    let v1 = client
        .get_model_version(tr::GetModelVersionRequest { model: "churn".into(), version: 1, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(v1.stage, tr::ModelStage::Candidate as i32);
    assert_eq!(v1.dataset, Some(dv.clone()));
    assert_eq!(v1.artifact_sha256, first.artifact_sha256);
    // The dataset version is held: retention cannot delete it.
    let held = client.get_dataset_version("churn", dv.version).await.unwrap();
    assert!(held.holds.iter().any(|h| h.holder == "model:churn@1"), "{:?}", held.holds);

    // Evaluation on the held-out split reproduces the training metrics.
    let ev = client
        .evaluate_model(tr::EvaluateModelRequest {
            model_version: Some(ModelVersionRef { model: "churn".into(), version: 1 }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ev.split, "test");
    assert_eq!(ev.metrics.unwrap().accuracy, m.accuracy);

    // Gates: a minimum above what the model reaches refuses promotion,
    // naming the gate and by how much.
    let strict = CHURN.replace("roc_auc: 0.7", "roc_auc: 0.99");
    client.register_contract(&strict).await.unwrap();
    let versions =
        client.list_contracts(tr::ListContractsRequest { model: "churn".into(), ..Default::default() }).await.unwrap();
    assert_eq!(versions.contracts.iter().map(|c| c.version).collect::<Vec<_>>(), vec![2, 1], "newest first");
    let promote = |version: u64, force: bool| tr::PromoteModelRequest {
        model_version: Some(ModelVersionRef { model: "churn".into(), version }),
        force,
        reason: if force { "approved by the risk team".into() } else { String::new() },
        ..Default::default()
    };
    // v1 was trained under contract v1 (min 0.7): it passes.
    let ok = client.promote_model(promote(1, false)).await.unwrap();
    assert!(ok.promoted, "{ok:?}");
    assert!(ok.gates.iter().any(|g| g.name == "min_metric:roc_auc" && g.passed));
    // Train under the strict contract v2: its gate refuses.
    let strict_job = wait(
        &client,
        &client.start_training(training(&dv, "churn", tr::Algorithm::LogisticRegression, 9), "").await.unwrap().id,
    )
    .await;
    let v4 = strict_job.model_version.unwrap().version;
    let refused = client.promote_model(promote(v4, false)).await.unwrap();
    assert!(!refused.promoted);
    assert!(
        refused.refusal.contains("roc_auc") && refused.refusal.contains("below the minimum 0.9900"),
        "{}",
        refused.refusal
    );
    let e =
        code(client.promote_model(tr::PromoteModelRequest { force: true, ..promote(v4, false) }).await.unwrap_err());
    assert_eq!(e.0, Code::InvalidArgument);
    assert!(e.1.contains("reason"), "{}", e.1);
    let forced = client.promote_model(promote(v4, true)).await.unwrap();
    assert!(forced.promoted);
    assert!(forced.change.as_ref().unwrap().forced);
    let model = client.get_model("churn").await.unwrap();
    assert_eq!(model.production_version, v4);
    let archived = client
        .get_model_version(tr::GetModelVersionRequest { model: "churn".into(), version: 1, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(archived.stage, tr::ModelStage::Archived as i32, "the replaced production version is archived");
    let e = code(client.promote_model(promote(1, false)).await.unwrap_err());
    assert_eq!(e.0, Code::FailedPrecondition);

    // Rollback restores the previous production version.
    let back = client
        .rollback_model(tr::RollbackModelRequest {
            model: "churn".into(),
            reason: "bad canary".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(back.production.unwrap().r#ref.unwrap().version, 1);
    assert_eq!(client.get_model("churn").await.unwrap().production_version, 1);
    let e = code(
        client
            .rollback_model(tr::RollbackModelRequest { model: "churn".into(), to_version: 2, ..Default::default() })
            .await
            .unwrap_err(),
    );
    assert_eq!(e.0, Code::FailedPrecondition, "v2 was never in production");

    // Lineage: dataset version → training run → model version.
    let t = client.trace("model:churn@1", pulse_proto::lineage::v1::Direction::Upstream, 10, 100).await.unwrap();
    let ids: Vec<String> = t.nodes.iter().map(|n| n.id.clone()).collect();
    let dv_id = format!("churn@{}", dv.version);
    assert!(ids.contains(&first.id) && ids.contains(&dv_id), "{ids:?}");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_work_and_tenants_are_isolated() {
    let data = tempfile::tempdir().unwrap();
    write_churn(&data.path().join("churn.csv"), 400, 3);
    let sb = sandbox(vec![data.path().to_path_buf()]).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let other = Client::connect(&sb.endpoint, Some(&sb.tenant_b.1)).await.unwrap();
    let dv = snapshot_csv(&client, data.path(), "churn.csv", "churn").await;

    // Malformed contracts name the YAML path.
    for (yaml, needle) in [
        (CHURN.replace("max: 600", "max: -1"), "features[0]"),
        (CHURN.replace("type: bool}\nfeatures", "type: text}\nfeatures"), "target"),
        ("model: [unclosed".to_string(), "yaml"),
    ] {
        let e = code(client.register_contract(&yaml).await.unwrap_err());
        assert_eq!(e.0, Code::InvalidArgument, "{yaml}");
        assert!(e.1.contains(needle), "{needle}: {}", e.1);
    }
    client.register_contract(CHURN).await.unwrap();

    let base = training(&dv, "churn", tr::Algorithm::LogisticRegression, 1);
    let cases: Vec<(tr::StartTrainingRequest, Code, &str)> = vec![
        (
            tr::StartTrainingRequest { params: Some(params(&[("epochz", num(3.0))])), ..base.clone() },
            Code::InvalidArgument,
            "params.epochz",
        ),
        (
            tr::StartTrainingRequest { params: Some(params(&[("epochs", num(0.0))])), ..base.clone() },
            Code::InvalidArgument,
            "params.epochs",
        ),
        (
            tr::StartTrainingRequest { algorithm: tr::Algorithm::LinearRegression as i32, ..base.clone() },
            Code::InvalidArgument,
            "algorithm",
        ),
        (tr::StartTrainingRequest { target: "tenure".into(), ..base.clone() }, Code::InvalidArgument, "target"),
        (
            tr::StartTrainingRequest {
                dataset: Some(DatasetVersionRef { dataset_id: "churn".into(), version: 0 }),
                ..base.clone()
            },
            Code::InvalidArgument,
            "dataset.version",
        ),
        (
            tr::StartTrainingRequest {
                dataset: Some(DatasetVersionRef { dataset_id: "nope".into(), version: 1 }),
                ..base.clone()
            },
            Code::NotFound,
            "nope",
        ),
        (tr::StartTrainingRequest { model: "unknown".into(), ..base.clone() }, Code::NotFound, "unknown"),
        (
            tr::StartTrainingRequest {
                split: Some(tr::Split { train: 0.9, validation: 0.1, test: 0.0, stratify: None }),
                ..base.clone()
            },
            Code::InvalidArgument,
            "split.test",
        ),
    ];
    for (req, want, needle) in cases {
        let e = code(client.start_training(req, "").await.unwrap_err());
        assert_eq!(e.0, want, "{needle}: {}", e.1);
        assert!(e.1.contains(needle), "{needle}: {}", e.1);
    }
    assert!(client.list_training_jobs(Default::default()).await.unwrap().jobs.is_empty(), "nothing was queued");

    // A dataset that breaks the contract fails the job with the report.
    let strict = CHURN.replace("max: 600", "max: 10");
    client.register_contract(&strict).await.unwrap();
    let job = wait(&client, &client.start_training(base.clone(), "").await.unwrap().id).await;
    assert_eq!(job.status, JobStatus::Failed as i32, "{job:?}");
    let err = job.error.unwrap();
    assert_eq!(err.code, "FAILED_PRECONDITION");
    assert!(err.message.contains("tenure"), "{}", err.message);
    let report = job.validation.unwrap();
    assert!(!report.passed);
    let v = report.violations.iter().find(|v| v.column == "tenure" && v.rule == "max").unwrap();
    assert!(v.count > 0 && !v.examples.is_empty(), "{v:?}");
    // Retry re-queues a failed job; any other status cannot be retried.
    let e = code(client.retry_training_job("trn_00000000000000000000000000").await.unwrap_err());
    assert_eq!(e.0, Code::NotFound);

    // Another tenant sees none of it.
    let e = code(other.get_training_job(&job.id).await.unwrap_err());
    assert_eq!(e.0, Code::NotFound);
    let e = code(other.get_contract("churn", 0).await.unwrap_err());
    assert_eq!(e.0, Code::NotFound);
    let e = code(other.start_training(base, "").await.unwrap_err());
    assert_eq!(e.0, Code::NotFound, "tenant B cannot train on tenant A's dataset");
}

#[tokio::test]
async fn mlp_multiclass_regression_and_cancel() {
    let data = tempfile::tempdir().unwrap();
    write_churn(&data.path().join("churn.csv"), 2000, 5);
    let sb = sandbox(vec![data.path().to_path_buf()]).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let dv = snapshot_csv(&client, data.path(), "churn.csv", "churn").await;
    client
        .register_contract(
            "model: segments\ntask: multiclass_classification\ntarget: {name: segment, type: category}\n\
             features:\n  - {name: tenure, type: int}\n  - {name: spend, type: float, nullable: true}\n",
        )
        .await
        .unwrap();
    let mut req = training(&dv, "segments", tr::Algorithm::MlpClassifier, 3);
    req.params = Some(params(&[
        ("epochs", num(15.0)),
        ("batch_size", num(64.0)),
        ("learning_rate", num(0.01)),
        (
            "hidden_layers",
            prost_types::Value {
                kind: Some(prost_types::value::Kind::ListValue(prost_types::ListValue { values: vec![num(16.0)] })),
            },
        ),
    ]));
    let job = wait(&client, &client.start_training(req, "").await.unwrap().id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    let m = job.metrics.unwrap();
    assert_eq!(m.per_class.len(), 3);
    assert!(m.accuracy.unwrap() > 0.8, "{m:?}");

    client
        .register_contract(
            "model: value\ntask: regression\ntarget: {name: value, type: float}\n\
             features:\n  - {name: tenure, type: int}\n  - {name: spend, type: float, nullable: true}\n",
        )
        .await
        .unwrap();
    let mut req = training(&dv, "value", tr::Algorithm::LinearRegression, 3);
    req.params = Some(params(&[("epochs", num(30.0)), ("learning_rate", num(0.05))]));
    let job = wait(&client, &client.start_training(req, "").await.unwrap().id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    let m = job.metrics.unwrap();
    assert!(m.r2.unwrap() > 0.95, "{m:?}");
    assert!(m.rmse.unwrap() < 10.0, "{m:?}");

    // Cancel stops a running job at its next step.
    let mut req = training(&dv, "segments", tr::Algorithm::MlpClassifier, 4);
    req.params =
        Some(params(&[("epochs", num(5000.0)), ("batch_size", num(16.0)), ("early_stopping_patience", num(0.0))]));
    let job = client.start_training(req, "").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get_training_job(&job.id).await.unwrap().status != JobStatus::Running as i32 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let canceling = client.cancel_training_job(&job.id, "enough").await.unwrap();
    assert_eq!(canceling.status, JobStatus::Canceling as i32);
    let done = wait(&client, &job.id).await;
    assert_eq!(done.status, JobStatus::Canceled as i32, "{done:?}");
    assert!(done.model_version.is_none());
    let e = code(client.cancel_training_job(&job.id, "").await.unwrap_err());
    assert_eq!(e.0, Code::FailedPrecondition);
}

#[tokio::test]
async fn external_workers_heartbeat_and_checkpoint_in_parts() {
    let sb = sandbox(Vec::new()).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let other = Client::connect(&sb.endpoint, Some(&sb.tenant_b.1)).await.unwrap();
    let register = |id: &str| tr::RegisterWorkerRequest {
        worker_id: id.into(),
        heartbeat_timeout: Some(prost_types::Duration { seconds: 5, nanos: 0 }),
        ..Default::default()
    };
    let e = code(client.register_worker(register("bad id!")).await.unwrap_err());
    assert_eq!(e.0, Code::InvalidArgument);
    let w = client.register_worker(register("loop-1")).await.unwrap();
    assert_eq!(w.state, tr::WorkerState::Active as i32);
    assert_eq!(w.kind, tr::WorkerKind::External as i32);

    // 20 MiB in 1 MiB messages: stored as three parts, read back intact.
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let sha = pulse_trainer::artifact::sha256_hex(&data);
    let header = |sha: &str| tr::CheckpointHeader {
        owner: Some(tr::checkpoint_header::Owner::WorkerId("loop-1".into())),
        sha256: sha.into(),
        size_bytes: Some(data.len() as u64),
        ..Default::default()
    };
    let pieces: Vec<Vec<u8>> = data.chunks(1 << 20).map(<[u8]>::to_vec).collect();
    let feed = |pieces: Vec<Vec<u8>>| {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            for p in pieces {
                tx.send(p).await.unwrap();
            }
        });
        rx
    };
    let ckpt = client.save_checkpoint(header(&sha), feed(pieces.clone()), None).await.unwrap();
    assert_eq!((ckpt.size_bytes, ckpt.parts, ckpt.sequence), (data.len() as u64, 3, 1));
    assert_eq!(ckpt.sha256, sha);
    let load = |offset: u64| tr::LoadCheckpointRequest {
        target: Some(tr::load_checkpoint_request::Target::LatestForWorker("loop-1".into())),
        offset,
    };
    let mut stream = client.load_checkpoint(load(0)).await.unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.checkpoint.unwrap().id, ckpt.id);
    let mut back = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        assert_eq!(c.offset, back.len() as u64);
        back.extend_from_slice(&c.data);
    }
    assert!(back == data, "the checkpoint reads back byte for byte");
    // Resuming a broken download from an offset.
    let mut stream = client.load_checkpoint(load(9 << 20)).await.unwrap();
    stream.message().await.unwrap();
    let mut tail = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        tail.extend_from_slice(&c.data);
    }
    assert!(tail == data[9 << 20..]);

    // A wrong SHA-256 keeps nothing.
    let e = code(client.save_checkpoint(header(&"0".repeat(64)), feed(pieces.clone()), None).await.unwrap_err());
    assert_eq!(e.0, Code::DataLoss, "{}", e.1);
    let listed = |client: Client| async move {
        client
            .list_checkpoints(tr::ListCheckpointsRequest { worker_id: "loop-1".into(), ..Default::default() })
            .await
            .unwrap()
            .checkpoints
    };
    assert_eq!(listed(client.clone()).await.len(), 1);

    // An idempotency key: the retry (with or without the header's SHA-256)
    // answers the first checkpoint and stores nothing; other bytes under the
    // same key are refused.
    let key = || Some("ckpt-key-1".to_string());
    let plain = || tr::CheckpointHeader {
        owner: Some(tr::checkpoint_header::Owner::WorkerId("loop-1".into())),
        ..Default::default()
    };
    let keyed = client.save_checkpoint(plain(), feed(pieces[..2].to_vec()), key()).await.unwrap();
    assert_eq!(keyed.sequence, 2);
    let retry = client.save_checkpoint(plain(), feed(pieces[..2].to_vec()), key()).await.unwrap();
    assert_eq!(retry, keyed);
    let two_mib_sha = pulse_trainer::artifact::sha256_hex(&data[..2 << 20]);
    let mut with_sha = header(&two_mib_sha);
    with_sha.size_bytes = Some(2 << 20);
    assert_eq!(client.save_checkpoint(with_sha, feed(pieces[..2].to_vec()), key()).await.unwrap(), keyed);
    let e = code(client.save_checkpoint(plain(), feed(pieces[..1].to_vec()), key()).await.unwrap_err());
    assert_eq!(e.0, Code::FailedPrecondition);
    assert!(e.1.contains("ckpt-key-1") && e.1.contains("new key"), "{}", e.1);
    assert_eq!(listed(client.clone()).await.len(), 2, "retries stored nothing");
    // Another tenant sees neither the worker nor the checkpoint.
    assert_eq!(code(other.get_checkpoint(&ckpt.id).await.unwrap_err()).0, Code::NotFound);
    assert_eq!(
        code(
            other
                .heartbeat(tr::HeartbeatRequest { worker_id: "loop-1".into(), ..Default::default() })
                .await
                .unwrap_err()
        )
        .0,
        Code::NotFound
    );

    // Silent past its timeout: lost, and its heartbeat is refused.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let e = code(
        client.heartbeat(tr::HeartbeatRequest { worker_id: "loop-1".into(), ..Default::default() }).await.unwrap_err(),
    );
    assert_eq!(e.0, Code::FailedPrecondition);
    assert!(e.1.contains("lost"), "{}", e.1);
    let again = client.register_worker(register("loop-1")).await.unwrap();
    assert_eq!(again.state, tr::WorkerState::Active as i32);
    assert!(sb.metrics().await.contains("pulse_checkpoints_saved_total 2"));
}
