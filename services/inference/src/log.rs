//! The prediction log: every answer is appended in memory and written to the
//! store in batches by one background task, so no request waits on a
//! database round trip. Appends wait (backpressure) rather than drop when the
//! writer falls behind, failed writes are retried until they land, and
//! `close` drains everything already appended: nothing acknowledged is lost
//! on a graceful shutdown. Until its batch is written, a prediction is found
//! in the pending map (feedback may arrive before the write).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulse_common::records::{RecordStore, Write};
use pulse_proto::inference::v1 as pb;
use tokio::sync::{mpsc, watch};

/// Record kinds of the log.
pub const PREDICTION: &str = "prediction";
/// The shadow version's answer to a prediction, under the primary's id.
pub const SHADOW: &str = "shadow";

const BATCH_ROWS: usize = 1000;
const QUEUE: usize = 65_536;

/// Predictions appended and not yet written, by (tenant, kind, id).
type Pending = Arc<Mutex<HashMap<(String, &'static str, String), pb::Prediction>>>;

struct Entry {
    seq: u64,
    tenant: String,
    kind: &'static str,
    id: String,
    parent: String,
    status: String,
    prediction: pb::Prediction,
}

#[derive(Clone)]
pub struct PredictionLog {
    tx: Arc<Mutex<Option<mpsc::Sender<Entry>>>>,
    pending: Pending,
    appended: Arc<AtomicU64>,
    written: watch::Receiver<u64>,
    writer: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for PredictionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionLog").field("appended", &self.appended.load(Ordering::Relaxed)).finish()
    }
}

impl PredictionLog {
    pub fn start(records: Arc<dyn RecordStore>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (written_tx, written) = watch::channel(0u64);
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let writer = tokio::spawn(write_loop(records, rx, pending.clone(), written_tx));
        Self {
            tx: Arc::new(Mutex::new(Some(tx))),
            pending,
            appended: Arc::new(AtomicU64::new(0)),
            written,
            writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
        }
    }

    /// Appends a prediction (its features and hashes included).
    pub async fn append(&self, tenant: &str, kind: &'static str, id: &str, model: &str, prediction: pb::Prediction) {
        let Some(tx) = self.tx.lock().ok().and_then(|t| t.clone()) else {
            tracing::warn!(prediction = %id, "the prediction log is closed; not logged");
            return;
        };
        let role = pb::ServingRole::try_from(prediction.role).unwrap_or_default().as_str_name().to_string();
        if let Ok(mut p) = self.pending.lock() {
            p.insert((tenant.to_string(), kind, id.to_string()), prediction.clone());
        }
        let seq = self.appended.fetch_add(1, Ordering::SeqCst) + 1;
        let entry = Entry {
            seq,
            tenant: tenant.to_string(),
            kind,
            id: id.to_string(),
            parent: model.to_string(),
            status: role,
            prediction,
        };
        if tx.send(entry).await.is_err() {
            tracing::warn!(prediction = %id, "the prediction log writer stopped; not logged");
        }
    }

    /// A prediction not yet written.
    pub fn pending(&self, tenant: &str, kind: &'static str, id: &str) -> Option<pb::Prediction> {
        self.pending.lock().ok()?.get(&(tenant.to_string(), kind, id.to_string())).cloned()
    }

    /// Waits until everything appended before this call is written.
    pub async fn flush(&self) {
        let target = self.appended.load(Ordering::SeqCst);
        let mut written = self.written.clone();
        let _ = written.wait_for(|w| *w >= target).await;
    }

    /// Stops taking appends and writes everything already appended.
    pub async fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.await;
        }
    }
}

async fn write_loop(
    records: Arc<dyn RecordStore>,
    mut rx: mpsc::Receiver<Entry>,
    pending: Pending,
    written: watch::Sender<u64>,
) {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while rx.recv_many(&mut batch, BATCH_ROWS).await > 0 {
        let last = batch.last().map(|e| e.seq).unwrap_or(0);
        let mut by_tenant: BTreeMap<String, Vec<Write>> = BTreeMap::new();
        for e in &batch {
            by_tenant.entry(e.tenant.clone()).or_default().push(Write::insert(
                e.kind,
                &e.id,
                &e.parent,
                &e.status,
                &e.prediction,
            ));
        }
        for (tenant, writes) in by_tenant {
            write_batch(records.as_ref(), &tenant, writes).await;
        }
        if let Ok(mut p) = pending.lock() {
            for e in batch.drain(..) {
                p.remove(&(e.tenant, e.kind, e.id));
            }
        }
        let _ = written.send(last);
    }
}

/// Writes until it lands: the answers were already given.
async fn write_batch(records: &dyn RecordStore, tenant: &str, writes: Vec<Write>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match records.apply(tenant, writes.clone()).await {
            Ok(true) => return,
            // An id already written (a retry after an ambiguous commit):
            // write the rest one by one.
            Ok(false) => {
                for w in writes {
                    let _ = records.apply(tenant, vec![w]).await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = writes.len(), "could not write predictions; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_common::records::{ListQuery, Record, StoredEvent, record_store};
    use pulse_common::store::{Migration, StoreError};
    use pulse_common::testing::embedded_backend;

    /// A real store that takes its time to write, so appends pile up.
    #[derive(Debug)]
    struct SlowStore(Arc<dyn RecordStore>);

    #[async_trait::async_trait]
    impl RecordStore for SlowStore {
        async fn get(&self, t: &str, k: &str, id: &str) -> Result<Option<Record>, StoreError> {
            self.0.get(t, k, id).await
        }
        async fn list(&self, t: &str, k: &str, q: ListQuery<'_>) -> Result<Vec<Record>, StoreError> {
            self.0.list(t, k, q).await
        }
        async fn by_status(&self, k: &str, s: &[&str], l: u32) -> Result<Vec<Record>, StoreError> {
            self.0.by_status(k, s, l).await
        }
        async fn claim(&self, k: &str, s: &[&str], u: i64) -> Result<Option<Record>, StoreError> {
            self.0.claim(k, s, u).await
        }
        async fn count(&self, k: &str, s: &[&str]) -> Result<u64, StoreError> {
            self.0.count(k, s).await
        }
        async fn apply(&self, t: &str, w: Vec<Write>) -> Result<bool, StoreError> {
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.0.apply(t, w).await
        }
        async fn events(&self, t: &str, n: Option<&str>, a: i64, l: u32) -> Result<Vec<StoredEvent>, StoreError> {
            self.0.events(t, n, a, l).await
        }
    }

    static MIGRATIONS: &[Migration] = &[Migration {
        version: 1,
        description: "records",
        postgres: pulse_common::records::POSTGRES,
        sqlite: pulse_common::records::SQLITE,
    }];

    #[tokio::test]
    async fn close_writes_everything_appended_and_pending_is_readable_before() {
        let backend = embedded_backend().await;
        let db = backend.database().await.open("log_test", MIGRATIONS).await.unwrap();
        let store = record_store(&db);
        let log = PredictionLog::start(Arc::new(SlowStore(store.clone())));
        for i in 0..3000 {
            let p = pb::Prediction { id: format!("prd_{i:05}"), label: "x".into(), ..Default::default() };
            log.append("t1", PREDICTION, &p.id.clone(), "m", p).await;
        }
        // Not all written yet (each write takes 30 ms), but every one is found.
        assert!(log.pending("t1", PREDICTION, "prd_02999").is_some());
        assert!(store.get("t1", PREDICTION, "prd_02999").await.unwrap().is_none());
        log.close().await;
        let q = ListQuery { parent: Some("m"), limit: 5000, ..Default::default() };
        assert_eq!(store.list("t1", PREDICTION, q).await.unwrap().len(), 3000, "nothing appended is lost");
        assert!(log.pending("t1", PREDICTION, "prd_02999").is_none());
        // Closed: later appends are refused, not queued forever.
        log.append("t1", PREDICTION, "prd_late", "m", pb::Prediction::default()).await;
        assert!(store.get("t1", PREDICTION, "prd_late").await.unwrap().is_none());
    }
}
