//! The Pulse datasource service: a registry of read-only connections to
//! production databases and files, their encrypted secrets and allowlists, and
//! connectors that inspect, size and stream allowlisted objects as Arrow.

pub mod connector;
pub mod domain;
pub mod error;
mod grpc;
pub mod ipc;
pub mod names;
pub mod secret;

use std::sync::Arc;

use pulse_common::PulseError;
use pulse_common::host::{Hosted, Platform};
use pulse_common::records::record_store;
use pulse_common::secrets::MasterKeys;
use pulse_common::store::Migration;
use pulse_proto::datasource::v1::datasource_service_server::DatasourceServiceServer;

pub use domain::Datasources;
pub use error::DatasourceError;
pub use grpc::DatasourceGrpc;

pub const SCHEMA: &str = "datasource";

pub static MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "records and events",
    postgres: pulse_common::records::POSTGRES,
    sqlite: pulse_common::records::SQLITE,
}];

/// Opens the datasource registry on the platform's database.
pub async fn open(platform: &Platform) -> Result<Datasources, PulseError> {
    let db = platform.database.open(SCHEMA, MIGRATIONS).await?;
    let keys = MasterKeys::from_config(&platform.config)?;
    let scope = connector::files::ReadScope {
        file_roots: platform.config.file_roots.clone(),
        ambient_s3_buckets: platform.config.s3_ambient_buckets.clone(),
        reserved_bucket: platform.config.s3_bucket.clone(),
    };
    Ok(Datasources::new(record_store(&db), Arc::new(keys), scope))
}

/// The datasource service over a registry, ready for a
/// [`pulse_common::host::Server`].
pub fn hosted(datasources: Datasources, platform: &Platform) -> Hosted {
    Hosted::new(
        DatasourceServiceServer::new(DatasourceGrpc::new(datasources))
            .max_decoding_message_size(platform.config.max_message_bytes)
            .max_encoding_message_size(platform.config.max_message_bytes),
    )
}
