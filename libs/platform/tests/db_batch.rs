//! `db::begin_batch`: statements in a batch transaction are planned for their arguments,
//! never from the connection's cached generic plan, and only inside that transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use sqlx::{PgPool, Row, postgres::PgPoolOptions};

const LOOKUP: &str = "SELECT t.id FROM UNNEST($1::int[]) AS k (id) JOIN batch_items t ON t.id = k.id";

/// (generic, custom) plan counts of the connection's prepared `LOOKUP`.
async fn plan_counts(conn: &mut sqlx::PgConnection) -> (i64, i64) {
    let row = sqlx::query("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1")
        .bind(LOOKUP)
        .fetch_one(conn)
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[sqlx::test]
async fn batch_transactions_plan_every_statement_for_its_arguments(template: PgPool) {
    // One connection, so the prepared statement and its cached plan are the same throughout.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(template.connect_options().as_ref().clone())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE batch_items (id int PRIMARY KEY)").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO batch_items SELECT generate_series(1, 1000)").execute(&pool).await.unwrap();

    // Outside a batch transaction the connection uses a cached generic plan (forced here, so
    // the test does not depend on the planner's cost comparison).
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&pool).await.unwrap();
    for _ in 0..10 {
        let found = sqlx::query(LOOKUP).bind(vec![1, 2, 5000]).fetch_all(&pool).await.unwrap();
        assert_eq!(found.len(), 2);
    }
    let mut conn = pool.acquire().await.unwrap();
    let (generic_before, custom_before) = plan_counts(&mut conn).await;
    assert_eq!((generic_before, custom_before), (10, 0));
    drop(conn);

    let mut tx = platform::db::begin_batch(&pool).await.unwrap();
    let mode: String =
        sqlx::query_scalar("SELECT current_setting('plan_cache_mode')").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(mode, "force_custom_plan");
    for _ in 0..10 {
        let found = sqlx::query(LOOKUP).bind(vec![3, 4, 5000]).fetch_all(&mut *tx).await.unwrap();
        assert_eq!(found.len(), 2);
    }
    let (generic_in_batch, custom_in_batch) = plan_counts(&mut tx).await;
    tx.commit().await.unwrap();
    assert_eq!(generic_in_batch, generic_before, "a batch run used the cached generic plan");
    assert_eq!(custom_in_batch, custom_before + 10, "every batch run is planned for its arguments");

    // The setting ends with the transaction: the connection is back to its own.
    let mode: String = sqlx::query_scalar("SELECT current_setting('plan_cache_mode')").fetch_one(&pool).await.unwrap();
    assert_eq!(mode, "force_generic_plan");
    sqlx::query(LOOKUP).bind(vec![1]).fetch_all(&pool).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(plan_counts(&mut conn).await, (generic_before + 1, custom_before + 10));
}
