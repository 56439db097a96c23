//! The Pulse inference service: serves each model's production version
//! (with canary, shadow and fallback versions) through a micro-batcher, a
//! cache and a circuit breaker; logs every prediction asynchronously; joins
//! ground-truth feedback.

mod arrow_io;
pub mod batcher;
pub mod breaker;
pub mod domain;
pub mod error;
pub mod export;
mod grpc;
pub mod log;
pub mod metrics;
pub mod serving;
pub mod validate;

use pulse_common::PulseError;
use pulse_common::host::{Hosted, Platform};
use pulse_common::records::record_store;
use pulse_common::store::Migration;
use pulse_proto::inference::v1::inference_service_server::InferenceServiceServer;

pub use domain::{Inference, ServingConfig};
pub use error::InferenceError;
pub use grpc::InferenceGrpc;

pub const SCHEMA: &str = "inference";

pub static MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "records and events",
    postgres: pulse_common::records::POSTGRES,
    sqlite: pulse_common::records::SQLITE,
}];

/// Opens the inference state; models load on first use. With `lineage`,
/// traces can start from a prediction id.
pub async fn open(
    platform: &Platform,
    trainer: pulse_trainer::Trainer,
    lineage: Option<pulse_lineage::Lineage>,
) -> Result<Inference, PulseError> {
    let db = platform.database.open(SCHEMA, MIGRATIONS).await?;
    let inference = Inference::new(
        trainer,
        record_store(&db),
        ServingConfig::from_config(&platform.config),
        metrics::InferenceMetrics::new(&platform.metrics.registry),
    );
    if let Some(lineage) = lineage {
        lineage.add_resolver(std::sync::Arc::new(domain::PredictionNodes::serving(&inference)));
    }
    Ok(inference)
}

/// Lets `lineage` trace from prediction ids when this process does not
/// serve inference: predictions are read from the inference service's store.
pub async fn resolve_predictions(platform: &Platform, lineage: &pulse_lineage::Lineage) -> Result<(), PulseError> {
    let db = platform.database.open(SCHEMA, MIGRATIONS).await?;
    lineage.add_resolver(std::sync::Arc::new(domain::PredictionNodes::from_store(record_store(&db))));
    Ok(())
}

pub fn hosted(inference: Inference, platform: &Platform) -> Hosted {
    Hosted::new(
        InferenceServiceServer::new(InferenceGrpc::new(inference))
            .max_decoding_message_size(platform.config.max_message_bytes)
            .max_encoding_message_size(platform.config.max_message_bytes),
    )
}
