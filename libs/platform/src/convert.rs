//! Conversions between chrono times and protobuf timestamps.
use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::validate::FieldViolation;

/// A protobuf timestamp for `t`.
#[must_use]
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // Always within 0..1e9, so the cast cannot truncate.
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A chrono time from a required protobuf timestamp field.
///
/// # Errors
/// When the field is missing or out of chrono's range.
pub fn datetime(field: &'static str, ts: Option<&Timestamp>) -> Result<DateTime<Utc>, FieldViolation> {
    let ts = ts.ok_or_else(|| FieldViolation::new(field, "is required"))?;
    let nanos = u32::try_from(ts.nanos).map_err(|_| FieldViolation::new(field, "nanos must be within 0..1e9"))?;
    DateTime::from_timestamp(ts.seconds, nanos).ok_or_else(|| FieldViolation::new(field, "is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let now = DateTime::from_timestamp(1_800_000_000, 123_000_000).unwrap();
        assert_eq!(datetime("t", Some(&timestamp(now))).unwrap(), now);
        assert_eq!(datetime("starts_at", None).unwrap_err().field, "starts_at");
        let bad = Timestamp { seconds: 0, nanos: -1 };
        assert!(datetime("t", Some(&bad)).is_err());
    }
}
