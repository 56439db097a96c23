//! Serving end to end on a real server: a CSV snapshot, a trained and
//! promoted model, then predictions (single, batch, stream), the cache,
//! micro-batching, bad input, feedback, a promotion under load with no
//! failed request, a canary and a shadow — all through the client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pulse_client::Client;
use pulse_client::testing::{
    self, CHURN_CONTRACT as CONTRACT, snapshot_csv, status as code, train_logistic, wait_training,
};
use pulse_common::testing::Sandbox;
use pulse_proto::common::v1::{DatasetVersionRef, JobStatus, ModelVersionRef};
use pulse_proto::inference::v1::{self as inf, feature_value::Kind};
use pulse_proto::tonic::Code;
use pulse_proto::trainer::v1 as tr;

async fn sandbox() -> Sandbox {
    Sandbox::start(
        false,
        |c| {
            c.file_roots = vec![std::env::temp_dir()];
            c.inference_max_batch_rows = 100;
            c.inference_max_batch_wait_us = 2000;
            c.model_poll_ms = 200;
        },
        async |platform| {
            let datasources = pulse_datasource::open(&platform).await.unwrap();
            let lineage = pulse_lineage::open(&platform).await.unwrap();
            let snapshots =
                pulse_snapshot::open(&platform, datasources.clone(), Some(lineage.clone()), true).await.unwrap();
            let trainer = pulse_trainer::open(&platform, snapshots.clone(), Some(lineage.clone()), true).await.unwrap();
            let inference = pulse_inference::open(&platform, trainer.clone(), Some(lineage.clone())).await.unwrap();
            vec![
                pulse_datasource::hosted(datasources, &platform),
                pulse_snapshot::hosted(snapshots, &platform),
                pulse_trainer::hosted(trainer, &platform),
                pulse_lineage::hosted_with(lineage, &platform),
                pulse_inference::hosted(inference, &platform),
            ]
        },
    )
    .await
}

fn write_csv(path: &std::path::Path, rows: usize) {
    let mut s = 7u64;
    let mut next = || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::from("tenure,spend,plan,churned\n");
    for _ in 0..rows {
        let tenure = (next() * 60.0) as i64;
        let spend = 20.0 + next() * 80.0;
        let plan = if next() < 0.5 { "basic" } else { "pro" };
        let z = 2.0 - 0.08 * tenure as f64 + 0.02 * (spend - 60.0) + if plan == "basic" { 0.8 } else { -0.4 };
        let churned = next() < 1.0 / (1.0 + (-z).exp());
        text.push_str(&format!("{tenure},{spend:.2},{plan},{churned}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn row(tenure: i64, spend: Option<f64>, plan: &str) -> inf::Row {
    let v = |k: Kind| inf::FeatureValue { kind: Some(k) };
    inf::Row {
        features: BTreeMap::from([
            ("tenure".to_string(), v(Kind::IntValue(tenure))),
            ("spend".to_string(), inf::FeatureValue { kind: spend.map(Kind::FloatValue) }),
            ("plan".to_string(), v(Kind::CategoryValue(plan.into()))),
        ]),
    }
}

fn predict(model: &str, r: inf::Row) -> inf::PredictRequest {
    inf::PredictRequest { model: model.into(), row: Some(r), ..Default::default() }
}

async fn train(client: &Client, data: &DatasetVersionRef, seed: u64, epochs: f64) -> u64 {
    train_logistic(client, data, "churn", seed, epochs).await
}

async fn promote(client: &Client, version: u64) {
    testing::promote(client, "churn", version).await
}

#[tokio::test]
async fn predict_feedback_swap_canary_and_shadow() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    write_csv(&dir.path().join("churn.csv"), 600);
    let sb = sandbox().await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let other = Client::connect(&sb.endpoint, Some(&sb.tenant_b.1)).await.unwrap();
    let data = snapshot_csv(&client, dir.path(), "churn.csv", "churn").await;
    client.register_contract(CONTRACT).await.unwrap();

    // Unknown model, then a model with no production version.
    assert_eq!(code(client.predict(predict("nope", row(3, Some(50.0), "pro"))).await.unwrap_err()).0, Code::NotFound);
    let v1 = train(&client, &data, 1, 6.0).await;
    let e = code(client.predict(predict("churn", row(3, Some(50.0), "pro"))).await.unwrap_err());
    assert_eq!(e.0, Code::FailedPrecondition, "{}", e.1);
    assert!(e.1.contains("no production version"), "{}", e.1);
    promote(&client, v1).await;

    // One row: a label, probabilities summing to 1, the version that answered.
    let p = client.predict(predict("churn", row(3, Some(90.0), "basic"))).await.unwrap();
    assert_eq!(p.model_version.as_ref().unwrap().version, v1);
    assert_eq!(p.role, inf::ServingRole::Primary as i32);
    assert!(p.id.starts_with("prd_") && !p.cache_hit);
    assert!((p.probabilities.values().sum::<f64>() - 1.0).abs() < 1e-6, "{:?}", p.probabilities);
    assert_eq!(p.label, "true", "a new customer on the basic plan churns: {:?}", p.probabilities);
    let loyal = client.predict(predict("churn", row(59, Some(20.0), "pro"))).await.unwrap();
    assert_eq!(loyal.label, "false", "{:?}", loyal.probabilities);
    // The same input again is a cache hit with the same answer; bypass skips it.
    let again = client.predict(predict("churn", row(3, Some(90.0), "basic"))).await.unwrap();
    assert!(again.cache_hit && again.probabilities == p.probabilities && again.id != p.id);
    let mut bypass = predict("churn", row(3, Some(90.0), "basic"));
    bypass.bypass_cache = true;
    assert!(!client.predict(bypass).await.unwrap().cache_hit);
    // A null spend is imputed (the feature is nullable).
    client.predict(predict("churn", row(10, None, "pro"))).await.unwrap();

    // Bad input: every problem listed.
    let mut bad = row(-3, Some(50.0), "gold");
    bad.features.remove("spend");
    bad.features.insert("colour".into(), inf::FeatureValue { kind: Some(Kind::BoolValue(true)) });
    let e = code(client.predict(predict("churn", bad)).await.unwrap_err());
    assert_eq!(e.0, Code::InvalidArgument);
    for part in
        ["tenure: -3 is below min 0", "spend: is missing", "plan: 'gold' is not one of", "colour: is not a feature"]
    {
        assert!(e.1.contains(part), "{part} in {}", e.1);
    }
    let mut wrong_type = row(3, Some(50.0), "pro");
    wrong_type.features.insert("tenure".into(), inf::FeatureValue { kind: Some(Kind::CategoryValue("3".into())) });
    let e = code(client.predict(predict("churn", wrong_type)).await.unwrap_err());
    assert!(e.0 == Code::InvalidArgument && e.1.contains("tenure: is a string, the contract says an int"), "{}", e.1);
    // Another tenant does not see the model.
    assert_eq!(code(other.predict(predict("churn", row(3, Some(50.0), "pro"))).await.unwrap_err()).0, Code::NotFound);

    // A batch: in order, the same answers as single predictions; over the
    // limit is refused naming it.
    let rows: Vec<inf::Row> =
        (0..50).map(|i| row(i, Some(20.0 + i as f64), if i % 2 == 0 { "basic" } else { "pro" })).collect();
    let batch = client
        .predict_batch(inf::PredictBatchRequest {
            model: "churn".into(),
            input: Some(inf::predict_batch_request::Input::Rows(inf::Rows { rows: rows.clone() })),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(batch.predictions.len(), 50);
    for i in [0usize, 17, 49] {
        let mut single = predict("churn", rows[i].clone());
        single.bypass_cache = true;
        let one = client.predict(single).await.unwrap();
        for (class, p) in &one.probabilities {
            assert!((batch.predictions[i].probabilities[class] - p).abs() < 1e-6, "row {i}");
        }
    }
    // The same rows as an Arrow IPC stream, answered as one.
    let ipc = {
        use arrow::array::{Float64Array, Int64Array, StringArray};
        let batch = arrow::record_batch::RecordBatch::try_from_iter([
            ("tenure", std::sync::Arc::new(Int64Array::from_iter_values(0..50)) as arrow::array::ArrayRef),
            ("spend", std::sync::Arc::new(Float64Array::from_iter_values((0..50).map(|i| 20.0 + i as f64))) as _),
            (
                "plan",
                std::sync::Arc::new(StringArray::from_iter_values(
                    (0..50).map(|i| if i % 2 == 0 { "basic" } else { "pro" }),
                )) as _,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    };
    let arrow_answer = client
        .predict_batch(inf::PredictBatchRequest {
            model: "churn".into(),
            input: Some(inf::predict_batch_request::Input::ArrowIpc(ipc)),
            arrow_output: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(arrow_answer.predictions.is_empty());
    let answered: Vec<_> = arrow::ipc::reader::StreamReader::try_new(arrow_answer.arrow_ipc.as_slice(), None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let table = &answered[0];
    assert_eq!(table.num_rows(), 50);
    let probability = table.column_by_name("probability_true").unwrap();
    let probability = probability.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
    assert!((probability.value(17) - batch.predictions[17].probabilities["true"]).abs() < 1e-9);
    let bad_ipc = inf::PredictBatchRequest {
        model: "churn".into(),
        input: Some(inf::predict_batch_request::Input::ArrowIpc(b"not arrow".to_vec())),
        ..Default::default()
    };
    let e = code(client.predict_batch(bad_ipc).await.unwrap_err());
    assert!(e.0 == Code::InvalidArgument && e.1.contains("arrow_ipc"), "{}", e.1);
    let too_many = inf::PredictBatchRequest {
        model: "churn".into(),
        input: Some(inf::predict_batch_request::Input::Rows(inf::Rows { rows: vec![row(1, None, "pro"); 101] })),
        ..Default::default()
    };
    let e = code(client.predict_batch(too_many).await.unwrap_err());
    assert!(e.0 == Code::InvalidArgument && e.1.contains("limit of 100"), "{}", e.1);

    // A bidirectional stream: every request answered once, matched by id; a
    // bad one gets its error in its answer and the stream stays open.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut answers = client.predict_stream(rx).await.unwrap();
    let mut bad_row = row(1, Some(30.0), "pro");
    bad_row.features.remove("plan");
    for (id, r) in [("a", row(5, Some(30.0), "basic")), ("b", bad_row), ("c", row(40, None, "pro"))] {
        tx.send(inf::PredictStreamRequest { request_id: id.into(), request: Some(predict("churn", r)) }).await.unwrap();
    }
    drop(tx);
    let mut got = BTreeMap::new();
    while let Some(a) = answers.message().await.unwrap() {
        got.insert(a.request_id.clone(), a.result.unwrap());
    }
    assert_eq!(got.len(), 3);
    assert!(matches!(&got["a"], inf::predict_stream_response::Result::Prediction(p) if p.id.starts_with("prd_")));
    assert!(matches!(&got["c"], inf::predict_stream_response::Result::Prediction(_)));
    match &got["b"] {
        inf::predict_stream_response::Result::Error(e) => {
            assert_eq!(e.code, "INVALID_ARGUMENT");
            assert_eq!((e.problems[0].feature.as_str(), e.problems[0].problem.as_str()), ("plan", "missing"));
        }
        other => panic!("expected an error, got {other:?}"),
    }

    // Concurrent single predictions are coalesced into fewer model calls.
    let before = sb.metrics().await;
    let calls = |page: &str| -> f64 {
        page.lines()
            .find(|l| l.starts_with("pulse_inference_batch_size_count{model=\"churn\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut r = predict("churn", row(i % 60, Some(30.0 + (i % 50) as f64), "pro"));
                r.bypass_cache = true;
                client.predict(r).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let model_calls = calls(&sb.metrics().await) - calls(&before);
    assert!(model_calls < 200.0, "200 concurrent predictions took {model_calls} model calls");

    // Feedback: joined, idempotent, conflicting truth refused, unknown NOT_FOUND.
    let fb = |id: &str, label: &str, replace: bool| inf::RecordFeedbackRequest {
        prediction_id: id.into(),
        truth: Some(inf::record_feedback_request::Truth::Label(label.into())),
        replace,
        ..Default::default()
    };
    let f = client.record_feedback(fb(&p.id, "true", false)).await.unwrap();
    assert_eq!(f.correct, Some(true));
    assert_eq!(client.record_feedback(fb(&p.id, "true", false)).await.unwrap().id, f.id);
    assert_eq!(code(client.record_feedback(fb(&p.id, "false", false)).await.unwrap_err()).0, Code::AlreadyExists);
    assert_eq!(client.record_feedback(fb(&p.id, "false", true)).await.unwrap().correct, Some(false));
    assert_eq!(code(client.record_feedback(fb("prd_unknown", "true", false)).await.unwrap_err()).0, Code::NotFound);
    assert_eq!(code(client.record_feedback(fb(&p.id, "maybe", false)).await.unwrap_err()).0, Code::InvalidArgument);
    assert_eq!(code(other.get_prediction(&p.id).await.unwrap_err()).0, Code::NotFound);
    // A prediction traces back to its datasource, with no lineage write of its own.
    let trace = client.trace(&p.id, pulse_proto::lineage::v1::Direction::Upstream, 0, 0).await.unwrap();
    let kinds: Vec<i32> = trace.nodes.iter().map(|n| n.kind).collect();
    use pulse_proto::lineage::v1::NodeKind as K;
    for kind in [K::Prediction, K::ModelVersion, K::TrainingRun, K::DatasetVersion, K::Extraction, K::Datasource] {
        assert!(kinds.contains(&(kind as i32)), "{kind:?} in the trace of a prediction: {:?}", trace.nodes);
    }
    assert_eq!(trace.nodes[0].id, p.id);
    assert_eq!(
        code(other.trace(&p.id, pulse_proto::lineage::v1::Direction::Upstream, 0, 0).await.unwrap_err()).0,
        Code::NotFound
    );
    let logged = client.get_prediction(&p.id).await.unwrap();
    assert_eq!(logged.features.len(), 3);
    assert_eq!(logged.input_sha256.len(), 64);
    assert!(logged.feedback.is_some());

    // A promotion under load: no request fails, and the new version takes over.
    let v2 = train(&client, &data, 2, 3.0).await;
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|i| {
            let (client, failures, seen, stop) = (client.clone(), failures.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    match client.predict(predict("churn", row((n + i) % 60, Some(40.0), "basic"))).await {
                        Ok(p) => {
                            seen.lock().unwrap().insert(p.model_version.unwrap().version);
                        }
                        Err(e) => {
                            eprintln!("failed during the swap: {e:?}");
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    promote(&client, v2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.lock().unwrap().contains(&v2) {
        assert!(Instant::now() < deadline, "version {v2} never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0, "requests failed during the swap");
    assert!(seen.lock().unwrap().contains(&v1), "the load ran before the swap too");

    // A 10% canary, by routing key; and a shadow, logged but never returned.
    let v3 = train(&client, &data, 3, 2.0).await;
    let bad_share =
        inf::TrafficPolicy { model: "churn".into(), canary_version: v3, canary_share: 1.5, ..Default::default() };
    assert_eq!(code(client.set_traffic_policy(bad_share).await.unwrap_err()).0, Code::InvalidArgument);
    let prod =
        inf::TrafficPolicy { model: "churn".into(), canary_version: v2, canary_share: 0.1, ..Default::default() };
    assert_eq!(code(client.set_traffic_policy(prod).await.unwrap_err()).0, Code::FailedPrecondition);
    client
        .set_traffic_policy(inf::TrafficPolicy {
            model: "churn".into(),
            canary_version: v3,
            canary_share: 0.1,
            shadow_version: v3,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut canary = 0;
    let mut last_primary = String::new();
    for i in 0..400 {
        let mut r = predict("churn", row(i % 60, Some(50.0), "pro"));
        r.routing_key = format!("user-{i}");
        r.bypass_cache = true;
        let p = client.predict(r).await.unwrap();
        if p.role == inf::ServingRole::Canary as i32 {
            assert_eq!(p.model_version.unwrap().version, v3);
            canary += 1;
        } else {
            assert_eq!(p.model_version.unwrap().version, v2);
            last_primary = p.id;
        }
    }
    assert!((12..=80).contains(&canary), "{canary} of 400 went to a 10% canary");
    let deadline = Instant::now() + Duration::from_secs(10);
    let shadow = loop {
        if let Some(s) = client.get_prediction(&last_primary).await.unwrap().shadow {
            break s;
        }
        assert!(Instant::now() < deadline, "no shadow answer was logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shadow.role, inf::ServingRole::Shadow as i32);
    assert_eq!(shadow.model_version.unwrap().version, v3);

    let status = client.serving_status("churn").await.unwrap();
    let m = &status.models[0];
    assert_eq!(m.production_version, v2);
    assert!(m.cache_hit_ratio > 0.0);
    assert_eq!(m.breaker.as_ref().unwrap().state, inf::BreakerState::Closed as i32);
    let page = sb.metrics().await;
    for metric in [
        "pulse_predictions_total{",
        "pulse_prediction_latency_seconds_bucket{",
        "pulse_inference_cache_requests_total{",
        "pulse_inference_breaker_state{",
    ] {
        assert!(page.contains(metric), "{metric} is exported");
    }
    let listed = client
        .list_predictions(inf::ListPredictionsRequest {
            model: "churn".into(),
            with_feedback: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.predictions.len(), 1);
    assert_eq!(listed.predictions[0].id, p.id);
}

const REGRESSION: &str = "
model: spend
task: regression
target: {name: spend, type: float}
features:
  - {name: visits, type: float, min: 0}
";

#[tokio::test]
async fn a_failing_model_trips_the_breaker_which_falls_back_and_recovers() {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut text = String::from("visits,spend\n");
    for i in 0..300 {
        let visits = (i % 50) as f64 / 5.0;
        text.push_str(&format!("{visits},{}\n", 3.0 * visits + (i % 7) as f64 * 0.1));
    }
    std::fs::write(dir.path().join("spend.csv"), text).unwrap();
    let sb = Sandbox::start(
        false,
        |c| {
            c.file_roots = vec![std::env::temp_dir()];
            c.model_poll_ms = 100;
            c.inference_breaker_min_requests = 10;
            c.inference_breaker_open_ms = 1500;
        },
        async |platform| {
            let datasources = pulse_datasource::open(&platform).await.unwrap();
            let snapshots = pulse_snapshot::open(&platform, datasources.clone(), None, true).await.unwrap();
            let trainer = pulse_trainer::open(&platform, snapshots.clone(), None, true).await.unwrap();
            let inference = pulse_inference::open(&platform, trainer.clone(), None).await.unwrap();
            vec![
                pulse_datasource::hosted(datasources, &platform),
                pulse_snapshot::hosted(snapshots, &platform),
                pulse_trainer::hosted(trainer, &platform),
                pulse_inference::hosted(inference, &platform),
            ]
        },
    )
    .await;
    // No client-side retries: the test sees every UNAVAILABLE.
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap().with_retries(0);
    let data = snapshot_csv(&client, dir.path(), "spend.csv", "spend").await;
    client.register_contract(REGRESSION).await.unwrap();
    let linear = |seed: u64| tr::StartTrainingRequest {
        dataset: Some(data.clone()),
        model: "spend".into(),
        algorithm: tr::Algorithm::LinearRegression as i32,
        seed: Some(seed),
        ..Default::default()
    };
    let mut versions = Vec::new();
    for seed in [1, 2] {
        let job = client.start_training(linear(seed), "").await.unwrap();
        let job = wait_training(&client, &job.id).await;
        assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
        let v = job.model_version.unwrap().version;
        client
            .promote_model(tr::PromoteModelRequest {
                model_version: Some(ModelVersionRef { model: "spend".into(), version: v }),
                stage: tr::ModelStage::Production as i32,
                force: true,
                reason: "test".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        // Served (and, for the second, swapped in with the first kept as
        // the fallback).
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.serving_status("spend").await.unwrap().models[0].production_version != v {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        versions.push(v);
    }
    let visits = |x: f64| {
        let mut r = inf::Row::default();
        r.features.insert("visits".into(), inf::FeatureValue { kind: Some(Kind::FloatValue(x)) });
        predict("spend", r)
    };
    let ok = client.predict(visits(4.0)).await.unwrap();
    assert!((ok.value.unwrap() - 12.0).abs() < 2.0, "{:?}", ok.value);

    // The contract allows any visits ≥ 0; the model overflows on 1e300. It
    // fails loudly (never a non-finite answer), and the failures open the
    // circuit.
    let mut failures = 0;
    loop {
        let e = code(client.predict(visits(1e300)).await.unwrap_err());
        if e.0 == Code::Unavailable {
            break;
        }
        assert_eq!(e.0, Code::Internal);
        assert!(e.1.contains("non-finite"), "{}", e.1);
        failures += 1;
        assert!(failures <= 10, "10 outcomes at ≥ 50% errors open the circuit");
    }
    assert!(failures >= 9, "it opened after {failures} failures");
    let started = Instant::now();
    let e = code(client.predict(visits(4.0)).await.unwrap_err());
    assert_eq!(e.0, Code::Unavailable, "{}", e.1);
    assert!(e.1.contains("circuit") && e.1.contains("error rate"), "{}", e.1);
    assert!(started.elapsed() < Duration::from_millis(100), "an open circuit answers at once");
    let status = client.serving_status("spend").await.unwrap();
    assert_eq!(status.models[0].breaker.as_ref().unwrap().state, inf::BreakerState::Open as i32);
    assert!(sb.metrics().await.contains("pulse_inference_breaker_state{model=\"spend\"} 1"));

    // With fallback on, the previous production version answers meanwhile.
    let policy = |fallback: bool| inf::TrafficPolicy {
        model: "spend".into(),
        fallback_to_previous: fallback,
        ..Default::default()
    };
    client.set_traffic_policy(policy(true)).await.unwrap();
    let fb = client.predict(visits(4.0)).await.unwrap();
    assert_eq!(fb.role, inf::ServingRole::Fallback as i32);
    assert_eq!(fb.model_version.unwrap().version, versions[0]);
    client.set_traffic_policy(policy(false)).await.unwrap();

    // After the open period, probes go through and close it again.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for _ in 0..3 {
        let p = client.predict(visits(4.0)).await.unwrap();
        assert_eq!(p.model_version.unwrap().version, versions[1]);
    }
    let status = client.serving_status("spend").await.unwrap();
    assert_eq!(status.models[0].breaker.as_ref().unwrap().state, inf::BreakerState::Closed as i32);
    client.predict(visits(5.0)).await.unwrap();
}
