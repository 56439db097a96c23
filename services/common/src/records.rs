//! Versioned records and the event outbox, once for every service.
//!
//! A service keeps its entities (datasources, jobs, datasets, versions, …) as
//! protobuf-encoded bodies in one `records` table of its schema, keyed by
//! tenant, kind and id, with a parent and a status for listing and a revision
//! for compare-and-set. [`RecordStore::apply`] writes several records and
//! events in one transaction, so a state change and its event commit together
//! or not at all (an outbox the event log reads).

use std::sync::Arc;

use crate::store::{Db, PgDb, SqliteDb, StoreError};

/// The table both dialects create; services list it as their first migration.
pub const POSTGRES: &str = "
CREATE TABLE records (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT '',
    revision BIGINT NOT NULL,
    body BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, kind, id)
);
CREATE INDEX records_parent ON records (tenant, kind, parent, id);
CREATE INDEX records_status ON records (kind, status);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    entity TEXT NOT NULL,
    at BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX events_tenant_name ON events (tenant, name, seq);
";

pub const SQLITE: &str = "
CREATE TABLE records (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT '',
    revision INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, id)
) WITHOUT ROWID;
CREATE INDEX records_parent ON records (tenant, kind, parent, id);
CREATE INDEX records_status ON records (kind, status);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    entity TEXT NOT NULL,
    at INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX events_tenant_name ON events (tenant, name, seq);
";

/// The lease column of job queues (a second migration of the services whose
/// workers claim records with [`RecordStore::claim`]): the time in ms until
/// which a worker holds the record; 0 or past means claimable.
pub const LEASES_POSTGRES: &str = "
ALTER TABLE records ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
CREATE INDEX records_claim ON records (kind, status, lease_until, created_at);
";

pub const LEASES_SQLITE: &str = "
ALTER TABLE records ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX records_claim ON records (kind, status, lease_until, created_at);
";

/// The migrations of a service that keeps records and claims jobs from
/// them (snapshot, trainer).
pub static JOB_QUEUE_MIGRATIONS: &[crate::store::Migration] = &[
    crate::store::Migration { version: 1, description: "records and events", postgres: POSTGRES, sqlite: SQLITE },
    crate::store::Migration { version: 2, description: "job leases", postgres: LEASES_POSTGRES, sqlite: LEASES_SQLITE },
];

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub tenant: String,
    pub kind: String,
    pub id: String,
    pub parent: String,
    pub status: String,
    pub revision: i64,
    pub body: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Record {
    pub fn decode<T: prost::Message + Default>(&self) -> Result<T, StoreError> {
        T::decode(self.body.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("{} record '{}' does not decode: {e}", self.kind, self.id)))
    }
}

/// An event to append with a write (names like `pulse.snapshot.created.v1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    /// The entity it is about, e.g. `ext_…` or `orders@3`.
    pub entity: String,
    /// A JSON object.
    pub payload: serde_json::Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub entity: String,
    pub at: i64,
    pub payload: serde_json::Value,
}

/// One write of an atomic batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// Fails the batch when the record exists.
    Insert {
        kind: &'static str,
        id: String,
        parent: String,
        status: String,
        body: Vec<u8>,
    },
    /// Fails the batch unless the stored revision is `revision`.
    Update {
        kind: &'static str,
        id: String,
        revision: i64,
        parent: String,
        status: String,
        body: Vec<u8>,
        /// Sets the lease column (job queues only); `None` keeps it.
        lease_until: Option<i64>,
    },
    /// Fails the batch unless the stored revision is `revision`.
    Delete {
        kind: &'static str,
        id: String,
        revision: i64,
    },
    Event(Event),
}

impl Write {
    pub fn insert(kind: &'static str, id: &str, parent: &str, status: &str, body: &impl prost::Message) -> Self {
        Self::Insert {
            kind,
            id: id.to_string(),
            parent: parent.to_string(),
            status: status.to_string(),
            body: body.encode_to_vec(),
        }
    }

    /// Replaces `record` (at its revision) with a new body and status.
    pub fn update(record: &Record, status: &str, body: &impl prost::Message) -> Self {
        Self::Update {
            kind: kind_static(&record.kind),
            id: record.id.clone(),
            revision: record.revision,
            parent: record.parent.clone(),
            status: status.to_string(),
            body: body.encode_to_vec(),
            lease_until: None,
        }
    }

    /// Also sets the record's lease column: a worker renewing its hold
    /// (`now + lease`), or releasing it (`0`) when the job ends or is queued
    /// again. Only for kinds claimed with [`RecordStore::claim`].
    pub fn leased_until(mut self, until_ms: i64) -> Self {
        if let Self::Update { lease_until, .. } = &mut self {
            *lease_until = Some(until_ms);
        }
        self
    }

    pub fn event(name: &str, entity: &str, payload: serde_json::Value) -> Self {
        Self::Event(Event { name: name.to_string(), entity: entity.to_string(), payload })
    }
}

/// Record kinds are a small fixed set per service; interning keeps `Write`
/// free of lifetimes.
fn kind_static(kind: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static KINDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = KINDS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = set.get(kind) {
        return k;
    }
    let leaked: &'static str = Box::leak(kind.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// Filters of a list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery<'a> {
    pub parent: Option<&'a str>,
    pub status: Option<&'a str>,
    /// Exclusive paging cursor: ids after (or before, newest first) this one.
    pub after: &'a str,
    pub limit: u32,
    pub newest_first: bool,
}

#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + std::fmt::Debug {
    async fn get(&self, tenant: &str, kind: &str, id: &str) -> Result<Option<Record>, StoreError>;
    async fn list(&self, tenant: &str, kind: &str, q: ListQuery<'_>) -> Result<Vec<Record>, StoreError>;
    /// Records of `kind` in any of `statuses`, across tenants (for workers).
    async fn by_status(&self, kind: &str, statuses: &[&str], limit: u32) -> Result<Vec<Record>, StoreError>;
    /// How many records of `kind` are in any of `statuses`, across tenants
    /// (queue depth metrics).
    async fn count(&self, kind: &str, statuses: &[&str]) -> Result<u64, StoreError>;
    /// Takes the oldest record of `kind` in one of `statuses` whose lease is
    /// free (never held, released or expired) and holds it until `until_ms`,
    /// across tenants. On PostgreSQL the row is picked with `FOR UPDATE SKIP
    /// LOCKED`, so concurrent workers on many machines each get a different
    /// record without waiting on one another. The claim bumps the revision:
    /// a previous holder that lost its lease fails its next compare-and-set.
    /// The caller then writes its new state with `Write::update(..)
    /// .leased_until(..)` at the returned revision.
    async fn claim(&self, kind: &str, statuses: &[&str], until_ms: i64) -> Result<Option<Record>, StoreError>;
    /// Applies every write or none. `Ok(false)` when an insert found its id
    /// taken or an update or delete found another revision.
    async fn apply(&self, tenant: &str, writes: Vec<Write>) -> Result<bool, StoreError>;
    /// Events of the tenant after `after_seq`, oldest first, optionally of one
    /// name.
    async fn events(
        &self,
        tenant: &str,
        name: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;
}

pub fn record_store(db: &Db) -> Arc<dyn RecordStore> {
    match db {
        Db::Postgres(pg) => Arc::new(PgRecords { db: pg.clone() }),
        Db::Embedded(sqlite) => Arc::new(SqliteRecords { db: sqlite.clone() }),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A new event message id: a UUIDv7 in its hyphenated form (the ids
/// [`Write::event`] stores), so ids sort by time.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[derive(Debug)]
struct PgRecords {
    db: PgDb,
}

const COLUMNS: &str = "tenant, kind, id, parent, status, revision, body, created_at, updated_at";

fn pg_record(r: &tokio_postgres::Row) -> Record {
    Record {
        tenant: r.get(0),
        kind: r.get(1),
        id: r.get(2),
        parent: r.get(3),
        status: r.get(4),
        revision: r.get(5),
        body: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
    }
}

#[async_trait::async_trait]
impl RecordStore for PgRecords {
    async fn get(&self, tenant: &str, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let client = self.db.client().await?;
        let sql =
            format!("SELECT {COLUMNS} FROM {}.records WHERE tenant = $1 AND kind = $2 AND id = $3", self.db.schema);
        let stmt = client.prepare_cached(&sql).await?;
        Ok(client.query_opt(&stmt, &[&tenant, &kind, &id]).await?.as_ref().map(pg_record))
    }

    async fn list(&self, tenant: &str, kind: &str, q: ListQuery<'_>) -> Result<Vec<Record>, StoreError> {
        let client = self.db.client().await?;
        let (cmp, order) = if q.newest_first { ("<", "DESC") } else { (">", "ASC") };
        let sql = format!(
            "SELECT {COLUMNS} FROM {}.records WHERE tenant = $1 AND kind = $2 AND ($3 = '' OR id {cmp} $3) \
             AND ($4::text IS NULL OR parent = $4) AND ($5::text IS NULL OR status = $5) \
             ORDER BY id {order} LIMIT $6",
            self.db.schema
        );
        let stmt = client.prepare_cached(&sql).await?;
        let limit = i64::from(q.limit.max(1));
        let rows = client.query(&stmt, &[&tenant, &kind, &q.after, &q.parent, &q.status, &limit]).await?;
        Ok(rows.iter().map(pg_record).collect())
    }

    async fn by_status(&self, kind: &str, statuses: &[&str], limit: u32) -> Result<Vec<Record>, StoreError> {
        let client = self.db.client().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM {}.records WHERE kind = $1 AND status = ANY($2) ORDER BY id LIMIT $3",
            self.db.schema
        );
        let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        let rows = client.query(&sql, &[&kind, &statuses, &i64::from(limit.max(1))]).await?;
        Ok(rows.iter().map(pg_record).collect())
    }

    async fn count(&self, kind: &str, statuses: &[&str]) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let sql = format!("SELECT count(*) FROM {}.records WHERE kind = $1 AND status = ANY($2)", self.db.schema);
        let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        let n: i64 = client.query_one(&sql, &[&kind, &statuses]).await?.get(0);
        Ok(n as u64)
    }

    async fn claim(&self, kind: &str, statuses: &[&str], until_ms: i64) -> Result<Option<Record>, StoreError> {
        let client = self.db.client().await?;
        let schema = self.db.schema;
        let sql = format!(
            "UPDATE {schema}.records r SET lease_until = $3, revision = r.revision + 1, updated_at = $4 \
             FROM (SELECT tenant, kind, id FROM {schema}.records \
                   WHERE kind = $1 AND status = ANY($2) AND lease_until < $4 \
                   ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) c \
             WHERE r.tenant = c.tenant AND r.kind = c.kind AND r.id = c.id \
             RETURNING r.tenant, r.kind, r.id, r.parent, r.status, r.revision, r.body, r.created_at, r.updated_at"
        );
        let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        let row = client.query_opt(&sql, &[&kind, &statuses, &until_ms, &now_ms()]).await?;
        Ok(row.as_ref().map(pg_record))
    }

    async fn apply(&self, tenant: &str, writes: Vec<Write>) -> Result<bool, StoreError> {
        let mut client = self.db.client().await?;
        let schema = self.db.schema;
        let tx = client.transaction().await?;
        let now = now_ms();
        for w in writes {
            let changed = match w {
                Write::Insert { kind, id, parent, status, body } => {
                    tx.execute(
                        &format!(
                            "INSERT INTO {schema}.records ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7) \
                             ON CONFLICT DO NOTHING"
                        ),
                        &[&tenant, &kind, &id, &parent, &status, &body, &now],
                    )
                    .await?
                }
                Write::Update { kind, id, revision, parent, status, body, lease_until: None } => {
                    tx.execute(
                        &format!(
                            "UPDATE {schema}.records SET parent = $4, status = $5, body = $6, revision = revision + 1, \
                             updated_at = $7 WHERE tenant = $1 AND kind = $2 AND id = $3 AND revision = $8"
                        ),
                        &[&tenant, &kind, &id, &parent, &status, &body, &now, &revision],
                    )
                    .await?
                }
                Write::Update { kind, id, revision, parent, status, body, lease_until: Some(lease) } => {
                    tx.execute(
                        &format!(
                            "UPDATE {schema}.records SET parent = $4, status = $5, body = $6, revision = revision + 1, \
                             updated_at = $7, lease_until = $9 \
                             WHERE tenant = $1 AND kind = $2 AND id = $3 AND revision = $8"
                        ),
                        &[&tenant, &kind, &id, &parent, &status, &body, &now, &revision, &lease],
                    )
                    .await?
                }
                Write::Delete { kind, id, revision } => {
                    tx.execute(
                        &format!(
                            "DELETE FROM {schema}.records WHERE tenant = $1 AND kind = $2 AND id = $3 AND revision = $4"
                        ),
                        &[&tenant, &kind, &id, &revision],
                    )
                    .await?
                }
                Write::Event(e) => {
                    let id = uuid::Uuid::now_v7().to_string();
                    tx.execute(
                        &format!(
                            "INSERT INTO {schema}.events (tenant, id, name, entity, at, payload) \
                             VALUES ($1, $2, $3, $4, $5, $6)"
                        ),
                        &[&tenant, &id, &e.name, &e.entity, &now, &e.payload.to_string()],
                    )
                    .await?
                }
            };
            if changed != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn events(
        &self,
        tenant: &str,
        name: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.db.client().await?;
        let sql = format!(
            "SELECT seq, tenant, id, name, entity, at, payload FROM {}.events \
             WHERE tenant = $1 AND seq > $2 AND ($3::text IS NULL OR name = $3) ORDER BY seq LIMIT $4",
            self.db.schema
        );
        let rows = client.query(&sql, &[&tenant, &after_seq, &name, &i64::from(limit.max(1))]).await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.get(6);
                Ok(StoredEvent {
                    seq: r.get(0),
                    tenant: r.get(1),
                    id: r.get(2),
                    name: r.get(3),
                    entity: r.get(4),
                    at: r.get(5),
                    payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}

#[derive(Debug)]
struct SqliteRecords {
    db: SqliteDb,
}

fn sqlite_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        tenant: r.get(0)?,
        kind: r.get(1)?,
        id: r.get(2)?,
        parent: r.get(3)?,
        status: r.get(4)?,
        revision: r.get(5)?,
        body: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

#[async_trait::async_trait]
impl RecordStore for SqliteRecords {
    async fn get(&self, tenant: &str, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let (tenant, kind, id) = (tenant.to_string(), kind.to_string(), id.to_string());
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM records WHERE tenant = ?1 AND kind = ?2 AND id = ?3"
                ))?;
                let mut rows = stmt.query_map(rusqlite::params![tenant, kind, id], sqlite_record)?;
                Ok(rows.next().transpose()?)
            })
            .await
    }

    async fn list(&self, tenant: &str, kind: &str, q: ListQuery<'_>) -> Result<Vec<Record>, StoreError> {
        let (tenant, kind) = (tenant.to_string(), kind.to_string());
        let (parent, status, after) = (q.parent.map(str::to_string), q.status.map(str::to_string), q.after.to_string());
        let (cmp, order) = if q.newest_first { ("<", "DESC") } else { (">", "ASC") };
        let limit = i64::from(q.limit.max(1));
        self.db
            .call(move |c| {
                let sql = format!(
                    "SELECT {COLUMNS} FROM records WHERE tenant = ?1 AND kind = ?2 AND (?3 = '' OR id {cmp} ?3) \
                     AND (?4 IS NULL OR parent = ?4) AND (?5 IS NULL OR status = ?5) ORDER BY id {order} LIMIT ?6"
                );
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt
                    .query_map(rusqlite::params![tenant, kind, after, parent, status, limit], sqlite_record)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn by_status(&self, kind: &str, statuses: &[&str], limit: u32) -> Result<Vec<Record>, StoreError> {
        let kind = kind.to_string();
        let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        self.db
            .call(move |c| {
                let placeholders: Vec<String> = (0..statuses.len()).map(|i| format!("?{}", i + 3)).collect();
                let sql = format!(
                    "SELECT {COLUMNS} FROM records WHERE kind = ?1 AND status IN ({}) ORDER BY id LIMIT ?2",
                    if placeholders.is_empty() { "NULL".to_string() } else { placeholders.join(", ") }
                );
                let mut stmt = c.prepare(&sql)?;
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&kind];
                let limit = i64::from(limit.max(1));
                params.push(&limit);
                for s in &statuses {
                    params.push(s);
                }
                let rows = stmt.query_map(params.as_slice(), sqlite_record)?.collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn count(&self, kind: &str, statuses: &[&str]) -> Result<u64, StoreError> {
        let kind = kind.to_string();
        let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        self.db
            .call(move |c| {
                let placeholders: Vec<String> = (0..statuses.len()).map(|i| format!("?{}", i + 2)).collect();
                let sql = format!(
                    "SELECT count(*) FROM records WHERE kind = ?1 AND status IN ({})",
                    if placeholders.is_empty() { "NULL".to_string() } else { placeholders.join(", ") }
                );
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&kind];
                for s in &statuses {
                    params.push(s);
                }
                let n: i64 = c.query_row(&sql, params.as_slice(), |r| r.get(0))?;
                Ok(n as u64)
            })
            .await
    }

    async fn claim(&self, kind: &str, statuses: &[&str], until_ms: i64) -> Result<Option<Record>, StoreError> {
        let kind = kind.to_string();
        let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        self.db
            .call(move |c| {
                // One embedded process: an immediate transaction is the lock.
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now = now_ms();
                let placeholders: Vec<String> = (0..statuses.len()).map(|i| format!("?{}", i + 3)).collect();
                let sql = format!(
                    "SELECT {COLUMNS} FROM records WHERE kind = ?1 AND lease_until < ?2 AND status IN ({}) \
                     ORDER BY created_at, id LIMIT 1",
                    if placeholders.is_empty() { "NULL".to_string() } else { placeholders.join(", ") }
                );
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&kind, &now];
                for s in &statuses {
                    params.push(s);
                }
                let found = {
                    let mut stmt = tx.prepare(&sql)?;
                    let mut rows = stmt.query_map(params.as_slice(), sqlite_record)?;
                    rows.next().transpose()?
                };
                let Some(mut record) = found else { return Ok(None) };
                tx.execute(
                    "UPDATE records SET lease_until = ?4, revision = revision + 1, updated_at = ?5 \
                     WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
                    rusqlite::params![record.tenant, record.kind, record.id, until_ms, now],
                )?;
                tx.commit()?;
                record.revision += 1;
                record.updated_at = now;
                Ok(Some(record))
            })
            .await
    }

    async fn apply(&self, tenant: &str, writes: Vec<Write>) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now = now_ms();
                for w in writes {
                    let changed = match w {
                        Write::Insert { kind, id, parent, status, body } => tx.execute(
                            &format!(
                                "INSERT INTO records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?7) \
                                 ON CONFLICT DO NOTHING"
                            ),
                            rusqlite::params![tenant, kind, id, parent, status, body, now],
                        )?,
                        Write::Update { kind, id, revision, parent, status, body, lease_until: None } => tx.execute(
                            "UPDATE records SET parent = ?4, status = ?5, body = ?6, revision = revision + 1, \
                             updated_at = ?7 WHERE tenant = ?1 AND kind = ?2 AND id = ?3 AND revision = ?8",
                            rusqlite::params![tenant, kind, id, parent, status, body, now, revision],
                        )?,
                        Write::Update { kind, id, revision, parent, status, body, lease_until: Some(lease) } => tx
                            .execute(
                                "UPDATE records SET parent = ?4, status = ?5, body = ?6, revision = revision + 1, \
                                 updated_at = ?7, lease_until = ?9 \
                                 WHERE tenant = ?1 AND kind = ?2 AND id = ?3 AND revision = ?8",
                                rusqlite::params![tenant, kind, id, parent, status, body, now, revision, lease],
                            )?,
                        Write::Delete { kind, id, revision } => tx.execute(
                            "DELETE FROM records WHERE tenant = ?1 AND kind = ?2 AND id = ?3 AND revision = ?4",
                            rusqlite::params![tenant, kind, id, revision],
                        )?,
                        Write::Event(e) => tx.execute(
                            "INSERT INTO events (tenant, id, name, entity, at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            rusqlite::params![
                                tenant,
                                uuid::Uuid::now_v7().to_string(),
                                e.name,
                                e.entity,
                                now,
                                e.payload.to_string()
                            ],
                        )?,
                    };
                    if changed != 1 {
                        // Dropping the transaction rolls it back.
                        return Ok(false);
                    }
                }
                tx.commit()?;
                Ok(true)
            })
            .await
    }

    async fn events(
        &self,
        tenant: &str,
        name: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.map(str::to_string));
        let limit = i64::from(limit.max(1));
        self.db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, tenant, id, name, entity, at, payload FROM events \
                     WHERE tenant = ?1 AND seq > ?2 AND (?3 IS NULL OR name = ?3) ORDER BY seq LIMIT ?4",
                )?;
                let rows = stmt
                    .query_map(rusqlite::params![tenant, after_seq, name, limit], |r| {
                        let payload: String = r.get(6)?;
                        Ok(StoredEvent {
                            seq: r.get(0)?,
                            tenant: r.get(1)?,
                            id: r.get(2)?,
                            name: r.get(3)?,
                            entity: r.get(4)?,
                            at: r.get(5)?,
                            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Migration;
    use crate::testing::{Backend, embedded_backend, postgres_backend};

    static MIGRATIONS: &[Migration] = &[
        Migration { version: 1, description: "records and events", postgres: POSTGRES, sqlite: SQLITE },
        Migration { version: 2, description: "leases", postgres: LEASES_POSTGRES, sqlite: LEASES_SQLITE },
    ];

    async fn exercise(backend: Backend) {
        let db = backend.database().await.open("records_test", MIGRATIONS).await.unwrap();
        let store = record_store(&db);
        let body = prost_types::Duration { seconds: 5, nanos: 0 };
        let ins = |id: &str, parent: &str| Write::insert("job", id, parent, "queued", &body);
        assert!(store.apply("t1", vec![ins("a", "p"), ins("b", "p"), ins("c", "q")]).await.unwrap());
        // A duplicate insert fails the whole batch: "d" is not written either.
        assert!(!store.apply("t1", vec![ins("d", "p"), ins("a", "p")]).await.unwrap());
        assert!(store.get("t1", "job", "d").await.unwrap().is_none());
        // Tenants are separate.
        assert!(store.get("t2", "job", "a").await.unwrap().is_none());

        let a = store.get("t1", "job", "a").await.unwrap().unwrap();
        assert_eq!(a.decode::<prost_types::Duration>().unwrap(), body);
        let done = prost_types::Duration { seconds: 9, nanos: 0 };
        assert!(
            store
                .apply(
                    "t1",
                    vec![
                        Write::update(&a, "running", &done),
                        Write::event("pulse.x.v1", "a", serde_json::json!({"n": 1}))
                    ]
                )
                .await
                .unwrap()
        );
        // A stale revision loses.
        assert!(!store.apply("t1", vec![Write::update(&a, "failed", &done)]).await.unwrap());
        let a2 = store.get("t1", "job", "a").await.unwrap().unwrap();
        assert_eq!((a2.revision, a2.status.as_str()), (2, "running"));

        let q = ListQuery { parent: Some("p"), limit: 10, ..Default::default() };
        let ids: Vec<String> = store.list("t1", "job", q).await.unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a", "b"]);
        let q = ListQuery { limit: 2, newest_first: true, after: "c", ..Default::default() };
        let ids: Vec<String> = store.list("t1", "job", q).await.unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["b", "a"]);
        let running = store.by_status("job", &["running"], 10).await.unwrap();
        assert_eq!(running.len(), 1);

        let events = store.events("t1", Some("pulse.x.v1"), 0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].payload["n"], 1);
        assert!(store.events("t2", None, 0, 10).await.unwrap().is_empty());
    }

    /// Claims take free leases oldest first, hold them, and give them back
    /// when they expire or are released.
    async fn claims(backend: Backend) {
        let db = backend.database().await.open("claims_test", MIGRATIONS).await.unwrap();
        let store = record_store(&db);
        let body = prost_types::Duration { seconds: 1, nanos: 0 };
        let hour = now_ms() + 3_600_000;
        assert!(store.claim("task", &["queued"], hour).await.unwrap().is_none());
        for (tenant, id) in [("t1", "a"), ("t2", "b"), ("t1", "c")] {
            assert!(store.apply(tenant, vec![Write::insert("task", id, "", "queued", &body)]).await.unwrap());
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        assert_eq!(store.count("task", &["queued"]).await.unwrap(), 3);
        assert_eq!(store.count("task", &["running", "done"]).await.unwrap(), 0);
        let a = store.claim("task", &["queued", "running"], hour).await.unwrap().unwrap();
        assert_eq!((a.tenant.as_str(), a.id.as_str(), a.revision), ("t1", "a", 2));
        let b = store.claim("task", &["queued", "running"], hour).await.unwrap().unwrap();
        assert_eq!((b.tenant.as_str(), b.id.as_str()), ("t2", "b"));
        // The holder writes its state at the claimed revision, keeping its lease.
        assert!(store.apply("t1", vec![Write::update(&a, "running", &body).leased_until(hour)]).await.unwrap());
        assert_eq!(store.count("task", &["queued"]).await.unwrap(), 2);
        assert_eq!(store.count("task", &["running", "queued"]).await.unwrap(), 3);
        // A stale holder (the revision before the claim) loses.
        let mut stale = b.clone();
        stale.revision -= 1;
        assert!(!store.apply("t2", vec![Write::update(&stale, "running", &body)]).await.unwrap());
        // An expired lease is claimable again, by status.
        let c = store.claim("task", &["queued"], now_ms() - 1).await.unwrap().unwrap();
        assert_eq!(c.id, "c");
        assert!(store.claim("task", &["running"], hour).await.unwrap().is_none());
        let c2 = store.claim("task", &["queued"], hour).await.unwrap().unwrap();
        assert_eq!((c2.id.as_str(), c2.revision), ("c", 3));
        assert!(store.claim("task", &["queued", "running"], hour).await.unwrap().is_none());
        // Releasing (lease 0) makes it claimable at once.
        let a = store.get("t1", "task", "a").await.unwrap().unwrap();
        assert!(store.apply("t1", vec![Write::update(&a, "queued", &body).leased_until(0)]).await.unwrap());
        assert_eq!(store.claim("task", &["queued"], hour).await.unwrap().unwrap().id, "a");
    }

    #[tokio::test]
    async fn embedded_claims() {
        claims(embedded_backend().await).await;
    }

    #[tokio::test]
    async fn postgres_claims() {
        claims(postgres_backend().await).await;
    }

    /// Many workers claiming at once from PostgreSQL each get different
    /// records, and every record is claimed exactly once.
    #[tokio::test]
    async fn postgres_concurrent_claims_never_share_a_record() {
        let backend = postgres_backend().await;
        let db = backend.database().await.open("claims_race", MIGRATIONS).await.unwrap();
        let store = record_store(&db);
        let body = prost_types::Duration { seconds: 1, nanos: 0 };
        let writes = (0..60).map(|i| Write::insert("task", &format!("j{i:02}"), "", "queued", &body)).collect();
        assert!(store.apply("t1", writes).await.unwrap());
        let hour = now_ms() + 3_600_000;
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(r) = store.claim("task", &["queued"], hour).await.unwrap() {
                        got.push(r.id);
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut busy_workers = 0;
        for w in workers {
            let got = w.await.unwrap();
            busy_workers += usize::from(!got.is_empty());
            all.extend(got);
        }
        all.sort();
        let expected: Vec<String> = (0..60).map(|i| format!("j{i:02}")).collect();
        assert_eq!(all, expected, "every record claimed exactly once");
        assert!(busy_workers > 1, "the claims were spread over several workers");
    }

    #[tokio::test]
    async fn embedded_records() {
        exercise(embedded_backend().await).await;
    }

    #[tokio::test]
    async fn postgres_records() {
        exercise(postgres_backend().await).await;
    }
}
