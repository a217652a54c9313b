//! PostgreSQL access for the queue schema: SQL only; the admission and line rules are the
//! domain's.
//!
//! - [`joins`]: joining lines (batched), one token per user and concert.
//! - [`tokens`]: reading, expiring and touching tokens; the line's changes for snapshots; counts.
//! - [`rooms`]: waiting rooms and their policy overrides.
//! - [`admission`]: one admission round for every room, under one advisory lock.
mod admission;
mod joins;
mod rooms;
mod tokens;

use sqlx::{PgPool, Row, postgres::PgRow};

use crate::{
    domain::{PolicyOverrides, Room, Token},
    error::QueueError,
};

pub use admission::{RoundOutcome, Sweep};
pub use joins::Join;
pub use tokens::{LineWatermark, QueueCounts};

/// Opens a transaction whose index-backed statements keep their index plans on a table the
/// planner has no statistics for (a rush grows `tokens` faster than autoanalyze follows,
/// and this machine's server runs without autovacuum): the admission round and the poll
/// marks' flush.
pub(super) const BEGIN_WITHOUT_SEQSCAN: &str = "BEGIN; SET LOCAL enable_seqscan = off";

/// Key of the join fence. Every join holds it *shared* from before it draws its `seq`
/// until it commits; an admission round takes it *exclusively*, which waits for the joins
/// in flight. So when a round picks the head of a line, no lower `seq` is still
/// uncommitted: admission order is exactly join order, across any number of replicas.
/// Joins never wait for each other, only (for a few milliseconds) for a round.
///
/// Public so that a test can hold the fence and stall every join of a replica (the line's
/// work stuck in the database) to show the admitted path does not wait behind it.
pub const JOIN_FENCE: i64 = 0x0051_4A4F_494E; // "QJOIN"

/// Queue storage.
#[derive(Debug, Clone)]
pub struct QueueRepo {
    pool: PgPool,
    /// Only for [`platform::clock::Clock::instead_of_database_time`]: the sale's opening is
    /// judged by the database's clock, or a test clock.
    clock: platform::clock::SharedClock,
}

impl QueueRepo {
    #[must_use]
    pub fn new(pool: PgPool, clock: platform::clock::SharedClock) -> Self {
        Self { pool, clock }
    }
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A room from its stored columns (the overrides are stored as BIGINT, never negative).
pub(super) fn room(
    concert_id: uuid::Uuid,
    sale_opens_at: Option<chrono::DateTime<chrono::Utc>>,
    max_active: Option<i64>,
    admit_per_sec: Option<i64>,
    active_ttl_secs: Option<i64>,
) -> Result<Room, QueueError> {
    let opt = |n: Option<i64>, name: &str| -> Result<Option<u64>, QueueError> {
        Ok(n.map(|n| platform::db::unsigned(n, name)).transpose()?)
    };
    Ok(Room {
        concert_id,
        sale_opens_at,
        overrides: PolicyOverrides {
            max_active: opt(max_active, "max_active")?,
            admit_per_sec: opt(admit_per_sec, "admit_per_sec")?,
            active_ttl_secs: opt(active_ttl_secs, "active_ttl_secs")?,
        },
    })
}

/// A token from a row of the statements that must stay unprepared (see `get_many`), which
/// the query macros cannot send.
pub(super) fn token_from_row(row: &PgRow) -> Result<Token, QueueError> {
    Ok(Token {
        token: row.try_get("token")?,
        user_id: row.try_get("user_id")?,
        concert_id: row.try_get("concert_id")?,
        seq: row.try_get("seq")?,
        place: row.try_get("place")?,
        state: row.try_get("state")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}
