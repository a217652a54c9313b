//! PostgreSQL pools confined to one service's schema.
//!
//! Each service owns one schema (`queue`, `catalog`, `reservation`, `wallet`) and never reads
//! another's. The pool sets `search_path` as a start-up parameter of every connection, so
//! unqualified table names resolve to the service's own schema (including sqlx's
//! `_sqlx_migrations` bookkeeping table) at no extra round trip.
use std::time::Duration;

use sqlx::{
    PgPool, Postgres, Transaction,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Opens a pool whose connections use `schema` as their only search path.
///
/// # Errors
/// When PostgreSQL cannot be reached within the acquire timeout.
pub async fn connect(options: PgConnectOptions, schema: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = options.options([("search_path", schema)]).application_name(schema);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
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
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('concert.create_schema'))").execute(&mut *tx).await?;
    // Identifiers cannot be bound as parameters; `schema` is one of our own constants, and
    // quote_ident-style quoting keeps even a surprising value inert.
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}")).execute(&mut *tx).await?;
    tx.commit().await?;
    migrator.run(pool).await?;
    Ok(())
}

/// [`connect`] then [`migrate`]: what every service does at start-up.
///
/// # Errors
/// As [`connect`] and [`migrate`].
pub async fn connect_and_migrate(
    options: PgConnectOptions,
    schema: &str,
    max_connections: u32,
    migrator: &Migrator,
) -> anyhow::Result<PgPool> {
    let pool = connect(options, schema, max_connections).await?;
    migrate(&pool, schema, migrator).await?;
    Ok(pool)
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
/// for real: measured here, the wallet's key lookup took 4.1 ms per batch instead of
/// well under 0.1 ms once the ledger held 16,000 entries, because autovacuum (whose
/// `ANALYZE` would invalidate the plan) is off on this machine, and on opening day tables grow
/// from nothing faster than it runs. Planning a batch costs a fraction of a millisecond,
/// shared by every item of the batch; single-row statements keep their cached plans.
/// (Caching index plans instead, by turning sequential scans and hash joins off for the
/// transaction, measured no faster in the pay benchmark: PostgreSQL kept planning custom
/// plans for many runs anyway, and one statement ran slower.)
///
/// Lone batch statements outside a transaction are sent unprepared instead
/// (`.persistent(false)`): planned for their arrays every run, in one round trip fewer
/// than BEGIN, statement, COMMIT.
///
/// # Errors
/// When no connection can be acquired or the statement fails.
pub async fn begin_batch(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(BEGIN_BATCH).await
}

/// SQLSTATE of a unique violation.
pub const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE of a foreign-key violation.
pub const FOREIGN_KEY_VIOLATION: &str = "23503";
/// SQLSTATE of a CHECK constraint violation.
pub const CHECK_VIOLATION: &str = "23514";
/// SQLSTATE of a serialization failure.
pub const SERIALIZATION_FAILURE: &str = "40001";

/// The SQLSTATE of a database error, if `err` is one.
#[must_use]
pub fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// True when `err` means "the database cannot be reached right now" (pool exhausted or
/// closed, connection refused or dropped): the caller may retry, so services answer
/// UNAVAILABLE rather than INTERNAL.
#[must_use]
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
        || sqlstate(err).is_some_and(|code| code.starts_with("08") || code == "53300" || code == "57P03")
}
