//! Connectors: one interface over every kind of source. A connector is built
//! from a decrypted connection spec, checks and describes allowlisted objects,
//! and streams them as Arrow record batches in a read-only transaction.
//!
//! Connectors never see user text as SQL: object and column names arrive
//! parsed and validated ([`ObjectName`], [`crate::names::check_identifier`]),
//! are quoted by the connector's dialect, and values become bind parameters or
//! typed, escaped literals.

pub mod files;
pub mod mysql;
pub mod postgres;
pub mod sql;
pub mod sqlserver;
pub mod values;

use std::pin::Pin;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::Stream;
use pulse_proto::common::v1::Schema;
use pulse_proto::datasource::v1::{Check, ObjectSchema, ObjectSize, Value};

use crate::error::DatasourceError;
pub use crate::names::ObjectName;

/// Arrow batches of one object, in the order the read asked for.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, DatasourceError>> + Send>>;

/// Upper bound for validate, inspect and estimate statements.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// The cursor window of an incremental read: `after < field <= until`.
/// With both bounds unset every row is read, null cursors included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CursorWindow {
    pub field: String,
    pub after: Option<Value>,
    pub until: Option<Value>,
}

/// A parallel slice: `lower <= column < upper`, plus the column's nulls when
/// `include_nulls`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeFilter {
    pub column: String,
    pub lower: Option<Value>,
    pub upper: Option<Value>,
    pub include_nulls: bool,
}

/// One read of one object. Every column name in it has been checked against
/// the object's schema before a connector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSpec {
    /// Empty reads every column, in the object's order.
    pub columns: Vec<String>,
    pub cursor: Option<CursorWindow>,
    pub range: Option<RangeFilter>,
    /// Rows sorted by these columns, ascending, nulls first.
    pub order_by: Vec<String>,
    /// Keyset resume point: rows whose `order_by` tuple sorts strictly after.
    pub after_key: Vec<Value>,
    /// Rows per batch (the last one may be shorter).
    pub batch_rows: usize,
    pub limit: Option<u64>,
    pub statement_timeout: Duration,
}

impl Default for ReadSpec {
    fn default() -> Self {
        Self {
            columns: Vec::new(),
            cursor: None,
            range: None,
            order_by: Vec::new(),
            after_key: Vec::new(),
            batch_rows: 65_536,
            limit: None,
            statement_timeout: Duration::from_secs(3600),
        }
    }
}

/// What `validate` found, check by check (the gRPC answer's shape).
#[derive(Debug, Clone, Default)]
pub struct ValidationOutcome {
    pub reachable: bool,
    pub authenticated: bool,
    pub read_only: bool,
    pub server_version: String,
    /// reachable, authenticated, read_only, then one per object.
    pub checks: Vec<Check>,
}

/// The interface every source kind implements. Objects passed in are already
/// allowlisted; connectors still quote every identifier.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Connects and checks reachability, authentication, whether the role can
    /// write (a warning), and that each object exists and is readable.
    /// Failures are checks with their cause, never errors, never secrets.
    async fn validate(&self, objects: &[ObjectName]) -> ValidationOutcome;

    /// Tables and views of these schemas (for allowlists that name schemas),
    /// or the files matching these path globs (object storage).
    async fn list_objects(&self, schemas_or_globs: &[String]) -> Result<Vec<ObjectName>, DatasourceError>;

    /// Columns, types, nullability, primary key and estimated rows. An object
    /// that does not exist is `DatasourceError::ObjectMissing`.
    async fn inspect(&self, object: &ObjectName) -> Result<ObjectSchema, DatasourceError>;

    /// Rows and bytes: catalog statistics unless `exact` or a cursor window is
    /// given (then counted). With a cursor window, `cursor_max` is set.
    async fn estimate(
        &self,
        object: &ObjectName,
        exact: bool,
        cursor: Option<&CursorWindow>,
    ) -> Result<ObjectSize, DatasourceError>;

    /// Minimum and maximum of `column` over rows inside `cursor` (unset when
    /// the object has no non-null value), and the `count + 1` boundaries that
    /// split those rows into `count` ranges of about equal size (first and
    /// last are the min and max).
    async fn column_bounds(
        &self,
        object: &ObjectName,
        column: &str,
        count: u32,
        cursor: Option<&CursorWindow>,
    ) -> Result<ColumnBounds, DatasourceError>;

    /// Streams the rows as Arrow batches with bounded memory. The stream's
    /// schema is `schema_of(inspect(object), spec.columns)`.
    async fn stream(&self, object: &ObjectName, spec: ReadSpec) -> Result<BatchStream, DatasourceError>;
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnBounds {
    pub min: Option<Value>,
    pub max: Option<Value>,
    /// Interior split points, ascending, at most `count - 1`.
    pub splits: Vec<Value>,
}

/// The logical schema restricted to `columns` (all when empty), in the
/// requested order. Unknown names are INVALID_ARGUMENT naming the field.
pub fn project(schema: &Schema, columns: &[String], field: &str) -> Result<Schema, DatasourceError> {
    if columns.is_empty() {
        return Ok(schema.clone());
    }
    let mut out = Vec::with_capacity(columns.len());
    for (i, name) in columns.iter().enumerate() {
        let Some(col) = schema.columns.iter().find(|c| &c.name == name) else {
            return Err(missing_column(&format!("{field}[{i}]"), name, schema.columns.iter().map(|c| c.name.as_str())));
        };
        if out.iter().any(|c: &pulse_proto::common::v1::Column| &c.name == name) {
            return Err(DatasourceError::invalid(format!("{field}[{i}]"), format!("column '{name}' is listed twice")));
        }
        out.push(col.clone());
    }
    Ok(Schema { columns: out })
}

/// Percent-decoding of a URL part (user names and passwords in DSNs).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Marks the checks after a failed one as skipped: the connection checks
/// from `from` on (0 reachable, 1 authenticated, 2 read_only) and every
/// object (named as given).
pub(crate) fn skip_rest(
    out: &mut ValidationOutcome,
    from: usize,
    objects: impl IntoIterator<Item = String>,
    started: std::time::Instant,
) {
    use pulse_proto::datasource::v1::CheckStatus;
    for name in &["reachable", "authenticated", "read_only"][from.min(3)..] {
        out.checks.push(check(name, CheckStatus::Skipped, "not tried: an earlier check failed", started));
    }
    for o in objects {
        out.checks.push(check(
            &format!("object:{o}"),
            CheckStatus::Skipped,
            "not tried: an earlier check failed",
            started,
        ));
    }
}

/// The `reachable` check: a TCP connection to `host:port` within `timeout`.
/// Pushes the check and answers whether it passed; `hint` ends the failure
/// message (what to check at the source).
pub(crate) async fn reachable(
    out: &mut ValidationOutcome,
    host: &str,
    port: u16,
    endpoint: &str,
    timeout: Duration,
    hint: &str,
) -> bool {
    use pulse_proto::datasource::v1::CheckStatus;
    let started = std::time::Instant::now();
    let (status, message) = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => (CheckStatus::Passed, String::new()),
        Ok(Err(e)) => (CheckStatus::Failed, format!("cannot connect to {endpoint}: {e}; {hint}")),
        Err(_) => (
            CheckStatus::Failed,
            format!("no answer from {endpoint} within {timeout:?}; check the host, port and firewall"),
        ),
    };
    out.reachable = status == CheckStatus::Passed;
    out.checks.push(check("reachable", status, message, started));
    out.reachable
}

/// One validation check, timed from `started`.
pub(crate) fn check(
    name: &str,
    status: pulse_proto::datasource::v1::CheckStatus,
    message: impl Into<String>,
    started: std::time::Instant,
) -> Check {
    Check {
        name: name.to_string(),
        status: status as i32,
        message: message.into(),
        latency: prost_types::Duration::try_from(started.elapsed()).ok(),
    }
}

/// Checks a single column name against the schema.
pub fn require_column<'a>(
    schema: &'a Schema,
    name: &str,
    field: &str,
) -> Result<&'a pulse_proto::common::v1::Column, DatasourceError> {
    schema
        .columns
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| missing_column(field, name, schema.columns.iter().map(|c| c.name.as_str())))
}

/// INVALID_ARGUMENT for a column the object does not have, listing those it has.
pub(crate) fn missing_column<'a>(field: &str, name: &str, columns: impl Iterator<Item = &'a str>) -> DatasourceError {
    DatasourceError::invalid(
        field,
        format!("column '{name}' does not exist; the object has {}", columns.collect::<Vec<_>>().join(", ")),
    )
}

/// Settings of a SQL connector, decrypted (they hold the password: never log
/// them; `Debug` redacts the DSN).
#[derive(Clone)]
pub struct SqlSettings {
    /// The URL with the password applied.
    pub dsn: String,
    pub connect_timeout: Duration,
    /// Per statement of a read.
    pub statement_timeout: Duration,
    pub max_connections: u32,
    /// Stored queries of the allowlist, by name.
    pub queries: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for SqlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSettings")
            .field("dsn", &crate::secret::redact_dsn(&self.dsn))
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// Settings of the object-storage connector, decrypted.
#[derive(Clone, Default)]
pub struct FileSettings {
    /// `s3://bucket/prefix/` or `file:///abs/dir/`.
    pub uri: String,
    pub format: pulse_proto::datasource::v1::FileFormat,
    pub csv: pulse_proto::datasource::v1::CsvOptions,
    pub endpoint: String,
    pub region: String,
    pub force_path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl std::fmt::Debug for FileSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSettings")
            .field("uri", &self.uri)
            .field("format", &self.format)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Helpers shared by the connectors' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    use pulse_proto::datasource::v1::Value;
    use pulse_proto::datasource::v1::value::Kind;

    use super::SqlSettings;

    pub fn v(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    pub fn settings(dsn: &str) -> SqlSettings {
        SqlSettings {
            dsn: dsn.into(),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(60),
            max_connections: 2,
            queries: Default::default(),
        }
    }
}
