//! The Pulse lineage service: a tenant-scoped graph of typed nodes and
//! edges from datasources to predictions and retraining runs, with bounded
//! trace, impact analysis and export.

mod convert;
pub mod domain;
pub mod error;
mod grpc;
pub mod store;

use pulse_common::PulseError;
use pulse_common::host::{Hosted, Platform};
use pulse_proto::lineage::v1::lineage_service_server::LineageServiceServer;

pub use domain::Lineage;
pub use grpc::LineageGrpc;

/// The largest answer: a 10,000-node walk at the 8 KiB attribute limit fits.
pub const MAX_ANSWER_BYTES: usize = 128 * 1024 * 1024;

/// Opens the lineage schema on the platform's database.
pub async fn open(platform: &Platform) -> Result<Lineage, PulseError> {
    let db = platform.database.open(store::SCHEMA, store::MIGRATIONS).await?;
    Ok(Lineage::new(store::lineage_store(&db)))
}

/// The lineage service, ready for a [`pulse_common::host::Server`].
pub async fn hosted(platform: &Platform) -> Result<Hosted, PulseError> {
    Ok(hosted_with(open(platform).await?, platform))
}

/// The lineage service over an opened [`Lineage`] (shared with other
/// services of the process).
pub fn hosted_with(lineage: Lineage, platform: &Platform) -> Hosted {
    Hosted::new(
        LineageServiceServer::new(LineageGrpc::new(lineage))
            .max_decoding_message_size(platform.config.max_message_bytes),
    )
}
