//! `db::begin_batch`: a batch statement first run while its table was empty gets an index
//! plan once the table has grown, where a plain transaction keeps a sequential scan.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use sqlx::{PgConnection, PgPool, Row, postgres::PgPoolOptions};

/// The same lookup twice under two texts, so each gets its own prepared statement.
const PLAIN: &str = "SELECT t.id FROM UNNEST($1::int[]) AS k (id) JOIN batch_items t ON t.id = k.id";
const BATCH: &str = "SELECT t.id FROM UNNEST($1::int[]) AS k (id) JOIN batch_items t ON t.id = k.id -- batch";

/// The plan the connection's prepared statement `sql` gets when run now.
async fn cached_plan(conn: &mut PgConnection, sql: &str) -> String {
    let name: String = sqlx::query_scalar("SELECT name FROM pg_prepared_statements WHERE statement = $1")
        .bind(sql)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let rows = sqlx::raw_sql(&format!("EXPLAIN EXECUTE {name}('{{1,2,3}}')")).fetch_all(&mut *conn).await.unwrap();
    rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>().join("\n")
}

#[sqlx::test]
async fn batch_statements_keep_index_plans_as_their_tables_grow(template: PgPool) {
    // One connection, so the prepared statements and their cached plans stay the same.
    let options = template.connect_options().as_ref().clone();
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    sqlx::query("CREATE TABLE batch_items (id int PRIMARY KEY, payload text)").execute(&pool).await.unwrap();
    // PostgreSQL picks the generic plan after a few runs when it looks no worse; forced
    // here from the first run so the test does not depend on that cost comparison.
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&pool).await.unwrap();

    // Both statements are first planned while the table is empty, as on opening day.
    sqlx::query(PLAIN).bind(vec![1, 2]).fetch_all(&pool).await.unwrap();
    let mut tx = platform::db::begin_batch(&pool).await.unwrap();
    sqlx::query(BATCH).bind(vec![1, 2]).fetch_all(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    sqlx::query("INSERT INTO batch_items SELECT g, repeat('x', 50) FROM generate_series(1, 50000) g")
        .execute(&pool)
        .await
        .unwrap();
    let plain = cached_plan(&mut pool.acquire().await.unwrap(), PLAIN).await;
    assert!(plain.contains("Seq Scan on batch_items"), "the failure this guards against:\n{plain}");
    let mut tx = platform::db::begin_batch(&pool).await.unwrap();
    let batch = cached_plan(&mut tx, BATCH).await;
    assert!(batch.contains("Index Only Scan using batch_items_pkey"), "{batch}");
    assert!(!batch.contains("Seq Scan") && !batch.contains("Hash"), "{batch}");
    let found = sqlx::query(BATCH).bind(vec![3, 4, 60_000]).fetch_all(&mut *tx).await.unwrap();
    assert_eq!(found.len(), 2);
    tx.commit().await.unwrap();

    // The setting ends with the transaction.
    let mode: String = sqlx::query_scalar("SELECT current_setting('plan_cache_mode')").fetch_one(&pool).await.unwrap();
    assert_eq!(mode, "force_generic_plan");
}
