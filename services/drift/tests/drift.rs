//! Drift end to end on a real server: a CSV snapshot, a trained and
//! promoted model, predictions through the client, then CheckDrift —
//! unshifted and shifted traffic, too few rows, feedback, dry runs, bad
//! thresholds, monitors, baselines, another tenant — all through the client.
//! One check is recomputed with the statistics module on the exported and
//! reference columns (its agreement with SciPy is `scipy_agreement.rs`).

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, Int64Array};
use arrow::record_batch::RecordBatch;
use pulse_client::Client;
use pulse_client::testing::{CHURN_CONTRACT as CONTRACT, promote, snapshot_csv, status as code, train_logistic};
use pulse_common::testing::Sandbox;
use pulse_drift::stats;
use pulse_proto::common::v1::{DatasetVersionRef, ModelVersionRef};
use pulse_proto::drift::v1::{self as dr, DriftMetric, DriftStatus};
use pulse_proto::inference::v1::{self as inf, feature_value::Kind};
use pulse_proto::prost_types::{Duration as PbDuration, Timestamp};
use pulse_proto::tonic::Code;
use pulse_proto::trainer::v1 as tr;

async fn sandbox(postgres: bool) -> Sandbox {
    Sandbox::start(
        postgres,
        |c| {
            c.file_roots = vec![std::env::temp_dir()];
            c.inference_max_batch_rows = 1000;
            c.model_poll_ms = 200;
            if postgres {
                // Datasource secrets on a shared database are sealed with it.
                c.master_key = Some("11".repeat(32));
            }
        },
        async |platform| {
            let datasources = pulse_datasource::open(&platform).await.unwrap();
            let lineage = pulse_lineage::open(&platform).await.unwrap();
            let snapshots =
                pulse_snapshot::open(&platform, datasources.clone(), Some(lineage.clone()), true).await.unwrap();
            let trainer = pulse_trainer::open(&platform, snapshots.clone(), Some(lineage.clone()), true).await.unwrap();
            let inference = pulse_inference::open(&platform, trainer.clone(), Some(lineage.clone())).await.unwrap();
            let drift = pulse_drift::open(
                &platform,
                trainer.clone(),
                snapshots.clone(),
                inference.clone(),
                Some(lineage.clone()),
            )
            .await
            .unwrap();
            vec![
                pulse_datasource::hosted(datasources, &platform),
                pulse_snapshot::hosted(snapshots, &platform),
                pulse_trainer::hosted(trainer, &platform),
                pulse_lineage::hosted_with(lineage, &platform),
                pulse_inference::hosted(inference, &platform),
                pulse_drift::hosted(drift, &platform),
            ]
        },
    )
    .await
}

/// Customers: tenure in months (shifted by `shift`), spend, plan, and
/// whether they churned.
struct Customers(u64);

impl Customers {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn customer(&mut self, shift: i64) -> (i64, f64, &'static str, bool) {
        let tenure = (self.next() * 60.0) as i64 + shift;
        let spend = ((20.0 + self.next() * 80.0) * 100.0).round() / 100.0;
        let plan = if self.next() < 0.5 { "basic" } else { "pro" };
        let z = 2.0 - 0.08 * tenure as f64 + 0.02 * (spend - 60.0) + if plan == "basic" { 0.8 } else { -0.4 };
        let churned = self.next() < 1.0 / (1.0 + (-z).exp());
        (tenure, spend, plan, churned)
    }
}

fn write_csv(path: &std::path::Path, rows: usize) {
    let mut g = Customers(7);
    let mut text = String::from("tenure,spend,plan,churned\n");
    for _ in 0..rows {
        let (tenure, spend, plan, churned) = g.customer(0);
        text.push_str(&format!("{tenure},{spend:.2},{plan},{churned}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn row(tenure: i64, spend: f64, plan: &str) -> inf::Row {
    let v = |k: Kind| inf::FeatureValue { kind: Some(k) };
    inf::Row {
        features: BTreeMap::from([
            ("tenure".to_string(), v(Kind::IntValue(tenure))),
            ("spend".to_string(), v(Kind::FloatValue(spend))),
            ("plan".to_string(), v(Kind::CategoryValue(plan.into()))),
        ]),
    }
}

/// `n` predictions of customers from `seed`, tenure shifted by `shift`:
/// each prediction's id and the customer's true label.
async fn send(client: &Client, seed: u64, n: usize, shift: i64) -> Vec<(String, bool)> {
    let mut g = Customers(seed);
    let customers: Vec<_> = (0..n).map(|_| g.customer(shift)).collect();
    let rows = customers.iter().map(|(t, s, p, _)| row(*t, *s, p)).collect();
    let answer = client
        .predict_batch(inf::PredictBatchRequest {
            model: "churn".into(),
            input: Some(inf::predict_batch_request::Input::Rows(inf::Rows { rows })),
            bypass_cache: true,
            ..Default::default()
        })
        .await
        .unwrap();
    answer.predictions.into_iter().zip(customers).map(|(p, c)| (p.id, c.3)).collect()
}

fn last(n: u64) -> dr::check_drift_request::Current {
    dr::check_drift_request::Current::Window(dr::Window { kind: Some(dr::window::Kind::LastCount(n)) })
}

fn check(current: Option<dr::check_drift_request::Current>) -> dr::CheckDriftRequest {
    dr::CheckDriftRequest { model: "churn".into(), current, ..Default::default() }
}

fn feature<'a>(r: &'a dr::DriftReport, name: &str) -> &'a dr::FeatureDrift {
    r.features
        .iter()
        .chain(r.prediction.as_ref())
        .find(|f| f.feature == name)
        .unwrap_or_else(|| panic!("{name}: {r:?}"))
}

fn metric(f: &dr::FeatureDrift, m: DriftMetric) -> &dr::MetricValue {
    f.metrics.iter().find(|v| v.metric == m as i32).unwrap_or_else(|| panic!("{m:?} of {}: {f:?}", f.feature))
}

/// The column `name` of an Arrow IPC stream, as numbers.
fn numbers(ipc: &[u8], name: &str) -> Vec<f64> {
    let batches: Vec<RecordBatch> =
        arrow::ipc::reader::StreamReader::try_new(ipc, None).unwrap().map(Result::unwrap).collect();
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name(name).unwrap();
        if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
            out.extend(a.iter().flatten().map(|v| v as f64));
        } else {
            let a = col.as_any().downcast_ref::<Float64Array>().unwrap();
            out.extend(a.iter().flatten());
        }
    }
    out
}

async fn train_and_promote(client: &Client, data: &DatasetVersionRef) -> u64 {
    let version = train_logistic(client, data, "churn", 1, 6.0).await;
    // No production version yet: a check says to promote one.
    let e = code(client.check_drift(check(None)).await.unwrap_err());
    assert!(e.0 == Code::FailedPrecondition && e.1.contains("promote"), "{e:?}");
    promote(client, "churn", version).await;
    version
}

async fn drift_end_to_end(postgres: bool) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    write_csv(&dir.path().join("churn.csv"), 2000);
    let sb = sandbox(postgres).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let other = Client::connect(&sb.endpoint, Some(&sb.tenant_b.1)).await.unwrap();
    let data = snapshot_csv(&client, dir.path(), "churn.csv", "churn").await;
    client.register_contract(CONTRACT).await.unwrap();

    // An unknown model is NOT_FOUND; then a version to promote.
    let mut unknown = check(None);
    unknown.model = "nope".into();
    assert_eq!(code(client.check_drift(unknown).await.unwrap_err()).0, Code::NotFound);
    let v1 = train_and_promote(&client, &data).await;

    // The monitor's defaults.
    let m = client.get_monitor("churn").await.unwrap();
    assert_eq!((m.min_samples, m.min_feedback), (100, 100));
    assert_eq!(m.window.unwrap().kind, Some(dr::window::Kind::Last(PbDuration { seconds: 86_400, nanos: 0 })));
    assert_eq!(m.options.unwrap().bins, 10);

    // Traffic like the training data: OK, small PSI, every feature and the
    // outputs compared against the training dataset version.
    let unshifted = send(&client, 11, 1000, 0).await;
    let ok = client.check_drift(check(Some(last(1000)))).await.unwrap();
    assert_eq!(ok.status, DriftStatus::Ok as i32, "{ok:#?}");
    assert!(ok.id.starts_with("drf_") && ok.id.len() == 30, "{}", ok.id);
    assert_eq!(ok.model_version, Some(ModelVersionRef { model: "churn".into(), version: v1 }));
    assert_eq!((ok.current_rows, ok.score), (1000, 0.0));
    assert_eq!(ok.reference_source, dr::BaselineSource::Training as i32);
    assert_eq!(ok.reference_dataset.as_ref(), Some(&data));
    assert!(ok.drifted_features.is_empty() && ok.compute_time.is_some());
    let tenure = feature(&ok, "tenure");
    assert_eq!((tenure.reference_count, tenure.current_count, tenure.current_null_count), (2000, 1000, 0));
    assert_eq!(tenure.kind, dr::FeatureKind::Numeric as i32);
    assert!(metric(tenure, DriftMetric::Psi).value < 0.1, "{tenure:?}");
    assert_eq!(metric(tenure, DriftMetric::Psi).threshold, Some(0.2));
    assert_eq!(metric(tenure, DriftMetric::KsPValue).threshold, Some(0.05));
    assert!(tenure.current.is_none(), "CheckDrift leaves out the current statistics");
    let plan = feature(&ok, "plan");
    assert_eq!(plan.kind, dr::FeatureKind::Categorical as i32);
    metric(plan, DriftMetric::ChiSquarePValue);
    let prediction = feature(&ok, "_prediction");
    assert_eq!(prediction.reference_count, 2000, "every reference row scored");
    assert_eq!(ok.performance.as_ref().unwrap().feedback_count, 0);

    // Agreement: KS, Wasserstein and PSI of tenure recomputed from the
    // exported window and the reference rows with the statistics module.
    let ipc = client
        .export_predictions(inf::ExportPredictionsRequest {
            model: "churn".into(),
            version: v1,
            from: Some(Timestamp { seconds: 0, nanos: 0 }),
            last_n: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut current = numbers(&ipc, "tenure");
    let (_, _, ipc) = client.read_dataset_version(&data.dataset_id, data.version, &["tenure".into()], 0).await.unwrap();
    let mut reference = numbers(&ipc, "tenure");
    assert_eq!((reference.len(), current.len()), (2000, 1000));
    stats::sort_f64(&mut reference);
    stats::sort_f64(&mut current);
    let (ks, w) = stats::ks_and_wasserstein(&reference, &current).unwrap();
    assert_eq!(metric(tenure, DriftMetric::KsStatistic).value, ks.statistic);
    assert_eq!(metric(tenure, DriftMetric::KsPValue).value, ks.p_value);
    assert_eq!(metric(tenure, DriftMetric::Wasserstein).value, w);
    let edges = stats::quantile_edges(&reference, stats::DEFAULT_BINS).unwrap();
    let (hr, hc) = (stats::histogram(&reference, &edges).unwrap(), stats::histogram(&current, &edges).unwrap());
    assert_eq!(metric(tenure, DriftMetric::Psi).value, stats::psi(&hr, &hc, stats::DEFAULT_EPS).unwrap());
    assert_eq!(metric(tenure, DriftMetric::JensenShannon).value, stats::jensen_shannon(&hr, &hc).unwrap());

    // A dry run (the monitor's window: the last 24 h) stores nothing.
    let listed =
        |c: Client| async move { c.list_drift_reports(dr::ListDriftReportsRequest::default()).await.unwrap().reports };
    let before = listed(client.clone()).await.len();
    let mut dry = check(None);
    dry.dry_run = true;
    let dry = client.check_drift(dry).await.unwrap();
    assert!(dry.id.is_empty());
    assert_eq!((dry.status, dry.current_rows), (DriftStatus::Ok as i32, 1000));
    assert_eq!(listed(client.clone()).await.len(), before);

    // Too few rows: a report saying so, nothing judged.
    let few = client.check_drift(check(Some(last(50)))).await.unwrap();
    assert_eq!((few.status, few.current_rows), (DriftStatus::InsufficientData as i32, 50));
    assert!(few.features.iter().flat_map(|f| &f.metrics).all(|m| !m.breached && m.threshold.is_none()));

    // Feedback: below the monitor's minimum only counted, then measured
    // against the version's test metrics.
    for (id, truth) in unshifted.iter().take(150) {
        client
            .record_feedback(inf::RecordFeedbackRequest {
                prediction_id: id.clone(),
                truth: Some(inf::record_feedback_request::Truth::Label(truth.to_string())),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let set = client
        .set_monitor(dr::Monitor { model: "churn".into(), min_feedback: 200, ..Default::default() })
        .await
        .unwrap();
    assert_eq!((set.min_feedback, set.min_samples), (200, 100));
    assert!(set.updated_at.is_some());
    let r = client.check_drift(check(Some(last(1000)))).await.unwrap();
    let p = r.performance.unwrap();
    assert_eq!(p.feedback_count, 150);
    assert!(p.metrics.is_empty());
    client.set_monitor(dr::Monitor { model: "churn".into(), min_feedback: 100, ..Default::default() }).await.unwrap();
    let r = client.check_drift(check(Some(last(1000)))).await.unwrap();
    let p = r.performance.unwrap();
    let tested = client
        .get_model_version(tr::GetModelVersionRequest { model: "churn".into(), version: v1, ..Default::default() })
        .await
        .unwrap()
        .metrics
        .unwrap();
    for (m, reference) in
        [(DriftMetric::Accuracy, tested.accuracy), (DriftMetric::F1, tested.f1), (DriftMetric::RocAuc, tested.roc_auc)]
    {
        let v = p.metrics.iter().find(|v| v.metric == m as i32).unwrap_or_else(|| panic!("{m:?}: {p:?}"));
        assert_eq!(v.reference_value, reference);
        assert!((0.0..=1.0).contains(&v.value) && v.threshold == Some(0.05), "{v:?}");
    }
    // 150 answers measure accuracy to about ±0.035: a drop past 0.05 is
    // drift of its own, whatever the features say.
    assert!(r.drifted_features.is_empty());
    let expected = if p.drifted { DriftStatus::Drift } else { DriftStatus::Ok };
    assert_eq!(r.status, expected as i32, "{p:?}");
    assert!(client.get_monitor("churn").await.unwrap().last_checked_at.is_some());

    // Shifted traffic (tenure + 30): DRIFT naming tenure, stored, with its
    // event, lineage and gauges.
    send(&client, 13, 1000, 30).await;
    let drift = client.check_drift(check(Some(last(1000)))).await.unwrap();
    assert_eq!(drift.status, DriftStatus::Drift as i32, "{drift:#?}");
    assert!(drift.drifted_features.contains(&"tenure".to_string()), "{:?}", drift.drifted_features);
    assert!(!drift.drifted_features.contains(&"spend".to_string()), "{:?}", drift.drifted_features);
    assert!(drift.score >= 1.0 / 3.0 && drift.score <= 1.0);
    let tenure = feature(&drift, "tenure");
    assert!(tenure.drifted);
    assert!(metric(tenure, DriftMetric::Psi).breached && metric(tenure, DriftMetric::KsPValue).breached);
    assert!((metric(tenure, DriftMetric::Wasserstein).value - 30.0).abs() < 3.0, "{tenure:?}");

    let newest = client.list_drift_reports(dr::ListDriftReportsRequest::default()).await.unwrap().reports;
    assert_eq!(newest[0].id, drift.id, "newest first");
    assert!(newest.iter().all(|r| r.features.iter().all(|f| f.current.is_none())));
    let only_drift = client
        .list_drift_reports(dr::ListDriftReportsRequest { status: DriftStatus::Drift as i32, ..Default::default() })
        .await
        .unwrap()
        .reports;
    assert_eq!(only_drift[0].id, drift.id);
    assert!(only_drift.iter().all(|r| r.status == DriftStatus::Drift as i32));
    let paged = client
        .list_drift_reports(dr::ListDriftReportsRequest {
            model: "churn".into(),
            page: Some(pulse_proto::common::v1::PageRequest { page_size: 2, page_token: String::new() }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(paged.reports.len(), 2);
    assert_eq!(paged.page.unwrap().next_page_token, paged.reports[1].id);
    let stored = client.get_drift_report(&drift.id).await.unwrap();
    let current = feature(&stored, "tenure").current.clone().expect("GetDriftReport has the current statistics");
    assert!((current.mean.unwrap() - 59.5).abs() < 3.0, "{current:?}");

    let db = sb.platform.database.open(pulse_drift::SCHEMA, pulse_drift::MIGRATIONS).await.unwrap();
    let events = pulse_common::records::record_store(&db);
    let detected = events.events(&sb.tenant_a.0, Some("pulse.drift.detected.v1"), 0, 100).await.unwrap();
    assert_eq!(detected.len(), only_drift.len(), "{detected:?}");
    let newest = detected.last().unwrap();
    assert_eq!(newest.payload["report_id"], drift.id.as_str());
    assert_eq!(newest.payload["drifted_features"][0], "tenure");
    let checked = events.events(&sb.tenant_a.0, Some("pulse.drift.checked.v1"), 0, 100).await.unwrap();
    assert_eq!(checked.len(), before + 4, "one per stored check");

    let page = sb.metrics().await;
    let gauge = page
        .lines()
        .find(|l| {
            l.starts_with("pulse_drift_score{")
                && l.contains("feature=\"tenure\"")
                && l.contains("metric=\"psi\"")
                && l.contains("model=\"churn\"")
        })
        .unwrap_or_else(|| panic!("no PSI gauge for tenure in\n{page}"));
    let value: f64 = gauge.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - metric(tenure, DriftMetric::Psi).value).abs() < 1e-9, "{gauge}");
    let detected_total = format!("pulse_drift_detected_total{{model=\"churn\"}} {}", only_drift.len());
    assert!(page.contains(&detected_total), "{detected_total} in\n{page}");

    let trace = client.trace(&drift.id, pulse_proto::lineage::v1::Direction::Upstream, 0, 0).await.unwrap();
    use pulse_proto::lineage::v1::NodeKind as K;
    let kinds: Vec<i32> = trace.nodes.iter().map(|n| n.kind).collect();
    for kind in [K::DriftReport, K::ModelVersion, K::TrainingRun, K::DatasetVersion] {
        assert!(kinds.contains(&(kind as i32)), "{kind:?} upstream of a drift report: {:?}", trace.nodes);
    }

    // Thresholds: the request's override the defaults; malformed ones are
    // INVALID_ARGUMENT naming them.
    let mut lenient = check(Some(last(1000)));
    lenient.features = vec!["tenure".into()];
    lenient.thresholds = vec![
        dr::Threshold { metric: DriftMetric::Psi as i32, feature: "tenure".into(), value: 100.0 },
        dr::Threshold { metric: DriftMetric::KsPValue as i32, feature: String::new(), value: 1e-300 },
        dr::Threshold { metric: DriftMetric::JensenShannon as i32, feature: String::new(), value: 0.8 },
    ];
    lenient.dry_run = true;
    let r = client.check_drift(lenient).await.unwrap();
    assert_eq!(r.features.len(), 1);
    assert_eq!(metric(&r.features[0], DriftMetric::Psi).threshold, Some(100.0));
    let bad = |thresholds: Vec<dr::Threshold>| {
        let mut r = check(Some(last(1000)));
        r.thresholds = thresholds;
        r
    };
    let t = |m: DriftMetric, f: &str, v: f64| dr::Threshold { metric: m as i32, feature: f.into(), value: v };
    let e = code(
        client
            .check_drift(bad(vec![t(DriftMetric::Psi, "", 0.3), t(DriftMetric::KsPValue, "", 1.5)]))
            .await
            .unwrap_err(),
    );
    assert!(e.0 == Code::InvalidArgument && e.1.starts_with("thresholds[1].value:"), "{e:?}");
    let e = code(client.check_drift(bad(vec![t(DriftMetric::Psi, "colour", 0.3)])).await.unwrap_err());
    assert!(e.0 == Code::InvalidArgument && e.1.starts_with("thresholds[0].feature:"), "{e:?}");
    let e = code(client.check_drift(bad(vec![t(DriftMetric::Unspecified, "", 0.3)])).await.unwrap_err());
    assert!(e.0 == Code::InvalidArgument && e.1.starts_with("thresholds[0].metric:"), "{e:?}");
    let e = code(client.check_drift(bad(vec![t(DriftMetric::Wasserstein, "", f64::NAN)])).await.unwrap_err());
    assert!(e.0 == Code::InvalidArgument && e.1.starts_with("thresholds[0].value:"), "{e:?}");
    let e = code(
        client
            .set_monitor(dr::Monitor {
                model: "churn".into(),
                thresholds: vec![t(DriftMetric::ChiSquareStatistic, "tenure", 3.0)],
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    assert!(e.0 == Code::InvalidArgument && e.1.starts_with("monitor.thresholds[0].metric:"), "{e:?}");
    let e = code(
        client
            .set_monitor(dr::Monitor { model: "churn".into(), features: vec!["colour".into()], ..Default::default() })
            .await
            .unwrap_err(),
    );
    assert!(e.0 == Code::InvalidArgument && e.1.starts_with("monitor.features[0]:"), "{e:?}");
    let mut bad_window = check(Some(last(0)));
    bad_window.dry_run = true;
    let e = code(client.check_drift(bad_window).await.unwrap_err());
    assert!(e.0 == Code::InvalidArgument && e.1.starts_with("window.last_count:"), "{e:?}");

    // Baselines: the training dataset by default; a prediction window of
    // the shifted traffic makes that traffic the norm.
    let b = client.get_baseline("churn", 0).await.unwrap();
    assert_eq!(b.source, dr::BaselineSource::Training as i32);
    assert_eq!(b.dataset.as_ref(), Some(&data));
    assert_eq!(b.features.iter().map(|f| f.column.as_str()).collect::<Vec<_>>(), ["tenure", "spend", "plan"]);
    assert_eq!(b.features[0].count, 2000);
    assert!(b.outputs.iter().any(|o| o.column == "label"), "{:?}", b.outputs);
    assert!(b.outputs.iter().any(|o| o.column == "probability_true"), "{:?}", b.outputs);
    assert_eq!(b.reference_metrics.get("accuracy"), tested.accuracy.as_ref());
    let window = drift.window.unwrap();
    assert!(window.from.is_some() && window.to.is_some());
    let set = client
        .set_baseline(dr::SetBaselineRequest {
            model: "churn".into(),
            version: v1,
            source: Some(dr::set_baseline_request::Source::Window(window)),
        })
        .await
        .unwrap();
    assert_eq!(set.source, dr::BaselineSource::PredictionWindow as i32);
    assert_eq!(set.features[0].count, 1000);
    assert_eq!(client.get_baseline("churn", v1).await.unwrap(), set);
    let mut against_window = check(Some(last(1000)));
    against_window.dry_run = true;
    let r = client.check_drift(against_window).await.unwrap();
    assert_eq!(r.reference_source, dr::BaselineSource::PredictionWindow as i32);
    assert!(!feature(&r, "tenure").drifted, "{r:#?}");
    assert_eq!(metric(feature(&r, "tenure"), DriftMetric::Psi).value, 0.0);
    client
        .set_baseline(dr::SetBaselineRequest {
            model: "churn".into(),
            version: 0,
            source: Some(dr::set_baseline_request::Source::FromTraining(true)),
        })
        .await
        .unwrap();
    // Another dataset version as the reference, named in the request.
    let mut against = check(Some(last(1000)));
    against.reference = Some(dr::check_drift_request::Reference::ReferenceDataset(data.clone()));
    against.dry_run = true;
    let r = client.check_drift(against).await.unwrap();
    assert_eq!(r.reference_source, dr::BaselineSource::DatasetVersion as i32);
    assert!(r.drifted_features.contains(&"tenure".to_string()));

    // A dataset without the model's features cannot be compared.
    std::fs::write(dir.path().join("other.csv"), "a,b\n1,x\n2,y\n").unwrap();
    let unrelated = snapshot_csv(&client, dir.path(), "other.csv", "other").await;
    let mut against = check(Some(last(1000)));
    against.reference = Some(dr::check_drift_request::Reference::ReferenceDataset(unrelated));
    let e = code(client.check_drift(against).await.unwrap_err());
    assert!(e.0 == Code::FailedPrecondition && e.1.contains("'tenure'"), "{e:?}");

    // Monitors list; another tenant sees none of it.
    let monitors = client.list_monitors("", 0).await.unwrap().monitors;
    assert_eq!(monitors.iter().map(|m| m.model.as_str()).collect::<Vec<_>>(), ["churn"]);
    assert_eq!(code(other.get_drift_report(&drift.id).await.unwrap_err()).0, Code::NotFound);
    assert_eq!(code(other.check_drift(check(None)).await.unwrap_err()).0, Code::NotFound);
    assert!(other.list_drift_reports(dr::ListDriftReportsRequest::default()).await.unwrap().reports.is_empty());
    assert_eq!(code(client.get_drift_report("drf_nope").await.unwrap_err()).0, Code::InvalidArgument);

    // Pipelines are served: every tenant has the built-in one; runs of
    // another tenant are NOT_FOUND.
    let pipelines = client.list_pipelines("", 0).await.unwrap().pipelines;
    assert_eq!(pipelines.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["retrain"]);
    assert!(pipelines[0].built_in);
    assert_eq!(code(other.get_pipeline_run("run_00000000000000000000000000").await.unwrap_err()).0, Code::NotFound);
}

#[tokio::test]
async fn drift_on_the_embedded_store() {
    drift_end_to_end(false).await;
}

#[tokio::test]
async fn drift_on_postgres() {
    drift_end_to_end(true).await;
}
