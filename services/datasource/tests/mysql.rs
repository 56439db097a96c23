//! The MySQL connector against the MariaDB server at 127.0.0.1:3306 (user
//! root, no password). Every test works in its own database, dropped at the
//! end (also when the test fails).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType as ArrowType, TimeUnit};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use pulse_datasource::DatasourceError;
use pulse_datasource::connector::mysql::MysqlConnector;
use pulse_datasource::connector::values::{UTC, micros_to_proto, value_at};
use pulse_datasource::connector::{Connector, CursorWindow, ObjectName, RangeFilter, ReadSpec, SqlSettings};
use pulse_proto::common::v1::DataType;
use pulse_proto::datasource::v1::value::Kind;
use pulse_proto::datasource::v1::{CheckStatus, ObjectKind, Value};

const SERVER: &str = "mysql://root@127.0.0.1:3306";

/// A database of its own for one test; dropped with the value.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn new(statements: &[&str]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("pulse_t_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut conn = mysql_async::Conn::from_url(SERVER).await.unwrap();
        conn.query_drop(format!("CREATE DATABASE `{name}`")).await.unwrap();
        conn.query_drop(format!("USE `{name}`")).await.unwrap();
        for s in statements {
            conn.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.disconnect().await.unwrap();
        Self { name }
    }

    fn connector(&self, queries: &[(&str, &str)]) -> MysqlConnector {
        connector(&format!("{SERVER}/{}", self.name), queries)
    }

    fn table(&self, name: &str) -> ObjectName {
        ObjectName::Table { schema: Some(self.name.clone()), name: name.into() }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping runs outside the test's runtime, which may be gone.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = mysql_async::Conn::from_url(SERVER).await {
                    // A failed test may leave a read open: never wait on it forever.
                    let _ = conn.query_drop("SET SESSION lock_wait_timeout = 10").await;
                    let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await;
                    let _ = conn.disconnect().await;
                }
            });
        })
        .join();
    }
}

fn connector(dsn: &str, queries: &[(&str, &str)]) -> MysqlConnector {
    MysqlConnector::new(SqlSettings {
        dsn: dsn.into(),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(60),
        max_connections: 3,
        queries: queries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    })
    .unwrap()
}

fn int(i: i64) -> Value {
    Value { kind: Some(Kind::IntValue(i)) }
}

async fn read_all(c: &MysqlConnector, object: &ObjectName, spec: ReadSpec) -> Vec<RecordBatch> {
    let mut stream = c.stream(object, spec).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        out.push(b.unwrap());
    }
    out
}

fn ints(batches: &[RecordBatch], column: &str) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i)))
        })
        .collect()
}

const ORDERS: &[&str] = &[
    "CREATE TABLE orders (
        region VARCHAR(8) NOT NULL,
        id BIGINT NOT NULL,
        amount DECIMAL(15,2) NULL,
        paid TINYINT(1) NOT NULL DEFAULT 0,
        updated DATETIME(6) NULL,
        note TEXT,
        PRIMARY KEY (region, id)
    ) COMMENT 'all orders'",
    "INSERT INTO orders VALUES
        ('eu', 1, 10.50, 1, '2024-01-01 10:00:00', 'a'),
        ('eu', 2, 20.00, 0, '2024-01-02 10:00:00', NULL),
        ('us', 1, NULL, 0, '2024-01-03 10:00:00', 'c'),
        ('us', 2, 5.25, 1, NULL, 'd'),
        ('us', 3, 7.00, 0, '2024-01-05 10:00:00', 'e'),
        ('ap', 1, 1.00, 1, '2024-01-06 10:00:00', 'f')",
    "CREATE VIEW paid_orders AS SELECT region, id, amount FROM orders WHERE paid = 1",
];

#[tokio::test]
async fn inspect_reports_types_keys_and_nullability() {
    let db = TestDb::new(ORDERS).await;
    let c = db.connector(&[("big", "SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region")]);
    assert_eq!(c.default_schema(), db.name);

    let s = c.inspect(&ObjectName::Table { schema: None, name: "orders".into() }).await.unwrap();
    assert_eq!(s.object, format!("{}.orders", db.name));
    assert_eq!(s.kind, ObjectKind::Table as i32);
    assert_eq!(s.primary_key, vec!["region", "id"]);
    assert_eq!(s.comment, "all orders");
    assert!(s.estimated_rows.is_some());
    let cols = s.schema.unwrap().columns;
    let summary: Vec<(&str, DataType, &str, bool, bool)> = cols
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                DataType::try_from(c.data_type).unwrap(),
                c.source_type.as_str(),
                c.nullable,
                c.primary_key,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("region", DataType::String, "varchar(8)", false, true),
            ("id", DataType::Int, "bigint(20)", false, true),
            ("amount", DataType::Decimal, "decimal(15,2)", true, false),
            ("paid", DataType::Bool, "tinyint(1)", false, false),
            ("updated", DataType::Timestamp, "datetime(6)", true, false),
            ("note", DataType::String, "text", true, false),
        ]
    );

    let v = c.inspect(&db.table("paid_orders")).await.unwrap();
    assert_eq!(v.kind, ObjectKind::View as i32);
    assert!(v.primary_key.is_empty());
    assert_eq!(v.estimated_rows, None);

    let q = c.inspect(&ObjectName::Query("big".into())).await.unwrap();
    assert_eq!(q.kind, ObjectKind::StoredQuery as i32);
    assert_eq!(q.object, "query:big");
    let qcols = q.schema.unwrap().columns;
    let types: Vec<(&str, DataType)> =
        qcols.iter().map(|c| (c.name.as_str(), DataType::try_from(c.data_type).unwrap())).collect();
    assert_eq!(types, vec![("region", DataType::String), ("total", DataType::Decimal), ("n", DataType::Int)]);
    assert!(qcols[1].source_type.starts_with("decimal(") && qcols[1].source_type.ends_with(",2)"), "{:?}", qcols[1]);

    match c.inspect(&db.table("nope")).await {
        Err(DatasourceError::ObjectMissing(o)) => assert_eq!(o, format!("{}.nope", db.name)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.inspect(&ObjectName::Query("unknown".into())).await, Err(DatasourceError::ObjectMissing(_))));

    let listed = c.list_objects(std::slice::from_ref(&db.name)).await.unwrap();
    assert_eq!(listed, vec![db.table("orders"), db.table("paid_orders")]);
}

#[tokio::test]
async fn validate_checks_each_step() {
    let db = TestDb::new(ORDERS).await;
    let c = db.connector(&[("recent", "SELECT * FROM orders WHERE id > 1")]);
    let objects = vec![db.table("orders"), db.table("missing"), ObjectName::Query("recent".into())];
    let out = c.validate(&objects).await;
    let checks: Vec<(&str, CheckStatus)> =
        out.checks.iter().map(|c| (c.name.as_str(), CheckStatus::try_from(c.status).unwrap())).collect();
    let orders = format!("object:{}.orders", db.name);
    let missing = format!("object:{}.missing", db.name);
    assert_eq!(
        checks,
        vec![
            ("reachable", CheckStatus::Passed),
            ("authenticated", CheckStatus::Passed),
            // root can write.
            ("read_only", CheckStatus::Warning),
            (orders.as_str(), CheckStatus::Passed),
            (missing.as_str(), CheckStatus::Failed),
            ("object:query:recent", CheckStatus::Passed),
        ]
    );
    assert!(out.reachable && out.authenticated && !out.read_only);
    assert!(out.server_version.starts_with("MariaDB 10.") || out.server_version.starts_with("MySQL "), "{out:?}");
    assert!(out.checks[2].message.contains("ALL PRIVILEGES"), "{:?}", out.checks[2]);
    assert!(out.checks[4].message.contains("does not exist"), "{:?}", out.checks[4]);
    assert!(out.checks.iter().all(|c| c.latency.is_some()));
}

#[tokio::test]
async fn validate_reports_a_wrong_password_without_echoing_it() {
    let db = TestDb::new(&[]).await;
    let c = connector(&format!("mysql://root:Sekr1t-pw@127.0.0.1:3306/{}", db.name), &[]);
    let out = c.validate(&[db.table("t")]).await;
    let statuses: Vec<CheckStatus> = out.checks.iter().map(|c| CheckStatus::try_from(c.status).unwrap()).collect();
    assert_eq!(
        statuses,
        vec![CheckStatus::Passed, CheckStatus::Failed, CheckStatus::Skipped, CheckStatus::Skipped],
        "{out:?}"
    );
    assert!(out.reachable && !out.authenticated);
    assert!(out.checks[1].message.contains("Access denied"), "{:?}", out.checks[1]);
    for check in &out.checks {
        assert!(!check.message.contains("Sekr1t"), "{check:?}");
    }
    assert!(!format!("{c:?}").contains("Sekr1t"));
    // Reads fail as unavailable, without the password either.
    let err = c.inspect(&db.table("t")).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("Sekr1t"), "{err}");
}

#[tokio::test]
async fn validate_reports_an_unreachable_server() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let c = connector("mysql://root:Sekr1t-pw@127.0.0.1:1/shop", &[]);
    let out = c.validate(&[ObjectName::Table { schema: None, name: "orders".into() }]).await;
    let checks: Vec<(&str, CheckStatus)> =
        out.checks.iter().map(|c| (c.name.as_str(), CheckStatus::try_from(c.status).unwrap())).collect();
    assert_eq!(
        checks,
        vec![
            ("reachable", CheckStatus::Failed),
            ("authenticated", CheckStatus::Skipped),
            ("read_only", CheckStatus::Skipped),
            ("object:shop.orders", CheckStatus::Skipped),
        ]
    );
    assert!(!out.reachable);
    assert!(out.checks[0].message.contains("127.0.0.1:1"), "{:?}", out.checks[0]);
    assert!(out.checks.iter().all(|c| !c.message.contains("Sekr1t")));
    let err = c.inspect(&ObjectName::Table { schema: None, name: "orders".into() }).await.unwrap_err();
    assert!(matches!(err, DatasourceError::Unavailable(_)) && err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn estimate_counts_and_finds_the_cursor_max() {
    let db = TestDb::new(ORDERS).await;
    let c = db.connector(&[("eu", "SELECT * FROM orders WHERE region = 'eu'")]);
    let orders = db.table("orders");

    let stats = c.estimate(&orders, false, None).await.unwrap();
    assert_eq!((stats.exact, stats.method.as_str()), (false, "information_schema.TABLES"));

    let exact = c.estimate(&orders, true, None).await.unwrap();
    assert_eq!((exact.rows, exact.exact, exact.method.as_str(), exact.cursor_max), (6, true, "count(*)", None));

    let after = micros_to_proto(chrono_micros("2024-01-02 10:00:00"));
    let window = CursorWindow {
        field: "updated".into(),
        after: Some(Value { kind: Some(Kind::TimestampValue(after)) }),
        until: None,
    };
    let size = c.estimate(&orders, false, Some(&window)).await.unwrap();
    assert_eq!(size.rows, 3);
    assert!(size.exact);
    let Some(Kind::TimestampValue(max)) = size.cursor_max.unwrap().kind else { panic!("no cursor max") };
    assert_eq!(max, micros_to_proto(chrono_micros("2024-01-06 10:00:00")));

    let q = c.estimate(&ObjectName::Query("eu".into()), false, None).await.unwrap();
    assert_eq!((q.rows, q.exact), (2, true));
    let view = c.estimate(&db.table("paid_orders"), false, None).await.unwrap();
    assert_eq!((view.rows, view.exact), (3, true));
    assert!(matches!(c.estimate(&db.table("nope"), false, None).await, Err(DatasourceError::ObjectMissing(_))));
    assert!(matches!(c.estimate(&db.table("nope"), true, None).await, Err(DatasourceError::ObjectMissing(_))));
}

fn chrono_micros(text: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp_micros()
}

#[tokio::test]
async fn streams_in_order_and_resumes_after_a_key() {
    let mut statements = vec!["CREATE TABLE seq (id INT PRIMARY KEY, grp INT NOT NULL, v VARCHAR(10))"];
    let insert = format!(
        "INSERT INTO seq VALUES {}",
        (1..=25).map(|i| format!("({i}, {}, 'v{i}')", i % 3)).collect::<Vec<_>>().join(", ")
    );
    statements.push(&insert);
    let db = TestDb::new(&statements).await;
    let c = db.connector(&[]);
    let seq = db.table("seq");

    let batches =
        read_all(&c, &seq, ReadSpec { order_by: vec!["id".into()], batch_rows: 10, ..Default::default() }).await;
    assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), vec![10, 10, 5]);
    assert_eq!(ints(&batches, "id"), (1..=25).map(Some).collect::<Vec<_>>());
    assert_eq!(batches[0].schema().fields().len(), 3);

    // Resume after (grp 1, id 13) in (grp, id) order, only two columns.
    let spec = ReadSpec {
        columns: vec!["id".into(), "grp".into()],
        order_by: vec!["grp".into(), "id".into()],
        after_key: vec![int(1), int(13)],
        batch_rows: 4,
        ..Default::default()
    };
    let batches = read_all(&c, &seq, spec).await;
    let schema = batches[0].schema();
    assert_eq!(schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), vec!["id", "grp"]);
    let expected: Vec<Option<i64>> = [16, 19, 22, 25, 2, 5, 8, 11, 14, 17, 20, 23].into_iter().map(Some).collect();
    assert_eq!(ints(&batches, "id"), expected);

    let limited =
        read_all(&c, &seq, ReadSpec { order_by: vec!["id".into()], limit: Some(3), ..Default::default() }).await;
    assert_eq!(ints(&limited, "id"), vec![Some(1), Some(2), Some(3)]);

    // An empty read is an empty stream.
    let none =
        read_all(&c, &seq, ReadSpec { after_key: vec![int(99)], order_by: vec!["id".into()], ..Default::default() })
            .await;
    assert!(none.is_empty());

    let err = match c.stream(&seq, ReadSpec { columns: vec!["nope".into()], ..Default::default() }).await {
        Err(e) => e,
        Ok(_) => panic!("unknown column accepted"),
    };
    assert!(err.to_string().starts_with("columns[0]:"), "{err}");
}

#[tokio::test]
async fn streams_a_cursor_window_and_a_range() {
    let db = TestDb::new(ORDERS).await;
    let c = db.connector(&[]);
    let orders = db.table("orders");
    let ts = |s: &str| Value { kind: Some(Kind::TimestampValue(micros_to_proto(chrono_micros(s)))) };
    let spec = ReadSpec {
        columns: vec!["region".into(), "id".into()],
        cursor: Some(CursorWindow {
            field: "updated".into(),
            after: Some(ts("2024-01-01 10:00:00")),
            until: Some(ts("2024-01-05 10:00:00")),
        }),
        order_by: vec!["region".into(), "id".into()],
        ..Default::default()
    };
    let batches = read_all(&c, &orders, spec).await;
    let rows: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .map(move |i| format!("{:?}/{:?}", value_at(b.column(0), i).kind, value_at(b.column(1), i).kind))
        })
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(ints(&batches, "id"), vec![Some(2), Some(1), Some(3)]);

    // amount in [5.25, 20.00) plus nulls, with an exact decimal bound.
    let spec = ReadSpec {
        columns: vec!["amount".into()],
        range: Some(RangeFilter {
            column: "amount".into(),
            lower: Some(Value { kind: Some(Kind::DecimalValue("5.25".into())) }),
            upper: Some(Value { kind: Some(Kind::DecimalValue("20.00".into())) }),
            include_nulls: true,
        }),
        order_by: vec!["amount".into()],
        ..Default::default()
    };
    let batches = read_all(&c, &orders, spec).await;
    let amounts: Vec<Option<Kind>> =
        batches.iter().flat_map(|b| (0..b.num_rows()).map(move |i| value_at(b.column(0), i).kind)).collect();
    let dec = |s: &str| Some(Kind::DecimalValue(s.into()));
    assert_eq!(amounts, vec![None, dec("5.25"), dec("7.00"), dec("10.50")]);

    // Parallel ranges on id cover the table once.
    let bounds = c.column_bounds(&orders, "id", 3, None).await.unwrap();
    assert_eq!((bounds.min.clone(), bounds.max.clone()), (Some(int(1)), Some(int(3))));
    let bounds = c.column_bounds(&orders, "updated", 4, None).await.unwrap();
    let Some(Kind::TimestampValue(min)) = bounds.min.clone().unwrap().kind else { panic!() };
    assert_eq!(min, micros_to_proto(chrono_micros("2024-01-01 10:00:00")));
    assert!(!bounds.splits.is_empty() && bounds.splits.len() <= 3, "{bounds:?}");
    let mut prev = bounds.min.clone().unwrap();
    for s in &bounds.splits {
        assert_eq!(pulse_datasource::connector::values::compare_values(s, &prev), std::cmp::Ordering::Greater);
        prev = s.clone();
    }
    assert_ne!(
        pulse_datasource::connector::values::compare_values(&prev, bounds.max.as_ref().unwrap()),
        std::cmp::Ordering::Greater
    );
    let strings = c.column_bounds(&orders, "region", 3, None).await.unwrap();
    assert_eq!(strings.min.unwrap().kind, Some(Kind::StringValue("ap".into())));
    assert_eq!(
        strings.splits.iter().map(|v| v.kind.clone()).collect::<Vec<_>>(),
        vec![Some(Kind::StringValue("eu".into())), Some(Kind::StringValue("us".into()))]
    );
    assert_eq!(
        c.column_bounds(
            &orders,
            "id",
            1,
            Some(&CursorWindow { field: "id".into(), after: Some(int(50)), until: None })
        )
        .await
        .unwrap(),
        Default::default()
    );
    assert!(c.column_bounds(&orders, "nope", 2, None).await.is_err());

    let mut total = 0;
    let edges: Vec<Option<Value>> =
        std::iter::once(None).chain(bounds.splits.iter().cloned().map(Some)).chain(std::iter::once(None)).collect();
    for (i, pair) in edges.windows(2).enumerate() {
        let spec = ReadSpec {
            columns: vec!["id".into()],
            range: Some(RangeFilter {
                column: "updated".into(),
                lower: pair[0].clone(),
                upper: pair[1].clone(),
                include_nulls: i == 0,
            }),
            ..Default::default()
        };
        total += read_all(&c, &orders, spec).await.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    assert_eq!(total, 6);
}

#[tokio::test]
async fn stored_queries_stream_and_time_out() {
    let db = TestDb::new(ORDERS).await;
    let c = db.connector(&[
        ("by_region", "SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region;"),
        ("slow", "SELECT SLEEP(3) AS s"),
    ]);
    let q = ObjectName::Query("by_region".into());
    let batches = read_all(&c, &q, ReadSpec { order_by: vec!["region".into()], ..Default::default() }).await;
    let b = &batches[0];
    assert_eq!(b.schema().field(1).data_type(), &ArrowType::Decimal128(37, 2));
    let rows: Vec<(Option<Kind>, Option<Kind>, Option<Kind>)> = (0..b.num_rows())
        .map(|i| (value_at(b.column(0), i).kind, value_at(b.column(1), i).kind, value_at(b.column(2), i).kind))
        .collect();
    let s = |t: &str| Some(Kind::StringValue(t.into()));
    let d = |t: &str| Some(Kind::DecimalValue(t.into()));
    assert_eq!(
        rows,
        vec![
            (s("ap"), d("1.00"), Some(Kind::IntValue(1))),
            (s("eu"), d("30.50"), Some(Kind::IntValue(2))),
            (s("us"), d("12.25"), Some(Kind::IntValue(3))),
        ]
    );

    let spec = ReadSpec { statement_timeout: Duration::from_millis(500), ..Default::default() };
    let mut stream = c.stream(&ObjectName::Query("slow".into()), spec).await.unwrap();
    let started = std::time::Instant::now();
    let err = loop {
        match stream.next().await {
            Some(Err(e)) => break e,
            Some(Ok(_)) => continue,
            None => panic!("the slow query was not stopped"),
        }
    };
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, DatasourceError::Source(_)), "{err:?}");
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

#[tokio::test]
async fn types_round_trip() {
    let db = TestDb::new(&[
        "CREATE TABLE t (
            id INT PRIMARY KEY,
            price DECIMAL(12,3),
            neg DECIMAL(5,2) NOT NULL,
            at DATETIME(6),
            stamp TIMESTAMP(3) NULL,
            day DATE,
            flag BOOL,
            bits BIT(1),
            tiny TINYINT,
            ratio DOUBLE,
            small FLOAT,
            name VARCHAR(20),
            body TEXT,
            raw BLOB,
            doc JSON,
            kind ENUM('a','b'),
            dur TIME,
            big BIGINT UNSIGNED
        )",
        "SET time_zone = '+00:00'",
        "INSERT INTO t VALUES
            (1, 1234.567, -0.05, '2024-02-29 23:59:58.123456', '2024-03-01 00:00:01.500', '1969-12-31', TRUE, b'1',
             -7, 2.5, 1.1, 'héllo', 'long text', x'00ff10', '{\"a\": 1}', 'b', '-26:03:04', 18446744073709551615),
            (2, NULL, 0.00, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 5)",
    ])
    .await;
    let c = db.connector(&[]);
    let t = db.table("t");
    let schema = c.inspect(&t).await.unwrap().schema.unwrap();
    let doc = schema.columns.iter().find(|c| c.name == "doc").unwrap();
    assert_eq!(DataType::try_from(doc.data_type).unwrap(), DataType::Json);

    // BIGINT UNSIGNED beyond i64 is an error naming the column.
    let mut stream = c.stream(&t, ReadSpec { order_by: vec!["id".into()], ..Default::default() }).await.unwrap();
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("'big'"), "{err}");

    let columns: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).filter(|n| n != "big").collect();
    let batches = read_all(&c, &t, ReadSpec { columns, order_by: vec!["id".into()], ..Default::default() }).await;
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let arrow_types: Vec<ArrowType> = b.schema().fields().iter().map(|f| f.data_type().clone()).collect();
    let utc = ArrowType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
    assert_eq!(
        arrow_types,
        vec![
            ArrowType::Int64,
            ArrowType::Decimal128(12, 3),
            ArrowType::Decimal128(5, 2),
            utc.clone(),
            utc,
            ArrowType::Date32,
            ArrowType::Boolean,
            ArrowType::Boolean,
            ArrowType::Int64,
            ArrowType::Float64,
            ArrowType::Float64,
            ArrowType::Utf8,
            ArrowType::Utf8,
            ArrowType::Binary,
            ArrowType::Utf8,
            ArrowType::Utf8,
            ArrowType::Utf8,
        ]
    );
    let row = |i: usize| -> Vec<Option<Kind>> { (0..b.num_columns()).map(|c| value_at(b.column(c), i).kind).collect() };
    let ts = |s: &str, fmt: &str| {
        Some(Kind::TimestampValue(micros_to_proto(
            chrono::NaiveDateTime::parse_from_str(s, fmt).unwrap().and_utc().timestamp_micros(),
        )))
    };
    assert_eq!(
        row(0),
        vec![
            Some(Kind::IntValue(1)),
            Some(Kind::DecimalValue("1234.567".into())),
            Some(Kind::DecimalValue("-0.05".into())),
            ts("2024-02-29 23:59:58.123456", "%Y-%m-%d %H:%M:%S%.f"),
            ts("2024-03-01 00:00:01.500", "%Y-%m-%d %H:%M:%S%.f"),
            Some(Kind::DateValue("1969-12-31".into())),
            Some(Kind::BoolValue(true)),
            Some(Kind::BoolValue(true)),
            Some(Kind::IntValue(-7)),
            Some(Kind::FloatValue(2.5)),
            Some(Kind::FloatValue(1.1)),
            Some(Kind::StringValue("héllo".into())),
            Some(Kind::StringValue("long text".into())),
            Some(Kind::BinaryValue(vec![0, 255, 16])),
            Some(Kind::StringValue("{\"a\": 1}".into())),
            Some(Kind::StringValue("b".into())),
            Some(Kind::StringValue("-26:03:04".into())),
        ]
    );
    let second = row(1);
    assert_eq!(second[0], Some(Kind::IntValue(2)));
    assert_eq!(second[2], Some(Kind::DecimalValue("0.00".into())));
    assert!(second.iter().enumerate().filter(|(i, _)| *i != 0 && *i != 2).all(|(_, v)| v.is_none()), "{second:?}");

    // Filters bind typed values: a date, a timestamp, a bool, bytes.
    let spec = |column: &str, lower: Kind| ReadSpec {
        columns: vec!["id".into()],
        range: Some(RangeFilter {
            column: column.into(),
            lower: Some(Value { kind: Some(lower) }),
            upper: None,
            include_nulls: false,
        }),
        ..Default::default()
    };
    for (column, lower) in [
        ("day", Kind::DateValue("1969-12-31".into())),
        ("at", Kind::TimestampValue(micros_to_proto(chrono_micros("2024-02-29 23:59:58")))),
        ("flag", Kind::BoolValue(true)),
        ("raw", Kind::BinaryValue(vec![0, 255])),
        ("price", Kind::DecimalValue("1234.567".into())),
        ("ratio", Kind::FloatValue(2.5)),
    ] {
        assert_eq!(ints(&read_all(&c, &t, spec(column, lower)).await, "id"), vec![Some(1)], "{column}");
    }
}
