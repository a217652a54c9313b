//! Cross-service reconciliation: the wallet's ledger against reservation's payment sagas.
//!
//! Each service can only check its own books (the wallet's `Audit` compares balances with
//! the ledger). Money goes astray *between* services: a debit whose payment was marked
//! FAILED, a sold seat nobody paid for, a refund of a payment that was confirmed. This joins
//! the two exports (`WalletInternalService/ExportBooks`, `ReservationInternalService/
//! ExportPayments`) and checks, for every payment saga and every user:
//!
//! - a CONFIRMED or COMPLETED payment (one seat or an order of several) has exactly one
//!   debit, of its amount, for its user; its amount is the sum of its seats' prices; every
//!   seat is CONFIRMED, or REFUNDED with a give-back; what was refunded of the debit is
//!   exactly the price of the seats whose give-back finished (once each: a give-back still
//!   owed is unsettled);
//! - a COMPENSATED payment's debit was refunded in full;
//! - a FAILED payment has no money taken (no debit, or a debit refunded in full) and its
//!   debit key is voided, so no late debit can take any;
//! - every saga debit belongs to a payment in one of these states (an orphan debit is money
//!   taken for nothing);
//! - every CONFIRMED reservation has a paid payment, and no seat is sold twice (a seat given
//!   back and sold again has exactly one live owner);
//! - per user: balance = charges − debits + refunds, and debits − refunds of the saga's
//!   keys = what that user's paid seats cost, less the seats given back.
//!
//! Payments still under way (STARTED, COMPENSATING) cannot be judged yet: they are listed as
//! unsettled, together with those the recovery worker gave up on (`needs_attention`).
use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use concert_proto::concert::{
    reservation::v1::{
        ExportPaymentsRequest, GiveBackState, PaymentRecord, PaymentSeatRecord, ReservationStatus, SagaState,
        reservation_internal_service_client::ReservationInternalServiceClient,
    },
    wallet::v1::{
        AccountBook, DebitRecord, ExportBooksRequest, VoidedDebit,
        wallet_internal_service_client::WalletInternalServiceClient,
    },
};
use futures::StreamExt;
use platform::grpc_client::PeerChannel;

/// The wallet's export, gathered from its stream.
#[derive(Debug, Clone, Default)]
pub struct WalletBooks {
    pub accounts: Vec<AccountBook>,
    pub debits: Vec<DebitRecord>,
    pub voided: Vec<VoidedDebit>,
}

/// What the reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub wallets: usize,
    pub payments: usize,
    pub debits: usize,
    /// Payments that sold a seat (CONFIRMED or COMPLETED).
    pub paid: usize,
    /// Reservations CONFIRMED (sold seats).
    pub sold_seats: usize,
    /// Seats given back (REFUNDED), their refunds finished or still owed.
    pub given_back: usize,
    /// Won, over all wallets.
    pub total_charged: i64,
    pub total_debited: i64,
    pub total_refunded: i64,
    pub total_balance: i64,
    /// Payments still under way: not judged.
    pub unsettled: Vec<String>,
    /// Unfinished payments the recovery worker gave up on: a person must look.
    pub needs_attention: Vec<String>,
    /// Broken invariants: money or seats astray.
    pub violations: Vec<String>,
}

impl Report {
    /// No invariant is broken (payments under way may remain).
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Clean, and every payment finished.
    #[must_use]
    pub fn is_settled(&self) -> bool {
        self.is_clean() && self.unsettled.is_empty() && self.needs_attention.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "reconcile: {} wallets, {} payments ({} paid, {} unsettled, {} needing a person), {} debits, {} seats sold, {} given back",
            self.wallets,
            self.payments,
            self.paid,
            self.unsettled.len(),
            self.needs_attention.len(),
            self.debits,
            self.sold_seats,
            self.given_back
        )?;
        writeln!(
            f,
            "reconcile: charged {} won, debited {} won, refunded {} won, balances {} won",
            self.total_charged, self.total_debited, self.total_refunded, self.total_balance
        )?;
        for p in &self.needs_attention {
            writeln!(f, "NEEDS A PERSON {p}")?;
        }
        for p in self.unsettled.iter().take(20) {
            writeln!(f, "UNSETTLED {p}")?;
        }
        for v in &self.violations {
            writeln!(f, "VIOLATION {v}")?;
        }
        if self.violations.is_empty() {
            write!(f, "reconcile: every won and every seat is accounted for")
        } else {
            write!(f, "reconcile: {} violations", self.violations.len())
        }
    }
}

/// Reads both exports and reconciles them. The two reads are separate snapshots: run it
/// when no payment is in flight for exact results (a payment that moves between the reads
/// can show up as unsettled, or as a violation if it moved from STARTED to CONFIRMED).
///
/// # Errors
/// When either service cannot be read.
pub async fn fetch_and_reconcile(
    wallet: WalletInternalServiceClient<PeerChannel>,
    reservation: ReservationInternalServiceClient<PeerChannel>,
) -> anyhow::Result<Report> {
    let (books, payments) = fetch(wallet, reservation).await?;
    Ok(reconcile(&books, &payments))
}

/// Reads reservation's payments, then the wallet's books.
///
/// # Errors
/// When either service cannot be read.
pub async fn fetch(
    mut wallet: WalletInternalServiceClient<PeerChannel>,
    mut reservation: ReservationInternalServiceClient<PeerChannel>,
) -> anyhow::Result<(WalletBooks, Vec<PaymentRecord>)> {
    let mut payments = Vec::new();
    let mut stream = reservation.export_payments(ExportPaymentsRequest {}).await?.into_inner();
    while let Some(chunk) = stream.next().await {
        payments.extend(chunk?.payments);
    }
    let mut books = WalletBooks::default();
    let mut stream = wallet.export_books(ExportBooksRequest {}).await?.into_inner();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        books.accounts.extend(chunk.accounts);
        books.debits.extend(chunk.debits);
        books.voided.extend(chunk.voided);
    }
    Ok((books, payments))
}

/// The checks themselves (pure: no I/O).
#[must_use]
pub fn reconcile(books: &WalletBooks, payments: &[PaymentRecord]) -> Report {
    let mut report = Report {
        wallets: books.accounts.len(),
        payments: payments.len(),
        debits: books.debits.len(),
        ..Report::default()
    };
    let debits: HashMap<(&str, &str), &DebitRecord> =
        books.debits.iter().map(|d| ((d.user_id.as_str(), d.idempotency_key.as_str()), d)).collect();
    let voided: HashSet<(&str, &str)> =
        books.voided.iter().map(|v| (v.user_id.as_str(), v.debit_key.as_str())).collect();
    let mut claimed: HashSet<(&str, &str)> = HashSet::new();
    let mut paid_by_user: HashMap<&str, i64> = HashMap::new();
    let mut owing_users: HashSet<&str> = HashSet::new();
    let mut sold: HashMap<(&str, u32), Vec<&str>> = HashMap::new();
    let mut paid_reservations: HashSet<&str> = HashSet::new();
    let mut v = Vec::new();
    let all_seats: Vec<Vec<PaymentSeatRecord>> = payments.iter().map(seats_of).collect();

    for (p, seats) in payments.iter().zip(&all_seats) {
        let key = (p.user_id.as_str(), p.debit_key.as_str());
        claimed.insert(key);
        let debit = debits.get(&key);
        let state = SagaState::try_from(p.state).unwrap_or(SagaState::Unspecified);
        let id = &p.payment_id;
        if p.needs_attention {
            report.needs_attention.push(format!("payment {id} ({state:?}, {} attempts)", p.attempts));
        }
        if matches!(state, SagaState::Confirmed | SagaState::Completed) {
            report.paid += 1;
            let given_back: i64 =
                seats.iter().filter(|s| give_back(s) == GiveBackState::Refunded).map(|s| s.price).sum();
            *paid_by_user.entry(p.user_id.as_str()).or_default() += p.amount - given_back;
            for s in seats {
                paid_reservations.insert(s.reservation_id.as_str());
                if give_back(s) == GiveBackState::Refunding {
                    owing_users.insert(p.user_id.as_str());
                    report.unsettled.push(format!("give-back of reservation {} (refund owed)", s.reservation_id));
                }
            }
        }
        if matches!(state, SagaState::Started | SagaState::Compensating) && !p.needs_attention {
            report.unsettled.push(format!("payment {id} ({state:?})"));
        }
        v.extend(payment_violations(p, state, seats, debit.copied(), voided.contains(&key)));
        for s in seats {
            match status_of(s) {
                ReservationStatus::Confirmed => {
                    sold.entry((s.schedule_id.as_str(), s.seat_number)).or_default().push(s.reservation_id.as_str());
                }
                ReservationStatus::Refunded => report.given_back += 1,
                _ => {}
            }
        }
    }

    // Every debit belongs to a payment (refunded in full, it is harmless but still reported
    // when no payment claims it: someone used the internal API by hand).
    for d in &books.debits {
        if !claimed.contains(&(d.user_id.as_str(), d.idempotency_key.as_str())) {
            v.push(format!(
                "debit {} of user {} ({} won, {} refunded) belongs to no payment",
                d.idempotency_key, d.user_id, d.amount, d.refunded
            ));
        }
    }
    v.extend(sold_violations(&sold, &paid_reservations, &mut report));

    v.extend(wallet_violations(books, payments, &paid_by_user, &owing_users, &mut report));
    v.sort();
    report.violations = v;
    report
}

/// Each sold seat has one live owner, who paid: `sold` maps (schedule, seat) to its
/// CONFIRMED reservations. Counts the sold seats into `report`.
fn sold_violations(
    sold: &HashMap<(&str, u32), Vec<&str>>,
    paid_reservations: &HashSet<&str>,
    report: &mut Report,
) -> Vec<String> {
    let mut v = Vec::new();
    for ((schedule, seat), reservations) in sold {
        report.sold_seats += reservations.len();
        if reservations.len() > 1 {
            v.push(format!("seat {seat} of schedule {schedule} is sold {} times", reservations.len()));
        }
        for r in reservations {
            if !paid_reservations.contains(r) {
                v.push(format!("reservation {r} is CONFIRMED but no payment of it is paid"));
            }
        }
    }
    v
}

/// The seats a payment covers; a record from before orders (no `seats`) covers its one
/// reservation.
fn seats_of(p: &PaymentRecord) -> Vec<PaymentSeatRecord> {
    if !p.seats.is_empty() {
        return p.seats.clone();
    }
    vec![PaymentSeatRecord {
        reservation_id: p.reservation_id.clone(),
        schedule_id: p.schedule_id.clone(),
        seat_number: p.seat_number,
        price: p.amount,
        reservation_status: p.reservation_status,
        give_back: GiveBackState::None.into(),
        give_back_refund_key: String::new(),
    }]
}

fn status_of(s: &PaymentSeatRecord) -> ReservationStatus {
    ReservationStatus::try_from(s.reservation_status).unwrap_or(ReservationStatus::Unspecified)
}

fn give_back(s: &PaymentSeatRecord) -> GiveBackState {
    GiveBackState::try_from(s.give_back).unwrap_or(GiveBackState::Unspecified)
}

/// What is wrong with one payment saga, given its state, its seats, its debit at the wallet
/// (if any) and whether its debit key was voided.
fn payment_violations(
    p: &PaymentRecord,
    state: SagaState,
    seats: &[PaymentSeatRecord],
    debit: Option<&DebitRecord>,
    voided: bool,
) -> Vec<String> {
    let id = &p.payment_id;
    let mut v = Vec::new();
    match state {
        SagaState::Confirmed | SagaState::Completed => {
            let prices: i64 = seats.iter().map(|s| s.price).sum();
            if prices != p.amount {
                v.push(format!("payment {id} costs {} won but its seats cost {prices} won", p.amount));
            }
            let refunded: i64 = seats.iter().filter(|s| give_back(s) == GiveBackState::Refunded).map(|s| s.price).sum();
            let owed: i64 = seats.iter().filter(|s| give_back(s) == GiveBackState::Refunding).map(|s| s.price).sum();
            match debit {
                None => v.push(format!("payment {id} is {state:?} but the wallet has no debit for it")),
                Some(d) if d.amount != p.amount => {
                    v.push(format!("payment {id} costs {} won but its debit took {} won", p.amount, d.amount));
                }
                // A refund still owed may have reached the wallet already.
                Some(d) if d.refunded < refunded || d.refunded > refunded + owed => v.push(format!(
                    "payment {id} is {state:?} and {refunded} won of its seats were given back, but {} won of its debit were refunded",
                    d.refunded
                )),
                Some(_) => {}
            }
            for s in seats {
                match (status_of(s), give_back(s)) {
                    (ReservationStatus::Confirmed, GiveBackState::None)
                    | (ReservationStatus::Refunded, GiveBackState::Refunding | GiveBackState::Refunded) => {}
                    (status, back) => v.push(format!(
                        "payment {id} is {state:?} but its reservation {} is {status:?} (give-back {back:?})",
                        s.reservation_id
                    )),
                }
            }
        }
        SagaState::Compensated => {
            match debit {
                None => v.push(format!("payment {id} is COMPENSATED but the wallet has no debit for it")),
                Some(d) if d.refunded != d.amount => v.push(format!(
                    "payment {id} is COMPENSATED but {} of its {} won were refunded",
                    d.refunded, d.amount
                )),
                Some(_) => {}
            }
            v.extend(unsold_violations(id, "COMPENSATED", seats));
        }
        SagaState::Failed => {
            if let Some(d) = debit.filter(|d| d.refunded != d.amount) {
                v.push(format!(
                    "payment {id} is FAILED but its debit of {} won was taken ({} refunded)",
                    d.amount, d.refunded
                ));
            }
            if debit.is_none() && !voided {
                v.push(format!(
                    "payment {id} is FAILED but its debit key is not voided: a late debit could take money"
                ));
            }
            v.extend(unsold_violations(id, "FAILED", seats));
        }
        // Under way: not judged (listed as unsettled or needing a person).
        SagaState::Started | SagaState::Compensating => {}
        SagaState::Unspecified => v.push(format!("payment {id} has an unknown state {}", p.state)),
    }
    v
}

/// A payment given up must have sold none of its seats.
fn unsold_violations(id: &str, state: &str, seats: &[PaymentSeatRecord]) -> Vec<String> {
    seats
        .iter()
        .filter(|s| matches!(status_of(s), ReservationStatus::Confirmed | ReservationStatus::Refunded))
        .map(|s| format!("payment {id} is {state} but its reservation {} is {:?}", s.reservation_id, status_of(s)))
        .collect()
}

/// Per wallet, its own books (balance = charges − debits + refunds); per user, the saga's net
/// take against what the seats bought cost (users with a payment under way are not judged).
/// Adds the wallets' totals to `report`.
fn wallet_violations(
    books: &WalletBooks,
    payments: &[PaymentRecord],
    paid_by_user: &HashMap<&str, i64>,
    owing_users: &HashSet<&str>,
    report: &mut Report,
) -> Vec<String> {
    let mut v = Vec::new();
    let mut net_taken: HashMap<&str, i64> = HashMap::new();
    for d in &books.debits {
        *net_taken.entry(d.user_id.as_str()).or_default() += d.amount - d.refunded;
    }
    for a in &books.accounts {
        report.total_charged += a.charged;
        report.total_debited += a.debited;
        report.total_refunded += a.refunded;
        report.total_balance += a.balance;
        if a.charged - a.debited + a.refunded != a.balance {
            v.push(format!(
                "wallet {}: balance {} won but charges {} − debits {} + refunds {} = {} won",
                a.user_id,
                a.balance,
                a.charged,
                a.debited,
                a.refunded,
                a.charged - a.debited + a.refunded
            ));
        }
    }
    let unsettled_users: HashSet<&str> = payments
        .iter()
        .filter(|p| matches!(SagaState::try_from(p.state), Ok(SagaState::Started | SagaState::Compensating)))
        .map(|p| p.user_id.as_str())
        .collect();
    let users: HashSet<&str> = net_taken.keys().chain(paid_by_user.keys()).copied().collect();
    for user in users {
        let (taken, bought) = (net_taken.get(user).copied().unwrap_or(0), paid_by_user.get(user).copied().unwrap_or(0));
        if taken != bought && !unsettled_users.contains(user) && !owing_users.contains(user) {
            v.push(format!(
                "user {user}: the wallet kept {taken} won for seats, but the seats bought (less those given back) cost {bought} won"
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn payment(id: &str, user: &str, amount: i64, state: SagaState, reservation: ReservationStatus) -> PaymentRecord {
        PaymentRecord {
            payment_id: id.into(),
            reservation_id: format!("r-{id}"),
            user_id: user.into(),
            amount,
            state: state.into(),
            reservation_status: reservation.into(),
            schedule_id: "s".into(),
            seat_number: id.len() as u32,
            attempts: 0,
            needs_attention: false,
            debit_key: format!("payment:{id}:debit"),
            refund_key: format!("payment:{id}:refund"),
            seats: vec![],
        }
    }

    fn seat(n: u32, price: i64, status: ReservationStatus, back: GiveBackState) -> PaymentSeatRecord {
        PaymentSeatRecord {
            reservation_id: format!("seat-{n}"),
            schedule_id: "s".into(),
            seat_number: n,
            price,
            reservation_status: status.into(),
            give_back: back.into(),
            give_back_refund_key: format!("refund-{n}"),
        }
    }

    /// A paid order of three seats (100 + 200 + 300 won) for user `a`.
    fn order(seats: Vec<PaymentSeatRecord>) -> PaymentRecord {
        let mut p = payment("o", "a", 600, SagaState::Completed, ReservationStatus::Confirmed);
        p.seats = seats;
        p
    }

    fn debit(id: &str, user: &str, amount: i64, refunded: i64) -> DebitRecord {
        DebitRecord { user_id: user.into(), idempotency_key: format!("payment:{id}:debit"), amount, refunded }
    }

    fn account(user: &str, charged: i64, debited: i64, refunded: i64) -> AccountBook {
        AccountBook { user_id: user.into(), balance: charged - debited + refunded, charged, debited, refunded }
    }

    #[test]
    fn consistent_books_are_clean_and_settled() {
        let books = WalletBooks {
            accounts: vec![account("a", 300, 250, 150)],
            debits: vec![debit("p", "a", 100, 0), debit("pp", "a", 150, 150)],
            voided: vec![VoidedDebit { user_id: "a".into(), debit_key: "payment:ppp:debit".into() }],
        };
        let payments = vec![
            payment("p", "a", 100, SagaState::Completed, ReservationStatus::Confirmed),
            payment("pp", "a", 150, SagaState::Compensated, ReservationStatus::Cancelled),
            payment("ppp", "a", 120, SagaState::Failed, ReservationStatus::Cancelled),
        ];
        let report = reconcile(&books, &payments);
        assert!(report.is_settled(), "{report}");
        assert_eq!((report.paid, report.sold_seats), (1, 1));
    }

    #[test]
    fn each_kind_of_stray_money_or_seat_is_reported() {
        let books = WalletBooks {
            accounts: vec![account("a", 1_000, 400, 0), AccountBook { balance: 5, ..account("b", 0, 0, 0) }],
            debits: vec![
                debit("failed", "a", 100, 0), // FAILED yet taken: the double-click hole
                debit("short", "a", 50, 0),   // paid 50 for a 60 seat
                debit("orphan", "a", 250, 0), // nobody's payment
            ],
            voided: vec![],
        };
        let mut twice = payment("twice", "a", 0, SagaState::Completed, ReservationStatus::Confirmed);
        twice.seat_number = "short".len() as u32;
        let payments = vec![
            payment("failed", "a", 100, SagaState::Failed, ReservationStatus::Cancelled),
            payment("short", "a", 60, SagaState::Confirmed, ReservationStatus::Confirmed),
            payment("free", "a", 70, SagaState::Completed, ReservationStatus::Confirmed),
            payment("novoid", "a", 10, SagaState::Failed, ReservationStatus::Cancelled),
            twice,
        ];
        let report = reconcile(&books, &payments);
        let text = report.violations.join("\n");
        for want in [
            "payment failed is FAILED but its debit of 100 won was taken",
            "payment short costs 60 won but its debit took 50 won",
            "payment free is Completed but the wallet has no debit",
            "payment novoid is FAILED but its debit key is not voided",
            "debit payment:orphan:debit of user a (250 won, 0 refunded) belongs to no payment",
            "is sold 2 times",
            "wallet b: balance 5 won",
            "user a: the wallet kept 400 won for seats, but the seats bought (less those given back) cost 130 won",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn payments_under_way_are_unsettled_not_violations() {
        let books = WalletBooks {
            accounts: vec![account("a", 100, 100, 0)],
            debits: vec![debit("p", "a", 100, 0)],
            voided: vec![],
        };
        let mut stuck = payment("q", "a", 10, SagaState::Started, ReservationStatus::Held);
        stuck.needs_attention = true;
        let payments = vec![payment("p", "a", 100, SagaState::Started, ReservationStatus::Held), stuck];
        let report = reconcile(&books, &payments);
        assert!(report.is_clean(), "{report}");
        assert!(!report.is_settled());
        assert_eq!((report.unsettled.len(), report.needs_attention.len()), (1, 1));
    }

    #[test]
    fn orders_and_give_backs_reconcile_per_seat() {
        use GiveBackState as G;
        use ReservationStatus as R;
        let books = |refunded: i64| WalletBooks {
            accounts: vec![account("a", 1_000, 600, refunded)],
            debits: vec![debit("o", "a", 600, refunded)],
            voided: vec![],
        };
        // Seat 2 given back and refunded; the others sold.
        let settled = order(vec![
            seat(1, 100, R::Confirmed, G::None),
            seat(2, 200, R::Refunded, G::Refunded),
            seat(3, 300, R::Confirmed, G::None),
        ]);
        let report = reconcile(&books(200), std::slice::from_ref(&settled));
        assert!(report.is_settled(), "{report}");
        assert_eq!((report.paid, report.sold_seats, report.given_back), (1, 2, 1));

        // A give-back whose refund is still owed: unsettled, whether or not the wallet has
        // answered yet, and never a violation.
        let mut owed = settled.clone();
        owed.seats[1].give_back = G::Refunding.into();
        for refunded in [0, 200] {
            let report = reconcile(&books(refunded), std::slice::from_ref(&owed));
            assert!(report.is_clean() && !report.is_settled(), "{report}");
        }

        // Refunded twice, or a refund without a give-back: money created.
        let text = reconcile(&books(400), std::slice::from_ref(&settled)).violations.join("\n");
        assert!(
            text.contains("200 won of its seats were given back, but 400 won of its debit were refunded"),
            "{text}"
        );
        // An order whose seats do not add up to its amount, and a seat of a paid order that
        // is not sold.
        let mut short = order(vec![seat(1, 100, R::Confirmed, G::None), seat(2, 200, R::Held, G::None)]);
        short.amount = 600;
        let text = reconcile(&books(0), &[short]).violations.join("\n");
        assert!(text.contains("payment o costs 600 won but its seats cost 300 won"), "{text}");
        assert!(text.contains("its reservation seat-2 is Held"), "{text}");

        // A seat given back and sold again has one live owner; sold twice is caught.
        let mut resold = payment("r", "b", 200, SagaState::Completed, R::Confirmed);
        resold.seats = vec![seat(2, 200, R::Confirmed, G::None)];
        let wallet = WalletBooks {
            accounts: vec![account("a", 1_000, 600, 200), account("b", 500, 200, 0)],
            debits: vec![debit("o", "a", 600, 200), debit("r", "b", 200, 0)],
            voided: vec![],
        };
        let report = reconcile(&wallet, &[settled.clone(), resold.clone()]);
        assert!(report.is_settled(), "{report}");
        let mut not_given_back = settled;
        not_given_back.seats[1] = seat(2, 200, R::Confirmed, G::None);
        let text = reconcile(&wallet, &[not_given_back, resold]).violations.join("\n");
        assert!(text.contains("seat 2 of schedule s is sold 2 times"), "{text}");
    }

    #[test]
    fn a_payment_given_up_sold_none_of_its_seats() {
        let mut failed = payment("f", "a", 300, SagaState::Compensated, ReservationStatus::Cancelled);
        failed.seats = vec![
            seat(1, 100, ReservationStatus::Cancelled, GiveBackState::None),
            seat(2, 200, ReservationStatus::Confirmed, GiveBackState::None),
        ];
        let books = WalletBooks {
            accounts: vec![account("a", 300, 300, 300)],
            debits: vec![debit("f", "a", 300, 300)],
            voided: vec![],
        };
        let text = reconcile(&books, &[failed]).violations.join("\n");
        assert!(text.contains("payment f is COMPENSATED but its reservation seat-2 is Confirmed"), "{text}");
    }
}
