//! The object-storage connector on real files: CSV and Parquet in a local
//! directory (and on the S3-compatible test server when one is configured).

use futures::StreamExt;
use pulse_datasource::connector::files::{FileConnector, ReadScope};
use pulse_datasource::connector::{Connector, CursorWindow, FileSettings, ReadSpec};
use pulse_datasource::names::ObjectName;
use pulse_proto::datasource::v1::Value;
use pulse_proto::datasource::v1::value::Kind;

fn csv(dir: &std::path::Path) {
    std::fs::write(
        dir.join("orders.csv"),
        "id,customer,amount,updated_at,day,vip\n1,acme,1.5,2024-01-01T00:00:00,2024-01-01,true\n\
         2,globex,,2024-01-02T00:00:00,2024-01-02,false\n3,acme,4.25,2024-01-03T00:00:00,2024-01-03,true\n",
    )
    .unwrap();
}

async fn connector(dir: &std::path::Path) -> FileConnector {
    let settings = FileSettings { uri: format!("file://{}/", dir.display()), ..Default::default() };
    FileConnector::new(settings, &ReadScope::files(vec![dir.to_path_buf()])).await.unwrap()
}

async fn rows(c: &FileConnector, object: &str, spec: ReadSpec) -> Vec<arrow::record_batch::RecordBatch> {
    let mut s = c.stream(&ObjectName::Path(object.into()), spec).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.push(b.unwrap());
    }
    out
}

#[tokio::test]
async fn csv_is_inspected_estimated_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    csv(dir.path());
    let c = connector(dir.path()).await;
    let object = ObjectName::Path("orders.csv".into());
    let schema = c.inspect(&object).await.unwrap().schema.unwrap();
    let names: Vec<_> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "customer", "amount", "updated_at", "day", "vip"]);

    let window = CursorWindow {
        field: "updated_at".into(),
        after: Some(Value {
            kind: Some(Kind::TimestampValue(prost_types::Timestamp { seconds: 1_704_067_200, nanos: 0 })),
        }),
        until: None,
    };
    let size = c.estimate(&object, true, Some(&window)).await.unwrap();
    assert_eq!(size.rows, 2, "{size:?}");
    assert!(size.cursor_max.unwrap().kind.is_some());

    let all = rows(&c, "orders.csv", ReadSpec::default()).await;
    assert_eq!(all.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    assert_eq!(all[0].column(2).null_count(), 1);

    let ordered = ReadSpec {
        order_by: vec!["id".into()],
        after_key: vec![Value { kind: Some(Kind::IntValue(1)) }],
        columns: vec!["customer".into()],
        batch_rows: 1,
        ..Default::default()
    };
    let after = rows(&c, "orders.csv", ordered).await;
    assert_eq!(after.len(), 2, "one row per batch, after id 1");
    assert_eq!(after[0].num_columns(), 1);
}

#[tokio::test]
async fn paths_outside_the_roots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let settings = FileSettings { uri: format!("file://{}/", other.path().display()), ..Default::default() };
    let err = FileConnector::new(settings, &ReadScope::files(vec![dir.path().to_path_buf()])).await.unwrap_err();
    assert!(err.to_string().contains("file_roots"), "{err}");
    let c = connector(dir.path()).await;
    assert!(c.inspect(&ObjectName::Path("missing.csv".into())).await.is_err());
}

#[tokio::test]
async fn parquet_globs_read_as_one_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("events")).unwrap();
    for part in 0..3 {
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "n",
            arrow::datatypes::DataType::Int32,
            false,
        )]));
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(arrow::array::Int32Array::from(vec![part, part + 10]))],
        )
        .unwrap();
        let file = std::fs::File::create(dir.path().join(format!("events/part-{part}.parquet"))).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let c = connector(dir.path()).await;
    let object = ObjectName::Path("events/*.parquet".into());
    assert_eq!(c.inspect(&object).await.unwrap().estimated_rows, Some(6));
    let all = rows(&c, "events/*.parquet", ReadSpec::default()).await;
    let total: i64 = all
        .iter()
        .map(|b| b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().values().iter().sum::<i64>())
        .sum();
    assert_eq!(total, 36, "Int32 is read as the canonical Int64");
}

/// A tenant's datasource never reads Pulse's own bucket, and reads other
/// buckets with the server's credentials only where an operator allowed it.
#[tokio::test]
async fn s3_buckets_need_their_own_keys_unless_allowed_and_never_the_pulse_bucket() {
    let scope = ReadScope {
        file_roots: Vec::new(),
        ambient_s3_buckets: vec!["shared-exports".into()],
        reserved_bucket: Some("pulse-artifacts".into()),
    };
    let s3 = |uri: &str, key: &str| FileSettings {
        uri: uri.into(),
        access_key_id: key.into(),
        secret_access_key: if key.is_empty() { String::new() } else { "secret".into() },
        region: "us-east-1".into(),
        ..Default::default()
    };
    let err = FileConnector::new(s3("s3://pulse-artifacts/t1/datasets/", "AKIA1"), &scope).await.unwrap_err();
    assert!(err.to_string().contains("holds Pulse's own"), "{err}");
    let err = FileConnector::new(s3("s3://someone-else/", ""), &scope).await.unwrap_err();
    assert!(err.to_string().contains("s3_ambient_buckets") && err.to_string().contains("access_key_id"), "{err}");
    FileConnector::new(s3("s3://someone-else/", "AKIA1"), &scope).await.unwrap();
    FileConnector::new(s3("s3://shared-exports/daily/", ""), &scope).await.unwrap();
}
