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

/// Earliest and latest seconds a `google.protobuf.Timestamp` may hold: 0001-01-01T00:00:00Z
/// and 9999-12-31T23:59:59Z (the range its definition in timestamp.proto allows).
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// A chrono time from a required protobuf timestamp field.
///
/// # Errors
/// When the field is missing, its nanos are outside 0..1e9, or it lies outside the range a
/// protobuf Timestamp allows (years 1 to 9999).
pub fn datetime(field: &'static str, ts: Option<&Timestamp>) -> Result<DateTime<Utc>, FieldViolation> {
    let ts = ts.ok_or_else(|| FieldViolation::new(field, "is required"))?;
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FieldViolation::new(field, "nanos must be within 0..1e9"))?;
    if !TIMESTAMP_SECONDS.contains(&ts.seconds) {
        return Err(FieldViolation::new(field, "must lie within years 1 to 9999"));
    }
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
        let before_year_one = Timestamp { seconds: -62_135_596_801, nanos: 0 };
        assert_eq!(datetime("starts_at", Some(&before_year_one)).unwrap_err().field, "starts_at");
        let year_one = Timestamp { seconds: -62_135_596_800, nanos: 0 };
        assert!(datetime("t", Some(&year_one)).is_ok());
        assert!(datetime("t", Some(&Timestamp { seconds: 253_402_300_800, nanos: 0 })).is_err());
    }
}
