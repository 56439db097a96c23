//! Where the graph lives: PostgreSQL (schema `lineage`) or the embedded
//! store. Both serialise writers per tenant, so two concurrent edges can
//! never close a cycle together.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pulse_common::store::{Db, Migration, PgDb, SqliteDb, StoreError};
use pulse_common::time::from_millis;

use crate::domain::{Direction, Edge, EdgeWrite, Node, NodeKind, NodeWrite, RecordOutcome, check_link};
use crate::error::LineageError;

pub const SCHEMA: &str = "lineage";

pub static MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "nodes and edges",
    postgres: "
        CREATE TABLE nodes (
            tenant_id TEXT NOT NULL,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            attributes JSONB NOT NULL DEFAULT '{}',
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (tenant_id, id));
        CREATE INDEX nodes_kind ON nodes (tenant_id, kind, id);
        CREATE TABLE edges (
            tenant_id TEXT NOT NULL,
            from_id TEXT NOT NULL,
            to_id TEXT NOT NULL,
            relation TEXT NOT NULL DEFAULT '',
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (tenant_id, from_id, to_id),
            FOREIGN KEY (tenant_id, from_id) REFERENCES nodes (tenant_id, id),
            FOREIGN KEY (tenant_id, to_id) REFERENCES nodes (tenant_id, id));
        CREATE INDEX edges_to ON edges (tenant_id, to_id);",
    sqlite: "
        CREATE TABLE nodes (
            tenant_id TEXT NOT NULL,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            attributes TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, id)) WITHOUT ROWID;
        CREATE INDEX nodes_kind ON nodes (tenant_id, kind, id);
        CREATE TABLE edges (
            tenant_id TEXT NOT NULL,
            from_id TEXT NOT NULL,
            to_id TEXT NOT NULL,
            relation TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, from_id, to_id),
            FOREIGN KEY (tenant_id, from_id) REFERENCES nodes (tenant_id, id),
            FOREIGN KEY (tenant_id, to_id) REFERENCES nodes (tenant_id, id)) WITHOUT ROWID;
        CREATE INDEX edges_to ON edges (tenant_id, to_id);",
}];

#[async_trait]
pub trait LineageStore: Send + Sync + std::fmt::Debug {
    /// Upserts the nodes (merging attributes; a kind change is refused) and
    /// adds the edges (endpoints must exist, kinds must link, no cycle), in
    /// one transaction.
    async fn record(
        &self,
        tenant: &str,
        nodes: Vec<NodeWrite>,
        edges: Vec<EdgeWrite>,
    ) -> Result<RecordOutcome, LineageError>;
    async fn node(&self, tenant: &str, id: &str) -> Result<Option<Node>, StoreError>;
    /// Nodes by id after `after`, optionally of one kind.
    async fn list(
        &self,
        tenant: &str,
        kind: Option<NodeKind>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Node>, StoreError>;
    /// One level of a walk: at most `limit` of the edges into (upstream),
    /// out of (downstream) or touching (both) `ids`, each with the node at
    /// its far end.
    async fn step(
        &self,
        tenant: &str,
        ids: &[String],
        direction: Direction,
        limit: u32,
    ) -> Result<Vec<Step>, StoreError>;
    async fn edge(&self, tenant: &str, from_id: &str, to_id: &str) -> Result<Option<Edge>, StoreError>;
    /// Edges after `(from_id, to_id)` in that order, for export.
    async fn edges_page(&self, tenant: &str, after: (&str, &str), limit: u32) -> Result<Vec<Edge>, StoreError>;
}

/// An edge and the node at its far end from the walk's frontier.
#[derive(Debug, Clone)]
pub struct Step {
    pub edge: Edge,
    pub far: Node,
}

/// The step query for one direction: `{edge}` and `{node}` name the tables,
/// `{ids}` the frontier test, `{hint}` an index hint (SQLite only).
fn step_sql(direction: Direction, edges: &str, nodes: &str, ids: &str, upstream_hint: &str) -> String {
    let part = |near: &str, far: &str, hint: &str| {
        format!(
            "SELECT e.from_id, e.to_id, e.relation, e.created_at, n.id, n.kind, n.attributes, n.created_at
             FROM {edges} e {hint} CROSS JOIN {nodes} n
             WHERE e.tenant_id = $1 AND e.{near} {ids} AND n.tenant_id = e.tenant_id AND n.id = e.{far}"
        )
    };
    let body = match direction {
        Direction::Upstream => part("to_id", "from_id", upstream_hint),
        Direction::Downstream => part("from_id", "to_id", ""),
        Direction::Both => {
            format!("{} UNION ALL {}", part("to_id", "from_id", upstream_hint), part("from_id", "to_id", ""))
        }
    };
    format!("SELECT * FROM ({body}) s ORDER BY 4, 1, 2 LIMIT $3")
}

pub fn lineage_store(db: &Db) -> Arc<dyn LineageStore> {
    match db {
        Db::Postgres(pg) => Arc::new(PgLineageStore(pg.clone())),
        Db::Embedded(lite) => Arc::new(SqliteLineageStore(lite.clone())),
    }
}

fn kind_of(s: &str) -> Result<NodeKind, StoreError> {
    NodeKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown node kind '{s}'")))
}

fn attributes_json(a: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(a.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
}

fn attributes_from(v: serde_json::Value) -> BTreeMap<String, String> {
    match v {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

const NODE_COLUMNS: &str = "id, kind, attributes, created_at";
const EDGE_COLUMNS: &str = "from_id, to_id, relation, created_at";

// ---- PostgreSQL -----------------------------------------------------------

#[derive(Debug)]
struct PgLineageStore(PgDb);

fn pg_node(r: &tokio_postgres::Row) -> Result<Node, StoreError> {
    Ok(Node { id: r.get(0), kind: kind_of(r.get(1))?, attributes: attributes_from(r.get(2)), created_at: r.get(3) })
}

fn pg_edge(r: &tokio_postgres::Row) -> Edge {
    Edge { from_id: r.get(0), to_id: r.get(1), relation: r.get(2), created_at: r.get(3) }
}

#[async_trait]
impl LineageStore for PgLineageStore {
    async fn record(
        &self,
        tenant: &str,
        nodes: Vec<NodeWrite>,
        edges: Vec<EdgeWrite>,
    ) -> Result<RecordOutcome, LineageError> {
        let mut client = self.0.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let now: DateTime<Utc> = pulse_common::time::now_millis();
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("lineage:{tenant}")])
            .await
            .map_err(StoreError::from)?;
        let mut out = RecordOutcome::default();
        if !nodes.is_empty() {
            // One statement per node: insert, or merge attributes when the
            // kind matches; no row back means the id is taken by another kind.
            let upsert = tx
                .prepare(
                    "INSERT INTO lineage.nodes (tenant_id, id, kind, attributes, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (tenant_id, id) DO UPDATE
                        SET attributes = nodes.attributes || EXCLUDED.attributes, updated_at = EXCLUDED.updated_at
                        WHERE nodes.kind = EXCLUDED.kind
                     RETURNING (xmax = 0)",
                )
                .await
                .map_err(StoreError::from)?;
            for n in &nodes {
                let row = tx
                    .query_opt(&upsert, &[&tenant, &n.id, &n.kind.as_str(), &attributes_json(&n.attributes), &now])
                    .await
                    .map_err(StoreError::from)?;
                match row {
                    Some(r) if r.get::<_, bool>(0) => out.nodes_created += 1,
                    Some(_) => out.nodes_updated += 1,
                    None => {
                        let existing: String = tx
                            .query_one(
                                "SELECT kind FROM lineage.nodes WHERE tenant_id = $1 AND id = $2",
                                &[&tenant, &n.id],
                            )
                            .await
                            .map_err(StoreError::from)?
                            .get(0);
                        return Err(LineageError::KindConflict {
                            id: n.id.clone(),
                            existing: kind_of(&existing)?.as_str(),
                            requested: n.kind.as_str(),
                        });
                    }
                }
            }
        }
        if !edges.is_empty() {
            let ids: Vec<&str> = edges.iter().flat_map(|e| [e.from_id.as_str(), e.to_id.as_str()]).collect();
            let kinds: HashMap<String, NodeKind> = tx
                .query("SELECT id, kind FROM lineage.nodes WHERE tenant_id = $1 AND id = ANY($2)", &[&tenant, &ids])
                .await
                .map_err(StoreError::from)?
                .iter()
                .map(|r| Ok((r.get::<_, String>(0), kind_of(r.get(1))?)))
                .collect::<Result<_, StoreError>>()?;
            let insert = tx
                .prepare(
                    "INSERT INTO lineage.edges (tenant_id, from_id, to_id, relation, created_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(StoreError::from)?;
            let cycle = tx
                .prepare(
                    "WITH RECURSIVE down(id) AS (
                         SELECT $2::text
                         UNION
                         SELECT e.to_id FROM lineage.edges e JOIN down d ON e.tenant_id = $1 AND e.from_id = d.id)
                     SELECT EXISTS (SELECT 1 FROM down WHERE id = $3)",
                )
                .await
                .map_err(StoreError::from)?;
            for e in &edges {
                let from_kind = *kinds.get(&e.from_id).ok_or_else(|| LineageError::NodeNotFound(e.from_id.clone()))?;
                let to_kind = *kinds.get(&e.to_id).ok_or_else(|| LineageError::NodeNotFound(e.to_id.clone()))?;
                check_link(&e.from_id, from_kind, &e.to_id, to_kind)?;
                // Checked before the insert: the walk from `to` must not reach `from`.
                let closes: bool =
                    tx.query_one(&cycle, &[&tenant, &e.to_id, &e.from_id]).await.map_err(StoreError::from)?.get(0);
                if closes {
                    return Err(LineageError::Cycle { from: e.from_id.clone(), to: e.to_id.clone() });
                }
                let inserted = tx
                    .execute(&insert, &[&tenant, &e.from_id, &e.to_id, &e.relation, &now])
                    .await
                    .map_err(StoreError::from)?;
                out.edges_created += inserted as u32;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(out)
    }

    async fn node(&self, tenant: &str, id: &str) -> Result<Option<Node>, StoreError> {
        let c = self.0.client().await?;
        let stmt = c
            .prepare_cached(&format!("SELECT {NODE_COLUMNS} FROM lineage.nodes WHERE tenant_id = $1 AND id = $2"))
            .await?;
        let row = c.query_opt(&stmt, &[&tenant, &id]).await?;
        row.as_ref().map(pg_node).transpose()
    }

    async fn list(
        &self,
        tenant: &str,
        kind: Option<NodeKind>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Node>, StoreError> {
        let c = self.0.client().await?;
        let kind = kind.map(|k| k.as_str());
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {NODE_COLUMNS} FROM lineage.nodes
                 WHERE tenant_id = $1 AND ($2::text IS NULL OR kind = $2) AND id > $3 ORDER BY id LIMIT $4"
            ))
            .await?;
        let rows = c.query(&stmt, &[&tenant, &kind, &after, &(limit as i64)]).await?;
        rows.iter().map(pg_node).collect()
    }

    async fn step(
        &self,
        tenant: &str,
        ids: &[String],
        direction: Direction,
        limit: u32,
    ) -> Result<Vec<Step>, StoreError> {
        let c = self.0.client().await?;
        let sql = step_sql(direction, "lineage.edges", "lineage.nodes", "= ANY($2)", "");
        // Prepared once per connection: a walk is one round trip per level.
        let stmt = c.prepare_cached(&sql).await?;
        let rows = c.query(&stmt, &[&tenant, &ids, &(limit as i64)]).await?;
        rows.iter()
            .map(|r| {
                Ok(Step {
                    edge: Edge { from_id: r.get(0), to_id: r.get(1), relation: r.get(2), created_at: r.get(3) },
                    far: Node {
                        id: r.get(4),
                        kind: kind_of(r.get(5))?,
                        attributes: attributes_from(r.get(6)),
                        created_at: r.get(7),
                    },
                })
            })
            .collect()
    }

    async fn edge(&self, tenant: &str, from_id: &str, to_id: &str) -> Result<Option<Edge>, StoreError> {
        let c = self.0.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {EDGE_COLUMNS} FROM lineage.edges WHERE tenant_id = $1 AND from_id = $2 AND to_id = $3"
            ))
            .await?;
        Ok(c.query_opt(&stmt, &[&tenant, &from_id, &to_id]).await?.as_ref().map(pg_edge))
    }

    async fn edges_page(&self, tenant: &str, after: (&str, &str), limit: u32) -> Result<Vec<Edge>, StoreError> {
        let c = self.0.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {EDGE_COLUMNS} FROM lineage.edges WHERE tenant_id = $1 AND (from_id, to_id) > ($2, $3)
                 ORDER BY from_id, to_id LIMIT $4"
            ))
            .await?;
        let rows = c.query(&stmt, &[&tenant, &after.0, &after.1, &(limit as i64)]).await?;
        Ok(rows.iter().map(pg_edge).collect())
    }
}

// ---- embedded (SQLite) ----------------------------------------------------

#[derive(Debug)]
struct SqliteLineageStore(SqliteDb);

fn lite_node(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn lite_node_into((id, kind, attributes, created): (String, String, String, i64)) -> Result<Node, StoreError> {
    let attributes = serde_json::from_str(&attributes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Node { id, kind: kind_of(&kind)?, attributes: attributes_from(attributes), created_at: from_millis(created) })
}

fn lite_edge(r: &rusqlite::Row<'_>) -> rusqlite::Result<Edge> {
    Ok(Edge { from_id: r.get(0)?, to_id: r.get(1)?, relation: r.get(2)?, created_at: from_millis(r.get(3)?) })
}

fn json_ids(ids: &[String]) -> String {
    serde_json::to_string(ids).expect("strings serialise")
}

fn record_sqlite(
    c: &mut rusqlite::Connection,
    tenant: &str,
    nodes: &[NodeWrite],
    edges: &[EdgeWrite],
) -> Result<RecordOutcome, LineageError> {
    use rusqlite::OptionalExtension;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
    let now = pulse_common::time::now_millis().timestamp_millis();
    let mut out = RecordOutcome::default();
    {
        let mut existing_kind =
            tx.prepare_cached("SELECT kind FROM nodes WHERE tenant_id = ?1 AND id = ?2").map_err(StoreError::from)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO nodes (tenant_id, id, kind, attributes, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .map_err(StoreError::from)?;
        let mut merge = tx
            .prepare_cached(
                "UPDATE nodes SET attributes = json_patch(attributes, ?3), updated_at = ?4 WHERE tenant_id = ?1 AND id = ?2",
            )
            .map_err(StoreError::from)?;
        for n in nodes {
            let attrs = attributes_json(&n.attributes).to_string();
            let kind: Option<String> = existing_kind
                .query_row(rusqlite::params![tenant, n.id], |r| r.get(0))
                .optional()
                .map_err(StoreError::from)?;
            match kind {
                None => {
                    insert
                        .execute(rusqlite::params![tenant, n.id, n.kind.as_str(), attrs, now])
                        .map_err(StoreError::from)?;
                    out.nodes_created += 1;
                }
                Some(k) if k == n.kind.as_str() => {
                    merge.execute(rusqlite::params![tenant, n.id, attrs, now]).map_err(StoreError::from)?;
                    out.nodes_updated += 1;
                }
                Some(k) => {
                    return Err(LineageError::KindConflict {
                        id: n.id.clone(),
                        existing: kind_of(&k)?.as_str(),
                        requested: n.kind.as_str(),
                    });
                }
            }
        }
        let mut cycle = tx
            .prepare_cached(
                // CROSS JOIN keeps the walk as the outer loop, so each step is
                // an index lookup in `edges`, not a scan of it.
                "WITH RECURSIVE down(id) AS (
                     SELECT ?2
                     UNION
                     SELECT e.to_id FROM down d CROSS JOIN edges e WHERE e.tenant_id = ?1 AND e.from_id = d.id)
                 SELECT EXISTS (SELECT 1 FROM down WHERE id = ?3)",
            )
            .map_err(StoreError::from)?;
        let mut insert_edge = tx
            .prepare_cached(
                "INSERT INTO edges (tenant_id, from_id, to_id, relation, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO NOTHING",
            )
            .map_err(StoreError::from)?;
        for e in edges {
            let from_kind = existing_kind
                .query_row(rusqlite::params![tenant, e.from_id], |r| r.get::<_, String>(0))
                .optional()
                .map_err(StoreError::from)?
                .ok_or_else(|| LineageError::NodeNotFound(e.from_id.clone()))?;
            let to_kind = existing_kind
                .query_row(rusqlite::params![tenant, e.to_id], |r| r.get::<_, String>(0))
                .optional()
                .map_err(StoreError::from)?
                .ok_or_else(|| LineageError::NodeNotFound(e.to_id.clone()))?;
            check_link(&e.from_id, kind_of(&from_kind)?, &e.to_id, kind_of(&to_kind)?)?;
            let closes: bool = cycle
                .query_row(rusqlite::params![tenant, e.to_id, e.from_id], |r| r.get(0))
                .map_err(StoreError::from)?;
            if closes {
                return Err(LineageError::Cycle { from: e.from_id.clone(), to: e.to_id.clone() });
            }
            out.edges_created += insert_edge
                .execute(rusqlite::params![tenant, e.from_id, e.to_id, e.relation, now])
                .map_err(StoreError::from)? as u32;
        }
    }
    tx.commit().map_err(StoreError::from)?;
    Ok(out)
}

#[async_trait]
impl LineageStore for SqliteLineageStore {
    async fn record(
        &self,
        tenant: &str,
        nodes: Vec<NodeWrite>,
        edges: Vec<EdgeWrite>,
    ) -> Result<RecordOutcome, LineageError> {
        let tenant = tenant.to_string();
        // The closure's error must be a StoreError; carry domain errors out beside it.
        self.0.call(move |c| Ok(record_sqlite(c, &tenant, &nodes, &edges))).await?
    }

    async fn node(&self, tenant: &str, id: &str) -> Result<Option<Node>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.0
            .call(move |c| {
                use rusqlite::OptionalExtension;
                let raw = c
                    .query_row(
                        &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE tenant_id = ?1 AND id = ?2"),
                        rusqlite::params![tenant, id],
                        lite_node,
                    )
                    .optional()?;
                raw.map(lite_node_into).transpose()
            })
            .await
    }

    async fn list(
        &self,
        tenant: &str,
        kind: Option<NodeKind>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Node>, StoreError> {
        let (tenant, after, kind) = (tenant.to_string(), after.to_string(), kind.map(|k| k.as_str()));
        self.0
            .call(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {NODE_COLUMNS} FROM nodes
                     WHERE tenant_id = ?1 AND (?2 IS NULL OR kind = ?2) AND id > ?3 ORDER BY id LIMIT ?4"
                ))?;
                let raw: Vec<_> = stmt
                    .query_map(rusqlite::params![tenant, kind, after, limit], lite_node)?
                    .collect::<Result<_, _>>()?;
                raw.into_iter().map(lite_node_into).collect()
            })
            .await
    }

    async fn step(
        &self,
        tenant: &str,
        ids: &[String],
        direction: Direction,
        limit: u32,
    ) -> Result<Vec<Step>, StoreError> {
        let (tenant, ids) = (tenant.to_string(), json_ids(ids));
        self.0
            .call(move |c| {
                // Without statistics SQLite would read every edge of the
                // tenant for an upstream step: name the index.
                let sql = step_sql(
                    direction,
                    "edges",
                    "nodes",
                    "IN (SELECT value FROM json_each($2))",
                    "INDEXED BY edges_to",
                );
                let mut stmt = c.prepare_cached(&sql)?;
                let raw: Vec<(Edge, (String, String, String, i64))> = stmt
                    .query_map(rusqlite::params![tenant, ids, limit], |r| {
                        Ok((lite_edge(r)?, (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)))
                    })?
                    .collect::<Result<_, _>>()?;
                raw.into_iter().map(|(edge, far)| Ok(Step { edge, far: lite_node_into(far)? })).collect()
            })
            .await
    }

    async fn edge(&self, tenant: &str, from_id: &str, to_id: &str) -> Result<Option<Edge>, StoreError> {
        let (tenant, from_id, to_id) = (tenant.to_string(), from_id.to_string(), to_id.to_string());
        self.0
            .call(move |c| {
                use rusqlite::OptionalExtension;
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {EDGE_COLUMNS} FROM edges WHERE tenant_id = ?1 AND from_id = ?2 AND to_id = ?3"
                ))?;
                Ok(stmt.query_row(rusqlite::params![tenant, from_id, to_id], lite_edge).optional()?)
            })
            .await
    }

    async fn edges_page(&self, tenant: &str, after: (&str, &str), limit: u32) -> Result<Vec<Edge>, StoreError> {
        let (tenant, from_id, to_id) = (tenant.to_string(), after.0.to_string(), after.1.to_string());
        self.0
            .call(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {EDGE_COLUMNS} FROM edges WHERE tenant_id = ?1 AND (from_id, to_id) > (?2, ?3)
                     ORDER BY from_id, to_id LIMIT ?4"
                ))?;
                let edges = stmt.query_map(rusqlite::params![tenant, from_id, to_id, limit], lite_edge)?;
                Ok(edges.collect::<Result<_, _>>()?)
            })
            .await
    }
}
