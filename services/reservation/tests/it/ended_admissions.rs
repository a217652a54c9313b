//! Issue #26: a hold lasts at most as long as the admission that placed it. The store's half
//! of the rule: which tokens have live unpaid holds, and releasing the holds of tokens whose
//! admission ended, never one whose payment began.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use chrono::{Duration, Utc};
use reservation_service::store::ReservationRepo;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{hold, payer, status};

const SCHEDULE: Uuid = Uuid::from_u128(9);
const CONCERT: Uuid = Uuid::from_u128(1);

#[sqlx::test(migrator = "reservation_service::app::MIGRATOR")]
async fn holds_of_ended_admissions_are_released_but_never_one_being_paid(pool: PgPool) {
    let repo = ReservationRepo::new(pool.clone());
    let now = Utc::now();
    let ttl = Duration::minutes(5);
    let (ann, bob, cid) = (payer("ann", CONCERT, now), payer("bob", CONCERT, now), payer("cid", CONCERT, now));
    let anns = [
        hold(&repo, &ann, SCHEDULE, 1, 70_000, now, ttl).await,
        hold(&repo, &ann, SCHEDULE, 2, 70_000, now, ttl).await,
    ];
    let bobs_paying = hold(&repo, &bob, SCHEDULE, 3, 70_000, now, ttl).await;
    let bobs_other = hold(&repo, &bob, SCHEDULE, 4, 70_000, now, ttl).await;
    let cids = hold(&repo, &cid, SCHEDULE, 5, 70_000, now, ttl).await;
    // A hold that ran out (not yet swept) is the expiry sweeper's, not this check's.
    let dans = hold(&repo, &payer("dan", CONCERT, now), SCHEDULE, 6, 70_000, now - ttl, ttl).await;
    // Bob's payment of seat 3 has begun.
    sqlx::query(
        "INSERT INTO payments (payment_id, reservation_id, user_id, token, idempotency_key, amount, status,
                               created_at, updated_at, next_attempt_at)
         VALUES (gen_random_uuid(), $1, 'bob', $2, 'k', 70000, 'STARTED', now(), now(), now())",
    )
    .bind(bobs_paying)
    .bind(bob.token)
    .execute(&pool)
    .await
    .unwrap();

    let mut tokens = repo.tokens_of_live_holds(now, 100).await.unwrap();
    tokens.sort_unstable();
    let mut expected = vec![ann.token, bob.token, cid.token];
    expected.sort_unstable();
    assert_eq!(tokens, expected, "each token with a live unpaid hold, once");
    assert_eq!(repo.tokens_of_live_holds(now, 1).await.unwrap().len(), 1, "at most the limit");

    // Ann's and Bob's admissions ended; Cid's did not.
    let released = repo.release_holds_of_tokens(&[ann.token, bob.token], now).await.unwrap();
    assert_eq!(released, 3);
    for id in anns.into_iter().chain([bobs_other]) {
        assert_eq!(status(&pool, id).await, "EXPIRED");
    }
    assert_eq!(status(&pool, bobs_paying).await, "HELD", "the saga decides a hold being paid");
    assert_eq!(status(&pool, cids).await, "HELD");
    assert_eq!(status(&pool, dans).await, "HELD");
    // Again: nothing more to release (idempotent, as several replicas run it).
    assert_eq!(repo.release_holds_of_tokens(&[ann.token, bob.token], now).await.unwrap(), 0);
    assert_eq!(repo.tokens_of_live_holds(now, 100).await.unwrap(), vec![cid.token]);
}
