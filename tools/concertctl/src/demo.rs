//! The demo journey: join → admitted → dates → seats → hold → charge → pay → sold.
use std::time::Duration;

use concert_proto::concert::{
    catalog::v1::{ListAvailableDatesRequest, ListSeatsRequest, SeatStatus},
    queue::v1::{GetQueueStatusRequest, IssueTokenRequest, LeaveQueueRequest},
    reservation::v1::{HoldSeatRequest, PayReservationRequest},
    wallet::v1::ChargeRequest,
};

use concertctl::clients::Clients;

fn ts(t: Option<&concert_proto::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0)).map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

pub async fn run(clients: &Clients) -> anyhow::Result<()> {
    let user = format!("demo-{}", chrono::Utc::now().format("%H%M%S%3f"));
    let step = |n: u32, text: String| println!("[{n}/9] {text}");

    let concerts = clients.all_concerts().await?;
    anyhow::ensure!(!concerts.is_empty(), "no concerts: run `concertctl seed` first");
    // The first concert with a free seat, preferring the seeded ones over benchmark leftovers.
    // Seat counts are protected, so each candidate's waiting room is joined to look.
    let mut candidates: Vec<_> = concerts.iter().filter(|c| c.sale_opens_at.is_none()).collect();
    candidates.sort_by_key(|c| c.title.starts_with("bench "));
    let (concert, joined, session, dates) = choose_concert(clients, &user, candidates).await?;
    step(
        1,
        format!(
            "{user} signs in (access token for sub={user}) and joins the waiting room of {:?} at {} ({} concerts on sale): token {} (position {}, {} waiting)",
            concert.title,
            concert.venue,
            concerts.len(),
            joined.token,
            joined.position,
            joined.waiting_count
        ),
    );
    let status = clients
        .queue()
        .get_queue_status(session.request(GetQueueStatusRequest { token: session.token.clone() })?)
        .await?
        .into_inner()
        .status
        .ok_or_else(|| anyhow::anyhow!("no status"))?;
    step(2, format!("admitted: token is ACTIVE until {}", ts(status.expires_at.as_ref())));
    step(3, format!("the token unlocks this concert only (concert {})", concert.concert_id));
    let summary: Vec<String> = dates
        .iter()
        .take(3)
        .map(|d| format!("{} ({}/{} free)", ts(d.starts_at.as_ref()), d.available_seats, d.total_seats))
        .collect();
    let more = if dates.len() > 3 { format!(" and {} more", dates.len() - 3) } else { String::new() };
    step(4, format!("available dates: {}{more}", summary.join(", ")));
    let date = dates.iter().find(|d| d.available_seats > 0).ok_or_else(|| anyhow::anyhow!("sold out"))?;

    let held = hold_a_seat(clients, &session, &date.schedule_id, step).await?;

    charge_and_pay(clients, &user, &session, &held, step).await?;

    let (shown, refused) = after_the_sale(clients, &user, &concert.concert_id, &session, &held).await?;
    step(
        9,
        format!(
            "another user now sees seat {} as {shown}; HoldSeat with the paid token is {refused}",
            held.seat_number
        ),
    );
    Ok(())
}

type Session = concertctl::clients::Session;

/// The first candidate concert with a free seat: joins each one's waiting room to look (seat
/// counts are protected), leaving the ones that are sold out. The concert, the join's status,
/// the admitted session and its dates.
async fn choose_concert<'c>(
    clients: &Clients,
    user: &str,
    candidates: Vec<&'c concert_proto::concert::catalog::v1::Concert>,
) -> anyhow::Result<(
    &'c concert_proto::concert::catalog::v1::Concert,
    concert_proto::concert::queue::v1::QueueStatus,
    Session,
    Vec<concert_proto::concert::catalog::v1::Schedule>,
)> {
    let signed_in = clients.sign_in(user)?;
    let mut chosen = None;
    for concert in candidates {
        let joined = clients
            .queue()
            .issue_token(
                signed_in
                    .request(IssueTokenRequest { user_id: String::new(), concert_id: concert.concert_id.clone() })?,
            )
            .await?
            .into_inner()
            .status
            .ok_or_else(|| anyhow::anyhow!("no status"))?;
        let session = clients.active_token(user, &concert.concert_id, Duration::from_secs(60)).await?;
        let dates = clients
            .catalog()
            .list_available_dates(
                session.request(ListAvailableDatesRequest { concert_id: concert.concert_id.clone() })?,
            )
            .await?
            .into_inner()
            .schedules;
        if dates.iter().any(|d| d.available_seats > 0) {
            chosen = Some((concert, joined, session, dates));
            break;
        }
        clients.queue().leave_queue(session.request(LeaveQueueRequest { token: session.token.clone() })?).await?;
    }
    chosen.ok_or_else(|| anyhow::anyhow!("every concert is sold out"))
}

/// Steps 5 and 6: the date's seat map, and a hold on its first free seat.
async fn hold_a_seat(
    clients: &Clients,
    session: &Session,
    schedule_id: &str,
    step: impl Fn(u32, String),
) -> anyhow::Result<concert_proto::concert::reservation::v1::Reservation> {
    let seats = clients
        .catalog()
        .list_seats(session.request(ListSeatsRequest { schedule_id: schedule_id.to_owned() })?)
        .await?
        .into_inner()
        .seats;
    let free: Vec<_> = seats.iter().filter(|s| s.status == SeatStatus::Available as i32).collect();
    let seat = free.first().ok_or_else(|| anyhow::anyhow!("no free seat"))?;
    step(
        5,
        format!(
            "{} seats, {} available; choosing seat {} ({}, {} won)",
            seats.len(),
            free.len(),
            seat.seat_number,
            seat.grade,
            seat.price
        ),
    );

    let held = clients
        .reservation()
        .hold_seat(session.request(HoldSeatRequest {
            schedule_id: schedule_id.to_owned(),
            seat_number: seat.seat_number,
            ..Default::default()
        })?)
        .await?
        .into_inner()
        .reservation
        .ok_or_else(|| anyhow::anyhow!("no reservation"))?;
    step(
        6,
        format!(
            "seat {} HELD: reservation {} until {}",
            held.seat_number,
            held.reservation_id,
            ts(held.expires_at.as_ref())
        ),
    );

    Ok(held)
}

/// After the sale: how another user sees the seat, and what HoldSeat answers the paid token.
async fn after_the_sale(
    clients: &Clients,
    user: &str,
    concert_id: &str,
    session: &Session,
    held: &concert_proto::concert::reservation::v1::Reservation,
) -> anyhow::Result<(&'static str, String)> {
    let refused = clients
        .reservation()
        .hold_seat(session.request(HoldSeatRequest {
            schedule_id: held.schedule_id.clone(),
            seat_number: held.seat_number,
            ..Default::default()
        })?)
        .await
        .err()
        .map_or_else(|| "still accepted (unexpected)".to_owned(), |e| format!("refused with {:?}", e.code()));
    let viewer = clients.active_token(&format!("{user}-viewer"), concert_id, Duration::from_secs(60)).await?;
    // Seat maps may lag by twice SEAT_STATUS_CACHE_MS (100 ms by default): look as a browser's
    // next poll would, for at most a second.
    let mut shown = "?";
    for _ in 0..20 {
        let now = clients
            .catalog()
            .list_seats(viewer.request(ListSeatsRequest { schedule_id: held.schedule_id.clone() })?)
            .await?
            .into_inner()
            .seats;
        shown = now
            .iter()
            .find(|s| s.seat_number == held.seat_number)
            .and_then(|s| SeatStatus::try_from(s.status).ok())
            .map_or("?", |s| s.as_str_name());
        if shown == SeatStatus::Sold.as_str_name() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((shown, refused))
}

/// Steps 7 and 8: a top-up, and the payment for `held`.
async fn charge_and_pay(
    clients: &Clients,
    user: &str,
    session: &Session,
    held: &concert_proto::concert::reservation::v1::Reservation,
    step: impl Fn(u32, String),
) -> anyhow::Result<()> {
    let charged = clients
        .wallet()
        .charge(session.request(ChargeRequest {
            user_id: String::new(),
            amount: 200_000,
            idempotency_key: format!("{user}-topup"),
        })?)
        .await?
        .into_inner();
    step(7, format!("charged 200000 won: balance {} won", charged.balance));

    let paid = clients
        .reservation()
        .pay_reservation(session.request(PayReservationRequest {
            reservation_id: held.reservation_id.clone(),
            idempotency_key: String::new(),
            ..Default::default()
        })?)
        .await?
        .into_inner();
    let payment = paid.payment.ok_or_else(|| anyhow::anyhow!("no payment"))?;
    step(
        8,
        format!(
            "paid {} won (payment {}): reservation CONFIRMED, balance now {} won",
            payment.amount, payment.payment_id, paid.balance_after
        ),
    );

    Ok(())
}
