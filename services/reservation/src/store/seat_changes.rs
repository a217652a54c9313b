//! Which schedules' seats changed: PostgreSQL notifications on `reservation_seat_changes`,
//! sent by the reservations table's triggers (migration 0011) whenever a hold is placed or a
//! reservation's status changes, and heard on one LISTEN session per replica.
//!
//! LISTEN belongs to a session, so it needs a connection of its own that no pooler hands to
//! anyone else: the direct URL (`DATABASE_MIGRATION_URL`) when the pool goes through
//! PgBouncer in transaction mode, else `DATABASE_URL`.
use std::time::Duration;

use platform::{config::DbOptions, outbound::reconnect_delays};
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The channel the triggers notify.
pub const CHANNEL: &str = "reservation_seat_changes";

/// What the session heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatChange {
    /// A reservation of this schedule was placed or changed status (committed).
    Schedule(Uuid),
    /// The session was (re)established: notifications sent meanwhile were not heard, so any
    /// schedule may have changed.
    Missed,
}

/// Listens on [`CHANNEL`] over a session of its own and forwards what it hears to the
/// returned receiver until the receiver is dropped. Reconnects by itself (with exponential
/// backoff, up to 5 s apart) and announces every (re)connection as [`SeatChange::Missed`].
#[must_use]
pub fn listen(db: &DbOptions, schema: &'static str, tasks: &mut platform::app::Tasks) -> mpsc::Receiver<SeatChange> {
    let direct = db.migrate_with.clone().map_or_else(|| db.clone(), DbOptions::from);
    // Bounded: a feed that falls behind slows the session's reading, and PostgreSQL keeps
    // the notifications meanwhile (its queue holds gigabytes).
    let (tx, rx) = mpsc::channel(4_096);
    tasks.spawn(async move { forward(direct, schema, tx).await });
    rx
}

async fn forward(direct: DbOptions, schema: &'static str, tx: mpsc::Sender<SeatChange>) {
    let mut backoff = reconnect_delays();
    loop {
        let session = match open(&direct, schema).await {
            Ok(session) => session,
            Err(e) => {
                tracing::warn!(error = %e, "seat changes: cannot LISTEN; retrying");
                tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(5))).await;
                continue;
            }
        };
        backoff = reconnect_delays();
        if tx.send(SeatChange::Missed).await.is_err() {
            return;
        }
        let closed = hear(session, &tx).await;
        if closed {
            return;
        }
        tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

/// Forwards notifications until the session fails (false) or nobody listens any more (true).
async fn hear(mut session: PgListener, tx: &mpsc::Sender<SeatChange>) -> bool {
    loop {
        let heard = match session.try_recv().await {
            // The connection dropped and was re-established (and LISTENs again): anything
            // sent in between is lost.
            Ok(None) => SeatChange::Missed,
            Ok(Some(n)) => match Uuid::parse_str(n.payload()) {
                Ok(schedule) => SeatChange::Schedule(schedule),
                Err(_) => {
                    tracing::warn!(payload = n.payload(), "seat changes: a notification that is not a schedule id");
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "seat changes: the LISTEN session failed");
                return false;
            }
        };
        if tx.send(heard).await.is_err() {
            return true;
        }
    }
}

async fn open(direct: &DbOptions, schema: &str) -> anyhow::Result<PgListener> {
    let pool = platform::db::connect(direct, schema, 1).await?;
    let mut session = PgListener::connect_with(&pool).await?;
    session.listen(CHANNEL).await?;
    Ok(session)
}
