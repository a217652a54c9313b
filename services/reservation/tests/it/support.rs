//! Set-up several of these tests share: a payer (an admitted queue token) and its hold.
#![allow(clippy::unwrap_used)]
use chrono::{DateTime, Duration, Utc};
use platform::{auth::Principal, money::Won};
use reservation_service::store::{NewHold, ReservationRepo};
use sqlx::PgPool;
use uuid::Uuid;

/// `user`, admitted to `concert_id` with a fresh token valid 5 minutes from `now`.
pub fn payer(user: &str, concert_id: Uuid, now: DateTime<Utc>) -> Principal {
    Principal { token: Uuid::new_v4(), user_id: user.into(), concert_id, expires_at: now + Duration::seconds(300) }
}

/// Holds `seat` of `schedule_id` at `price` won for `who`, placed at `now` for `ttl`; returns
/// the reservation id.
pub async fn hold(
    repo: &ReservationRepo,
    who: &Principal,
    schedule_id: Uuid,
    seat: u32,
    price: i64,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Uuid {
    let hold = NewHold {
        user_id: who.user_id.clone(),
        token: who.token,
        concert_id: who.concert_id,
        schedule_id,
        seat_number: seat,
        price: Won::new(price),
        now,
        ttl,
        max_holds: 50,
    };
    let id = Uuid::now_v7();
    assert_eq!(repo.insert_holds(&[id], &[hold]).await.unwrap().len(), 1, "seat {seat} held");
    id
}

/// A reservation's status, read straight from the table.
pub async fn status(pool: &PgPool, reservation_id: Uuid) -> String {
    sqlx::query_scalar("SELECT status::text FROM reservations WHERE reservation_id = $1")
        .bind(reservation_id)
        .fetch_one(pool)
        .await
        .unwrap()
}
