//! `concertctl bench rush`: the opening rush, reproduced against the running suite.
//!
//! Simulated people (one task each) arrive open-loop at `--arrival-rate` per second (or all
//! at once), join the concert's waiting room before or after the sale opens, wait in line,
//! and once admitted buy one seat each (see [`person`] and [`shop`]). Progress is shown live;
//! the report gives per RPC the rate, latency percentiles (HDR histograms, measured from
//! when each call was due, so a generator that falls behind does not hide latency) and
//! status codes, and per second the line's length, admissions and p99. Afterwards the
//! invariants are checked ([`checks`]); any violation fails the run.
mod acks;
mod checks;
mod person;
mod plot;
mod report;
mod shop;
mod stats;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use clap::Args;
use concert_proto::concert::{
    catalog::v1::CreateConcertRequest,
    queue::v1::{GetRoomStatsRequest, SetAdmissionPolicyRequest},
};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::StdRng};

pub use report::RushReport;

use self::{
    person::{Abandon, Ctx, Gauges, Person},
    stats::Rpc,
};
use crate::clients::{Clients, Endpoints};

/// How long a person's call may take before they give up on it and try again: the booking
/// page's deadline (web/src/api.ts). A shorter one would make people retry work the suite is
/// still doing, and the rush a retry storm of the generator's own making.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Options of `concertctl bench rush`.
#[derive(Debug, Clone, Args)]
pub struct RushArgs {
    /// People in the rush.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    pub users: u64,
    /// Seats on sale, created for this run: ⌈seats / 50⌉ dates of 50 seats.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub seats: u64,
    /// Most seats one person buys together, in one payment (each person wants 1..=this, at
    /// random; the server's MAX_HOLDS_PER_USER bounds it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub seats_per_person: u32,
    /// People arriving per second (open loop, evenly spaced); 0: everyone at once.
    #[arg(long, default_value_t = 0.0)]
    pub arrival_rate: f64,
    /// Seconds from the start until the sale opens: earlier arrivals wait in the pre-queue
    /// (admitted in random order, ahead of later joins). 0: on sale at once.
    #[arg(long, default_value_t = 0.0)]
    pub opens_in: f64,
    /// Next picks each try to hold a seat names besides the seat wanted
    /// (HoldSeatRequest.alternative_seat_numbers, at most 10): chosen the same way, popular
    /// seats first, from the same map. The server holds the first free one, so a person who
    /// loses the race for a seat gets their next pick without another call. 0: one seat per
    /// call, the person tries the next after each refusal.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10))]
    pub seat_alternatives: u64,
    /// Each try to hold a seat also asks for the best available (HoldSeatRequest.best_available):
    /// when every seat named is taken, the server holds the free seat of the wanted seat's
    /// grade nearest the front, spreading a crowd over the free seats. The person still
    /// picks popular seats first; the box office resolves the collisions. Refused, the
    /// person strikes that grade off the map (the server's answer is fresher than the map)
    /// and asks for the next one, as a buyer pressing the page's "Best <grade>" buttons.
    #[arg(long)]
    pub best_available: bool,
    /// Share of people (0..=1) who abandon: a third each in line, at the seat map, and
    /// holding a seat (which then runs out on its own).
    #[arg(long, default_value_t = 0.05)]
    pub abandon: f64,
    /// Think time in milliseconds between a person's steps once admitted (each pause
    /// uniform in 0.5×..1.5×); 0: as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
    /// Poll GetQueueStatus every this many milliseconds instead of watching the line with
    /// WatchQueue (0: WatchQueue, falling back to polling at the server's pace,
    /// `poll_after_seconds`, when refused, as the booking page does).
    #[arg(long, default_value_t = 0)]
    pub poll_ms: u64,
    /// Poll GetQueueStatus at the server's pace (`poll_after_seconds`, with ±10 % jitter)
    /// instead of watching the line with WatchQueue.
    #[arg(long, conflicts_with = "poll_ms")]
    pub poll: bool,
    /// The run's room admits at most this many people at once (its admission policy).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_active: u64,
    /// The room admits at most this many people per second; 0: as slots free up.
    #[arg(long, default_value_t = 0)]
    pub admit_per_sec: u64,
    /// Seconds an admitted person may shop before their token expires.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub active_ttl_secs: u64,
    /// Stop after this many seconds even if seats are left.
    #[arg(long, default_value_t = 300)]
    pub duration: u64,
    /// Replicas to spread the load over: `SERVICE=URL[,URL…]` (service: queue, catalog,
    /// reservation, wallet; public ports), repeatable. Each call goes to the next replica
    /// (round-robin per call, as Envoy sends the booking page's calls).
    #[arg(long = "targets", value_name = "SERVICE=URLS")]
    pub targets: Vec<String>,
    /// HTTP/2 connections (per service) the people share; 0: one per 250 people, 4..=400.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Log every try of a write (HoldSeat, Charge, PayReservation) and its answer here, one
    /// JSON line each (what an acknowledged one did included): the client's record of what it
    /// was told, which the checks compare with the books.
    #[arg(long)]
    pub ack_log: Option<std::path::PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Draw line length, admissions, payments and p99 over time here (*.svg or *.png).
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Seed of every random choice (who abandons, which seat, think times).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not show live progress.
    #[arg(long)]
    pub quiet: bool,
    /// The queue replica's process id on this machine: its resident memory is sampled once a
    /// second and reported per waiting person (`scripts/bench-rush.sh` passes it).
    #[arg(long)]
    pub queue_pid: Option<u32>,
}

/// Runs the rush, prints and writes its report; fails on any broken invariant.
///
/// # Errors
/// When the run cannot be set up or an invariant is broken.
pub async fn run(clients: &Clients, args: RushArgs) -> anyhow::Result<()> {
    let report = rush(clients, &args).await?;
    print!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        println!("report written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot::draw(&report, path)?;
        println!("plot written to {}", path.display());
    }
    anyhow::ensure!(report.violations.is_empty(), "{} invariants broken", report.violations.len());
    Ok(())
}

/// The connections the people share: each one a set of clients of one replica per service.
fn pool(clients: &Clients, args: &RushArgs) -> anyhow::Result<Vec<Clients>> {
    let mut endpoints: Endpoints = clients.endpoints.clone();
    let mut lists: [(&str, Vec<String>); 4] = [
        ("queue", vec![endpoints.queue_url.clone()]),
        ("catalog", vec![endpoints.catalog_url.clone()]),
        ("reservation", vec![endpoints.reservation_url.clone()]),
        ("wallet", vec![endpoints.wallet_url.clone()]),
    ];
    for target in &args.targets {
        let (service, urls) = target
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--targets {target:?}: expected SERVICE=URL[,URL…]"))?;
        let list = lists.iter_mut().find(|(name, _)| *name == service).ok_or_else(|| {
            anyhow::anyhow!("--targets {target:?}: unknown service {service:?} (queue, catalog, reservation, wallet)")
        })?;
        list.1 = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect();
        anyhow::ensure!(!list.1.is_empty(), "--targets {target:?}: no URL");
    }
    let n = if args.connections > 0 { args.connections } else { (args.users as usize / 250).clamp(4, 400) };
    // Every set of channels reaches every replica listed, one call to the next: people are
    // not pinned to a replica, as the booking page is not behind Envoy. Pinned, the people
    // on a replica a crowd had slowed kept losing the races for the front seats to those on
    // the other, stayed in the room retrying, and so kept it slow (one replica answered 20x
    // the refused holds of the other in the same run: docs/BENCHMARKS.md).
    endpoints.queue_url = lists[0].1.join(",");
    endpoints.catalog_url = lists[1].1.join(",");
    endpoints.reservation_url = lists[2].1.join(",");
    endpoints.wallet_url = lists[3].1.join(",");
    (0..n).map(|_| endpoints.connect_with_timeout(CALL_TIMEOUT)).collect()
}

/// Worker threads of the generator's lane for admitted people (see [`person::ShopLane`]).
const SHOP_THREADS: usize = 2;

/// Creates the run's concert (with its sale opening), dates and room policy.
async fn set_up(clients: &Clients, args: &RushArgs, run_id: &str) -> anyhow::Result<(String, Vec<String>)> {
    let opens = (args.opens_in > 0.0)
        .then(|| chrono::Utc::now() + chrono::Duration::milliseconds((args.opens_in * 1_000.0) as i64));
    let concert = clients
        .admin()
        .create_concert(CreateConcertRequest {
            title: format!("rush {run_id}"),
            venue: "loadgen".into(),
            sale_opens_at: opens.map(platform::convert::timestamp),
        })
        .await?
        .into_inner()
        .concert
        .ok_or_else(|| anyhow::anyhow!("CreateConcert returned no concert"))?;
    let schedules = crate::seed::schedules(clients, &concert.concert_id, args.seats.div_ceil(50) as usize).await?;
    clients
        .queue_admin()
        .set_admission_policy(SetAdmissionPolicyRequest {
            concert_id: concert.concert_id.clone(),
            max_active: Some(args.max_active),
            admit_per_sec: Some(args.admit_per_sec),
            active_ttl_seconds: Some(args.active_ttl_secs),
        })
        .await?;
    Ok((concert.concert_id, schedules))
}

/// The people, signed in before the clock starts (signing is this tool's cost, not the
/// suite's), with their arrival times and who abandons where.
async fn people(clients: &Clients, args: &RushArgs, run_id: &str) -> anyhow::Result<Vec<Person>> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let plans: Vec<(usize, Option<Abandon>)> = (0..args.users as usize)
        .map(|i| {
            let abandon = rng.random_bool(args.abandon.clamp(0.0, 1.0)).then(|| match rng.random_range(0..3) {
                0 => Abandon::InLine,
                1 => Abandon::AtSeatMap,
                _ => Abandon::WithHold,
            });
            (i, abandon)
        })
        .collect();
    let rate = args.arrival_rate;
    let minter = clients.minter()?.clone();
    let run_id = run_id.to_owned();
    // Two signing threads: this machine's two cores.
    let halves: Vec<_> = plans
        .chunks(plans.len().div_ceil(2).max(1))
        .map(|chunk| {
            let (chunk, minter, run_id) = (chunk.to_vec(), minter.clone(), run_id.clone());
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|(index, abandon)| {
                        let user = format!("rush-{run_id}-{index}");
                        let session = crate::clients::Session {
                            access_token: minter.access_token(&user, Duration::from_secs(3_600))?,
                            token: String::new(),
                            pass: String::new(),
                        };
                        let arrival =
                            if rate > 0.0 { Duration::from_secs_f64(index as f64 / rate) } else { Duration::ZERO };
                        Ok(Person { index, user, session, arrival, abandon })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
        })
        .collect();
    let mut people = Vec::with_capacity(plans.len());
    for half in halves {
        people.extend(half.await??);
    }
    Ok(people)
}

/// The rush itself, then the checks; the report says what happened and what broke.
///
/// # Errors
/// When the run cannot be set up (the services are down, bad options).
pub async fn rush(clients: &Clients, args: &RushArgs) -> anyhow::Result<RushReport> {
    anyhow::ensure!((0.0..=1.0).contains(&args.abandon), "--abandon must be within 0..=1, got {}", args.abandon);
    anyhow::ensure!(args.arrival_rate >= 0.0 && args.arrival_rate.is_finite(), "--arrival-rate must be ≥ 0");
    anyhow::ensure!(args.opens_in >= 0.0 && args.opens_in.is_finite(), "--opens-in must be ≥ 0");
    let run_id = chrono::Utc::now().format("%m%d%H%M%S%3f").to_string();
    let pool = pool(clients, args)?;
    // People first (signing 100,000 access tokens takes seconds), then the concert: the sale
    // opens `--opens-in` after the concert is made, so only the set-up's few calls stand
    // between it and the first arrival.
    let people = people(clients, args, &run_id).await?;
    let (concert_id, schedules) = set_up(clients, args, &run_id).await?;
    let seats = args.seats.div_ceil(50) * 50;

    let shop_clients = clients.clone();
    let shop_args = args.clone();
    let shop = person::ShopLane::start(SHOP_THREADS, move || self::pool(&shop_clients, &shop_args)).await?;
    let start = Instant::now();
    let cpu_at_start = process_cpu();
    let ctx = Arc::new(Ctx {
        pool,
        shop,
        recorder: stats::Recorder::new(start),
        gauges: Gauges::default(),
        concert_id: concert_id.clone(),
        think: Duration::from_millis(args.think_ms),
        waiting: match (args.poll, args.poll_ms) {
            (true, _) => person::Waiting::PollAtServerPace,
            (false, 0) => person::Waiting::Watch,
            (false, ms) => person::Waiting::PollEvery(Duration::from_millis(ms)),
        },
        deadline: start + Duration::from_secs(args.duration),
        sold_out: tokio::sync::watch::Sender::new(false),
        seed: args.seed,
        seats_per_person: args.seats_per_person,
        seat_alternatives: usize::try_from(args.seat_alternatives).unwrap_or(0),
        best_available: args.best_available,
        acks: args.ack_log.as_deref().map(acks::AckLog::create).transpose()?,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for person in people {
        tasks.spawn(person.live(ctx.clone()));
    }
    let watcher = tokio::spawn(watch(clients.clone(), ctx.clone(), seats, args.users, args.quiet, args.queue_pid));
    let mut traces = Vec::with_capacity(args.users as usize);
    while let Some(done) = tasks.join_next().await {
        traces.push(done?);
    }
    let elapsed = start.elapsed();
    let generator_cpu = process_cpu().saturating_sub(cpu_at_start);
    let sell_out = watcher.await?;
    if let Some(log) = &ctx.acks {
        log.finish()?;
    }
    let (rpcs, timeline) = ctx.recorder.finish(elapsed);
    let checks = checks::run(clients, &concert_id, &schedules, &traces).await?;
    Ok(RushReport::new(args, seats, elapsed, generator_cpu, sell_out, &traces, &rpcs, &timeline, checks))
}

/// The resident memory of process `pid`, KiB (`VmRSS` of `/proc/<pid>/status`); `None` when
/// it cannot be read.
fn resident_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time this process has used, all threads.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// One sample of the line, from the operator's API on the internal port: the public one
/// refuses calls while the flood is on (by design), and the line's length would go
/// unrecorded. Every 5 s, not every second: each answer counts the room's tokens in
/// PostgreSQL (~96 ms of it at 80,000 in line), and once a second that was 17 s of the
/// database in a 210 s flood, taken from the sale being measured. The call is recorded as
/// `GetRoomStats`, so a sample that was refused or timed out shows in the report.
async fn sample_line(clients: Clients, ctx: Arc<Ctx>) {
    let t = Instant::now();
    let asked = clients.queue_admin().get_room_stats(GetRoomStatsRequest { concert_id: ctx.concert_id.clone() }).await;
    if let Ok(Some(s)) = person::rec(&ctx, Rpc::GetRoomStats, t, asked).map(|r| r.into_inner().stats) {
        // waiting_count counts the pre-queue already (pre_queue_count is the part of it
        // before the opening).
        ctx.recorder.line(s.waiting_count, s.active_count);
    }
}

/// Shows progress, samples the line every 5 s and the queue's memory every second, and
/// declares the sell-out once every seat is paid for. Returns when every person is done,
/// with the time the seats sold out.
async fn watch(
    clients: Clients,
    ctx: Arc<Ctx>,
    seats: u64,
    users: u64,
    quiet: bool,
    queue_pid: Option<u32>,
) -> Option<Duration> {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(seats) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} seats sold  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let plain = !quiet && bar.is_hidden();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut sell_out = None;
    let mut sample: Option<tokio::task::JoinHandle<()>> = None;
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let g = &ctx.gauges;
        let paid = g.paid.load(Ordering::Relaxed);
        if sell_out.is_none() && paid >= seats {
            sell_out = Some(ctx.recorder.start.elapsed());
            ctx.sold_out.send_replace(true);
        }
        // The line every 5 s (see `sample_line`), off this loop, so that a slow answer never
        // delays the sell-out's detection; a sample still out when the next is due is not
        // doubled.
        if n.is_multiple_of(20) && sample.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            sample = Some(tokio::spawn(sample_line(clients.clone(), ctx.clone())));
        }
        if n.is_multiple_of(4)
            && let Some(kb) = queue_pid.and_then(resident_kb)
        {
            ctx.recorder.queue_memory(kb);
        }
        let msg = format!(
            "waiting {} | admitted {} | holding {} | paid {} | seats left {} | errors {} | done {}/{users}",
            g.waiting.load(Ordering::Relaxed),
            g.admitted.load(Ordering::Relaxed),
            g.holding.load(Ordering::Relaxed),
            paid,
            seats.saturating_sub(paid),
            g.errors.load(Ordering::Relaxed),
            g.done.load(Ordering::Relaxed),
        );
        bar.set_position(paid.min(seats));
        if plain && n.is_multiple_of(20) {
            eprintln!("rush {:>5.1} s: {msg}", ctx.recorder.start.elapsed().as_secs_f64());
        }
        bar.set_message(msg);
        if g.done.load(Ordering::Relaxed) >= users {
            bar.finish();
            return sell_out;
        }
    }
}
