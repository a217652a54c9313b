//! PostgreSQL pools confined to one service's schema.
//!
//! Each service owns one schema (`queue`, `catalog`, `reservation`, `wallet`) and never reads
//! another's. Every connection's `search_path` is that schema alone, so unqualified table
//! names resolve to the service's own schema (including sqlx's `_sqlx_migrations`
//! bookkeeping table); see [`connect`] for how, directly and through PgBouncer.
use std::{
    future::Future,
    sync::{
        LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{
    Connection, PgConnection, PgPool, Postgres, Transaction,
    migrate::Migrator,
    pool::PoolConnectionMetadata,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::{DbOptions, Pooler};

/// Whether lone batch statements are prepared by name. Directly they are not: sent
/// unprepared, a statement is planned for its arrays every time (see [`begin_batch`] for the
/// generic-plan trap this avoids) in two round trips. Through PgBouncer that cannot work:
/// the two round trips may reach two server connections, and the second finds no unnamed
/// statement. So once this process connects through PgBouncer, they are prepared by name
/// (PgBouncer tracks those), and the pooler's `connect_query` sets `plan_cache_mode =
/// force_custom_plan` for the same protection. A protocol choice from configuration, the
/// same on every replica; either way the statement's result is the same.
static LONE_BATCH_PREPARED: AtomicBool = AtomicBool::new(false);

/// What to pass to `.persistent(…)` for a batch statement run outside a transaction.
#[must_use]
pub fn lone_batch_prepared() -> bool {
    LONE_BATCH_PREPARED.load(Ordering::Relaxed)
}

/// A pooled connection idle at least this long is pinged before it is handed out; one
/// reused sooner is not (see [`connect`]).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// When this process last saw a connection it must not reuse older ones after (a statement
/// refused as read-only, or a connection found lost: see [`note_connection_failure`]), in
/// milliseconds since [`EPOCH`] plus one (0: never).
static RETIRE_BEFORE: AtomicU64 = AtomicU64::new(0);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn millis_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*EPOCH).as_millis()).unwrap_or(u64::MAX)
}

/// Records a failure that says the pool's older connections are no good, so that every
/// connection opened before this moment is closed instead of reused ([`keep_connection`]):
/// - a write refused because the connection is on a standby (SQLSTATE 25006): the primary
///   it was opened to has been demoted and the failover manager promoted another; the older
///   connections on the demoted node would fail every write until closed, and the new ones
///   go where the router (HAProxy, the operator's read-write service) now points;
/// - a connection found lost (an I/O error, class 08, 57P01/57P02: the server restarted or
///   went away): the pool pings only connections idle for a second ([`connect`]), so after a
///   restart the connections used just before it would each be handed out dead and fail one
///   statement; the first one found retires them all.
///
/// Called where database errors become the platform's `SystemError` (the `error` module,
/// which depends on this one).
pub fn note_connection_failure(err: &sqlx::Error) {
    let read_only = sqlstate(err).as_deref() == Some(READ_ONLY_TRANSACTION);
    if !read_only && !is_lost_connection(err) {
        return;
    }
    let now = millis_since_epoch(Instant::now()).saturating_add(1);
    if RETIRE_BEFORE.swap(now, Ordering::Relaxed) != 0 {
        return;
    }
    if read_only {
        tracing::warn!("a write met a read-only (demoted) node: closing the pool's older connections");
    } else {
        tracing::info!(error = %err, "a pooled connection was lost: closing the pool's older connections");
    }
}

/// Whether `err` says the connection itself is gone (not that a new one cannot be had).
fn is_lost_connection(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(_)) || sqlstate(err).is_some_and(|code| is_lost_state(&code))
}

/// The SQLSTATEs of a connection the server dropped: class 08 (connection exception), 57P01
/// (admin shutdown), 57P02 (crash shutdown). See [`is_unavailable_state`].
fn is_lost_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02")
}

/// Whether a pooled connection may be used (again): not if it was opened before the last
/// failure that retires older connections ([`note_connection_failure`]). One atomic load
/// per acquire and release while none was seen. Connections opened in the same millisecond
/// as the failure are closed too (erring toward a reconnect).
fn keep_connection(meta: &PoolConnectionMetadata) -> bool {
    let seen = RETIRE_BEFORE.load(Ordering::Relaxed);
    if seen == 0 {
        return true;
    }
    let opened = Instant::now().checked_sub(meta.age).map_or(0, millis_since_epoch).saturating_add(1);
    opened > seen
}

/// Opens a pool whose connections use `schema` as their only search path, without JIT.
///
/// JIT compilation is off: it is chosen by estimated cost, which grows with the tables, and
/// then costs ~100–200 ms per execution of a statement that runs in well under a millisecond
/// (seen on the admission round's rooms query at a million waiting). No statement of these
/// services scans enough rows to repay it.
///
/// Directly, the path is a start-up parameter of every connection. Through PgBouncer it
/// cannot be (the pooler refuses start-up options, and a session setting would stay on a
/// server connection another service may get next): the pooler sets both for the database
/// name the service connects to (`connect_query` in `deploy/pgbouncer/pgbouncer.ini`).
///
/// Statements stay prepared by name and cached per connection, which needs PgBouncer 1.21
/// or later with `max_prepared_statements` set: it tracks them and prepares each on
/// whatever server connection a transaction gets. Older PgBouncers cannot carry sqlx
/// (sqlx issue #67): named statements collide between clients, and an unnamed one is
/// parsed and executed in two round trips that may land on two server connections.
///
/// # Errors
/// When PostgreSQL cannot be reached within the acquire timeout.
pub async fn connect(db: &DbOptions, schema: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = match db.pooler {
        Pooler::None => db.connect.clone().options([("search_path", schema), ("jit", "off")]),
        Pooler::PgBouncerTransaction => {
            LONE_BATCH_PREPARED.store(true, Ordering::Relaxed);
            db.connect.clone()
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        // One DEBUG event per acquire with its wait, which `metrics::PoolWaitLayer` records
        // (the log filter keeps it out of the logs).
        .acquire_time_level(log::LevelFilter::Debug)
        // sqlx's default pings every connection it hands out: one more round trip per
        // acquire, which under load doubled the time a statement kept its connection (and
        // PostgreSQL's wake-ups). Only a connection idle for a while is pinged (the server
        // may have closed it: a restart, a failover); one reused within moments is not.
        .test_before_acquire(false)
        // A connection left on a demoted primary is closed, not handed out again.
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if !keep_connection(&meta) {
                    return Ok(false);
                }
                if meta.idle_for >= PING_IDLE_AFTER {
                    // A broken connection errs here: sqlx closes it and opens another.
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_release(|_, meta| Box::pin(async move { Ok(keep_connection(&meta)) }))
        .connect_with(options.application_name(schema))
        .await?;
    Ok(pool)
}

/// Creates `schema` if missing and applies the service's migrations to it.
///
/// Safe to run from several replicas starting at once: schema creation is serialized by a
/// transaction-scoped advisory lock, and sqlx's migrator takes its own lock.
///
/// # Errors
/// When the schema cannot be created or a migration fails.
pub async fn migrate(pool: &PgPool, schema: &str, migrator: &Migrator) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('concert.create_schema'))").execute(&mut *tx).await?;
    // An identifier cannot be bound as a parameter, so the name travels as a setting of this
    // transaction and PostgreSQL quotes it itself (format's %I, quote_ident's rules): no SQL
    // is put together here, and even a surprising name stays a name.
    sqlx::query!("SELECT set_config('concert.schema_to_create', $1, true)", schema).fetch_one(&mut *tx).await?;
    sqlx::query!(
        "DO $$ BEGIN EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', current_setting('concert.schema_to_create')); END $$"
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    migrator.run(pool).await?;
    Ok(())
}

/// [`connect`] then [`migrate`]: what every service does at start-up. Migrations run over
/// `db.migrate_with` when set (a direct connection, closed afterwards), else over the pool.
///
/// # Errors
/// As [`connect`] and [`migrate`].
pub async fn connect_and_migrate(
    db: &DbOptions,
    schema: &str,
    max_connections: u32,
    migrator: &Migrator,
) -> anyhow::Result<PgPool> {
    let pool = connect(db, schema, max_connections).await?;
    if let Some(direct) = &db.migrate_with {
        let direct = DbOptions::from(direct.clone());
        let migrations = connect(&direct, schema, 1).await?;
        migrate(&migrations, schema, migrator).await?;
        migrations.close().await;
    } else {
        migrate(&pool, schema, migrator).await?;
    }
    Ok(pool)
}

/// How often, and how patiently, [`watch_reachable`] asks the database.
const REACHABLE_EVERY: Duration = Duration::from_secs(1);
const REACHABLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `pool`'s database answers, asked every second (`SELECT 1` within 2 s, on a
/// connection of the watcher's own made with the pool's options, so through PgBouncer where
/// there is one): the receiver, starting `true` (the pool just connected), and the watcher
/// to run among the replica's tasks. The health service reports NOT_SERVING while it is
/// `false`, so that load balancers and readiness probes send calls to replicas that can
/// work, and SERVING again once it answers: the replica reconnects by itself, nothing
/// restarts it.
///
/// Not through the pool: in a flood every pooled connection is busy and a `SELECT 1` waits
/// its turn for seconds (3.4 s seen in the queue's log), which read as an outage: the
/// replica reported NOT_SERVING while serving at full tilt, and with readiness probes every
/// busy replica would leave its Service at the moment it is needed most. One connection
/// more per pool watched is the price.
pub fn watch_reachable(
    pool: PgPool,
) -> (tokio::sync::watch::Receiver<bool>, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = tokio::sync::watch::channel(true);
    let options = pool.connect_options();
    drop(pool);
    let watcher = async move {
        let mut every = tokio::time::interval(REACHABLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connection: Option<PgConnection> = None;
        loop {
            every.tick().await;
            let answered =
                tokio::time::timeout(REACHABLE_TIMEOUT, ask_database(&mut connection, &options)).await.unwrap_or(false);
            if !answered {
                // Broken, or cut off mid-query by the timeout: a fresh one next time.
                connection = None;
            }
            let changed = tx.send_if_modified(|reachable| std::mem::replace(reachable, answered) != answered);
            if changed {
                if answered {
                    tracing::warn!("database reachable again: serving");
                } else {
                    tracing::warn!("database unreachable: health NOT_SERVING until it answers");
                }
            }
        }
    };
    (rx, watcher)
}

/// `SELECT 1` on the watcher's connection, connecting first when it has none.
async fn ask_database(connection: &mut Option<PgConnection>, options: &PgConnectOptions) -> bool {
    if connection.is_none() {
        *connection = PgConnection::connect_with(options).await.ok();
    }
    let Some(c) = connection.as_mut() else { return false };
    sqlx::query!("SELECT 1 AS one").fetch_one(c).await.is_ok()
}

/// What [`begin_batch`] sends: `BEGIN` and the planner setting, in one round trip.
pub const BEGIN_BATCH: &str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan";

/// Starts a transaction for batch statements: each statement in it is planned for the
/// arguments it is run with, never from the connection's cached generic plan.
///
/// sqlx prepares every statement once per connection, and after five runs PostgreSQL may
/// keep a generic plan for it until the table's statistics change. A batch statement
/// (`UNNEST` of arrays joined to a table) planned while the table was small gets a hash
/// join over a sequential scan, which stays cheap to the planner and grows with the table
/// for real: on opening day tables grow from nothing faster than autovacuum's `ANALYZE`
/// (which would invalidate the plan) follows. Planning a batch costs a fraction of a
/// millisecond, shared by every item of the batch; single-row statements keep their cached
/// plans. (The figures, and the alternative tried, are in docs/BENCHMARKS.md.)
///
/// Lone batch statements outside a transaction are sent unprepared instead
/// ([`lone_batch_prepared`]): planned for their arrays every run, in one round trip fewer
/// than BEGIN, statement, COMMIT.
///
/// # Errors
/// When no connection can be acquired or the statement fails.
pub async fn begin_batch(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(BEGIN_BATCH).await
}

/// A column value read as a signed integer (PostgreSQL has no unsigned types), as the
/// unsigned type the domain uses. A value out of range (a negative count, a seat number
/// below zero) is a decode error naming the column, never silently 0: the schema's CHECK
/// constraints rule it out, so seeing one means the data is not what the code believes.
///
/// # Errors
/// [`sqlx::Error::ColumnDecode`] when `value` does not fit `U`.
pub fn unsigned<T, U>(value: T, column: &str) -> Result<U, sqlx::Error>
where
    T: Copy + std::fmt::Display,
    U: TryFrom<T>,
{
    U::try_from(value).map_err(|_| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("{value} is out of range for an unsigned {}", std::any::type_name::<U>()).into(),
    })
}

/// SQLSTATE of a unique violation.
pub const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE of a foreign-key violation.
pub const FOREIGN_KEY_VIOLATION: &str = "23503";
/// SQLSTATE of a CHECK constraint violation.
pub const CHECK_VIOLATION: &str = "23514";
/// SQLSTATE of a serialization failure.
pub const SERIALIZATION_FAILURE: &str = "40001";
/// SQLSTATE of a write in a read-only transaction: on a standby, a demoted primary.
pub const READ_ONLY_TRANSACTION: &str = "25006";

/// The SQLSTATE of a database error, if `err` is one.
#[must_use]
pub fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// True when `err` means "the database cannot be reached right now" (pool exhausted or
/// closed, connection refused or dropped, the server shutting down, crashed or starting, a
/// primary demoted under the connection): the caller may retry, so services answer
/// UNAVAILABLE rather than INTERNAL.
#[must_use]
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
        || sqlstate(err).is_some_and(|code| is_unavailable_state(&code))
}

/// The SQLSTATEs that say "not now" rather than "not this": class 08 (connection exception),
/// 53300 (too many connections), 57P01 (admin shutdown: `pg_ctl stop -m fast`, a failover
/// manager stopping the old primary), 57P02 (crash shutdown: another backend crashed and the
/// postmaster is resetting), 57P03 (cannot connect now: starting or in recovery), 25006
/// (read-only transaction: the connection is on a primary that was demoted to a standby;
/// [`note_connection_failure`] then closes it).
#[must_use]
pub fn is_unavailable_state(code: &str) -> bool {
    is_lost_state(code) || matches!(code, "53300" | "57P03" | "25006")
}

#[cfg(test)]
mod tests {
    #[test]
    fn losing_the_server_is_unavailable_and_a_refused_statement_is_not() {
        for code in ["08006", "08001", "08003", "53300", "57P01", "57P02", "57P03", "25006"] {
            assert!(super::is_unavailable_state(code), "{code}");
        }
        // Unique and check violations, a serialization failure, a syntax error: answers
        // about the statement, which a retry as such would not change.
        for code in ["23505", "23514", "40001", "42601", "57014"] {
            assert!(!super::is_unavailable_state(code), "{code}");
        }
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer");
        assert!(super::is_unavailable(&sqlx::Error::Io(reset)));
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "server closed the connection");
        assert!(super::is_unavailable(&sqlx::Error::Io(eof)));
        assert!(super::is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!super::is_unavailable(&sqlx::Error::RowNotFound));
    }

    /// A pool busy to its last connection is no outage: the watcher asks on a connection of
    /// its own, so readiness stays SERVING. (Asked through the pool, the `SELECT 1` waited
    /// its turn past the 2 s allowed, and a queue replica serving a flood at full tilt
    /// reported NOT_SERVING.) The catalog's outage test shows a database cut off is still
    /// seen, on both ports.
    #[sqlx::test(migrations = false)]
    async fn a_pool_busy_to_its_last_connection_is_still_reachable(
        _p: sqlx::postgres::PgPoolOptions,
        db: sqlx::postgres::PgConnectOptions,
    ) {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_with(db)
            .await
            .unwrap();
        let busy = pool.acquire().await.unwrap();
        let (reachable, watcher) = super::watch_reachable(pool.clone());
        let watcher = tokio::spawn(watcher);
        // The first round asks at once and may take 2 s: through the pool it would have
        // given up by now.
        tokio::time::sleep(super::REACHABLE_TIMEOUT + std::time::Duration::from_secs(1)).await;
        assert!(*reachable.borrow(), "the busy pool's database counts as reachable");
        watcher.abort();
        drop(busy);
    }

    #[test]
    fn an_out_of_range_column_is_an_error_naming_it_never_zero() {
        assert_eq!(super::unsigned::<i32, u32>(50, "seat_number").ok(), Some(50));
        let err = super::unsigned::<i32, u32>(-1, "seat_number").expect_err("negative seat");
        assert!(matches!(&err, sqlx::Error::ColumnDecode { index, .. } if index == "seat_number"), "{err}");
        assert!(err.to_string().contains("-1"), "{err}");
    }
}
