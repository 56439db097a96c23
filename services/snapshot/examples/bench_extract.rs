//! Drives one extraction through a running Pulse (for bench/snapshot/bench.py):
//! registers the source, snapshots one table at the given parallelism, waits,
//! and prints `seconds rows bytes sha256` of the committed version.
//!
//! bench_extract <endpoint> <api-key> <connector> <dsn> <table> <parallelism> <partition-column> <key,columns>

use std::time::{Duration, Instant};

use pulse_client::Client;
use pulse_proto::common::v1::JobStatus;
use pulse_proto::datasource::v1 as ds;
use pulse_proto::snapshot::v1 as sn;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 9 {
        eprintln!(
            "usage: bench_extract <endpoint> <api-key> <postgres|mysql> <dsn> <table> <parallelism> <partition-column> <pk,cols>"
        );
        std::process::exit(2);
    }
    let client = Client::connect(&args[1], Some(&args[2])).await.expect("connect");
    let connector = match args[3].as_str() {
        "mysql" => ds::ConnectorKind::Mysql,
        _ => ds::ConnectorKind::Postgres,
    };
    let d = client
        .register_datasource(
            ds::RegisterDatasourceRequest {
                name: "bench".into(),
                connector: connector as i32,
                connection: Some(ds::ConnectionSpec {
                    spec: Some(ds::connection_spec::Spec::Sql(ds::SqlConnection {
                        dsn: args[4].clone(),
                        ..Default::default()
                    })),
                }),
                allowlist: Some(ds::Allowlist { objects: vec![args[5].clone()], ..Default::default() }),
                ..Default::default()
            },
            "",
        )
        .await
        .expect("register");
    let started = Instant::now();
    let job = client
        .start_extraction(
            sn::StartExtractionRequest {
                datasource_id: d.id,
                object: args[5].clone(),
                dataset: "bench".into(),
                parallelism: args[6].parse().expect("parallelism"),
                partition_column: args[7].clone(),
                primary_key: args[8].split(',').map(str::to_string).collect(),
                ..Default::default()
            },
            "",
        )
        .await
        .expect("start");
    let job = loop {
        let j = client.get_extraction_job(&job.id).await.expect("job");
        if matches!(JobStatus::try_from(j.status), Ok(JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)) {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(job.status, JobStatus::Succeeded as i32, "{job:?}");
    let v = client.get_dataset_version("bench", 0).await.expect("version");
    println!("{seconds:.3} {} {} {}", v.rows, v.bytes, v.sha256);
}
