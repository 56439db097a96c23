//! The Pulse snapshot service: extraction jobs that freeze allowlisted source
//! objects into immutable, hashed, versioned Parquet datasets, and the reads,
//! pointers and retention of those datasets.

pub mod chunk;
pub mod domain;
pub mod error;
mod grpc;
pub mod read;
pub mod stats;
pub mod worker;

use std::time::Duration;

use pulse_common::PulseError;
use pulse_common::host::{Hosted, Platform};
use pulse_common::records::record_store;
use pulse_common::store::Migration;
use pulse_proto::snapshot::v1::snapshot_service_server::SnapshotServiceServer;

pub use domain::Snapshots;
pub use error::SnapshotError;
pub use grpc::SnapshotGrpc;

pub const SCHEMA: &str = "snapshot";

pub static MIGRATIONS: &[Migration] = pulse_common::records::JOB_QUEUE_MIGRATIONS;

/// Opens the snapshot service's state and starts its extraction workers
/// (`extraction_workers` of them).
pub async fn open(
    platform: &Platform,
    datasources: pulse_datasource::Datasources,
    lineage: Option<pulse_lineage::Lineage>,
    workers: bool,
) -> Result<Snapshots, PulseError> {
    let db = platform.database.open(SCHEMA, MIGRATIONS).await?;
    let snapshots = Snapshots::new(
        record_store(&db),
        platform.objects.clone(),
        datasources,
        lineage,
        Duration::from_secs(platform.config.job_lease_seconds.max(1)),
        domain::SnapshotMetrics::new(&platform.metrics),
    );
    if workers {
        snapshots.spawn_workers(platform.config.extraction_workers);
    }
    Ok(snapshots)
}

pub fn hosted(snapshots: Snapshots, platform: &Platform) -> Hosted {
    Hosted::new(
        SnapshotServiceServer::new(SnapshotGrpc::new(snapshots))
            .max_decoding_message_size(platform.config.max_message_bytes)
            .max_encoding_message_size(platform.config.max_message_bytes),
    )
}
