//! Metadata storage: PostgreSQL through a `tokio-postgres` pool, one schema per
//! service, or the embedded default (SQLite files under the state directory)
//! when no database URL is configured. Each service defines its store trait
//! with one implementation per backend; this module gives them connections and
//! applies their embedded migrations idempotently at start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Config;
use crate::error::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL is unreachable: {0}")]
    Pool(String),
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
            Some(url) => Self::postgres(url, config.database_pool_size).await,
            None => Ok(Self::Embedded(config.state_dir.join("db"))),
        }
    }

    /// A pool for this URL, checked with one round trip so a wrong URL fails
    /// at start, not on the first request.
    pub async fn postgres(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let pg: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Pool(format!("database_url is not a PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        pool.get().await?.simple_query("SELECT 1").await?;
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
