//! The batched hold insert against real PostgreSQL: duplicates inside one statement and
//! tokens that already paid.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use chrono::Utc;
use platform::money::Won;
use reservation_service::store::{NewHold, ReservationRepo};
use sqlx::PgPool;
use uuid::Uuid;

fn hold(user: &str, token: Uuid, schedule_id: Uuid, seat: u32) -> NewHold {
    NewHold {
        user_id: user.into(),
        token,
        concert_id: Uuid::nil(),
        schedule_id,
        seat_number: seat,
        price: Won::new(90_000),
        now: Utc::now(),
        ttl: chrono::Duration::seconds(300),
        max_holds: 50,
    }
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn one_statement_with_two_holds_on_one_seat_inserts_one(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let schedule = Uuid::new_v4();
    let holds = vec![
        hold("a", Uuid::new_v4(), schedule, 7),
        hold("b", Uuid::new_v4(), schedule, 7),
        hold("c", Uuid::new_v4(), schedule, 8),
    ];
    let ids: Vec<Uuid> = holds.iter().map(|_| Uuid::now_v7()).collect();
    let inserted = repo.insert_holds(&ids, &holds).await.unwrap();
    assert_eq!(inserted.len(), 2);
    assert!(inserted.contains(&ids[0]), "the first of two requests for seat 7 wins");
    assert!(!inserted.contains(&ids[1]));
    assert!(inserted.contains(&ids[2]));
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE seat_number = 7 AND status = 'HELD'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(live, 1);

    // A later statement for the same seat inserts nothing.
    let again = [hold("d", Uuid::new_v4(), schedule, 7)];
    assert!(repo.insert_holds(&[Uuid::now_v7()], &again).await.unwrap().is_empty());
}
