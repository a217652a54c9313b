//! Pages of list RPCs, as Google's AIP-158 describes them: the caller asks for `page_size`
//! items (0 means the default, more than the maximum means the maximum, negative is refused)
//! and passes back the opaque `next_page_token` of the previous page.
//!
//! Pages are keyset pages over `(time, id)` in descending order: the token holds the key of
//! the last item served, so rows added while a person pages through are neither skipped nor
//! served twice, and every page is one index range scan however deep.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::validate::FieldViolation;

/// Items per page when the caller says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Most items per page.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// Where a page starts: strictly after (older than) this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Items to serve (1..=[`MAX_PAGE_SIZE`]).
    pub size: u32,
    /// `None` for the first page.
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// The start key as two nullable SQL parameters (`$at::timestamptz IS NULL OR (time, id)
    /// < ($at, $id)` reads the first page when both are NULL).
    #[must_use]
    pub fn after_parts(&self) -> (Option<DateTime<Utc>>, Option<Uuid>) {
        self.after.map_or((None, None), |c| (Some(c.at), Some(c.id)))
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    #[must_use]
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// The page's items out of `fetched` (at most [`Self::fetch_limit`] rows, in order) and
    /// the token of the next page (empty when this is the last).
    #[must_use]
    pub fn page<T>(&self, mut fetched: Vec<T>, key: impl Fn(&T) -> Cursor) -> (Vec<T>, String) {
        let size = self.size as usize;
        if fetched.len() <= size {
            return (fetched, String::new());
        }
        fetched.truncate(size);
        let token = fetched.last().map(|last| encode(key(last))).unwrap_or_default();
        (fetched, token)
    }
}

/// Validates `page_size` and `page_token` as a list request carries them.
///
/// # Errors
/// INVALID_ARGUMENT naming `page_size` (negative) or `page_token` (not one this service issued).
pub fn page_request(page_size: i32, page_token: &str) -> Result<PageRequest, FieldViolation> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => return Err(FieldViolation::new("page_size", "must not be negative")),
        n => u32::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        Some(decode(page_token).ok_or_else(|| {
            FieldViolation::new("page_token", "is not a token this service issued (pass next_page_token back)")
        })?)
    };
    Ok(PageRequest { size, after })
}

fn encode(cursor: Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.at.timestamp_micros(), cursor.id))
}

fn decode(token: &str) -> Option<Cursor> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (micros, id) = text.split_once(':')?;
    Some(Cursor { at: DateTime::from_timestamp_micros(micros.parse().ok()?)?, id: Uuid::parse_str(id).ok()? })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_follow_aip_158() {
        assert_eq!(page_request(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(page_request(7, "").unwrap().size, 7);
        assert_eq!(page_request(5_000, "").unwrap().size, MAX_PAGE_SIZE);
        assert_eq!(page_request(-1, "").unwrap_err().field, "page_size");
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let cursor = Cursor { at: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(), id: Uuid::new_v4() };
        let request = PageRequest { size: 2, after: None };
        let (items, token) = request.page(vec![1, 2, 3], |_| cursor);
        assert_eq!((items, page_request(0, &token).unwrap().after), (vec![1, 2], Some(cursor)));
        let (items, token) = request.page(vec![1, 2], |_| cursor);
        assert_eq!((items.len(), token.as_str()), (2, ""), "the last page has no next token");
        for bad in ["x", "!!!", &URL_SAFE_NO_PAD.encode("12:not-a-uuid")] {
            assert_eq!(page_request(0, bad).unwrap_err().field, "page_token");
        }
    }
}
