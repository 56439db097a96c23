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
