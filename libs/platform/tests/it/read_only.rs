//! A connection left on a demoted primary (every write refused with SQLSTATE 25006) is
//! answered UNAVAILABLE, then closed: the retry gets a new connection, never the same one.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use platform::error::SystemError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;

#[sqlx::test]
async fn a_write_refused_as_read_only_is_unavailable_and_its_connection_is_not_reused(
    _p: PgPoolOptions,
    db: PgConnectOptions,
) {
    // One connection, so a reuse would hand out the very same one.
    let pool = platform::db::connect(&db.into(), "public", 1).await.unwrap();
    sqlx::query("CREATE TABLE sales (seat int)").execute(&pool).await.unwrap();
    let demoted_pid: i32 = {
        let mut conn = pool.acquire().await.unwrap();
        // What a standby answers to every write, on this connection only.
        sqlx::query("SET SESSION default_transaction_read_only = on").execute(&mut *conn).await.unwrap();
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *conn).await.unwrap()
    };

    let err = sqlx::query("INSERT INTO sales VALUES (1)").execute(&pool).await.expect_err("read-only");
    assert_eq!(platform::db::sqlstate(&err).as_deref(), Some(platform::db::READ_ONLY_TRANSACTION));
    let status = tonic::Status::from(SystemError::from(err));
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // The retry: a new connection, and the write goes through.
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.unwrap();
    assert_ne!(pid, demoted_pid, "the connection on the demoted node was handed out again");
    sqlx::query("INSERT INTO sales VALUES (1)").execute(&pool).await.unwrap();
    let sold: i64 = sqlx::query_scalar("SELECT count(*) FROM sales").fetch_one(&pool).await.unwrap();
    assert_eq!(sold, 1);
}
