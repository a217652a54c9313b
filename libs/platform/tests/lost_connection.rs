//! The pool pings only a connection that sat idle (a second or more) before handing it out:
//! one the server closed meanwhile (a restart, a failover, an idle timeout) is replaced
//! without the caller seeing it, while a connection reused at once skips the round trip, so
//! a close in that moment meets the next statement, which is answered UNAVAILABLE (callers
//! retry); that first lost connection retires the pool's older ones, so the statements
//! after it get new connections.
//!
//! A test binary of its own, its tests one at a time: a lost connection retires the older
//! connections of every pool in the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use tokio::sync::Mutex;

use platform::error::SystemError;
use sqlx::{
    Connection, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tonic::Code;

/// Held by each test: the retirement is process-wide.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn backend_pid(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await
}

/// Closes backend `pid` from a connection of its own, as a server restart would.
async fn terminate(db: &PgConnectOptions, pid: i32) {
    let mut admin = PgConnection::connect_with(db).await.unwrap();
    let done: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(pid).fetch_one(&mut admin).await.unwrap();
    assert!(done, "backend {pid} was not terminated");
}

#[sqlx::test]
async fn a_connection_closed_while_idle_is_replaced_unseen(_p: PgPoolOptions, db: PgConnectOptions) {
    let _one = ONE_AT_A_TIME.lock().await;
    // One connection, so a reuse would hand out the very same one.
    let pool = platform::db::connect(&db.clone().into(), "public", 1).await.unwrap();
    let first = backend_pid(&pool).await.unwrap();
    terminate(&db, first).await;
    // Past the idle threshold: the next acquire pings, finds it closed and opens another.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let second = backend_pid(&pool).await.expect("the closed connection was handed out");
    assert_ne!(second, first);
}

#[sqlx::test]
async fn a_connection_closed_just_after_use_fails_one_statement_as_unavailable(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let pool = platform::db::connect(&db.clone().into(), "public", 1).await.unwrap();
    let first = backend_pid(&pool).await.unwrap();
    terminate(&db, first).await;
    // Reused at once: no ping, so the statement meets the closed connection.
    let err = backend_pid(&pool).await.expect_err("a closed connection cannot answer");
    assert!(platform::db::is_unavailable(&err), "{err:?}");
    assert_eq!(tonic::Status::from(SystemError::from(err)).code(), Code::Unavailable);
    // The broken connection is not handed out again.
    let second = backend_pid(&pool).await.expect("a new connection");
    assert_ne!(second, first);
}

#[sqlx::test]
async fn the_first_lost_connection_retires_the_pools_older_ones(_p: PgPoolOptions, db: PgConnectOptions) {
    let _one = ONE_AT_A_TIME.lock().await;
    let pool = platform::db::connect(&db.clone().into(), "public", 3).await.unwrap();
    // Three connections open and idle, then the server loses them all (a restart).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    let mut old = Vec::new();
    for conn in &mut held {
        old.push(sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&mut **conn).await.unwrap());
    }
    drop(held);
    for &pid in &old {
        terminate(&db, pid).await;
    }
    // The first statement meets a lost connection (no ping within the second) ...
    let err = backend_pid(&pool).await.expect_err("a lost connection cannot answer");
    assert_eq!(tonic::Status::from(SystemError::from(err)).code(), Code::Unavailable);
    // ... and every statement after it gets a new one: the other two are not handed out.
    for _ in 0..3 {
        let pid = backend_pid(&pool).await.expect("a new connection, not another lost one");
        assert!(!old.contains(&pid), "backend {pid} was lost with the others");
    }
}
