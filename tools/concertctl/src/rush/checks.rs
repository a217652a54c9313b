//! After the rush: every seat and every won where it should be, and the line was fair.
//!
//! - the suite-wide reconciliation ([`crate::reconcile`]) is clean and settles (no payment
//!   left under way or needing a person);
//! - no seat of the run is sold twice, and the seats sold are exactly the payments people
//!   were told succeeded;
//! - every person's wallet holds what they charged minus what they paid (a call whose
//!   answer was lost counts as made or not: either must match);
//! - FIFO: along the line (`place`), admission rounds never go back (nobody admitted
//!   before someone ahead of them; the pre-queue's random order is its place), nobody ahead
//!   of an admitted person is still waiting, and a join answered before another was sent
//!   has the earlier place (pre-queue joins aside).
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use concert_proto::concert::{
    queue::v1::{ExportTokensRequest, TokenRecord, TokenState},
    reservation::v1::{PaymentRecord, SagaState},
};
use futures::StreamExt;

use super::person::Trace;
use crate::{clients::Clients, reconcile};

/// How long payments still under way may take to settle after the rush.
const SETTLE: Duration = Duration::from_secs(60);
/// Examples kept per broken check.
const EXAMPLES: usize = 5;

/// One invariant and what was found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// Up to [`EXAMPLES`] cases that break it.
    pub examples: Vec<String>,
}

fn check(name: &'static str, bad: &[String], detail: String) -> Check {
    Check { name, ok: bad.is_empty(), detail, examples: bad.iter().take(EXAMPLES).cloned().collect() }
}

/// Runs every check.
///
/// # Errors
/// When a service cannot be read.
pub async fn run(
    clients: &Clients,
    concert_id: &str,
    schedules: &[String],
    traces: &[Trace],
) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let settle_by = Instant::now() + SETTLE;
    let (books, payments, report) = loop {
        let (books, payments) = reconcile::fetch(clients.wallet_internal(), clients.reservation_internal()).await?;
        let report = reconcile::reconcile(&books, &payments);
        if report.is_settled() || Instant::now() >= settle_by {
            break (books, payments, report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut bad = report.violations.clone();
    bad.extend(report.unsettled.iter().map(|p| format!("still under way after {SETTLE:?}: {p}")));
    bad.extend(report.needs_attention.iter().map(|p| format!("needs a person: {p}")));
    checks.push(check(
        "reconciliation",
        &bad,
        format!(
            "whole suite: {} payments, {} paid, {} wallets; charged {} won, debited {} won, refunded {} won",
            report.payments,
            report.paid,
            report.wallets,
            report.total_charged,
            report.total_debited,
            report.total_refunded
        ),
    ));

    // Seats: the server's sales of this run against what people were told.
    let ours: HashSet<&str> = schedules.iter().map(String::as_str).collect();
    let mut sold: HashMap<(&str, u32), usize> = HashMap::new();
    for p in payments.iter().filter(|p| ours.contains(p.schedule_id.as_str())) {
        if matches!(SagaState::try_from(p.state), Ok(SagaState::Confirmed | SagaState::Completed)) {
            // Every seat of the payment (an order), or its one seat (a record from before orders).
            if p.seats.is_empty() {
                *sold.entry((p.schedule_id.as_str(), p.seat_number)).or_default() += 1;
            }
            for s in &p.seats {
                *sold.entry((s.schedule_id.as_str(), s.seat_number)).or_default() += 1;
            }
        }
    }
    let twice: Vec<String> = sold
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((s, seat), n)| format!("seat {seat} of {s} sold {n} times"))
        .collect();
    checks.push(check("no seat sold twice", &twice, format!("{} seats sold", sold.len())));
    let told: HashSet<(&str, u32)> =
        traces.iter().flat_map(|t| &t.bought).map(|(s, seat, _)| (s.as_str(), *seat)).collect();
    // A payment whose answer was lost may have gone either way.
    let unknown: HashSet<(&str, u32)> =
        traces.iter().flat_map(|t| &t.pay_unknown).map(|(s, seat, _)| (s.as_str(), *seat)).collect();
    let mut mismatch: Vec<String> = sold
        .keys()
        .filter(|k| !told.contains(k) && !unknown.contains(k))
        .map(|(s, seat)| format!("seat {seat} of {s} sold, but nobody was told their payment succeeded"))
        .collect();
    mismatch.extend(
        told.iter()
            .filter(|k| !sold.contains_key(k))
            .map(|(s, seat)| format!("seat {seat} of {s}: payment answered OK, but the seat is not sold")),
    );
    let paid_people = traces.iter().filter(|t| !t.bought.is_empty()).count();
    checks.push(check(
        "sold seats = successful payments",
        &mismatch,
        format!(
            "{} seats sold, {paid_people} payments answered OK, {} seats' payments' answers lost ({} of them sold)",
            sold.len(),
            unknown.len(),
            unknown.iter().filter(|k| sold.contains_key(k)).count()
        ),
    ));

    checks.push(acknowledged_and_lost(&books, &payments, traces));

    // Money, per person.
    let accounts: HashMap<&str, _> = books.accounts.iter().map(|a| (a.user_id.as_str(), a)).collect();
    let mut astray = Vec::new();
    for t in traces {
        let spent: i64 = t.bought.iter().map(|b| b.2).sum();
        let (charged, balance) = accounts.get(t.user.as_str()).map_or((0, 0), |a| (a.charged, a.balance));
        // What the person was answered, with any call whose answer was lost counted as made
        // or not: the wallet must match one of those.
        let charge_ok = charged == t.charged || charged == t.charged + t.charge_unknown;
        let lost_pay: i64 = t.pay_unknown.iter().map(|p| p.2).sum();
        let balance_ok = balance == charged - spent || balance == charged - spent - lost_pay;
        if !charge_ok || !balance_ok {
            astray.push(format!(
                "{}: charged {} won and paid {spent} won (as answered; {} won of charges and {lost_pay} won of \
                 payments unanswered), but the wallet shows charged {charged}, balance {balance}",
                t.user, t.charged, t.charge_unknown
            ));
        }
    }
    checks.push(check(
        "every person's money accounted for",
        &astray,
        format!("{} people: wallet = charged − paid", traces.len()),
    ));

    let tokens = export_tokens(clients, concert_id).await?;
    checks.push(fifo(&tokens));
    checks.push(join_order(&tokens, traces));
    Ok(checks)
}

/// Every write a person was answered OK is in the books (what a Jepsen test asks of a
/// database across a crash or failover): each payment answered OK is there by its id, paid
/// (CONFIRMED or COMPLETED), with the seats the person was told; each charge answered OK is
/// in that person's wallet (a person charges at most once, so their acknowledged won must
/// all be in `charged`).
fn acknowledged_and_lost(books: &reconcile::WalletBooks, payments: &[PaymentRecord], traces: &[Trace]) -> Check {
    let by_id: HashMap<&str, &PaymentRecord> = payments.iter().map(|p| (p.payment_id.as_str(), p)).collect();
    let charged: HashMap<&str, i64> = books.accounts.iter().map(|a| (a.user_id.as_str(), a.charged)).collect();
    let (mut paid, mut charges, mut won) = (0, 0, 0);
    let mut lost = Vec::new();
    for t in traces {
        if let Some(id) = &t.payment_id {
            paid += 1;
            let seats: HashSet<(&str, u32)> = t.bought.iter().map(|(s, seat, _)| (s.as_str(), *seat)).collect();
            match by_id.get(id.as_str()) {
                None => lost.push(format!("{}: payment {id} answered OK is not in the books", t.user)),
                Some(p) if !matches!(SagaState::try_from(p.state), Ok(SagaState::Confirmed | SagaState::Completed)) => {
                    lost.push(format!("{}: payment {id} answered OK is {:?} in the books", t.user, p.state()));
                }
                Some(p) => {
                    let kept: HashSet<(&str, u32)> = if p.seats.is_empty() {
                        HashSet::from([(p.schedule_id.as_str(), p.seat_number)])
                    } else {
                        p.seats.iter().map(|s| (s.schedule_id.as_str(), s.seat_number)).collect()
                    };
                    if kept != seats {
                        lost.push(format!(
                            "{}: payment {id} was answered for seats {seats:?}, the books have {kept:?}",
                            t.user
                        ));
                    }
                }
            }
        }
        if t.charged > 0 {
            charges += 1;
            won += t.charged;
            let kept = charged.get(t.user.as_str()).copied().unwrap_or(0);
            if kept < t.charged {
                lost.push(format!(
                    "{}: {} won charged and answered OK, the wallet has {kept} won charged",
                    t.user, t.charged
                ));
            }
        }
    }
    let detail = format!(
        "acknowledged and lost: {}; {paid} payments and {charges} charges ({won} won) were answered OK",
        lost.len()
    );
    check("acknowledged and lost", &lost, detail)
}

async fn export_tokens(clients: &Clients, concert_id: &str) -> anyhow::Result<Vec<TokenRecord>> {
    let mut stream = clients
        .queue_internal()
        .export_tokens(ExportTokensRequest { concert_id: concert_id.into() })
        .await?
        .into_inner();
    let mut tokens = Vec::new();
    while let Some(chunk) = stream.next().await {
        tokens.extend(chunk?.tokens);
    }
    tokens.sort_by_key(|t| t.place);
    Ok(tokens)
}

/// Along the line, admission rounds never go back, and nobody ahead of an admitted person
/// is still waiting. Someone who left unadmitted is not judged: when they left is only
/// known by a replica's clock, which cannot be ordered against the rounds.
fn fifo(tokens: &[TokenRecord]) -> Check {
    let mut bad = Vec::new();
    let mut latest_round = 0;
    let mut latest_place = i64::MIN;
    for t in tokens.iter().filter(|t| t.admission_round > 0) {
        if t.admission_round < latest_round {
            bad.push(format!(
                "place {} admitted in round {}, before place {} (round {latest_round}) ahead of it",
                t.place, t.admission_round, latest_place
            ));
        } else {
            (latest_round, latest_place) = (t.admission_round, t.place);
        }
    }
    let last_admitted = tokens.iter().filter(|t| t.admission_round > 0).map(|t| t.place).max();
    if let Some(last) = last_admitted {
        for t in tokens.iter().filter(|t| t.state == TokenState::Waiting as i32 && t.place < last) {
            bad.push(format!("place {} is still waiting, behind it place {last} was admitted", t.place));
        }
    }
    let admitted = tokens.iter().filter(|t| t.admission_round > 0).count();
    let pre = tokens.iter().filter(|t| t.pre_queue).count();
    let rounds: HashSet<u64> = tokens.iter().map(|t| t.admission_round).filter(|r| *r > 0).collect();
    check(
        "FIFO admission",
        &bad,
        format!("{} tokens ({pre} pre-queue), {admitted} admitted in {} rounds", tokens.len(), rounds.len()),
    )
}

/// A join answered before another was sent must stand ahead of it (both after opening).
fn join_order(tokens: &[TokenRecord], traces: &[Trace]) -> Check {
    let place: HashMap<&str, i64> =
        tokens.iter().filter(|t| !t.pre_queue).map(|t| (t.token.as_str(), t.place)).collect();
    let mut joins: Vec<(Duration, Duration, i64)> =
        traces.iter().filter_map(|t| place.get(t.token.as_str()).map(|p| (t.join_sent, t.join_answered, *p))).collect();
    let mut by_answer: Vec<(Duration, i64)> = joins.iter().map(|(_, a, p)| (*a, *p)).collect();
    by_answer.sort_unstable();
    joins.sort_unstable();
    let (mut i, mut max_before) = (0, i64::MIN);
    let mut bad = Vec::new();
    for (sent, _, p) in &joins {
        while i < by_answer.len() && by_answer[i].0 < *sent {
            max_before = max_before.max(by_answer[i].1);
            i += 1;
        }
        if max_before > *p {
            bad.push(format!(
                "a join sent at {sent:?} got place {p}, behind place {max_before} answered before it was sent"
            ));
        }
    }
    check("join order", &bad, format!("{} joins after the sale opened", joins.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rush::person::End;

    fn token(id: &str, place: i64, round: u64, state: TokenState) -> TokenRecord {
        TokenRecord {
            token: id.into(),
            place,
            pre_queue: place < 0,
            admission_round: round,
            state: state.into(),
            ..TokenRecord::default()
        }
    }

    fn trace(token: &str, sent_ms: u64, answered_ms: u64) -> Trace {
        Trace {
            user: format!("u-{token}"),
            token: token.into(),
            join_sent: Duration::from_millis(sent_ms),
            join_answered: Duration::from_millis(answered_ms),
            left: false,
            admitted: true,
            charged: 0,
            bought: Vec::new(),
            charge_unknown: 0,
            pay_unknown: Vec::new(),
            payment_id: None,
            end: End::Paid,
        }
    }

    #[test]
    fn a_payment_or_charge_answered_ok_but_missing_from_the_books_is_lost() {
        use concert_proto::concert::{reservation::v1::PaymentSeatRecord, wallet::v1::AccountBook};
        let paid = |id: &str, user: &str, seat: u32| PaymentRecord {
            payment_id: id.into(),
            user_id: user.into(),
            state: SagaState::Confirmed.into(),
            seats: vec![PaymentSeatRecord { schedule_id: "d".into(), seat_number: seat, ..Default::default() }],
            ..Default::default()
        };
        let mut kept = trace("kept", 0, 1);
        (kept.payment_id, kept.bought, kept.charged) = (Some("p1".into()), vec![("d".into(), 1, 90_000)], 90_000);
        let mut lost_payment = trace("lost", 0, 1);
        (lost_payment.payment_id, lost_payment.bought) = (Some("p2".into()), vec![("d".into(), 2, 90_000)]);
        let mut other_seat = trace("moved", 0, 1);
        (other_seat.payment_id, other_seat.bought) = (Some("p3".into()), vec![("d".into(), 3, 90_000)]);
        let mut lost_charge = trace("short", 0, 1);
        lost_charge.charged = 50_000;
        let books = reconcile::WalletBooks {
            accounts: vec![
                AccountBook { user_id: "u-kept".into(), charged: 90_000, ..Default::default() },
                AccountBook { user_id: "u-short".into(), charged: 20_000, ..Default::default() },
            ],
            ..Default::default()
        };
        let payments = [paid("p1", "u-kept", 1), paid("p3", "u-moved", 4)];

        let c = acknowledged_and_lost(&books, &payments, &[kept.clone(), lost_payment, other_seat, lost_charge]);
        assert!(!c.ok);
        assert!(c.detail.starts_with("acknowledged and lost: 3;"), "{}", c.detail);
        assert!(c.examples.iter().any(|e| e.contains("p2") && e.contains("not in the books")), "{:?}", c.examples);
        assert!(c.examples.iter().any(|e| e.contains("p3") && e.contains("seats")), "{:?}", c.examples);
        assert!(c.examples.iter().any(|e| e.contains("u-short") && e.contains("20000")), "{:?}", c.examples);
        let c = acknowledged_and_lost(&books, &payments, &[kept]);
        assert!(c.ok, "{c:?}");
    }

    #[test]
    fn fifo_accepts_rounds_in_line_order_and_people_who_left() {
        let tokens = [
            token("p", -5, 1, TokenState::Expired),
            token("a", 1, 1, TokenState::Expired),
            token("left", 2, 0, TokenState::Expired),
            token("b", 3, 2, TokenState::Active),
            token("c", 4, 0, TokenState::Waiting),
        ];
        let c = fifo(&tokens);
        assert!(c.ok, "{c:?}");
        assert_eq!(c.detail, "5 tokens (1 pre-queue), 3 admitted in 2 rounds");
    }

    #[test]
    fn fifo_reports_an_admission_ahead_of_the_line_and_someone_passed_over() {
        let jumped = [token("a", 1, 2, TokenState::Active), token("b", 2, 1, TokenState::Active)];
        let c = fifo(&jumped);
        assert!(!c.ok);
        assert_eq!(c.examples, ["place 2 admitted in round 1, before place 1 (round 2) ahead of it"]);
        let passed_over = [token("a", 1, 0, TokenState::Waiting), token("b", 2, 1, TokenState::Active)];
        let c = fifo(&passed_over);
        assert_eq!(c.examples, ["place 1 is still waiting, behind it place 2 was admitted"]);
    }

    #[test]
    fn join_order_reports_a_later_join_placed_ahead() {
        let tokens = [token("a", 10, 0, TokenState::Waiting), token("b", 11, 0, TokenState::Waiting)];
        // Overlapping joins may commit in either order.
        let overlapping = [trace("a", 0, 5), trace("b", 1, 3)];
        assert!(join_order(&tokens, &overlapping).ok);
        let fine = [trace("a", 0, 1), trace("b", 2, 3)];
        assert!(join_order(&tokens, &fine).ok);
        // b answered before a was sent, yet a stands ahead: broken.
        let broken = [trace("b", 0, 1), trace("a", 2, 3)];
        let c = join_order(&tokens, &broken);
        assert!(!c.ok);
        assert!(c.examples[0].contains("got place 10, behind place 11"), "{c:?}");
        // Pre-queue places are random: not judged.
        let pre = [token("a", -3, 0, TokenState::Waiting), token("b", 11, 0, TokenState::Waiting)];
        assert!(join_order(&pre, &broken).ok);
    }
}
