//! The shared Pulse runtime. Everything a service needs besides its own
//! domain lives here once: configuration, telemetry, the error codes, metadata
//! and object storage, tenants and API keys, idempotency, metrics and the gRPC
//! host that stacks them.
//!
//! Domain code uses [`error`], [`ids`], [`store`], [`objects`] and [`auth::Caller`];
//! only [`grpc`] and [`host`] know about tonic.

pub mod auth;
pub mod config;
pub mod error;
pub mod grpc;
pub mod host;
pub mod idempotency;
pub mod ids;
pub mod json;
pub mod metrics;
pub mod objects;
pub mod paging;
pub mod records;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod time;

pub use config::Config;
pub use error::{ErrorCode, PulseError};
