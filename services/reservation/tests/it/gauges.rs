//! The operator's gauges read from real PostgreSQL: payments by state, payments needing a
//! person, the recovery backlog and live holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use chrono::{Duration, Utc};
use platform::auth::Principal;
use reservation_service::store::{Gauges, PaymentStart, ReservationRepo};
use sqlx::PgPool;
use uuid::Uuid;

/// Holds `seat` for its own user, `held_ago` in the past for `ttl`.
async fn hold(
    repo: &ReservationRepo,
    schedule_id: Uuid,
    seat: u32,
    held_ago: Duration,
    ttl: Duration,
) -> (Uuid, Principal) {
    let now = Utc::now() - held_ago;
    let payer = crate::support::payer(&format!("user-{seat}"), Uuid::nil(), now);
    (crate::support::hold(repo, &payer, schedule_id, seat, 90_000, now, ttl).await, payer)
}

async fn pay(repo: &ReservationRepo, id: Uuid, payer: &Principal) -> Uuid {
    match repo.start_payment(&[id], payer, &format!("key-{id}"), Utc::now(), Duration::seconds(30)).await.unwrap() {
        PaymentStart::New(payment, _) => payment.payment_id,
        PaymentStart::Existing(p) => panic!("{p:?}"),
    }
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn gauges_count_states_backlog_people_needed_and_live_holds(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let schedule = Uuid::new_v4();
    let five_min = Duration::minutes(5);
    assert_eq!(repo.gauges(Utc::now(), 3).await.unwrap(), Gauges::default(), "an empty sale");

    let (_, _) = hold(&repo, schedule, 1, Duration::zero(), five_min).await; // live
    let (_, _) = hold(&repo, schedule, 2, Duration::minutes(10), five_min).await; // expired, not yet swept
    let (a, payer_a) = hold(&repo, schedule, 3, Duration::zero(), five_min).await;
    let (b, payer_b) = hold(&repo, schedule, 4, Duration::zero(), five_min).await;
    let (c, payer_c) = hold(&repo, schedule, 5, Duration::zero(), five_min).await;
    let fresh = pay(&repo, a, &payer_a).await; // in flight: its lease has not run out
    let stuck = pay(&repo, b, &payer_b).await; // lease ran out: the recovery backlog
    let given_up = pay(&repo, c, &payer_c).await; // tried max_attempts times
    sqlx::query("UPDATE payments SET next_attempt_at = now() - interval '1 minute' WHERE payment_id = ANY($1)")
        .bind(vec![stuck, given_up])
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE payments SET attempts = 3 WHERE payment_id = $1").bind(given_up).execute(&pool).await.unwrap();
    sqlx::query("UPDATE payments SET status = 'FAILED' WHERE payment_id = $1")
        .bind(fresh)
        .execute(&pool)
        .await
        .unwrap();

    let g = repo.gauges(Utc::now(), 3).await.unwrap();
    let mut payments = g.payments.clone();
    payments.sort();
    assert_eq!(payments, vec![("FAILED".to_owned(), 1), ("STARTED".to_owned(), 2)]);
    assert_eq!((g.needing_person, g.recovery_backlog), (1, 1));
    assert_eq!(g.live_holds, 4, "seats 1, 3, 4 and 5; seat 2's hold ran out");
}
