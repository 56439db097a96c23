//! SQL Server and Azure SQL over TDS (tiberius). Rows are read one at a time
//! into Arrow builders inside one transaction at SNAPSHOT isolation when the
//! database allows it (a consistent view that takes no shared locks), READ
//! COMMITTED otherwise. SQL Server has no read-only transaction: connections
//! declare `ApplicationIntent=ReadOnly` (routed to a readable secondary of an
//! availability group when there is one), only SELECTs are ever sent, and
//! validation warns when the login can write.
//!
//! Statement timeout: T-SQL has none per statement, so the read has a
//! deadline; past it the connection is dropped, which makes the server abort
//! the statement. A silent server is caught sooner by tiberius' per-response
//! command timeout.
//!
//! `datetime`, `datetime2` and `smalldatetime` are read as UTC wall-clock
//! times; `datetimeoffset` is converted to UTC. `money` is read as
//! `decimal(19,4)`; `time` as text; `geometry`, `geography` and `hierarchyid`
//! as their binary serialisation.

use std::time::{Duration, Instant};

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use futures::StreamExt;
use pulse_proto::common::v1::{Column, DataType, Schema};
use pulse_proto::datasource::v1::value::Kind;
use pulse_proto::datasource::v1::{CheckStatus, ObjectKind, ObjectSchema, ObjectSize, Value};
use tiberius::numeric::Numeric;
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, FromSql, Query, Row};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::sql::{self, Dialect};
use super::values::{
    ColumnBuilder, arrow_schema, decimal_text_to_i128, even_splits, i128_to_decimal_text, micros_to_proto,
    ordered_splits, proto_to_micros,
};
use super::{
    BatchStream, ColumnBounds, Connector, CursorWindow, METADATA_TIMEOUT, ReadSpec, SqlSettings, ValidationOutcome,
    check, percent_decode, project, reachable, skip_rest,
};
use crate::error::DatasourceError;
use crate::names::ObjectName;

const DEFAULT_PORT: u16 = 1433;
const DSN_FIELD: &str = "connection.sql.dsn";
const DEFAULT_SCHEMA: &str = "dbo";
/// Above this many catalog rows, split points of numeric and temporal columns
/// are spaced evenly between min and max instead of sorting every row.
const QUANTILE_ROW_LIMIT: u64 = 2_000_000;
/// How long a read waits for a lock before failing (instead of queueing
/// behind a writer indefinitely).
const LOCK_TIMEOUT_MS: u64 = 30_000;

type Conn = Client<Compat<TcpStream>>;

// Server error numbers.
const LOGIN_FAILED: u32 = 18456;
const CANNOT_OPEN_DATABASE: u32 = 4060;
const INVALID_OBJECT: u32 = 208;
const INVALID_COLUMN: u32 = 207;
const LOCK_TIMEOUT: u32 = 1222;
const DEADLOCK: u32 = 1205;

/// Square-bracket quoting, `@Pn` parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlServerDialect;

impl Dialect for SqlServerDialect {
    fn quote(&self, ident: &str) -> String {
        format!("[{}]", ident.replace(']', "]]"))
    }

    fn param(&self, n: usize, _value: &Value) -> String {
        format!("@P{n}")
    }

    fn order_asc_nulls_first(&self, quoted: &str) -> String {
        // NULL sorts before every value in SQL Server's ascending order.
        format!("{quoted} ASC")
    }

    fn limit(&self, select: String, limit: u64, ordered: bool) -> String {
        if ordered {
            format!("{select} OFFSET 0 ROWS FETCH NEXT {limit} ROWS ONLY")
        } else {
            match select.strip_prefix("SELECT ") {
                Some(rest) => format!("SELECT TOP ({limit}) {rest}"),
                None => format!("SELECT TOP ({limit}) * FROM ({select}) AS pulse_l"),
            }
        }
    }
}

/// Binds one value as a typed parameter. Decimals travel as exact `Numeric`
/// values with the scale they were written with; dates and timestamps as
/// `date` and `datetime2` (UTC).
fn bind(q: &mut Query<'_>, value: &Value) -> Result<(), DatasourceError> {
    match &value.kind {
        None => q.bind(Option::<i64>::None),
        Some(Kind::BoolValue(b)) => q.bind(*b),
        Some(Kind::IntValue(i)) => q.bind(*i),
        Some(Kind::FloatValue(f)) => q.bind(*f),
        Some(Kind::DecimalValue(d)) => {
            let scale = d.trim().split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
            let scale = i8::try_from(scale).ok().filter(|s| *s <= 37);
            let n = scale.and_then(|s| decimal_text_to_i128(d, s).map(|v| (v, s)));
            let Some((v, s)) = n else {
                return Err(DatasourceError::invalid("value", format!("'{d}' is not a decimal SQL Server can hold")));
            };
            q.bind(Numeric::new_with_scale(v, s as u8));
        }
        Some(Kind::StringValue(s)) | Some(Kind::UuidValue(s)) => q.bind(s.clone()),
        Some(Kind::BinaryValue(b)) => q.bind(b.clone()),
        Some(Kind::DateValue(d)) => q.bind(super::values::parse_date("value", d)?),
        Some(Kind::TimestampValue(t)) => {
            let dt = chrono::DateTime::from_timestamp_micros(proto_to_micros(t))
                .ok_or_else(|| DatasourceError::invalid("value", "timestamp is out of range"))?;
            q.bind(dt.naive_utc());
        }
    }
    Ok(())
}

fn query<'a>(sql: impl Into<std::borrow::Cow<'a, str>>, params: &[Value]) -> Result<Query<'a>, DatasourceError> {
    let mut q = Query::new(sql);
    for p in params {
        bind(&mut q, p)?;
    }
    Ok(q)
}

/// The parts of `sqlserver://user:password@host:port/database?encrypt=…`.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlServerDsn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    /// `true` (default: encrypt, fail if the server cannot), `false` (only
    /// the login is encrypted) or `strict` (TDS 8).
    pub encrypt: EncryptionLevel,
    /// Accept a certificate no trusted authority signed (test servers).
    pub trust_server_certificate: bool,
}

impl std::fmt::Debug for SqlServerDsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerDsn")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "****" })
            .field("database", &self.database)
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .finish()
    }
}

impl SqlServerDsn {
    /// Parses the DSN. Errors name the field and never echo the DSN (it holds
    /// the password).
    pub fn parse(dsn: &str) -> Result<Self, DatasourceError> {
        let url = url::Url::parse(dsn).map_err(|_| {
            DatasourceError::invalid(DSN_FIELD, "is not a URL: use sqlserver://user:password@host:1433/database")
        })?;
        if !matches!(url.scheme(), "sqlserver" | "mssql") {
            return Err(DatasourceError::invalid(
                DSN_FIELD,
                format!("scheme '{}' is not SQL Server's: use sqlserver://", url.scheme()),
            ));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
            DatasourceError::invalid(DSN_FIELD, "has no host: use sqlserver://user:password@host:1433/database")
        })?;
        let bad = |part: &str| DatasourceError::invalid(DSN_FIELD, format!("the {part} is not valid percent-encoding"));
        let user = percent_decode(url.username()).ok_or_else(|| bad("user"))?;
        if user.is_empty() {
            return Err(DatasourceError::invalid(
                DSN_FIELD,
                "has no user: SQL Server logins need one (sqlserver://user:password@host/database)",
            ));
        }
        let password = percent_decode(url.password().unwrap_or("")).ok_or_else(|| bad("password"))?;
        let database = percent_decode(url.path().trim_start_matches('/')).ok_or_else(|| bad("database"))?;
        let mut out = Self {
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port: url.port().unwrap_or(DEFAULT_PORT),
            user,
            password,
            database,
            encrypt: EncryptionLevel::Required,
            trust_server_certificate: false,
        };
        for (k, v) in url.query_pairs() {
            match k.to_ascii_lowercase().as_str() {
                "encrypt" => {
                    out.encrypt = match v.to_ascii_lowercase().as_str() {
                        "true" | "yes" | "mandatory" => EncryptionLevel::Required,
                        "false" | "no" | "optional" => EncryptionLevel::Off,
                        "strict" => EncryptionLevel::Strict,
                        other => {
                            return Err(DatasourceError::invalid(
                                DSN_FIELD,
                                format!("encrypt={other} is not one of true, false, strict"),
                            ));
                        }
                    }
                }
                "trust_server_certificate" | "trustservercertificate" => {
                    out.trust_server_certificate = matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1");
                }
                "instance" => {
                    return Err(DatasourceError::invalid(
                        DSN_FIELD,
                        "named instances are not looked up: give the instance's TCP port instead (host:port)",
                    ));
                }
                other => {
                    return Err(DatasourceError::invalid(
                        DSN_FIELD,
                        format!("unknown option '{other}': the options are encrypt and trust_server_certificate"),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The client configuration: SQL login, read-only intent, encryption.
    fn config(&self, command_timeout: Duration) -> Config {
        let mut c = Config::new();
        c.host(&self.host);
        c.port(self.port);
        if !self.database.is_empty() {
            c.database(&self.database);
        }
        c.authentication(AuthMethod::sql_server(&self.user, &self.password));
        c.application_name("pulse");
        c.readonly(true);
        c.encryption(self.encrypt);
        if self.trust_server_certificate {
            c.trust_cert();
        }
        c.command_timeout(Some(command_timeout));
        c
    }
}

/// How a column's values are read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decode {
    Bool,
    Int,
    Float,
    Decimal(i8),
    Text,
    Uuid,
    /// `time`, as `HH:MM:SS[.fffffff]` text.
    Time,
    Bytes,
    Date,
    Timestamp,
    /// `datetimeoffset`, converted to UTC.
    TimestampTz,
    /// `money`/`smallmoney`: cast to `decimal(19,4)` in the SELECT.
    Money,
    /// CLR types (`geometry`, `geography`, `hierarchyid`): cast to
    /// `varbinary(max)` in the SELECT.
    Clr,
    /// `sql_variant`, native `json`: cast to `nvarchar(max)` in the SELECT.
    AsText,
}

#[derive(Debug, Clone)]
struct MsColumn {
    column: Column,
    decode: Decode,
}

impl MsColumn {
    fn select_expr(&self) -> String {
        let q = SqlServerDialect.quote(&self.column.name);
        match self.decode {
            Decode::Money => format!("CAST({q} AS decimal(19,4)) AS {q}"),
            Decode::Clr => format!("CAST({q} AS varbinary(max)) AS {q}"),
            Decode::AsText => format!("CAST({q} AS nvarchar(max)) AS {q}"),
            _ => q,
        }
    }

    fn decimal_scale(&self) -> Option<i8> {
        match self.decode {
            Decode::Decimal(s) => Some(s),
            Decode::Money => Some(4),
            _ => None,
        }
    }
}

/// Maps a catalog type name (`INFORMATION_SCHEMA.COLUMNS.DATA_TYPE`, or the
/// base of `system_type_name`) with its precision and scale.
fn map_type(name: &str, type_name: &str, precision: Option<u8>, scale: Option<u8>, nullable: bool) -> MsColumn {
    let t = type_name.to_ascii_lowercase();
    let (logical, decode, source) = match t.as_str() {
        "bit" => (DataType::Bool, Decode::Bool, t.clone()),
        "tinyint" | "smallint" | "int" | "bigint" => (DataType::Int, Decode::Int, t.clone()),
        "real" | "float" => (DataType::Float, Decode::Float, t.clone()),
        "decimal" | "numeric" => {
            let (p, s) = (precision.unwrap_or(18), scale.unwrap_or(0));
            (DataType::Decimal, Decode::Decimal(s as i8), format!("decimal({p},{s})"))
        }
        "money" => (DataType::Decimal, Decode::Money, "decimal(19,4)".into()),
        "smallmoney" => (DataType::Decimal, Decode::Money, "decimal(10,4)".into()),
        "date" => (DataType::Date, Decode::Date, t.clone()),
        "datetime" | "datetime2" | "smalldatetime" => (DataType::Timestamp, Decode::Timestamp, t.clone()),
        "datetimeoffset" => (DataType::Timestamp, Decode::TimestampTz, t.clone()),
        "time" => (DataType::String, Decode::Time, t.clone()),
        "uniqueidentifier" => (DataType::Uuid, Decode::Uuid, t.clone()),
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => (DataType::Binary, Decode::Bytes, t.clone()),
        "geometry" | "geography" | "hierarchyid" => (DataType::Binary, Decode::Clr, t.clone()),
        "sql_variant" => (DataType::String, Decode::AsText, t.clone()),
        "json" => (DataType::Json, Decode::AsText, t.clone()),
        _ => (DataType::String, Decode::Text, t.clone()),
    };
    MsColumn {
        column: Column {
            name: name.to_string(),
            data_type: logical as i32,
            source_type: source,
            nullable,
            primary_key: false,
        },
        decode,
    }
}

/// The source's view of one object.
#[derive(Debug, Clone)]
struct MsObject {
    kind: ObjectKind,
    columns: Vec<MsColumn>,
    primary_key: Vec<String>,
    estimated_rows: Option<u64>,
    estimated_bytes: Option<u64>,
}

impl MsObject {
    fn logical(&self) -> Schema {
        Schema { columns: self.columns.iter().map(|c| c.column.clone()).collect() }
    }

    fn column(&self, name: &str, field: &str) -> Result<&MsColumn, DatasourceError> {
        self.columns
            .iter()
            .find(|c| c.column.name == name)
            .ok_or_else(|| super::missing_column(field, name, self.columns.iter().map(|c| c.column.name.as_str())))
    }
}

/// An error's text with its server number (tiberius errors never hold the
/// password).
fn describe(e: &tiberius::error::Error) -> String {
    match e {
        tiberius::error::Error::Server(t) => format!("{} (error {}, state {})", t.message(), t.code(), t.state()),
        other => other.to_string(),
    }
}

fn server_code(e: &tiberius::error::Error) -> Option<u32> {
    match e {
        tiberius::error::Error::Server(t) => Some(t.code()),
        _ => None,
    }
}

/// Errors of a read: broken connections are transient, lock waits too.
fn read_error(endpoint: &str, e: &tiberius::error::Error) -> DatasourceError {
    match server_code(e) {
        None => DatasourceError::Unavailable(format!("SQL Server at {endpoint}: {}", describe(e))),
        Some(LOCK_TIMEOUT | DEADLOCK) => {
            DatasourceError::Unavailable(format!("SQL Server at {endpoint}: {}", describe(e)))
        }
        Some(INVALID_COLUMN | INVALID_OBJECT) => DatasourceError::SchemaChanged(describe(e)),
        Some(_) => DatasourceError::Source(describe(e)),
    }
}

/// Which write privileges a login has, from `(privilege, granted)` pairs.
fn write_privileges(flags: &[(&str, Option<i32>)]) -> Vec<String> {
    flags.iter().filter(|(_, v)| *v == Some(1)).map(|(n, _)| (*n).to_string()).collect()
}

const WRITE_PROBES: [&str; 8] = [
    "member of sysadmin",
    "member of db_owner",
    "member of db_datawriter",
    "member of db_ddladmin",
    "INSERT",
    "UPDATE",
    "DELETE",
    "ALTER",
];
const WRITE_PROBE_SQL: &str = "SELECT IS_SRVROLEMEMBER('sysadmin'), IS_ROLEMEMBER('db_owner'), \
     IS_ROLEMEMBER('db_datawriter'), IS_ROLEMEMBER('db_ddladmin'), \
     HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'INSERT'), HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'UPDATE'), \
     HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'DELETE'), HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'ALTER')";

fn int_cell(v: &ColumnData<'static>) -> Option<i64> {
    match v {
        ColumnData::U8(x) => x.map(i64::from),
        ColumnData::I16(x) => x.map(i64::from),
        ColumnData::I32(x) => x.map(i64::from),
        ColumnData::I64(x) => *x,
        ColumnData::Bit(x) => x.map(i64::from),
        ColumnData::Numeric(x) => x.map(|n| (n.value() / 10_i128.pow(u32::from(n.scale()))) as i64),
        _ => None,
    }
}

fn text_cell(v: &ColumnData<'static>) -> String {
    match v {
        ColumnData::String(Some(s)) => s.to_string(),
        other => int_cell(other).map(|i| i.to_string()).unwrap_or_default(),
    }
}

fn cell(row: &Row, i: usize) -> Option<&ColumnData<'static>> {
    row.cells().nth(i).map(|(_, v)| v)
}

fn type_error(col: &MsColumn, v: &ColumnData<'static>) -> DatasourceError {
    DatasourceError::SchemaChanged(format!(
        "column '{}' ({}) sent a value of another type ({v:?}); the column's type changed at the source",
        col.column.name, col.column.source_type
    ))
}

/// A numeric value rescaled to `scale` digits (exact when widening).
fn rescale(n: Numeric, scale: i8) -> Option<i128> {
    let from = i32::from(n.scale());
    let to = i32::from(scale);
    if to >= from {
        n.value().checked_mul(10_i128.checked_pow((to - from) as u32)?)
    } else {
        let div = 10_i128.checked_pow((from - to) as u32)?;
        let (q, r) = (n.value() / div, n.value() % div);
        // Half away from zero, as the other connectors round.
        Some(if r.abs() * 2 >= div { q + r.signum() } else { q })
    }
}

fn days(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

fn micros(v: &ColumnData<'static>, col: &MsColumn) -> Result<Option<i64>, DatasourceError> {
    let conv = |e: tiberius::error::Error| DatasourceError::Source(format!("column '{}': {e}", col.column.name));
    Ok(match v {
        // The datetime2 part of a datetimeoffset is UTC already. (tiberius'
        // `DateTime<Utc>` conversion applies the offset a second time.)
        ColumnData::DateTimeOffset(_) => {
            chrono::DateTime::<chrono::FixedOffset>::from_sql(v).map_err(conv)?.map(|d| d.timestamp_micros())
        }
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            NaiveDateTime::from_sql(v).map_err(conv)?.map(|d| d.and_utc().timestamp_micros())
        }
        ColumnData::Date(_) => NaiveDate::from_sql(v)
            .map_err(conv)?
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp_micros()),
        _ => return Err(type_error(col, v)),
    })
}

fn is_null(v: &ColumnData<'static>) -> bool {
    match v {
        ColumnData::U8(x) => x.is_none(),
        ColumnData::I16(x) => x.is_none(),
        ColumnData::I32(x) => x.is_none(),
        ColumnData::I64(x) => x.is_none(),
        ColumnData::F32(x) => x.is_none(),
        ColumnData::F64(x) => x.is_none(),
        ColumnData::Bit(x) => x.is_none(),
        ColumnData::String(x) => x.is_none(),
        ColumnData::Guid(x) => x.is_none(),
        ColumnData::Binary(x) => x.is_none(),
        ColumnData::Numeric(x) => x.is_none(),
        ColumnData::Xml(x) => x.is_none(),
        ColumnData::DateTime(x) => x.is_none(),
        ColumnData::SmallDateTime(x) => x.is_none(),
        ColumnData::Time(x) => x.is_none(),
        ColumnData::Date(x) => x.is_none(),
        ColumnData::DateTime2(x) => x.is_none(),
        ColumnData::DateTimeOffset(x) => x.is_none(),
    }
}

fn time_text(v: &ColumnData<'static>, col: &MsColumn) -> Result<String, DatasourceError> {
    let t =
        NaiveTime::from_sql(v).map_err(|e| DatasourceError::Source(format!("column '{}': {e}", col.column.name)))?;
    Ok(t.map(|t| t.format("%H:%M:%S%.f").to_string()).unwrap_or_default())
}

/// Appends one value to its column's builder.
fn append(b: &mut ColumnBuilder, v: &ColumnData<'static>, col: &MsColumn) -> Result<(), DatasourceError> {
    if is_null(v) {
        b.null();
        return Ok(());
    }
    match (b, v) {
        (ColumnBuilder::Bool(b), ColumnData::Bit(Some(x))) => b.append_value(*x),
        (
            ColumnBuilder::Int(b),
            v @ (ColumnData::U8(_) | ColumnData::I16(_) | ColumnData::I32(_) | ColumnData::I64(_)),
        ) => b.append_value(int_cell(v).unwrap_or_default()),
        (ColumnBuilder::Float(b), ColumnData::F32(Some(x))) => b.append_value(f64::from(*x)),
        (ColumnBuilder::Float(b), ColumnData::F64(Some(x))) => b.append_value(*x),
        (ColumnBuilder::Decimal(b), ColumnData::Numeric(Some(n))) => {
            let scale = col.decimal_scale().unwrap_or(0);
            b.append_value(rescale(*n, scale).ok_or_else(|| type_error(col, v))?)
        }
        (ColumnBuilder::Text(b), ColumnData::String(Some(s))) => b.append_value(s),
        (ColumnBuilder::Text(b), ColumnData::Guid(Some(u))) => b.append_value(u.to_string()),
        (ColumnBuilder::Text(b), ColumnData::Xml(Some(x))) => b.append_value(x.to_string()),
        (ColumnBuilder::Text(b), v @ ColumnData::Time(_)) => b.append_value(time_text(v, col)?),
        (ColumnBuilder::Bytes(b), ColumnData::Binary(Some(x))) => b.append_value(x),
        (ColumnBuilder::Date(b), v @ ColumnData::Date(_)) => {
            let d = NaiveDate::from_sql(v).map_err(|e| DatasourceError::Source(e.to_string()))?;
            b.append_option(d.map(days))
        }
        (ColumnBuilder::Timestamp(b), v) => b.append_option(micros(v, col)?),
        (_, v) => return Err(type_error(col, v)),
    }
    Ok(())
}

/// A value as a typed scalar (bounds, cursor maxima).
fn to_proto(v: &ColumnData<'static>, col: &MsColumn) -> Result<Value, DatasourceError> {
    if is_null(v) {
        return Ok(Value { kind: None });
    }
    let kind = match (col.decode, v) {
        (Decode::Bool, ColumnData::Bit(Some(x))) => Kind::BoolValue(*x),
        (Decode::Int, v) => Kind::IntValue(int_cell(v).ok_or_else(|| type_error(col, v))?),
        (Decode::Float, ColumnData::F32(Some(x))) => Kind::FloatValue(f64::from(*x)),
        (Decode::Float, ColumnData::F64(Some(x))) => Kind::FloatValue(*x),
        (Decode::Decimal(_) | Decode::Money, ColumnData::Numeric(Some(n))) => {
            let s = col.decimal_scale().unwrap_or(0);
            Kind::DecimalValue(i128_to_decimal_text(rescale(*n, s).ok_or_else(|| type_error(col, v))?, s))
        }
        (Decode::Uuid, ColumnData::Guid(Some(u))) => Kind::UuidValue(u.to_string()),
        (Decode::Date, v) => {
            let d = NaiveDate::from_sql(v).map_err(|e| DatasourceError::Source(e.to_string()))?;
            Kind::DateValue(d.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default())
        }
        (Decode::Timestamp | Decode::TimestampTz, v) => {
            Kind::TimestampValue(micros_to_proto(micros(v, col)?.ok_or_else(|| type_error(col, v))?))
        }
        (Decode::Time, v) => Kind::StringValue(time_text(v, col)?),
        (_, ColumnData::String(Some(s))) => Kind::StringValue(s.to_string()),
        (_, ColumnData::Binary(Some(b))) => Kind::BinaryValue(b.to_vec()),
        (_, v) => return Err(type_error(col, v)),
    };
    Ok(Value { kind: Some(kind) })
}

/// Turns rows into record batches of at most `batch_rows` rows.
struct BatchBuilder {
    schema: arrow::datatypes::SchemaRef,
    columns: Vec<MsColumn>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
}

impl BatchBuilder {
    fn new(schema: arrow::datatypes::SchemaRef, columns: Vec<MsColumn>, batch_rows: usize) -> Self {
        let builders =
            schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type(), batch_rows.min(65_536))).collect();
        Self { schema, columns, builders, rows: 0 }
    }

    fn push(&mut self, row: &Row) -> Result<(), DatasourceError> {
        if row.len() != self.builders.len() {
            return Err(DatasourceError::SchemaChanged(format!(
                "expected {} columns, the source sent {}",
                self.builders.len(),
                row.len()
            )));
        }
        for (((_, v), b), c) in row.cells().zip(&mut self.builders).zip(&self.columns) {
            append(b, v, c)?;
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

/// The connector for SQL Server and Azure SQL.
pub struct SqlServerConnector {
    settings: SqlSettings,
    dsn: SqlServerDsn,
}

impl std::fmt::Debug for SqlServerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerConnector").field("dsn", &self.dsn).field("settings", &self.settings).finish()
    }
}

impl SqlServerConnector {
    /// Parses the DSN; nothing connects until the first call.
    pub fn new(settings: SqlSettings) -> Result<Self, DatasourceError> {
        let dsn = SqlServerDsn::parse(&settings.dsn)?;
        Ok(Self { settings, dsn })
    }

    fn connect_timeout(&self) -> Duration {
        if self.settings.connect_timeout.is_zero() { Duration::from_secs(10) } else { self.settings.connect_timeout }
    }

    fn qualified(&self, object: &ObjectName) -> ObjectName {
        object.qualified(DEFAULT_SCHEMA)
    }

    fn source_sql(&self, object: &ObjectName) -> String {
        let stored = match object {
            ObjectName::Query(q) => self.settings.queries.get(q).map(String::as_str),
            _ => None,
        };
        sql::source(&SqlServerDialect, &self.qualified(object), stored)
    }

    /// A new connection (SQL Server connections are cheap next to the reads
    /// they serve; each read owns one, so dropping a read aborts it).
    async fn connect(&self, command_timeout: Duration) -> Result<Conn, tiberius::error::Error> {
        let config = self.dsn.config(command_timeout);
        let tcp = TcpStream::connect(config.get_addr()).await?;
        tcp.set_nodelay(true)?;
        Client::connect(config, tcp.compat_write()).await
    }

    async fn session(&self, statement_timeout: Duration) -> Result<Conn, DatasourceError> {
        let endpoint = self.dsn.endpoint();
        let timeout = self.connect_timeout();
        let mut conn = match tokio::time::timeout(timeout, self.connect(statement_timeout)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(DatasourceError::Unavailable(format!("SQL Server at {endpoint}: {}", describe(&e))));
            }
            Err(_) => {
                return Err(DatasourceError::Unavailable(format!(
                    "SQL Server at {endpoint}: no connection within {timeout:?}; check the host, port and firewall"
                )));
            }
        };
        conn.simple_query(format!("SET LOCK_TIMEOUT {LOCK_TIMEOUT_MS}; SET XACT_ABORT ON"))
            .await
            .map_err(|e| read_error(&endpoint, &e))?
            .into_results()
            .await
            .map_err(|e| read_error(&endpoint, &e))?;
        Ok(conn)
    }

    async fn rows(&self, conn: &mut Conn, sql: &str, params: &[Value]) -> Result<Vec<Row>, DatasourceError> {
        let q = query(sql.to_string(), params)?;
        let stream = q.query(conn).await.map_err(|e| read_error(&self.dsn.endpoint(), &e))?;
        stream.into_first_result().await.map_err(|e| read_error(&self.dsn.endpoint(), &e))
    }

    fn text(s: &str) -> Value {
        Value { kind: Some(Kind::StringValue(s.to_string())) }
    }

    /// Columns, key and statistics of an object.
    async fn describe(&self, conn: &mut Conn, object: &ObjectName) -> Result<MsObject, DatasourceError> {
        match self.qualified(object) {
            ObjectName::Table { schema, name } => {
                let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.into());
                let canonical = self.qualified(object).canonical();
                let key = [Self::text(&schema), Self::text(&name)];
                let tables = self
                    .rows(
                        conn,
                        "SELECT TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2",
                        &key,
                    )
                    .await?;
                let table = tables.first().ok_or(DatasourceError::ObjectMissing(canonical))?;
                let is_view = cell(table, 0).map(text_cell).is_some_and(|t| t.eq_ignore_ascii_case("VIEW"));
                let cols = self
                    .rows(
                        conn,
                        "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE \
                         FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 \
                         ORDER BY ORDINAL_POSITION",
                        &key,
                    )
                    .await?;
                let mut columns: Vec<MsColumn> = cols
                    .iter()
                    .map(|r| {
                        let num = |i| cell(r, i).and_then(int_cell).and_then(|v| u8::try_from(v).ok());
                        map_type(
                            &cell(r, 0).map(text_cell).unwrap_or_default(),
                            &cell(r, 1).map(text_cell).unwrap_or_default(),
                            num(2),
                            num(3),
                            cell(r, 4).map(text_cell).is_some_and(|t| t.eq_ignore_ascii_case("YES")),
                        )
                    })
                    .collect();
                let pk_rows = self
                    .rows(
                        conn,
                        "SELECT k.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS t \
                         JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE k ON k.CONSTRAINT_NAME = t.CONSTRAINT_NAME \
                         AND k.TABLE_SCHEMA = t.TABLE_SCHEMA AND k.TABLE_NAME = t.TABLE_NAME \
                         WHERE t.CONSTRAINT_TYPE = 'PRIMARY KEY' AND t.TABLE_SCHEMA = @P1 AND t.TABLE_NAME = @P2 \
                         ORDER BY k.ORDINAL_POSITION",
                        &key,
                    )
                    .await?;
                let primary_key: Vec<String> = pk_rows.iter().filter_map(|r| cell(r, 0).map(text_cell)).collect();
                for c in &mut columns {
                    c.column.primary_key = primary_key.contains(&c.column.name);
                }
                let (mut rows, mut bytes) = (None, None);
                if !is_view {
                    let id = format!("{}.{}", SqlServerDialect.quote(&schema), SqlServerDialect.quote(&name));
                    let stats = self
                        .rows(
                            conn,
                            "SELECT (SELECT SUM(rows) FROM sys.partitions WHERE object_id = OBJECT_ID(@P1) \
                             AND index_id IN (0, 1)), (SELECT SUM(a.total_pages) FROM sys.partitions p \
                             JOIN sys.allocation_units a ON a.container_id = p.partition_id \
                             WHERE p.object_id = OBJECT_ID(@P1)) * 8192",
                            &[Self::text(&id)],
                        )
                        .await
                        .unwrap_or_default();
                    if let Some(r) = stats.first() {
                        rows = cell(r, 0).and_then(int_cell).and_then(|v| u64::try_from(v).ok());
                        bytes = cell(r, 1).and_then(int_cell).and_then(|v| u64::try_from(v).ok());
                    }
                }
                Ok(MsObject {
                    kind: if is_view { ObjectKind::View } else { ObjectKind::Table },
                    columns,
                    primary_key: if is_view { Vec::new() } else { primary_key },
                    estimated_rows: rows,
                    estimated_bytes: bytes,
                })
            }
            ObjectName::Query(q) => {
                let sql =
                    self.settings.queries.get(&q).ok_or_else(|| DatasourceError::ObjectMissing(object.canonical()))?;
                let rows = self
                    .rows(
                        conn,
                        "SELECT name, system_type_name, is_nullable, precision, scale, error_message \
                         FROM sys.dm_exec_describe_first_result_set(@P1, NULL, 0) \
                         WHERE is_hidden = 0 ORDER BY column_ordinal",
                        &[Self::text(sql.trim().trim_end_matches(';'))],
                    )
                    .await?;
                if let Some(err) = rows.first().and_then(|r| cell(r, 5)).map(text_cell).filter(|m| !m.is_empty()) {
                    return Err(DatasourceError::Source(format!("stored query '{q}' cannot be described: {err}")));
                }
                let columns = rows
                    .iter()
                    .map(|r| {
                        let system = cell(r, 1).map(text_cell).unwrap_or_default();
                        let base = system.split('(').next().unwrap_or("").trim().to_string();
                        let num = |i| cell(r, i).and_then(int_cell).and_then(|v| u8::try_from(v).ok());
                        // Result metadata of a derived table does not promise
                        // non-null values.
                        map_type(&cell(r, 0).map(text_cell).unwrap_or_default(), &base, num(3), num(4), true)
                    })
                    .collect();
                Ok(MsObject {
                    kind: ObjectKind::StoredQuery,
                    columns,
                    primary_key: Vec::new(),
                    estimated_rows: None,
                    estimated_bytes: None,
                })
            }
            ObjectName::Path(_) => {
                Err(DatasourceError::invalid("object", "SQL Server objects are tables, views or stored queries"))
            }
        }
    }

    /// SNAPSHOT isolation when the database allows it, READ COMMITTED
    /// otherwise.
    async fn begin(&self, conn: &mut Conn) -> Result<(), DatasourceError> {
        let rows = self
            .rows(conn, "SELECT snapshot_isolation_state FROM sys.databases WHERE database_id = DB_ID()", &[])
            .await?;
        let snapshot = rows.first().and_then(|r| cell(r, 0)).and_then(int_cell) == Some(1);
        let level = if snapshot { "SNAPSHOT" } else { "READ COMMITTED" };
        let endpoint = self.dsn.endpoint();
        conn.simple_query(format!("SET TRANSACTION ISOLATION LEVEL {level}; BEGIN TRANSACTION"))
            .await
            .map_err(|e| read_error(&endpoint, &e))?
            .into_results()
            .await
            .map_err(|e| read_error(&endpoint, &e))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Connector for SqlServerConnector {
    async fn validate(&self, objects: &[ObjectName]) -> ValidationOutcome {
        let mut out = ValidationOutcome::default();
        let endpoint = self.dsn.endpoint();
        let skipped = |out: &mut ValidationOutcome, from: usize, started: Instant| {
            skip_rest(out, from, objects.iter().map(|o| self.qualified(o).canonical()), started)
        };
        let timeout = self.connect_timeout();

        let started = Instant::now();
        let hint =
            "is the host reachable from the Pulse server, and is SQL Server listening on that port (TCP/IP enabled)?";
        if !reachable(&mut out, &self.dsn.host, self.dsn.port, &endpoint, timeout, hint).await {
            skipped(&mut out, 1, started);
            return out;
        }

        let started = Instant::now();
        let mut conn = match tokio::time::timeout(timeout, self.connect(METADATA_TIMEOUT)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let message = match server_code(&e) {
                    Some(LOGIN_FAILED) => format!(
                        "the server refused the login: {}; check the user and password of the DSN (SQL Server \
                         authentication must be enabled)",
                        describe(&e)
                    ),
                    Some(CANNOT_OPEN_DATABASE) => format!(
                        "database '{}' does not exist or the login cannot open it: {}; check the database of the \
                         DSN and the login's user mapping",
                        self.dsn.database,
                        describe(&e)
                    ),
                    _ if matches!(e, tiberius::error::Error::Tls(_)) => format!(
                        "TLS failed: {}; use a certificate the server trusts, or trust_server_certificate=true for \
                         a test server",
                        describe(&e)
                    ),
                    _ => format!("could not log in to {endpoint}: {}", describe(&e)),
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
                        "{endpoint} accepted the connection but did not complete the login within {timeout:?}; is \
                         it a SQL Server?"
                    ),
                    started,
                ));
                skipped(&mut out, 2, started);
                return out;
            }
        };
        out.authenticated = true;
        let version = self
            .rows(
                &mut conn,
                "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), \
                 CAST(SERVERPROPERTY('Edition') AS nvarchar(128))",
                &[],
            )
            .await
            .unwrap_or_default();
        if let Some(r) = version.first() {
            out.server_version = format!(
                "SQL Server {} ({})",
                cell(r, 0).map(text_cell).unwrap_or_default(),
                cell(r, 1).map(text_cell).unwrap_or_default()
            );
        }
        out.checks.push(check("authenticated", CheckStatus::Passed, "", started));

        let started = Instant::now();
        match self.rows(&mut conn, WRITE_PROBE_SQL, &[]).await {
            Ok(rows) => {
                let flags: Vec<(&str, Option<i32>)> = WRITE_PROBES
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (*n, rows.first().and_then(|r| cell(r, i)).and_then(int_cell).map(|v| v as i32)))
                    .collect();
                let writes = write_privileges(&flags);
                out.read_only = writes.is_empty();
                out.checks.push(if writes.is_empty() {
                    check("read_only", CheckStatus::Passed, "", started)
                } else {
                    check(
                        "read_only",
                        CheckStatus::Warning,
                        format!(
                            "login '{}' can write: {}. Pulse only sends SELECTs, but a login with only SELECT (e.g. \
                             db_datareader) is safer",
                            self.dsn.user,
                            writes.join(", ")
                        ),
                        started,
                    )
                });
            }
            Err(e) => out.checks.push(check(
                "read_only",
                CheckStatus::Warning,
                format!("could not read the login's permissions ({e}); make sure it has SELECT only"),
                started,
            )),
        }

        for o in objects {
            let started = Instant::now();
            let name = format!("object:{}", self.qualified(o).canonical());
            let result = match self.describe(&mut conn, o).await {
                Ok(_) => {
                    let probe = format!("SELECT TOP (0) 1 AS pulse_probe FROM {}", self.source_sql(o));
                    self.rows(&mut conn, &probe, &[]).await.map(|_| ())
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
                            "does not exist, or login '{}' cannot see it; check the name and the login's grants",
                            self.dsn.user
                        ),
                    },
                    started,
                ),
                Err(e) => check(
                    &name,
                    CheckStatus::Failed,
                    format!("cannot be read: {e}; check the name and that the login has SELECT on it"),
                    started,
                ),
            });
        }
        let _ = conn.close().await;
        out
    }

    async fn list_objects(&self, schemas: &[String]) -> Result<Vec<ObjectName>, DatasourceError> {
        if schemas.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.session(METADATA_TIMEOUT).await?;
        let marks: Vec<String> = (1..=schemas.len()).map(|i| format!("@P{i}")).collect();
        let params: Vec<Value> = schemas.iter().map(|s| Self::text(s)).collect();
        let rows = self
            .rows(
                &mut conn,
                &format!(
                    "SELECT TABLE_SCHEMA, TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA IN ({}) \
                     ORDER BY TABLE_SCHEMA, TABLE_NAME",
                    marks.join(", ")
                ),
                &params,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let (schema, name) = (cell(r, 0).map(text_cell)?, cell(r, 1).map(text_cell)?);
                // Names outside the identifier grammar cannot be requested.
                crate::names::check_identifier("", &name).ok()?;
                Some(ObjectName::Table { schema: Some(schema), name })
            })
            .collect())
    }

    async fn inspect(&self, object: &ObjectName) -> Result<ObjectSchema, DatasourceError> {
        let mut conn = self.session(METADATA_TIMEOUT).await?;
        let obj = self.describe(&mut conn, object).await?;
        Ok(ObjectSchema {
            object: self.qualified(object).canonical(),
            kind: obj.kind as i32,
            schema: Some(obj.logical()),
            primary_key: obj.primary_key,
            estimated_rows: obj.estimated_rows,
            comment: String::new(),
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
        let mut conn = self.session(timeout.max(METADATA_TIMEOUT)).await?;
        let obj = self.describe(&mut conn, object).await?;
        if !exact
            && cursor.is_none()
            && let Some(rows) = obj.estimated_rows
        {
            return Ok(ObjectSize {
                object: canonical,
                rows,
                bytes: obj.estimated_bytes.unwrap_or(0),
                exact: false,
                method: "sys.partitions".into(),
                cursor_max: None,
            });
        }
        let cursor_col = match cursor {
            Some(w) => Some(obj.column(&w.field, "cursor_field")?.clone()),
            None => None,
        };
        // count_big: count(*) overflows past 2^31 rows in SQL Server.
        let st = sql::count_and_max(&SqlServerDialect, &self.source_sql(object), cursor);
        let sql_text = st.sql.replacen("SELECT count(*)", "SELECT count_big(*)", 1);
        let rows = self.rows(&mut conn, &sql_text, &st.params).await?;
        let row = rows.first().ok_or_else(|| DatasourceError::Source("count_big(*) answered no row".into()))?;
        let cursor_max = match (&cursor_col, cell(row, 1)) {
            (Some(c), Some(v)) => Some(to_proto(v, c)?),
            _ => None,
        };
        Ok(ObjectSize {
            object: canonical,
            rows: cell(row, 0).and_then(int_cell).and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
            bytes: 0,
            exact: true,
            method: "count_big(*)".into(),
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
        let mut conn = self.session(METADATA_TIMEOUT.max(self.settings.statement_timeout)).await?;
        let obj = self.describe(&mut conn, object).await?;
        let col = obj.column(column, "column")?.clone();
        let from = self.source_sql(object);
        let st = sql::min_max(&SqlServerDialect, &from, column, cursor);
        let rows = self.rows(&mut conn, &st.sql, &st.params).await?;
        let Some(row) = rows.first() else { return Ok(ColumnBounds::default()) };
        let (Some(lo), Some(hi)) = (cell(row, 0), cell(row, 1)) else { return Ok(ColumnBounds::default()) };
        let (min, max) = (to_proto(lo, &col)?, to_proto(hi, &col)?);
        if min.kind.is_none() || max.kind.is_none() {
            return Ok(ColumnBounds::default());
        }
        let mut candidates = Vec::new();
        if count > 1 {
            let large = obj.estimated_rows.is_some_and(|n| n > QUANTILE_ROW_LIMIT);
            match large.then(|| even_splits(&min, &max, count, col.decimal_scale())).flatten() {
                Some(v) => candidates = v,
                None => {
                    let st = sql::ntile_starts(&SqlServerDialect, &from, column, count, cursor);
                    for r in self.rows(&mut conn, &st.sql, &st.params).await? {
                        if let Some(v) = cell(&r, 0) {
                            candidates.push(to_proto(v, &col)?);
                        }
                    }
                }
            }
        }
        let splits = ordered_splits(candidates, &min, &max);
        let _ = conn.close().await;
        Ok(ColumnBounds { min: Some(min), max: Some(max), splits })
    }

    async fn stream(&self, object: &ObjectName, spec: ReadSpec) -> Result<BatchStream, DatasourceError> {
        let mut conn = self.session(spec.statement_timeout).await?;
        let obj = self.describe(&mut conn, object).await?;
        let wanted = project(&obj.logical(), &spec.columns, "columns")?;
        let cols: Vec<MsColumn> = wanted
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
        let select_list: Vec<String> = cols.iter().map(MsColumn::select_expr).collect();
        let st = sql::select(&SqlServerDialect, &self.source_sql(object), &select_list, &spec);
        let q = query(st.sql, &st.params)?;
        self.begin(&mut conn).await?;
        let schema = arrow_schema(&wanted);
        let batch_rows = spec.batch_rows.max(1);
        let timeout = spec.statement_timeout;
        let endpoint = self.dsn.endpoint();
        let stream = async_stream::try_stream! {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut batches = BatchBuilder::new(schema.clone(), cols, batch_rows);
            let mut failure = None;
            {
                let result = q.query(&mut conn).await.map_err(|e| read_error(&endpoint, &e))?;
                let mut rows = result.into_row_stream();
                loop {
                    let next = match tokio::time::timeout_at(deadline, rows.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            failure = Some(DatasourceError::Source(format!(
                                "the read ran longer than its statement timeout ({timeout:?}) and was stopped; read \
                                 less per statement (parallel ranges, a cursor window) or raise the timeout"
                            )));
                            break;
                        }
                    };
                    let Some(row) = next else { break };
                    if let Err(e) = row.map_err(|e| read_error(&endpoint, &e)).and_then(|r| batches.push(&r)) {
                        failure = Some(e);
                        break;
                    }
                    if batches.rows >= batch_rows {
                        yield batches.flush()?;
                    }
                }
            }
            match failure {
                // Dropping the connection ends the transaction and makes the
                // server abort the statement.
                Some(e) => {
                    drop(conn);
                    Err(e)?;
                }
                None => {
                    if batches.rows > 0 {
                        yield batches.flush()?;
                    }
                    conn.simple_query("COMMIT TRANSACTION")
                        .await
                        .map_err(|e| read_error(&endpoint, &e))?
                        .into_results()
                        .await
                        .map_err(|e| read_error(&endpoint, &e))?;
                    let _ = conn.close().await;
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::connector::RangeFilter;
    use crate::connector::test_support::{settings, v};
    use crate::connector::values::arrow_schema;

    #[test]
    fn identifiers_are_bracket_quoted() {
        assert_eq!(SqlServerDialect.quote("order"), "[order]");
        assert_eq!(SqlServerDialect.quote("a]b"), "[a]]b]");
        let from = sql::source(
            &SqlServerDialect,
            &ObjectName::Table { schema: Some("sales".into()), name: "orders".into() },
            None,
        );
        assert_eq!(from, "[sales].[orders]");
    }

    #[test]
    fn reads_bind_every_value_and_limit_with_top_or_fetch() {
        let spec = ReadSpec {
            cursor: Some(CursorWindow {
                field: "updated".into(),
                after: Some(v(Kind::IntValue(5))),
                until: Some(v(Kind::IntValue(9))),
            }),
            range: Some(RangeFilter {
                column: "id".into(),
                lower: Some(v(Kind::IntValue(0))),
                upper: None,
                include_nulls: false,
            }),
            order_by: vec!["id".into()],
            after_key: vec![v(Kind::IntValue(3))],
            limit: Some(10),
            ..Default::default()
        };
        let st = sql::select(&SqlServerDialect, "[dbo].[t]", &["[id]".into()], &spec);
        assert_eq!(
            st.sql,
            "SELECT [id] FROM [dbo].[t] WHERE [updated] > @P1 AND [updated] <= @P2 AND ([id] >= @P3) AND \
             (([id] > @P4)) ORDER BY [id] ASC OFFSET 0 ROWS FETCH NEXT 10 ROWS ONLY"
        );
        assert_eq!(st.params.len(), 4);
        let unordered = ReadSpec { limit: Some(3), ..Default::default() };
        let st = sql::select(&SqlServerDialect, "[dbo].[t]", &["[id]".into()], &unordered);
        assert_eq!(st.sql, "SELECT TOP (3) [id] FROM [dbo].[t]");
        // Every value kind binds; a decimal that is not one is refused.
        for kind in [
            Kind::BoolValue(true),
            Kind::IntValue(1),
            Kind::FloatValue(1.5),
            Kind::DecimalValue("-12.345".into()),
            Kind::StringValue("x".into()),
            Kind::DateValue("2024-02-29".into()),
            Kind::TimestampValue(micros_to_proto(1_700_000_000_000_000)),
            Kind::BinaryValue(vec![1, 2]),
        ] {
            assert!(query("SELECT @P1", &[v(kind.clone())]).is_ok(), "{kind:?}");
        }
        assert!(query("SELECT @P1", &[v(Kind::DecimalValue("1e5".into()))]).is_err());
        assert!(query("SELECT @P1", &[v(Kind::DateValue("2024-02-30".into()))]).is_err());
    }

    #[test]
    fn dsns_parse_without_leaking_the_password() {
        let d = SqlServerDsn::parse(
            "sqlserver://reader:p%40ss@db.internal:14330/sales?encrypt=false&trust_server_certificate=true",
        )
        .unwrap();
        assert_eq!((d.host.as_str(), d.port, d.user.as_str()), ("db.internal", 14330, "reader"));
        assert_eq!((d.password.as_str(), d.database.as_str()), ("p@ss", "sales"));
        assert_eq!(d.encrypt, EncryptionLevel::Off);
        assert!(d.trust_server_certificate);
        assert!(!format!("{d:?}").contains("p@ss"));
        let d = SqlServerDsn::parse("mssql://sa:x@127.0.0.1/master").unwrap();
        assert_eq!((d.port, d.encrypt), (DEFAULT_PORT, EncryptionLevel::Required));

        for (dsn, needle) in [
            ("postgres://u:secret@h/db", "scheme"),
            ("sqlserver://h/db", "no user"),
            ("sqlserver://u:secret@h/db?encrypt=maybe", "encrypt=maybe"),
            ("sqlserver://u:secret@h/db?instance=SQLEXPRESS", "TCP port"),
            ("sqlserver://u:secret@h/db?bogus=1", "unknown option"),
            ("not a url secret", "not a URL"),
        ] {
            let e = SqlServerDsn::parse(dsn).unwrap_err().to_string();
            assert!(e.contains(needle), "{dsn}: {e}");
            assert!(e.contains(DSN_FIELD), "{e}");
            assert!(!e.contains("secret"), "the error echoes the password: {e}");
        }
        let c = SqlServerConnector::new(settings("sqlserver://u:topsecret@h/db")).unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn catalog_types_map_to_logical_types() {
        let cases = [
            ("bit", DataType::Bool, Decode::Bool),
            ("bigint", DataType::Int, Decode::Int),
            ("tinyint", DataType::Int, Decode::Int),
            ("float", DataType::Float, Decode::Float),
            ("decimal", DataType::Decimal, Decode::Decimal(2)),
            ("money", DataType::Decimal, Decode::Money),
            ("datetime2", DataType::Timestamp, Decode::Timestamp),
            ("datetimeoffset", DataType::Timestamp, Decode::TimestampTz),
            ("date", DataType::Date, Decode::Date),
            ("time", DataType::String, Decode::Time),
            ("uniqueidentifier", DataType::Uuid, Decode::Uuid),
            ("nvarchar", DataType::String, Decode::Text),
            ("varbinary", DataType::Binary, Decode::Bytes),
            ("geography", DataType::Binary, Decode::Clr),
            ("json", DataType::Json, Decode::AsText),
        ];
        for (t, logical, decode) in cases {
            let c = map_type("c", t, Some(10), Some(2), true);
            assert_eq!((c.column.data_type, c.decode), (logical as i32, decode), "{t}");
        }
        assert_eq!(map_type("c", "numeric", Some(12), Some(3), false).column.source_type, "decimal(12,3)");
        assert_eq!(map_type("m", "money", None, None, false).select_expr(), "CAST([m] AS decimal(19,4)) AS [m]");
        assert_eq!(map_type("g", "geometry", None, None, false).select_expr(), "CAST([g] AS varbinary(max)) AS [g]");
    }

    #[test]
    fn values_decode_into_arrow() {
        let cols = vec![
            map_type("b", "bit", None, None, true),
            map_type("i", "int", None, None, true),
            map_type("f", "real", None, None, true),
            map_type("d", "decimal", Some(10), Some(3), true),
            map_type("s", "nvarchar", None, None, true),
            map_type("u", "uniqueidentifier", None, None, true),
            map_type("dt", "date", None, None, true),
            map_type("ts", "datetime2", None, None, true),
            map_type("bin", "varbinary", None, None, true),
        ];
        let logical = Schema { columns: cols.iter().map(|c| c.column.clone()).collect() };
        let schema = arrow_schema(&logical);
        let mut b = BatchBuilder::new(schema, cols.clone(), 4);
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let ts = date.and_hms_micro_opt(12, 30, 0, 250).unwrap();
        let uuid = tiberius::Uuid::parse_str("6f1c2b4e-0d7a-4c55-9e1a-2b3c4d5e6f70").unwrap();
        let full = [
            ColumnData::Bit(Some(true)),
            ColumnData::I32(Some(-7)),
            ColumnData::F32(Some(1.5)),
            // 12.5 with scale 1 widens exactly to scale 3.
            ColumnData::Numeric(Some(Numeric::new_with_scale(125, 1))),
            ColumnData::String(Some(Cow::Borrowed("héllo"))),
            ColumnData::Guid(Some(uuid)),
            tiberius::IntoSql::into_sql(date),
            tiberius::IntoSql::into_sql(ts),
            ColumnData::Binary(Some(Cow::Owned(vec![0, 255]))),
        ];
        let nulls = [
            ColumnData::Bit(None),
            ColumnData::I32(None),
            ColumnData::F32(None),
            ColumnData::Numeric(None),
            ColumnData::String(None),
            ColumnData::Guid(None),
            ColumnData::Date(None),
            ColumnData::DateTime2(None),
            ColumnData::Binary(None),
        ];
        for values in [&full, &nulls] {
            for ((v, builder), c) in values.iter().zip(&mut b.builders).zip(&cols) {
                append(builder, v, c).unwrap();
            }
            b.rows += 1;
        }
        let batch = b.flush().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let values: Vec<Value> =
            (0..batch.num_columns()).map(|i| crate::connector::values::value_at(batch.column(i).as_ref(), 0)).collect();
        assert_eq!(values[0], v(Kind::BoolValue(true)));
        assert_eq!(values[1], v(Kind::IntValue(-7)));
        assert_eq!(values[2], v(Kind::FloatValue(1.5)));
        assert_eq!(values[3], v(Kind::DecimalValue("12.500".into())));
        assert_eq!(values[4], v(Kind::StringValue("héllo".into())));
        assert_eq!(values[5], v(Kind::StringValue("6f1c2b4e-0d7a-4c55-9e1a-2b3c4d5e6f70".into())));
        assert_eq!(values[6], v(Kind::DateValue("2024-02-29".into())));
        assert_eq!(values[7], v(Kind::TimestampValue(micros_to_proto(ts.and_utc().timestamp_micros()))));
        assert_eq!(values[8], v(Kind::BinaryValue(vec![0, 255])));
        for i in 0..batch.num_columns() {
            assert!(batch.column(i).is_null(1), "column {i} should be null");
        }
        // A value of another type than the column's is a schema change.
        let mut builder = ColumnBuilder::new(&arrow::datatypes::DataType::Int64, 1);
        let e = append(&mut builder, &ColumnData::String(Some(Cow::Borrowed("x"))), &cols[1]).unwrap_err();
        assert!(matches!(e, DatasourceError::SchemaChanged(_)), "{e}");
    }

    #[test]
    fn decimals_rescale_and_bounds_convert() {
        assert_eq!(rescale(Numeric::new_with_scale(125, 1), 3), Some(12_500));
        assert_eq!(rescale(Numeric::new_with_scale(12_345, 3), 2), Some(1_235));
        assert_eq!(rescale(Numeric::new_with_scale(-12_345, 3), 2), Some(-1_235));
        let money = map_type("m", "money", None, None, false);
        let got = to_proto(&ColumnData::Numeric(Some(Numeric::new_with_scale(19_990_000, 4))), &money).unwrap();
        assert_eq!(got, v(Kind::DecimalValue("1999.0000".into())));
        let ts = map_type("t", "datetimeoffset", None, None, false);
        let at = chrono::DateTime::parse_from_rfc3339("2024-01-01T10:00:00+02:00").unwrap();
        let got = to_proto(&tiberius::IntoSql::into_sql(at), &ts).unwrap();
        let utc = chrono::DateTime::parse_from_rfc3339("2024-01-01T08:00:00Z").unwrap().timestamp_micros();
        assert_eq!(got, v(Kind::TimestampValue(micros_to_proto(utc))));
        assert_eq!(to_proto(&ColumnData::I64(None), &ts).unwrap(), Value { kind: None });
    }

    #[test]
    fn write_privileges_are_named() {
        let flags = [("member of db_owner", Some(1)), ("INSERT", Some(1)), ("UPDATE", Some(0)), ("DELETE", None)];
        assert_eq!(write_privileges(&flags), vec!["member of db_owner".to_string(), "INSERT".to_string()]);
        assert!(write_privileges(&[("INSERT", Some(0))]).is_empty());
        let probes = ["IS_SRVROLEMEMBER(", "IS_ROLEMEMBER(", "HAS_PERMS_BY_NAME("]
            .iter()
            .map(|f| WRITE_PROBE_SQL.matches(f).count())
            .sum::<usize>();
        assert_eq!(WRITE_PROBES.len(), probes, "one name per probed privilege");
    }
}
