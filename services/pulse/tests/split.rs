//! Pulse as operators deploy it: six `pulse serve <service>` processes on
//! one PostgreSQL database and one S3-compatible bucket, each told where the
//! others are; and gRPC over TLS with a self-signed certificate.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pulse_client::Client;
use pulse_client::testing::{snapshot_csv, wait_training};
use pulse_common::objects::ObjectStore;
use pulse_proto::common::v1::{JobStatus, ModelVersionRef};
use pulse_proto::inference::v1::{self as inf, feature_value::Kind};
use pulse_proto::lineage::v1::Direction;
use pulse_proto::trainer::v1 as tr;

const PULSE: &str = env!("CARGO_BIN_EXE_pulse");
const SERVICES: [&str; 6] = ["datasource", "snapshot", "trainer", "inference", "lineage", "drift"];

struct Process {
    child: Child,
    grpc: String,
    metrics: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that is free now and that the kernel will not hand out on its own
/// meanwhile: ports are picked before the processes start, and one taken from
/// the ephemeral range (32768–60999) can be claimed by any outgoing
/// connection (to PostgreSQL, to S3) before its process binds it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919) % 10_000;
    loop {
        let port = 20_000 + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts `pulse <args>` with exactly these `PULSE_*` settings and waits for
/// its banner.
fn spawn(args: &[&str], dir: &std::path::Path, env: &[(String, String)]) -> Process {
    let mut command = Command::new(PULSE);
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("PULSE_")) {
        command.env_remove(name);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().cloned())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pulse starts");
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            if log.len() < 64 * 1024 {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !banner.contains("services:") {
        assert!(Instant::now() < deadline, "no banner from pulse {args:?}:\n{banner}");
        match lines.next() {
            Some(Ok(line)) => banner.push_str(&format!("{line}\n")),
            _ => {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("pulse {args:?} exited before its banner:\n{banner}\nstderr:\n{}", log.lock().unwrap());
            }
        }
    }
    // Keep reading: the banner goes on, and a closed pipe would stop the process.
    std::thread::spawn(move || lines.for_each(drop));
    let field = |name: &str| {
        banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|r| r.split_whitespace().next().unwrap().to_string()))
            .unwrap_or_else(|| panic!("no {name} in\n{banner}"))
    };
    Process { grpc: field("gRPC:"), metrics: field("metrics:"), child }
}

const CONTRACT: &str = "
model: churn
task: binary_classification
target: {name: churned, type: bool}
features:
  - {name: tenure, type: int, min: 0, max: 600}
  - {name: plan, type: category, categories: [basic, pro]}
";

fn write_csv(path: &std::path::Path) {
    let mut text = String::from("tenure,plan,churned\n");
    for i in 0..400 {
        let tenure = (i * 37) % 60;
        let plan = if i % 3 == 0 { "pro" } else { "basic" };
        let churned = tenure < 20 && plan == "basic" || i % 11 == 0;
        text.push_str(&format!("{tenure},{plan},{churned}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// The whole flow, through one endpoint, with every service in its own
/// process: each process forwards what it does not serve to the process
/// that does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_processes_serve_the_whole_flow() {
    let database = pulse_common::testing::TestDatabase::create().await;
    let bucket = pulse_common::testing::s3_store().await.describe();
    let bucket = bucket.trim_start_matches("s3://").split('/').next().unwrap().to_string();
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let data = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    write_csv(&data.path().join("churn.csv"));
    let admin_key = "pa_split_test_admin_key";
    let mut env: Vec<(String, String)> = vec![
        ("PULSE_DATABASE_URL".into(), database.url.clone()),
        ("PULSE_S3_BUCKET".into(), bucket),
        ("PULSE_S3_ENDPOINT".into(), pulse_common::testing::s3_endpoint()),
        ("PULSE_S3_PATH_STYLE".into(), "true".into()),
        ("PULSE_MASTER_KEY".into(), "22".repeat(32)),
        ("PULSE_ADMIN_KEY".into(), admin_key.into()),
        ("PULSE_FILE_ROOTS".into(), format!("[\"{}\"]", data.path().display())),
        ("PULSE_MODEL_POLL_MS".into(), "200".into()),
    ];
    for (service, port) in &ports {
        env.push((format!("PULSE_{}_URL", service.to_uppercase()), format!("http://127.0.0.1:{port}")));
    }
    // Started one at a time: each applies its migrations to the shared database.
    let mut processes = BTreeMap::new();
    for service in SERVICES {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", ports[service]);
        let p = spawn(&["serve", service, "--listen", &listen, "--metrics-listen", "127.0.0.1:0"], dir.path(), &env);
        processes.insert(service, (p, dir));
    }

    // Every process is healthy (the container health check).
    for (service, (p, dir)) in &processes {
        let out = Command::new(PULSE)
            .args(["health"])
            .env("PULSE_ENDPOINT", format!("http://{}", p.grpc))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{service}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // A tenant, through the datasource process (admin is served everywhere).
    let entry = format!("http://{}", processes["datasource"].0.grpc);
    let admin = Client::connect(&entry, Some(admin_key)).await.unwrap();
    let tenant = admin.create_tenant("split", None).await.unwrap();
    let key = admin.create_api_key(&tenant.id, "test").await.unwrap().secret;
    let client = Client::connect(&entry, Some(&key)).await.unwrap();

    // Snapshot (datasource → snapshot), train and promote (trainer), predict
    // (inference), trace (lineage): every call enters at the datasource process.
    let version = snapshot_csv(&client, data.path(), "churn.csv", "churn").await;
    client.register_contract(CONTRACT).await.unwrap();
    let job = client
        .start_training(
            tr::StartTrainingRequest {
                dataset: Some(version.clone()),
                model: "churn".into(),
                algorithm: tr::Algorithm::LogisticRegression as i32,
                seed: Some(1),
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
    let job = wait_training(&client, &job.id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    let model_version = job.model_version.unwrap();
    client
        .promote_model(tr::PromoteModelRequest {
            model_version: Some(ModelVersionRef { model: "churn".into(), version: model_version.version }),
            stage: tr::ModelStage::Production as i32,
            force: true,
            reason: "split test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let v = |k: Kind| inf::FeatureValue { kind: Some(k) };
    let row = inf::Row {
        features: BTreeMap::from([
            ("tenure".to_string(), v(Kind::IntValue(3))),
            ("plan".to_string(), v(Kind::CategoryValue("basic".into()))),
        ]),
    };
    // The inference process picks the promotion up by polling the registry.
    let deadline = Instant::now() + Duration::from_secs(30);
    let prediction = loop {
        match client
            .predict(inf::PredictRequest { model: "churn".into(), row: Some(row.clone()), ..Default::default() })
            .await
        {
            Ok(p) => break p,
            Err(e) => {
                assert!(Instant::now() < deadline, "no prediction: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(prediction.model_version.as_ref().unwrap().version, model_version.version);
    let trace = client.trace(&prediction.id, Direction::Upstream, 0, 0).await.unwrap();
    let kinds: Vec<String> = trace.nodes.iter().map(|n| pulse_client::kind_name(n.kind()).to_string()).collect();
    for kind in ["datasource", "dataset_version", "model_version", "prediction"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing from the trace: {kinds:?}");
    }

    // Each call was served by the process that owns it: the RPC counters
    // are in that process's metrics, not in the entry process's.
    let metrics = |service: &str| {
        let url = processes[service].0.metrics.clone();
        async move { get(&url).await }
    };
    assert!(metrics("inference").await.contains("method=\"Predict\""));
    assert!(!metrics("datasource").await.contains("method=\"Predict\""));
    assert!(metrics("trainer").await.contains("pulse_training_epochs_total{model=\"churn\"}"));
    assert!(metrics("snapshot").await.contains("pulse_extraction_rows_total{dataset=\"churn\"} 400"));

    // A pipeline run: its step runs in the drift process and calls the
    // trainer process for the tenant (a service token the trainer checks
    // against the secret in the shared database).
    let pipeline = client
        .create_pipeline(
            pulse_proto::drift::v1::Pipeline {
                name: "look".into(),
                steps: vec![pulse_proto::drift::v1::Step {
                    id: "model".into(),
                    kind: Some(pulse_proto::drift::v1::step::Kind::Action(pulse_proto::drift::v1::ActionStep {
                        method: "pulse.trainer.v1.TrainerService/GetModel".into(),
                        request: Some(pulse_common::json::to_struct(&serde_json::json!({"model": "churn"}))),
                        wait: None,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let run = client
        .start_pipeline_run(
            pulse_proto::drift::v1::StartPipelineRunRequest { pipeline_id: pipeline.id, ..Default::default() },
            None,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let r = client.get_pipeline_run(&run.id).await.unwrap();
        if [JobStatus::Succeeded as i32, JobStatus::Failed as i32].contains(&r.status) {
            break r;
        }
        assert!(Instant::now() < deadline, "run not finished: {r:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run.status, JobStatus::Succeeded as i32, "{run:#?}");
    let output = pulse_common::json::to_json(run.steps[0].output.as_ref().unwrap());
    assert_eq!(output["production_version"], serde_json::json!(model_version.version), "{output}");

    // A service that is down answers UNAVAILABLE through the others, saying which.
    drop(processes.remove("lineage"));
    let err = client.trace(&prediction.id, Direction::Upstream, 0, 0).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("UNAVAILABLE") && text.contains(&format!("127.0.0.1:{}", ports["lineage"])), "{text}");
}

async fn get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).await.unwrap();
    page
}

/// gRPC over TLS when a certificate and key are configured: a client that
/// trusts the CA is served, a plain-text client is not, and the
/// certificate's expiry is a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 1, 2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let env = vec![
        ("PULSE_TLS_CERT".to_string(), cert_path.display().to_string()),
        ("PULSE_TLS_KEY".to_string(), key_path.display().to_string()),
    ];
    let up = spawn(&["up", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], dir.path(), &env);
    let port = up.grpc.rsplit(':').next().unwrap();
    let https = format!("https://localhost:{port}");
    let key = std::fs::read_to_string(dir.path().join(".pulse/default.key")).unwrap();

    let client = Client::connect_with_ca(&https, Some(key.trim()), Some(cert.pem().as_bytes())).await.unwrap();
    assert!(!client.who_am_i().await.unwrap().tenant_id.is_empty());
    // Plain HTTP/2 to a TLS port fails; so does TLS without trusting the CA.
    let plain = Client::connect(&format!("http://localhost:{port}"), Some(key.trim())).await;
    assert!(plain.is_err() || plain.unwrap().with_retries(0).who_am_i().await.is_err());
    let untrusted = Client::connect_with_ca(&https, Some(key.trim()), None).await;
    assert!(untrusted.is_err() || untrusted.unwrap().with_retries(0).who_am_i().await.is_err());
    // The CLI trusts the CA named by PULSE_TLS_CA.
    let out = Command::new(PULSE)
        .args(["health"])
        .env("PULSE_ENDPOINT", &https)
        .env("PULSE_TLS_CA", &cert_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expiry =
        chrono::NaiveDate::from_ymd_opt(2031, 1, 2).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let page = get(&up.metrics).await;
    assert!(page.contains(&format!("pulse_tls_certificate_expiry_timestamp_seconds {expiry}")), "{page}");

    // A certificate without its key is refused at start, saying so.
    let out = Command::new(PULSE)
        .args(["up", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .env("PULSE_TLS_CERT", &cert_path)
        .env_remove("PULSE_TLS_KEY")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_cert and tls_key go together"));
}
