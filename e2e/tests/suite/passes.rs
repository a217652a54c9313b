//! Issue #26: admitted people carry an admission pass that catalog and reservation verify
//! themselves. Reads never ask the queue (they work while it is down); writes still do, so a
//! token that paid or left is refused at once; anything the waiting room did not sign, that
//! ended, or that names another user or concert is refused with the documented code.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use concert_proto::concert::{
    catalog::v1::{ListAvailableDatesRequest, ListSeatsRequest},
    queue::v1::{GetQueueStatusRequest, LeaveQueueRequest, TokenState},
    reservation::v1::HoldSeatRequest,
};
use e2e::{Suite, SuiteOptions, as_user, authed, register_token};
use platform::{
    admission::{Pass, PassSigner},
    status::reason,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::{Code, Request, Status};
use uuid::Uuid;

/// `message` as `user` with `x-queue-token: credential`.
fn with<T>(user: &str, credential: &str, message: T) -> Request<T> {
    let mut r = as_user(user, message);
    r.metadata_mut().insert("x-queue-token", credential.parse().unwrap());
    r
}

fn refused<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, why: &str, what: &str) {
    let err = r.expect_err(what);
    assert_eq!((err.code(), reason(&err).as_deref()), (code, Some(why)), "{what}: {err:?}");
}

#[sqlx::test(migrations = false)]
async fn an_admitted_person_reads_with_the_pass_while_the_queue_is_down(_p: PgPoolOptions, db: PgConnectOptions) {
    let mut suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let pass = suite.admission_pass(&token).await;
    // The pass names what the queue admitted (opaque to clients; read here with the key).
    let said = platform::testing::admission::signer().verifier().verify(&pass, chrono::Utc::now()).unwrap();
    assert_eq!((said.token.to_string(), said.user_id.as_str()), (token.clone(), "alice"));
    assert_eq!(said.concert_id.to_string(), concert_id);

    suite.stop_queue().await;
    // Reads with the pass are answered from the pass alone.
    let dates = suite
        .catalog()
        .list_available_dates(authed(&pass, ListAvailableDatesRequest { concert_id: concert_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates.schedules.len(), 1);
    let seats = suite.catalog().list_seats(authed(&pass, ListSeatsRequest { schedule_id: schedule_id.clone() })).await;
    assert_eq!(seats.unwrap().into_inner().seats.len(), 50);
    // A bare token id past the token cache must be checked with the queue, which is down.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let bare = suite.catalog().list_seats(authed(&token, ListSeatsRequest { schedule_id: schedule_id.clone() })).await;
    assert_eq!(bare.unwrap_err().code(), Code::Unavailable);
    // A write asks the queue whether the token is still live: not while it is down.
    let hold = HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: 7, ..Default::default() };
    assert_eq!(suite.reservation(0).hold_seat(authed(&pass, hold)).await.unwrap_err().code(), Code::Unavailable);
}

#[sqlx::test(migrations = false)]
async fn a_pass_is_refused_forged_ended_elsewhere_for_others_spent_or_left(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions::default()).await;
    let (concert_id, schedule_id) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let (_other_concert, other_schedule) = suite.seed_schedule(chrono::Duration::days(2)).await;
    let token = suite.active_token("alice", &concert_id).await;
    let pass = suite.admission_pass(&token).await;
    let seats = |credential: &str, user: &str, schedule: &str| {
        let catalog = suite.catalog();
        let request = with(user, credential, ListSeatsRequest { schedule_id: schedule.into() });
        async move { catalog.clone().list_seats(request).await.map(drop) }
    };
    let hold = |credential: &str, user: &str, seat: u32| {
        let reservation = suite.reservation(0);
        let request = with(
            user,
            credential,
            HoldSeatRequest { schedule_id: schedule_id.clone(), seat_number: seat, ..Default::default() },
        );
        async move { reservation.clone().hold_seat(request).await.map(drop) }
    };
    let claims = Pass {
        token: token.parse().unwrap(),
        user_id: "alice".into(),
        concert_id: concert_id.parse().unwrap(),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
    };

    // Forged: the same claims signed by a key the waiting room does not hold.
    let intruder = PassSigner::from_pem(include_bytes!("../../../deploy/dev-auth/admission-pass-key.pem")).unwrap();
    let forged = intruder.sign(&claims).unwrap();
    refused(seats(&forged, "alice", &schedule_id).await, Code::Unauthenticated, "TOKEN_INVALID", "forged read");
    refused(hold(&forged, "alice", 1).await, Code::Unauthenticated, "TOKEN_INVALID", "forged write");
    // Ended: signed by the right key, but its admission is over.
    let ended = platform::testing::admission::signer()
        .sign(&Pass { expires_at: chrono::Utc::now() - chrono::Duration::seconds(2), ..claims.clone() })
        .unwrap();
    refused(seats(&ended, "alice", &schedule_id).await, Code::Unauthenticated, "TOKEN_EXPIRED", "ended read");
    refused(hold(&ended, "alice", 1).await, Code::Unauthenticated, "TOKEN_EXPIRED", "ended write");
    // Another concert's date, and another user presenting alice's pass.
    let elsewhere = seats(&pass, "alice", &other_schedule).await;
    refused(elsewhere, Code::PermissionDenied, "TOKEN_WRONG_CONCERT", "other concert");
    refused(seats(&pass, "bob", &schedule_id).await, Code::PermissionDenied, "TOKEN_NOT_YOURS", "bob's read");
    refused(hold(&pass, "bob", 1).await, Code::PermissionDenied, "TOKEN_NOT_YOURS", "bob's write");
    // A pass for a token the queue never issued, signed with the right key: writes ask the
    // queue, which does not know it.
    let unknown = platform::testing::admission::signer().sign(&Pass { token: Uuid::new_v4(), ..claims.clone() });
    refused(hold(&unknown.unwrap(), "alice", 1).await, Code::Unauthenticated, "TOKEN_UNKNOWN", "unknown token");

    // Spent: alice pays with her pass; her writes are refused at once, and a retried payment
    // learns its outcome.
    let held = suite.hold(&pass, &schedule_id, 3).await;
    suite.charge("alice", 200_000).await;
    let paid = suite.pay(&pass, &held, "k").await.unwrap();
    assert_eq!(paid.payment.unwrap().amount, 150_000);
    let spent = hold(&pass, "alice", 4).await.expect_err("a spent pass books nothing");
    assert_eq!(spent.code(), Code::Unauthenticated, "{spent:?}");
    assert!(matches!(reason(&spent).as_deref(), Some("TOKEN_USED" | "TOKEN_EXPIRED")), "{spent:?}");
    let retry = suite.pay(&pass, &held, "another key").await.unwrap();
    assert_eq!(retry.payment.unwrap().amount, 150_000, "the retry learns the outcome, charging nothing more");
    assert_eq!(suite.balance("alice").await, 50_000);
    // Reads stay open to the pass until its `exp` (the documented window).
    assert!(seats(&pass, "alice", &schedule_id).await.is_ok());

    // Left: carol leaves the line after admission; her pass books nothing more.
    let carols = suite.active_token("carol", &concert_id).await;
    let carols_pass = suite.admission_pass(&carols).await;
    assert!(hold(&carols_pass, "carol", 5).await.is_ok(), "while admitted, the pass books");
    suite.queue().leave_queue(authed(&carols, LeaveQueueRequest { token: carols.clone() })).await.unwrap();
    refused(hold(&carols_pass, "carol", 6).await, Code::Unauthenticated, "TOKEN_EXPIRED", "left write");
    suite.assert_books_settle(std::time::Duration::from_secs(10)).await;
}

#[sqlx::test(migrations = false)]
async fn only_the_owner_of_an_active_token_is_handed_a_pass(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(db, SuiteOptions { max_active: 1, ..SuiteOptions::default() }).await;
    let (concert_id, _schedule) = suite.seed_schedule(chrono::Duration::days(1)).await;
    let first = suite.active_token("dan", &concert_id).await;
    assert!(!suite.admission_pass(&first).await.is_empty());
    // Erin waits behind dan: her status carries no pass, and the server's pace.
    let join = concert_proto::concert::queue::v1::IssueTokenRequest { user_id: String::new(), concert_id };
    let waiting = suite.queue().issue_token(as_user("erin", join)).await.unwrap().into_inner().status.unwrap();
    register_token(&waiting.token, "erin");
    let status = suite
        .queue()
        .get_queue_status(authed(&waiting.token, GetQueueStatusRequest { token: waiting.token.clone() }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, TokenState::Waiting as i32);
    assert!(status.admission_pass.is_empty(), "no pass while waiting");
    assert_eq!(status.poll_after_seconds, 1, "the front of the line polls every second");
}
