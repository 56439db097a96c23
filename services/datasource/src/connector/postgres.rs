//! PostgreSQL: `COPY (SELECT …) TO STDOUT (FORMAT binary)` decoded straight
//! into Arrow builders, inside a `READ ONLY` repeatable-read transaction with
//! a statement timeout. COPY takes no bind parameters, so filter values are
//! rendered as typed literals (validated beforehand, quotes doubled under
//! `standard_conforming_strings`).

use std::time::{Duration, Instant};

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use pulse_proto::common::v1::{Column, DataType, Schema};
use pulse_proto::datasource::v1::value::Kind;
use pulse_proto::datasource::v1::{CheckStatus, ObjectKind, ObjectSchema, ObjectSize, Value};
use tokio_postgres::{Client, NoTls};

use super::sql::{self, Dialect};
use super::values::{
    ColumnBuilder, arrow_schema, compare_values, decimal_precision_scale, micros_to_proto, proto_to_micros,
};
use super::{
    BatchStream, ColumnBounds, Connector, CursorWindow, METADATA_TIMEOUT, ReadSpec, SqlSettings, ValidationOutcome,
    project,
};
use super::{check, reachable, skip_rest};
use crate::error::DatasourceError;
use crate::names::ObjectName;

/// Days and microseconds between 1970-01-01 and PostgreSQL's 2000-01-01 epoch.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

#[derive(Debug, Clone)]
pub struct PostgresConnector {
    settings: SqlSettings,
    config: tokio_postgres::Config,
    host: String,
    port: u16,
}

/// The PostgreSQL dialect for COPY: values as typed literals.
struct PgLiterals;

impl Dialect for PgLiterals {
    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    fn param(&self, _n: usize, value: &Value) -> String {
        literal(value)
    }

    fn order_asc_nulls_first(&self, quoted: &str) -> String {
        format!("{quoted} ASC NULLS FIRST")
    }

    fn limit(&self, select: String, limit: u64, _ordered: bool) -> String {
        format!("{select} LIMIT {limit}")
    }
}

fn quote_text(s: &str) -> String {
    // standard_conforming_strings is on in every session we open: only the
    // quote needs doubling. NUL cannot be in a PostgreSQL string at all.
    format!("'{}'", s.replace('\0', "").replace('\'', "''"))
}

/// A typed SQL literal of a value (unset kind is NULL).
pub fn literal(value: &Value) -> String {
    match &value.kind {
        None => "NULL".into(),
        Some(Kind::BoolValue(b)) => if *b { "TRUE" } else { "FALSE" }.into(),
        Some(Kind::IntValue(i)) => format!("({i}::int8)"),
        Some(Kind::FloatValue(f)) => format!("{}::float8", quote_text(&format!("{f:?}"))),
        Some(Kind::DecimalValue(d)) => format!("{}::numeric", quote_text(d)),
        Some(Kind::StringValue(s)) => quote_text(s),
        Some(Kind::BinaryValue(b)) => format!("'\\x{}'::bytea", hex_encode(b)),
        Some(Kind::DateValue(d)) => format!("{}::date", quote_text(d)),
        Some(Kind::TimestampValue(t)) => {
            let us = proto_to_micros(t);
            let dt = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
            format!("{}::timestamptz", quote_text(&dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
        }
        Some(Kind::UuidValue(u)) => format!("{}::uuid", quote_text(u)),
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How one column travels in binary COPY, decided from its catalog type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decode {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    /// numeric with a declared scale, into Decimal128.
    Numeric(i8),
    Text,
    Jsonb,
    Bytea,
    Date,
    Timestamp,
    Uuid,
}

/// A column as the catalog describes it, with how to read it.
#[derive(Debug, Clone)]
struct PgColumn {
    column: Column,
    decode: Decode,
    /// Cast applied in the SELECT list (unconstrained numeric → float8, types
    /// we do not decode → text).
    cast: Option<&'static str>,
}

/// Maps a base type name and its formatted type to the logical column.
fn map_type(name: &str, typname: &str, formatted: &str, nullable: bool) -> PgColumn {
    let (data_type, decode, cast) = match typname {
        "bool" => (DataType::Bool, Decode::Bool, None),
        "int2" => (DataType::Int, Decode::I16, None),
        "int4" => (DataType::Int, Decode::I32, None),
        "int8" => (DataType::Int, Decode::I64, None),
        "oid" => (DataType::Int, Decode::I64, Some("int8")),
        "float4" => (DataType::Float, Decode::F32, None),
        "float8" => (DataType::Float, Decode::F64, None),
        "numeric" => match decimal_precision_scale(formatted) {
            Some((_, s)) => (DataType::Decimal, Decode::Numeric(s), None),
            None => (DataType::Float, Decode::F64, Some("float8")),
        },
        "text" | "varchar" | "bpchar" | "name" | "citext" => (DataType::String, Decode::Text, None),
        "json" => (DataType::Json, Decode::Text, None),
        "jsonb" => (DataType::Json, Decode::Jsonb, None),
        "bytea" => (DataType::Binary, Decode::Bytea, None),
        "date" => (DataType::Date, Decode::Date, None),
        "timestamp" | "timestamptz" => (DataType::Timestamp, Decode::Timestamp, None),
        "uuid" => (DataType::Uuid, Decode::Uuid, None),
        _ => (DataType::String, Decode::Text, Some("text")),
    };
    PgColumn {
        column: Column {
            name: name.to_string(),
            data_type: data_type as i32,
            source_type: formatted.to_string(),
            nullable,
            primary_key: false,
        },
        decode,
        cast,
    }
}

/// The catalog's view of one object.
#[derive(Debug, Clone)]
struct PgObject {
    kind: ObjectKind,
    columns: Vec<PgColumn>,
    primary_key: Vec<String>,
    estimated_rows: Option<u64>,
    comment: String,
}

impl PostgresConnector {
    pub fn new(settings: SqlSettings) -> Result<Self, DatasourceError> {
        let mut config: tokio_postgres::Config = settings.dsn.parse().map_err(|_| {
            DatasourceError::invalid(
                "connection.sql.dsn",
                "is not a PostgreSQL URL: use postgres://user:password@host:5432/database",
            )
        })?;
        config.connect_timeout(settings.connect_timeout);
        config.application_name("pulse-datasource");
        let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
            (Some(tokio_postgres::config::Host::Tcp(h)), p) => (h.clone(), p.copied().unwrap_or(5432)),
            _ => {
                return Err(DatasourceError::invalid(
                    "connection.sql.dsn",
                    "must name a TCP host, e.g. postgres://reader@db:5432/shop",
                ));
            }
        };
        Ok(Self { settings, config, host, port })
    }

    pub fn default_schema(&self) -> &str {
        "public"
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens a connection whose session is read-only with a statement
    /// timeout, UTC, and standard-conforming strings.
    async fn connect(&self, statement_timeout: Duration) -> Result<Client, DatasourceError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| self.connect_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "source connection closed");
            }
        });
        client
            .batch_execute(&format!(
                "SET default_transaction_read_only = on; SET statement_timeout = {}; SET TimeZone = 'UTC'; \
                 SET standard_conforming_strings = on; SET extra_float_digits = 3",
                statement_timeout.as_millis().max(1)
            ))
            .await
            .map_err(|e| self.source_error(&e))?;
        Ok(client)
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> DatasourceError {
        DatasourceError::Unavailable(format!("PostgreSQL at {}: {}", self.endpoint(), describe(e)))
    }

    fn source_error(&self, e: &tokio_postgres::Error) -> DatasourceError {
        if e.is_closed() || e.as_db_error().is_none() {
            return DatasourceError::Unavailable(format!("PostgreSQL at {}: {}", self.endpoint(), describe(e)));
        }
        DatasourceError::Source(describe(e))
    }

    async fn describe_object(&self, client: &Client, object: &ObjectName) -> Result<PgObject, DatasourceError> {
        match object {
            ObjectName::Table { schema, name } => {
                let schema = schema.as_deref().unwrap_or("public");
                let rel = client
                    .query_opt(
                        "SELECT c.oid::int8, c.relkind::text, c.reltuples::float8, \
                                coalesce(obj_description(c.oid, 'pg_class'), '') \
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                        &[&schema, &name],
                    )
                    .await
                    .map_err(|e| self.source_error(&e))?
                    .ok_or_else(|| DatasourceError::ObjectMissing(object.canonical()))?;
                let oid: i64 = rel.get(0);
                let relkind: String = rel.get(1);
                let reltuples: f64 = rel.get(2);
                let comment: String = rel.get(3);
                let rows = client
                    .query(
                        "SELECT a.attname::text, \
                                CASE WHEN t.typtype = 'd' THEN bt.typname::text ELSE t.typname::text END, \
                                format_type(a.atttypid, a.atttypmod), NOT a.attnotnull \
                         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                         LEFT JOIN pg_type bt ON bt.oid = t.typbasetype \
                         WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                        &[&oid],
                    )
                    .await
                    .map_err(|e| self.source_error(&e))?;
                let mut columns: Vec<PgColumn> = rows
                    .iter()
                    .map(|r| {
                        let name: String = r.get(0);
                        let typname: String = r.get(1);
                        let formatted: String = r.get(2);
                        map_type(&name, &typname, &formatted, r.get(3))
                    })
                    .collect();
                let pk_rows = client
                    .query(
                        "SELECT a.attname::text FROM pg_index i \
                         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                         WHERE i.indrelid = $1::int8::oid AND i.indisprimary ORDER BY k.ord",
                        &[&oid],
                    )
                    .await
                    .map_err(|e| self.source_error(&e))?;
                let primary_key: Vec<String> = pk_rows.iter().map(|r| r.get(0)).collect();
                for c in &mut columns {
                    c.column.primary_key = primary_key.contains(&c.column.name);
                }
                let kind = match relkind.as_str() {
                    "v" => ObjectKind::View,
                    "m" => ObjectKind::MaterializedView,
                    _ => ObjectKind::Table,
                };
                Ok(PgObject {
                    kind,
                    columns,
                    primary_key,
                    estimated_rows: (reltuples >= 0.0).then_some(reltuples as u64),
                    comment,
                })
            }
            ObjectName::Query(q) => {
                let sql =
                    self.settings.queries.get(q).ok_or_else(|| DatasourceError::ObjectMissing(object.canonical()))?;
                let stmt = client
                    .prepare(&format!("SELECT * FROM ({}) AS pulse_q", sql.trim().trim_end_matches(';')))
                    .await
                    .map_err(|e| self.source_error(&e))?;
                let mut columns = Vec::new();
                for c in stmt.columns() {
                    let t = c.type_();
                    let base = match t.kind() {
                        tokio_postgres::types::Kind::Domain(b) => b.name().to_string(),
                        _ => t.name().to_string(),
                    };
                    // Result columns carry no typmod: numeric reads as float8.
                    columns.push(map_type(c.name(), &base, &base, true));
                }
                Ok(PgObject {
                    kind: ObjectKind::StoredQuery,
                    columns,
                    primary_key: Vec::new(),
                    estimated_rows: None,
                    comment: String::new(),
                })
            }
            ObjectName::Path(_) => {
                Err(DatasourceError::invalid("object", "PostgreSQL objects are tables, views or queries"))
            }
        }
    }

    fn source_sql(&self, object: &ObjectName) -> String {
        let stored = match object {
            ObjectName::Query(q) => self.settings.queries.get(q).map(String::as_str),
            _ => None,
        };
        sql::source(&PgLiterals, &object.qualified("public"), stored)
    }

    async fn scalar_query(&self, st: sql::Statement) -> Result<tokio_postgres::Row, DatasourceError> {
        let client = self.connect(METADATA_TIMEOUT).await?;
        client.query_one(&st.sql, &[]).await.map_err(|e| self.source_error(&e))
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        }
    }
}

#[async_trait::async_trait]
impl Connector for PostgresConnector {
    async fn validate(&self, objects: &[ObjectName]) -> ValidationOutcome {
        let mut out = ValidationOutcome::default();
        let started = Instant::now();
        let objects_named = || objects.iter().map(|o| o.canonical()).collect::<Vec<_>>();
        let skipped = |out: &mut ValidationOutcome, from: usize| skip_rest(out, from, objects_named(), started);
        let hint = "is the host reachable from the Pulse server?";
        if !reachable(&mut out, &self.host, self.port, &self.endpoint(), self.settings.connect_timeout, hint).await {
            skipped(&mut out, 1);
            return out;
        }
        let started = Instant::now();
        let client = match self.connect(METADATA_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                out.checks.push(check(
                    "authenticated",
                    CheckStatus::Failed,
                    format!("{e}; check the user, password and database of the DSN"),
                    started,
                ));
                skipped(&mut out, 2);
                return out;
            }
        };
        out.authenticated = true;
        out.checks.push(check("authenticated", CheckStatus::Passed, "", started));
        if let Ok(row) = client.query_one("SELECT current_setting('server_version')", &[]).await {
            out.server_version = format!("PostgreSQL {}", row.get::<_, String>(0));
        }

        let started = Instant::now();
        let mut writable = Vec::new();
        if let Ok(row) = client.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[]).await
            && row.get::<_, bool>(0)
        {
            writable.push("the role is a superuser".to_string());
        }
        for o in objects {
            if let ObjectName::Table { .. } = o {
                let q = o.qualified("public").canonical();
                if let Ok(row) = client
                    .query_one(
                        "SELECT coalesce(has_table_privilege(to_regclass($1), 'INSERT, UPDATE, DELETE, TRUNCATE'), false)",
                        &[&quote_ident_path(&q)],
                    )
                    .await
                    && row.get::<_, bool>(0)
                {
                    writable.push(format!("it can write to {q}"));
                }
            }
        }
        out.read_only = writable.is_empty();
        out.checks.push(if writable.is_empty() {
            check("read_only", CheckStatus::Passed, "", started)
        } else {
            check(
                "read_only",
                CheckStatus::Warning,
                format!(
                    "the role is not read-only: {}. Pulse only reads (every read runs in a READ ONLY transaction), \
                     but a dedicated role with SELECT only is safer",
                    writable.join("; ")
                ),
                started,
            )
        });

        for o in objects {
            let started = Instant::now();
            let name = format!("object:{}", o.canonical());
            let result = match self.describe_object(&client, o).await {
                Ok(_) => {
                    let probe = format!("SELECT 1 FROM {} LIMIT 0", self.source_sql(o));
                    client.execute(&probe, &[]).await.map(|_| ()).map_err(|e| self.source_error(&e))
                }
                Err(e) => Err(e),
            };
            out.checks.push(match result {
                Ok(()) => check(&name, CheckStatus::Passed, "", started),
                Err(DatasourceError::ObjectMissing(_)) => check(
                    &name,
                    CheckStatus::Failed,
                    "does not exist, or the role cannot see it; check the name and the role's grants",
                    started,
                ),
                Err(e) => check(&name, CheckStatus::Failed, format!("cannot be read: {e}"), started),
            });
        }
        out
    }

    async fn list_objects(&self, schemas: &[String]) -> Result<Vec<ObjectName>, DatasourceError> {
        if schemas.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.connect(METADATA_TIMEOUT).await?;
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1, 2",
                &[&schemas],
            )
            .await
            .map_err(|e| self.source_error(&e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let schema: String = r.get(0);
                let name: String = r.get(1);
                // Names outside the identifier grammar cannot be requested.
                crate::names::check_identifier("", &name).ok()?;
                Some(ObjectName::Table { schema: Some(schema), name })
            })
            .collect())
    }

    async fn inspect(&self, object: &ObjectName) -> Result<ObjectSchema, DatasourceError> {
        let client = self.connect(METADATA_TIMEOUT).await?;
        let obj = self.describe_object(&client, object).await?;
        Ok(ObjectSchema {
            object: object.qualified("public").canonical(),
            kind: obj.kind as i32,
            schema: Some(Schema { columns: obj.columns.into_iter().map(|c| c.column).collect() }),
            primary_key: obj.primary_key,
            estimated_rows: obj.estimated_rows,
            comment: obj.comment,
        })
    }

    async fn estimate(
        &self,
        object: &ObjectName,
        exact: bool,
        cursor: Option<&CursorWindow>,
    ) -> Result<ObjectSize, DatasourceError> {
        let canonical = object.qualified("public").canonical();
        if !exact && cursor.is_none() && matches!(object, ObjectName::Table { .. }) {
            let client = self.connect(METADATA_TIMEOUT).await?;
            let row = client
                .query_one(
                    "SELECT greatest(c.reltuples, 0)::float8, pg_total_relation_size(c.oid)::int8, c.reltuples < 0 \
                     FROM pg_class c WHERE c.oid = to_regclass($1)",
                    &[&quote_ident_path(&canonical)],
                )
                .await
                .map_err(|e| self.source_error(&e))?;
            let never_analyzed: bool = row.get(2);
            if !never_analyzed {
                return Ok(ObjectSize {
                    object: canonical,
                    rows: row.get::<_, f64>(0) as u64,
                    bytes: row.get::<_, i64>(1).max(0) as u64,
                    exact: false,
                    method: "pg_class.reltuples".into(),
                    cursor_max: None,
                });
            }
        }
        let st = sql::count_and_max(&PgLiterals, &self.source_sql(object), cursor);
        let row = self.scalar_query(st).await?;
        let rows: i64 = row.get(0);
        let cursor_max = match cursor {
            Some(_) => Some(read_value(&row, 1)?),
            None => None,
        };
        Ok(ObjectSize {
            object: canonical,
            rows: rows.max(0) as u64,
            bytes: 0,
            exact: true,
            method: "count(*)".into(),
            cursor_max,
        })
    }

    async fn column_bounds(
        &self,
        object: &ObjectName,
        column: &str,
        count: u32,
        cursor: Option<&CursorWindow>,
    ) -> Result<ColumnBounds, DatasourceError> {
        let from = self.source_sql(object);
        let row = self.scalar_query(sql::min_max(&PgLiterals, &from, column, cursor)).await?;
        let min = read_value(&row, 0)?;
        let max = read_value(&row, 1)?;
        if min.kind.is_none() {
            return Ok(ColumnBounds::default());
        }
        let mut splits = Vec::new();
        if count > 1 {
            let fractions: Vec<String> =
                (1..count).map(|i| format!("{:.6}", f64::from(i) / f64::from(count))).collect();
            let mut f = sql::Filter::new(&PgLiterals);
            if let Some(w) = cursor {
                f.cursor(w);
            }
            let (clause, _) = f.into_parts();
            let c = PgLiterals.quote(column);
            let client = self.connect(METADATA_TIMEOUT.max(self.settings.statement_timeout)).await?;
            // Split points of a large table come from a block sample: sorting
            // every row to balance ranges would cost more than it saves.
            let mut sampled = from.clone();
            if let ObjectName::Table { .. } = object {
                let canonical = object.qualified("public").canonical();
                let rows: f64 = client
                    .query_one(
                        "SELECT coalesce((SELECT reltuples::float8 FROM pg_class WHERE oid = to_regclass($1)), -1)",
                        &[&quote_ident_path(&canonical)],
                    )
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(-1.0);
                if rows > 500_000.0 {
                    let percent = (100.0 * 200_000.0 / rows).clamp(0.1, 100.0);
                    sampled = format!("{from} TABLESAMPLE SYSTEM ({percent:.3}) REPEATABLE (42)");
                }
            }
            let q = format!(
                "SELECT unnest(percentile_disc(ARRAY[{}]::float8[]) WITHIN GROUP (ORDER BY {c})) FROM {sampled}{clause}",
                fractions.join(", ")
            );
            let rows = client.query(&q, &[]).await.map_err(|e| self.source_error(&e))?;
            for r in &rows {
                let v = read_value(r, 0)?;
                let after_prev = match splits.last() {
                    Some(prev) => compare_values(&v, prev) == std::cmp::Ordering::Greater,
                    None => compare_values(&v, &min) == std::cmp::Ordering::Greater,
                };
                if v.kind.is_some() && after_prev {
                    splits.push(v);
                }
            }
        }
        Ok(ColumnBounds { min: Some(min), max: Some(max), splits })
    }

    async fn stream(&self, object: &ObjectName, spec: ReadSpec) -> Result<BatchStream, DatasourceError> {
        let obj = {
            let meta = self.connect(METADATA_TIMEOUT).await?;
            self.describe_object(&meta, object).await?
        };
        let logical = Schema { columns: obj.columns.iter().map(|c| c.column.clone()).collect() };
        let wanted = project(&logical, &spec.columns, "columns")?;
        let cols: Vec<PgColumn> = wanted
            .columns
            .iter()
            .map(|w| {
                obj.columns
                    .iter()
                    .find(|c| c.column.name == w.name)
                    .cloned()
                    .ok_or_else(|| DatasourceError::SchemaChanged(format!("column '{}' disappeared", w.name)))
            })
            .collect::<Result<_, _>>()?;
        let select_list: Vec<String> = cols
            .iter()
            .map(|c| {
                let q = PgLiterals.quote(&c.column.name);
                match c.cast {
                    Some(t) => format!("{q}::{t}"),
                    None => q,
                }
            })
            .collect();
        let st = sql::select(&PgLiterals, &self.source_sql(object), &select_list, &spec);
        let schema = arrow_schema(&wanted);
        let decodes: Vec<Decode> = cols.iter().map(|c| c.decode).collect();
        let batch_rows = spec.batch_rows.max(1);
        let endpoint = self.endpoint();
        let config = self.config.clone();
        let timeout_ms = spec.statement_timeout.as_millis().max(1);
        let stream = async_stream::try_stream! {
            // The connection is polled by this task, not a spawned one: COPY
            // sends a message per row, and waking another thread for each
            // costs more than decoding it.
            let (client, connection) = config.connect(NoTls).await.map_err(|e| pg_read_error(&endpoint, &e))?;
            let mut connection = Box::pin(connection);
            let setup = format!(
                "SET statement_timeout = {timeout_ms}; SET TimeZone = 'UTC'; SET standard_conforming_strings = on; \
                 BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            );
            drive(client.batch_execute(&setup), &mut connection).await.map_err(|e| pg_read_error(&endpoint, &e))?;
            let copy = drive(client.copy_out(&format!("COPY ({}) TO STDOUT (FORMAT binary)", st.sql)), &mut connection)
                .await
                .map_err(|e| pg_read_error(&endpoint, &e))?;
            futures::pin_mut!(copy);
            let mut decoder = CopyDecoder::new(schema.clone(), decodes, batch_rows);
            let mut connection_done = false;
            loop {
                let chunk = tokio::select! {
                    biased;
                    chunk = copy.next() => chunk,
                    _ = &mut connection, if !connection_done => {
                        connection_done = true;
                        continue;
                    }
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| pg_read_error(&endpoint, &e))?;
                decoder.push(&chunk);
                while let Some(batch) = decoder.next_batch()? {
                    yield batch;
                }
            }
            if let Some(batch) = decoder.finish()? {
                yield batch;
            }
            drive(client.batch_execute("COMMIT"), &mut connection).await.map_err(|e| pg_read_error(&endpoint, &e))?;
        };
        Ok(Box::pin(stream))
    }
}

/// Runs `fut` while polling the connection on the same task.
async fn drive<F, C>(fut: F, connection: &mut std::pin::Pin<Box<C>>) -> F::Output
where
    F: std::future::Future,
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    futures::pin_mut!(fut);
    tokio::select! {
        biased;
        out = &mut fut => out,
        // The connection ended: the client's calls now fail on their own.
        _ = connection.as_mut() => fut.await,
    }
}

fn pg_read_error(endpoint: &str, e: &tokio_postgres::Error) -> DatasourceError {
    if e.is_closed() || e.as_db_error().is_none() {
        return DatasourceError::Unavailable(format!("PostgreSQL at {endpoint}: {}", describe(e)));
    }
    if let Some(db) = e.as_db_error() {
        use tokio_postgres::error::SqlState;
        let code = db.code();
        if *code == SqlState::UNDEFINED_COLUMN
            || *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::DATATYPE_MISMATCH
        {
            return DatasourceError::SchemaChanged(describe(e));
        }
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
        {
            return DatasourceError::Unavailable(describe(e));
        }
    }
    DatasourceError::Source(describe(e))
}

/// `"schema"."name"` for regclass lookups of a canonical `schema.name`.
fn quote_ident_path(canonical: &str) -> String {
    canonical.split('.').map(|p| format!("\"{}\"", p.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

/// A scalar out of a metadata row, whatever its type.
fn read_value(row: &tokio_postgres::Row, i: usize) -> Result<Value, DatasourceError> {
    use tokio_postgres::types::Type;
    let t = row.columns()[i].type_().clone();
    let err = |e: tokio_postgres::Error| DatasourceError::Source(describe(&e));
    let kind = match t {
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(err)?.map(Kind::BoolValue),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(err)?.map(|v| Kind::IntValue(v.into())),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(err)?.map(|v| Kind::IntValue(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(err)?.map(Kind::IntValue),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(err)?.map(|v| Kind::FloatValue(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(err)?.map(Kind::FloatValue),
        Type::NUMERIC => {
            let raw = row.try_get::<_, Option<RawBytes>>(i).map_err(err)?;
            match raw {
                Some(RawBytes(b)) => Some(Kind::DecimalValue(numeric_to_string(&b)?)),
                None => None,
            }
        }
        Type::DATE => row
            .try_get::<_, Option<chrono::NaiveDate>>(i)
            .map_err(err)?
            .map(|d| Kind::DateValue(d.format("%Y-%m-%d").to_string())),
        Type::TIMESTAMP => row
            .try_get::<_, Option<chrono::NaiveDateTime>>(i)
            .map_err(err)?
            .map(|d| Kind::TimestampValue(micros_to_proto(d.and_utc().timestamp_micros()))),
        Type::TIMESTAMPTZ => row
            .try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
            .map_err(err)?
            .map(|d| Kind::TimestampValue(micros_to_proto(d.timestamp_micros()))),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(err)?.map(Kind::BinaryValue),
        Type::UUID => {
            let raw = row.try_get::<_, Option<RawBytes>>(i).map_err(err)?;
            raw.map(|RawBytes(b)| Kind::UuidValue(uuid_text(&b)))
        }
        _ => {
            let raw = row.try_get::<_, Option<RawBytes>>(i).map_err(err)?;
            raw.map(|RawBytes(b)| Kind::StringValue(String::from_utf8_lossy(&b).into_owned()))
        }
    };
    Ok(Value { kind })
}

/// The wire bytes of any type, for types tokio-postgres has no Rust type for.
struct RawBytes(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for RawBytes {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

fn uuid_text(b: &[u8]) -> String {
    let h = hex_encode(b);
    if h.len() != 32 {
        return h;
    }
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The binary numeric format: ndigits, weight, sign, dscale, then base-10000
/// digits.
fn numeric_parts(b: &[u8]) -> Result<(i16, i16, u16, Vec<i16>), DatasourceError> {
    if b.len() < 8 {
        return Err(DatasourceError::Source("malformed numeric value".into()));
    }
    let ndigits = i16::from_be_bytes([b[0], b[1]]);
    let weight = i16::from_be_bytes([b[2], b[3]]);
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = i16::from_be_bytes([b[6], b[7]]);
    if ndigits < 0 || b.len() < 8 + 2 * ndigits as usize {
        return Err(DatasourceError::Source("malformed numeric value".into()));
    }
    let digits = (0..ndigits as usize).map(|i| i16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]])).collect();
    let _ = dscale;
    Ok((ndigits, weight, sign, digits))
}

/// 10^0 ..= 10^38, the powers a Decimal128 can hold.
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// A numeric as an integer scaled by 10^scale (Decimal128's representation).
fn numeric_to_i128(b: &[u8], scale: i8) -> Result<i128, DatasourceError> {
    let (_, weight, sign, digits) = numeric_parts(b)?;
    if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
        return Err(DatasourceError::Source("NaN or infinite numeric cannot be stored as a decimal".into()));
    }
    let mut acc: i128 = 0;
    for (i, d) in digits.iter().enumerate() {
        // Decimal exponent of this base-10000 digit, shifted by the scale.
        let exp = 4 * (i32::from(weight) - i as i32) + i32::from(scale);
        let term = if exp >= 0 {
            POW10.get(exp as usize).and_then(|p| i128::from(*d).checked_mul(*p))
        } else if exp > -4 {
            // Digits past the declared scale are zero in a typed numeric.
            Some(i128::from(*d / [1i16, 10, 100, 1000][(-exp) as usize]))
        } else {
            Some(0)
        };
        acc = term
            .and_then(|t| acc.checked_add(t))
            .ok_or_else(|| DatasourceError::Source("numeric value out of Decimal128 range".into()))?;
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
}

fn numeric_to_string(b: &[u8]) -> Result<String, DatasourceError> {
    let dscale = i16::from_be_bytes([b.get(6).copied().unwrap_or(0), b.get(7).copied().unwrap_or(0)]).clamp(0, 38);
    let v = numeric_to_i128(b, dscale as i8)?;
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let s = dscale as usize;
    let text = if s == 0 {
        digits
    } else if digits.len() > s {
        format!("{}.{}", &digits[..digits.len() - s], &digits[digits.len() - s..])
    } else {
        format!("0.{}{}", "0".repeat(s - digits.len()), digits)
    };
    Ok(if neg { format!("-{text}") } else { text })
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}
fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Decodes a binary COPY stream into record batches of `batch_rows` rows.
/// Tuples may straddle the chunks COPY delivers, so bytes are buffered until
/// a whole tuple is present.
struct CopyDecoder {
    schema: SchemaRef,
    decodes: Vec<Decode>,
    builders: Vec<ColumnBuilder>,
    batch_rows: usize,
    rows: usize,
    buf: BytesMut,
    header_done: bool,
    ended: bool,
}

impl CopyDecoder {
    fn new(schema: SchemaRef, decodes: Vec<Decode>, batch_rows: usize) -> Self {
        let builders =
            schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type(), batch_rows.min(65_536))).collect();
        Self { schema, decodes, builders, batch_rows, rows: 0, buf: BytesMut::new(), header_done: false, ended: false }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Decodes buffered tuples; answers a batch once `batch_rows` are ready.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, DatasourceError> {
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(None);
            }
            if &self.buf[..11] != b"PGCOPY\n\xff\r\n\0" {
                return Err(DatasourceError::Source("COPY did not answer in binary format".into()));
            }
            let ext = be_i32(&self.buf[15..19]) as usize;
            if self.buf.len() < 19 + ext {
                return Ok(None);
            }
            self.buf.advance(19 + ext);
            self.header_done = true;
        }
        while !self.ended && self.rows < self.batch_rows {
            if !self.decode_tuple()? {
                break;
            }
        }
        if self.rows >= self.batch_rows { self.flush().map(Some) } else { Ok(None) }
    }

    /// The rows left after the stream ended (callers drain `next_batch`
    /// after every chunk, so fewer than `batch_rows` remain).
    fn finish(&mut self) -> Result<Option<RecordBatch>, DatasourceError> {
        if !self.ended {
            return Err(DatasourceError::Unavailable("the COPY stream ended before its trailer".into()));
        }
        if self.rows > 0 { self.flush().map(Some) } else { Ok(None) }
    }

    fn flush(&mut self) -> Result<RecordBatch, DatasourceError> {
        let cols: Vec<ArrayRef> = self.builders.iter_mut().map(ColumnBuilder::finish).collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    /// Decodes one tuple if the buffer holds all of it.
    fn decode_tuple(&mut self) -> Result<bool, DatasourceError> {
        let buf = &self.buf[..];
        if buf.len() < 2 {
            return Ok(false);
        }
        let nfields = be_i16(buf);
        if nfields == -1 {
            self.ended = true;
            self.buf.advance(2);
            return Ok(false);
        }
        if nfields as usize != self.decodes.len() {
            return Err(DatasourceError::SchemaChanged(format!(
                "expected {} columns, the source sent {nfields}",
                self.decodes.len()
            )));
        }
        // First pass: is the whole tuple buffered?
        let mut pos = 2;
        for _ in 0..nfields {
            if buf.len() < pos + 4 {
                return Ok(false);
            }
            let len = be_i32(&buf[pos..]);
            pos += 4;
            if len > 0 {
                pos += len as usize;
            }
        }
        if buf.len() < pos {
            return Ok(false);
        }
        let mut pos = 2;
        for (i, decode) in self.decodes.iter().enumerate() {
            let len = be_i32(&buf[pos..]);
            pos += 4;
            let builder = &mut self.builders[i];
            if len < 0 {
                builder.null();
                continue;
            }
            let v = &buf[pos..pos + len as usize];
            pos += len as usize;
            let bad = || DatasourceError::SchemaChanged(format!("column {i} no longer has the type it had"));
            match (decode, builder) {
                (Decode::Bool, ColumnBuilder::Bool(b)) => b.append_value(v.first().copied().unwrap_or(0) != 0),
                (Decode::I16, ColumnBuilder::Int(b)) if v.len() == 2 => b.append_value(be_i16(v).into()),
                (Decode::I32, ColumnBuilder::Int(b)) if v.len() == 4 => b.append_value(be_i32(v).into()),
                (Decode::I64, ColumnBuilder::Int(b)) if v.len() == 8 => b.append_value(be_i64(v)),
                (Decode::F32, ColumnBuilder::Float(b)) if v.len() == 4 => {
                    b.append_value(f32::from_be_bytes([v[0], v[1], v[2], v[3]]).into())
                }
                (Decode::F64, ColumnBuilder::Float(b)) if v.len() == 8 => {
                    b.append_value(f64::from_bits(be_i64(v) as u64))
                }
                (Decode::Numeric(scale), ColumnBuilder::Decimal(b)) => b.append_value(numeric_to_i128(v, *scale)?),
                (Decode::Text, ColumnBuilder::Text(b)) => {
                    b.append_value(std::str::from_utf8(v).map_err(|_| bad())?);
                }
                (Decode::Jsonb, ColumnBuilder::Text(b)) if !v.is_empty() => {
                    b.append_value(std::str::from_utf8(&v[1..]).map_err(|_| bad())?);
                }
                (Decode::Uuid, ColumnBuilder::Text(b)) if v.len() == 16 => b.append_value(uuid_text(v)),
                (Decode::Bytea, ColumnBuilder::Bytes(b)) => b.append_value(v),
                (Decode::Date, ColumnBuilder::Date(b)) if v.len() == 4 => {
                    b.append_value(be_i32(v).saturating_add(PG_EPOCH_DAYS))
                }
                (Decode::Timestamp, ColumnBuilder::Timestamp(b)) if v.len() == 8 => {
                    b.append_value(be_i64(v).saturating_add(PG_EPOCH_MICROS))
                }
                _ => return Err(bad()),
            }
        }
        self.buf.advance(pos);
        self.rows += 1;
        debug_assert!(self.builders.iter().all(|b| b.len() == self.rows));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as i16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(sign.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345.67 = [1, 2345, 6700] with weight 1.
        let n = numeric(1, 0, 2, &[1, 2345, 6700]);
        assert_eq!(numeric_to_i128(&n, 2).unwrap(), 1_234_567);
        assert_eq!(numeric_to_string(&n).unwrap(), "12345.67");
        // -0.05 = [500] with weight -1.
        let n = numeric(-1, 0x4000, 2, &[500]);
        assert_eq!(numeric_to_i128(&n, 2).unwrap(), -5);
        assert_eq!(numeric_to_string(&n).unwrap(), "-0.05");
        assert_eq!(numeric_to_i128(&numeric(0, 0, 0, &[]), 2).unwrap(), 0);
    }

    #[test]
    fn literals_cannot_break_out() {
        let s = |t: &str| Value { kind: Some(Kind::StringValue(t.into())) };
        assert_eq!(literal(&s("o'hara'); DROP TABLE x; --")), "'o''hara''); DROP TABLE x; --'");
        assert_eq!(literal(&Value { kind: Some(Kind::IntValue(-3)) }), "(-3::int8)");
        assert_eq!(literal(&Value { kind: None }), "NULL");
        assert_eq!(PgLiterals.quote("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn copy_decoder_handles_split_tuples() {
        let schema = arrow_schema(&Schema {
            columns: vec![
                map_type("id", "int8", "bigint", false).column,
                map_type("name", "text", "text", true).column,
            ],
        });
        let mut bytes = b"PGCOPY\n\xff\r\n\0".to_vec();
        bytes.extend(0i32.to_be_bytes());
        bytes.extend(0i32.to_be_bytes());
        for (id, name) in [(1i64, Some("a")), (2, None), (3, Some("ccc"))] {
            bytes.extend(2i16.to_be_bytes());
            bytes.extend(8i32.to_be_bytes());
            bytes.extend(id.to_be_bytes());
            match name {
                Some(n) => {
                    bytes.extend((n.len() as i32).to_be_bytes());
                    bytes.extend(n.as_bytes());
                }
                None => bytes.extend((-1i32).to_be_bytes()),
            }
        }
        bytes.extend((-1i16).to_be_bytes());
        let mut dec = CopyDecoder::new(schema, vec![Decode::I64, Decode::Text], 2);
        let mut batches = Vec::new();
        for piece in bytes.chunks(5) {
            dec.push(piece);
            while let Some(b) = dec.next_batch().unwrap() {
                batches.push(b);
            }
        }
        if let Some(b) = dec.finish().unwrap() {
            batches.push(b);
        }
        assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(batches[0].column(1).null_count(), 1);
    }
}
