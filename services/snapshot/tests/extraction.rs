//! Extraction end to end on real servers: a PostgreSQL source, the datasource,
//! snapshot and lineage services on a real gRPC port, driven by the client.

use std::time::{Duration, Instant};

use arrow::array::{Array, Decimal128Array, Int64Array, StringArray};
use pulse_client::{Client, ClientError};
use pulse_common::testing::{Sandbox, TestDatabase};
use pulse_proto::common::v1::JobStatus;
use pulse_proto::datasource::v1 as ds;
use pulse_proto::snapshot::v1 as sn;
use pulse_proto::tonic::Code;

async fn sandbox(postgres: bool) -> Sandbox {
    Sandbox::start(
        postgres,
        |c| {
            c.master_key = Some("11".repeat(32));
            c.job_lease_seconds = 2;
        },
        async |platform| {
            let datasources = pulse_datasource::open(&platform).await.unwrap();
            let lineage = pulse_lineage::open(&platform).await.unwrap();
            let snapshots =
                pulse_snapshot::open(&platform, datasources.clone(), Some(lineage.clone()), true).await.unwrap();
            vec![
                pulse_datasource::hosted(datasources, &platform),
                pulse_snapshot::hosted(snapshots, &platform),
                pulse_lineage::hosted_with(lineage, &platform),
            ]
        },
    )
    .await
}

/// A source database with `orders` (rows 1..=n) and the view `ai_orders_v1`.
async fn source(n: i64) -> (TestDatabase, tokio_postgres::Client) {
    let db = TestDatabase::create().await;
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12,2), \
                                  updated_at timestamptz NOT NULL, secret text);
             INSERT INTO orders SELECT g, 'c' || (g % 7), (g * 1.25)::numeric(12,2),
                    timestamptz '2024-01-01' + g * interval '1 minute', 'hidden'
             FROM generate_series(1, {n}) g;
             CREATE VIEW ai_orders_v1 AS SELECT id, customer, amount, updated_at FROM orders;
             CREATE TABLE payroll (id int);"
        ))
        .await
        .unwrap();
    (db, client)
}

fn register_request(name: &str, dsn: &str) -> ds::RegisterDatasourceRequest {
    ds::RegisterDatasourceRequest {
        name: name.into(),
        connector: ds::ConnectorKind::Postgres as i32,
        connection: Some(ds::ConnectionSpec {
            spec: Some(ds::connection_spec::Spec::Sql(ds::SqlConnection { dsn: dsn.into(), ..Default::default() })),
        }),
        allowlist: Some(ds::Allowlist { objects: vec!["public.ai_orders_v1".into()], ..Default::default() }),
        ..Default::default()
    }
}

async fn wait(client: &Client, job_id: &str) -> sn::ExtractionJob {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = client.get_extraction_job(job_id).await.unwrap();
        let status = JobStatus::try_from(job.status).unwrap();
        if matches!(status, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled) {
            return job;
        }
        assert!(Instant::now() < deadline, "job did not finish: {job:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (id, customer, amount as cents) of every row of a version, sorted by id.
async fn read_rows(client: &Client, dataset: &str, version: u64) -> Vec<(i64, String, i128)> {
    let (_, _, ipc) = client.read_dataset_version(dataset, version, &[], 0).await.unwrap();
    let batches = pulse_datasource::ipc::read_stream(&ipc).unwrap();
    let mut rows = Vec::new();
    for b in batches {
        let id = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
        let customer = b.column_by_name("customer").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let amount = b.column_by_name("amount").unwrap().as_any().downcast_ref::<Decimal128Array>().unwrap().clone();
        for i in 0..b.num_rows() {
            rows.push((id.value(i), customer.value(i).to_string(), amount.value(i)));
        }
    }
    rows.sort();
    rows
}

async fn source_rows(pg: &tokio_postgres::Client) -> Vec<(i64, String, i128)> {
    pg.query("SELECT id, customer, (amount * 100)::bigint FROM orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), i128::from(r.get::<_, i64>(2))))
        .collect()
}

fn extraction(datasource: &str, dataset: &str, mode: sn::ExtractionMode) -> sn::StartExtractionRequest {
    sn::StartExtractionRequest {
        datasource_id: datasource.into(),
        object: "ai_orders_v1".into(),
        dataset: dataset.into(),
        mode: mode as i32,
        cursor_field: "updated_at".into(),
        primary_key: vec!["id".into()],
        chunk_rows: 700,
        parallelism: 2,
        ..Default::default()
    }
}

async fn full_then_incremental(postgres: bool) {
    let sb = sandbox(postgres).await;
    let (src, pg) = source(3000).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let d = client.register_datasource(register_request("shop", &src.url), "").await.unwrap();
    assert!(d.secret.as_ref().is_some_and(|s| !s.key_id.is_empty()));

    let v = client.validate_datasource(&d.id).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert!(
        v.checks.iter().any(|c| c.name == "object:public.ai_orders_v1" && c.status == ds::CheckStatus::Passed as i32)
    );
    // The test role is a superuser: a warning, not a failure.
    assert!(!v.read_only);

    let schema = client.inspect_schema(&d.id, &[]).await.unwrap();
    let cols: Vec<_> = schema.objects[0].schema.as_ref().unwrap().columns.iter().map(|c| c.name.clone()).collect();
    assert_eq!(cols, ["id", "customer", "amount", "updated_at"]);

    // Full snapshot in two parallel ranges of 700-row chunks.
    let job = client.start_extraction(extraction(&d.id, "orders", sn::ExtractionMode::Full), "").await.unwrap();
    let job = wait(&client, &job.id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    assert_eq!(job.ranges.len(), 2);
    let v1 = client.get_dataset_version("orders", 1).await.unwrap();
    assert_eq!(v1.rows, 3000);
    let manifest = v1.manifest.clone().unwrap();
    assert!(manifest.chunks.len() >= 5, "{} chunks", manifest.chunks.len());
    let stats = manifest.statistics.iter().find(|s| s.column == "amount").unwrap();
    assert_eq!(stats.count, 3000);
    assert!((stats.mean.unwrap() - 1875.625).abs() < 1e-6, "{stats:?}");
    let before = source_rows(&pg).await;
    assert_eq!(read_rows(&client, "orders", 1).await, before);

    // New rows and updated rows, then an incremental version.
    pg.batch_execute(
        "INSERT INTO orders SELECT g, 'new', 9.99, now(), 'x' FROM generate_series(3001, 3010) g;
         UPDATE orders SET amount = 0.01, updated_at = now() WHERE id IN (5, 1500, 2999);",
    )
    .await
    .unwrap();
    let job = client.start_extraction(extraction(&d.id, "orders", sn::ExtractionMode::Incremental), "").await.unwrap();
    let job = wait(&client, &job.id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    assert_eq!(job.progress.as_ref().unwrap().done, 13, "only new and changed rows are read");
    let v2 = client.get_dataset_version("orders", 2).await.unwrap();
    assert_eq!(v2.rows, 3010);
    assert_eq!(v2.manifest.as_ref().unwrap().source.as_ref().unwrap().base_version, 1);
    let after = source_rows(&pg).await;
    assert_eq!(read_rows(&client, "orders", 2).await, after, "an incremental version reads as a full one would");
    assert_eq!(read_rows(&client, "orders", 1).await, before, "version 1 never changes");
    assert_ne!(v1.sha256, v2.sha256);

    // The current pointer follows the latest version, and rolls back.
    assert_eq!(client.get_dataset("orders").await.unwrap().current_version, 2);
    let rolled = client.rollback_dataset("orders", 0, "bad data").await.unwrap();
    assert_eq!((rolled.current_version, rolled.current_pinned), (1, true));
    assert_eq!(client.get_dataset_version("orders", 0).await.unwrap().version, 1);

    // Lineage: datasource → extraction → dataset version.
    let trace = client.trace("orders@2", pulse_proto::lineage::v1::Direction::Upstream, 0, 100).await.unwrap();
    let ids: Vec<_> = trace.nodes.iter().map(|n| n.id.clone()).collect();
    assert!(ids.contains(&d.id) && ids.contains(&job.id), "{ids:?}");
    drop(src);
}

#[tokio::test]
async fn full_then_incremental_embedded() {
    full_then_incremental(false).await;
}

#[tokio::test]
async fn full_then_incremental_postgres() {
    full_then_incremental(true).await;
}

fn code(e: ClientError) -> Code {
    match e {
        ClientError::Status { code, .. } => code,
        other => panic!("not a status: {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_and_other_tenants() {
    let sb = sandbox(false).await;
    let (src, _pg) = source(50).await;
    let a = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let b = Client::connect(&sb.endpoint, Some(&sb.tenant_b.1)).await.unwrap();
    let d = a.register_datasource(register_request("shop", &src.url), "").await.unwrap();

    // Not allowlisted: the table behind the view, and another table.
    for object in ["orders", "public.payroll"] {
        let mut req = extraction(&d.id, "x", sn::ExtractionMode::Full);
        req.object = object.into();
        let err = a.start_extraction(req, "").await.unwrap_err();
        assert_eq!(code(err), Code::PermissionDenied, "{object}");
    }
    // Injection attempts never reach the source.
    for object in ["ai_orders_v1; DROP TABLE orders", "ai_orders_v1\"", "ai_orders_v1--", "public.ai_orders_v1/*"] {
        let mut req = extraction(&d.id, "x", sn::ExtractionMode::Full);
        req.object = object.into();
        let err = a.start_extraction(req, "").await.unwrap_err();
        let msg = format!("{err}");
        assert_eq!(code(err), Code::InvalidArgument, "{object}");
        assert!(msg.contains("object"), "{msg}");
    }
    let mut req = extraction(&d.id, "x", sn::ExtractionMode::Full);
    req.cursor_field = "updated_at; --".into();
    assert_eq!(code(a.start_extraction(req, "").await.unwrap_err()), Code::InvalidArgument);
    let mut req = extraction(&d.id, "x", sn::ExtractionMode::Full);
    req.primary_key = vec!["nope".into()];
    let err = a.start_extraction(req, "").await.unwrap_err();
    assert!(format!("{err}").contains("primary_key[0]"), "{err}");
    // Unknown datasource and version.
    let unknown = extraction("dsrc_00000000000000000000000000", "x", sn::ExtractionMode::Full);
    assert_eq!(code(a.start_extraction(unknown, "").await.unwrap_err()), Code::NotFound);
    assert_eq!(code(a.get_dataset_version("nope", 1).await.unwrap_err()), Code::NotFound);
    // Reserved connector.
    let mut http = register_request("web", "http://x");
    http.connector = ds::ConnectorKind::Http as i32;
    http.connection = Some(ds::ConnectionSpec {
        spec: Some(ds::connection_spec::Spec::Http(ds::HttpConnection { url: "http://x".into() })),
    });
    assert_eq!(code(a.register_datasource(http, "").await.unwrap_err()), Code::Unimplemented);

    // The same idempotency key twice: one job.
    let key = "snapshot-once-1";
    let j1 = a.start_extraction(extraction(&d.id, "orders", sn::ExtractionMode::Full), key).await.unwrap();
    let j2 = a.start_extraction(extraction(&d.id, "orders", sn::ExtractionMode::Full), key).await.unwrap();
    assert_eq!(j1.id, j2.id);
    let done = wait(&a, &j1.id).await;
    assert_eq!(done.status, JobStatus::Succeeded as i32);
    assert_eq!(a.list_dataset_versions("orders").await.unwrap().versions.len(), 1);

    // Another tenant sees none of it.
    assert_eq!(code(b.get_datasource(&d.id).await.unwrap_err()), Code::NotFound);
    assert_eq!(code(b.get_datasource("shop").await.unwrap_err()), Code::NotFound);
    assert_eq!(code(b.get_dataset("orders").await.unwrap_err()), Code::NotFound);
    assert_eq!(code(b.get_extraction_job(&j1.id).await.unwrap_err()), Code::NotFound);
    assert_eq!(code(b.read_dataset_version("orders", 1, &[], 0).await.unwrap_err()), Code::NotFound);
    let steal = extraction(&d.id, "mine", sn::ExtractionMode::Full);
    assert_eq!(code(b.start_extraction(steal, "").await.unwrap_err()), Code::NotFound);
    assert!(b.list_datasets("", 100).await.unwrap().datasets.is_empty());

    // A wrong password: validation answers with the cause, never the secret.
    let mut wrong = register_request("wrong", "postgres://nobody_here:s3cr3t-pw@127.0.0.1:5432/postgres");
    wrong.name = "wrong".into();
    let w = a.register_datasource(wrong, "").await.unwrap();
    let shown = format!("{w:?}");
    assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    let v = a.validate_datasource(&w.id).await.unwrap();
    assert!(!v.ok && v.reachable && !v.authenticated, "{v:?}");
    let text = format!("{v:?}");
    assert!(!text.contains("s3cr3t-pw") && text.contains("nobody_here"), "{text}");
    // Unreachable port.
    let down = a.register_datasource(register_request("down", "postgres://u:p@127.0.0.1:1/x"), "").await.unwrap();
    let v = a.validate_datasource(&down.id).await.unwrap();
    assert!(!v.ok && !v.reachable, "{v:?}");
    drop(src);
}

#[tokio::test]
async fn a_tampered_chunk_is_data_loss() {
    let sb = sandbox(false).await;
    let (src, _pg) = source(500).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let d = client.register_datasource(register_request("shop", &src.url), "").await.unwrap();
    let job = client.start_extraction(extraction(&d.id, "orders", sn::ExtractionMode::Full), "").await.unwrap();
    assert_eq!(wait(&client, &job.id).await.status, JobStatus::Succeeded as i32);
    let v = client.get_dataset_version("orders", 1).await.unwrap();
    let chunk = v.manifest.unwrap().chunks[0].clone();
    // Flip bytes of the chunk where the local object store keeps it.
    let path = walk(&sb.platform.config.state_dir)
        .into_iter()
        // The data file, not the store's checksum sidecar (under `.pulse…`).
        .find(|p| {
            p.to_string_lossy().ends_with(&chunk.key)
                && !p.components().any(|c| c.as_os_str().to_string_lossy().starts_with(".pulse"))
        })
        .expect("chunk file on disk");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = client.read_dataset_version("orders", 1, &[], 0).await.unwrap_err();
    let msg = format!("{err}");
    assert_eq!(code(err), Code::DataLoss, "{msg}");
    assert!(msg.contains("SHA-256"), "{msg}");
    drop(src);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn column_subset_and_changed_schema() {
    let sb = sandbox(false).await;
    let (src, pg) = source(100).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let d = client.register_datasource(register_request("shop", &src.url), "").await.unwrap();
    let mut req = extraction(&d.id, "slim", sn::ExtractionMode::Full);
    req.columns = vec!["id".into(), "amount".into()];
    let job = client.start_extraction(req, "").await.unwrap();
    assert_eq!(wait(&client, &job.id).await.status, JobStatus::Succeeded as i32);
    let (_, _, ipc) = client.read_dataset_version("slim", 0, &[], 0).await.unwrap();
    let batches = pulse_datasource::ipc::read_stream(&ipc).unwrap();
    assert_eq!(batches[0].schema().fields().len(), 2);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 100);

    // The view loses a column the dataset has: the next extraction fails,
    // saying which column.
    pg.batch_execute(
        "DROP VIEW ai_orders_v1; CREATE VIEW ai_orders_v1 AS SELECT id, customer, updated_at FROM orders;",
    )
    .await
    .unwrap();
    let mut req = extraction(&d.id, "slim", sn::ExtractionMode::Full);
    req.columns = vec!["id".into(), "amount".into()];
    let err = client.start_extraction(req, "").await.unwrap_err();
    assert!(format!("{err}").contains("amount"), "{err}");
    drop(src);
}

#[tokio::test]
async fn pointer_pinning_and_retention() {
    let sb = sandbox(false).await;
    let (src, pg) = source(200).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let d = client.register_datasource(register_request("shop", &src.url), "").await.unwrap();
    let full = || extraction(&d.id, "orders", sn::ExtractionMode::Full);
    for i in 1..=3 {
        pg.execute(&format!("UPDATE orders SET customer = 'v{i}' WHERE id = 1"), &[]).await.unwrap();
        let job = client.start_extraction(full(), "").await.unwrap();
        assert_eq!(wait(&client, &job.id).await.status, JobStatus::Succeeded as i32);
    }
    // A model was trained on version 2: hold it.
    let held = client.add_retention_hold("orders", 2, "training_job:trn_test", "model fraud v1").await.unwrap();
    assert_eq!(held.holds.len(), 1);
    let ds = client.set_retention_policy("orders", sn::RetentionPolicy { keep_last: 1, max_age: None }).await.unwrap();
    assert_eq!(ds.available_versions, 2);
    let versions = client.list_dataset_versions("orders").await.unwrap().versions;
    let state = |v: u64| versions.iter().find(|x| x.version == v).unwrap().state;
    assert_eq!(state(1), sn::DatasetVersionState::Expired as i32, "beyond keep_last and not held");
    assert_eq!(state(2), sn::DatasetVersionState::Available as i32, "held by a training job");
    assert_eq!(state(3), sn::DatasetVersionState::Available as i32, "current");
    let err = client.read_dataset_version("orders", 1, &[], 0).await.unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    assert_eq!(read_rows(&client, "orders", 2).await[0].1, "v2");

    // Pin version 2: a new version commits but the pointer stays.
    let pinned = client.pin_dataset_version("orders", 2, "known good").await.unwrap();
    assert_eq!((pinned.current_version, pinned.current_pinned), (2, true));
    let job = client.start_extraction(full(), "").await.unwrap();
    assert_eq!(wait(&client, &job.id).await.status, JobStatus::Succeeded as i32);
    let ds = client.get_dataset("orders").await.unwrap();
    assert_eq!((ds.current_version, ds.latest_version), (2, 4));
    assert_eq!(read_rows(&client, "orders", 0).await[0].1, "v2", "version 0 reads the current version");
    let unpinned = client.unpin_dataset("orders").await.unwrap();
    assert_eq!((unpinned.current_version, unpinned.current_pinned), (4, false));
    // An expired version cannot be pinned.
    assert_eq!(code(client.pin_dataset_version("orders", 1, "").await.unwrap_err()), Code::FailedPrecondition);
    drop(src);
}

#[tokio::test]
async fn cancel_discards_the_job() {
    let sb = sandbox(false).await;
    let (src, _pg) = source(300_000).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let d = client.register_datasource(register_request("shop", &src.url), "").await.unwrap();
    let mut req = extraction(&d.id, "orders", sn::ExtractionMode::Full);
    req.chunk_rows = 1000;
    req.parallelism = 1;
    let job = client.start_extraction(req, "").await.unwrap();
    loop {
        let j = client.get_extraction_job(&job.id).await.unwrap();
        assert_ne!(j.status, JobStatus::Succeeded as i32, "finished before the cancel");
        if j.chunks_committed >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.cancel_extraction_job(&job.id, "wrong table").await.unwrap();
    let done = wait(&client, &job.id).await;
    assert_eq!(done.status, JobStatus::Canceled as i32, "{done:?}");
    assert!(client.list_dataset_versions("orders").await.unwrap().versions.is_empty());
    // A finished job cannot be canceled or resumed.
    assert_eq!(code(client.cancel_extraction_job(&job.id, "").await.unwrap_err()), Code::FailedPrecondition);
    assert_eq!(code(client.resume_extraction_job(&job.id).await.unwrap_err()), Code::FailedPrecondition);
    drop(src);
}

fn files_request(name: &str, dir: &std::path::Path, paths: &[&str]) -> ds::RegisterDatasourceRequest {
    ds::RegisterDatasourceRequest {
        name: name.into(),
        connector: ds::ConnectorKind::ObjectStorage as i32,
        connection: Some(ds::ConnectionSpec {
            spec: Some(ds::connection_spec::Spec::ObjectStorage(ds::ObjectStorageConnection {
                uri: format!("file://{}/", dir.display()),
                ..Default::default()
            })),
        }),
        allowlist: Some(ds::Allowlist { paths: paths.iter().map(|p| p.to_string()).collect(), ..Default::default() }),
        ..Default::default()
    }
}

fn write_csv(path: &std::path::Path, rows: &[(i64, &str, f64, &str)]) {
    let mut text = String::from("id,customer,amount,updated_at\n");
    for (id, c, a, t) in rows {
        text.push_str(&format!("{id},{c},{a},{t}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// A CSV file with no database at all: registered, validated, snapshotted
/// fully and incrementally, read back.
#[tokio::test]
async fn a_csv_file_snapshots_like_a_table() {
    let data = tempfile::tempdir().unwrap();
    let roots = vec![data.path().to_path_buf()];
    let sb = Sandbox::start(
        false,
        move |c| {
            c.file_roots = roots;
            c.job_lease_seconds = 2;
        },
        async |platform| {
            let datasources = pulse_datasource::open(&platform).await.unwrap();
            let snapshots = pulse_snapshot::open(&platform, datasources.clone(), None, true).await.unwrap();
            vec![pulse_datasource::hosted(datasources, &platform), pulse_snapshot::hosted(snapshots, &platform)]
        },
    )
    .await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let csv = data.path().join("orders.csv");
    let mut rows: Vec<(i64, &str, f64, &str)> = (1..=250)
        .map(|i| (i, if i % 2 == 0 { "acme" } else { "globex" }, i as f64 * 1.5, "2024-01-01T00:00:00"))
        .collect();
    write_csv(&csv, &rows);
    let d = client.register_datasource(files_request("orders-csv", data.path(), &["orders.csv"]), "").await.unwrap();
    let v = client.validate_datasource(&d.id).await.unwrap();
    assert!(v.ok, "{v:?}");
    let schema = client.inspect_schema(&d.id, &[]).await.unwrap();
    let types: Vec<_> = schema.objects[0]
        .schema
        .as_ref()
        .unwrap()
        .columns
        .iter()
        .map(|c| (c.name.clone(), pulse_proto::common::v1::DataType::try_from(c.data_type).unwrap()))
        .collect();
    use pulse_proto::common::v1::DataType as T;
    assert_eq!(
        types,
        [
            ("id".into(), T::Int),
            ("customer".into(), T::String),
            ("amount".into(), T::Float),
            ("updated_at".into(), T::Timestamp)
        ]
    );
    let req = |mode: sn::ExtractionMode| sn::StartExtractionRequest {
        datasource_id: d.id.clone(),
        object: "orders.csv".into(),
        dataset: "orders-csv".into(),
        mode: mode as i32,
        cursor_field: "updated_at".into(),
        primary_key: vec!["id".into()],
        chunk_rows: 100,
        ..Default::default()
    };
    let job = client.start_extraction(req(sn::ExtractionMode::Full), "").await.unwrap();
    let job = wait(&client, &job.id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    let read = async |version: u64| {
        let (_, _, ipc) = client.read_dataset_version("orders-csv", version, &[], 0).await.unwrap();
        let mut out = Vec::new();
        for b in pulse_datasource::ipc::read_stream(&ipc).unwrap() {
            let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().clone();
            let c = b.column(1).as_any().downcast_ref::<StringArray>().unwrap().clone();
            let a = b.column(2).as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().clone();
            for i in 0..b.num_rows() {
                out.push((id.value(i), c.value(i).to_string(), a.value(i)));
            }
        }
        out.sort_by_key(|r| r.0);
        out
    };
    let v1 = read(1).await;
    assert_eq!(v1.len(), 250);
    assert_eq!(v1[9], (10, "acme".to_string(), 15.0));

    // Row 10 changes and two rows arrive, with later timestamps.
    rows[9] = (10, "acme", 999.0, "2024-02-01T00:00:00");
    rows.push((251, "initech", 1.0, "2024-02-01T00:00:00"));
    rows.push((252, "initech", 2.0, "2024-02-01T00:00:00"));
    write_csv(&csv, &rows);
    let job = client.start_extraction(req(sn::ExtractionMode::Incremental), "").await.unwrap();
    let job = wait(&client, &job.id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    assert_eq!(job.progress.unwrap().done, 3);
    let v2 = read(2).await;
    assert_eq!(v2.len(), 252);
    assert_eq!(v2[9], (10, "acme".to_string(), 999.0));
    assert_eq!(read(1).await, v1);

    // Paths stay inside the allowed roots and the datasource's directory.
    let outside = client.register_datasource(files_request("etc", std::path::Path::new("/etc"), &["passwd"]), "").await;
    let err = outside.unwrap_err();
    assert!(format!("{err}").contains("file_roots"), "{err}");
    assert_eq!(code(err), Code::PermissionDenied);
    let mut bad = req(sn::ExtractionMode::Full);
    bad.object = "../orders.csv".into();
    assert_eq!(code(client.start_extraction(bad, "").await.unwrap_err()), Code::InvalidArgument);
    let mut other = req(sn::ExtractionMode::Full);
    other.object = "secrets.csv".into();
    assert_eq!(code(client.start_extraction(other, "").await.unwrap_err()), Code::PermissionDenied);
}

fn mariadb(sql: &str) {
    let out = std::process::Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql])
        .output()
        .expect("the mysql client is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The same journey on MariaDB: a full snapshot, then an incremental one
/// merged by key.
#[tokio::test]
async fn mariadb_full_then_incremental() {
    let db = format!("pulse_snap_{}", std::process::id());
    mariadb(&format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; USE {db};
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer VARCHAR(20), amount DECIMAL(12,2), updated_at DATETIME(6) NOT NULL);
         INSERT INTO orders SELECT seq, CONCAT('c', seq % 7), seq * 1.25, TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE
         FROM seq_1_to_500;"
    ));
    let sb = sandbox(false).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let mut reg = register_request("maria", &format!("mysql://root@127.0.0.1:3306/{db}"));
    reg.connector = ds::ConnectorKind::Mysql as i32;
    reg.allowlist = Some(ds::Allowlist { objects: vec!["orders".into()], ..Default::default() });
    let d = client.register_datasource(reg, "").await.unwrap();
    assert!(client.validate_datasource(&d.id).await.unwrap().ok);
    let req = |mode: sn::ExtractionMode| sn::StartExtractionRequest {
        datasource_id: d.id.clone(),
        object: "orders".into(),
        dataset: "maria-orders".into(),
        mode: mode as i32,
        cursor_field: "updated_at".into(),
        chunk_rows: 200,
        parallelism: 2,
        ..Default::default()
    };
    let job = wait(&client, &client.start_extraction(req(sn::ExtractionMode::Full), "").await.unwrap().id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    assert_eq!(job.primary_key, ["id"], "the declared primary key is the default");
    assert_eq!(client.get_dataset_version("maria-orders", 1).await.unwrap().rows, 500);
    mariadb(&format!(
        "USE {db}; INSERT INTO orders VALUES (501, 'new', 1.00, NOW(6));
         UPDATE orders SET amount = 0.01, updated_at = NOW(6) WHERE id = 7;"
    ));
    let job = wait(&client, &client.start_extraction(req(sn::ExtractionMode::Incremental), "").await.unwrap().id).await;
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    let rows = read_rows(&client, "maria-orders", 2).await;
    assert_eq!(rows.len(), 501);
    assert_eq!(rows[6], (7, "c0".to_string(), 1));
    assert_eq!(read_rows(&client, "maria-orders", 1).await[6].2, 875);
    mariadb(&format!("DROP DATABASE {db}"));
}
