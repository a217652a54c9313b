//! The pool pings only a connection that sat idle (a second or more) before handing it out:
//! one the server closed meanwhile (a restart, a failover, an idle timeout) is replaced
//! without the caller seeing it, while a connection reused at once skips the round trip, so
//! a close in that moment meets the next statement, which is answered UNAVAILABLE (callers
//! retry) and the one after it gets a new connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use platform::error::SystemError;
use sqlx::{
    Connection, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tonic::Code;

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
