//! Load generator over real gRPC. Every run creates its own concert, dates and users, so
//! runs never interfere; it needs the queue to admit enough users (set QUEUE_MAX_ACTIVE
//! to at least `--concurrency` + 1 for the benchmark run).
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Args, Subcommand};
use concert_proto::concert::{
    catalog::v1::{CreateConcertRequest, ListSeatsRequest},
    reservation::v1::HoldSeatRequest,
};
use hdrhistogram::Histogram;
use tonic::Code;

use concertctl::clients::{Clients, Session};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
    /// Requests in flight at once (at most: with `--rate`, calls wait for a free slot).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the load is spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Open loop: start this many calls per second, each timed from when it was due (a
    /// server that falls behind shows in the latency; no coordinated omission). Unset:
    /// closed loop, each of `--concurrency` workers calls again as soon as answered.
    #[arg(long)]
    rate: Option<f64>,
    /// End each timed phase after this many seconds, whatever it has left.
    #[arg(long)]
    duration: Option<u64>,
    /// Write every phase's figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
}

/// The load's shape and where its figures go.
struct Driver {
    pool: Vec<Clients>,
    rate: Option<f64>,
    duration: Option<Duration>,
    quiet: bool,
    reports: std::sync::Mutex<Vec<Summary>>,
}

/// One phase's figures, as written with `--json`; latencies in milliseconds.
#[derive(Debug, serde::Serialize)]
struct Summary {
    name: String,
    calls: u64,
    ok: u64,
    errors: Vec<(String, u64)>,
    seconds: f64,
    per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// The opening rush: simulated people join the line, wait, and buy one seat each; then
    /// every invariant is checked (exit 1 on any violation).
    Rush(Box<concertctl::rush::RushArgs>),
    /// HoldSeat on distinct seats (each call must succeed). Seats are spread over enough
    /// users that none holds more than `holds_per_user` (the server's MAX_HOLDS_PER_USER).
    Hold {
        /// Seats to hold (rounded up to whole 50-seat dates).
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Seats each bench user holds; at most the server's MAX_HOLDS_PER_USER.
        #[arg(long, default_value_t = 4)]
        holds_per_user: usize,
    },
    /// Many HoldSeat attempts on ONE seat: exactly one must win.
    HoldOneSeat {
        #[arg(long, default_value_t = 10_000)]
        attempts: usize,
    },
    /// ListSeats of one date, repeatedly, for a fixed time.
    ListSeats {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// PayReservation end to end (reservation → wallet → queue): each of `payments` users
    /// is admitted, charged and holds `seats_per_order` seats beforehand (not timed); then
    /// each user pays for all of them in one order. Needs QUEUE_MAX_ACTIVE ≥ payments +
    /// concurrency, and MAX_HOLDS_PER_USER ≥ seats_per_order.
    Pay {
        #[arg(long, default_value_t = 5_000)]
        payments: usize,
        /// Seats in each payment (1..=25): 1 sends `reservation_id`, more `reservation_ids`.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=25))]
        seats_per_order: u32,
    },
    /// The waiting room: IssueToken for `waiting` new users (timed), then GetQueueStatus of
    /// random ones among them for `seconds`. The run's room admits one person at a time
    /// (its admission policy), so the line really holds that many.
    Queue {
        #[arg(long, default_value_t = 100_000)]
        waiting: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Poll with only this many of the waiting, spread evenly over the join order (default:
        /// everyone). The same number at two line lengths compares the line's cost alone:
        /// per-person caches (verified access tokens, remembered rows) serve both alike.
        #[arg(long)]
        pollers: Option<usize>,
    },
    /// The floor of any call: the standard health check on queue's public port, served by
    /// the same tonic server and HTTP/2 stack as every RPC (without the token check, the
    /// load shedder and tracing, which health checks bypass), for `seconds`.
    Noop {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One hop at a time, to see where the time of the protected calls goes:
    /// ListConcerts (catalog + its DB), ValidateTokens of one token (queue + its DB),
    /// GetOccupancy (reservation + its DB).
    Hops {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

/// Latency and outcome counts of one scenario.
struct Report {
    name: String,
    latency_us: Histogram<u64>,
    ok: u64,
    errors: Vec<(Code, u64)>,
    elapsed: Duration,
}

impl Report {
    fn summary(&self) -> Summary {
        let ms = |us: u64| us as f64 / 1_000.0;
        Summary {
            name: self.name.clone(),
            calls: self.latency_us.len(),
            ok: self.ok,
            errors: self.errors.iter().map(|(c, n)| (format!("{c:?}"), *n)).collect(),
            seconds: self.elapsed.as_secs_f64(),
            per_sec: self.latency_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(self.latency_us.value_at_quantile(0.50)),
            p90_ms: ms(self.latency_us.value_at_quantile(0.90)),
            p99_ms: ms(self.latency_us.value_at_quantile(0.99)),
            max_ms: ms(self.latency_us.max()),
        }
    }

    fn print(&self) {
        let n = self.latency_us.len();
        let rate = n as f64 / self.elapsed.as_secs_f64();
        println!(
            "{}: {n} calls in {:.3} s = {rate:.0}/s | ok {} | errors {:?} | latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            self.name,
            self.elapsed.as_secs_f64(),
            self.ok,
            self.errors,
            self.latency_us.value_at_quantile(0.50) as f64 / 1000.0,
            self.latency_us.value_at_quantile(0.90) as f64 / 1000.0,
            self.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
            self.latency_us.max() as f64 / 1000.0,
        );
    }
}

pub async fn run(clients: &Clients, args: BenchArgs) -> anyhow::Result<()> {
    if let Scenario::Rush(rush) = args.scenario {
        return concertctl::rush::run(clients, *rush).await;
    }
    anyhow::ensure!(args.rate.is_none_or(|r| r > 0.0 && r.is_finite()), "--rate must be > 0");
    let d = Driver {
        pool: (0..args.connections.max(1)).map(|_| clients.reconnect()).collect::<Result<_, _>>()?,
        rate: args.rate,
        duration: args.duration.map(Duration::from_secs),
        quiet: args.quiet,
        reports: std::sync::Mutex::default(),
    };
    let result = scenario(clients, &d, args.scenario, args.concurrency).await;
    if let Some(path) = &args.json {
        let reports = d.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::write(path, serde_json::to_vec_pretty(&*reports)?)?;
        println!("figures written to {}", path.display());
    }
    result
}

async fn scenario(clients: &Clients, d: &Driver, scenario: Scenario, concurrency: usize) -> anyhow::Result<()> {
    let run_id = chrono::Utc::now().format("%H%M%S%3f").to_string();
    let concert_id = clients
        .admin()
        .create_concert(CreateConcertRequest {
            title: format!("bench {run_id}"),
            venue: "loadgen".into(),
            sale_opens_at: None,
        })
        .await?
        .into_inner()
        .concert
        .ok_or_else(|| anyhow::anyhow!("no concert"))?
        .concert_id;
    if let Scenario::Noop { seconds } = scenario {
        return noop(d, concurrency, seconds).await;
    }
    if let Scenario::Queue { waiting, seconds, pollers } = scenario {
        return queue(d, concurrency, &run_id, &concert_id, waiting, seconds, pollers).await;
    }
    // Every bench user holds at most `holds_per_user` seats (the server's hold limit).
    let user_count = match scenario {
        Scenario::Hold { requests, holds_per_user } => {
            concurrency.max(requests.div_ceil(50) * 50 / holds_per_user.max(1) + 1)
        }
        _ => concurrency,
    };
    let tokens = Arc::new(users(clients, &run_id, &concert_id, user_count).await?);
    if let Scenario::Hops { seconds } = scenario {
        return hops(clients, d, concurrency, seconds, &concert_id, &tokens).await;
    }
    match scenario {
        Scenario::Hold { requests, holds_per_user } => {
            let dates = requests.div_ceil(50);
            let schedules = Arc::new(concertctl::seed::schedules(clients, &concert_id, dates).await?);
            let next = Arc::new(AtomicUsize::new(0));
            let total = dates * 50;
            let report = drive(d, concurrency, "HoldSeat distinct seats", move |c, _worker| {
                let (tokens, schedules, next) = (tokens.clone(), schedules.clone(), next.clone());
                async move {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total {
                        return None;
                    }
                    let req = HoldSeatRequest {
                        schedule_id: schedules[k / 50].clone(),
                        seat_number: (k % 50 + 1) as u32,
                        ..Default::default()
                    };
                    let request = tokens[k / holds_per_user.max(1)].request(req).ok()?;
                    Some(c.reservation().hold_seat(request).await.map(|_| ()).map_err(|e| e.code()))
                }
            })
            .await;
            // Every hold made (all of them, unless --duration cut the phase short) succeeded.
            anyhow::ensure!(report.errors.is_empty(), "every distinct-seat hold must succeed, got {:?}", report.errors);
        }
        Scenario::HoldOneSeat { attempts } => {
            let schedule = concertctl::seed::schedules(clients, &concert_id, 1).await?.remove(0);
            let left = Arc::new(AtomicUsize::new(attempts));
            let report = drive(d, concurrency, "HoldSeat one seat", move |c, worker| {
                let (tokens, schedule, left) = (tokens.clone(), schedule.clone(), left.clone());
                async move {
                    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).ok()?;
                    let req = HoldSeatRequest { schedule_id: schedule, seat_number: 1, ..Default::default() };
                    let request = tokens[worker % tokens.len()].request(req).ok()?;
                    Some(c.reservation().hold_seat(request).await.map(|_| ()).map_err(|e| e.code()))
                }
            })
            .await;
            let losers: u64 = report.errors.iter().filter(|(c, _)| *c == Code::AlreadyExists).map(|(_, n)| n).sum();
            anyhow::ensure!(report.ok == 1, "exactly one winner, got {}", report.ok);
            anyhow::ensure!(
                losers == report.latency_us.len() - 1,
                "all others ALREADY_EXISTS, got {:?}",
                report.errors
            );
        }
        Scenario::ListSeats { seconds } => {
            let schedule = concertctl::seed::schedules(clients, &concert_id, 1).await?.remove(0);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let report = drive(d, concurrency, "ListSeats", move |c, worker| {
                let (tokens, schedule) = (tokens.clone(), schedule.clone());
                async move {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    let request =
                        tokens[worker % tokens.len()].request(ListSeatsRequest { schedule_id: schedule }).ok()?;
                    Some(match c.catalog().list_seats(request).await {
                        Ok(r) if r.get_ref().seats.len() == 50 => Ok(()),
                        Ok(_) => Err(Code::DataLoss),
                        Err(e) => Err(e.code()),
                    })
                }
            })
            .await;
            anyhow::ensure!(report.errors.is_empty(), "ListSeats failed: {:?}", report.errors);
        }
        Scenario::Pay { payments, seats_per_order } => {
            let order = usize::try_from(seats_per_order)?;
            pay(clients, d, concurrency, (&concert_id, &run_id), payments, order).await?;
        }
        Scenario::Hops { .. } | Scenario::Queue { .. } | Scenario::Noop { .. } | Scenario::Rush(_) => {
            unreachable!("handled above")
        }
    }
    Ok(())
}

async fn hops(
    clients: &Clients,
    d: &Driver,
    concurrency: usize,
    seconds: u64,
    concert_id: &str,
    tokens: &Arc<Vec<Session>>,
) -> anyhow::Result<()> {
    use concert_proto::concert::{
        catalog::v1::ListConcertsRequest, queue::v1::ValidateTokensRequest, reservation::v1::GetOccupancyRequest,
    };
    let schedule = concertctl::seed::schedules(clients, concert_id, 1).await?.remove(0);
    let secs = Duration::from_secs(seconds);
    let deadline = Instant::now() + secs;
    drive(d, concurrency, "ListConcerts (catalog only)", move |c, _| async move {
        if Instant::now() >= deadline {
            return None;
        }
        Some(c.catalog().list_concerts(ListConcertsRequest::default()).await.map(|_| ()).map_err(|e| e.code()))
    })
    .await;
    let deadline = Instant::now() + secs;
    let t = tokens.clone();
    drive(d, concurrency, "ValidateTokens of one (queue only)", move |c, w| {
        let tokens = vec![t[w % t.len()].token.clone()];
        async move {
            if Instant::now() >= deadline {
                return None;
            }
            Some(
                c.queue_internal()
                    .validate_tokens(ValidateTokensRequest { tokens })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.code()),
            )
        }
    })
    .await;
    let deadline = Instant::now() + secs;
    drive(d, concurrency, "GetOccupancy (reservation only)", move |c, _| {
        let schedule_ids = vec![schedule.clone()];
        async move {
            if Instant::now() >= deadline {
                return None;
            }
            let r = c.reservation_internal().get_occupancy(GetOccupancyRequest { schedule_ids }).await;
            Some(r.map(|_| ()).map_err(|e| e.code()))
        }
    })
    .await;
    Ok(())
}

/// Health checks of queue's public port for `seconds`.
async fn noop(d: &Driver, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let report = drive(d, concurrency, "Health/Check (no-op through the server stack)", move |c, _| async move {
        if Instant::now() >= deadline {
            return None;
        }
        let mut health = HealthClient::new(c.queue_channel());
        Some(health.check(HealthCheckRequest { service: String::new() }).await.map(|_| ()).map_err(|e| e.code()))
    })
    .await;
    anyhow::ensure!(report.errors.is_empty(), "health checks failed: {:?}", report.errors);
    Ok(())
}

/// Set-up (untimed): `n` users, each admitted, charged 200,000 won a seat and holding
/// `order` seats of one date; then the timed part: each user pays for its seats in one
/// order, `concurrency` payments in flight.
async fn pay(
    clients: &Clients,
    d: &Driver,
    concurrency: usize,
    (concert_id, run_id): (&str, &str),
    n: usize,
    order: usize,
) -> anyhow::Result<()> {
    use concert_proto::concert::{reservation::v1::PayReservationRequest, wallet::v1::ChargeRequest};
    use futures::{StreamExt, TryStreamExt};

    let set_up = Instant::now();
    // Each date seats `per_date` orders side by side.
    let per_date = 50 / order;
    let schedules = concertctl::seed::schedules(clients, concert_id, n.div_ceil(per_date)).await?;
    let holds: Vec<(Session, Vec<String>)> = futures::stream::iter(0..n)
        .map(|i| {
            let (c, schedule_id) = (d.pool[i % d.pool.len()].clone(), schedules[i / per_date].clone());
            let concert_id = concert_id.to_owned();
            let user = format!("pay-{run_id}-{i}");
            let first_seat = (i % per_date) * order + 1;
            async move {
                let session = c.active_token(&user, &concert_id, Duration::from_secs(120)).await?;
                let charge = ChargeRequest {
                    user_id: String::new(),
                    amount: 200_000 * i64::try_from(order)?,
                    idempotency_key: format!("{user}-charge"),
                };
                c.wallet().charge(session.request(charge)?).await?;
                let mut ids = Vec::with_capacity(order);
                for seat in first_seat..first_seat + order {
                    let hold = HoldSeatRequest {
                        schedule_id: schedule_id.clone(),
                        seat_number: u32::try_from(seat)?,
                        ..Default::default()
                    };
                    let held = c.reservation().hold_seat(session.request(hold)?).await?.into_inner();
                    ids.push(held.reservation.ok_or_else(|| anyhow::anyhow!("no reservation"))?.reservation_id);
                }
                anyhow::Ok((session, ids))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    println!(
        "set-up: {n} users admitted, charged and holding {order} seat(s) each in {:.1} s",
        set_up.elapsed().as_secs_f64()
    );

    let holds = Arc::new(holds);
    let next = Arc::new(AtomicUsize::new(0));
    let label = if order == 1 {
        "PayReservation end to end".to_owned()
    } else {
        format!("PayReservation end to end, {order} seats an order")
    };
    let report = drive(d, concurrency, &label, move |c, _| {
        let (holds, next) = (holds.clone(), next.clone());
        async move {
            let (session, ids) = holds.get(next.fetch_add(1, Ordering::Relaxed))?;
            let key = format!("bench-{}", ids[0]);
            let pay = match ids.as_slice() {
                [one] => {
                    PayReservationRequest { reservation_id: one.clone(), idempotency_key: key, ..Default::default() }
                }
                _ => PayReservationRequest { reservation_ids: ids.clone(), idempotency_key: key, ..Default::default() },
            };
            let request = session.request(pay).ok()?;
            Some(c.reservation().pay_reservation(request).await.map(|_| ()).map_err(|e| e.code()))
        }
    })
    .await;
    anyhow::ensure!(report.errors.is_empty(), "every payment must succeed, got {:?}", report.errors);
    Ok(())
}

/// IssueToken for `n` new users, then GetQueueStatus polls for `seconds` by `pollers` of
/// them (all by default) spread evenly along the line.
async fn queue(
    d: &Driver,
    concurrency: usize,
    run_id: &str,
    concert_id: &str,
    n: usize,
    seconds: u64,
    pollers: Option<usize>,
) -> anyhow::Result<()> {
    use concert_proto::concert::queue::v1::IssueTokenRequest;
    use std::sync::Mutex;

    // One admitted at a time: the line really holds (nearly) everyone.
    d.pool[0]
        .queue_admin()
        .set_admission_policy(concert_proto::concert::queue::v1::SetAdmissionPolicyRequest {
            concert_id: concert_id.to_owned(),
            max_active: Some(1),
            ..Default::default()
        })
        .await?;
    // Users sign in before the timed part: the load is the joins, not this tool's signing.
    let first = d.pool.first().ok_or_else(|| anyhow::anyhow!("no connections"))?;
    let signed_in: Arc<Vec<Session>> =
        Arc::new((0..n).map(|i| first.sign_in(&format!("line-{run_id}-{i}"))).collect::<anyhow::Result<_>>()?);
    let tokens = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let next = Arc::new(AtomicUsize::new(0));
    let concert = concert_id.to_owned();
    let joined = tokens.clone();
    let report = drive(d, concurrency, "IssueToken (new users)", move |c, _| {
        let (next, joined, concert, signed_in) = (next.clone(), joined.clone(), concert.clone(), signed_in.clone());
        async move {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let session = signed_in.get(i)?;
            let request = session.request(IssueTokenRequest { user_id: String::new(), concert_id: concert }).ok()?;
            Some(match c.queue().issue_token(request).await {
                Ok(r) => {
                    if let Some(status) = r.into_inner().status {
                        let mut session = session.clone();
                        session.token = status.token;
                        joined.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(session);
                    }
                    Ok(())
                }
                Err(e) => Err(e.code()),
            })
        }
    })
    .await;
    anyhow::ensure!(report.errors.is_empty(), "every join must succeed, got {:?}", report.errors);

    let everyone: Arc<Vec<Session>> =
        Arc::new(std::mem::take(&mut *tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner)));
    // Let every replica read the full line once before polling.
    tokio::time::sleep(Duration::from_secs(1)).await;
    match pollers.filter(|&k| k > 0 && k < everyone.len()) {
        Some(k) => {
            let step = everyone.len() / k;
            let some: Vec<Session> = everyone.iter().step_by(step).take(k).cloned().collect();
            // This process keeps only the pollers: a million sessions in its heap would slow
            // its own allocations, and it shares the machine with the server it measures.
            drop(everyone);
            let name = format!("GetQueueStatus ({k} pollers spread over the line)");
            poll(d, concurrency, &name, Arc::new(some), seconds).await
        }
        None => poll(d, concurrency, "GetQueueStatus (users spread over the line)", everyone, seconds).await,
    }
}

/// GetQueueStatus of `tokens` for `seconds`, striding through them by a prime.
async fn poll(
    d: &Driver,
    concurrency: usize,
    name: &str,
    tokens: Arc<Vec<Session>>,
    seconds: u64,
) -> anyhow::Result<()> {
    use concert_proto::concert::queue::v1::GetQueueStatusRequest;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let calls = Arc::new(AtomicUsize::new(0));
    let report = drive(d, concurrency, name, move |c, _| {
        let (tokens, calls) = (tokens.clone(), calls.clone());
        async move {
            if Instant::now() >= deadline {
                return None;
            }
            // Stride through the line by a prime: every part of it is polled.
            let pick = calls.fetch_add(1, Ordering::Relaxed).wrapping_mul(7_919) % tokens.len();
            let session = &tokens[pick];
            let request = session.request(GetQueueStatusRequest { token: session.token.clone() }).ok()?;
            Some(match c.queue().get_queue_status(request).await {
                Ok(r) if r.get_ref().status.as_ref().is_some_and(|s| s.position > 0 || s.state != 1) => Ok(()),
                Ok(_) => Err(tonic::Code::DataLoss),
                Err(e) => Err(e.code()),
            })
        }
    })
    .await;
    anyhow::ensure!(report.errors.is_empty(), "GetQueueStatus failed: {:?}", report.errors);
    Ok(())
}

/// `n` bench users, each admitted (ACTIVE).
async fn users(clients: &Clients, run_id: &str, concert_id: &str, n: usize) -> anyhow::Result<Vec<Session>> {
    use futures::{StreamExt, TryStreamExt};
    // At most 64 users joining at once: set-up, not the measured load.
    futures::stream::iter(0..n)
        .map(|i| clients.active_token_owned(format!("bench-{run_id}-{i}"), concert_id.to_owned()))
        .buffered(64)
        .try_collect()
        .await
}

/// Runs `concurrency` workers, each calling `call` until it returns `None` or the phase's
/// `--duration` is up; with `--rate`, calls start on the open-loop schedule and are timed
/// from when they were due. Prints the phase's figures and keeps them for `--json`.
async fn drive<F, Fut>(d: &Driver, concurrency: usize, name: &str, call: F) -> Report
where
    F: Fn(Clients, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Option<Result<(), Code>>> + Send,
{
    let ok = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    // Marks where the timed part begins, for tools that watch this output
    // (scripts/bench-profile.sh measures CPU and statements from here to the phase's line).
    println!("phase started: {name}");
    let start = Instant::now();
    let deadline = d.duration.map(|t| start + t);
    let rate = d.rate;
    let bar = if d.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let shown = {
        let (bar, calls, ok, name) = (bar.clone(), calls.clone(), ok.clone(), name.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let n = calls.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{name}: {n} calls, {:.0}/s, ok {}",
                    n as f64 / secs,
                    ok.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let workers = (0..concurrency).map(|w| {
        let (call, client, ok, calls) = (call.clone(), d.pool[w % d.pool.len()].clone(), ok.clone(), calls.clone());
        tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
            let mut errors: Vec<(Code, u64)> = Vec::new();
            loop {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                let due = match rate {
                    Some(r) => start + Duration::from_secs_f64(n as f64 / r),
                    None => Instant::now(),
                };
                if deadline.is_some_and(|end| due >= end) {
                    calls.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let Some(result) = call(client.clone(), w).await else {
                    calls.fetch_sub(1, Ordering::Relaxed);
                    break;
                };
                let _ = hist.record(due.elapsed().as_micros() as u64);
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(code) => match errors.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, n)) => *n += 1,
                        None => errors.push((code, 1)),
                    },
                }
            }
            (hist, errors)
        })
    });
    let results = futures::future::join_all(workers).await;
    let elapsed = start.elapsed();
    shown.abort();
    bar.finish_and_clear();
    let mut latency_us = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
    let mut errors: Vec<(Code, u64)> = Vec::new();
    for (hist, errs) in results.into_iter().flatten() {
        let _ = latency_us.add(&hist);
        for (code, n) in errs {
            match errors.iter_mut().find(|(c, _)| *c == code) {
                Some((_, m)) => *m += n,
                None => errors.push((code, n)),
            }
        }
    }
    let report = Report { name: name.into(), latency_us, ok: ok.load(Ordering::Relaxed), errors, elapsed };
    report.print();
    d.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(report.summary());
    report
}
