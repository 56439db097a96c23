//! The Pulse drift service: compares a window of a model's prediction log
//! (or a dataset version) with the model version's baseline — KS,
//! Wasserstein, PSI and Jensen–Shannon for numeric features, PSI and
//! chi-square for categorical ones, the outputs, and performance from
//! feedback — and keeps the reports, monitors and baselines. Retraining
//! policies, pipelines and the event log are not served yet.

pub mod columns;
pub mod compare;
pub mod domain;
pub mod error;
pub mod events;
mod grpc;
pub mod metrics;
pub mod pipeline;
pub mod policy;
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

pub static MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "records and events",
    postgres: pulse_common::records::POSTGRES,
    sqlite: pulse_common::records::SQLITE,
}];

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
) -> Result<Drift, PulseError> {
    let db = platform.database.open(SCHEMA, MIGRATIONS).await?;
    Ok(Drift::new(
        trainer,
        snapshots,
        inference,
        lineage,
        record_store(&db),
        metrics::DriftMetrics::new(&platform.metrics.registry),
    ))
}

pub fn hosted(drift: Drift, platform: &Platform) -> Hosted {
    Hosted::new(
        DriftServiceServer::new(DriftGrpc::new(drift))
            .max_decoding_message_size(platform.config.max_message_bytes)
            .max_encoding_message_size(platform.config.max_message_bytes),
    )
}
