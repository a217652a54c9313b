//! The batched hold insert against real PostgreSQL: duplicates inside one statement and
//! tokens that already paid.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use chrono::Utc;
use platform::money::Won;
use reservation_service::{
    domain::{Blocker, HoldDiagnosis, ReservationStatus},
    store::{HoldInsert, NewHold, ReservationRepo},
};
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
    let outcomes = repo.insert_holds(&ids, &holds).await.unwrap();
    assert_eq!(outcomes[0], HoldInsert::Inserted, "the first of two requests for seat 7 wins");
    assert_eq!(outcomes[2], HoldInsert::Inserted);
    // The loser's blocker was inserted by this very statement, so its snapshot cannot show
    // it: no blocker, which makes the caller read why again.
    let HoldInsert::Refused(same_batch) = outcomes[1] else { panic!("two holds of seat 7 in one batch") };
    assert_eq!(same_batch, HoldDiagnosis { token_used: false, blocker: None, user_holds: 0 });
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE seat_number = 7 AND status = 'HELD'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(live, 1);

    // A later statement for the same seat inserts nothing and names the hold that blocks it,
    // as the separate diagnosis read does.
    let again = [hold("d", Uuid::new_v4(), schedule, 7)];
    let outcomes = repo.insert_holds(&[Uuid::now_v7()], &again).await.unwrap();
    let HoldInsert::Refused(seen) = outcomes[0] else { panic!("seat 7 is held") };
    let Some(Blocker { status, expires_at, paying }) = seen.blocker else { panic!("a's hold blocks seat 7") };
    let first = &holds[0];
    assert_eq!(
        (status, paying, expires_at.timestamp_micros()),
        (ReservationStatus::Held, false, (first.now + first.ttl).timestamp_micros())
    );
    assert_eq!((seen.token_used, seen.user_holds), (false, 0));
    let read = repo.hold_diagnosis(&again[0]).await.unwrap();
    assert_eq!(read.blocker.map(|b| (b.status, b.paying)), Some((ReservationStatus::Held, false)));
    assert_eq!((read.token_used, read.user_holds), (false, 0));
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn a_refused_hold_counts_the_users_live_holds(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let schedule = Uuid::new_v4();
    let token = Uuid::new_v4();
    let mine = [hold("a", token, schedule, 1), hold("a", token, schedule, 2)];
    let ids: Vec<Uuid> = mine.iter().map(|_| Uuid::now_v7()).collect();
    assert_eq!(repo.insert_holds(&ids, &mine).await.unwrap(), vec![HoldInsert::Inserted; 2]);
    // Seat 1 again, by the same user: refused, blocked by their own hold, with their two
    // live holds counted (what the hold limit is judged by).
    let outcomes = repo.insert_holds(&[Uuid::now_v7()], &[hold("a", token, schedule, 1)]).await.unwrap();
    let HoldInsert::Refused(seen) = outcomes[0] else { panic!("seat 1 is held") };
    assert_eq!((seen.token_used, seen.user_holds), (false, 2));
    assert_eq!(seen.blocker.map(|b| b.status), Some(ReservationStatus::Held));
}
