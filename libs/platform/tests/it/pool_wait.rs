//! The pool-wait metric on real PostgreSQL: a caller that waits for the pool's only
//! connection is recorded with the time it waited.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use platform::metrics::{DB_CONNECTION_WAIT, PoolWaitLayer, SQLX_ACQUIRE_TARGET};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tracing_subscriber::{Layer as _, filter::Targets, layer::SubscriberExt as _};

#[sqlx::test]
async fn a_caller_waiting_for_a_connection_is_recorded_with_its_wait(_p: PgPoolOptions, db: PgConnectOptions) {
    // sqlx::test runs the test on one thread: the subscriber and the recorder set here see
    // every acquire.
    let subscriber = tracing_subscriber::registry()
        .with(PoolWaitLayer.with_filter(Targets::new().with_target(SQLX_ACQUIRE_TARGET, tracing::Level::DEBUG)));
    let _tracing = tracing::subscriber::set_default(subscriber);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let pool = platform::db::connect(&db.into(), "public", 1).await.unwrap();
    let held = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { sqlx::query("SELECT 1").execute(&pool).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(held);
    waiter.await.unwrap();

    let waits: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == DB_CONNECTION_WAIT)
        .flat_map(|(.., value)| match value {
            DebugValue::Histogram(values) => values.into_iter().map(|v| v.into_inner()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert!(waits.len() >= 2, "every acquire is recorded: {waits:?}");
    assert!(waits.iter().any(|w| *w >= 0.25), "the waiter's ~300 ms wait is there: {waits:?}");
}
