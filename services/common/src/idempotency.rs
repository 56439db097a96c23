//! Idempotency records: the first answer to each (scope, key), so a retried
//! mutation returns it instead of running twice. The scope is the tenant (or
//! `admin`), so two tenants' keys never meet. The gRPC layer that uses this
//! lives in [`crate::grpc::idempotency`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::store::{Db, PgDb, SqliteDb, StoreError};

/// What a claim on a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its earlier holder died): run the request. The
    /// token fences the holder: `complete` and `release` only act on the
    /// claim they were given, never on one that replaced it.
    Claimed(ClaimToken),
    /// The same request already completed: here is its answer.
    Replay(Vec<u8>),
    /// The key was used for a different request.
    Mismatch { method: String },
    /// The same request is running right now.
    InProgress,
}

/// The time a claim was taken, which identifies it.
pub type ClaimToken = DateTime<Utc>;

#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    /// Claims `key` for this request. A pending claim older than `stale`
    /// belonged to a process that died mid-request and is taken over.
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        method: &str,
        request_sha256: &str,
        now: DateTime<Utc>,
        stale: Duration,
    ) -> Result<Claim, StoreError>;
    /// Records the answer of a claimed request.
    async fn complete(
        &self,
        scope: &str,
        key: &str,
        token: ClaimToken,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Forgets a claim whose request failed, so a retry runs it again.
    async fn release(&self, scope: &str, key: &str, token: ClaimToken) -> Result<(), StoreError>;
    /// Deletes records claimed before `before`; returns how many.
    async fn sweep(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

pub fn idempotency_store(db: &Db) -> Arc<dyn IdempotencyStore> {
    match db {
        Db::Postgres(pg) => Arc::new(PgIdempotency(pg.clone())),
        Db::Embedded(lite) => Arc::new(SqliteIdempotency(lite.clone())),
    }
}

fn decide(
    method: &str,
    request_sha256: &str,
    found: (String, String, Option<Vec<u8>>, bool),
    stale_claim: bool,
    now: DateTime<Utc>,
) -> Claim {
    let (stored_method, stored_sha, response, completed) = found;
    if stored_method != method || stored_sha != request_sha256 {
        Claim::Mismatch { method: stored_method }
    } else if completed {
        Claim::Replay(response.unwrap_or_default())
    } else if stale_claim {
        Claim::Claimed(now)
    } else {
        Claim::InProgress
    }
}

#[derive(Debug)]
struct PgIdempotency(PgDb);

#[async_trait]
impl IdempotencyStore for PgIdempotency {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        method: &str,
        request_sha256: &str,
        now: DateTime<Utc>,
        stale: Duration,
    ) -> Result<Claim, StoreError> {
        let mut c = self.0.client().await?;
        let tx = c.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO platform.idempotency (scope, key, method, request_sha256, claimed_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&scope, &key, &method, &request_sha256, &now],
            )
            .await?;
        if inserted == 1 {
            tx.commit().await?;
            return Ok(Claim::Claimed(now));
        }
        let row = tx
            .query_opt(
                "SELECT method, request_sha256, response, completed_at IS NOT NULL, claimed_at
                 FROM platform.idempotency WHERE scope = $1 AND key = $2 FOR UPDATE",
                &[&scope, &key],
            )
            .await?;
        // Released between our insert and this read: its holder failed just
        // now, and the caller's retry will claim it.
        let Some(row) = row else { return Ok(Claim::InProgress) };
        let claimed_at: DateTime<Utc> = row.get(4);
        let found = (row.get(0), row.get(1), row.get(2), row.get(3));
        let claim = decide(method, request_sha256, found, claimed_at < now - stale, now);
        if matches!(claim, Claim::Claimed(_)) {
            tx.execute(
                "UPDATE platform.idempotency SET claimed_at = $3 WHERE scope = $1 AND key = $2",
                &[&scope, &key, &now],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(claim)
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        token: ClaimToken,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let c = self.0.client().await?;
        c.execute(
            "UPDATE platform.idempotency SET response = $4, completed_at = $5
             WHERE scope = $1 AND key = $2 AND claimed_at = $3 AND completed_at IS NULL",
            &[&scope, &key, &token, &response, &now],
        )
        .await?;
        Ok(())
    }

    async fn release(&self, scope: &str, key: &str, token: ClaimToken) -> Result<(), StoreError> {
        let c = self.0.client().await?;
        c.execute(
            "DELETE FROM platform.idempotency
             WHERE scope = $1 AND key = $2 AND claimed_at = $3 AND completed_at IS NULL",
            &[&scope, &key, &token],
        )
        .await?;
        Ok(())
    }

    async fn sweep(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let c = self.0.client().await?;
        Ok(c.execute("DELETE FROM platform.idempotency WHERE claimed_at < $1", &[&before]).await?)
    }
}

#[derive(Debug)]
struct SqliteIdempotency(SqliteDb);

#[async_trait]
impl IdempotencyStore for SqliteIdempotency {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        method: &str,
        request_sha256: &str,
        now: DateTime<Utc>,
        stale: Duration,
    ) -> Result<Claim, StoreError> {
        let (scope, key, method, sha) =
            (scope.to_string(), key.to_string(), method.to_string(), request_sha256.to_string());
        self.0
            .call(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now_ms = now.timestamp_millis();
                let inserted = tx.execute(
                    "INSERT INTO idempotency (scope, key, method, request_sha256, claimed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    rusqlite::params![scope, key, method, sha, now_ms],
                )?;
                if inserted == 1 {
                    tx.commit()?;
                    return Ok(Claim::Claimed(now));
                }
                let (found, claimed_at) = tx.query_row(
                    "SELECT method, request_sha256, response, completed_at IS NOT NULL, claimed_at
                     FROM idempotency WHERE scope = ?1 AND key = ?2",
                    rusqlite::params![scope, key],
                    |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), r.get::<_, i64>(4)?)),
                )?;
                let claim = decide(&method, &sha, found, claimed_at < (now - stale).timestamp_millis(), now);
                if matches!(claim, Claim::Claimed(_)) {
                    tx.execute(
                        "UPDATE idempotency SET claimed_at = ?3 WHERE scope = ?1 AND key = ?2",
                        rusqlite::params![scope, key, now_ms],
                    )?;
                }
                tx.commit()?;
                Ok(claim)
            })
            .await
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        token: ClaimToken,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (scope, key, response) = (scope.to_string(), key.to_string(), response.to_vec());
        self.0
            .call(move |c| {
                c.execute(
                    "UPDATE idempotency SET response = ?4, completed_at = ?5
                     WHERE scope = ?1 AND key = ?2 AND claimed_at = ?3 AND completed_at IS NULL",
                    rusqlite::params![scope, key, token.timestamp_millis(), response, now.timestamp_millis()],
                )?;
                Ok(())
            })
            .await
    }

    async fn release(&self, scope: &str, key: &str, token: ClaimToken) -> Result<(), StoreError> {
        let (scope, key) = (scope.to_string(), key.to_string());
        self.0
            .call(move |c| {
                c.execute(
                    "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND claimed_at = ?3 AND completed_at IS NULL",
                    rusqlite::params![scope, key, token.timestamp_millis()],
                )?;
                Ok(())
            })
            .await
    }

    async fn sweep(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.0
            .call(move |c| {
                Ok(c.execute("DELETE FROM idempotency WHERE claimed_at < ?1", [before.timestamp_millis()])? as u64)
            })
            .await
    }
}
