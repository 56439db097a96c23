//! The Pulse trainer service: model contracts, training jobs on burn that
//! read committed dataset versions only, checkpoints, evaluation, the model
//! registry and gated promotion.

pub mod algo;
pub mod artifact;
pub mod checkpoints;
pub mod contract;
pub mod domain;
pub mod error;
mod grpc;
pub mod metrics;
pub mod params;
pub mod pipeline;
pub mod worker;

use std::time::Duration;

use pulse_common::PulseError;
use pulse_common::host::{Hosted, Platform};
use pulse_common::records::record_store;
use pulse_common::store::Migration;
use pulse_proto::trainer::v1::trainer_service_server::TrainerServiceServer;

pub use domain::Trainer;
pub use error::TrainerError;
pub use grpc::TrainerGrpc;

pub const SCHEMA: &str = "trainer";

pub static MIGRATIONS: &[Migration] = pulse_common::records::JOB_QUEUE_MIGRATIONS;

/// Opens the trainer's state and, with `workers`, starts its training
/// workers (`training_workers` of them; 0 serves the API only). Inference
/// opens it without workers to read the registry.
pub async fn open(
    platform: &Platform,
    snapshots: pulse_snapshot::Snapshots,
    lineage: Option<pulse_lineage::Lineage>,
    workers: bool,
) -> Result<Trainer, PulseError> {
    let db = platform.database.open(SCHEMA, MIGRATIONS).await?;
    let trainer = Trainer::new(
        record_store(&db),
        platform.objects.clone(),
        snapshots,
        lineage,
        Duration::from_secs(platform.config.job_lease_seconds.max(1)),
        checkpoints::TrainerMetrics::new(&platform.metrics),
    );
    if workers {
        trainer.spawn_workers(platform.config.training_workers);
    }
    Ok(trainer)
}

pub fn hosted(trainer: Trainer, platform: &Platform) -> Hosted {
    Hosted::new(
        TrainerServiceServer::new(TrainerGrpc::new(trainer))
            .max_decoding_message_size(platform.config.max_message_bytes)
            .max_encoding_message_size(platform.config.max_message_bytes),
    )
}
