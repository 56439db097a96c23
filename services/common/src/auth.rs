//! Tenants and API keys. Keys are `pk_<26 chars>_<secret>`; only their SHA-256
//! is stored (the secret has 256 random bits, so a slow hash adds nothing).
//! The admin key manages tenants and keys and nothing else.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::PulseError;
use crate::ids;
use crate::paging;
use crate::store::{Db, PgDb, SqliteDb, StoreError};
use crate::time::{from_millis, now_millis};

/// Who is calling, put in each request's extensions by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// None for the admin key.
    pub tenant_id: Option<String>,
    pub key_id: String,
    pub admin: bool,
}

impl Caller {
    /// The caller's tenant; the admin key has none.
    pub fn tenant(&self) -> Result<&str, PulseError> {
        self.tenant_id.as_deref().ok_or_else(|| {
            PulseError::PermissionDenied(
                "the admin key manages tenants and keys only; call with a tenant's API key".into(),
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Where tenants and keys live. One implementation per backend.
#[async_trait]
pub trait AuthStore: Send + Sync + std::fmt::Debug {
    /// Fails with a unique violation when the name is taken.
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError>;
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    /// Tenants with id greater than `after`, by id.
    async fn tenants(&self, after: &str, limit: u32) -> Result<Vec<Tenant>, StoreError>;
    async fn insert_key(&self, key: &ApiKey, hash: &str) -> Result<(), StoreError>;
    /// The key and its stored hash.
    async fn key(&self, id: &str) -> Result<Option<(ApiKey, String)>, StoreError>;
    async fn keys(&self, tenant_id: &str, after: &str, limit: u32) -> Result<Vec<ApiKey>, StoreError>;
    /// Sets `revoked_at` unless already set; returns the key as stored.
    async fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError>;
    /// The deployment's service-token signing secret: `candidate` when none
    /// is stored yet (the first process to ask stores it), else the stored one.
    async fn service_secret(&self, candidate: &str) -> Result<String, StoreError>;
}

pub const SCHEMA: &str = "platform";

/// The platform schema: tenants, keys, and the idempotency records.
pub static MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration {
        version: 1,
        description: "tenants, api keys, idempotency records",
        postgres: "
        CREATE TABLE tenants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TIMESTAMPTZ NOT NULL);
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            revoked_at TIMESTAMPTZ);
        CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);
        CREATE TABLE idempotency (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            method TEXT NOT NULL,
            request_sha256 TEXT NOT NULL,
            response BYTEA,
            claimed_at TIMESTAMPTZ NOT NULL,
            completed_at TIMESTAMPTZ,
            PRIMARY KEY (scope, key));
        CREATE INDEX idempotency_claimed ON idempotency (claimed_at);",
        sqlite: "
        CREATE TABLE tenants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL);
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER);
        CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);
        CREATE TABLE idempotency (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            method TEXT NOT NULL,
            request_sha256 TEXT NOT NULL,
            response BLOB,
            claimed_at INTEGER NOT NULL,
            completed_at INTEGER,
            PRIMARY KEY (scope, key));
        CREATE INDEX idempotency_claimed ON idempotency (claimed_at);",
    },
    crate::store::Migration {
        version: 2,
        description: "service-token signing secret",
        postgres: "CREATE TABLE service_secrets (id TEXT PRIMARY KEY, secret TEXT NOT NULL);",
        sqlite: "CREATE TABLE service_secrets (id TEXT PRIMARY KEY, secret TEXT NOT NULL);",
    },
];

pub fn auth_store(db: &Db) -> Arc<dyn AuthStore> {
    match db {
        Db::Postgres(pg) => Arc::new(PgAuthStore(pg.clone())),
        Db::Embedded(lite) => Arc::new(SqliteAuthStore(lite.clone())),
    }
}

#[derive(Debug)]
struct PgAuthStore(PgDb);

fn pg_tenant(r: &tokio_postgres::Row) -> Tenant {
    Tenant { id: r.get(0), name: r.get(1), created_at: r.get(2) }
}

fn pg_key(r: &tokio_postgres::Row) -> ApiKey {
    ApiKey { id: r.get(0), tenant_id: r.get(1), name: r.get(2), created_at: r.get(3), revoked_at: r.get(4) }
}

#[async_trait]
impl AuthStore for PgAuthStore {
    async fn insert_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        let c = self.0.client().await?;
        c.execute(
            "INSERT INTO platform.tenants (id, name, created_at) VALUES ($1, $2, $3)",
            &[&t.id, &t.name, &t.created_at],
        )
        .await?;
        Ok(())
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let c = self.0.client().await?;
        let row = c.query_opt("SELECT id, name, created_at FROM platform.tenants WHERE id = $1", &[&id]).await?;
        Ok(row.as_ref().map(pg_tenant))
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let c = self.0.client().await?;
        let row = c.query_opt("SELECT id, name, created_at FROM platform.tenants WHERE name = $1", &[&name]).await?;
        Ok(row.as_ref().map(pg_tenant))
    }

    async fn tenants(&self, after: &str, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        let c = self.0.client().await?;
        let rows = c
            .query(
                "SELECT id, name, created_at FROM platform.tenants WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(pg_tenant).collect())
    }

    async fn insert_key(&self, k: &ApiKey, hash: &str) -> Result<(), StoreError> {
        let c = self.0.client().await?;
        c.execute(
            "INSERT INTO platform.api_keys (id, tenant_id, name, secret_sha256, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&k.id, &k.tenant_id, &k.name, &hash, &k.created_at],
        )
        .await?;
        Ok(())
    }

    async fn key(&self, id: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        let c = self.0.client().await?;
        let row = c
            .query_opt(
                "SELECT id, tenant_id, name, created_at, revoked_at, secret_sha256 FROM platform.api_keys WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| (pg_key(&r), r.get(5))))
    }

    async fn keys(&self, tenant_id: &str, after: &str, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let c = self.0.client().await?;
        let rows = c
            .query(
                "SELECT id, tenant_id, name, created_at, revoked_at FROM platform.api_keys
                 WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&tenant_id, &after, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(pg_key).collect())
    }

    async fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError> {
        let c = self.0.client().await?;
        let row = c
            .query_opt(
                "UPDATE platform.api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1
                 RETURNING id, tenant_id, name, created_at, revoked_at",
                &[&id, &at],
            )
            .await?;
        Ok(row.as_ref().map(pg_key))
    }

    async fn service_secret(&self, candidate: &str) -> Result<String, StoreError> {
        let c = self.0.client().await?;
        c.execute(
            "INSERT INTO platform.service_secrets (id, secret) VALUES ('service-token', $1) ON CONFLICT DO NOTHING",
            &[&candidate],
        )
        .await?;
        let row = c.query_one("SELECT secret FROM platform.service_secrets WHERE id = 'service-token'", &[]).await?;
        Ok(row.get(0))
    }
}

#[derive(Debug)]
struct SqliteAuthStore(SqliteDb);

fn lite_tenant(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant { id: r.get(0)?, name: r.get(1)?, created_at: from_millis(r.get(2)?) })
}

fn lite_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        created_at: from_millis(r.get(3)?),
        revoked_at: r.get::<_, Option<i64>>(4)?.map(from_millis),
    })
}

#[async_trait]
impl AuthStore for SqliteAuthStore {
    async fn insert_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        let t = t.clone();
        self.0
            .call(move |c| {
                c.execute(
                    "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![t.id, t.name, t.created_at.timestamp_millis()],
                )?;
                Ok(())
            })
            .await
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let id = id.to_string();
        self.0
            .call(move |c| {
                use rusqlite::OptionalExtension;
                Ok(c.query_row("SELECT id, name, created_at FROM tenants WHERE id = ?1", [id], lite_tenant)
                    .optional()?)
            })
            .await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let name = name.to_string();
        self.0
            .call(move |c| {
                use rusqlite::OptionalExtension;
                Ok(c.query_row("SELECT id, name, created_at FROM tenants WHERE name = ?1", [name], lite_tenant)
                    .optional()?)
            })
            .await
    }

    async fn tenants(&self, after: &str, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        let after = after.to_string();
        self.0
            .call(move |c| {
                let mut stmt =
                    c.prepare("SELECT id, name, created_at FROM tenants WHERE id > ?1 ORDER BY id LIMIT ?2")?;
                let rows = stmt.query_map(rusqlite::params![after, limit], lite_tenant)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn insert_key(&self, k: &ApiKey, hash: &str) -> Result<(), StoreError> {
        let (k, hash) = (k.clone(), hash.to_string());
        self.0
            .call(move |c| {
                c.execute(
                    "INSERT INTO api_keys (id, tenant_id, name, secret_sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![k.id, k.tenant_id, k.name, hash, k.created_at.timestamp_millis()],
                )?;
                Ok(())
            })
            .await
    }

    async fn key(&self, id: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        let id = id.to_string();
        self.0
            .call(move |c| {
                use rusqlite::OptionalExtension;
                Ok(c.query_row(
                    "SELECT id, tenant_id, name, created_at, revoked_at, secret_sha256 FROM api_keys WHERE id = ?1",
                    [id],
                    |r| Ok((lite_key(r)?, r.get(5)?)),
                )
                .optional()?)
            })
            .await
    }

    async fn keys(&self, tenant_id: &str, after: &str, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let (tenant_id, after) = (tenant_id.to_string(), after.to_string());
        self.0
            .call(move |c| {
                let mut stmt = c.prepare(
                    "SELECT id, tenant_id, name, created_at, revoked_at FROM api_keys
                     WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                )?;
                let rows = stmt.query_map(rusqlite::params![tenant_id, after, limit], lite_key)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError> {
        let id = id.to_string();
        self.0
            .call(move |c| {
                use rusqlite::OptionalExtension;
                Ok(c.query_row(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1
                     RETURNING id, tenant_id, name, created_at, revoked_at",
                    rusqlite::params![id, at.timestamp_millis()],
                    lite_key,
                )
                .optional()?)
            })
            .await
    }

    async fn service_secret(&self, candidate: &str) -> Result<String, StoreError> {
        let candidate = candidate.to_string();
        self.0
            .call(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO service_secrets (id, secret) VALUES ('service-token', ?1)",
                    [candidate],
                )?;
                Ok(c.query_row("SELECT secret FROM service_secrets WHERE id = 'service-token'", [], |r| r.get(0))?)
            })
            .await
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison of two hex digests.
fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key id inside a tenant key `pk_<26 chars>_<secret>`.
fn key_id_of(token: &str) -> Option<String> {
    let rest = token.strip_prefix("pk_")?;
    let (body, secret) = rest.split_once('_')?;
    (body.len() == 26 && !secret.is_empty()).then(|| format!("key_{body}"))
}

/// Reads the admin key from `path`, or generates one there (mode 0600).
pub fn load_or_create_admin_key(path: &Path) -> Result<String, PulseError> {
    load_or_create_secret(path, || format!("pa_{}", random_secret()))
}

/// Reads a generated secret, or creates it. Creation is exclusive, so two
/// processes starting on one state directory end up with the same secret.
pub fn load_or_create_secret(path: &Path, generate: impl Fn() -> String) -> Result<String, PulseError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let error = |e: std::io::Error| PulseError::Config(format!("{}: {e}", path.display()));
    for _ in 0..50 {
        match std::fs::read_to_string(path) {
            Ok(k) if !k.trim().is_empty() => return Ok(k.trim().to_string()),
            // Another process created it and is writing it.
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(error)?;
                }
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                opts.mode(0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        let secret = generate();
                        writeln!(f, "{secret}").and_then(|_| f.sync_all()).map_err(error)?;
                        return Ok(secret);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(error(e)),
                }
            }
            Err(e) => return Err(error(e)),
        }
    }
    Err(PulseError::Config(format!("{} stayed empty; remove it and start again", path.display())))
}

/// Writes a secret readable only by its owner.
pub fn write_secret_file(path: &Path, secret: &str) -> Result<(), PulseError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| PulseError::Config(format!("creating {}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|e| PulseError::Config(format!("writing {}: {e}", path.display())))?;
    writeln!(f, "{secret}").map_err(|e| PulseError::Config(format!("writing {}: {e}", path.display())))?;
    Ok(())
}

/// Tenants and keys: creation, listing, revocation and the check of every
/// request's key (with a short cache, so a hot path costs no query).
#[derive(Debug)]
pub struct Auth {
    store: Arc<dyn AuthStore>,
    admin_hash: String,
    cache: Mutex<HashMap<String, (Caller, Instant)>>,
    cache_ttl: Duration,
    service_secret: tokio::sync::OnceCell<String>,
}

const CACHE_CAPACITY: usize = 10_000;
const SERVICE_TOKEN_PREFIX: &str = "pst.";
/// The key id of calls made with a service token.
pub const SERVICE_KEY_ID: &str = "service";

impl Auth {
    pub fn new(store: Arc<dyn AuthStore>, admin_key: &str, cache_ttl: Duration) -> Self {
        Self {
            store,
            admin_hash: token_hash(admin_key),
            cache: Mutex::new(HashMap::new()),
            cache_ttl,
            service_secret: tokio::sync::OnceCell::new(),
        }
    }

    /// Resolves a bearer token to its caller. Unknown, malformed and revoked
    /// keys all answer the same way, so the answer tells an attacker nothing.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, PulseError> {
        let hash = token_hash(token);
        if same_digest(&hash, &self.admin_hash) {
            return Ok(Caller { tenant_id: None, key_id: "admin".into(), admin: true });
        }
        if let Some(rest) = token.strip_prefix(SERVICE_TOKEN_PREFIX) {
            let invalid = || PulseError::Unauthenticated("invalid service token".into());
            let (tenant, mac) = rest.rsplit_once('.').ok_or_else(invalid)?;
            let expected = self.sign(tenant).await?;
            if !same_digest(&expected, mac) {
                return Err(invalid());
            }
            return Ok(Caller { tenant_id: Some(tenant.to_string()), key_id: SERVICE_KEY_ID.into(), admin: false });
        }
        if let Some((caller, at)) = self.cache.lock().unwrap().get(&hash)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(caller.clone());
        }
        let invalid =
            || PulseError::Unauthenticated("invalid API key: check PULSE_API_KEY or ask an admin for a key".into());
        let key_id = key_id_of(token).ok_or_else(invalid)?;
        let (key, stored) = self.store.key(&key_id).await?.ok_or_else(invalid)?;
        if !same_digest(&hash, &stored) || key.revoked_at.is_some() {
            return Err(invalid());
        }
        let caller = Caller { tenant_id: Some(key.tenant_id), key_id: key.id, admin: false };
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(hash, (caller.clone(), Instant::now()));
        Ok(caller)
    }

    /// A token with which Pulse itself acts for `tenant` (a pipeline step
    /// calling another service): an HMAC of the tenant id under the
    /// deployment's signing secret, which every process reads from the
    /// shared platform schema. Such calls pass the same authentication,
    /// idempotency and tenant scoping as a user's.
    pub async fn service_token(&self, tenant: &str) -> Result<String, PulseError> {
        Ok(format!("{SERVICE_TOKEN_PREFIX}{tenant}.{}", self.sign(tenant).await?))
    }

    async fn sign(&self, tenant: &str) -> Result<String, PulseError> {
        use hmac::Mac;
        let secret =
            self.service_secret.get_or_try_init(|| async { self.store.service_secret(&random_secret()).await }).await?;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(tenant.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, PulseError> {
        ids::check_name("name", name)?;
        let tenant = Tenant { id: ids::new_id("ten"), name: name.to_string(), created_at: now_millis() };
        match self.store.insert_tenant(&tenant).await {
            Ok(()) => Ok(tenant),
            Err(e) if e.is_unique_violation() => {
                Err(PulseError::AlreadyExists(format!("a tenant named '{name}' already exists; pick another name")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn tenant(&self, id: &str) -> Result<Tenant, PulseError> {
        ids::check_id("tenant_id", "ten", id)?;
        self.store
            .tenant(id)
            .await?
            .ok_or_else(|| PulseError::NotFound(format!("tenant '{id}' not found; `pulse admin tenants` lists them")))
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, PulseError> {
        Ok(self.store.tenant_by_name(name).await?)
    }

    pub async fn tenants(&self, page_token: &str, page_size: u32) -> Result<(Vec<Tenant>, String), PulseError> {
        let limit = paging::page_size(page_size);
        let tenants = self.store.tenants(page_token, limit).await?;
        let next = paging::next_token(&tenants, limit, |t| &t.id);
        Ok((tenants, next))
    }

    /// A new key for the tenant and its secret, which is never shown again.
    pub async fn create_key(&self, tenant_id: &str, name: &str) -> Result<(ApiKey, String), PulseError> {
        self.tenant(tenant_id).await?;
        if name.len() > 200 {
            return Err(PulseError::invalid("name", "must be at most 200 characters"));
        }
        let id = ids::new_id("key");
        let secret = format!("pk_{}_{}", &id["key_".len()..], random_secret());
        let key = ApiKey {
            id,
            tenant_id: tenant_id.to_string(),
            name: name.to_string(),
            created_at: now_millis(),
            revoked_at: None,
        };
        self.store.insert_key(&key, &token_hash(&secret)).await?;
        Ok((key, secret))
    }

    pub async fn keys(
        &self,
        tenant_id: &str,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<ApiKey>, String), PulseError> {
        self.tenant(tenant_id).await?;
        let limit = paging::page_size(page_size);
        let keys = self.store.keys(tenant_id, page_token, limit).await?;
        let next = paging::next_token(&keys, limit, |k| &k.id);
        Ok((keys, next))
    }

    pub async fn revoke_key(&self, key_id: &str) -> Result<ApiKey, PulseError> {
        ids::check_id("key_id", "key", key_id)?;
        let key = self
            .store
            .revoke_key(key_id, now_millis())
            .await?
            .ok_or_else(|| PulseError::NotFound(format!("API key '{key_id}' not found")))?;
        // This process forgets it at once; others within auth_cache_seconds.
        self.cache.lock().unwrap().retain(|_, (c, _)| c.key_id != key_id);
        Ok(key)
    }

    /// Creates tenant `name` with one key and writes the key to `path`, unless
    /// any tenant exists already. Returns the tenant when it was created.
    pub async fn bootstrap_tenant(&self, name: &str, path: &Path) -> Result<Option<Tenant>, PulseError> {
        if !self.store.tenants("", 1).await?.is_empty() {
            return Ok(None);
        }
        let tenant = self.create_tenant(name).await?;
        let (_, secret) = self.create_key(&tenant.id, "bootstrap").await?;
        write_secret_file(path, &secret)?;
        Ok(Some(tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_read_from_tokens() {
        assert_eq!(
            key_id_of("pk_01JDQ0000000000000000000AB_secret").as_deref(),
            Some("key_01JDQ0000000000000000000AB")
        );
        assert_eq!(key_id_of("pk_short_secret"), None);
        assert_eq!(key_id_of("Bearer x"), None);
        assert_eq!(key_id_of("pk_01JDQ0000000000000000000AB_"), None);
    }

    #[test]
    fn secrets_are_created_once_by_racing_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/admin.key");
        let made: Vec<String> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || load_or_create_secret(&path, || format!("secret-{i}")).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(made.iter().all(|m| m == &made[0]), "{made:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), made[0]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn digests_compare_exactly() {
        assert!(same_digest("abc", "abc"));
        assert!(!same_digest("abc", "abd"));
        assert!(!same_digest("abc", "abcd"));
    }
}
