//! Object storage: Parquet and CSV files under a local `file://` directory or
//! an S3 prefix, so a notebook user can snapshot a CSV with no database. A
//! path names one file or a glob; the matched files, in path order, form one
//! table and must share a schema. Local directories must lie under one of the
//! server's `file_roots`; paths never leave the datasource's directory.
//!
//! Reads without `order_by` stream file by file (bounded memory). With
//! `order_by` (keyset resume, ordered snapshots) the object is sorted in
//! memory, refused above [`MAX_SORT_BYTES`] of files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray, new_null_array};
use arrow::compute::kernels::cmp;
use arrow::datatypes::{DataType as ArrowType, SchemaRef};
use arrow::record_batch::RecordBatch;
use globset::GlobBuilder;
use pulse_proto::common::v1::Schema;
use pulse_proto::datasource::v1::value::Kind;
use pulse_proto::datasource::v1::{CheckStatus, FileFormat, ObjectKind, ObjectSchema, ObjectSize, Value};

use super::check;
use super::values::{arrow_schema, canonical_batch, compare_values, logical_schema, proto_to_micros, value_at};
use super::{BatchStream, ColumnBounds, Connector, CursorWindow, FileSettings, ReadSpec, ValidationOutcome, project};
use crate::error::DatasourceError;
use crate::names::ObjectName;

/// Files sorted in memory for an ordered read may total at most this much.
pub const MAX_SORT_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone)]
enum Root {
    Local(PathBuf),
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String, endpoint: String },
}

#[derive(Debug, Clone)]
pub struct FileConnector {
    settings: FileSettings,
    root: Root,
}

/// One matched file.
#[derive(Debug, Clone)]
struct FileRef {
    /// Relative to the datasource URI.
    path: String,
    size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Parquet,
    Csv,
}

/// Where object-storage datasources may read: local directories under the
/// server's `file_roots`, and S3 buckets either with the datasource's own
/// keys or, for the buckets an operator listed in `s3_ambient_buckets`, with
/// the server's credentials. The bucket holding Pulse's own objects is never
/// a source: a tenant could otherwise read other tenants' snapshots.
#[derive(Debug, Clone, Default)]
pub struct ReadScope {
    pub file_roots: Vec<PathBuf>,
    pub ambient_s3_buckets: Vec<String>,
    pub reserved_bucket: Option<String>,
}

impl ReadScope {
    /// Local directories only (tests, tools).
    pub fn files(roots: Vec<PathBuf>) -> Self {
        Self { file_roots: roots, ..Default::default() }
    }

    fn check_bucket(&self, bucket: &str, own_keys: bool) -> Result<(), DatasourceError> {
        if self.reserved_bucket.as_deref() == Some(bucket) {
            return Err(DatasourceError::Forbidden(format!(
                "s3://{bucket} holds Pulse's own snapshots, models and checkpoints; it cannot be a datasource"
            )));
        }
        if !own_keys && !self.ambient_s3_buckets.iter().any(|b| b == bucket) {
            return Err(DatasourceError::Forbidden(format!(
                "s3://{bucket}: give the datasource its own keys (connection.object_storage.access_key_id and \
                 secret_access_key); an operator can let it use the server's credentials for this bucket with \
                 s3_ambient_buckets (PULSE_S3_AMBIENT_BUCKETS)"
            )));
        }
        Ok(())
    }
}

impl FileConnector {
    pub async fn new(settings: FileSettings, scope: &ReadScope) -> Result<Self, DatasourceError> {
        let allowed_roots = &scope.file_roots;
        let uri = settings.uri.clone();
        let root = if let Some(dir) = uri.strip_prefix("file://") {
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() {
                return Err(DatasourceError::invalid("connection.object_storage.uri", "must be file:///absolute/dir/"));
            }
            let resolved = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            let roots: Vec<PathBuf> =
                allowed_roots.iter().map(|r| r.canonicalize().unwrap_or_else(|_| r.clone())).collect();
            if !roots.iter().any(|r| resolved.starts_with(r)) {
                return Err(DatasourceError::Forbidden(format!(
                    "{} is outside the directories this server may read ({}); an operator can allow it with the \
                     file_roots setting (PULSE_FILE_ROOTS)",
                    dir.display(),
                    roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            Root::Local(resolved)
        } else if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(DatasourceError::invalid(
                    "connection.object_storage.uri",
                    "must name a bucket: s3://bucket/prefix/",
                ));
            }
            scope.check_bucket(bucket, !settings.access_key_id.is_empty())?;
            let region = if settings.region.is_empty() { "us-east-1".to_string() } else { settings.region.clone() };
            let mut loader =
                aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(region));
            if !settings.endpoint.is_empty() {
                loader = loader.endpoint_url(&settings.endpoint);
            }
            if !settings.access_key_id.is_empty() {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    settings.access_key_id.clone(),
                    settings.secret_access_key.clone(),
                    (!settings.session_token.is_empty()).then(|| settings.session_token.clone()),
                    None,
                    "pulse-datasource",
                ));
            }
            let shared = loader.load().await;
            let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(settings.force_path_style).build();
            let prefix =
                if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
            Root::S3 {
                client: aws_sdk_s3::Client::from_conf(conf),
                bucket: bucket.to_string(),
                prefix,
                endpoint: if settings.endpoint.is_empty() { "AWS".into() } else { settings.endpoint.clone() },
            }
        } else {
            return Err(DatasourceError::invalid(
                "connection.object_storage.uri",
                "must be s3://bucket/prefix/ or file:///absolute/dir/",
            ));
        };
        Ok(Self { settings, root })
    }

    fn format_of(&self, path: &str) -> Result<Format, DatasourceError> {
        match FileFormat::try_from(self.settings.format as i32).unwrap_or(FileFormat::Auto) {
            FileFormat::Parquet => Ok(Format::Parquet),
            FileFormat::Csv => Ok(Format::Csv),
            _ if path.ends_with(".parquet") || path.ends_with(".pq") => Ok(Format::Parquet),
            _ if path.ends_with(".csv") || path.ends_with(".tsv") || path.ends_with(".txt") => Ok(Format::Csv),
            _ => Err(DatasourceError::invalid(
                "object",
                format!(
                    "cannot tell the format of '{path}' from its extension; use .parquet or .csv, or set the datasource's format"
                ),
            )),
        }
    }

    /// Every file under the URI, relative paths in order.
    async fn all_files(&self) -> Result<Vec<FileRef>, DatasourceError> {
        match &self.root {
            Root::Local(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    walk(&dir, &dir, &mut out, 0)?;
                    out.sort_by(|a, b| a.path.cmp(&b.path));
                    Ok(out)
                })
                .await
                .map_err(|e| DatasourceError::Source(format!("listing failed: {e}")))?
            }
            Root::S3 { client, bucket, prefix, endpoint } => {
                let mut out = Vec::new();
                let mut token = None;
                loop {
                    let resp = client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token)
                        .send()
                        .await
                        .map_err(|e| {
                            DatasourceError::Unavailable(format!(
                                "listing s3://{bucket}/{prefix} at {endpoint}: {}",
                                aws_sdk_s3::error::DisplayErrorContext(&e)
                            ))
                        })?;
                    for o in resp.contents() {
                        if let Some(key) = o.key()
                            && let Some(rel) = key.strip_prefix(prefix.as_str())
                            && !rel.is_empty()
                            && !rel.ends_with('/')
                        {
                            out.push(FileRef { path: rel.to_string(), size: o.size().unwrap_or(0).max(0) as u64 });
                        }
                    }
                    match resp.next_continuation_token() {
                        Some(t) if resp.is_truncated() == Some(true) => token = Some(t.to_string()),
                        _ => break,
                    }
                }
                out.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(out)
            }
        }
    }

    /// The files an object names (a path or a glob), never empty.
    async fn files(&self, object: &ObjectName) -> Result<Vec<FileRef>, DatasourceError> {
        let ObjectName::Path(path) = object else {
            return Err(DatasourceError::invalid("object", "object storage objects are file paths or globs"));
        };
        let glob = GlobBuilder::new(path)
            .literal_separator(true)
            .build()
            .map_err(|e| DatasourceError::invalid("object", format!("is not a valid glob: {e}")))?
            .compile_matcher();
        let files: Vec<FileRef> =
            self.all_files().await?.into_iter().filter(|f| f.path == *path || glob.is_match(&f.path)).collect();
        if files.is_empty() {
            return Err(DatasourceError::ObjectMissing(path.clone()));
        }
        Ok(files)
    }

    /// A local file to read: the path itself, or an S3 object downloaded to
    /// a temporary file (bounded memory whatever its size).
    async fn open_file(&self, file: &FileRef) -> Result<(File, Option<tempfile::TempPath>), DatasourceError> {
        match &self.root {
            Root::Local(dir) => {
                let path = dir.join(&file.path);
                // A symlink may point elsewhere: the resolved path must stay
                // under the datasource's directory.
                let resolved = path.canonicalize().map_err(|_| DatasourceError::ObjectMissing(file.path.clone()))?;
                if !resolved.starts_with(dir) {
                    return Err(DatasourceError::Forbidden(format!(
                        "'{}' resolves outside the datasource's directory",
                        file.path
                    )));
                }
                Ok((File::open(&resolved).map_err(|e| DatasourceError::Source(format!("{}: {e}", file.path)))?, None))
            }
            Root::S3 { client, bucket, prefix, endpoint } => {
                let key = format!("{prefix}{}", file.path);
                let resp = client.get_object().bucket(bucket).key(&key).send().await.map_err(|e| {
                    DatasourceError::Unavailable(format!(
                        "reading s3://{bucket}/{key} at {endpoint}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ))
                })?;
                let tmp = tempfile::NamedTempFile::new().map_err(|e| DatasourceError::Source(e.to_string()))?;
                let (std_file, path) = tmp.into_parts();
                let mut out = tokio::fs::File::from_std(std_file);
                let mut body = resp.body.into_async_read();
                tokio::io::copy(&mut body, &mut out)
                    .await
                    .map_err(|e| DatasourceError::Unavailable(format!("downloading s3://{bucket}/{key}: {e}")))?;
                let std_file = File::open(&path).map_err(|e| DatasourceError::Source(e.to_string()))?;
                Ok((std_file, Some(path)))
            }
        }
    }

    fn csv_format(&self) -> Result<arrow::csv::reader::Format, DatasourceError> {
        let o = &self.settings.csv;
        let one = |field: &str, s: &str, default: u8| -> Result<u8, DatasourceError> {
            match s.as_bytes() {
                [] => Ok(default),
                [b] => Ok(*b),
                _ => Err(DatasourceError::invalid(field, "must be one character")),
            }
        };
        Ok(arrow::csv::reader::Format::default()
            .with_header(o.header.unwrap_or(true))
            .with_delimiter(one("connection.object_storage.csv.delimiter", &o.delimiter, b',')?)
            .with_quote(one("connection.object_storage.csv.quote", &o.quote, b'"')?))
    }

    /// The Arrow schema of one file as stored (before canonical casts).
    fn file_schema(&self, format: Format, file: File) -> Result<(SchemaRef, Option<u64>), DatasourceError> {
        match format {
            Format::Parquet => {
                let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| DatasourceError::Source(format!("not a readable Parquet file: {e}")))?;
                let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
                Ok((builder.schema().clone(), Some(rows)))
            }
            Format::Csv => {
                let rows =
                    if self.settings.csv.infer_rows == 0 { 10_000 } else { self.settings.csv.infer_rows as usize };
                let (schema, _) = self
                    .csv_format()?
                    .infer_schema(file, Some(rows))
                    .map_err(|e| DatasourceError::Source(format!("CSV schema inference failed: {e}")))?;
                Ok((Arc::new(schema), None))
            }
        }
    }

    /// Logical schema of an object (all files must agree), its files and
    /// their stored schema.
    async fn describe(
        &self,
        object: &ObjectName,
    ) -> Result<(Schema, Vec<FileRef>, SchemaRef, Option<u64>), DatasourceError> {
        let files = self.files(object).await?;
        let mut first: Option<(SchemaRef, Schema)> = None;
        let mut rows = Some(0u64);
        for f in &files {
            let format = self.format_of(&f.path)?;
            let (file, _tmp) = self.open_file(f).await?;
            let this = self.clone();
            let (schema, n) = tokio::task::spawn_blocking(move || this.file_schema(format, file))
                .await
                .map_err(|e| DatasourceError::Source(e.to_string()))??;
            rows = match (rows, n) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            let mut logical = logical_schema(&schema);
            for c in &mut logical.columns {
                c.nullable = true;
            }
            match &first {
                None => first = Some((schema, logical)),
                Some((_, expected))
                    if logical
                        .columns
                        .iter()
                        .map(|c| (&c.name, c.data_type))
                        .ne(expected.columns.iter().map(|c| (&c.name, c.data_type))) =>
                {
                    return Err(DatasourceError::Source(format!(
                        "'{}' does not have the columns of '{}'; the files of one object must share a schema",
                        f.path, files[0].path
                    )));
                }
                Some(_) => {}
            }
        }
        let (stored, logical) = first.ok_or_else(|| DatasourceError::ObjectMissing(object.canonical()))?;
        Ok((logical, files, stored, rows))
    }

    /// Reads every batch of one file, cast to the canonical schema.
    fn read_file_blocking(
        &self,
        format: Format,
        file: File,
        stored: SchemaRef,
        canonical: SchemaRef,
        batch_rows: usize,
        mut emit: impl FnMut(RecordBatch) -> bool,
    ) -> Result<(), DatasourceError> {
        let cast = |b: RecordBatch| canonical_batch(&b, &canonical);
        match format {
            Format::Parquet => {
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| DatasourceError::Source(e.to_string()))?
                    .with_batch_size(batch_rows)
                    .build()
                    .map_err(|e| DatasourceError::Source(e.to_string()))?;
                for b in reader {
                    if !emit(cast(b?)?) {
                        break;
                    }
                }
            }
            Format::Csv => {
                let reader = arrow::csv::ReaderBuilder::new(stored)
                    .with_format(self.csv_format()?)
                    .with_batch_size(batch_rows)
                    .build(file)?;
                for b in reader {
                    let b = b.map_err(|e| DatasourceError::Source(format!("CSV: {e}")))?;
                    if !emit(cast(b)?) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every row of the object matching the filters, in file order.
    async fn read_filtered(
        &self,
        object: &ObjectName,
        spec: &ReadSpec,
        schema: &Schema,
    ) -> Result<(SchemaRef, tokio::sync::mpsc::Receiver<Result<RecordBatch, DatasourceError>>), DatasourceError> {
        let (logical, files, stored, _) = self.describe(object).await?;
        let full = arrow_schema(&logical);
        let wanted = arrow_schema(schema);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let this = self.clone();
        let spec = spec.clone();
        let batch_rows = spec.batch_rows.max(1);
        let answer = wanted.clone();
        tokio::spawn(async move {
            for f in files {
                let format = match this.format_of(&f.path) {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let opened = this.open_file(&f).await;
                let (file, tmp) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let (this2, tx2, stored, full, wanted, spec) =
                    (this.clone(), tx.clone(), stored.clone(), full.clone(), wanted.clone(), spec.clone());
                let result = tokio::task::spawn_blocking(move || {
                    let _keep = tmp;
                    this2.read_file_blocking(format, file, stored, full, batch_rows, |b| {
                        let out = filter(&b, &spec).and_then(|b| {
                            let idx: Vec<usize> =
                                wanted.fields().iter().filter_map(|f| b.schema().index_of(f.name()).ok()).collect();
                            Ok(b.project(&idx)?)
                        });
                        tx2.blocking_send(out).is_ok()
                    })
                })
                .await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(DatasourceError::Source(e.to_string()))).await;
                        return;
                    }
                }
            }
        });
        Ok((answer, rx))
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<FileRef>, depth: usize) -> Result<(), DatasourceError> {
    if depth > 16 {
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DatasourceError::Source(format!("{}: {e}", dir.display()))),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(root, &path, out, depth + 1)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if crate::names::check_path("", &rel).is_ok() {
                out.push(FileRef { path: rel, size: meta.len() });
            }
        }
    }
    Ok(())
}

/// A one-row array of `t` holding `v`.
fn scalar(v: &Value, t: &ArrowType) -> Result<ArrayRef, DatasourceError> {
    let as_text: ArrayRef = match &v.kind {
        None => return Ok(new_null_array(t, 1)),
        Some(Kind::IntValue(i)) => Arc::new(arrow::array::Int64Array::from(vec![*i])),
        Some(Kind::FloatValue(f)) => Arc::new(arrow::array::Float64Array::from(vec![*f])),
        Some(Kind::BoolValue(b)) => Arc::new(arrow::array::BooleanArray::from(vec![*b])),
        Some(Kind::TimestampValue(ts)) => Arc::new(
            arrow::array::TimestampMicrosecondArray::from(vec![proto_to_micros(ts)])
                .with_timezone(crate::connector::values::UTC),
        ),
        Some(Kind::BinaryValue(b)) => Arc::new(arrow::array::BinaryArray::from(vec![b.as_slice()])),
        Some(Kind::DecimalValue(s) | Kind::StringValue(s) | Kind::DateValue(s) | Kind::UuidValue(s)) => {
            Arc::new(arrow::array::StringArray::from(vec![s.as_str()]))
        }
    };
    Ok(arrow::compute::cast(&as_text, t)?)
}

/// Null comparison results as false.
fn no_nulls(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() > 0 { arrow::compute::prep_null_mask_filter(mask) } else { mask.clone() }
}

fn and(a: Option<BooleanArray>, b: BooleanArray) -> Result<Option<BooleanArray>, DatasourceError> {
    Ok(Some(match a {
        Some(a) => arrow::compute::and(&a, &b)?,
        None => b,
    }))
}

/// The rows of a canonical batch inside the read's cursor window and range.
fn filter(batch: &RecordBatch, spec: &ReadSpec) -> Result<RecordBatch, DatasourceError> {
    let mut mask: Option<BooleanArray> = None;
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| DatasourceError::SchemaChanged(format!("column '{name}' is missing")))
    };
    if let Some(w) = &spec.cursor {
        let c = column(&w.field)?;
        if let Some(after) = &w.after {
            let s = scalar(after, c.data_type())?;
            mask = and(mask, cmp::gt(&c, &arrow::array::Scalar::new(s))?)?;
        }
        if let Some(until) = &w.until {
            let s = scalar(until, c.data_type())?;
            mask = and(mask, cmp::lt_eq(&c, &arrow::array::Scalar::new(s))?)?;
        }
    }
    if let Some(r) = &spec.range {
        let c = column(&r.column)?;
        let mut inside: Option<BooleanArray> = None;
        if let Some(lo) = &r.lower {
            inside = and(inside, cmp::gt_eq(&c, &arrow::array::Scalar::new(scalar(lo, c.data_type())?))?)?;
        }
        if let Some(hi) = &r.upper {
            inside = and(inside, cmp::lt(&c, &arrow::array::Scalar::new(scalar(hi, c.data_type())?))?)?;
        }
        let inside = match inside {
            Some(m) => m,
            None => arrow::compute::is_not_null(&c)?,
        };
        // Comparisons with null are null: count them as outside, then add
        // the nulls back when the range asks for them.
        let inside = no_nulls(&inside);
        let keep = if r.include_nulls { arrow::compute::or(&inside, &arrow::compute::is_null(&c)?)? } else { inside };
        mask = and(mask, keep)?;
    }
    match mask {
        Some(m) => Ok(arrow::compute::filter_record_batch(batch, &no_nulls(&m))?),
        None => Ok(batch.clone()),
    }
}

#[async_trait::async_trait]
impl Connector for FileConnector {
    async fn validate(&self, objects: &[ObjectName]) -> ValidationOutcome {
        let mut out = ValidationOutcome {
            server_version: match &self.root {
                Root::Local(_) => "local files".into(),
                Root::S3 { endpoint, .. } => format!("S3 {endpoint}"),
            },
            ..Default::default()
        };
        let started = Instant::now();
        let listed = match &self.root {
            Root::Local(dir) if !dir.is_dir() => {
                Err(DatasourceError::Unavailable(format!("{} is not a directory the server can read", dir.display())))
            }
            _ => self.all_files().await,
        };
        match listed {
            Ok(_) => {
                out.reachable = true;
                out.authenticated = true;
                out.read_only = true;
                out.checks.push(check("reachable", CheckStatus::Passed, "", started));
                out.checks.push(check("authenticated", CheckStatus::Passed, "", started));
                out.checks.push(check("read_only", CheckStatus::Passed, "Pulse only reads object storage", started));
            }
            Err(e) => {
                out.checks.push(check(
                    "reachable",
                    CheckStatus::Failed,
                    format!("{e}; check the URI and credentials"),
                    started,
                ));
                for name in ["authenticated", "read_only"] {
                    out.checks.push(check(name, CheckStatus::Skipped, "not tried: an earlier check failed", started));
                }
                for o in objects {
                    out.checks.push(check(&format!("object:{o}"), CheckStatus::Skipped, "not tried", started));
                }
                return out;
            }
        }
        for o in objects {
            let started = Instant::now();
            out.checks.push(match self.describe(o).await {
                Ok(_) => check(&format!("object:{o}"), CheckStatus::Passed, "", started),
                Err(DatasourceError::ObjectMissing(_)) => {
                    check(&format!("object:{o}"), CheckStatus::Failed, "no file matches this path", started)
                }
                Err(e) => check(&format!("object:{o}"), CheckStatus::Failed, format!("cannot be read: {e}"), started),
            });
        }
        out
    }

    async fn list_objects(&self, globs: &[String]) -> Result<Vec<ObjectName>, DatasourceError> {
        let mut out = Vec::new();
        for g in globs {
            for f in self.files(&ObjectName::Path(g.clone())).await.unwrap_or_default() {
                out.push(ObjectName::Path(f.path));
            }
        }
        Ok(out)
    }

    async fn inspect(&self, object: &ObjectName) -> Result<ObjectSchema, DatasourceError> {
        let (logical, files, _, rows) = self.describe(object).await?;
        Ok(ObjectSchema {
            object: object.canonical(),
            kind: ObjectKind::File as i32,
            schema: Some(logical),
            primary_key: Vec::new(),
            estimated_rows: rows,
            comment: format!("{} file(s)", files.len()),
        })
    }

    async fn estimate(
        &self,
        object: &ObjectName,
        exact: bool,
        cursor: Option<&CursorWindow>,
    ) -> Result<ObjectSize, DatasourceError> {
        let (logical, files, _, rows) = self.describe(object).await?;
        let bytes = files.iter().map(|f| f.size).sum();
        if let (Some(rows), None, _) = (rows, cursor, exact) {
            return Ok(ObjectSize {
                object: object.canonical(),
                rows,
                bytes,
                exact: true,
                method: "parquet footer".into(),
                cursor_max: None,
            });
        }
        let columns = cursor.map(|c| vec![c.field.clone()]).unwrap_or_else(|| vec![logical.columns[0].name.clone()]);
        let projected = project(&logical, &columns, "cursor_field")?;
        let spec = ReadSpec { cursor: cursor.cloned(), columns, ..Default::default() };
        let (_, mut rx) = self.read_filtered(object, &spec, &projected).await?;
        let mut count = 0u64;
        let mut max: Option<Value> = None;
        while let Some(b) = rx.recv().await {
            let b = b?;
            count += b.num_rows() as u64;
            if cursor.is_some()
                && let Some(v) = max_of(b.column(0).as_ref())
                && max.as_ref().is_none_or(|m| compare_values(&v, m).is_gt())
            {
                max = Some(v);
            }
        }
        Ok(ObjectSize {
            object: object.canonical(),
            rows: count,
            bytes,
            exact: true,
            method: if files.iter().all(|f| f.path.ends_with(".parquet")) { "parquet scan" } else { "csv scan" }.into(),
            cursor_max: cursor.map(|_| max.unwrap_or_default()),
        })
    }

    async fn column_bounds(
        &self,
        object: &ObjectName,
        column: &str,
        count: u32,
        cursor: Option<&CursorWindow>,
    ) -> Result<ColumnBounds, DatasourceError> {
        let (logical, _, _, _) = self.describe(object).await?;
        let mut columns = vec![column.to_string()];
        if let Some(c) = cursor
            && c.field != column
        {
            columns.push(c.field.clone());
        }
        let projected = project(&logical, &columns, "column")?;
        let spec = ReadSpec { cursor: cursor.cloned(), columns, ..Default::default() };
        let (_, mut rx) = self.read_filtered(object, &spec, &projected).await?;
        let mut parts = Vec::new();
        while let Some(b) = rx.recv().await {
            parts.push(b?.column(0).clone());
        }
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        if refs.is_empty() {
            return Ok(ColumnBounds::default());
        }
        let all = arrow::compute::concat(&refs)?;
        let sorted =
            arrow::compute::sort(&all, Some(arrow::compute::SortOptions { descending: false, nulls_first: false }))?;
        let valid = sorted.len() - sorted.null_count();
        if valid == 0 {
            return Ok(ColumnBounds::default());
        }
        let mut splits: Vec<Value> = Vec::new();
        let min = value_at(sorted.as_ref(), 0);
        for i in 1..count.max(1) as usize {
            let v = value_at(sorted.as_ref(), i * valid / count as usize);
            let prev = splits.last().unwrap_or(&min);
            if compare_values(&v, prev).is_gt() {
                splits.push(v);
            }
        }
        Ok(ColumnBounds { min: Some(min), max: Some(value_at(sorted.as_ref(), valid - 1)), splits })
    }

    async fn stream(&self, object: &ObjectName, spec: ReadSpec) -> Result<BatchStream, DatasourceError> {
        let (logical, files, _, _) = self.describe(object).await?;
        let wanted = project(&logical, &spec.columns, "columns")?;
        let ordered = !spec.order_by.is_empty();
        if ordered && files.iter().map(|f| f.size).sum::<u64>() > MAX_SORT_BYTES {
            return Err(DatasourceError::Precondition(format!(
                "ordering '{object}' means sorting it in memory, and its files exceed {} GiB; extract it without a \
                 primary key, or split it into smaller objects",
                MAX_SORT_BYTES >> 30
            )));
        }
        // Read the order columns too, then drop them.
        let mut read_cols: Vec<String> = wanted.columns.iter().map(|c| c.name.clone()).collect();
        for k in &spec.order_by {
            if !read_cols.contains(k) {
                read_cols.push(k.clone());
            }
        }
        let read_schema = project(&logical, &read_cols, "order_by")?;
        let (_, mut rx) = self.read_filtered(object, &spec, &read_schema).await?;
        let out_schema = arrow_schema(&wanted);
        let batch_rows = spec.batch_rows.max(1);
        let limit = spec.limit.unwrap_or(u64::MAX);
        let n_out = wanted.columns.len();
        let stream = async_stream::try_stream! {
            let mut left = limit;
            if !ordered {
                while let Some(b) = rx.recv().await {
                    let mut b = b?;
                    if left == 0 {
                        break;
                    }
                    if b.num_rows() as u64 > left {
                        b = b.slice(0, left as usize);
                    }
                    left -= b.num_rows() as u64;
                    let b = b.project(&(0..n_out).collect::<Vec<_>>())?;
                    yield RecordBatch::try_new(out_schema.clone(), b.columns().to_vec())?;
                }
            } else {
                let mut parts = Vec::new();
                while let Some(b) = rx.recv().await {
                    parts.push(b?);
                }
                let read_arrow = arrow_schema(&read_schema);
                let all = arrow::compute::concat_batches(&read_arrow, &parts)?;
                drop(parts);
                let keys: Vec<arrow::compute::SortColumn> = spec
                    .order_by
                    .iter()
                    .map(|k| arrow::compute::SortColumn {
                        values: all.column_by_name(k).cloned().unwrap_or_else(|| new_null_array(&ArrowType::Null, all.num_rows())),
                        options: Some(arrow::compute::SortOptions { descending: false, nulls_first: true }),
                    })
                    .collect();
                let idx = arrow::compute::lexsort_to_indices(&keys, None)?;
                let sorted = arrow::compute::take_record_batch(&all, &idx)?;
                drop(all);
                // Keyset resume: skip rows up to and including `after_key`.
                let mut start = 0;
                if !spec.after_key.is_empty() {
                    let key_cols: Vec<ArrayRef> =
                        spec.order_by.iter().filter_map(|k| sorted.column_by_name(k).cloned()).collect();
                    while start < sorted.num_rows() {
                        let row: Vec<Value> = key_cols.iter().map(|c| value_at(c.as_ref(), start)).collect();
                        let ord = row
                            .iter()
                            .zip(&spec.after_key)
                            .map(|(a, b)| compare_values(a, b))
                            .find(|o| o.is_ne())
                            .unwrap_or(std::cmp::Ordering::Equal);
                        if ord.is_gt() {
                            break;
                        }
                        start += 1;
                    }
                }
                let end = (start as u64).saturating_add(left).min(sorted.num_rows() as u64) as usize;
                let mut at = start;
                while at < end {
                    let n = batch_rows.min(end - at);
                    let b = sorted.slice(at, n).project(&(0..n_out).collect::<Vec<_>>())?;
                    yield RecordBatch::try_new(out_schema.clone(), b.columns().to_vec())?;
                    at += n;
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

/// The largest non-null value of an array.
fn max_of(array: &dyn Array) -> Option<Value> {
    let options = arrow::compute::SortOptions { descending: true, nulls_first: false };
    let idx = arrow::compute::sort_to_indices(array, Some(options), Some(1)).ok()?;
    let i = *idx.values().first()? as usize;
    (!array.is_null(i)).then(|| value_at(array, i))
}
