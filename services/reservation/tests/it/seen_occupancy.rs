//! A date's occupancy read once and shared by the HoldSeat calls of a moment, against real
//! PostgreSQL: reused within twice its window by the service's clock, read again after that,
//! after a release on this replica, and never without reuse.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use reservation_service::{service::seen_occupancy::SeenOccupancy, store::ReservationRepo};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{self, payer};

/// Holds `seat` of `schedule_id` for someone new, for five minutes from now.
async fn hold(repo: &ReservationRepo, schedule_id: Uuid, seat: u32) {
    let now = Utc::now();
    let who = payer(&format!("user-{seat}"), Uuid::nil(), now);
    support::hold(repo, &who, schedule_id, seat, 90_000, now, TimeDelta::seconds(300)).await;
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn a_snapshot_is_shared_within_its_window_and_read_again_after_it(pool: PgPool) {
    let repo = ReservationRepo::new(pool);
    let seen = SeenOccupancy::new(repo.clone(), Duration::from_secs(60));
    let (date, other) = (Uuid::new_v4(), Uuid::new_v4());
    hold(&repo, date, 3).await;
    let now = Utc::now();
    assert!(seen.peek(date, now).await.is_none(), "nothing read yet");
    assert_eq!(*seen.get(date, now).await.unwrap(), [3].into());

    // Seat 4 is taken after the read: within the window the calls share the first read
    // (its insert would lose and be marked taken), so they do not see it.
    hold(&repo, date, 4).await;
    let later = now + TimeDelta::milliseconds(500);
    assert_eq!(*seen.get(date, later).await.unwrap(), [3].into(), "shared");
    assert_eq!(seen.peek(date, later).await.as_deref(), Some(&[3].into()));
    assert_eq!(*seen.get(other, later).await.unwrap(), [].into(), "each date its own");

    // By the service's clock past the window but within twice it, the kept snapshot still
    // serves (its re-read is another caller's wait); past twice the window (a test clock
    // moved on): read again.
    assert_eq!(seen.peek(date, now + TimeDelta::seconds(61)).await.as_deref(), Some(&[3].into()));
    let past = now + TimeDelta::seconds(121);
    assert!(seen.peek(date, past).await.is_none());
    assert_eq!(*seen.get(date, past).await.unwrap(), [3, 4].into());
    // A clock set back is not trusted either.
    assert!(seen.peek(date, now - TimeDelta::seconds(1)).await.is_none());

    // A release on this replica drops the date's snapshot at once.
    hold(&repo, date, 5).await;
    seen.forget(date).await;
    assert!(seen.peek(date, later).await.is_none());
    assert_eq!(*seen.get(date, later).await.unwrap(), [3, 4, 5].into());
}

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn without_reuse_every_call_reads(pool: PgPool) {
    let repo = ReservationRepo::new(pool);
    let seen = SeenOccupancy::new(repo.clone(), Duration::ZERO);
    let date = Uuid::new_v4();
    let now = Utc::now();
    assert_eq!(*seen.get(date, now).await.unwrap(), [].into());
    hold(&repo, date, 9).await;
    assert!(seen.peek(date, now).await.is_none(), "nothing is kept");
    assert_eq!(*seen.get(date, now).await.unwrap(), [9].into());
}
