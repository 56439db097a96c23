//! The Pulse drift service: compares a window of a model's prediction log
//! (or a dataset version) with the model version's baseline — KS,
//! Wasserstein, PSI and Jensen–Shannon for numeric features, PSI and
//! chi-square for categorical ones, the outputs, and performance from
//! feedback — and keeps the reports, monitors and baselines; retraining
//! policies and their scheduler; pipelines (durable runs of steps that call
//! Pulse) and the persisted, replayable event log every service writes to.

mod caller;
pub mod columns;
pub mod compare;
pub mod domain;
pub mod error;
pub mod events;
mod grpc;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod retrain;
pub mod schedule;
pub mod stats;

use pulse_common::PulseError;
use pulse_common::host::{Hosted, Platform};
use pulse_common::records::record_store;
use pulse_common::store::Migration;
use pulse_proto::drift::v1::drift_service_server::DriftServiceServer;

pub use domain::Drift;
pub use error::DriftError;
pub use grpc::DriftGrpc;

pub const SCHEMA: &str = "drift";

pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "records and events",
        postgres: pulse_common::records::POSTGRES,
        sqlite: pulse_common::records::SQLITE,
    },
    Migration {
        version: 2,
        description: "event log envelopes, positions and relay cursors",
        postgres: events::MIGRATION_POSTGRES,
        sqlite: events::MIGRATION_SQLITE,
    },
    Migration {
        version: 3,
        description: "pipeline run leases",
        postgres: pulse_common::records::LEASES_POSTGRES,
        sqlite: pulse_common::records::LEASES_SQLITE,
    },
];

/// The drift service's parts: drift checks, the event log, pipelines and
/// retraining policies.
#[derive(Clone)]
pub struct DriftHost {
    pub drift: Drift,
    pub log: events::EventLog,
    pub pipelines: pipeline::Pipelines,
    pub policies: policy::Policies,
    pub runs: retrain::PolicyRuns,
}

/// Opens the drift state. Reference rows are read through the snapshot
/// domain, models and their test metrics through the trainer's, the
/// prediction log through inference's; with `lineage`, each stored report
/// is linked to its model version.
pub async fn open(
    platform: &Platform,
    trainer: pulse_trainer::Trainer,
    snapshots: pulse_snapshot::Snapshots,
    inference: pulse_inference::Inference,
    lineage: Option<pulse_lineage::Lineage>,
) -> Result<DriftHost, PulseError> {
    let db = platform.database.open(SCHEMA, MIGRATIONS).await?;
    let records = record_store(&db);
    let drift_metrics = metrics::DriftMetrics::new(&platform.metrics.registry);
    let drift = Drift::new(
        trainer.clone(),
        snapshots.clone(),
        inference.clone(),
        lineage,
        records.clone(),
        drift_metrics.clone(),
    );
    let log = events::EventLog::new(db.clone());
    let pipelines =
        pipeline::Pipelines::with_metrics(records.clone(), log.clone(), drift_metrics, platform.metrics.jobs.clone());
    let policies = policy::Policies::new(drift.clone(), inference, trainer.clone(), snapshots.clone(), records);
    let runs = retrain::PolicyRuns::new(pipelines.clone(), trainer, snapshots);
    Ok(DriftHost { drift, log, pipelines, policies, runs })
}

pub fn hosted(host: DriftHost, platform: &Platform) -> Hosted {
    Hosted::new(
        DriftServiceServer::new(DriftGrpc::new(host))
            .max_decoding_message_size(platform.config.max_message_bytes)
            .max_encoding_message_size(platform.config.max_message_bytes),
    )
}

/// Starts the background work once the server listens at `addr`: the event
/// relay (every service's outbox into the log), the pipeline workers and
/// trigger dispatcher, and the policy and monitor scheduler. Every part is
/// safe with many replicas.
pub fn start_background(
    host: &DriftHost,
    platform: &Platform,
    addr: std::net::SocketAddr,
) -> Result<Background, PulseError> {
    let tls = platform.config.tls_cert.is_some();
    // The configured address of the drift service names this process by a
    // name its certificate holds; else loopback (`localhost` under TLS, the
    // name a local certificate is most likely made for).
    let endpoint = match &platform.config.drift_url {
        Some(url) if !url.is_empty() => url.clone(),
        _ if tls => format!("https://localhost:{}", addr.port()),
        _ => format!("http://{}", own_address(addr)),
    };
    let ca = match platform.config.tls_ca.as_ref().or(platform.config.tls_cert.as_ref()) {
        Some(path) if tls => Some(
            std::fs::read(path)
                .map_err(|e| PulseError::Config(format!("cannot read {} for pipeline calls: {e}", path.display())))?,
        ),
        _ => None,
    };
    let caller =
        caller::GrpcCaller::new(platform.auth.clone(), &endpoint, ca.as_deref()).map_err(PulseError::Config)?;
    let lease = std::time::Duration::from_secs(platform.config.job_lease_seconds.max(1));
    let mut handles = pipeline::spawn_workers(host.pipelines.clone(), std::sync::Arc::new(caller), 2, lease);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut relay_stop = stopped.clone();
    handles.push(events::spawn_relay(
        host.log.clone(),
        platform.database.clone(),
        std::time::Duration::from_millis(500),
        async move {
            let _ = relay_stop.wait_for(|s| *s).await;
        },
    ));
    let scheduler = policy::spawn_scheduler(
        host.policies.clone(),
        std::sync::Arc::new(host.runs.clone()),
        std::time::Duration::from_secs(platform.config.policy_interval_seconds.max(1)),
        stopped,
    );
    Ok(Background { stop, scheduler, workers: handles })
}

/// The drift service's background tasks.
#[derive(Debug)]
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    scheduler: tokio::task::JoinHandle<()>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Stops them: the scheduler gives its lease up, so another replica
    /// leads at once; runs in flight keep their state in the store and are
    /// resumed by whichever worker next holds them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.scheduler.await;
        for w in self.workers {
            w.abort();
        }
    }
}

/// The address to call this process at: a wildcard listen address becomes
/// loopback.
fn own_address(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    a
}
