//! The opening rush in small (what CI runs): 500 people, 100 seats, two reservation
//! replicas, a pre-queue, a tenth abandoning, people buying 1..=4 seats together in one
//! payment, each try naming two next picks ("or the next best": the seat held may not be the
//! one asked for first); the seats sell out and every invariant holds.
use std::time::Duration;

use clap::Parser;
use concertctl::rush::{RushArgs, rush};
use e2e::{Suite, SuiteOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    rush: RushArgs,
}

#[sqlx::test(migrations = false)]
async fn a_small_rush_sells_out_with_every_invariant_intact(_p: PgPoolOptions, db: PgConnectOptions) {
    // Holds of people who walk away run out after 3 s, so their seats sell too.
    let suite = Suite::start(
        db,
        SuiteOptions { reservation_replicas: 2, hold_ttl: chrono::Duration::seconds(3), ..SuiteOptions::default() },
    )
    .await;
    let clients = suite.endpoints().connect().unwrap();
    let replicas = format!("reservation={},{}", suite.reservations[0].url(), suite.reservations[1].url());
    #[rustfmt::skip]
    let args = Cli::parse_from([
        "rush", "--users", "500", "--seats", "100", "--arrival-rate", "1000", "--opens-in", "0.2",
        "--abandon", "0.1", "--max-active", "40", "--duration", "120", "--targets", &replicas, "--quiet",
        "--seats-per-person", "4", "--seat-alternatives", "2",
    ])
    .rush;
    let report = tokio::time::timeout(Duration::from_secs(240), rush(&clients, &args)).await.unwrap().unwrap();
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.seats_sold, 100, "{report}");
    assert!(report.sold_out_after_s.is_some());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "reconciliation",
            "no seat sold twice",
            "sold seats = successful payments",
            "acknowledged and lost",
            "every person's money accounted for",
            "FIFO admission",
            "join order"
        ]
    );
    assert!(report.checks.iter().all(|c| c.ok));
    // People collided on seats, some waited in the pre-queue, some abandoned.
    let hold = report.rpcs.iter().find(|r| r.rpc == "HoldSeat").unwrap();
    assert!(hold.codes.get("AlreadyExists").is_some_and(|n| *n > 0), "{report}");
    assert!(report.outcomes.get("Abandoned").is_some_and(|n| *n > 0), "{report}");
    assert_eq!(report.outcomes.values().sum::<u64>(), 500);
    let fifo = report.checks.iter().find(|c| c.name == "FIFO admission").unwrap();
    assert!(!fifo.detail.starts_with("500 tokens (0 pre-queue)"), "{}", fifo.detail);
}

/// Issue #26 in small: a flood larger than the room takes. 1,500 people arrive at 1,500/s on
/// a queue that accepts 150 joins a second, so most joins are refused at the gate and retried
/// with backoff; people wait at the server's pace (polls) and shop with their admission pass.
/// The seats still sell out with every invariant intact. (Sized for a debug build with the
/// whole suite and the generator in one process on two cores; holds last 15 s, since every
/// call here is slow.)
#[sqlx::test(migrations = false)]
async fn a_flood_is_shed_at_the_gate_and_still_sells_out(_p: PgPoolOptions, db: PgConnectOptions) {
    let suite = Suite::start(
        db,
        SuiteOptions {
            reservation_replicas: 2,
            hold_ttl: chrono::Duration::seconds(15),
            join_rate_total: std::num::NonZeroU32::new(150),
            ..SuiteOptions::default()
        },
    )
    .await;
    let clients = suite.endpoints().connect().unwrap();
    let replicas = format!("reservation={},{}", suite.reservations[0].url(), suite.reservations[1].url());
    #[rustfmt::skip]
    let args = Cli::parse_from([
        "rush", "--users", "1500", "--seats", "100", "--arrival-rate", "1500", "--abandon", "0.05",
        "--max-active", "40", "--duration", "150", "--poll", "--targets", &replicas, "--quiet",
    ])
    .rush;
    let report = tokio::time::timeout(Duration::from_secs(300), rush(&clients, &args)).await.unwrap().unwrap();
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.seats_sold, 100, "{report}");
    assert!(report.checks.iter().all(|c| c.ok), "{report}");
    let joins = report.rpcs.iter().find(|r| r.rpc == "IssueToken").unwrap();
    assert!(joins.codes.get("ResourceExhausted").is_some_and(|n| *n > 0), "the flood was shed: {report}");
    assert_eq!(report.waiting_by, "GetQueueStatus");
    assert!(report.admitted["PayReservation"].codes.get("Ok").is_some_and(|n| *n >= 100), "{report}");
}
