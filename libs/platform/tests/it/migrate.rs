//! A service's schema is created by PostgreSQL's own quoting of its name (`platform::db::migrate`):
//! the name is bound, never spliced into SQL, so even a name full of SQL stays one schema's
//! name and nothing else is run.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use sqlx::{migrate::Migrator, postgres::PgConnectOptions, postgres::PgPoolOptions};

#[sqlx::test]
async fn a_schema_named_like_sql_is_created_under_exactly_that_name(_p: PgPoolOptions, db: PgConnectOptions) {
    let pool = platform::db::connect(&db.into(), "public", 2).await.unwrap();
    let hostile = r#"queue"; DROP TABLE canary; --"#;
    sqlx::query("CREATE TABLE canary (n int)").execute(&pool).await.unwrap();

    // No migrations of its own: only the schema's creation is under test.
    let none = std::env::temp_dir().join(format!("concert-no-migrations-{}", std::process::id()));
    std::fs::create_dir_all(&none).unwrap();
    let migrator = Migrator::new(none.as_path()).await.unwrap();
    platform::db::migrate(&pool, hostile, &migrator).await.unwrap();
    // Twice, as a second replica starting does: IF NOT EXISTS, no error.
    platform::db::migrate(&pool, hostile, &migrator).await.unwrap();

    let schemas: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'queue%'")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(schemas, vec![hostile.to_owned()]);
    let canary: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'canary'").fetch_one(&pool).await.unwrap();
    assert_eq!(canary, 1, "the name ran as SQL");
}
