//! MySQL and MariaDB: prepared statements over the binary protocol, rows read
//! one at a time into Arrow builders, inside a `READ ONLY` consistent-snapshot
//! transaction with a statement timeout (`max_statement_time` on MariaDB,
//! `max_execution_time` on MySQL). Filter values are bind parameters.
//!
//! Sessions run in UTC (`time_zone = '+00:00'`): DATETIME values are read as
//! UTC wall-clock times and TIMESTAMP values are converted to UTC by the
//! server. A zero date (`0000-00-00`) reads as null in a nullable column and
//! is an error in a NOT NULL one.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate, Timelike};
use futures::StreamExt;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, PoolConstraints, PoolOpts, Row, Value as MyValue};
use pulse_proto::common::v1::{Column, DataType, Schema};
use pulse_proto::datasource::v1::value::Kind;
use pulse_proto::datasource::v1::{CheckStatus, ObjectKind, ObjectSchema, ObjectSize, Value};

use super::sql::{self, Dialect};
use super::values::{
    ColumnBuilder, arrow_schema, decimal_precision_scale, decimal_text_to_i128, even_splits, i128_to_decimal_text,
    micros_to_proto, ordered_splits, proto_to_micros,
};
use super::{
    BatchStream, ColumnBounds, Connector, CursorWindow, METADATA_TIMEOUT, ReadSpec, SqlSettings, ValidationOutcome,
    project,
};
use super::{check, percent_decode, reachable, skip_rest};
use crate::error::DatasourceError;
use crate::names::ObjectName;

const DEFAULT_PORT: u16 = 3306;
const DSN_FIELD: &str = "connection.sql.dsn";
/// Above this many catalog rows, split points of numeric and temporal columns
/// are spaced evenly between min and max instead of sorting every row.
const QUANTILE_ROW_LIMIT: u64 = 2_000_000;
/// MariaDB's `max_statement_time` upper bound (one year).
const MARIADB_MAX_STATEMENT_SECONDS: f64 = 31_536_000.0;
/// The binary character set number: BLOB/BINARY columns rather than text.
const BINARY_CHARSET: u16 = 63;

/// The MySQL dialect: backtick quoting, `?` placeholders. Decimal values are
/// cast so comparisons with DECIMAL columns stay exact (a string parameter
/// would be compared as a double).
#[derive(Debug, Clone, Copy, Default)]
pub struct MysqlDialect;

impl Dialect for MysqlDialect {
    fn quote(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn param(&self, _n: usize, value: &Value) -> String {
        match value.kind {
            Some(Kind::DecimalValue(_)) => "CAST(? AS DECIMAL(65,30))".into(),
            _ => "?".into(),
        }
    }

    fn order_asc_nulls_first(&self, quoted: &str) -> String {
        // NULL sorts before every value in MySQL's ascending order.
        format!("{quoted} ASC")
    }

    fn limit(&self, select: String, limit: u64, _ordered: bool) -> String {
        format!("{select} LIMIT {limit}")
    }
}

/// A bind parameter of a value. Dates and timestamps become DATETIME values
/// (read in the session's UTC zone); decimals travel as exact text.
pub fn bind_value(value: &Value) -> Result<MyValue, DatasourceError> {
    Ok(match &value.kind {
        None => MyValue::NULL,
        Some(Kind::BoolValue(b)) => MyValue::Int(i64::from(*b)),
        Some(Kind::IntValue(i)) => MyValue::Int(*i),
        Some(Kind::FloatValue(f)) => MyValue::Double(*f),
        Some(Kind::DecimalValue(d)) => {
            if !super::values::is_decimal_text(d) {
                return Err(DatasourceError::invalid("value", format!("'{d}' is not a decimal")));
            }
            MyValue::Bytes(d.clone().into_bytes())
        }
        Some(Kind::StringValue(s)) | Some(Kind::UuidValue(s)) => MyValue::Bytes(s.clone().into_bytes()),
        Some(Kind::BinaryValue(b)) => MyValue::Bytes(b.clone()),
        Some(Kind::DateValue(d)) => {
            let date = super::values::parse_date("value", d)?;
            MyValue::Date(date.year().clamp(0, 9999) as u16, date.month() as u8, date.day() as u8, 0, 0, 0, 0)
        }
        Some(Kind::TimestampValue(t)) => {
            let us = proto_to_micros(t);
            let dt = chrono::DateTime::from_timestamp_micros(us)
                .filter(|d| (0..=9999).contains(&d.year()))
                .ok_or_else(|| DatasourceError::invalid("value", "timestamp is outside the years 0 to 9999"))?
                .naive_utc();
            MyValue::Date(
                dt.year() as u16,
                dt.month() as u8,
                dt.day() as u8,
                dt.hour() as u8,
                dt.minute() as u8,
                dt.second() as u8,
                dt.nanosecond() / 1000,
            )
        }
    })
}

fn bind_all(params: &[Value]) -> Result<Vec<MyValue>, DatasourceError> {
    params.iter().map(bind_value).collect()
}

/// The parts of a `mysql://user:password@host:port/database` DSN.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlDsn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl std::fmt::Debug for MysqlDsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlDsn")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "****" })
            .field("database", &self.database)
            .finish()
    }
}

impl MysqlDsn {
    /// Parses the DSN. Errors name the field and never echo the DSN (it holds
    /// the password).
    pub fn parse(dsn: &str) -> Result<Self, DatasourceError> {
        let example = "use mysql://user:password@host:3306/database";
        let url = url::Url::parse(dsn)
            .map_err(|_| DatasourceError::invalid(DSN_FIELD, format!("is not a MySQL URL: {example}")))?;
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            return Err(DatasourceError::invalid(
                DSN_FIELD,
                format!("scheme '{}' is not mysql or mariadb: {example}", url.scheme()),
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(DatasourceError::invalid(DSN_FIELD, format!("must name a host: {example}"))),
        };
        if let Some((key, _)) = url.query_pairs().next() {
            return Err(DatasourceError::invalid(
                DSN_FIELD,
                format!(
                    "option '{key}' is not supported: the DSN takes only user, password, host, port and \
                     database (connections are not encrypted by this build; reach the server over a trusted \
                     network)"
                ),
            ));
        }
        let bad_encoding =
            |part: &str| DatasourceError::invalid(DSN_FIELD, format!("the {part} is not valid percent-encoded UTF-8"));
        let user = percent_decode(url.username()).ok_or_else(|| bad_encoding("user"))?;
        let password = percent_decode(url.password().unwrap_or("")).ok_or_else(|| bad_encoding("password"))?;
        let database = percent_decode(url.path().trim_start_matches('/')).ok_or_else(|| bad_encoding("database"))?;
        if database.contains('/') {
            return Err(DatasourceError::invalid(DSN_FIELD, format!("the path must be one database name: {example}")));
        }
        if user.is_empty() {
            return Err(DatasourceError::invalid(DSN_FIELD, format!("must name a user: {example}")));
        }
        Ok(Self { host, port: url.port().unwrap_or(DEFAULT_PORT), user, password, database })
    }
}

/// Server kind and version, from `SELECT VERSION()`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flavor {
    mariadb: bool,
    version: (u16, u16, u16),
    /// e.g. "MariaDB 10.11.19" or "MySQL 8.0.36".
    display: String,
}

impl Flavor {
    fn parse(version: &str) -> Self {
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        // MariaDB servers before 11 may announce "5.5.5-10.x.y-MariaDB".
        let text = if mariadb { version.strip_prefix("5.5.5-").unwrap_or(version) } else { version };
        let numbers: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let numbers = numbers.trim_end_matches('.').to_string();
        let mut parts = numbers.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
        let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let name = if mariadb { "MariaDB" } else { "MySQL" };
        Self { mariadb, version: v, display: format!("{name} {numbers}") }
    }

    /// The session assignment bounding each statement's run time, when the
    /// server has one.
    fn timeout_assignment(&self, timeout: Duration) -> Option<String> {
        if self.mariadb {
            (self.version >= (10, 1, 1)).then(|| {
                format!("max_statement_time = {:.3}", timeout.as_secs_f64().clamp(0.001, MARIADB_MAX_STATEMENT_SECONDS))
            })
        } else {
            (self.version >= (5, 7, 8))
                .then(|| format!("max_execution_time = {}", timeout.as_millis().clamp(1, u128::from(u32::MAX))))
        }
    }
}

/// How a column's values are read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decode {
    Bool,
    Int,
    /// BIT(n): read through `CAST(… AS UNSIGNED)` (raw big-endian bytes in
    /// aggregates).
    Bit,
    Float,
    /// DECIMAL with its declared scale.
    Decimal(i8),
    Text,
    /// TIME: a duration, read as `[-]HH:MM:SS[.ffffff]` text.
    Time,
    Bytes,
    Date,
    Timestamp,
}

/// A column as the source describes it, with how to read it.
#[derive(Debug, Clone)]
struct MyColumn {
    column: Column,
    decode: Decode,
}

impl MyColumn {
    fn decimal_scale(&self) -> Option<i8> {
        match self.decode {
            Decode::Decimal(s) => Some(s),
            _ => None,
        }
    }

    fn select_expr(&self, d: &MysqlDialect) -> String {
        let q = d.quote(&self.column.name);
        match self.decode {
            Decode::Bit => format!("CAST({q} AS UNSIGNED) AS {q}"),
            _ => q,
        }
    }
}

fn column(name: &str, data_type: DataType, source_type: &str, nullable: bool, decode: Decode) -> MyColumn {
    MyColumn {
        column: Column {
            name: name.to_string(),
            data_type: data_type as i32,
            source_type: source_type.to_string(),
            nullable,
            primary_key: false,
        },
        decode,
    }
}

/// Maps an information_schema `DATA_TYPE` and `COLUMN_TYPE` to the logical
/// column.
fn map_catalog_type(name: &str, data_type: &str, column_type: &str, nullable: bool) -> MyColumn {
    let dt = data_type.to_ascii_lowercase();
    let ct = column_type.to_ascii_lowercase();
    let (logical, decode) = match dt.as_str() {
        "tinyint" if ct.starts_with("tinyint(1)") => (DataType::Bool, Decode::Bool),
        "bool" | "boolean" => (DataType::Bool, Decode::Bool),
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => (DataType::Int, Decode::Int),
        "bit" if ct == "bit(1)" => (DataType::Bool, Decode::Bit),
        "bit" => (DataType::Int, Decode::Bit),
        "float" | "double" | "real" | "double precision" => (DataType::Float, Decode::Float),
        "decimal" | "numeric" | "fixed" | "dec" => match decimal_precision_scale(&ct) {
            Some((_, s)) => (DataType::Decimal, Decode::Decimal(s)),
            // Wider than Decimal128 holds: read as a double.
            None => (DataType::Float, Decode::Float),
        },
        "date" => (DataType::Date, Decode::Date),
        "datetime" | "timestamp" => (DataType::Timestamp, Decode::Timestamp),
        "time" => (DataType::String, Decode::Time),
        "json" => (DataType::Json, Decode::Text),
        "uuid" => (DataType::Uuid, Decode::Text),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry" | "point"
        | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon" | "geometrycollection"
        | "geomcollection" | "vector" => (DataType::Binary, Decode::Bytes),
        _ => (DataType::String, Decode::Text),
    };
    column(name, logical, column_type, nullable, decode)
}

/// Maps the result-set metadata of a prepared statement (stored queries).
fn map_result_column(c: &mysql_async::Column) -> MyColumn {
    let name = c.name_str();
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let suffix = if unsigned { " unsigned" } else { "" };
    let binary = c.character_set() == BINARY_CHARSET;
    let len = c.column_length();
    let (logical, decode, source): (DataType, Decode, String) = match c.column_type() {
        ColumnType::MYSQL_TYPE_TINY if len == 1 => (DataType::Bool, Decode::Bool, "tinyint(1)".into()),
        ColumnType::MYSQL_TYPE_TINY => (DataType::Int, Decode::Int, format!("tinyint{suffix}")),
        ColumnType::MYSQL_TYPE_SHORT => (DataType::Int, Decode::Int, format!("smallint{suffix}")),
        ColumnType::MYSQL_TYPE_INT24 => (DataType::Int, Decode::Int, format!("mediumint{suffix}")),
        ColumnType::MYSQL_TYPE_LONG => (DataType::Int, Decode::Int, format!("int{suffix}")),
        ColumnType::MYSQL_TYPE_LONGLONG => (DataType::Int, Decode::Int, format!("bigint{suffix}")),
        ColumnType::MYSQL_TYPE_YEAR => (DataType::Int, Decode::Int, "year".into()),
        ColumnType::MYSQL_TYPE_BIT if len == 1 => (DataType::Bool, Decode::Bit, "bit(1)".into()),
        ColumnType::MYSQL_TYPE_BIT => (DataType::Int, Decode::Bit, format!("bit({len})")),
        ColumnType::MYSQL_TYPE_FLOAT => (DataType::Float, Decode::Float, "float".into()),
        ColumnType::MYSQL_TYPE_DOUBLE => (DataType::Float, Decode::Float, "double".into()),
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            let scale = c.decimals();
            // The display length counts the sign and the decimal point.
            let p = len.saturating_sub(u32::from(scale > 0)).saturating_sub(u32::from(!unsigned));
            let source = format!("decimal({p},{scale}){suffix}");
            match decimal_precision_scale(&source) {
                Some((_, s)) => (DataType::Decimal, Decode::Decimal(s), source),
                None => (DataType::Float, Decode::Float, source),
            }
        }
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => (DataType::Date, Decode::Date, "date".into()),
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => {
            (DataType::Timestamp, Decode::Timestamp, "datetime".into())
        }
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => {
            (DataType::Timestamp, Decode::Timestamp, "timestamp".into())
        }
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => (DataType::String, Decode::Time, "time".into()),
        ColumnType::MYSQL_TYPE_JSON => (DataType::Json, Decode::Text, "json".into()),
        ColumnType::MYSQL_TYPE_GEOMETRY => (DataType::Binary, Decode::Bytes, "geometry".into()),
        ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if binary {
                (DataType::Binary, Decode::Bytes, "blob".into())
            } else {
                (DataType::String, Decode::Text, "text".into())
            }
        }
        ColumnType::MYSQL_TYPE_VAR_STRING | ColumnType::MYSQL_TYPE_VARCHAR => {
            if binary {
                (DataType::Binary, Decode::Bytes, "varbinary".into())
            } else {
                (DataType::String, Decode::Text, "varchar".into())
            }
        }
        ColumnType::MYSQL_TYPE_STRING => {
            if binary {
                (DataType::Binary, Decode::Bytes, "binary".into())
            } else {
                (DataType::String, Decode::Text, "char".into())
            }
        }
        ColumnType::MYSQL_TYPE_ENUM => (DataType::String, Decode::Text, "enum".into()),
        ColumnType::MYSQL_TYPE_SET => (DataType::String, Decode::Text, "set".into()),
        _ => (DataType::String, Decode::Text, "unknown".into()),
    };
    // Result metadata of a derived table does not promise non-null values.
    column(&name, logical, &source, true, decode)
}

/// The source's view of one object.
#[derive(Debug, Clone)]
struct MyObject {
    kind: ObjectKind,
    columns: Vec<MyColumn>,
    primary_key: Vec<String>,
    estimated_rows: Option<u64>,
    comment: String,
}

impl MyObject {
    fn logical(&self) -> Schema {
        Schema { columns: self.columns.iter().map(|c| c.column.clone()).collect() }
    }

    fn column(&self, name: &str, field: &str) -> Result<&MyColumn, DatasourceError> {
        self.columns
            .iter()
            .find(|c| c.column.name == name)
            .ok_or_else(|| super::missing_column(field, name, self.columns.iter().map(|c| c.column.name.as_str())))
    }
}

/// The connector for MySQL and MariaDB servers.
pub struct MysqlConnector {
    settings: SqlSettings,
    dsn: MysqlDsn,
    pool: Pool,
    /// For reads: each stream gets its own connection, closed (not pooled)
    /// when the stream ends early, so no transaction or metadata lock
    /// outlives a dropped read.
    opts: mysql_async::Opts,
    flavor: Arc<OnceLock<Flavor>>,
}

impl std::fmt::Debug for MysqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConnector")
            .field("dsn", &self.dsn)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MysqlConnector {
    /// Parses the DSN and prepares a pool of at most `max_connections`
    /// connections; nothing connects until the first call.
    pub fn new(settings: SqlSettings) -> Result<Self, DatasourceError> {
        let dsn = MysqlDsn::parse(&settings.dsn)?;
        let max = settings.max_connections.clamp(1, 64) as usize;
        let constraints = PoolConstraints::new(0, max).unwrap_or_default();
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60))
            .with_reset_connection(true);
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(dsn.host.clone())
            .tcp_port(dsn.port)
            .user(Some(dsn.user.clone()))
            .pass((!dsn.password.is_empty()).then(|| dsn.password.clone()))
            .db_name((!dsn.database.is_empty()).then(|| dsn.database.clone()))
            // Never switch a loopback TCP connection to the server's socket:
            // the account could differ (user@localhost vs user@127.0.0.1).
            .prefer_socket(false)
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .pool_opts(pool_opts);
        let opts = mysql_async::Opts::from(opts);
        Ok(Self { pool: Pool::new(opts.clone()), opts, settings, dsn, flavor: Arc::new(OnceLock::new()) })
    }

    /// The DSN's database: the schema of objects named without one.
    pub fn default_schema(&self) -> &str {
        &self.dsn.database
    }

    fn endpoint(&self) -> String {
        endpoint(&self.dsn)
    }

    fn connect_timeout(&self) -> Duration {
        if self.settings.connect_timeout.is_zero() { Duration::from_secs(10) } else { self.settings.connect_timeout }
    }

    fn qualified(&self, object: &ObjectName) -> ObjectName {
        if self.dsn.database.is_empty() { object.clone() } else { object.qualified(&self.dsn.database) }
    }

    fn source_sql(&self, object: &ObjectName) -> String {
        let stored = match object {
            ObjectName::Query(q) => self.settings.queries.get(q).map(String::as_str),
            _ => None,
        };
        sql::source(&MysqlDialect, &self.qualified(object), stored)
    }

    /// A pooled connection, authenticated, not yet configured.
    async fn raw_conn(&self) -> Result<Conn, DatasourceError> {
        get_conn(&self.pool, self.connect_timeout(), &self.endpoint()).await
    }

    /// A pooled connection whose session is read-only, in UTC, with a
    /// statement timeout.
    async fn session(&self, statement_timeout: Duration) -> Result<(Conn, Flavor), DatasourceError> {
        let mut conn = self.raw_conn().await?;
        let flavor = configure(&mut conn, &self.flavor, statement_timeout, &self.endpoint()).await?;
        Ok((conn, flavor))
    }

    fn query_error(&self, e: &mysql_async::Error, object: Option<&ObjectName>) -> DatasourceError {
        if let (mysql_async::Error::Server(s), Some(o)) = (e, object)
            && s.code == ER_NO_SUCH_TABLE
        {
            return DatasourceError::ObjectMissing(self.qualified(o).canonical());
        }
        metadata_error(&self.endpoint(), e)
    }

    /// Columns, key and statistics of an object.
    async fn describe(&self, conn: &mut Conn, object: &ObjectName) -> Result<MyObject, DatasourceError> {
        match self.qualified(object) {
            ObjectName::Table { schema, name } => {
                let schema = schema.unwrap_or_default();
                let canonical = self.qualified(object).canonical();
                let err = |e: mysql_async::Error| self.query_error(&e, None);
                let table: Option<Row> = conn
                    .exec_first(
                        "SELECT TABLE_TYPE, TABLE_ROWS, TABLE_COMMENT FROM information_schema.TABLES \
                         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                        (schema.as_str(), name.as_str()),
                    )
                    .await
                    .map_err(err)?;
                let table = table.ok_or(DatasourceError::ObjectMissing(canonical))?;
                let table_type = text_at(&table, 0);
                let is_view = table_type.eq_ignore_ascii_case("VIEW") || table_type.eq_ignore_ascii_case("SYSTEM VIEW");
                let rows: Vec<Row> = conn
                    .exec(
                        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
                         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                        (schema.as_str(), name.as_str()),
                    )
                    .await
                    .map_err(err)?;
                let mut columns: Vec<MyColumn> = rows
                    .iter()
                    .map(|r| {
                        map_catalog_type(
                            &text_at(r, 0),
                            &text_at(r, 1),
                            &text_at(r, 2),
                            text_at(r, 3).eq_ignore_ascii_case("YES"),
                        )
                    })
                    .collect();
                let pk_rows: Vec<Row> = conn
                    .exec(
                        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                         ORDER BY ORDINAL_POSITION",
                        (schema.as_str(), name.as_str()),
                    )
                    .await
                    .map_err(err)?;
                let primary_key: Vec<String> = pk_rows.iter().map(|r| text_at(r, 0)).collect();
                for c in &mut columns {
                    c.column.primary_key = primary_key.contains(&c.column.name);
                }
                if self.flavor.get().is_some_and(|f| f.mariadb) {
                    // MariaDB's JSON is LONGTEXT with a json_valid check.
                    let checks: Vec<Row> = conn
                        .exec(
                            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                            (schema.as_str(), name.as_str()),
                        )
                        .await
                        .unwrap_or_default();
                    for r in &checks {
                        let clause = text_at(r, 0);
                        for c in &mut columns {
                            if c.decode == Decode::Text
                                && clause == format!("json_valid({})", MysqlDialect.quote(&c.column.name))
                            {
                                c.column.data_type = DataType::Json as i32;
                            }
                        }
                    }
                }
                Ok(MyObject {
                    kind: if is_view { ObjectKind::View } else { ObjectKind::Table },
                    columns,
                    primary_key: if is_view { Vec::new() } else { primary_key },
                    estimated_rows: if is_view { None } else { u64_at(&table, 1) },
                    comment: if is_view { String::new() } else { text_at(&table, 2) },
                })
            }
            ObjectName::Query(q) => {
                let sql =
                    self.settings.queries.get(&q).ok_or_else(|| DatasourceError::ObjectMissing(object.canonical()))?;
                let probe = format!("SELECT * FROM ({}) AS pulse_q LIMIT 0", sql.trim().trim_end_matches(';'));
                let stmt = conn.prep(probe).await.map_err(|e| self.query_error(&e, None))?;
                let columns = stmt.columns().iter().map(map_result_column).collect();
                let _ = conn.close(stmt).await;
                Ok(MyObject {
                    kind: ObjectKind::StoredQuery,
                    columns,
                    primary_key: Vec::new(),
                    estimated_rows: None,
                    comment: String::new(),
                })
            }
            ObjectName::Path(_) => {
                Err(DatasourceError::invalid("object", "MySQL objects are tables, views or stored queries"))
            }
        }
    }
}

const ER_ACCESS_DENIED: u16 = 1045;
const ER_DBACCESS_DENIED: u16 = 1044;
const ER_BAD_DB: u16 = 1049;
const ER_NO_SUCH_TABLE: u16 = 1146;
const ER_BAD_FIELD: u16 = 1054;
const ER_CON_COUNT: u16 = 1040;
const ER_SERVER_SHUTDOWN: u16 = 1053;
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
/// MariaDB's `max_statement_time` and MySQL's `max_execution_time` expired.
const ER_STATEMENT_TIMEOUT: u16 = 1969;
const ER_QUERY_TIMEOUT: u16 = 3024;

fn endpoint(dsn: &MysqlDsn) -> String {
    if dsn.host.contains(':') { format!("[{}]:{}", dsn.host, dsn.port) } else { format!("{}:{}", dsn.host, dsn.port) }
}

/// An error's text with its causes (mysql_async errors never hold the
/// password).
fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (error {}, SQLSTATE {})", s.message, s.code, s.state),
        _ => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                let text = s.to_string();
                if !msg.contains(&text) {
                    msg = format!("{msg}: {text}");
                }
                src = s.source();
            }
            msg
        }
    }
}

async fn get_conn(pool: &Pool, timeout: Duration, endpoint: &str) -> Result<Conn, DatasourceError> {
    match tokio::time::timeout(timeout, pool.get_conn()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(DatasourceError::Unavailable(format!("MySQL at {endpoint}: {}", describe(&e)))),
        Err(_) => Err(DatasourceError::Unavailable(format!(
            "MySQL at {endpoint}: no connection within {timeout:?}; check the host, port and firewall"
        ))),
    }
}

/// Makes the session read-only, UTC, with a statement timeout; answers the
/// server flavor (looked up once per connector).
async fn configure(
    conn: &mut Conn,
    cache: &OnceLock<Flavor>,
    statement_timeout: Duration,
    endpoint: &str,
) -> Result<Flavor, DatasourceError> {
    let flavor = match cache.get() {
        Some(f) => f.clone(),
        None => {
            let v: Option<Row> =
                conn.query_first("SELECT VERSION()").await.map_err(|e| metadata_error(endpoint, &e))?;
            let f = Flavor::parse(&v.map(|r| text_at(&r, 0)).unwrap_or_default());
            let _ = cache.set(f.clone());
            f
        }
    };
    let mut set = vec!["time_zone = '+00:00'".to_string()];
    set.extend(flavor.timeout_assignment(statement_timeout));
    conn.query_drop(format!("SET SESSION {}", set.join(", "))).await.map_err(|e| metadata_error(endpoint, &e))?;
    conn.query_drop("SET SESSION TRANSACTION READ ONLY").await.map_err(|e| metadata_error(endpoint, &e))?;
    Ok(flavor)
}

/// Errors of metadata statements: broken connections are unavailable,
/// server answers are source errors.
fn metadata_error(endpoint: &str, e: &mysql_async::Error) -> DatasourceError {
    match e {
        mysql_async::Error::Server(s) if !matches!(s.code, ER_CON_COUNT | ER_SERVER_SHUTDOWN) => {
            DatasourceError::Source(describe(e))
        }
        _ => DatasourceError::Unavailable(format!("MySQL at {endpoint}: {}", describe(e))),
    }
}

/// Errors during a read.
fn read_error(endpoint: &str, e: &mysql_async::Error, timeout: Duration) -> DatasourceError {
    let mysql_async::Error::Server(s) = e else {
        return DatasourceError::Unavailable(format!("MySQL at {endpoint}: {}", describe(e)));
    };
    match s.code {
        ER_STATEMENT_TIMEOUT | ER_QUERY_TIMEOUT => DatasourceError::Source(format!(
            "the read ran longer than its statement timeout ({timeout:?}) and was stopped: {}; read less per \
             statement (parallel ranges, a cursor window) or raise the timeout",
            describe(e)
        )),
        ER_BAD_FIELD | ER_NO_SUCH_TABLE => DatasourceError::SchemaChanged(describe(e)),
        ER_CON_COUNT | ER_SERVER_SHUTDOWN | ER_LOCK_WAIT_TIMEOUT | ER_LOCK_DEADLOCK => {
            DatasourceError::Unavailable(format!("MySQL at {endpoint}: {}", describe(e)))
        }
        _ => DatasourceError::Source(describe(e)),
    }
}

fn text_of(v: &MyValue) -> Cow<'_, str> {
    match v {
        MyValue::NULL => Cow::Borrowed(""),
        MyValue::Bytes(b) => String::from_utf8_lossy(b),
        MyValue::Int(i) => Cow::Owned(i.to_string()),
        MyValue::UInt(u) => Cow::Owned(u.to_string()),
        MyValue::Float(f) => Cow::Owned(f.to_string()),
        MyValue::Double(f) => Cow::Owned(f.to_string()),
        MyValue::Date(y, m, d, h, mi, s, us) => {
            if (*h, *mi, *s, *us) == (0, 0, 0, 0) {
                Cow::Owned(format!("{y:04}-{m:02}-{d:02}"))
            } else if *us == 0 {
                Cow::Owned(format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
            } else {
                Cow::Owned(format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"))
            }
        }
        MyValue::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let sign = if *neg { "-" } else { "" };
            if *us == 0 {
                Cow::Owned(format!("{sign}{hours:02}:{mi:02}:{s:02}"))
            } else {
                Cow::Owned(format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}"))
            }
        }
    }
}

/// Text of a metadata row's column (empty for null).
fn text_at(row: &Row, i: usize) -> String {
    row.as_ref(i).map(|v| text_of(v).into_owned()).unwrap_or_default()
}

fn u64_at(row: &Row, i: usize) -> Option<u64> {
    match row.as_ref(i)? {
        MyValue::Int(v) => u64::try_from(*v).ok(),
        MyValue::UInt(v) => Some(*v),
        MyValue::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        MyValue::Double(f) => (*f >= 0.0).then_some(*f as u64),
        _ => None,
    }
}

fn type_error(col: &MyColumn, v: &MyValue) -> DatasourceError {
    DatasourceError::SchemaChanged(format!(
        "column '{}' ({}) sent a value that is not a {}: {:?}",
        col.column.name,
        col.column.source_type,
        super::values::data_type_name(col.column.data_type),
        text_of(v).chars().take(40).collect::<String>()
    ))
}

fn int_of(v: &MyValue, col: &MyColumn) -> Result<i64, DatasourceError> {
    match v {
        MyValue::Int(i) => Ok(*i),
        MyValue::UInt(u) => i64::try_from(*u).map_err(|_| {
            DatasourceError::Source(format!(
                "column '{}' ({}) holds {u}, beyond the signed 64-bit range of Pulse integers; read it through a \
                 stored query with CAST(`{}` AS DECIMAL(20,0))",
                col.column.name, col.column.source_type, col.column.name
            ))
        }),
        // Raw BIT bytes (aggregates of BIT columns), big-endian.
        MyValue::Bytes(b) if col.decode == Decode::Bit && b.len() <= 8 => {
            let u = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
            int_of(&MyValue::UInt(u), col)
        }
        MyValue::Bytes(b) => {
            std::str::from_utf8(b).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| type_error(col, v))
        }
        MyValue::Double(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        _ => Err(type_error(col, v)),
    }
}

fn bool_of(v: &MyValue, col: &MyColumn) -> Result<bool, DatasourceError> {
    match v {
        MyValue::Bytes(b) if col.decode == Decode::Bit => Ok(b.iter().any(|x| *x != 0)),
        MyValue::Bytes(b) if b.eq_ignore_ascii_case(b"true") => Ok(true),
        MyValue::Bytes(b) if b.eq_ignore_ascii_case(b"false") => Ok(false),
        _ => int_of(v, col).map(|i| i != 0),
    }
}

fn float_of(v: &MyValue, col: &MyColumn) -> Result<f64, DatasourceError> {
    match v {
        MyValue::Double(f) => Ok(*f),
        // The shortest decimal form of the f32, so 1.1 stays 1.1.
        MyValue::Float(f) => Ok(f.to_string().parse().unwrap_or(f64::from(*f))),
        MyValue::Int(i) => Ok(*i as f64),
        MyValue::UInt(u) => Ok(*u as f64),
        MyValue::Bytes(b) => {
            std::str::from_utf8(b).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| type_error(col, v))
        }
        _ => Err(type_error(col, v)),
    }
}

fn decimal_of(v: &MyValue, scale: i8, col: &MyColumn) -> Result<i128, DatasourceError> {
    let out_of_range = || {
        DatasourceError::Source(format!(
            "column '{}' ({}) holds a value outside Decimal128",
            col.column.name, col.column.source_type
        ))
    };
    let pow = 10i128.checked_pow(u32::try_from(scale).unwrap_or(0)).ok_or_else(out_of_range)?;
    match v {
        MyValue::Bytes(b) => {
            let s = std::str::from_utf8(b).map_err(|_| type_error(col, v))?;
            match decimal_text_to_i128(s, scale) {
                Some(x) => Ok(x),
                // Exponent notation (e.g. a double in a stored query).
                None => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .map(|f| (f * pow as f64).round())
                    .filter(|f| f.is_finite() && f.abs() < 1e38)
                    .map(|f| f as i128)
                    .ok_or_else(|| type_error(col, v)),
            }
        }
        MyValue::Int(i) => i128::from(*i).checked_mul(pow).ok_or_else(out_of_range),
        MyValue::UInt(u) => i128::from(*u).checked_mul(pow).ok_or_else(out_of_range),
        MyValue::Double(_) | MyValue::Float(_) => {
            let f = float_of(v, col)? * pow as f64;
            if f.is_finite() && f.abs() < 1e38 { Ok(f.round() as i128) } else { Err(out_of_range()) }
        }
        _ => Err(type_error(col, v)),
    }
}

fn zero_date(col: &MyColumn) -> DatasourceError {
    DatasourceError::Source(format!(
        "column '{}' is NOT NULL but holds the zero date '0000-00-00', which is not a date; read it through a \
         stored query with NULLIF(`{}`, '0000-00-00')",
        col.column.name, col.column.name
    ))
}

/// Days since 1970-01-01; `None` for the zero date.
fn days_of(v: &MyValue, col: &MyColumn) -> Result<Option<i32>, DatasourceError> {
    let date = match v {
        MyValue::Date(0, 0, 0, ..) => return Ok(None),
        MyValue::Date(y, m, d, ..) => NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*m), u32::from(*d)),
        MyValue::Bytes(b) => {
            let s = std::str::from_utf8(b).map_err(|_| type_error(col, v))?;
            let day = s.get(..10).unwrap_or(s);
            if day == "0000-00-00" {
                return Ok(None);
            }
            NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
        }
        _ => None,
    };
    let date = date.ok_or_else(|| type_error(col, v))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    Ok(Some((date - epoch).num_days() as i32))
}

/// Microseconds since the epoch, UTC; `None` for the zero date.
fn micros_of(v: &MyValue, col: &MyColumn) -> Result<Option<i64>, DatasourceError> {
    let dt = match v {
        MyValue::Date(0, 0, 0, ..) => return Ok(None),
        MyValue::Date(y, m, d, h, mi, s, us) => NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*m), u32::from(*d))
            .and_then(|day| day.and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us)),
        MyValue::Bytes(b) => {
            let s = std::str::from_utf8(b).map_err(|_| type_error(col, v))?;
            if s.starts_with("0000-00-00") {
                return Ok(None);
            }
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        }
        _ => None,
    };
    Ok(Some(dt.ok_or_else(|| type_error(col, v))?.and_utc().timestamp_micros()))
}

/// A value of a metadata result (min, max, split points) as a typed scalar.
fn to_proto(v: &MyValue, col: &MyColumn) -> Result<Value, DatasourceError> {
    if matches!(v, MyValue::NULL) {
        return Ok(Value { kind: None });
    }
    let dt = DataType::try_from(col.column.data_type).unwrap_or(DataType::String);
    let kind = match (dt, col.decode) {
        (DataType::Bool, _) => Some(Kind::BoolValue(bool_of(v, col)?)),
        (DataType::Int, _) => Some(Kind::IntValue(int_of(v, col)?)),
        (DataType::Float, _) => Some(Kind::FloatValue(float_of(v, col)?)),
        (DataType::Decimal, Decode::Decimal(s)) => {
            Some(Kind::DecimalValue(i128_to_decimal_text(decimal_of(v, s, col)?, s)))
        }
        (DataType::Date, _) => days_of(v, col)?.map(|d| {
            let day = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default() + chrono::Duration::days(i64::from(d));
            Kind::DateValue(day.format("%Y-%m-%d").to_string())
        }),
        (DataType::Timestamp, _) => micros_of(v, col)?.map(|us| Kind::TimestampValue(micros_to_proto(us))),
        (DataType::Binary, _) => Some(Kind::BinaryValue(match v {
            MyValue::Bytes(b) => b.clone(),
            other => text_of(other).into_owned().into_bytes(),
        })),
        (DataType::Uuid, _) => Some(Kind::UuidValue(text_of(v).into_owned())),
        _ => Some(Kind::StringValue(text_of(v).into_owned())),
    };
    Ok(Value { kind })
}

fn row_value(row: &Row, i: usize) -> &MyValue {
    row.as_ref(i).unwrap_or(&MyValue::NULL)
}

/// Write privileges in `SHOW GRANTS` lines, as "INSERT, UPDATE on `shop`.*".
fn write_grants(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let upper = line.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else { continue };
        let Some(on) = rest.find(" ON ") else { continue };
        // Column lists, e.g. `UPDATE (a, b)`, are not privileges.
        let mut privs = String::new();
        let mut depth = 0usize;
        for c in rest[..on].chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ if depth == 0 => privs.push(c),
                _ => {}
            }
        }
        let writes: Vec<&str> = privs
            .split(',')
            .map(str::trim)
            .filter(|p| {
                let first = p.split_whitespace().next().unwrap_or("");
                matches!(first, "ALL" | "INSERT" | "UPDATE" | "DELETE")
            })
            .collect();
        if writes.is_empty() {
            continue;
        }
        let start = "GRANT ".len() + on + " ON ".len();
        let scope_end = upper[start..].find(" TO ").map(|i| start + i).unwrap_or(line.len());
        out.push(format!("{} on {}", writes.join(", "), line[start..scope_end].trim()));
    }
    out
}

/// Appends one value; the zero date is null in a nullable column.
fn append(b: &mut ColumnBuilder, v: MyValue, col: &MyColumn) -> Result<(), DatasourceError> {
    if matches!(v, MyValue::NULL) {
        b.null();
        return Ok(());
    }
    match b {
        ColumnBuilder::Bool(b) => b.append_value(bool_of(&v, col)?),
        ColumnBuilder::Int(b) => b.append_value(int_of(&v, col)?),
        ColumnBuilder::Float(b) => b.append_value(float_of(&v, col)?),
        ColumnBuilder::Decimal(b) => {
            let Decode::Decimal(s) = col.decode else { return Err(type_error(col, &v)) };
            b.append_value(decimal_of(&v, s, col)?)
        }
        ColumnBuilder::Text(b) => match v {
            MyValue::Bytes(bytes) => match std::str::from_utf8(&bytes) {
                Ok(s) => b.append_value(s),
                Err(_) => b.append_value(String::from_utf8_lossy(&bytes)),
            },
            other => b.append_value(text_of(&other)),
        },
        ColumnBuilder::Bytes(b) => match v {
            MyValue::Bytes(bytes) => b.append_value(bytes),
            other => b.append_value(text_of(&other).as_bytes()),
        },
        ColumnBuilder::Date(b) => match days_of(&v, col)? {
            Some(d) => b.append_value(d),
            None if col.column.nullable => b.append_null(),
            None => return Err(zero_date(col)),
        },
        ColumnBuilder::Timestamp(b) => match micros_of(&v, col)? {
            Some(us) => b.append_value(us),
            None if col.column.nullable => b.append_null(),
            None => return Err(zero_date(col)),
        },
    }
    Ok(())
}

/// Turns rows into record batches of at most `batch_rows` rows.
struct BatchBuilder {
    schema: arrow::datatypes::SchemaRef,
    columns: Vec<MyColumn>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
}

impl BatchBuilder {
    fn new(schema: arrow::datatypes::SchemaRef, columns: Vec<MyColumn>, batch_rows: usize) -> Self {
        let builders =
            schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type(), batch_rows.min(65_536))).collect();
        Self { schema, columns, builders, rows: 0 }
    }

    fn push(&mut self, row: Row) -> Result<(), DatasourceError> {
        let values = row.unwrap_raw();
        if values.len() != self.builders.len() {
            return Err(DatasourceError::SchemaChanged(format!(
                "expected {} columns, the source sent {}",
                self.builders.len(),
                values.len()
            )));
        }
        for ((v, b), c) in values.into_iter().zip(&mut self.builders).zip(&self.columns) {
            append(b, v.unwrap_or(MyValue::NULL), c)?;
        }
        self.rows += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<RecordBatch, DatasourceError> {
        let cols: Vec<ArrayRef> = self.builders.iter_mut().map(ColumnBuilder::finish).collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

#[async_trait::async_trait]
impl Connector for MysqlConnector {
    async fn validate(&self, objects: &[ObjectName]) -> ValidationOutcome {
        let mut out = ValidationOutcome::default();
        let skipped = |out: &mut ValidationOutcome, from: usize, started: Instant| {
            skip_rest(out, from, objects.iter().map(|o| self.qualified(o).canonical()), started)
        };

        let timeout = self.connect_timeout();
        let started = Instant::now();
        let hint = "is the host reachable from the Pulse server, and is MySQL listening on that port?";
        if !reachable(&mut out, &self.dsn.host, self.dsn.port, &self.endpoint(), timeout, hint).await {
            skipped(&mut out, 1, started);
            return out;
        }

        let started = Instant::now();
        let conn = tokio::time::timeout(timeout, self.pool.get_conn()).await;
        let mut conn = match conn {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let message = match &e {
                    mysql_async::Error::Server(s) if s.code == ER_ACCESS_DENIED => format!(
                        "the server refused the login: {}; check the user and password of the DSN",
                        describe(&e)
                    ),
                    mysql_async::Error::Server(s) if s.code == ER_BAD_DB => format!(
                        "database '{}' does not exist: {}; check the database of the DSN",
                        self.dsn.database,
                        describe(&e)
                    ),
                    mysql_async::Error::Server(s) if s.code == ER_DBACCESS_DENIED => format!(
                        "user '{}' may not use database '{}': {}; grant it SELECT on the database",
                        self.dsn.user,
                        self.dsn.database,
                        describe(&e)
                    ),
                    _ => format!(
                        "could not log in to {}: {}; check the user, password and database of the DSN",
                        self.endpoint(),
                        describe(&e)
                    ),
                };
                out.checks.push(check("authenticated", CheckStatus::Failed, message, started));
                skipped(&mut out, 2, started);
                return out;
            }
            Err(_) => {
                out.checks.push(check(
                    "authenticated",
                    CheckStatus::Failed,
                    format!(
                        "{} accepted the connection but did not complete the login within {timeout:?}; is it a \
                         MySQL or MariaDB server?",
                        self.endpoint()
                    ),
                    started,
                ));
                skipped(&mut out, 2, started);
                return out;
            }
        };
        let flavor = match configure(&mut conn, &self.flavor, METADATA_TIMEOUT, &self.endpoint()).await {
            Ok(f) => f,
            Err(e) => {
                out.checks.push(check(
                    "authenticated",
                    CheckStatus::Failed,
                    format!("logged in, but the session could not be set up: {e}"),
                    started,
                ));
                skipped(&mut out, 2, started);
                return out;
            }
        };
        out.authenticated = true;
        out.server_version = flavor.display.clone();
        out.checks.push(check("authenticated", CheckStatus::Passed, "", started));

        let started = Instant::now();
        match conn.query::<Row, _>("SHOW GRANTS").await {
            Ok(rows) => {
                let lines: Vec<String> = rows.iter().map(|r| text_at(r, 0)).collect();
                let writes = write_grants(&lines);
                out.read_only = writes.is_empty();
                out.checks.push(if writes.is_empty() {
                    check("read_only", CheckStatus::Passed, "", started)
                } else {
                    check(
                        "read_only",
                        CheckStatus::Warning,
                        format!(
                            "user '{}' can write: {}. Pulse only reads (every read runs in a READ ONLY \
                             transaction), but a dedicated user with SELECT only is safer",
                            self.dsn.user,
                            writes.join("; ")
                        ),
                        started,
                    )
                });
            }
            Err(e) => out.checks.push(check(
                "read_only",
                CheckStatus::Warning,
                format!("could not read the user's grants ({}); make sure it has SELECT only", describe(&e)),
                started,
            )),
        }

        for o in objects {
            let started = Instant::now();
            let name = format!("object:{}", self.qualified(o).canonical());
            let result = match self.describe(&mut conn, o).await {
                Ok(_) => {
                    let probe = format!("SELECT 1 FROM {} LIMIT 0", self.source_sql(o));
                    conn.query_drop(probe).await.map_err(|e| self.query_error(&e, Some(o)))
                }
                Err(e) => Err(e),
            };
            out.checks.push(match result {
                Ok(()) => check(&name, CheckStatus::Passed, "", started),
                Err(DatasourceError::ObjectMissing(_)) => check(
                    &name,
                    CheckStatus::Failed,
                    match o {
                        ObjectName::Query(_) => "is not a stored query of this datasource".to_string(),
                        _ => format!(
                            "does not exist, or user '{}' cannot see it; check the name and the user's grants",
                            self.dsn.user
                        ),
                    },
                    started,
                ),
                Err(e) => check(
                    &name,
                    CheckStatus::Failed,
                    format!("cannot be read: {e}; check the name and that the user has SELECT on it"),
                    started,
                ),
            });
        }
        out
    }

    async fn list_objects(&self, schemas: &[String]) -> Result<Vec<ObjectName>, DatasourceError> {
        if schemas.is_empty() {
            return Ok(Vec::new());
        }
        let (mut conn, _) = self.session(METADATA_TIMEOUT).await?;
        let marks = vec!["?"; schemas.len()].join(", ");
        let params: Vec<MyValue> = schemas.iter().map(|s| MyValue::Bytes(s.clone().into_bytes())).collect();
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({marks}) \
                     ORDER BY TABLE_SCHEMA, TABLE_NAME"
                ),
                params,
            )
            .await
            .map_err(|e| self.query_error(&e, None))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let (schema, name) = (text_at(r, 0), text_at(r, 1));
                // Names outside the identifier grammar cannot be requested.
                crate::names::check_identifier("", &name).ok()?;
                Some(ObjectName::Table { schema: Some(schema), name })
            })
            .collect())
    }

    async fn inspect(&self, object: &ObjectName) -> Result<ObjectSchema, DatasourceError> {
        let (mut conn, _) = self.session(METADATA_TIMEOUT).await?;
        let obj = self.describe(&mut conn, object).await?;
        Ok(ObjectSchema {
            object: self.qualified(object).canonical(),
            kind: obj.kind as i32,
            schema: Some(obj.logical()),
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
        let canonical = self.qualified(object).canonical();
        let timeout = if exact || cursor.is_some() { self.settings.statement_timeout } else { METADATA_TIMEOUT };
        let (mut conn, _) = self.session(timeout.max(METADATA_TIMEOUT)).await?;
        if !exact
            && cursor.is_none()
            && let ObjectName::Table { schema, name } = self.qualified(object)
        {
            let row: Option<Row> = conn
                .exec_first(
                    "SELECT TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (schema.unwrap_or_default(), name),
                )
                .await
                .map_err(|e| self.query_error(&e, None))?;
            let row = row.ok_or_else(|| DatasourceError::ObjectMissing(canonical.clone()))?;
            // Views have no statistics: they are counted.
            if let Some(rows) = u64_at(&row, 0) {
                return Ok(ObjectSize {
                    object: canonical,
                    rows,
                    bytes: u64_at(&row, 1).unwrap_or(0),
                    exact: false,
                    method: "information_schema.TABLES".into(),
                    cursor_max: None,
                });
            }
        }
        let cursor_col = match cursor {
            Some(w) => Some(self.describe(&mut conn, object).await?.column(&w.field, "cursor_field")?.clone()),
            None => None,
        };
        let st = sql::count_and_max(&MysqlDialect, &self.source_sql(object), cursor);
        let row: Option<Row> = conn
            .exec_first(st.sql.as_str(), bind_all(&st.params)?)
            .await
            .map_err(|e| self.query_error(&e, Some(object)))?;
        let row = row.ok_or_else(|| DatasourceError::Source("count(*) answered no row".into()))?;
        let cursor_max = match &cursor_col {
            Some(c) => Some(to_proto(row_value(&row, 1), c)?),
            None => None,
        };
        Ok(ObjectSize {
            object: canonical,
            rows: u64_at(&row, 0).unwrap_or(0),
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
        let (mut conn, _) = self.session(METADATA_TIMEOUT.max(self.settings.statement_timeout)).await?;
        let obj = self.describe(&mut conn, object).await?;
        let col = obj.column(column, "column")?.clone();
        let from = self.source_sql(object);
        let st = sql::min_max(&MysqlDialect, &from, column, cursor);
        let row: Option<Row> = conn
            .exec_first(st.sql.as_str(), bind_all(&st.params)?)
            .await
            .map_err(|e| self.query_error(&e, Some(object)))?;
        let Some(row) = row else { return Ok(ColumnBounds::default()) };
        let min = to_proto(row_value(&row, 0), &col)?;
        let max = to_proto(row_value(&row, 1), &col)?;
        if min.kind.is_none() || max.kind.is_none() {
            return Ok(ColumnBounds::default());
        }
        let mut candidates = Vec::new();
        if count > 1 {
            let large = obj.estimated_rows.is_some_and(|n| n > QUANTILE_ROW_LIMIT);
            let even = if large { even_splits(&min, &max, count, col.decimal_scale()) } else { None };
            match even {
                Some(v) => candidates = v,
                None => {
                    // Bucket minimums of NTILE: each range holds about the
                    // same number of rows.
                    let st = sql::ntile_starts(&MysqlDialect, &from, column, count, cursor);
                    match conn.exec::<Row, _, _>(st.sql.as_str(), bind_all(&st.params)?).await {
                        Ok(rows) => {
                            for r in &rows {
                                candidates.push(to_proto(row_value(r, 0), &col)?);
                            }
                        }
                        // Servers without window functions (MySQL 5.7).
                        Err(e) => match even_splits(&min, &max, count, col.decimal_scale()) {
                            Some(v) => candidates = v,
                            None => return Err(self.query_error(&e, Some(object))),
                        },
                    }
                }
            }
        }
        let splits = ordered_splits(candidates, &min, &max);
        Ok(ColumnBounds { min: Some(min), max: Some(max), splits })
    }

    async fn stream(&self, object: &ObjectName, spec: ReadSpec) -> Result<BatchStream, DatasourceError> {
        let obj = {
            let (mut conn, _) = self.session(METADATA_TIMEOUT).await?;
            self.describe(&mut conn, object).await?
        };
        let wanted = project(&obj.logical(), &spec.columns, "columns")?;
        let cols: Vec<MyColumn> = wanted
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
        let select_list: Vec<String> = cols.iter().map(|c| c.select_expr(&MysqlDialect)).collect();
        let st = sql::select(&MysqlDialect, &self.source_sql(object), &select_list, &spec);
        let params = bind_all(&st.params)?;
        let schema = arrow_schema(&wanted);
        let batch_rows = spec.batch_rows.max(1);
        let opts = self.opts.clone();
        let endpoint = self.endpoint();
        let connect_timeout = self.connect_timeout();
        let flavor = self.flavor.clone();
        let timeout = spec.statement_timeout;
        let sql_text = st.sql;
        let stream = async_stream::try_stream! {
            let mut conn = match tokio::time::timeout(connect_timeout, Conn::new(opts)).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => Err(DatasourceError::Unavailable(format!("MySQL at {endpoint}: {}", describe(&e))))?,
                Err(_) => Err(DatasourceError::Unavailable(format!(
                    "MySQL at {endpoint}: no connection within {connect_timeout:?}; check the host, port and firewall"
                )))?,
            };
            configure(&mut conn, &flavor, timeout, &endpoint).await?;
            let rerr = |e: mysql_async::Error| read_error(&endpoint, &e, timeout);
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(rerr)?;
            let mut batches = BatchBuilder::new(schema.clone(), cols, batch_rows);
            let mut failure = None;
            {
                let mut result = conn.exec_iter(sql_text.as_str(), params).await.map_err(rerr)?;
                if let Some(rows) = result.stream::<Row>().await.map_err(rerr)? {
                    futures::pin_mut!(rows);
                    while let Some(row) = rows.next().await {
                        if let Err(e) = row.map_err(rerr).and_then(|r| batches.push(r)) {
                            failure = Some(e);
                            break;
                        }
                        if batches.rows >= batch_rows {
                            yield batches.flush()?;
                        }
                    }
                }
            }
            match failure {
                Some(e) => {
                    // Close the connection now: its transaction (and the
                    // metadata locks it holds at the source) must not outlive
                    // the read.
                    let _ = conn.disconnect().await;
                    Err(e)?;
                }
                None => {
                    if batches.rows > 0 {
                        yield batches.flush()?;
                    }
                    conn.query_drop("COMMIT").await.map_err(rerr)?;
                    let _ = conn.disconnect().await;
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::RangeFilter;
    use crate::connector::test_support::{settings, v};

    #[test]
    fn identifiers_are_backtick_quoted() {
        assert_eq!(MysqlDialect.quote("orders"), "`orders`");
        assert_eq!(MysqlDialect.quote("we`ird"), "`we``ird`");
        let obj = ObjectName::Table { schema: Some("shop".into()), name: "orders".into() };
        assert_eq!(sql::source(&MysqlDialect, &obj, None), "`shop`.`orders`");
    }

    #[test]
    fn reads_bind_every_value() {
        let spec = ReadSpec {
            cursor: Some(CursorWindow {
                field: "updated".into(),
                after: Some(v(Kind::StringValue("x'); DROP TABLE t; --".into()))),
                until: None,
            }),
            range: Some(RangeFilter {
                column: "amount".into(),
                lower: Some(v(Kind::DecimalValue("1.50".into()))),
                upper: Some(v(Kind::IntValue(9))),
                include_nulls: true,
            }),
            order_by: vec!["id".into()],
            after_key: vec![v(Kind::IntValue(7))],
            limit: Some(5),
            ..Default::default()
        };
        let obj = ObjectName::Table { schema: Some("s".into()), name: "t".into() };
        let st = sql::select(&MysqlDialect, &sql::source(&MysqlDialect, &obj, None), &["`id`".into()], &spec);
        assert_eq!(
            st.sql,
            "SELECT `id` FROM `s`.`t` WHERE `updated` > ? AND ((`amount` >= CAST(? AS DECIMAL(65,30)) AND \
             `amount` < ?) OR `amount` IS NULL) AND ((`id` > ?)) ORDER BY `id` ASC LIMIT 5"
        );
        assert!(!st.sql.contains("DROP"));
        let bound = bind_all(&st.params).unwrap();
        assert_eq!(
            bound,
            vec![
                MyValue::Bytes(b"x'); DROP TABLE t; --".to_vec()),
                MyValue::Bytes(b"1.50".to_vec()),
                MyValue::Int(9),
                MyValue::Int(7)
            ]
        );
    }

    #[test]
    fn values_bind_with_their_types() {
        assert_eq!(bind_value(&Value { kind: None }).unwrap(), MyValue::NULL);
        assert_eq!(bind_value(&v(Kind::BoolValue(true))).unwrap(), MyValue::Int(1));
        assert_eq!(bind_value(&v(Kind::FloatValue(1.5))).unwrap(), MyValue::Double(1.5));
        assert_eq!(bind_value(&v(Kind::BinaryValue(vec![0, 255]))).unwrap(), MyValue::Bytes(vec![0, 255]));
        assert_eq!(
            bind_value(&v(Kind::DateValue("2024-02-29".into()))).unwrap(),
            MyValue::Date(2024, 2, 29, 0, 0, 0, 0)
        );
        assert!(bind_value(&v(Kind::DateValue("2024-02-30".into()))).is_err());
        assert!(bind_value(&v(Kind::DecimalValue("1e5".into()))).is_err());
        let ts = micros_to_proto(1_700_000_000_123_456);
        assert_eq!(bind_value(&v(Kind::TimestampValue(ts))).unwrap(), MyValue::Date(2023, 11, 14, 22, 13, 20, 123_456));
        let before_epoch = micros_to_proto(-1_500_000);
        assert_eq!(
            bind_value(&v(Kind::TimestampValue(before_epoch))).unwrap(),
            MyValue::Date(1969, 12, 31, 23, 59, 58, 500_000)
        );
        assert_eq!(
            bind_value(&v(Kind::UuidValue("0b6f6e3c-0000-4000-8000-000000000001".into()))).unwrap(),
            MyValue::Bytes(b"0b6f6e3c-0000-4000-8000-000000000001".to_vec())
        );
    }

    #[test]
    fn dsns_parse_without_leaking_the_password() {
        let dsn = MysqlDsn::parse("mysql://reader:p%40ss%3Aw0rd@db.internal:3307/shop").unwrap();
        assert_eq!(
            dsn,
            MysqlDsn {
                host: "db.internal".into(),
                port: 3307,
                user: "reader".into(),
                password: "p@ss:w0rd".into(),
                database: "shop".into()
            }
        );
        assert!(!format!("{dsn:?}").contains("p@ss"));
        let dsn = MysqlDsn::parse("mariadb://root@127.0.0.1/").unwrap();
        assert_eq!((dsn.port, dsn.database.as_str(), dsn.password.as_str()), (3306, "", ""));
        assert_eq!(MysqlDsn::parse("mysql://u@[::1]:3306/x").unwrap().host, "::1");

        for bad in [
            "postgres://u:hunter2@h/db",
            "mysql://u:hunter2@/db",
            "not a url hunter2",
            "mysql://u:hunter2@h/db?ssl-mode=REQUIRED",
            "mysql://:hunter2@h/db",
            "mysql://u:hunter2@h/a/b",
        ] {
            let err = MysqlConnector::new(settings(bad)).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("connection.sql.dsn:"), "{bad}: {text}");
            assert!(!text.contains("hunter2"), "{bad}: {text}");
        }
    }

    #[test]
    fn connectors_are_built_without_a_server() {
        let c = MysqlConnector::new(settings("mysql://reader:hunter2@db:3306/shop")).unwrap();
        assert_eq!(c.default_schema(), "shop");
        assert_eq!(c.endpoint(), "db:3306");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let t = ObjectName::Table { schema: None, name: "orders".into() };
        assert_eq!(c.source_sql(&t), "`shop`.`orders`");
        assert_eq!(c.source_sql(&ObjectName::Query("missing".into())), "(SELECT 1 WHERE 1 = 0) AS pulse_q");
    }

    #[test]
    fn versions_pick_the_timeout_variable() {
        let m = Flavor::parse("10.11.19-MariaDB-0+deb12u1");
        assert_eq!(m.display, "MariaDB 10.11.19");
        assert_eq!(m.timeout_assignment(Duration::from_millis(1500)).unwrap(), "max_statement_time = 1.500");
        assert_eq!(Flavor::parse("5.5.5-10.4.3-MariaDB-log").display, "MariaDB 10.4.3");
        let my = Flavor::parse("8.0.36");
        assert!(!my.mariadb);
        assert_eq!(my.display, "MySQL 8.0.36");
        assert_eq!(my.timeout_assignment(Duration::from_secs(2)).unwrap(), "max_execution_time = 2000");
        assert_eq!(Flavor::parse("5.6.40-log").timeout_assignment(Duration::from_secs(2)), None);
    }

    #[test]
    fn catalog_types_map_to_logical_types() {
        let t = |dt: &str, ct: &str| {
            let c = map_catalog_type("c", dt, ct, true);
            (DataType::try_from(c.column.data_type).unwrap(), c.decode)
        };
        assert_eq!(t("tinyint", "tinyint(1)"), (DataType::Bool, Decode::Bool));
        assert_eq!(t("tinyint", "tinyint(4)"), (DataType::Int, Decode::Int));
        assert_eq!(t("bigint", "bigint(20) unsigned"), (DataType::Int, Decode::Int));
        assert_eq!(t("decimal", "decimal(15,2)"), (DataType::Decimal, Decode::Decimal(2)));
        assert_eq!(t("decimal", "decimal(65,10)"), (DataType::Float, Decode::Float));
        assert_eq!(t("datetime", "datetime(6)"), (DataType::Timestamp, Decode::Timestamp));
        assert_eq!(t("longblob", "longblob"), (DataType::Binary, Decode::Bytes));
        assert_eq!(t("json", "json"), (DataType::Json, Decode::Text));
        assert_eq!(t("bit", "bit(1)"), (DataType::Bool, Decode::Bit));
        assert_eq!(t("enum", "enum('a','b')"), (DataType::String, Decode::Text));
        assert_eq!(map_catalog_type("c", "decimal", "decimal(15,2)", false).column.source_type, "decimal(15,2)");
    }

    #[test]
    fn decimals_convert_exactly() {
        assert_eq!(decimal_text_to_i128("12345.67", 2), Some(1_234_567));
        assert_eq!(decimal_text_to_i128("-0.05", 2), Some(-5));
        assert_eq!(decimal_text_to_i128("7", 3), Some(7000));
        assert_eq!(decimal_text_to_i128("1.235", 2), Some(124));
        assert_eq!(decimal_text_to_i128("1e5", 2), None);
        assert_eq!(i128_to_decimal_text(-5, 2), "-0.05");
        assert_eq!(i128_to_decimal_text(1_234_567, 2), "12345.67");
        assert_eq!(i128_to_decimal_text(42, 0), "42");
    }

    #[test]
    fn values_decode_into_arrow() {
        let col = |decode: Decode, nullable: bool| column("c", DataType::Int, "x", nullable, decode);
        assert_eq!(int_of(&MyValue::UInt(5), &col(Decode::Int, true)).unwrap(), 5);
        let err = int_of(&MyValue::UInt(u64::MAX), &col(Decode::Int, true)).unwrap_err().to_string();
        assert!(err.contains("column 'c'"), "{err}");
        assert_eq!(int_of(&MyValue::Bytes(vec![1, 0]), &col(Decode::Bit, true)).unwrap(), 256);
        assert!(bool_of(&MyValue::Bytes(vec![1]), &col(Decode::Bit, true)).unwrap());
        assert_eq!(days_of(&MyValue::Date(1970, 1, 2, 0, 0, 0, 0), &col(Decode::Date, true)).unwrap(), Some(1));
        assert_eq!(days_of(&MyValue::Date(0, 0, 0, 0, 0, 0, 0), &col(Decode::Date, true)).unwrap(), None);
        assert_eq!(
            micros_of(&MyValue::Bytes(b"1970-01-01 00:00:01.5".to_vec()), &col(Decode::Timestamp, true)).unwrap(),
            Some(1_500_000)
        );
        assert_eq!(float_of(&MyValue::Float(1.1), &col(Decode::Float, true)).unwrap(), 1.1);
        assert_eq!(text_of(&MyValue::Time(true, 1, 2, 3, 4, 0)), "-26:03:04");

        let schema = arrow_schema(&Schema {
            columns: vec![
                column("d", DataType::Date, "date", false, Decode::Date).column,
                column("x", DataType::Decimal, "decimal(5,2)", true, Decode::Decimal(2)).column,
            ],
        });
        let cols = vec![
            column("d", DataType::Date, "date", false, Decode::Date),
            column("x", DataType::Decimal, "decimal(5,2)", true, Decode::Decimal(2)),
        ];
        let mut b = BatchBuilder::new(schema, cols.clone(), 4);
        append(&mut b.builders[0], MyValue::Date(2024, 1, 1, 0, 0, 0, 0), &cols[0]).unwrap();
        append(&mut b.builders[1], MyValue::Bytes(b"-1.25".to_vec()), &cols[1]).unwrap();
        b.rows += 1;
        let batch = b.flush().unwrap();
        assert_eq!(
            super::super::values::value_at(batch.column(1).as_ref(), 0).kind,
            Some(Kind::DecimalValue("-1.25".into()))
        );
        let err = append(&mut b.builders[0], MyValue::Date(0, 0, 0, 0, 0, 0, 0), &cols[0]).unwrap_err().to_string();
        assert!(err.contains("zero date"), "{err}");
    }

    #[test]
    fn grants_show_write_privileges() {
        let lines = vec![
            "GRANT USAGE ON *.* TO `reader`@`%`".to_string(),
            "GRANT SELECT, UPDATE (`note`) ON `shop`.`orders` TO `reader`@`%`".to_string(),
            "GRANT SELECT (`insert`) ON `shop`.`x` TO `reader`@`%`".to_string(),
            "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION".to_string(),
            "GRANT `analyst` TO `reader`@`%`".to_string(),
        ];
        assert_eq!(write_grants(&lines), vec!["UPDATE on `shop`.`orders`".to_string()]);
        let all = vec!["GRANT ALL PRIVILEGES ON *.* TO `root`@`127.0.0.1` WITH GRANT OPTION".to_string()];
        assert_eq!(write_grants(&all), vec!["ALL PRIVILEGES on *.*".to_string()]);
        assert!(write_grants(&["GRANT SELECT, SHOW VIEW ON `shop`.* TO `r`@`%`".to_string()]).is_empty());
    }

    #[test]
    fn even_splits_stay_inside_the_bounds() {
        let col = column("c", DataType::Int, "int", true, Decode::Int);
        let splits = even_splits(&v(Kind::IntValue(0)), &v(Kind::IntValue(100)), 4, col.decimal_scale()).unwrap();
        assert_eq!(splits, vec![v(Kind::IntValue(25)), v(Kind::IntValue(50)), v(Kind::IntValue(75))]);
        let dcol = column("c", DataType::Decimal, "decimal(5,2)", true, Decode::Decimal(2));
        let splits = even_splits(
            &v(Kind::DecimalValue("0.00".into())),
            &v(Kind::DecimalValue("1.00".into())),
            2,
            dcol.decimal_scale(),
        )
        .unwrap();
        assert_eq!(splits, vec![v(Kind::DecimalValue("0.50".into()))]);
        let scol = column("c", DataType::String, "text", true, Decode::Text);
        assert!(
            even_splits(&v(Kind::StringValue("a".into())), &v(Kind::StringValue("z".into())), 2, scol.decimal_scale())
                .is_none()
        );
    }
}
