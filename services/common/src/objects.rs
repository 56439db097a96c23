//! Object storage for snapshots, models and checkpoints: S3 (any
//! S3-compatible endpoint) or a local directory. Objects are write-once and
//! carry a SHA-256 that every read verifies.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object '{0}' already exists with different content; objects are write-once, write a new key")]
    AlreadyExists(String),
    #[error("object '{0}' not found")]
    NotFound(String),
    #[error(
        "object '{key}' failed its SHA-256 check (recorded {expected}, read {actual}); it was changed or damaged after it was written"
    )]
    Corrupt { key: String, expected: String, actual: String },
    #[error("object '{0}' has no recorded SHA-256; it was not written completely")]
    NoChecksum(String),
    #[error("invalid object key {0:?}: {1}")]
    InvalidKey(String, &'static str),
    #[error("object storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("S3: {0}")]
    S3(String),
}

impl ObjectError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::InvalidKey(..) => ErrorCode::InvalidArgument,
            Self::S3(_) => ErrorCode::Unavailable,
            Self::Corrupt { .. } | Self::NoChecksum(_) | Self::Io(_) => ErrorCode::Internal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Writes `bytes` under `key` once. Writing identical bytes again returns
    /// the same info (a retry is safe); different bytes are `AlreadyExists`.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<ObjectInfo, ObjectError>;
    /// Reads the object and verifies its SHA-256.
    async fn get(&self, key: &str) -> Result<Bytes, ObjectError>;
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ObjectError>;
    /// Objects under `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, ObjectError>;
    fn describe(&self) -> String;
}

/// One tenant's view of a store: every key is placed under `{tenant}/`, so
/// a service holding a `TenantObjects` cannot name another tenant's object.
#[derive(Debug, Clone)]
pub struct TenantObjects {
    store: std::sync::Arc<dyn ObjectStore>,
    prefix: String,
}

impl TenantObjects {
    pub fn new(store: std::sync::Arc<dyn ObjectStore>, tenant: &str) -> Result<Self, ObjectError> {
        if tenant.is_empty() || tenant.contains('/') {
            return Err(ObjectError::InvalidKey(tenant.to_string(), "a tenant id is one non-empty segment"));
        }
        check_key(tenant)?;
        Ok(Self { store, prefix: format!("{tenant}/") })
    }

    fn key(&self, key: &str) -> Result<String, ObjectError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<ObjectInfo, ObjectError> {
        let mut info = self.store.put(&self.key(key)?, bytes).await?;
        info.key = key.to_string();
        Ok(info)
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        self.store.get(&self.key(key)?).await
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        Ok(self.store.head(&self.key(key)?).await?.map(|mut i| {
            i.key = key.to_string();
            i
        }))
    }

    /// The tenant's objects under `prefix`, with keys relative to the tenant.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, ObjectError> {
        check_prefix(prefix)?;
        let entries = self.store.list(&format!("{}{prefix}", self.prefix)).await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let key = e.key.strip_prefix(&self.prefix)?.to_string();
                Some(ObjectEntry { key, size: e.size })
            })
            .collect())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Keys are relative paths of safe characters: no empty or dot segments, so
/// a key can never escape its tenant's prefix or the local root.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
    let bad = |why| Err(ObjectError::InvalidKey(key.to_string(), why));
    if key.is_empty() || key.len() > 1024 {
        return bad("must be 1 to 1024 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/=@".contains(&b)) {
        return bad("use only A-Z a-z 0-9 . _ - / = @");
    }
    if key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg.starts_with(".pulse")) {
        return bad("segments must be non-empty and not '.', '..' or start with '.pulse'");
    }
    Ok(())
}

/// A listing prefix: empty, or a key (optionally ending in `/`).
pub fn check_prefix(prefix: &str) -> Result<(), ObjectError> {
    match prefix.strip_suffix('/').unwrap_or(prefix) {
        "" if prefix.is_empty() => Ok(()),
        "" => Err(ObjectError::InvalidKey(prefix.to_string(), "a prefix cannot be only '/'")),
        key => check_key(key),
    }
}

/// The configured store: S3 when `s3_bucket` is set, else `state_dir/objects`.
pub async fn from_config(config: &Config) -> Result<std::sync::Arc<dyn ObjectStore>, ObjectError> {
    Ok(match &config.s3_bucket {
        Some(bucket) => std::sync::Arc::new(
            S3ObjectStore::connect(
                bucket,
                &config.s3_prefix,
                config.s3_endpoint.as_deref(),
                &config.s3_region,
                config.s3_path_style,
            )
            .await?,
        ),
        None => std::sync::Arc::new(LocalObjectStore::new(config.state_dir.join("objects"))?),
    })
}

/// Objects as files under a root directory. Each object's SHA-256 is kept in
/// a parallel tree under `.pulse-sha256/`.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
}

impl LocalObjectStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ObjectError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn data_path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn sum_path(&self, key: &str) -> PathBuf {
        self.root.join(".pulse-sha256").join(key)
    }

    fn write_sum(&self, key: &str, sha: &str) -> Result<(), ObjectError> {
        let path = self.sum_path(key);
        std::fs::create_dir_all(path.parent().unwrap())?;
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, sha)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    fn read_sum(&self, key: &str) -> Result<Option<String>, ObjectError> {
        match std::fs::read_to_string(self.sum_path(key)) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn put_blocking(&self, key: &str, bytes: &[u8]) -> Result<ObjectInfo, ObjectError> {
        let sha = sha256_hex(bytes);
        let info = ObjectInfo { key: key.to_string(), size: bytes.len() as u64, sha256: sha.clone() };
        let path = self.data_path(key);
        std::fs::create_dir_all(path.parent().unwrap())?;
        let tmp = path.with_file_name(format!(".pulse-tmp-{}", uuid::Uuid::new_v4()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        // A hard link never replaces an existing file: the write-once check
        // and the publication are one atomic step.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.write_sum(key, &sha)?;
                Ok(info)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = std::fs::read(&path)?;
                if sha256_hex(&existing) == sha {
                    // A retry of a write that may have stopped before its sum.
                    if self.read_sum(key)?.is_none() {
                        self.write_sum(key, &sha)?;
                    }
                    Ok(info)
                } else {
                    Err(ObjectError::AlreadyExists(key.to_string()))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectEntry>, ObjectError> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectEntry>) -> std::io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(".pulse") {
                    continue;
                }
                let path = entry.path();
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    walk(root, &path, out)?;
                } else {
                    let key = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                    out.push(ObjectEntry { key, size: meta.len() });
                }
            }
            Ok(())
        }
        // Walk from the deepest directory the prefix names, then filter.
        let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut out = Vec::new();
        walk(&self.root, &self.root.join(dir_part), &mut out)?;
        out.retain(|e| e.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<ObjectInfo, ObjectError> {
        check_key(key)?;
        let (this, key) = (self.clone(), key.to_string());
        tokio::task::spawn_blocking(move || this.put_blocking(&key, &bytes))
            .await
            .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?
    }

    async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        check_key(key)?;
        let bytes = match tokio::fs::read(self.data_path(key)).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ObjectError::NotFound(key.into())),
            Err(e) => return Err(e.into()),
        };
        let expected = self.read_sum(key)?.ok_or_else(|| ObjectError::NoChecksum(key.into()))?;
        let actual = sha256_hex(&bytes);
        if actual != expected {
            return Err(ObjectError::Corrupt { key: key.into(), expected, actual });
        }
        Ok(Bytes::from(bytes))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        check_key(key)?;
        let meta = match tokio::fs::metadata(self.data_path(key)).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let sha256 = self.read_sum(key)?.ok_or_else(|| ObjectError::NoChecksum(key.into()))?;
        Ok(Some(ObjectInfo { key: key.into(), size: meta.len(), sha256 }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, ObjectError> {
        check_prefix(prefix)?;
        let (this, prefix) = (self.clone(), prefix.to_string());
        tokio::task::spawn_blocking(move || this.list_blocking(&prefix))
            .await
            .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
}

/// Objects in an S3 bucket. The SHA-256 travels as object metadata
/// (`x-amz-meta-sha256`), written in the same request as the data.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

const SHA_META: &str = "sha256";

fn s3_error<E: std::error::Error + 'static>(e: aws_sdk_s3::error::SdkError<E>) -> ObjectError {
    ObjectError::S3(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
}

impl S3ObjectStore {
    /// A client for `bucket` (which must exist). Credentials come from the
    /// standard AWS chain: environment, profile, ECS task role, instance role.
    pub async fn connect(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
        region: &str,
        path_style: bool,
    ) -> Result<Self, ObjectError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()));
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            // We verify SHA-256 ourselves; extra checksums trip some
            // S3-compatible servers.
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        let client = aws_sdk_s3::Client::from_conf(conf);
        client.head_bucket().bucket(bucket).send().await.map_err(|e| {
            ObjectError::S3(format!(
                "bucket '{bucket}' is not reachable at {}: {}; create it or fix s3_bucket / s3_endpoint",
                endpoint.unwrap_or("AWS"),
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(Self { client, bucket: bucket.to_string(), prefix })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<ObjectInfo, ObjectError> {
        check_key(key)?;
        let sha = sha256_hex(&bytes);
        let info = ObjectInfo { key: key.to_string(), size: bytes.len() as u64, sha256: sha.clone() };
        // Checked first as well, for S3-compatible servers that ignore
        // If-None-Match; where it is honoured it closes the race.
        if let Some(existing) = self.head(key).await? {
            return if existing.sha256 == sha { Ok(info) } else { Err(ObjectError::AlreadyExists(key.into())) };
        }
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .metadata(SHA_META, &sha)
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(info),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412 || r.status().as_u16() == 409) => {
                match self.head(key).await? {
                    Some(existing) if existing.sha256 == sha => Ok(info),
                    _ => Err(ObjectError::AlreadyExists(key.into())),
                }
            }
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        check_key(key)?;
        let out = match self.client.get_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(ObjectError::NotFound(key.into()));
            }
            Err(e) => return Err(s3_error(e)),
        };
        let expected =
            out.metadata().and_then(|m| m.get(SHA_META)).cloned().ok_or_else(|| ObjectError::NoChecksum(key.into()))?;
        let bytes = out.body.collect().await.map_err(|e| ObjectError::S3(e.to_string()))?.into_bytes();
        let actual = sha256_hex(&bytes);
        if actual != expected {
            return Err(ObjectError::Corrupt { key: key.into(), expected, actual });
        }
        Ok(bytes)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ObjectError> {
        check_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
            Ok(out) => {
                let sha256 = out
                    .metadata()
                    .and_then(|m| m.get(SHA_META))
                    .cloned()
                    .ok_or_else(|| ObjectError::NoChecksum(key.into()))?;
                Ok(Some(ObjectInfo { key: key.into(), size: out.content_length().unwrap_or(0) as u64, sha256 }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, ObjectError> {
        check_prefix(prefix)?;
        let mut out = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(self.full_key(prefix)).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(s3_error)?;
            for obj in page.contents() {
                if let Some(k) = obj.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    out.push(ObjectEntry { key: k.to_string(), size: obj.size().unwrap_or(0) as u64 });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}
