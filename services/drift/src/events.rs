//! The event log: the envelope log of every service, relayed into one table.
//!
//! Every service writes its state changes to the `events` outbox of its own
//! schema in the same transaction as the change ([`pulse_common::records`]).
//! The drift schema's `events` table is the log: the drift service's own
//! events land there directly, [`spawn_relay`] copies every other schema's
//! outbox into it (the copied rows and the relay cursor commit together, and
//! `(source, source_seq)` and `message_id` are unique, so neither a crash nor
//! many relaying replicas lose or duplicate an event), and
//! [`EventLog::publish`] appends events callers publish.
//!
//! # Positions
//!
//! Readers that follow the log (watchers, the trigger dispatcher) need a
//! cursor that never skips an event. A PostgreSQL `BIGSERIAL` is not one:
//! two transactions may take sequence numbers 10 and 11 and commit 11 first,
//! so a reader that saw 11 would never see 10. Each row therefore also gets
//! a *position* after it commits: the sequencer (run by every reader and
//! writer of the log, serialized by an advisory lock) numbers the committed
//! rows that have none, above every position given before. Positions are
//! visible only in increasing order; rows appear to readers once positioned.
//! The embedded store has a single writer, so there a row's position is its
//! sequence number.
//!
//! The relay faces the same gaps in the outboxes it reads (without the
//! right to add a sequencer to other services' schemas): it copies every row
//! it sees at once, but keeps its durable cursor below any sequence number
//! still missing, until the number has been missing for [`GAP_GRACE`] (a
//! rolled-back transaction, or sequence values PostgreSQL lost in a crash).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use pulse_common::ids::truncate;
use pulse_common::paging;
use pulse_common::records::new_event_id;
use pulse_common::store::{Database, Db, StoreError};
use pulse_common::time::{from_millis, to_proto};
use pulse_proto::common::v1::{EnvelopeKind, EventEnvelope, PageRequest};
use pulse_proto::drift::v1 as pb;
use pulse_proto::prost_types::{self, Timestamp};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::DriftError;

/// Migration 2 of the drift schema: the `events` table holds whole
/// envelopes (`kind`, `version`, `idempotency_key`, `metadata`), where relayed
/// rows came from (`source` schema and its `source_seq`, unique together),
/// the position readers follow (`pos`), and the relay's cursor per source.
/// Rows written before (and rows [`pulse_common::records::Write::event`]
/// writes) keep the defaults; they are read with the envelope shape filled
/// in.
pub const MIGRATION_POSTGRES: &str = "
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'event';
ALTER TABLE events ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN source_seq BIGINT;
ALTER TABLE events ADD COLUMN pos BIGINT;
CREATE UNIQUE INDEX events_source ON events (source, source_seq) WHERE source_seq IS NOT NULL;
CREATE UNIQUE INDEX events_pos ON events (pos);
CREATE INDEX events_unsequenced ON events (seq) WHERE pos IS NULL;
CREATE INDEX events_tenant_pos ON events (tenant, pos);
CREATE INDEX events_tenant_entity ON events (tenant, entity, pos);
CREATE TABLE event_relay_cursors (
    source TEXT PRIMARY KEY,
    after_seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
";

pub const MIGRATION_SQLITE: &str = "
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'event';
ALTER TABLE events ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN source_seq INTEGER;
ALTER TABLE events ADD COLUMN pos INTEGER;
CREATE UNIQUE INDEX events_source ON events (source, source_seq) WHERE source_seq IS NOT NULL;
CREATE UNIQUE INDEX events_pos ON events (pos);
CREATE INDEX events_unsequenced ON events (seq) WHERE pos IS NULL;
CREATE INDEX events_tenant_pos ON events (tenant, pos);
CREATE INDEX events_tenant_entity ON events (tenant, entity, pos);
CREATE TABLE event_relay_cursors (
    source TEXT PRIMARY KEY,
    after_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// Always "pulse/1".
pub const PROTOCOL: &str = "pulse/1";
/// Events per PublishEvents call.
pub const MAX_PUBLISH: usize = 500;
/// The largest payload of a published event, as JSON.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
const MAX_NAME_CHARS: usize = 200;
const MAX_MESSAGE_ID_CHARS: usize = 128;
const MAX_METADATA_ENTRIES: usize = 64;
const MAX_METADATA_KEY_CHARS: usize = 128;
const MAX_METADATA_VALUE_CHARS: usize = 1024;
const MAX_FILTERS: usize = 32;
const MAX_FILTER_VALUES: usize = 100;
const MAX_FILTER_VALUE_CHARS: usize = 1024;

/// How often a watcher looks for new events when nothing in this process
/// woke it (events relayed or published by other processes).
pub const WATCH_POLL: Duration = Duration::from_millis(200);
/// How long the relay waits for a missing outbox sequence number (a
/// transaction still in flight) before taking it for a rolled-back one.
pub const GAP_GRACE: Duration = Duration::from_secs(60);
/// The schemas whose outboxes the relay reads: every service's but drift's
/// (whose events are written to the log directly). A schema without an
/// `events` table (lineage keeps none) has no events.
pub const RELAY_SOURCES: &[&str] = &[
    "datasource",
    pulse_snapshot::SCHEMA,
    pulse_trainer::SCHEMA,
    pulse_inference::SCHEMA,
    pulse_lineage::store::SCHEMA,
];
const RELAY_BATCH: i64 = 1000;
const MAX_TRACKED_GAPS: usize = 10_000;
const WATCH_BATCH: i64 = 200;

/// The columns an envelope is read from.
const COLUMNS: &str = "pos, tenant, id, name, entity, at, payload, kind, version, idempotency_key, metadata, source";

/// A row as read, before it becomes an envelope.
struct Row {
    pos: i64,
    tenant: String,
    id: String,
    name: String,
    entity: String,
    at: i64,
    payload: String,
    kind: String,
    version: i64,
    idempotency_key: String,
    metadata: String,
    source: String,
}

macro_rules! pg_row {
    ($r:expr) => {
        Row {
            pos: $r.get::<_, Option<i64>>(0).unwrap_or_default(),
            tenant: $r.get(1),
            id: $r.get(2),
            name: $r.get(3),
            entity: $r.get(4),
            at: $r.get(5),
            payload: $r.get(6),
            kind: $r.get(7),
            version: $r.get(8),
            idempotency_key: $r.get(9),
            metadata: $r.get(10),
            source: $r.get(11),
        }
    };
}

macro_rules! sqlite_row {
    ($r:expr) => {
        Ok(Row {
            pos: $r.get::<_, Option<i64>>(0)?.unwrap_or_default(),
            tenant: $r.get(1)?,
            id: $r.get(2)?,
            name: $r.get(3)?,
            entity: $r.get(4)?,
            at: $r.get(5)?,
            payload: $r.get(6)?,
            kind: $r.get(7)?,
            version: $r.get(8)?,
            idempotency_key: $r.get(9)?,
            metadata: $r.get(10)?,
            source: $r.get(11)?,
        })
    };
}

impl Row {
    fn envelope(self) -> EventEnvelope {
        let metadata = if self.metadata.is_empty() {
            // Written by `Write::event` in the drift schema itself.
            default_metadata(
                &self.name,
                &self.entity,
                if self.source.is_empty() { crate::SCHEMA } else { &self.source },
            )
        } else {
            serde_json::from_str::<BTreeMap<String, String>>(&self.metadata)
                .unwrap_or_else(|_| default_metadata(&self.name, &self.entity, crate::SCHEMA))
        };
        let version = u32::try_from(self.version).ok().filter(|v| *v > 0).or_else(|| name_version(&self.name));
        EventEnvelope {
            protocol: PROTOCOL.to_string(),
            kind: kind_of_text(&self.kind) as i32,
            version: version.unwrap_or(0),
            message_id: self.id,
            timestamp: Some(to_proto(from_millis(self.at))),
            idempotency_key: self.idempotency_key,
            tenant_id: self.tenant,
            payload: Some(struct_of_json_text(&self.payload)),
            metadata,
            name: self.name,
        }
    }
}

/// The metadata of an outbox event: its entity, the entity's kind and the
/// schema it came from.
fn default_metadata(name: &str, entity: &str, source: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if !entity.is_empty() {
        m.insert("entity_id".to_string(), entity.to_string());
        m.insert("entity_kind".to_string(), entity_kind(name, entity));
    }
    m.insert("source".to_string(), source.to_string());
    m
}

/// The kind of entity an outbox event is about: from the id prefix
/// (`ext_…` → `extraction`, `trn_…` → `training_job`, …); for `name@N`
/// entities the versioned thing of the event's domain (`model_version`,
/// `dataset_version`, `contract`, `baseline`); otherwise the event's domain
/// (`dataset`, `model`, `worker`, …).
pub fn entity_kind(name: &str, entity: &str) -> String {
    const PREFIXES: &[(&str, &str)] = &[
        ("dsrc", "datasource"),
        ("ext", "extraction"),
        ("trn", "training_job"),
        ("drf", "drift_report"),
        ("prd", "prediction"),
        ("fbk", "feedback"),
        ("run", "pipeline_run"),
        ("chg", "stage_change"),
        ("ckpt", "checkpoint"),
        ("evl", "evaluation"),
        ("wrk", "worker"),
        ("ten", "tenant"),
        ("key", "api_key"),
    ];
    if let Some((prefix, rest)) = entity.split_once('_')
        && rest.len() == 26
        && let Some((_, kind)) = PREFIXES.iter().find(|(p, _)| *p == prefix)
    {
        return kind.to_string();
    }
    let domain = name.strip_prefix("pulse.").unwrap_or(name).split('.').next().unwrap_or_default();
    let versioned = entity.contains('@');
    match (domain, versioned) {
        ("snapshot" | "dataset", true) => "dataset_version".into(),
        ("model" | "training", true) => "model_version".into(),
        ("contract", _) => "contract".into(),
        ("drift", true) => "baseline".into(),
        ("drift" | "traffic" | "model" | "feedback", false) => "model".into(),
        ("snapshot" | "dataset", false) => "dataset".into(),
        (d, true) => format!("{d}_version"),
        (d, false) => d.to_string(),
    }
}

/// N of a name ending in `.vN`.
fn name_version(name: &str) -> Option<u32> {
    let last = name.rsplit('.').next()?;
    let digits = last.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

fn kind_text(kind: EnvelopeKind) -> &'static str {
    match kind {
        EnvelopeKind::Query => "query",
        EnvelopeKind::Mutation => "mutation",
        EnvelopeKind::Event | EnvelopeKind::Unspecified => "event",
    }
}

fn kind_of_text(text: &str) -> EnvelopeKind {
    match text {
        "query" => EnvelopeKind::Query,
        "mutation" => EnvelopeKind::Mutation,
        _ => EnvelopeKind::Event,
    }
}

// ---------------------------------------------------------------- JSON <-> Struct

fn struct_of_json_text(text: &str) -> prost_types::Struct {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Null) | Err(_) => prost_types::Struct::default(),
        Ok(other) => pulse_common::json::to_struct(&other),
    }
}

// ---------------------------------------------------------------- the log

/// What [`EventLog::publish`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishOutcome {
    /// Every event's id, in request order (duplicates included).
    pub message_ids: Vec<String>,
    pub published: u32,
    /// Events whose message_id was already stored: ignored.
    pub duplicates: u32,
    /// The newly stored envelopes as stored, in request order (for trigger
    /// dispatch).
    pub stored: Vec<EventEnvelope>,
}

/// The persisted, replayable envelope log in the drift schema. Cheap to
/// clone; clones share one wake-up signal for watchers in this process.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// Woken after this process appends events.
    notify: Notify,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventLog({:?})", self.inner.db)
    }
}

/// A row to append.
struct NewRow {
    tenant: String,
    id: String,
    name: String,
    entity: String,
    at: i64,
    payload: String,
    kind: &'static str,
    version: i64,
    idempotency_key: String,
    metadata: String,
    source: String,
    source_seq: Option<i64>,
}

/// The selector as SQL parameters; empty or 0 matches all.
#[derive(Default)]
struct SqlFilter {
    exact: String,
    prefix: String,
    prefix_len: i32,
    entity: String,
    kind: String,
    from_ms: i64,
    to_ms: i64,
}

fn sql_filter(sel: &pb::EventSelector) -> SqlFilter {
    let mut f = SqlFilter::default();
    match sel.name.as_str() {
        "" | "*" => {}
        name => match name.strip_suffix('*') {
            Some(prefix) => {
                f.prefix = prefix.to_string();
                f.prefix_len = prefix.chars().count() as i32;
            }
            None => f.exact = name.to_string(),
        },
    }
    f.entity = sel.entity_id.clone();
    if let Ok(kind) = EnvelopeKind::try_from(sel.kind)
        && kind != EnvelopeKind::Unspecified
    {
        f.kind = kind_text(kind).to_string();
    }
    if let Some(range) = &sel.range {
        f.from_ms = range.from.as_ref().map(ceil_millis).unwrap_or(0);
        f.to_ms = range.to.as_ref().map(ceil_millis).unwrap_or(0);
    }
    f
}

/// Milliseconds, rounded up: stored times are whole milliseconds, so
/// `at >= ceil(from)` and `at < ceil(to)` are `[from, to)` exactly.
fn ceil_millis(t: &Timestamp) -> i64 {
    let nanos = i64::from(t.nanos.clamp(0, 999_999_999));
    t.seconds.saturating_mul(1000).saturating_add((nanos + 999_999) / 1_000_000)
}

fn floor_millis(t: &Timestamp) -> i64 {
    t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos.clamp(0, 999_999_999)) / 1_000_000)
}

/// `$N` placeholders as SQLite spells them.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

const SEQUENCE_LOCK: &str = "pulse.events.sequence";

impl EventLog {
    /// The log over the drift schema, opened with [`crate::MIGRATIONS`].
    pub fn new(db: Db) -> Self {
        Self { inner: Arc::new(Inner { db, notify: Notify::new() }) }
    }

    /// Opens the drift schema (applying its migrations) on `database`.
    pub async fn open(database: &Database) -> Result<Self, DriftError> {
        Ok(Self::new(database.open(crate::SCHEMA, crate::MIGRATIONS).await?))
    }

    fn prefix(&self) -> String {
        match &self.inner.db {
            Db::Postgres(pg) => format!("{}.", pg.schema),
            Db::Embedded(_) => String::new(),
        }
    }

    /// Wakes this process's watchers.
    fn wake(&self) {
        self.inner.notify.notify_waiters();
    }

    /// Appends events: validates them all first (INVALID_ARGUMENT naming
    /// `events[i].field`), fills `message_id` (UUIDv7), `timestamp` (now),
    /// `protocol`, `kind` (EVENT), `version` (from the name) and `tenant_id`
    /// (the caller), and stores them in one transaction. An event whose
    /// message_id is already stored is a duplicate and ignored. Names with
    /// the `pulse.` prefix are refused: they are for Pulse services.
    pub async fn publish(
        &self,
        tenant: &str,
        envelopes: Vec<EventEnvelope>,
        idempotency_key: &str,
    ) -> Result<PublishOutcome, DriftError> {
        check_tenant(tenant)?;
        if envelopes.is_empty() {
            return Err(DriftError::invalid("events", format!("is empty: publish 1 to {MAX_PUBLISH} events")));
        }
        if envelopes.len() > MAX_PUBLISH {
            return Err(DriftError::invalid(
                "events",
                format!("has {} events; publish at most {MAX_PUBLISH} per call", envelopes.len()),
            ));
        }
        let now = pulse_common::time::now_millis();
        let mut filled = Vec::with_capacity(envelopes.len());
        let mut rows = Vec::with_capacity(envelopes.len());
        for (i, env) in envelopes.into_iter().enumerate() {
            let (env, row) = prepare(i, env, tenant, idempotency_key, now)?;
            filled.push(env);
            rows.push(row);
        }
        let inserted = self.append(rows, None).await?;
        self.sequence().await?;
        let mut outcome = PublishOutcome::default();
        for (env, new) in filled.into_iter().zip(inserted) {
            outcome.message_ids.push(env.message_id.clone());
            if new {
                outcome.published += 1;
                outcome.stored.push(env);
            } else {
                outcome.duplicates += 1;
            }
        }
        if outcome.published > 0 {
            self.wake();
        }
        Ok(outcome)
    }

    /// Inserts rows in one transaction, ignoring those whose message id (or
    /// source sequence number) is stored; with `cursor`, also moves that
    /// source's relay cursor forward in the same transaction. Which rows
    /// were new, in order.
    async fn append(&self, rows: Vec<NewRow>, cursor: Option<(&str, i64)>) -> Result<Vec<bool>, StoreError> {
        let p = self.prefix();
        let insert = format!(
            "INSERT INTO {p}events (tenant, id, name, entity, at, payload, kind, version, idempotency_key, \
             metadata, source, source_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT DO NOTHING"
        );
        let now = chrono::Utc::now().timestamp_millis();
        match &self.inner.db {
            Db::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let stmt = tx.prepare(&insert).await?;
                let mut new = Vec::with_capacity(rows.len());
                for r in &rows {
                    let n = tx
                        .execute(
                            &stmt,
                            &[
                                &r.tenant,
                                &r.id,
                                &r.name,
                                &r.entity,
                                &r.at,
                                &r.payload,
                                &r.kind,
                                &r.version,
                                &r.idempotency_key,
                                &r.metadata,
                                &r.source,
                                &r.source_seq,
                            ],
                        )
                        .await?;
                    new.push(n == 1);
                }
                if let Some((source, after)) = cursor {
                    tx.execute(
                        &format!(
                            "INSERT INTO {p}event_relay_cursors AS c (source, after_seq, updated_at) \
                             VALUES ($1, $2, $3) ON CONFLICT (source) DO UPDATE \
                             SET after_seq = GREATEST(c.after_seq, EXCLUDED.after_seq), updated_at = EXCLUDED.updated_at"
                        ),
                        &[&source, &after, &now],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(new)
            }
            Db::Embedded(sqlite) => {
                let insert = sqlite_sql(&insert);
                let cursor = cursor.map(|(s, a)| (s.to_string(), a));
                sqlite
                    .call(move |c| {
                        // The first statement writes, so the transaction
                        // takes the write lock at once (no upgrade to fail).
                        let tx = c.transaction()?;
                        let mut new = Vec::with_capacity(rows.len());
                        {
                            let mut stmt = tx.prepare_cached(&insert)?;
                            for r in rows {
                                let n = stmt.execute((
                                    r.tenant,
                                    r.id,
                                    r.name,
                                    r.entity,
                                    r.at,
                                    r.payload,
                                    r.kind,
                                    r.version,
                                    r.idempotency_key,
                                    r.metadata,
                                    r.source,
                                    r.source_seq,
                                ))?;
                                new.push(n == 1);
                            }
                            if let Some((source, after)) = cursor {
                                tx.execute(
                                    "INSERT INTO event_relay_cursors (source, after_seq, updated_at) \
                                     VALUES (?1, ?2, ?3) ON CONFLICT (source) DO UPDATE \
                                     SET after_seq = MAX(after_seq, excluded.after_seq), updated_at = excluded.updated_at",
                                    (source, after, now),
                                )?;
                            }
                        }
                        tx.commit()?;
                        Ok(new)
                    })
                    .await
            }
        }
    }

    /// Gives every committed row without a position one, above all given
    /// before (see the module documentation).
    async fn sequence(&self) -> Result<(), StoreError> {
        let p = self.prefix();
        match &self.inner.db {
            Db::Postgres(pg) => {
                let mut client = pg.client().await?;
                let pending: bool = client
                    .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {p}events WHERE pos IS NULL)"), &[])
                    .await?
                    .get(0);
                if !pending {
                    return Ok(());
                }
                let tx = client.transaction().await?;
                let lock = format!("{SEQUENCE_LOCK}.{}", pg.schema);
                tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock]).await?;
                // A new statement after the lock: it sees what the previous
                // holder committed.
                tx.execute(
                    &format!(
                        "UPDATE {p}events e SET pos = t.p FROM ( \
                           SELECT seq, (SELECT COALESCE(MAX(pos), 0) FROM {p}events) \
                                       + row_number() OVER (ORDER BY seq) AS p \
                           FROM {p}events WHERE pos IS NULL) t \
                         WHERE e.seq = t.seq"
                    ),
                    &[],
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }
            Db::Embedded(sqlite) => {
                sqlite
                    .call(|c| {
                        // One writer at a time: sequence numbers commit in order.
                        c.execute("UPDATE events SET pos = seq WHERE pos IS NULL", ())?;
                        Ok(())
                    })
                    .await
            }
        }
    }

    /// Rows matching `filter` (of `tenant`, or of every tenant when `None`)
    /// after (before, newest first) position `cursor`.
    async fn query(
        &self,
        tenant: Option<&str>,
        filter: SqlFilter,
        cursor: i64,
        newest_first: bool,
        limit: i64,
    ) -> Result<Vec<Row>, StoreError> {
        self.sequence().await?;
        let p = self.prefix();
        let (cmp, order) = if newest_first { ("<", "DESC") } else { (">", "ASC") };
        let tenant_clause = if tenant.is_some() { "tenant = $1" } else { "CAST($1 AS TEXT) = ''" };
        let sql = format!(
            "SELECT {COLUMNS} FROM {p}events WHERE pos IS NOT NULL AND {tenant_clause} \
             AND (CAST($2 AS TEXT) = '' OR name = $2) \
             AND (CAST($3 AS TEXT) = '' OR substr(name, 1, CAST($4 AS INTEGER)) = $3) \
             AND (CAST($5 AS TEXT) = '' OR entity = $5) \
             AND (CAST($6 AS TEXT) = '' OR kind = $6) \
             AND (CAST($7 AS BIGINT) = 0 OR at >= $7) \
             AND (CAST($8 AS BIGINT) = 0 OR at < $8) \
             AND pos {cmp} $9 ORDER BY pos {order} LIMIT $10"
        );
        let tenant = tenant.unwrap_or_default().to_string();
        let limit = limit.max(1);
        match &self.inner.db {
            Db::Postgres(pg) => {
                let client = pg.client().await?;
                let stmt = client.prepare_cached(&sql).await?;
                let rows = client
                    .query(
                        &stmt,
                        &[
                            &tenant,
                            &filter.exact,
                            &filter.prefix,
                            &filter.prefix_len,
                            &filter.entity,
                            &filter.kind,
                            &filter.from_ms,
                            &filter.to_ms,
                            &cursor,
                            &limit,
                        ],
                    )
                    .await?;
                Ok(rows.iter().map(|r| pg_row!(r)).collect())
            }
            Db::Embedded(sqlite) => {
                let sql = sqlite_sql(&sql);
                sqlite
                    .call(move |c| {
                        let mut stmt = c.prepare_cached(&sql)?;
                        let rows = stmt
                            .query_map(
                                (
                                    tenant,
                                    filter.exact,
                                    filter.prefix,
                                    filter.prefix_len,
                                    filter.entity,
                                    filter.kind,
                                    filter.from_ms,
                                    filter.to_ms,
                                    cursor,
                                    limit,
                                ),
                                |r| sqlite_row!(r),
                            )?
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(rows)
                    })
                    .await
            }
        }
    }

    /// The stored row of a tenant's message.
    async fn find(&self, tenant: &str, message_id: &str) -> Result<Option<Row>, StoreError> {
        self.sequence().await?;
        let sql =
            format!("SELECT {COLUMNS} FROM {}events WHERE tenant = $1 AND id = $2 AND pos IS NOT NULL", self.prefix());
        let (tenant, id) = (tenant.to_string(), message_id.to_string());
        match &self.inner.db {
            Db::Postgres(pg) => {
                let client = pg.client().await?;
                Ok(client.query_opt(&sql, &[&tenant, &id]).await?.map(|r| pg_row!(r)))
            }
            Db::Embedded(sqlite) => {
                let sql = sqlite_sql(&sql);
                sqlite
                    .call(move |c| {
                        let mut stmt = c.prepare_cached(&sql)?;
                        let mut rows = stmt.query_map((tenant, id), |r| sqlite_row!(r))?;
                        Ok(rows.next().transpose()?)
                    })
                    .await
            }
        }
    }

    /// The highest position given so far (0 for an empty log): watching
    /// "from now" starts after it.
    pub async fn head(&self) -> Result<i64, DriftError> {
        self.sequence().await?;
        let sql = format!("SELECT COALESCE(MAX(pos), 0) FROM {}events", self.prefix());
        Ok(match &self.inner.db {
            Db::Postgres(pg) => pg.client().await?.query_one(&sql, &[]).await.map_err(StoreError::from)?.get(0),
            Db::Embedded(sqlite) => sqlite.call(move |c| Ok(c.query_row(&sql, (), |r| r.get(0))?)).await?,
        })
    }

    /// One of the tenant's events; another tenant's id is NOT_FOUND.
    pub async fn get(&self, tenant: &str, message_id: &str) -> Result<EventEnvelope, DriftError> {
        check_tenant(tenant)?;
        match self.find(tenant, message_id).await? {
            Some(row) => Ok(row.envelope()),
            None => Err(not_found(message_id)),
        }
    }

    /// The position of one of the tenant's events, to resume after it.
    pub async fn position(&self, tenant: &str, message_id: &str) -> Result<i64, DriftError> {
        check_tenant(tenant)?;
        match self.find(tenant, message_id).await? {
            Some(row) => Ok(row.pos),
            None => Err(not_found(message_id)),
        }
    }

    /// One page of the tenant's events matching `selector`, in log order
    /// (oldest first, or newest first), and the next page's token (empty
    /// after the last page). The token is opaque (a position).
    pub async fn list(
        &self,
        tenant: &str,
        selector: &pb::EventSelector,
        newest_first: bool,
        page: &PageRequest,
    ) -> Result<(Vec<EventEnvelope>, String), DriftError> {
        check_tenant(tenant)?;
        check_selector("selector", selector)?;
        let limit = paging::page_size(page.page_size);
        let cursor = match page.page_token.as_str() {
            "" if newest_first => i64::MAX,
            "" => 0,
            token => token.parse::<i64>().ok().filter(|p| *p > 0).ok_or_else(|| {
                DriftError::invalid(
                    "page.page_token",
                    "is not a token this call returned; pass back next_page_token unchanged, or leave it empty for the first page",
                )
            })?,
        };
        let rows = self.query(Some(tenant), sql_filter(selector), cursor, newest_first, i64::from(limit)).await?;
        let positions: Vec<String> = rows.iter().map(|r| r.pos.to_string()).collect();
        let next = paging::next_token(&positions, limit, |p| p);
        Ok((rows.into_iter().map(Row::envelope).collect(), next))
    }

    /// The tenant's events matching `selector` after position `after_pos`,
    /// oldest first, with their positions: what a watcher reads next.
    pub async fn after(
        &self,
        tenant: &str,
        selector: &pb::EventSelector,
        after_pos: i64,
        limit: u32,
    ) -> Result<Vec<(i64, EventEnvelope)>, DriftError> {
        check_tenant(tenant)?;
        let rows = self.query(Some(tenant), sql_filter(selector), after_pos, false, i64::from(limit.max(1))).await?;
        Ok(rows.into_iter().map(|r| (r.pos, r.envelope())).collect())
    }

    /// Every tenant's events after position `after_pos`, oldest first, with
    /// their positions (for the trigger dispatcher). Positions only grow:
    /// an event that appears later always has a higher position than every
    /// event returned before, so a reader that keeps the last position it
    /// handled never misses one.
    pub async fn since(&self, after_pos: i64, limit: u32) -> Result<Vec<(i64, EventEnvelope)>, DriftError> {
        let rows = self.query(None, SqlFilter::default(), after_pos, false, i64::from(limit.max(1))).await?;
        Ok(rows.into_iter().map(|r| (r.pos, r.envelope())).collect())
    }

    /// The tenant's events matching `selector` (its `range` ignored): first
    /// every event after `after_message_id` (an unknown id is NOT_FOUND
    /// naming it), or none with no id; then each new event as it is stored,
    /// forever. Events published in this process wake the stream at once;
    /// others are found within [`WATCH_POLL`]. A store error ends the stream
    /// after yielding it.
    pub async fn watch(
        &self,
        tenant: &str,
        selector: &pb::EventSelector,
        after_message_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<EventEnvelope, DriftError>> + Send + 'static, DriftError> {
        check_tenant(tenant)?;
        let mut selector = selector.clone();
        selector.range = None;
        check_selector("selector", &selector)?;
        let cursor = match after_message_id.filter(|id| !id.is_empty()) {
            Some(id) => self.position(tenant, id).await?,
            None => self.head().await?,
        };
        let state = Watch {
            log: self.clone(),
            tenant: tenant.to_string(),
            selector,
            cursor,
            buffer: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(state, |mut w| async move {
            if w.done {
                return None;
            }
            loop {
                if let Some(env) = w.buffer.pop_front() {
                    return Some((Ok(env), w));
                }
                let log = w.log.clone();
                let notified = log.inner.notify.notified();
                tokio::pin!(notified);
                // Registered before reading: a publish after the read wakes us.
                notified.as_mut().enable();
                match log.after(&w.tenant, &w.selector, w.cursor, WATCH_BATCH as u32).await {
                    Ok(batch) if !batch.is_empty() => {
                        for (pos, env) in batch {
                            w.cursor = pos;
                            w.buffer.push_back(env);
                        }
                    }
                    Ok(_) => {
                        tokio::select! {
                            _ = &mut notified => {}
                            _ = tokio::time::sleep(WATCH_POLL) => {}
                        }
                    }
                    Err(e) => {
                        w.done = true;
                        return Some((Err(e), w));
                    }
                }
            }
        }))
    }

    /// The relay cursor of a source schema: every outbox event up to this
    /// sequence number is in the log (or was given up as never committed).
    pub async fn relay_cursor(&self, source: &str) -> Result<i64, DriftError> {
        let sql = format!("SELECT after_seq FROM {}event_relay_cursors WHERE source = $1", self.prefix());
        let source = source.to_string();
        Ok(match &self.inner.db {
            Db::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(&sql, &[&source])
                .await
                .map_err(StoreError::from)?
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0),
            Db::Embedded(sqlite) => {
                let sql = sqlite_sql(&sql);
                sqlite
                    .call(move |c| {
                        let mut stmt = c.prepare_cached(&sql)?;
                        let mut rows = stmt.query_map((source,), |r| r.get::<_, i64>(0))?;
                        Ok(rows.next().transpose()?.unwrap_or(0))
                    })
                    .await?
            }
        })
    }
}

struct Watch {
    log: EventLog,
    tenant: String,
    selector: pb::EventSelector,
    cursor: i64,
    buffer: VecDeque<EventEnvelope>,
    done: bool,
}

fn not_found(message_id: &str) -> DriftError {
    DriftError::NotFound(format!("event '{}'", truncate(message_id, 128)))
}

fn check_tenant(tenant: &str) -> Result<(), DriftError> {
    if tenant.is_empty() {
        // A caller without a tenant is a bug in the adapter, not the client.
        return Err(DriftError::Precondition("the event log needs the caller's tenant".into()));
    }
    Ok(())
}

/// Checks a selector; `field` names it in the request (e.g. `selector`).
pub fn check_selector(field: &str, sel: &pb::EventSelector) -> Result<(), DriftError> {
    let name = sel.name.as_str();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(DriftError::invalid(
            format!("{field}.name"),
            format!("is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(star) = name.find('*')
        && !(name == "*" || (star == name.len() - 1 && name.ends_with(".*")))
    {
        return Err(DriftError::invalid(
            format!("{field}.name"),
            format!(
                "'{}' is neither an event name nor a prefix ending in \".*\" (e.g. \"pulse.drift.*\")",
                truncate(name, 64)
            ),
        ));
    }
    if sel.entity_id.chars().count() > 256 {
        return Err(DriftError::invalid(format!("{field}.entity_id"), "is longer than 256 characters"));
    }
    if EnvelopeKind::try_from(sel.kind).is_err() {
        return Err(DriftError::invalid(
            format!("{field}.kind"),
            format!("{} is not an EnvelopeKind; use QUERY, MUTATION or EVENT, or leave it unset", sel.kind),
        ));
    }
    if let Some(range) = &sel.range {
        for (name, t) in [("from", &range.from), ("to", &range.to)] {
            if let Some(t) = t
                && (t.nanos < 0 || t.nanos > 999_999_999)
            {
                return Err(DriftError::invalid(format!("{field}.range.{name}"), "has nanos outside 0..=999999999"));
            }
        }
        if let (Some(from), Some(to)) = (&range.from, &range.to)
            && (from.seconds, from.nanos) >= (to.seconds, to.nanos)
        {
            return Err(DriftError::invalid(format!("{field}.range"), "is empty: `from` must be before `to`"));
        }
    }
    Ok(())
}

/// Validates one published event and fills it in.
fn prepare(
    i: usize,
    mut env: EventEnvelope,
    tenant: &str,
    idempotency_key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(EventEnvelope, NewRow), DriftError> {
    let field = |f: &str| format!("events[{i}].{f}");
    let n = check_published_name(&field("name"), &env.name)?;
    if env.version != 0 && env.version != n {
        return Err(DriftError::invalid(
            field("version"),
            format!("is {} but the name ends in .v{n}; set it to {n} or leave it 0", env.version),
        ));
    }
    env.version = n;
    match env.protocol.as_str() {
        "" => env.protocol = PROTOCOL.to_string(),
        PROTOCOL => {}
        other => {
            return Err(DriftError::invalid(
                field("protocol"),
                format!("'{}' is not supported; use \"{PROTOCOL}\" or leave it empty", truncate(other, 32)),
            ));
        }
    }
    let kind = match EnvelopeKind::try_from(env.kind) {
        Ok(EnvelopeKind::Unspecified) => EnvelopeKind::Event,
        Ok(kind) => kind,
        Err(_) => {
            return Err(DriftError::invalid(
                field("kind"),
                format!("{} is not an EnvelopeKind; use EVENT (the default), MUTATION or QUERY", env.kind),
            ));
        }
    };
    env.kind = kind as i32;
    if env.message_id.is_empty() {
        env.message_id = new_event_id();
    } else if env.message_id.chars().count() > MAX_MESSAGE_ID_CHARS
        || !env.message_id.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(DriftError::invalid(
            field("message_id"),
            format!(
                "'{}' is not a message id: use up to {MAX_MESSAGE_ID_CHARS} printable ASCII characters \
                 without spaces, or leave it empty for a UUIDv7",
                truncate(&env.message_id, 64)
            ),
        ));
    }
    let at = match &env.timestamp {
        None => now.timestamp_millis(),
        Some(t) => {
            // Years 1970 to 9999.
            if t.nanos < 0 || t.nanos > 999_999_999 || t.seconds < 0 || t.seconds > 253_402_300_799 {
                return Err(DriftError::invalid(
                    field("timestamp"),
                    "is out of range; use a time between 1970 and 9999, or leave it unset for now",
                ));
            }
            floor_millis(t)
        }
    };
    // Stored to the millisecond, as every Pulse time.
    env.timestamp = Some(to_proto(from_millis(at)));
    if env.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(DriftError::invalid(
            field("metadata"),
            format!("has {} entries; the limit is {MAX_METADATA_ENTRIES}", env.metadata.len()),
        ));
    }
    for (k, v) in &env.metadata {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(DriftError::invalid(
                field("metadata"),
                format!("has a key of {} characters; keys are 1 to {MAX_METADATA_KEY_CHARS}", k.chars().count()),
            ));
        }
        if v.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(DriftError::invalid(
                format!("events[{i}].metadata.{}", truncate(k, 64)),
                format!("is longer than {MAX_METADATA_VALUE_CHARS} characters"),
            ));
        }
    }
    let payload =
        env.payload.as_ref().map(pulse_common::json::to_json).unwrap_or_else(|| serde_json::json!({})).to_string();
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DriftError::invalid(
            field("payload"),
            format!("is {} bytes as JSON; the limit is {} KiB", payload.len(), MAX_PAYLOAD_BYTES / 1024),
        ));
    }
    env.tenant_id = tenant.to_string();
    if env.idempotency_key.is_empty() {
        env.idempotency_key = idempotency_key.to_string();
    }
    let row = NewRow {
        tenant: tenant.to_string(),
        id: env.message_id.clone(),
        name: env.name.clone(),
        entity: env.metadata.get("entity_id").cloned().unwrap_or_default(),
        at,
        payload,
        kind: kind_text(kind),
        version: i64::from(n),
        idempotency_key: env.idempotency_key.clone(),
        metadata: serde_json::to_string(&env.metadata).unwrap_or_else(|_| "{}".into()),
        source: String::new(),
        source_seq: None,
    };
    Ok((env, row))
}

const NAME_EXAMPLE: &str = "e.g. acme.orders.loaded.v1";

/// Checks the name of an event a caller publishes: a well-formed name
/// ([`check_event_name`]) outside the `pulse.` prefix, which is for Pulse
/// services. Answers N of `.vN`.
pub fn check_published_name(field: &str, name: &str) -> Result<u32, DriftError> {
    if name.starts_with("pulse.") {
        return Err(DriftError::invalid(
            field,
            format!("the pulse. prefix is reserved for Pulse services; use your own domain, {NAME_EXAMPLE}"),
        ));
    }
    check_event_name(field, name)
}

/// Checks an event name's form (`<domain>.<what>….v<N>`, lowercase; any
/// domain, `pulse.` included, e.g. for a trigger) and answers N.
pub fn check_event_name(field: &str, name: &str) -> Result<u32, DriftError> {
    const EXAMPLE: &str = NAME_EXAMPLE;
    if name.is_empty() {
        return Err(DriftError::invalid(field, format!("is required: `<domain>.<what>.v<N>`, {EXAMPLE}")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(DriftError::invalid(field, format!("is longer than {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(DriftError::invalid(field, format!("'{}' must be lowercase, {EXAMPLE}", truncate(name, 64))));
    }
    let segments: Vec<&str> = name.split('.').collect();
    let well_formed = segments.len() >= 3
        && segments[..segments.len() - 1].iter().all(|s| {
            s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    match name_version(name) {
        Some(n) if well_formed => Ok(n),
        _ => Err(DriftError::invalid(
            field,
            format!(
                "'{}' is not an event name: use `<domain>.<what>.v<N>` in lowercase letters, digits and '_', {EXAMPLE}",
                truncate(name, 64)
            ),
        )),
    }
}

// ---------------------------------------------------------------- matching

/// Whether an envelope matches a selector (the same rules the store applies).
pub fn matches(selector: &pb::EventSelector, envelope: &EventEnvelope) -> bool {
    let name_ok = match selector.name.as_str() {
        "" | "*" => true,
        name => match name.strip_suffix('*') {
            Some(prefix) => envelope.name.starts_with(prefix),
            None => envelope.name == name,
        },
    };
    let entity_ok =
        selector.entity_id.is_empty() || envelope.metadata.get("entity_id").is_some_and(|e| *e == selector.entity_id);
    let kind_ok = match EnvelopeKind::try_from(selector.kind) {
        Ok(EnvelopeKind::Unspecified) => true,
        Ok(kind) => kind_text(kind) == kind_text(EnvelopeKind::try_from(envelope.kind).unwrap_or_default()),
        Err(_) => false,
    };
    let range_ok = match &selector.range {
        None => true,
        Some(range) => {
            let at = envelope.timestamp.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default();
            range.from.as_ref().is_none_or(|f| at >= (f.seconds, f.nanos))
                && range.to.as_ref().is_none_or(|t| at < (t.seconds, t.nanos))
        }
    };
    name_ok && entity_ok && kind_ok && range_ok
}

const FILTER_ROOTS: &[&str] =
    &["name", "kind", "version", "message_id", "tenant_id", "protocol", "idempotency_key", "timestamp"];

/// Whether an envelope passes every filter (a pipeline trigger's). A
/// filter compares the text form of a dotted field: "name", "kind"
/// ("event", "mutation", "query"), "version", "timestamp" (RFC 3339),
/// "payload.<path>" (numbers and booleans as their JSON text: 3, 0.5,
/// true), "metadata.<key>". A missing (or null) field fails every op but
/// NOT_EQUALS.
pub fn filter_matches(filters: &[pb::EventFilter], envelope: &EventEnvelope) -> bool {
    filters.iter().all(|f| filter_match(f, envelope))
}

fn filter_match(f: &pb::EventFilter, envelope: &EventEnvelope) -> bool {
    let text = field_text(envelope, &f.field);
    let normalize = |v: &str| -> String {
        if f.field == "kind" {
            let v = v.to_ascii_lowercase();
            v.strip_prefix("envelope_kind_").map(str::to_string).unwrap_or(v)
        } else {
            v.to_string()
        }
    };
    let first = f.values.first().map(|v| normalize(v));
    match pb::FilterOp::try_from(f.op).unwrap_or(pb::FilterOp::Unspecified) {
        pb::FilterOp::Unspecified | pb::FilterOp::Equals => text.is_some() && text == first,
        pb::FilterOp::NotEquals => text.is_none() || text != first,
        pb::FilterOp::In => text.is_some_and(|t| f.values.iter().any(|v| normalize(v) == t)),
        pb::FilterOp::Exists => text.is_some(),
        pb::FilterOp::Prefix => match (text, first) {
            (Some(t), Some(p)) => t.starts_with(&p),
            _ => false,
        },
    }
}

/// The text form of a dotted envelope field, `None` when absent.
fn field_text(envelope: &EventEnvelope, field: &str) -> Option<String> {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match field {
        "name" => non_empty(&envelope.name),
        "kind" => Some(kind_text(EnvelopeKind::try_from(envelope.kind).unwrap_or_default()).to_string()),
        "version" => (envelope.version > 0).then(|| envelope.version.to_string()),
        "message_id" => non_empty(&envelope.message_id),
        "tenant_id" => non_empty(&envelope.tenant_id),
        "protocol" => non_empty(&envelope.protocol),
        "idempotency_key" => non_empty(&envelope.idempotency_key),
        "timestamp" => envelope
            .timestamp
            .as_ref()
            .and_then(pulse_common::time::from_proto)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        "payload" => envelope.payload.as_ref().map(|p| pulse_common::json::to_json(p).to_string()),
        _ => {
            if let Some(key) = field.strip_prefix("metadata.") {
                return envelope.metadata.get(key).cloned();
            }
            let path = field.strip_prefix("payload.")?;
            let mut fields = &envelope.payload.as_ref()?.fields;
            let mut segments = path.split('.').peekable();
            let mut value: &prost_types::Value;
            loop {
                let seg = segments.next()?;
                value = fields.get(seg)?;
                loop {
                    match (&value.kind, segments.peek()) {
                        (_, None) => return value_text(value),
                        (Some(prost_types::value::Kind::StructValue(s)), Some(_)) => {
                            fields = &s.fields;
                            break;
                        }
                        (Some(prost_types::value::Kind::ListValue(l)), Some(next)) => {
                            let index: usize = next.parse().ok()?;
                            value = l.values.get(index)?;
                            segments.next();
                        }
                        _ => return None,
                    }
                }
            }
        }
    }
}

fn value_text(v: &prost_types::Value) -> Option<String> {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => None,
        Some(Kind::StringValue(s)) => Some(s.clone()),
        Some(Kind::BoolValue(b)) => Some(b.to_string()),
        Some(_) => Some(pulse_common::json::value_to_json(v).to_string()),
    }
}

/// Checks a trigger's filters; `field_prefix` names the list in the
/// request, e.g. `trigger.event.filters` → `trigger.event.filters[2].values`.
pub fn validate_filters(field_prefix: &str, filters: &[pb::EventFilter]) -> Result<(), DriftError> {
    if filters.len() > MAX_FILTERS {
        return Err(DriftError::invalid(
            field_prefix,
            format!("has {} filters; the limit is {MAX_FILTERS}", filters.len()),
        ));
    }
    for (i, f) in filters.iter().enumerate() {
        let at = |name: &str| format!("{field_prefix}[{i}].{name}");
        let known = FILTER_ROOTS.contains(&f.field.as_str())
            || f.field.strip_prefix("metadata.").is_some_and(|k| !k.is_empty())
            || f.field.strip_prefix("payload.").is_some_and(|p| p.split('.').all(|s| !s.is_empty()));
        if f.field.is_empty() {
            return Err(DriftError::invalid(
                at("field"),
                "is required: a dotted field such as \"payload.model\", \"metadata.entity_id\" or \"kind\"",
            ));
        }
        if !known {
            return Err(DriftError::invalid(
                at("field"),
                format!(
                    "'{}' is not an envelope field: use one of {}, \"payload.<path>\" or \"metadata.<key>\"",
                    truncate(&f.field, 64),
                    FILTER_ROOTS.join(", ")
                ),
            ));
        }
        let Ok(op) = pb::FilterOp::try_from(f.op) else {
            return Err(DriftError::invalid(
                at("op"),
                format!("{} is not a FilterOp; use EQUALS, NOT_EQUALS, IN, EXISTS or PREFIX", f.op),
            ));
        };
        let n = f.values.len();
        match op {
            pb::FilterOp::Unspecified | pb::FilterOp::Equals | pb::FilterOp::NotEquals | pb::FilterOp::Prefix
                if n != 1 =>
            {
                return Err(DriftError::invalid(
                    at("values"),
                    format!("has {n} values; this op compares with exactly one"),
                ));
            }
            pb::FilterOp::In if n == 0 || n > MAX_FILTER_VALUES => {
                return Err(DriftError::invalid(
                    at("values"),
                    format!("has {n} values; IN takes 1 to {MAX_FILTER_VALUES}"),
                ));
            }
            pb::FilterOp::Exists if n != 0 => {
                return Err(DriftError::invalid(at("values"), "must be empty: EXISTS takes no values"));
            }
            _ => {}
        }
        if let Some(j) = f.values.iter().position(|v| v.chars().count() > MAX_FILTER_VALUE_CHARS) {
            return Err(DriftError::invalid(
                format!("{field_prefix}[{i}].values[{j}]"),
                format!("is longer than {MAX_FILTER_VALUE_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- the relay

/// Copies other schemas' outboxes into the log. Each poll reads, per
/// source, the rows after the highest sequence number it has copied and the
/// numbers still missing below it, and commits the copies with the source's
/// cursor in one transaction (see the module documentation).
pub struct Relay {
    log: EventLog,
    database: Database,
    sources: Vec<Source>,
    gap_grace: Duration,
}

struct Source {
    schema: &'static str,
    db: Option<Db>,
    has_events: bool,
    /// The durable cursor as last known.
    cursor: i64,
    /// The highest sequence number copied (≥ cursor).
    high: i64,
    /// Numbers between cursor and high not seen yet, and since when.
    gaps: BTreeMap<i64, Instant>,
}

/// One outbox row.
struct OutboxRow {
    seq: i64,
    tenant: String,
    id: String,
    name: String,
    entity: String,
    at: i64,
    payload: String,
}

macro_rules! outbox_columns {
    () => {
        "seq, tenant, id, name, entity, at, payload"
    };
}

impl Relay {
    /// A relay over [`RELAY_SOURCES`].
    pub fn new(log: EventLog, database: Database) -> Self {
        Self::with_sources(log, database, RELAY_SOURCES)
    }

    /// A relay over these schemas (never drift's own).
    pub fn with_sources(log: EventLog, database: Database, sources: &[&'static str]) -> Self {
        let sources = sources
            .iter()
            .filter(|s| **s != crate::SCHEMA)
            .map(|schema| Source { schema, db: None, has_events: false, cursor: 0, high: 0, gaps: BTreeMap::new() })
            .collect();
        Self { log, database, sources, gap_grace: GAP_GRACE }
    }

    /// How long a missing sequence number is waited for (default
    /// [`GAP_GRACE`]).
    pub fn gap_grace(mut self, grace: Duration) -> Self {
        self.gap_grace = grace;
        self
    }

    /// Copies everything new from every source; the number of events added
    /// to the log. A failing source does not stop the others; the first
    /// error is returned after all were tried.
    pub async fn step(&mut self) -> Result<u64, DriftError> {
        let mut copied = 0;
        let mut first_error = None;
        for i in 0..self.sources.len() {
            // Drain, a bounded number of batches per step.
            for _ in 0..100 {
                match self.step_source(i).await {
                    Ok((n, more)) => {
                        copied += n;
                        if !more {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(source = self.sources[i].schema, error = %e, "event relay: reading the outbox failed");
                        first_error.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        if copied > 0 {
            self.log.wake();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(copied),
        }
    }

    /// One batch of one source: (events added, whether a full batch was read).
    async fn step_source(&mut self, i: usize) -> Result<(u64, bool), DriftError> {
        let grace = self.gap_grace;
        let schema = self.sources[i].schema;
        if self.sources[i].db.is_none() {
            // No migrations: the schema is the other service's to shape.
            self.sources[i].db = Some(self.database.open(schema, &[]).await?);
        }
        let db = self.sources[i].db.clone().expect("opened above");
        if !self.sources[i].has_events {
            // Tables are never dropped: once there, no need to look again.
            self.sources[i].has_events = outbox_exists(&db, schema).await?;
            if !self.sources[i].has_events {
                return Ok((0, false));
            }
        }
        // Another replica may have moved it.
        let durable = self.log.relay_cursor(schema).await?;
        let src = &mut self.sources[i];
        if durable > src.cursor {
            src.cursor = durable;
        }
        if src.cursor > src.high {
            src.high = src.cursor;
        }
        let cursor = src.cursor;
        src.gaps.retain(|seq, _| *seq > cursor);
        let missing: Vec<i64> = src.gaps.keys().copied().collect();
        let fresh = read_outbox(&db, schema, src.high, &[]).await?;
        let filled = if missing.is_empty() { Vec::new() } else { read_outbox(&db, schema, 0, &missing).await? };
        let more = fresh.len() as i64 == RELAY_BATCH;

        // The new state, kept only once the copies commit.
        let now = Instant::now();
        let mut gaps = src.gaps.clone();
        for r in &filled {
            gaps.remove(&r.seq);
        }
        let mut high = src.high;
        let mut untracked = 0u64;
        for r in &fresh {
            for seq in high + 1..r.seq {
                if gaps.len() < MAX_TRACKED_GAPS {
                    gaps.insert(seq, now);
                } else {
                    untracked += 1;
                }
            }
            high = high.max(r.seq);
        }
        if untracked > 0 {
            tracing::warn!(source = schema, untracked, "event relay: too many missing outbox numbers to wait for");
        }
        gaps.retain(|seq, seen| {
            let waiting = now.duration_since(*seen) < grace;
            if !waiting {
                tracing::info!(source = schema, seq, "event relay: outbox number never committed; moving past it");
            }
            waiting
        });
        let new_cursor = gaps.keys().next().map(|first| first - 1).unwrap_or(high);

        let rows: Vec<NewRow> = filled.into_iter().chain(fresh).map(|r| relayed(schema, r)).collect();
        let moved = new_cursor > cursor;
        let mut added = 0;
        if !rows.is_empty() || moved {
            let new = self.log.append(rows, moved.then_some((schema, new_cursor))).await?;
            added = new.iter().filter(|n| **n).count() as u64;
            if added > 0 {
                self.log.sequence().await?;
            }
        }
        let src = &mut self.sources[i];
        src.gaps = gaps;
        src.high = high;
        src.cursor = src.cursor.max(new_cursor);
        Ok((added, more))
    }
}

/// The log row of an outbox row: its id, name, time, tenant and payload;
/// version from the name, kind EVENT, metadata naming its entity and source.
fn relayed(schema: &str, r: OutboxRow) -> NewRow {
    let metadata = default_metadata(&r.name, &r.entity, schema);
    NewRow {
        version: i64::from(name_version(&r.name).unwrap_or(0)),
        metadata: serde_json::to_string(&metadata).unwrap_or_else(|_| "{}".into()),
        tenant: r.tenant,
        id: r.id,
        entity: r.entity,
        at: r.at,
        payload: r.payload,
        kind: kind_text(EnvelopeKind::Event),
        idempotency_key: String::new(),
        source: schema.to_string(),
        source_seq: Some(r.seq),
        name: r.name,
    }
}

async fn outbox_exists(db: &Db, schema: &str) -> Result<bool, StoreError> {
    match db {
        Db::Postgres(pg) => {
            let sql = "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
                       WHERE table_schema = $1 AND table_name = 'events')";
            Ok(pg.client().await?.query_one(sql, &[&schema]).await?.get(0))
        }
        Db::Embedded(sqlite) => {
            sqlite
                .call(|c| {
                    Ok(c.query_row(
                        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
                        (),
                        |r| r.get::<_, bool>(0),
                    )?)
                })
                .await
        }
    }
}

/// Outbox rows after `after` (a batch), or with `only` these numbers.
async fn read_outbox(db: &Db, schema: &str, after: i64, only: &[i64]) -> Result<Vec<OutboxRow>, StoreError> {
    macro_rules! outbox_row {
        ($r:expr, $get:ident $(, $q:tt)?) => {
            OutboxRow {
                seq: $r.$get(0)$($q)?,
                tenant: $r.$get(1)$($q)?,
                id: $r.$get(2)$($q)?,
                name: $r.$get(3)$($q)?,
                entity: $r.$get(4)$($q)?,
                at: $r.$get(5)$($q)?,
                payload: $r.$get(6)$($q)?,
            }
        };
    }
    match db {
        Db::Postgres(pg) => {
            let client = pg.client().await?;
            let rows = if only.is_empty() {
                let sql =
                    format!("SELECT {} FROM {schema}.events WHERE seq > $1 ORDER BY seq LIMIT $2", outbox_columns!());
                client.query(&sql, &[&after, &RELAY_BATCH]).await?
            } else {
                let sql = format!("SELECT {} FROM {schema}.events WHERE seq = ANY($1) ORDER BY seq", outbox_columns!());
                client.query(&sql, &[&only.to_vec()]).await?
            };
            Ok(rows.iter().map(|r| outbox_row!(r, get)).collect())
        }
        Db::Embedded(sqlite) => {
            let only = if only.is_empty() { String::new() } else { serde_json::to_string(only).unwrap_or_default() };
            sqlite
                .call(move |c| {
                    let rows = if only.is_empty() {
                        let mut stmt = c.prepare_cached(concat!(
                            "SELECT ",
                            outbox_columns!(),
                            " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                        ))?;
                        stmt.query_map((after, RELAY_BATCH), |r| Ok(outbox_row!(r, get, ?)))?
                            .collect::<Result<Vec<_>, _>>()?
                    } else {
                        let mut stmt = c.prepare_cached(concat!(
                            "SELECT ",
                            outbox_columns!(),
                            " FROM events WHERE seq IN (SELECT value FROM json_each(?1)) ORDER BY seq"
                        ))?;
                        stmt.query_map((only,), |r| Ok(outbox_row!(r, get, ?)))?.collect::<Result<Vec<_>, _>>()?
                    };
                    Ok(rows)
                })
                .await
        }
    }
}

/// Runs a [`Relay`] over [`RELAY_SOURCES`] every `interval` until
/// `shutdown` resolves. Safe to run in every replica at once.
pub fn spawn_relay(
    log: EventLog,
    database: Database,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut relay = Relay::new(log, database);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                result = relay.step() => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "event relay step failed; retrying");
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}
