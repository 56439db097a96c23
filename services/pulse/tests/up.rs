//! `pulse up` as a user runs it: a real process with zero configuration in
//! an empty directory, driven by the `pulse` CLI and a reflection client,
//! stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pulse_client::{Client, edge, node};
use pulse_common::objects::ObjectStore;
use pulse_proto::lineage::v1::NodeKind;

const PULSE: &str = env!("CARGO_BIN_EXE_pulse");

struct Up {
    child: Child,
    dir: tempfile::TempDir,
    grpc: String,
    metrics: String,
    banner: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn start() -> Up {
    start_in(tempfile::tempdir().unwrap())
}

fn start_in(dir: tempfile::TempDir) -> Up {
    start_with(dir, &[])
}

/// `pulse up` in `dir` with these `PULSE_*` settings and no others.
fn start_with(dir: tempfile::TempDir, env: &[(&str, String)]) -> Up {
    let mut command = Command::new(PULSE);
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("PULSE_")) {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .args(["up", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pulse starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !banner.contains("tenant key:") {
        assert!(Instant::now() < deadline, "pulse up did not print its banner:\n{banner}");
        match lines.next() {
            Some(Ok(line)) => {
                banner.push_str(&line);
                banner.push('\n');
            }
            _ => panic!("pulse up exited before its banner:\n{banner}"),
        }
    }
    let field = |name: &str| {
        banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|r| r.split_whitespace().next().unwrap().to_string()))
            .unwrap_or_else(|| panic!("no {name} in\n{banner}"))
    };
    let grpc = field("gRPC:");
    let metrics = field("metrics:");
    Up { child, dir, grpc, metrics, banner }
}

fn cli(up: &Up, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(PULSE)
        .args(args)
        .current_dir(up.dir.path())
        .env("PULSE_ENDPOINT", format!("http://{}", up.grpc))
        .env_remove("PULSE_API_KEY")
        .env_remove("PULSE_ADMIN_KEY")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulse_up_serves_lists_traces_and_stops_cleanly() {
    let up = start();
    assert!(up.banner.contains("admin key:  .pulse/admin.key"), "{}", up.banner);
    assert!(up.banner.contains("metadata:   embedded"), "{}", up.banner);
    let key = std::fs::read_to_string(up.dir.path().join(".pulse/default.key")).unwrap();

    // Reflection lists all six services, health and reflection.
    let listed = list_services(&up.grpc).await;
    for service in ["datasource", "snapshot", "trainer", "inference", "lineage", "drift"] {
        let cap = format!("{}{}", service[..1].to_uppercase(), &service[1..]);
        let name = format!("pulse.{service}.v1.{cap}Service");
        assert!(listed.contains(&name), "{name} not in {listed:?}");
    }
    assert!(listed.iter().any(|s| s == "grpc.health.v1.Health"));
    assert!(listed.iter().any(|s| s == "grpc.reflection.v1alpha.ServerReflection"));

    // Record a graph with the client, print it with the CLI.
    let client = Client::connect(&up.grpc, Some(key.trim())).await.unwrap();
    client
        .record_batch(
            vec![
                node("ds_tx", NodeKind::Datasource, &[("name", "transactions-db"), ("connector", "postgres")]),
                node(
                    "dsv_orders_7",
                    NodeKind::DatasetVersion,
                    &[("dataset", "orders"), ("version", "7"), ("rows", "1247832"), ("sha256", "e3b0c44298fc")],
                ),
                node(
                    "run_xyz789",
                    NodeKind::TrainingRun,
                    &[
                        ("started_at", "2026-01-15T02:00:00Z"),
                        ("finished_at", "2026-01-15T02:04:32Z"),
                        ("metric.accuracy", "0.9847"),
                        ("metric.f1", "0.9621"),
                    ],
                ),
                node(
                    "mv_fraud_3",
                    NodeKind::ModelVersion,
                    &[("model", "fraud-detector"), ("version", "3"), ("sha256", "def4567890")],
                ),
                node(
                    "pred_abc123",
                    NodeKind::Prediction,
                    &[("input_sha256", "a9f2d4aa"), ("output_sha256", "7c8b1abb")],
                ),
            ],
            vec![
                edge("ds_tx", "dsv_orders_7"),
                edge("dsv_orders_7", "run_xyz789"),
                edge("dsv_orders_7", "mv_fraud_3"),
                edge("run_xyz789", "mv_fraud_3"),
                edge("mv_fraud_3", "pred_abc123"),
            ],
            None,
        )
        .await
        .unwrap();
    let (ok, out, err) = cli(&up, &["lineage", "pred_abc123"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "\
Prediction: pred_abc123
├── Model: fraud-detector@3 (sha256:def456…)
│   ├── Training run: run_xyz789  started 2026-01-15T02:00:00Z  duration 4m32s
│   │   └── Metrics: accuracy 0.9847, f1 0.9621
│   └── Snapshot: orders@7  rows 1,247,832  sha256:e3b0c4…
│       └── Datasource: transactions-db (postgres)
├── Input sha256:a9f2d4…
└── Output sha256:7c8b1a…
"
    );
    let (ok, out, _) = cli(&up, &["impact", "ds_tx"]);
    assert!(ok && out.contains("model fraud-detector@3"), "{out}");
    let (ok, _, err) = cli(&up, &["lineage", "nope"]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");

    // Admin commands use the generated admin key.
    let (ok, out, err) = cli(&up, &["admin", "create-tenant", "acme"]);
    assert!(ok, "{err}");
    let tenant = out.split_whitespace().next().unwrap().to_string();
    let (ok, secret, err) = cli(&up, &["admin", "create-key", &tenant]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&up, &["whoami", "--api-key", secret.trim()]);
    assert!(ok && out.contains(&tenant), "{out}");
    let (ok, out, _) = cli(&up, &["admin", "tenants"]);
    assert!(ok && out.contains("default") && out.contains("acme"), "{out}");

    // The calls above are counted, by method and code.
    let metrics = reqwest_free_get(&up.metrics).await;
    assert!(
        metrics.contains(
            r#"pulse_grpc_requests_total{code="OK",method="Trace",service="pulse.lineage.v1.LineageService"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"pulse_grpc_requests_total{code="NOT_FOUND",method="Trace",service="pulse.lineage.v1.LineageService"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"method="CreateTenant""#), "{metrics}");

    // SIGTERM: a clean exit.
    let mut up = up;
    let pid = up.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = up.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "pulse did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(up.child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("stopped"), "{log}");

    // Started again on the same state: same keys, same graph, no new tenant.
    let dir = std::mem::replace(&mut up.dir, tempfile::tempdir().unwrap());
    let again = start_in(dir);
    assert_eq!(std::fs::read_to_string(again.dir.path().join(".pulse/default.key")).unwrap(), key);
    let (ok, out, err) = cli(&again, &["lineage", "pred_abc123"]);
    assert!(ok && out.starts_with("Prediction: pred_abc123\n"), "{out}{err}");
    let (ok, out, _) = cli(&again, &["admin", "tenants"]);
    assert!(ok && out.lines().count() == 2, "{out}");
}

/// The services a server lists through reflection (v1alpha, as grpcurl asks).
async fn list_services(grpc: &str) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let channel = pulse_proto::tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().unwrap().message_response.unwrap() {
        MessageResponse::ListServicesResponse(l) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("{other:?}"),
    }
}

async fn reqwest_free_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulse_serve_runs_one_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(PULSE)
        .args(["serve", "trainer", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .current_dir(dir.path())
        .env_remove("PULSE_DATABASE_URL")
        .env_remove("PULSE_S3_BUCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let grpc = loop {
        let line = lines.next().expect("banner").unwrap();
        if let Some(rest) = line.trim().strip_prefix("gRPC:") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let listed = list_services(&grpc).await;
    assert!(listed.contains(&"pulse.trainer.v1.TrainerService".to_string()), "{listed:?}");
    assert!(!listed.iter().any(|s| s.starts_with("pulse.lineage")), "only the trainer is served: {listed:?}");
    // No default tenant outside `pulse up`.
    assert!(!dir.path().join(".pulse/default.key").exists());
    let _ = child.kill();
    let _ = child.wait();
}

/// The production wiring: metadata on PostgreSQL, objects on an
/// S3-compatible server, configured through the environment only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulse_up_on_postgres_and_s3() {
    let database = pulse_common::testing::TestDatabase::create().await;
    let bucket = pulse_common::testing::s3_store().await.describe();
    let bucket = bucket.trim_start_matches("s3://").split('/').next().unwrap().to_string();
    let env = [
        ("PULSE_DATABASE_URL", database.url.clone()),
        ("PULSE_S3_BUCKET", bucket.clone()),
        ("PULSE_S3_ENDPOINT", pulse_common::testing::s3_endpoint()),
        ("PULSE_S3_PATH_STYLE", "true".to_string()),
        ("PULSE_MASTER_KEY", "11".repeat(32)),
        ("PULSE_LOG_FORMAT", "json".to_string()),
    ];
    let up = start_with(tempfile::tempdir().unwrap(), &env);
    assert!(up.banner.contains("metadata:   PostgreSQL"), "{}", up.banner);
    assert!(up.banner.contains(&format!("objects:    s3://{bucket}/")), "{}", up.banner);
    let key = std::fs::read_to_string(up.dir.path().join(".pulse/default.key")).unwrap();
    let client = Client::connect(&up.grpc, Some(key.trim())).await.unwrap();
    client
        .record_node(node("ds_pg", NodeKind::Datasource, &[("name", "warehouse"), ("connector", "postgres")]), None)
        .await
        .unwrap();
    let (ok, out, err) = cli(&up, &["lineage", "ds_pg"]);
    assert!(ok, "{err}");
    assert_eq!(out, "Datasource: warehouse (postgres)\n");

    // The rows are in PostgreSQL, in the service's own schema.
    let (pg, conn) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let n: i64 = pg.query_one("SELECT count(*) FROM lineage.nodes WHERE id = 'ds_pg'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    let tenants: i64 = pg.query_one("SELECT count(*) FROM platform.tenants", &[]).await.unwrap().get(0);
    assert_eq!(tenants, 1);
    // Nothing went to the embedded store.
    assert!(!up.dir.path().join(".pulse/db").exists());

    // A bucket that does not exist stops the start with a message that says so.
    let mut bad = env.to_vec();
    bad[1].1 = "no-such-bucket-pulse".into();
    let out = Command::new(PULSE)
        .args(["up", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .current_dir(tempfile::tempdir().unwrap().path())
        .envs(bad.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-bucket-pulse") && stderr.contains("create it"), "{stderr}");
}

/// Kill `pulse up` (SIGKILL) in the middle of an extraction, start it again:
/// the job resumes from its last committed chunk, and the version it commits
/// has the same hash as an uninterrupted extraction of the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extraction_killed_mid_job_resumes_to_the_same_hash() {
    use pulse_proto::common::v1::JobStatus;
    use pulse_proto::datasource::v1 as ds;
    use pulse_proto::snapshot::v1 as sn;

    let source = pulse_common::testing::TestDatabase::create().await;
    let (pg, conn) = tokio_postgres::connect(&source.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    pg.batch_execute(
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, value double precision, at timestamptz);
         INSERT INTO events SELECT g, 'k' || (g % 13), g * 0.5, timestamptz '2025-01-01' + g * interval '1 second'
         FROM generate_series(1, 400000) g;",
    )
    .await
    .unwrap();
    let env = [("PULSE_JOB_LEASE_SECONDS", "2".to_string())];
    let mut up = start_with(tempfile::tempdir().unwrap(), &env);
    let key = std::fs::read_to_string(up.dir.path().join(".pulse/default.key")).unwrap().trim().to_string();
    let client = Client::connect(&up.grpc, Some(&key)).await.unwrap();
    let d = client
        .register_datasource(
            ds::RegisterDatasourceRequest {
                name: "events-db".into(),
                connector: ds::ConnectorKind::Postgres as i32,
                connection: Some(ds::ConnectionSpec {
                    spec: Some(ds::connection_spec::Spec::Sql(ds::SqlConnection {
                        dsn: source.url.clone(),
                        ..Default::default()
                    })),
                }),
                allowlist: Some(ds::Allowlist { objects: vec!["events".into()], ..Default::default() }),
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
    let request = |dataset: &str| sn::StartExtractionRequest {
        datasource_id: d.id.clone(),
        object: "events".into(),
        dataset: dataset.into(),
        chunk_rows: 20_000,
        ..Default::default()
    };
    let job = client.start_extraction(request("killed"), "").await.unwrap();
    // Wait for a few committed chunks, then kill the process outright.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = client.get_extraction_job(&job.id).await.unwrap();
        assert_ne!(j.status, JobStatus::Succeeded as i32, "the job finished before it could be killed");
        if j.chunks_committed >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no chunk committed: {j:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    let dir = std::mem::replace(&mut up.dir, tempfile::tempdir().unwrap());
    drop(up);

    let up = start_with(dir, &env);
    let client = Client::connect(&up.grpc, Some(&key)).await.unwrap();
    let resumed = wait_for_job(&client, &job.id).await;
    assert_eq!(resumed.status, JobStatus::Succeeded as i32, "{resumed:?}");
    assert!(resumed.attempts >= 2, "{resumed:?}");
    assert!(resumed.timeline.iter().any(|t| t.message.contains("resumed")), "{:?}", resumed.timeline);

    let clean = client.start_extraction(request("uninterrupted"), "").await.unwrap();
    let clean = wait_for_job(&client, &clean.id).await;
    assert_eq!(clean.status, JobStatus::Succeeded as i32, "{clean:?}");
    let a = client.get_dataset_version("killed", 1).await.unwrap();
    let b = client.get_dataset_version("uninterrupted", 1).await.unwrap();
    assert_eq!(a.rows, 400_000);
    assert_eq!(a.sha256, b.sha256, "a resumed extraction hashes like an uninterrupted one");
    let chunks = |v: &sn::DatasetVersion| {
        v.manifest.as_ref().unwrap().chunks.iter().map(|c| c.sha256.clone()).collect::<Vec<_>>()
    };
    assert_eq!(chunks(&a), chunks(&b));
    assert_eq!(chunks(&a).len(), 20);
    // Only one version: nothing half-written became visible.
    assert_eq!(client.list_dataset_versions("killed").await.unwrap().versions.len(), 1);
}

async fn wait_for_job(client: &Client, id: &str) -> pulse_proto::snapshot::v1::ExtractionJob {
    wait_until_final(|| client.get_extraction_job(id), |j| j.status).await
}

/// Kill `pulse up` (SIGKILL) in the middle of a training job, start it
/// again: another worker takes the job over, continues from its last
/// checkpoint, and the model it registers has the same hash as an
/// uninterrupted run with the same seed. The same idempotency key twice
/// starts one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_job_killed_mid_run_resumes_to_the_same_model_hash() {
    use pulse_proto::common::v1::{DatasetVersionRef, JobStatus};
    use pulse_proto::datasource::v1 as ds;
    use pulse_proto::snapshot::v1 as sn;
    use pulse_proto::trainer::v1 as tr;

    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x1,x2,x3,label\n");
    let mut state = 7u64;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..20_000 {
        let (a, b, c) = (next() * 2.0 - 1.0, next() * 2.0 - 1.0, next());
        let label = if a * b + 0.3 * c > 0.0 { "yes" } else { "no" };
        csv.push_str(&format!("{a:.5},{b:.5},{c:.5},{label}\n"));
    }
    std::fs::write(dir.path().join("points.csv"), csv).unwrap();
    let env = [("PULSE_JOB_LEASE_SECONDS", "2".to_string())];
    let mut up = start_with(dir, &env);
    let key = std::fs::read_to_string(up.dir.path().join(".pulse/default.key")).unwrap().trim().to_string();
    let client = Client::connect(&up.grpc, Some(&key)).await.unwrap();
    let d = client
        .register_datasource(
            ds::RegisterDatasourceRequest {
                name: "points".into(),
                connector: ds::ConnectorKind::ObjectStorage as i32,
                connection: Some(ds::ConnectionSpec {
                    spec: Some(ds::connection_spec::Spec::ObjectStorage(ds::ObjectStorageConnection {
                        uri: format!("file://{}/", up.dir.path().display()),
                        ..Default::default()
                    })),
                }),
                allowlist: Some(ds::Allowlist { paths: vec!["points.csv".into()], ..Default::default() }),
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
    let ext = client
        .start_extraction(
            sn::StartExtractionRequest {
                datasource_id: d.id,
                object: "points.csv".into(),
                dataset: "points".into(),
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
    assert_eq!(wait_for_job(&client, &ext.id).await.status, JobStatus::Succeeded as i32);
    client
        .register_contract(
            "model: quadrants\ntask: binary_classification\ntarget: {name: label, type: category}\n\
             features:\n  - {name: x1, type: float}\n  - {name: x2, type: float}\n  - {name: x3, type: float}\n",
        )
        .await
        .unwrap();
    let num = |n: f64| prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(n)) };
    let request = tr::StartTrainingRequest {
        dataset: Some(DatasetVersionRef { dataset_id: "points".into(), version: 1 }),
        model: "quadrants".into(),
        algorithm: tr::Algorithm::MlpClassifier as i32,
        params: Some(prost_types::Struct {
            fields: [
                ("epochs".to_string(), num(12.0)),
                ("batch_size".to_string(), num(32.0)),
                ("early_stopping_patience".to_string(), num(0.0)),
                ("dropout".to_string(), num(0.1)),
            ]
            .into_iter()
            .collect(),
        }),
        seed: Some(5),
        ..Default::default()
    };
    let job = client.start_training(request.clone(), "train-quadrants-1").await.unwrap();
    let same = client.start_training(request.clone(), "train-quadrants-1").await.unwrap();
    assert_eq!(same.id, job.id, "one idempotency key, one job");

    // Wait for a checkpoint past the first epoch, then kill the process.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j = client.get_training_job(&job.id).await.unwrap();
        assert_ne!(j.status, JobStatus::Succeeded as i32, "training finished before it could be killed");
        if j.latest.as_ref().is_some_and(|m| m.epoch >= 2) && !j.last_checkpoint_id.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint: {j:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    let dir = std::mem::replace(&mut up.dir, tempfile::tempdir().unwrap());
    drop(up);

    let up = start_with(dir, &env);
    let client = Client::connect(&up.grpc, Some(&key)).await.unwrap();
    let resumed = wait_for_training(&client, &job.id).await;
    assert_eq!(resumed.status, JobStatus::Succeeded as i32, "{resumed:?}");
    assert!(resumed.attempts >= 2, "{resumed:?}");
    assert!(resumed.timeline.iter().any(|t| t.message.contains("resumed")), "{:?}", resumed.timeline);

    let clean = client.start_training(request, "").await.unwrap();
    let clean = wait_for_training(&client, &clean.id).await;
    assert_eq!(clean.status, JobStatus::Succeeded as i32, "{clean:?}");
    assert_eq!(resumed.artifact_sha256, clean.artifact_sha256, "a resumed run trains the same model bytes");
    let model = client.get_model("quadrants").await.unwrap();
    assert_eq!(model.latest_version, 2, "the killed job registered exactly one version");
}

async fn wait_for_training(client: &Client, id: &str) -> pulse_proto::trainer::v1::TrainingJob {
    wait_until_final(|| client.get_training_job(id), |j| j.status).await
}

/// Polls a job until its status is final (or fails the test after 5 min).
async fn wait_until_final<T, F, Fut>(mut fetch: F, status: fn(&T) -> i32) -> T
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = pulse_client::Result<T>>,
{
    use pulse_proto::common::v1::JobStatus;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job = fetch().await.unwrap();
        let s = JobStatus::try_from(status(&job)).unwrap();
        if matches!(s, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled) {
            return job;
        }
        assert!(Instant::now() < deadline, "job did not finish: {job:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Customers for the churn contract of `pulse_client::testing`.
fn churn_csv(rows: usize) -> String {
    let mut text = String::from("tenure,spend,plan,churned\n");
    for i in 0..rows {
        let tenure = (i * 37) % 60;
        let spend = 20.0 + ((i * 13) % 80) as f64;
        let plan = if i % 3 == 0 { "pro" } else { "basic" };
        let churned = tenure < 20 && plan == "basic" || i % 11 == 0;
        text.push_str(&format!("{tenure},{spend:.1},{plan},{churned}\n"));
    }
    text
}

async fn wait_run(client: &Client, id: &str, timeout: Duration) -> pulse_proto::drift::v1::PipelineRun {
    use pulse_proto::common::v1::JobStatus;
    let deadline = Instant::now() + timeout;
    loop {
        let run = client.get_pipeline_run(id).await.unwrap();
        let done = [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Canceled].map(|s| s as i32);
        if done.contains(&run.status) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} not final in time: {run:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The loop closed: a model in production, predictions and feedback; a
/// retraining policy fires once; its run (extract → validate → train →
/// evaluate → promote) survives `kill -9` of the only process in the middle,
/// and ends with exactly one new model version and at most one promotion,
/// the promotion's outcome on the timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_retrains_once_and_its_run_survives_a_kill() {
    use pulse_client::testing::{CHURN_CONTRACT, promote, snapshot_csv, train_logistic};
    use pulse_proto::common::v1::JobStatus;
    use pulse_proto::drift::v1 as dr;
    use pulse_proto::inference::v1::{self as inf, feature_value::Kind};
    use pulse_proto::trainer::v1 as tr;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("churn.csv"), churn_csv(600)).unwrap();
    let env = [("PULSE_JOB_LEASE_SECONDS", "3".to_string()), ("PULSE_POLICY_INTERVAL_SECONDS", "1".to_string())];
    let mut up = start_with(dir, &env);
    let key = std::fs::read_to_string(up.dir.path().join(".pulse/default.key")).unwrap().trim().to_string();
    let client = Client::connect(&up.grpc, Some(&key)).await.unwrap();

    let data = snapshot_csv(&client, up.dir.path(), "churn.csv", "churn").await;
    client.register_contract(CHURN_CONTRACT).await.unwrap();
    // Many epochs, so the retraining is still running when the process dies.
    let v1 = train_logistic(&client, &data, "churn", 7, 400.0).await;
    promote(&client, "churn", v1).await;

    // Malformed policies are refused, naming the field.
    let bad = dr::RetrainingPolicy {
        model: "churn".into(),
        triggers: vec![dr::PolicyTrigger {
            name: String::new(),
            kind: Some(dr::policy_trigger::Kind::Schedule(dr::ScheduleCondition {
                cron: "61 * * * *".into(),
                timezone: String::new(),
            })),
        }],
        ..Default::default()
    };
    let e = client.set_retraining_policy(bad, None).await.unwrap_err();
    assert_eq!(e.code(), pulse_proto::tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("triggers[0].schedule.cron"), "{e}");

    // Fire on 5 new feedback records.
    let policy = dr::RetrainingPolicy {
        model: "churn".into(),
        triggers: vec![dr::PolicyTrigger {
            name: "feedback".into(),
            kind: Some(dr::policy_trigger::Kind::Feedback(dr::FeedbackCondition { new_feedback: 5 })),
        }],
        ..Default::default()
    };
    client.set_retraining_policy(policy, None).await.unwrap();
    let v = |k: Kind| inf::FeatureValue { kind: Some(k) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fed = 0;
    while fed < 8 {
        let row = inf::Row {
            features: [
                ("tenure".to_string(), v(Kind::IntValue(3 + fed))),
                ("spend".to_string(), v(Kind::FloatValue(30.0))),
                ("plan".to_string(), v(Kind::CategoryValue("basic".into()))),
            ]
            .into(),
        };
        match client.predict(inf::PredictRequest { model: "churn".into(), row: Some(row), ..Default::default() }).await
        {
            Ok(p) => {
                client
                    .record_feedback(inf::RecordFeedbackRequest {
                        prediction_id: p.id,
                        truth: Some(inf::record_feedback_request::Truth::Label("true".into())),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                fed += 1;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "no prediction: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    // The scheduler (1 s) fires the policy and starts the built-in pipeline.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs = client
            .list_pipeline_runs(dr::ListPipelineRunsRequest {
                origin: dr::RunOrigin::Policy as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .runs;
        if let Some(r) = runs.into_iter().next() {
            break r;
        }
        assert!(Instant::now() < deadline, "the policy did not fire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run.pipeline_name, "retrain");
    assert!(!run.policy_decision_id.is_empty());

    // Kill the process while the run is mid-way (training, or just after).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = client.get_pipeline_run(&run.id).await.unwrap();
        assert!(
            r.status != JobStatus::Succeeded as i32 && r.status != JobStatus::Failed as i32,
            "finished before the kill: {r:#?}"
        );
        if r.steps
            .iter()
            .any(|s| s.step_id == "train" && s.status == dr::StepStatus::Running as i32 && !s.job_id.is_empty())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the run never reached training: {r:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    let dir = std::mem::replace(&mut up.dir, tempfile::tempdir().unwrap());
    drop(up);
    let up = start_with(dir, &env);
    let client = Client::connect(&up.grpc, Some(&key)).await.unwrap();

    let finished = wait_run(&client, &run.id, Duration::from_secs(240)).await;
    assert_eq!(finished.status, JobStatus::Succeeded as i32, "{finished:#?}");
    let steps: Vec<(&str, i32)> = finished.steps.iter().map(|s| (s.step_id.as_str(), s.status)).collect();
    for (id, status) in &steps {
        assert_eq!(*status, dr::StepStatus::Completed as i32, "step {id}: {finished:#?}");
    }
    // Exactly one new version: the resumed step waited on the job it had
    // started instead of starting another.
    let versions = client
        .list_model_versions(tr::ListModelVersionsRequest { model: "churn".into(), ..Default::default() })
        .await
        .unwrap()
        .versions;
    assert_eq!(versions.len(), 2, "{versions:#?}");
    let promote_step = finished.steps.iter().find(|s| s.step_id == "promote").unwrap();
    let output = pulse_common::json::to_json(promote_step.output.as_ref().unwrap());
    let promoted = output["promoted"].as_bool().unwrap();
    let production = client.get_model("churn").await.unwrap().production_version;
    assert_eq!(production, if promoted { 2 } else { v1 });
    let timeline = client.run_timeline(&run.id).await.unwrap();
    let messages: Vec<String> = timeline.entries.iter().map(|e| e.entry.clone().unwrap().message).collect();
    assert!(
        messages.iter().any(|m| m.contains("promoted churn v2") || m.contains("promotion refused")),
        "{messages:#?}"
    );
    // Fired once: its cooldown (24 h by default) holds it back since.
    let fired = client
        .list_policy_decisions(dr::ListPolicyDecisionsRequest {
            model: "churn".into(),
            fired_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .decisions;
    assert_eq!(fired.len(), 1, "{fired:#?}");
    let runs = client
        .list_pipeline_runs(dr::ListPipelineRunsRequest { origin: dr::RunOrigin::Policy as i32, ..Default::default() })
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 1);
}
