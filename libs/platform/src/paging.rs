//! Pages of list RPCs, as Google's AIP-158 describes them: the caller asks for `page_size`
//! items (0 means the default, more than the maximum means the maximum, negative is refused)
//! and passes back the opaque `next_page_token` of the previous page.
//!
//! Pages are keyset pages over `(time, id)` in descending order: the token holds the key of
//! the last item served, so rows added while a person pages through are neither skipped nor
//! served twice, and every page is one index range scan however deep.
use anyhow::Context as _;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::validate::FieldViolation;

/// Items per page when the caller says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Most items per page.
pub const MAX_PAGE_SIZE: u32 = 1_000;

type HmacSha256 = Hmac<Sha256>;
/// Bytes of the HMAC-SHA256 tag a token carries (128 bits, truncated as RFC 2104 allows).
const TAG_LEN: usize = 16;
/// Microseconds (8, big-endian), id (16), tag.
const TOKEN_LEN: usize = 8 + 16 + TAG_LEN;
/// The earliest and latest key times a token may carry: the years PostgreSQL and chrono
/// both hold with room to spare (a row's time is always between them).
const EARLIEST_MICROS: i64 = 0; // 1970-01-01
const LATEST_MICROS: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999

/// Where a page starts: strictly after (older than) this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// The service's key for page tokens: 32 random bytes made once per deployment by the
/// service's migration (table `page_token_key`, read by its store), so every replica signs
/// and checks alike and no operator has to provision a secret.
#[derive(Clone)]
pub struct PageKey(HmacSha256);

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(..)")
    }
}

impl PageKey {
    /// A key of at least 32 bytes.
    ///
    /// # Errors
    /// When `key` is shorter.
    pub fn from_bytes(key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(key.len() >= 32, "a page token key needs at least 32 bytes, got {}", key.len());
        Ok(Self(HmacSha256::new_from_slice(key).context("page token key")?))
    }

    /// The tokens of one list RPC: a token of one list is refused by every other.
    #[must_use]
    pub fn tokens(&self, list: &'static str) -> PageTokens {
        let mut mac = self.0.clone();
        mac.update(list.as_bytes());
        mac.update(&[0]);
        PageTokens { mac }
    }
}

/// Issues and checks the page tokens of one list RPC. A token is the key of the last item
/// served and an HMAC of it, so a token this service did not issue is refused before any
/// of it reaches a query.
#[derive(Clone)]
pub struct PageTokens {
    /// Keyed, with the list's name absorbed.
    mac: HmacSha256,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

impl PageTokens {
    /// Validates `page_size` and `page_token` as a list request carries them.
    ///
    /// # Errors
    /// INVALID_ARGUMENT naming `page_size` (negative) or `page_token` (not one this list of
    /// this deployment issued: altered, forged, from another list, or out of range).
    pub fn request(&self, page_size: i32, page_token: &str) -> Result<PageRequest, FieldViolation> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(FieldViolation::new("page_size", "must not be negative")),
            n => u32::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(self.decode(page_token).ok_or_else(|| {
                FieldViolation::new(
                    "page_token",
                    "is not a token this list issued (pass next_page_token back unchanged)",
                )
            })?)
        };
        Ok(PageRequest { size, after, tokens: self.clone() })
    }

    fn tag(&self, key: &[u8; 24]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(key);
        mac
    }

    fn encode(&self, cursor: Cursor) -> String {
        let mut bytes = [0u8; TOKEN_LEN];
        bytes[..8].copy_from_slice(&cursor.at.timestamp_micros().to_be_bytes());
        bytes[8..24].copy_from_slice(cursor.id.as_bytes());
        let key: [u8; 24] = bytes[..24].try_into().unwrap_or([0; 24]);
        let tag = self.tag(&key).finalize().into_bytes();
        bytes[24..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(&self, token: &str) -> Option<Cursor> {
        // A token is 54 characters; anything longer is refused before it is decoded.
        if token.len() > TOKEN_LEN.div_ceil(3) * 4 {
            return None;
        }
        let bytes: [u8; TOKEN_LEN] = URL_SAFE_NO_PAD.decode(token).ok()?.try_into().ok()?;
        let key: [u8; 24] = bytes[..24].try_into().ok()?;
        self.tag(&key).verify_truncated_left(&bytes[24..]).ok()?;
        let micros = i64::from_be_bytes(key[..8].try_into().ok()?);
        if !(EARLIEST_MICROS..=LATEST_MICROS).contains(&micros) {
            return None;
        }
        Some(Cursor { at: DateTime::from_timestamp_micros(micros)?, id: Uuid::from_slice(&key[8..]).ok()? })
    }
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Items to serve (1..=[`MAX_PAGE_SIZE`]).
    pub size: u32,
    /// `None` for the first page.
    pub after: Option<Cursor>,
    /// Signs the next page's token.
    tokens: PageTokens,
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
        let token = fetched.last().map(|last| self.tokens.encode(key(last))).unwrap_or_default();
        (fetched, token)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tokens(list: &'static str) -> PageTokens {
        PageKey::from_bytes(&[7; 32]).unwrap().tokens(list)
    }

    #[test]
    fn sizes_follow_aip_158() {
        let t = tokens("concerts");
        assert_eq!(t.request(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(t.request(7, "").unwrap().size, 7);
        assert_eq!(t.request(5_000, "").unwrap().size, MAX_PAGE_SIZE);
        assert_eq!(t.request(-1, "").unwrap_err().field, "page_size");
    }

    #[test]
    fn tokens_round_trip_and_the_last_page_has_none() {
        let t = tokens("concerts");
        let cursor = Cursor { at: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(), id: Uuid::new_v4() };
        let request = t.request(2, "").unwrap();
        let (items, token) = request.page(vec![1, 2, 3], |_| cursor);
        assert_eq!((items, t.request(0, &token).unwrap().after), (vec![1, 2], Some(cursor)));
        let (items, token) = request.page(vec![1, 2], |_| cursor);
        assert_eq!((items.len(), token.as_str()), (2, ""), "the last page has no next token");
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused_naming_page_token() {
        let t = tokens("concerts");
        let cursor = Cursor { at: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(), id: Uuid::new_v4() };
        let (_, token) = t.request(1, "").unwrap().page(vec![1, 2], |_| cursor);
        let mut altered = URL_SAFE_NO_PAD.decode(&token).unwrap();
        altered[3] ^= 1;
        // The old, unsigned format with a time PostgreSQL cannot hold (the INTERNAL of #27).
        let old_far = URL_SAFE_NO_PAD.encode(format!("-9223372036854775:{}", Uuid::nil()));
        // A well-formed token signed by another deployment's key.
        let (_, other_key) = PageKey::from_bytes(&[8; 32])
            .unwrap()
            .tokens("concerts")
            .request(1, "")
            .unwrap()
            .page(vec![1, 2], |_| cursor);
        // A token of another list of the same deployment.
        let (_, other_list) = tokens("payments").request(1, "").unwrap().page(vec![1, 2], |_| cursor);
        let long = "A".repeat(10_000);
        for bad in ["x", "!!!", &URL_SAFE_NO_PAD.encode(altered), &old_far, &other_key, &other_list, &long] {
            assert_eq!(t.request(0, bad).unwrap_err().field, "page_token", "{bad:.60}");
        }
    }

    #[test]
    fn a_signed_key_out_of_range_is_still_refused() {
        let t = tokens("concerts");
        for micros in [-1, LATEST_MICROS + 1, i64::MIN, i64::MAX] {
            let mut bytes = [0u8; TOKEN_LEN];
            bytes[..8].copy_from_slice(&micros.to_be_bytes());
            let key: [u8; 24] = bytes[..24].try_into().unwrap();
            let tag = t.tag(&key).finalize().into_bytes();
            bytes[24..].copy_from_slice(&tag[..TAG_LEN]);
            assert_eq!(t.request(0, &URL_SAFE_NO_PAD.encode(bytes)).unwrap_err().field, "page_token", "{micros}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(PageKey::from_bytes(&[1; 16]).is_err());
    }
}
