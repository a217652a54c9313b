//! Field validation shared by every service's proto → domain conversions.
//! Each failure names the proto field, so callers see exactly what to fix.
use uuid::Uuid;

/// One invalid request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldViolation {
    /// The proto field name, e.g. `seat_number`.
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    #[must_use]
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        Self { field, description: description.into() }
    }
}

impl From<FieldViolation> for tonic::Status {
    fn from(v: FieldViolation) -> Self {
        crate::status::invalid_argument(v.field, &v.description)
    }
}

/// Longest accepted user id or idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// Parses a UUID field.
///
/// # Errors
/// When `value` is empty or not a UUID.
pub fn uuid(field: &'static str, value: &str) -> Result<Uuid, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    Uuid::parse_str(value).map_err(|_| FieldViolation::new(field, "must be a UUID"))
}

/// Parses a repeated UUID field of at most `max` entries (an empty list is fine).
///
/// # Errors
/// When there are more than `max` values or one is empty or not a UUID.
pub fn uuids(field: &'static str, values: &[String], max: usize) -> Result<Vec<Uuid>, FieldViolation> {
    if values.len() > max {
        return Err(FieldViolation::new(field, format!("at most {max}")));
    }
    values.iter().map(|v| uuid(field, v)).collect()
}

/// Checks an opaque identifier (user id, idempotency key): 1..=128 bytes, no control characters.
///
/// # Errors
/// When `value` is empty, too long or contains control characters.
pub fn key(field: &'static str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if value.len() > MAX_KEY_BYTES {
        return Err(FieldViolation::new(field, format!("must be at most {MAX_KEY_BYTES} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldViolation::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// Checks a free-text field (a title, a venue, a grade name): trimmed, at most `max_chars`
/// characters, at least one when `required`, and no control characters (a NUL byte would be
/// refused by PostgreSQL; line breaks and the like have no place in these names).
///
/// # Errors
/// When the trimmed value is empty (if required), too long, or contains a control character.
pub fn text(field: &'static str, value: &str, max_chars: usize, required: bool) -> Result<String, FieldViolation> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if value.chars().count() > max_chars {
        return Err(FieldViolation::new(field, format!("must be at most {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldViolation::new(field, "must not contain control characters (such as NUL or line breaks)"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_field_errors_name_the_field() {
        assert_eq!(uuid("token", "").unwrap_err().field, "token");
        assert_eq!(uuid("token", "not-a-uuid").unwrap_err().description, "must be a UUID");
        let id = Uuid::new_v4();
        assert_eq!(uuid("token", &id.to_string()).unwrap(), id);
    }

    #[test]
    fn uuid_lists_are_bounded_and_each_entry_checked() {
        let ids = [Uuid::new_v4().to_string(), Uuid::new_v4().to_string()];
        assert_eq!(uuids("tokens", &ids, 2).unwrap().len(), 2);
        assert!(uuids("tokens", &[], 2).unwrap().is_empty());
        assert_eq!(uuids("tokens", &ids, 1).unwrap_err().description, "at most 1");
        let bad = [ids[0].clone(), "nope".into()];
        assert_eq!(uuids("tokens", &bad, 2).unwrap_err().field, "tokens");
    }

    #[test]
    fn text_is_trimmed_bounded_and_printable() {
        assert_eq!(text("title", "  Night  ", 10, true).unwrap(), "Night");
        assert_eq!(text("title", " ", 10, true).unwrap_err().description, "is required");
        assert_eq!(text("venue", "", 10, false).unwrap(), "");
        assert!(text("title", &"x".repeat(11), 10, true).is_err());
        assert_eq!(text("title", "a\0b", 10, true).unwrap_err().field, "title");
        assert!(text("grade", "V\nIP", 10, true).is_err());
        assert_eq!(text("title", "콘서트", 3, true).unwrap(), "콘서트", "characters, not bytes");
    }

    #[test]
    fn key_bounds() {
        assert!(key("user_id", "").is_err());
        assert!(key("user_id", &"x".repeat(129)).is_err());
        assert!(key("user_id", "a\nb").is_err());
        assert_eq!(key("user_id", &"x".repeat(128)).unwrap().len(), 128);
    }
}
