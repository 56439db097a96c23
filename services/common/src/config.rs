//! Configuration: defaults → `pulse.toml` (or the file named by `PULSE_CONFIG`)
//! → `PULSE_*` environment variables. Every setting has a documented default;
//! the README's configuration table lists them all.
//!
//! Environment names are the field names upper-cased with a `PULSE_` prefix
//! (`database_url` → `PULSE_DATABASE_URL`); `__` nests into a section
//! (`PULSE_TRAINER__WORKERS` → `[trainer] workers`).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::{Deserialize, Serialize};

use crate::error::PulseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines with colours on a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// gRPC address. Default `127.0.0.1:50051`.
    pub listen: String,
    /// Prometheus `/metrics` address; empty disables it. Default `127.0.0.1:9464`.
    pub metrics_listen: String,
    /// Where the embedded store, local objects and generated keys live. Default `.pulse`.
    pub state_dir: PathBuf,
    /// PostgreSQL URL for metadata; unset uses the embedded store under `state_dir`.
    pub database_url: Option<String>,
    /// Connections in the PostgreSQL pool. Default 16.
    pub database_pool_size: usize,
    /// PEM file of the CA(s) that signed the PostgreSQL server's certificate,
    /// checked when `database_url` asks for `sslmode=verify-ca`/`verify-full`
    /// (or `require`/`prefer`, as libpq does when a root certificate is set)
    /// and names no `sslrootcert`. Default unset (the system's CA certificates).
    pub database_ca: Option<PathBuf>,
    /// S3 bucket for objects; unset uses `state_dir/objects`.
    pub s3_bucket: Option<String>,
    /// S3 endpoint for MinIO and other S3-compatible servers; unset uses AWS.
    pub s3_endpoint: Option<String>,
    /// S3 region. Default `us-east-1`.
    pub s3_region: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most
    /// S3-compatible servers. Default false.
    pub s3_path_style: bool,
    /// Key prefix inside the bucket. Default empty.
    pub s3_prefix: String,
    /// The admin key. Unset: read from, or generated into, `state_dir/admin.key`.
    pub admin_key: Option<String>,
    /// `human` or `json`. Default `human`.
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `pulse_lineage=debug,info`. Default `info`.
    pub log_level: String,
    /// Largest accepted request message, in bytes. Default 16 MiB.
    pub max_message_bytes: usize,
    /// How long a verified API key is trusted before it is checked again
    /// (so a revocation takes effect within this time). Default 10.
    pub auth_cache_seconds: u64,
    /// How long idempotency keys are remembered. Default 24.
    pub idempotency_ttl_hours: u64,
    /// On SIGTERM, seconds between health turning NOT_SERVING and the
    /// listener closing, so load balancers stop sending first. Default 0.
    pub shutdown_drain_seconds: u64,
    /// Seconds in-flight calls and open streams get to finish after that;
    /// then the remaining connections are dropped. Default 30.
    pub shutdown_grace_seconds: u64,
    /// Master key for secrets at rest (64 hex characters). Unset: generated
    /// into `state_dir/master.key` with the embedded store; required with
    /// `database_url`.
    pub master_key: Option<String>,
    /// Earlier master keys, still accepted for reading while secrets are
    /// re-sealed under the current one. Default empty.
    pub previous_master_keys: Vec<String>,
    /// `pulse up` creates a `default` tenant and writes its key under
    /// `state_dir` when no tenant exists. Default true.
    pub bootstrap_default_tenant: bool,
    /// Directories `file://` datasources may read under. Empty (the default)
    /// allows the server's working directory only.
    pub file_roots: Vec<PathBuf>,
    /// S3 buckets `s3://` datasources may read with this server's own AWS
    /// credentials when they carry no keys. Empty (the default): a
    /// datasource must bring its own keys.
    pub s3_ambient_buckets: Vec<String>,
    /// Extraction jobs this process runs at once; 0 makes it serve the API
    /// only. Default 2.
    pub extraction_workers: usize,
    /// Training jobs this process runs at once; 0 makes it serve the API
    /// only (other processes' workers train). Default 1: training uses every
    /// core it is given.
    pub training_workers: usize,
    /// A job whose worker has not renewed its lease for this long is taken
    /// over by another worker. Default 30.
    pub job_lease_seconds: u64,
    /// Micro-batching: at most this many concurrent predictions of one model
    /// go into one model call. 1 turns batching off. Default 64.
    pub inference_max_batch_size: usize,
    /// Micro-batching: how long the first request of a batch waits for
    /// others, in microseconds. Default 500.
    pub inference_max_batch_wait_us: u64,
    /// Requests that may wait per model version; more are answered
    /// RESOURCE_EXHAUSTED at once. Default 4096.
    pub inference_queue_capacity: usize,
    /// Cached answers (by model version and input hash); 0 disables the
    /// cache. Default 100000.
    pub inference_cache_entries: usize,
    /// Rows one PredictBatch call may carry. Default 10000.
    pub inference_max_batch_rows: usize,
    /// How often served models are checked for a new production version, in
    /// milliseconds (promotions in this process are picked up at once).
    /// Default 1000.
    pub model_poll_ms: u64,
    /// How often retraining policies and drift monitors are evaluated, in
    /// seconds (by one replica at a time). Default 30.
    pub policy_interval_seconds: u64,
    /// Circuit breaker: the error rate (over at least
    /// `inference_breaker_min_requests` outcomes in a 10 s window) that opens
    /// it. Default 0.5.
    pub inference_breaker_error_rate: f64,
    /// Default 20.
    pub inference_breaker_min_requests: u32,
    /// How long it stays open before probes go through, in milliseconds.
    /// Default 5000.
    pub inference_breaker_open_ms: u64,
    /// Where the other services are, when this process does not host them
    /// (`pulse serve <service>`): e.g. `http://trainer:50051`. Unset: the
    /// service is hosted in this process (`pulse up`) or, when it is not,
    /// reached at `listen`'s address.
    pub datasource_url: Option<String>,
    /// See `datasource_url`.
    pub snapshot_url: Option<String>,
    /// See `datasource_url`.
    pub trainer_url: Option<String>,
    /// See `datasource_url`.
    pub inference_url: Option<String>,
    /// See `datasource_url`.
    pub lineage_url: Option<String>,
    /// See `datasource_url`.
    pub drift_url: Option<String>,
    /// PEM certificate chain; with `tls_key`, gRPC is served over TLS.
    /// Default unset (plain HTTP/2).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate that this process trusts when it calls the other
    /// services over `https://`. Default unset (the system roots).
    pub tls_ca: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            state_dir: PathBuf::from(".pulse"),
            database_url: None,
            database_pool_size: 16,
            database_ca: None,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_path_style: false,
            s3_prefix: String::new(),
            admin_key: None,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            max_message_bytes: 16 * 1024 * 1024,
            auth_cache_seconds: 10,
            idempotency_ttl_hours: 24,
            shutdown_drain_seconds: 0,
            shutdown_grace_seconds: 30,
            master_key: None,
            previous_master_keys: Vec::new(),
            bootstrap_default_tenant: true,
            file_roots: Vec::new(),
            s3_ambient_buckets: Vec::new(),
            extraction_workers: 2,
            training_workers: 1,
            job_lease_seconds: 30,
            inference_max_batch_size: 64,
            inference_max_batch_wait_us: 500,
            inference_queue_capacity: 4096,
            inference_cache_entries: 100_000,
            inference_max_batch_rows: 10_000,
            model_poll_ms: 1000,
            policy_interval_seconds: 30,
            inference_breaker_error_rate: 0.5,
            inference_breaker_min_requests: 20,
            inference_breaker_open_ms: 5000,
            datasource_url: None,
            snapshot_url: None,
            trainer_url: None,
            inference_url: None,
            lineage_url: None,
            drift_url: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

impl Config {
    /// Loads from `PULSE_CONFIG` (which must exist when set) or `./pulse.toml`
    /// (if present), then the process environment.
    pub fn load() -> Result<Self, PulseError> {
        let file = match std::env::var_os("PULSE_CONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(PulseError::Config(format!(
                        "PULSE_CONFIG names {}, which is not a file",
                        path.display()
                    )));
                }
                Some(path)
            }
            None => Some(PathBuf::from("pulse.toml")).filter(|p| p.is_file()),
        };
        Self::from_sources(file.as_deref(), std::env::vars())
    }

    /// The layering itself, with the environment passed in (tests use this).
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, PulseError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        for (name, raw) in env {
            let Some(key) = name.strip_prefix("PULSE_") else { continue };
            // Client-side settings share the prefix; they are not server config.
            if matches!(key, "CONFIG" | "ENDPOINT" | "API_KEY") || key.starts_with("TEST_") {
                continue;
            }
            let path = key.to_ascii_lowercase().replace("__", ".");
            let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
            figment = figment.merge(Serialized::globals(figment::util::nest(&path, value)));
        }
        let config: Config = figment.extract().map_err(|e| PulseError::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), PulseError> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| PulseError::Config(format!("listen = {:?}: {e}; use host:port", self.listen)))?;
        if !self.metrics_listen.is_empty() {
            self.metrics_listen.parse::<std::net::SocketAddr>().map_err(|e| {
                PulseError::Config(format!(
                    "metrics_listen = {:?}: {e}; use host:port, or empty to disable",
                    self.metrics_listen
                ))
            })?;
        }
        if self.database_pool_size == 0 {
            return Err(PulseError::Config("database_pool_size must be at least 1".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(PulseError::Config(
                "tls_cert and tls_key go together: set both to serve TLS, or neither".into(),
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(PulseError::Config("max_message_bytes must be at least 1024".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pulse.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:6000\"\nlog_level = \"debug\"\ns3_path_style = true\n").unwrap();
        let cfg = Config::from_sources(
            Some(&file),
            env(&[
                ("PULSE_LOG_LEVEL", "warn"),
                ("PULSE_DATABASE_POOL_SIZE", "4"),
                ("PULSE_API_KEY", "x"),
                ("HOME", "/"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:6000"); // file over default
        assert_eq!(cfg.log_level, "warn"); // env over file
        assert_eq!(cfg.database_pool_size, 4);
        assert!(cfg.s3_path_style);
        assert_eq!(cfg.metrics_listen, "127.0.0.1:9464"); // default kept
        assert_eq!(cfg.log_format, LogFormat::Human);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Config::from_sources(None, env(&[("PULSE_LISTEN", "nowhere")])).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
        let err = Config::from_sources(None, env(&[("PULSE_LOG_FORMAT", "xml")])).unwrap_err().to_string();
        assert!(err.contains("log_format") || err.contains("xml"), "{err}");
        let err = Config::from_sources(None, env(&[("PULSE_DATABASE_POOL_SIZE", "0")])).unwrap_err().to_string();
        assert!(err.contains("database_pool_size"), "{err}");
    }
}
