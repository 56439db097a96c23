//! Metadata storage: PostgreSQL through a `tokio-postgres` pool, one schema per
//! service, or the embedded default (SQLite files under the state directory)
//! when no database URL is configured. Each service defines its store trait
//! with one implementation per backend; this module gives them connections and
//! applies their embedded migrations idempotently at start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::config::Config;
use crate::error::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL is unreachable: {0}")]
    Pool(String),
    /// The connection's TLS settings are wrong or the server's certificate was
    /// refused; the message says what to change.
    #[error("PostgreSQL TLS: {0}")]
    Tls(String),
    #[error("embedded store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("embedded store: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Pool(_) => ErrorCode::Unavailable,
            Self::Postgres(e) if e.is_closed() => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// True when PostgreSQL refused a row because it already exists.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Postgres(e) => e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            _ => false,
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Self::Postgres(e),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// One schema migration, in both dialects. Versions start at 1 and only grow;
/// a released migration is never edited.
#[derive(Debug)]
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    /// Runs with `search_path` set to the service's schema.
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

/// The process-wide metadata database: a PostgreSQL pool or the embedded
/// state directory. Services open their schema from it.
#[derive(Clone)]
pub enum Database {
    Postgres(Pool),
    Embedded(PathBuf),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres(_) => f.write_str("Database::Postgres"),
            Self::Embedded(dir) => write!(f, "Database::Embedded({})", dir.display()),
        }
    }
}

impl Database {
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        match &config.database_url {
            Some(url) => Self::postgres_with_ca(url, config.database_pool_size, config.database_ca.as_deref()).await,
            None => Ok(Self::Embedded(config.state_dir.join("db"))),
        }
    }

    /// A pool for this URL, checked with one round trip so a wrong URL fails
    /// at start, not on the first request. TLS follows the URL's `sslmode`
    /// as libpq reads it (`disable`, `prefer` (the default), `require`,
    /// `verify-ca`, `verify-full`, with `sslrootcert`); a `verify-*` mode
    /// with no `sslrootcert` checks the server against the system's CA
    /// certificates.
    pub async fn postgres(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::postgres_with_ca(url, pool_size, None).await
    }

    /// [`Database::postgres`] with `database_ca`: the PEM CA file used when
    /// the URL names no `sslrootcert`.
    pub async fn postgres_with_ca(url: &str, pool_size: usize, ca: Option<&Path>) -> Result<Self, StoreError> {
        let settings = tls::Settings::from_url(url, ca)?;
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match settings.connector()? {
            Some(tls) => Manager::from_config(settings.config.clone(), tls, manager_config),
            None => Manager::from_config(settings.config.clone(), tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let client = pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => settings.explain(e),
            other => StoreError::from(other),
        })?;
        client.simple_query("SELECT 1").await?;
        Ok(Self::Postgres(pool))
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(_) => "PostgreSQL".into(),
            Self::Embedded(dir) => format!("embedded ({})", dir.display()),
        }
    }

    /// Opens `schema`, applying any of `migrations` not yet applied.
    pub async fn open(&self, schema: &'static str, migrations: &'static [Migration]) -> Result<Db, StoreError> {
        match self {
            Self::Postgres(pool) => {
                migrate_postgres(pool, schema, migrations).await?;
                Ok(Db::Postgres(PgDb { pool: pool.clone(), schema }))
            }
            Self::Embedded(dir) => {
                let db = SqliteDb::open(&dir.join(format!("{schema}.sqlite3")))?;
                db.call(move |conn| migrate_sqlite(conn, migrations)).await?;
                Ok(Db::Embedded(db))
            }
        }
    }
}

/// One service's schema on one backend.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgDb),
    Embedded(SqliteDb),
}

#[derive(Clone)]
pub struct PgDb {
    pub pool: Pool,
    pub schema: &'static str,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgDb({})", self.schema)
    }
}

impl PgDb {
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

async fn migrate_postgres(pool: &Pool, schema: &str, migrations: &[Migration]) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Many processes may start at once: one migrates, the others wait.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("pulse.migrate.{schema}")]).await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}._migrations (
             version INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .await?;
    let applied: Vec<i32> =
        tx.query(&format!("SELECT version FROM {schema}._migrations"), &[]).await?.iter().map(|r| r.get(0)).collect();
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(&format!("SET LOCAL search_path TO {schema}; {}", m.postgres)).await?;
        tx.execute(
            &format!("INSERT INTO {schema}._migrations (version, description) VALUES ($1, $2)"),
            &[&m.version, &m.description],
        )
        .await?;
        tracing::info!(schema, version = m.version, description = m.description, "applied migration");
    }
    tx.commit().await?;
    Ok(())
}

fn migrate_sqlite(conn: &mut rusqlite::Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS _migrations (
             version INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at INTEGER NOT NULL)",
    )?;
    let applied: Vec<i32> = {
        let mut stmt = tx.prepare("SELECT version FROM _migrations")?;
        stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        tx.execute_batch(m.sqlite)?;
        tx.execute(
            "INSERT INTO _migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.description, chrono::Utc::now().timestamp_millis()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// An embedded SQLite database. One connection per schema, used from the
/// blocking pool so the async runtime never waits on disk.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteDb")
    }
}

impl SqliteDb {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = rusqlite::Connection::open(path)?;
        // WAL lets `pulse serve` processes that share a state directory read
        // while one writes; the busy timeout makes writers queue, not fail.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 10000;",
        )?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("embedded store task failed: {e}")))?
    }
}

/// PostgreSQL over TLS (rustls), with libpq's meaning of `sslmode`:
///
/// | `sslmode`          | encrypted                        | server certificate checked          |
/// |--------------------|----------------------------------|-------------------------------------|
/// | `disable`          | never                            | —                                   |
/// | `prefer` (default) | when the server offers TLS       | only when a CA is given             |
/// | `require`          | always, or the connection fails  | only when a CA is given             |
/// | `verify-ca`        | always                           | signed by the CA                    |
/// | `verify-full`      | always                           | signed by the CA and names the host |
///
/// The CA is `sslrootcert=<PEM path>` in the URL, else `database_ca`, else
/// (for the `verify-*` modes only) the system's CA certificates;
/// `sslrootcert=system` names the system's certificates explicitly and, as in
/// libpq, needs `verify-full`. tokio-postgres parses only `disable`, `prefer`
/// and `require`, and no `sslrootcert`: those are taken out of the URL here,
/// the `verify-*` modes handed to it as `require`, and the checks done by the
/// rustls verifiers below.
mod tls {
    use std::borrow::Cow;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use super::StoreError;

    /// libpq's `sslmode`s (`allow` aside: tokio-postgres cannot try plain first).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum SslMode {
        Disable,
        Prefer,
        Require,
        VerifyCa,
        VerifyFull,
    }

    impl SslMode {
        fn parse(value: &str) -> Result<Self, StoreError> {
            Ok(match value {
                "disable" => Self::Disable,
                "prefer" => Self::Prefer,
                "require" => Self::Require,
                "verify-ca" => Self::VerifyCa,
                "verify-full" => Self::VerifyFull,
                "allow" => {
                    return Err(StoreError::Tls(
                        "database_url has sslmode=allow, which Pulse does not support: use sslmode=prefer \
                         (TLS when the server offers it) or sslmode=disable"
                            .into(),
                    ));
                }
                other => {
                    return Err(StoreError::Tls(format!(
                        "database_url has sslmode={other}: use one of disable, prefer, require, verify-ca, verify-full"
                    )));
                }
            })
        }

        fn name(self) -> &'static str {
            match self {
                Self::Disable => "disable",
                Self::Prefer => "prefer",
                Self::Require => "require",
                Self::VerifyCa => "verify-ca",
                Self::VerifyFull => "verify-full",
            }
        }
    }

    /// Where the trusted CA certificates come from.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(super) enum Roots {
        /// `sslrootcert=<path>` in the URL.
        UrlFile(PathBuf),
        /// The `database_ca` setting.
        Setting(PathBuf),
        /// The system's store (`sslrootcert=system`, or nothing given).
        System,
    }

    impl std::fmt::Display for Roots {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::UrlFile(path) => write!(f, "sslrootcert={} in database_url", path.display()),
                Self::Setting(path) => write!(f, "database_ca ({})", path.display()),
                Self::System => f.write_str("the system's CA certificates"),
            }
        }
    }

    /// `database_url` read as libpq would.
    #[derive(Debug)]
    pub(super) struct Settings {
        /// What tokio-postgres is given (no `sslrootcert`, no `verify-*`).
        pub config: tokio_postgres::Config,
        pub mode: SslMode,
        pub roots: Roots,
        /// True when the server's certificate is checked against `roots`.
        pub verify: bool,
    }

    impl Settings {
        pub fn from_url(url: &str, database_ca: Option<&Path>) -> Result<Self, StoreError> {
            let Split { rest, sslmode, sslrootcert } = split_url(url);
            let mut config: tokio_postgres::Config = rest.parse().map_err(|e| {
                let hint = if url.contains("ssl") && !is_url_form(url) {
                    " (sslmode=verify-ca, sslmode=verify-full and sslrootcert need the postgres:// URL form)"
                } else {
                    ""
                };
                StoreError::Pool(format!("database_url is not a PostgreSQL URL: {e}{hint}"))
            })?;
            let roots = match sslrootcert.as_deref() {
                Some("system") => Roots::System,
                Some(path) => Roots::UrlFile(PathBuf::from(path)),
                None => database_ca.map_or(Roots::System, |path| Roots::Setting(path.to_owned())),
            };
            let mode = match sslmode.as_deref() {
                Some(value) => SslMode::parse(value)?,
                // libpq: sslrootcert=system makes verify-full the default.
                None if sslrootcert.as_deref() == Some("system") => SslMode::VerifyFull,
                // The key=value form, or no sslmode: what tokio-postgres read.
                None => match config.get_ssl_mode() {
                    tokio_postgres::config::SslMode::Disable => SslMode::Disable,
                    tokio_postgres::config::SslMode::Prefer => SslMode::Prefer,
                    _ => SslMode::Require,
                },
            };
            if sslrootcert.as_deref() == Some("system") && mode != SslMode::VerifyFull {
                return Err(StoreError::Tls(format!(
                    "database_url has sslrootcert=system with sslmode={}: the system's CA certificates vouch for \
                     names only, so use sslmode=verify-full",
                    mode.name()
                )));
            }
            config.ssl_mode(match mode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
            let verify = match mode {
                SslMode::Disable => false,
                // libpq checks the chain whenever it has a root certificate.
                SslMode::Prefer | SslMode::Require => roots != Roots::System,
                SslMode::VerifyCa | SslMode::VerifyFull => true,
            };
            Ok(Self { config, mode, roots, verify })
        }

        /// The rustls connector for these settings; `None` with `sslmode=disable`.
        pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, StoreError> {
            if self.mode == SslMode::Disable {
                return Ok(None);
            }
            pulse_client::install_tls_provider();
            let provider = CryptoProvider::get_default()
                .cloned()
                .ok_or_else(|| StoreError::Tls("no rustls crypto provider is installed".into()))?;
            let verifier: Arc<dyn ServerCertVerifier> = if !self.verify {
                Arc::new(AnyCertificate(provider.clone()))
            } else {
                let roots = Arc::new(self.load_roots()?);
                match self.mode {
                    SslMode::VerifyFull => {
                        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                            .build()
                            .map_err(|e| StoreError::Tls(format!("cannot use {}: {e}", self.roots)))?
                    }
                    _ => Arc::new(SignedByCa { roots, provider: provider.clone() }),
                }
            };
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| StoreError::Tls(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Ok(Some(MakeRustlsConnect::new(config)))
        }

        fn load_roots(&self) -> Result<RootCertStore, StoreError> {
            let mut store = RootCertStore::empty();
            match &self.roots {
                Roots::UrlFile(path) | Roots::Setting(path) => {
                    let unreadable = |e: &dyn std::fmt::Display| {
                        StoreError::Tls(format!("cannot read the CA certificates of {}: {e}", self.roots))
                    };
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| unreadable(&e))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| unreadable(&e))?;
                    if certs.is_empty() {
                        return Err(StoreError::Tls(format!(
                            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                            self.roots
                        )));
                    }
                    for cert in certs {
                        store.add(cert).map_err(|e| {
                            StoreError::Tls(format!("{} holds a certificate that cannot be a CA: {e}", self.roots))
                        })?;
                    }
                }
                Roots::System => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _) = store.add_parsable_certificates(found.certs);
                    if added == 0 {
                        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                        return Err(StoreError::Tls(format!(
                            "database_url has sslmode={} but this system has no CA certificates ({}): set \
                             database_ca (PULSE_DATABASE_CA) or sslrootcert= in database_url to the PEM file of \
                             the CA that signed the server's certificate",
                            self.mode.name(),
                            if errors.is_empty() { "none found".into() } else { errors.join("; ") },
                        )));
                    }
                }
            }
            Ok(store)
        }

        /// Turns a failed first connection into a message that says what to
        /// change, when TLS is why it failed.
        pub fn explain(&self, error: tokio_postgres::Error) -> StoreError {
            let host = self.host();
            let mode = self.mode.name();
            let Some(cause) = std::error::Error::source(&error) else { return StoreError::Postgres(error) };
            if cause.to_string() == "server does not support TLS" {
                return StoreError::Tls(format!(
                    "the server at {host} does not offer TLS but database_url has sslmode={mode}: turn on ssl \
                     in the server's postgresql.conf, or use sslmode=prefer (TLS only when offered) or \
                     sslmode=disable"
                ));
            }
            let rustls_error = cause
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.get_ref())
                .and_then(|e| e.downcast_ref::<rustls::Error>());
            let Some(rustls::Error::InvalidCertificate(why)) = rustls_error else {
                return match rustls_error {
                    Some(e) => StoreError::Tls(format!("the TLS handshake with {host} failed: {e}")),
                    None => StoreError::Postgres(error),
                };
            };
            let trust = "set sslrootcert=<PEM file> in database_url, or database_ca (PULSE_DATABASE_CA), to the CA \
                         that signed it (for Amazon RDS, the region's certificate bundle); or, to encrypt without \
                         checking it, use sslmode=require and no CA";
            let what = match why {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    format!("is not signed by a CA in {}, which sslmode={mode} requires: {trust}", self.roots)
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                    "does not name that host, which sslmode={mode} requires: connect with a host name the \
                     certificate names, or use sslmode=verify-ca to check only who signed it"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "has expired: renew the server's certificate".to_string()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "is not valid yet: check the clocks of this machine and the server".to_string()
                }
                other => format!("was refused ({other:?}) with sslmode={mode}: {trust}"),
            };
            StoreError::Tls(format!("the certificate of the server at {host} {what}"))
        }

        fn host(&self) -> String {
            let hosts: Vec<String> = self
                .config
                .get_hosts()
                .iter()
                .map(|host| match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            if hosts.is_empty() { "localhost".into() } else { hosts.join(",") }
        }
    }

    fn is_url_form(url: &str) -> bool {
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    struct Split<'a> {
        /// The URL without `sslmode` and `sslrootcert`.
        rest: Cow<'a, str>,
        sslmode: Option<String>,
        sslrootcert: Option<String>,
    }

    /// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query.
    /// The key=value form is left whole (tokio-postgres reads its sslmode).
    fn split_url(url: &str) -> Split<'_> {
        let whole = Split { rest: Cow::Borrowed(url), sslmode: None, sslrootcert: None };
        let Some(scheme_end) = url.find("://").filter(|_| is_url_form(url)).map(|i| i + 3) else { return whole };
        // As tokio-postgres reads it: user info runs to the first `@`, then
        // the query starts at the first `?`.
        let after_user = url[scheme_end..].find('@').map_or(scheme_end, |at| scheme_end + at + 1);
        let Some(q) = url[after_user..].find('?').map(|q| after_user + q) else { return whole };
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let (mut sslmode, mut sslrootcert, mut kept) = (None, None, Vec::new());
        for pair in url[q + 1..].split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match decode(key).as_str() {
                "sslmode" => sslmode = Some(decode(value)),
                "sslrootcert" => sslrootcert = Some(decode(value)),
                _ => kept.push(pair),
            }
        }
        if sslmode.is_none() && sslrootcert.is_none() {
            return whole;
        }
        let base = &url[..q];
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        Split { rest: Cow::Owned(rest), sslmode, sslrootcert }
    }

    /// `sslmode=prefer`/`require` with no CA: any certificate is accepted, as
    /// libpq does. The traffic is encrypted against eavesdroppers, but an
    /// active attacker who can answer in the server's place is not detected;
    /// `verify-full` (with the server's CA) is what rules that out. The
    /// handshake signatures are still checked, so the peer does hold the key
    /// of the certificate it presents.
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// `sslmode=verify-ca` (and `prefer`/`require` with a CA): the chain must
    /// lead to one of `roots` and be in date; the names in the certificate
    /// are not compared with the host.
    #[derive(Debug)]
    struct SignedByCa {
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for SignedByCa {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                &self.roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    }
}
