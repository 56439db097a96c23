//! Conversions between wall-clock times and protobuf timestamps.

use chrono::{DateTime, TimeZone, Utc};
use pulse_proto::prost_types::Timestamp;

pub fn to_proto(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn from_proto(t: &Timestamp) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single()
}

/// Now, to the millisecond: both stores keep milliseconds, so a time written
/// and read back compares equal on either.
pub fn now_millis() -> DateTime<Utc> {
    from_millis(Utc::now().timestamp_millis())
}

/// Milliseconds since the epoch, the form the embedded store keeps.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A protobuf timestamp as milliseconds since the epoch.
pub fn proto_millis(t: &Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}
