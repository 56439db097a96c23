//! The SQL Server connector against a real server, when one is given:
//! `PULSE_TEST_SQLSERVER_URL=sqlserver://sa:Passw0rd!@127.0.0.1:1433/master?trust_server_certificate=true`
//! (the login must be able to create a database). Without it the test says
//! it was skipped; the connector's SQL, type mapping and decoding are
//! unit-tested in `connector::sqlserver`.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::Int64Array;
use futures::StreamExt;
use pulse_datasource::connector::sqlserver::SqlServerConnector;
use pulse_datasource::connector::values::value_at;
use pulse_datasource::connector::{Connector, CursorWindow, ObjectName, ReadSpec, SqlSettings};
use pulse_proto::common::v1::DataType;
use pulse_proto::datasource::v1::value::Kind;
use pulse_proto::datasource::v1::{CheckStatus, Value};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio_util::compat::TokioAsyncWriteCompatExt;

fn server_url() -> Option<String> {
    match std::env::var("PULSE_TEST_SQLSERVER_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!(
                "SKIPPED: the SQL Server integration test needs a server; set PULSE_TEST_SQLSERVER_URL \
                 (e.g. sqlserver://sa:Passw0rd!@127.0.0.1:1433/master?trust_server_certificate=true)"
            );
            None
        }
    }
}

/// A raw admin connection for setting the test database up.
async fn admin(url: &url::Url, database: &str) -> Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
    let mut c = Config::new();
    c.host(url.host_str().unwrap());
    c.port(url.port().unwrap_or(1433));
    c.database(database);
    c.authentication(AuthMethod::sql_server(url.username(), url.password().unwrap_or("")));
    c.trust_cert();
    c.encryption(EncryptionLevel::Required);
    let tcp = tokio::net::TcpStream::connect(c.get_addr()).await.unwrap();
    Client::connect(c, tcp.compat_write()).await.unwrap()
}

fn connector(dsn: &str) -> SqlServerConnector {
    SqlServerConnector::new(SqlSettings {
        dsn: dsn.into(),
        connect_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(60),
        max_connections: 2,
        queries: BTreeMap::from([(
            "recent".to_string(),
            "SELECT id, amount FROM dbo.orders WHERE id > 10".to_string(),
        )]),
    })
    .unwrap()
}

#[tokio::test]
async fn reads_a_real_sql_server() {
    let Some(raw) = server_url() else { return };
    let url = url::Url::parse(&raw).unwrap();
    let db = format!("pulse_t_{}", std::process::id());
    let mut master = admin(&url, "master").await;
    master
        .simple_query(format!("IF DB_ID('{db}') IS NOT NULL DROP DATABASE [{db}]; CREATE DATABASE [{db}]"))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    {
        let mut c = admin(&url, &db).await;
        c.simple_query(
            "CREATE TABLE dbo.orders (id bigint PRIMARY KEY, customer nvarchar(40) NOT NULL, amount decimal(12,2), \
             price money, placed datetime2 NOT NULL, placed_at datetimeoffset, token uniqueidentifier, flag bit);
             INSERT INTO dbo.orders SELECT TOP (1000) ROW_NUMBER() OVER (ORDER BY (SELECT 1)), N'c' + CAST(ROW_NUMBER() OVER (ORDER BY (SELECT 1)) % 7 AS nvarchar),
               CAST(ROW_NUMBER() OVER (ORDER BY (SELECT 1)) * 1.25 AS decimal(12,2)), 9.99, '2024-01-01T00:00:00',
               '2024-01-01T10:00:00+02:00', NEWID(), 1 FROM sys.all_objects a CROSS JOIN sys.all_objects b;",
        )
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    }
    let mut dsn = url.clone();
    dsn.set_path(&format!("/{db}"));
    let conn = connector(dsn.as_str());
    let orders = ObjectName::Table { schema: Some("dbo".into()), name: "orders".into() };

    let v = conn.validate(&[orders.clone(), ObjectName::Table { schema: None, name: "missing".into() }]).await;
    assert!(v.reachable && v.authenticated, "{v:?}");
    assert!(v.server_version.starts_with("SQL Server"), "{}", v.server_version);
    let by_name: BTreeMap<_, _> = v.checks.iter().map(|c| (c.name.clone(), c.clone())).collect();
    assert_eq!(by_name["object:dbo.orders"].status, CheckStatus::Passed as i32);
    assert_eq!(by_name["object:dbo.missing"].status, CheckStatus::Failed as i32);
    // An administrative login can write: a warning, never a failure.
    assert_eq!(by_name["read_only"].status, CheckStatus::Warning as i32, "{:?}", by_name["read_only"]);

    let schema = conn.inspect(&orders).await.unwrap();
    assert_eq!(schema.primary_key, vec!["id".to_string()]);
    let types: Vec<(String, i32)> =
        schema.schema.unwrap().columns.iter().map(|c| (c.name.clone(), c.data_type)).collect();
    assert_eq!(types[0], ("id".into(), DataType::Int as i32));
    assert_eq!(types[2], ("amount".into(), DataType::Decimal as i32));
    assert_eq!(types[4], ("placed".into(), DataType::Timestamp as i32));

    let size = conn.estimate(&orders, true, None).await.unwrap();
    assert_eq!(size.rows, 1000);

    let mut stream = conn
        .stream(
            &orders,
            ReadSpec {
                columns: vec!["id".into(), "amount".into(), "price".into(), "placed_at".into()],
                cursor: Some(CursorWindow {
                    field: "id".into(),
                    after: Some(Value { kind: Some(Kind::IntValue(100)) }),
                    until: None,
                }),
                order_by: vec!["id".into()],
                batch_rows: 128,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut first = None;
    while let Some(batch) = stream.next().await {
        let b = batch.unwrap();
        assert!(b.num_rows() <= 128);
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        ids.extend((0..b.num_rows()).map(|i| id.value(i)));
        if first.is_none() {
            first = Some((
                value_at(b.column(1).as_ref(), 0),
                value_at(b.column(2).as_ref(), 0),
                value_at(b.column(3).as_ref(), 0),
            ));
        }
    }
    assert_eq!(ids, (101..=1000).collect::<Vec<_>>());
    let (amount, price, at) = first.unwrap();
    assert_eq!(amount, Value { kind: Some(Kind::DecimalValue("126.25".into())) });
    assert_eq!(price, Value { kind: Some(Kind::DecimalValue("9.9900".into())) });
    let utc = chrono::DateTime::parse_from_rfc3339("2024-01-01T08:00:00Z").unwrap().timestamp_micros();
    assert_eq!(
        at,
        Value { kind: Some(Kind::TimestampValue(pulse_datasource::connector::values::micros_to_proto(utc))) }
    );

    let bounds = conn.column_bounds(&orders, "id", 4, None).await.unwrap();
    assert_eq!(bounds.splits.len(), 3);
    let recent = conn.inspect(&ObjectName::Query("recent".into())).await.unwrap();
    assert_eq!(recent.schema.unwrap().columns.len(), 2);
    drop(stream);
    master
        .simple_query(format!("ALTER DATABASE [{db}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{db}]"))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
}
