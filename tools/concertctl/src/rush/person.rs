//! One person's journey through the rush: join the line, wait (WatchQueue, or polling as a
//! page without streams would), and once admitted: dates → seat map → hold (popular seats
//! first; on ALREADY_EXISTS another) → charge if short → pay. Some abandon on the way.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backon::{ExponentialBuilder, Retryable};
use concert_proto::concert::queue::v1::{
    GetQueueStatusRequest, IssueTokenRequest, LeaveQueueRequest, TokenState, WatchQueueRequest,
};
use futures::StreamExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tonic::{Code, Status};

use super::stats::{Recorder, Rpc};
use crate::clients::{Clients, Session};

/// Where a person gives up, if they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandon {
    /// Leaves the line after a while, before admission.
    InLine,
    /// Looks at the seat map and leaves.
    AtSeatMap,
    /// Holds a seat and walks away without paying (the hold runs out on its own).
    WithHold,
}

/// How a person's journey ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum End {
    Paid,
    Abandoned,
    /// Every seat was sold: the waiting room said so (`sold_out`), or once admitted every
    /// seat was sold (or held) whenever they looked.
    SoldOut,
    /// The run's time was up first.
    OutOfTime,
    /// A call failed in a way the journey cannot go on from (counted by status in the report).
    Failed,
    /// The token expired while its person was still waiting or shopping.
    TokenExpired,
}

/// What a person did, for the invariants afterwards.
#[derive(Debug, Clone)]
pub struct Trace {
    pub user: String,
    pub token: String,
    /// When IssueToken was sent and when its answer came, since the run's start.
    pub join_sent: Duration,
    pub join_answered: Duration,
    pub left: bool,
    pub admitted: bool,
    /// Won charged successfully.
    pub charged: i64,
    /// The seats paid for (one payment), each with its price.
    pub bought: Vec<(String, u32, i64)>,
    /// A charge (won) whose answer never came (every try failed transiently): it may or may
    /// not have been made.
    pub charge_unknown: i64,
    /// A payment (its seats and prices) whose answer never came: it may or may not have been
    /// made.
    pub pay_unknown: Vec<(String, u32, i64)>,
    /// The payment answered OK, by id.
    pub payment_id: Option<String>,
    pub end: End,
}

/// People in each stage right now, for the progress line.
#[derive(Debug, Default)]
pub struct Gauges {
    pub waiting: AtomicU64,
    pub admitted: AtomicU64,
    pub holding: AtomicU64,
    pub paid: AtomicU64,
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

/// What every person shares.
#[derive(Debug)]
pub struct Ctx {
    /// The line's channels (joins, polls, streams, leaves), on the line's runtime.
    pub pool: Vec<Clients>,
    /// The admitted part of every journey runs here: a runtime (threads) and channels
    /// (connections) of its own, see [`ShopLane`].
    pub shop: ShopLane,
    pub recorder: Recorder,
    pub gauges: Gauges,
    pub concert_id: String,
    pub think: Duration,
    /// How people wait in line.
    pub waiting: Waiting,
    pub deadline: Instant,
    /// True once every seat of the run is sold: people still in line leave. A watch, so
    /// that people waiting on streams sleep until a message, their patience's end or this,
    /// rather than waking to look twice a second (50,000 streams looking twice a second were
    /// 100,000 timer wake-ups a second of the generator's CPU, taken from the suite it
    /// measures).
    pub sold_out: tokio::sync::watch::Sender<bool>,
    pub seed: u64,
    /// Most seats one person buys together (each person wants 1..=this, at random).
    pub seats_per_person: u32,
    /// Next picks a person names with each seat they try to hold (`--seat-alternatives`).
    pub seat_alternatives: usize,
    /// Each hold also asks for the best available of the wanted seat's grade (`--best-available`).
    pub best_available: bool,
    /// Every write's tries and answers, when asked for (`--ack-log`).
    pub acks: Option<super::acks::AckLog>,
}

impl Ctx {
    /// Logs a try of a write, when the run keeps an acknowledgement log; the entry is built
    /// only then (a run without a log allocates nothing per call).
    pub(super) fn ack<'a>(&self, rpc: Rpc, code: Code, ack: impl FnOnce() -> super::acks::Ack<'a>) {
        if let Some(log) = &self.acks {
            log.record(rpc, code, &ack());
        }
    }
}

/// The generator's lane for admitted people. A hundred thousand people in line (their
/// joins, polls, streams and timers) share the generator's runtime; an admitted person's
/// calls queued behind them in its run queues and connection tasks, so the report timed the
/// generator's backlog as the admitted path's latency (ListSeats answered in ~1 ms by the
/// catalog, ~340 ms at the median as the generator saw it, docs/BENCHMARKS.md). Real buyers
/// each have a browser of their own; here the admitted journeys get threads and connections
/// of their own, the generator's version of the suite's lanes for admitted people.
#[derive(Debug)]
pub struct ShopLane {
    /// The lane's runtime: dropped with the lane, in the background (it is dropped from
    /// async code).
    runtime: Option<tokio::runtime::Runtime>,
    /// Channels made on the lane's runtime, so their connection tasks run there.
    pub pool: Vec<Clients>,
}

impl ShopLane {
    /// A runtime of `threads` workers and `make_pool()`'s channels, made on it.
    ///
    /// # Errors
    /// When the runtime cannot start or the channels cannot be made.
    pub async fn start(
        threads: usize,
        make_pool: impl FnOnce() -> anyhow::Result<Vec<Clients>> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("rush-shop")
            .enable_all()
            .build()?;
        let pool = runtime.spawn(async move { make_pool() }).await??;
        Ok(Self { runtime: Some(runtime), pool })
    }

    /// Runs `work` on the lane and waits for it from the caller's runtime.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.runtime.as_ref()?.spawn(work).await.ok()
    }
}

impl Drop for ShopLane {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How a person waits in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// A WatchQueue stream; polling at the server's pace when it is refused or breaks.
    Watch,
    /// GetQueueStatus every `poll_after_seconds` the last answer asked for (±10 % jitter).
    PollAtServerPace,
    /// GetQueueStatus on a fixed schedule, whatever the server asks.
    PollEvery(Duration),
}

/// One simulated person.
#[derive(Debug, Clone)]
pub struct Person {
    pub index: usize,
    pub user: String,
    pub session: Session,
    /// When they arrive, from the run's start (the open-loop schedule).
    pub arrival: Duration,
    pub abandon: Option<Abandon>,
}

/// Calls that may be retried with the same idempotency key: the call may not have reached
/// the server, the server could not finish it, or this client stopped waiting (tonic
/// reports its own timeout as CANCELLED).
pub(super) fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
    )
}

/// A failed call's status, recorded.
pub(super) fn rec<T>(ctx: &Ctx, rpc: Rpc, t: Instant, r: Result<T, Status>) -> Result<T, Status> {
    ctx.recorder.call(rpc, t, r.as_ref().map_or_else(Status::code, |_| Code::Ok));
    if r.is_err() {
        ctx.gauges.errors.fetch_add(1, Ordering::Relaxed);
    }
    r
}

impl Person {
    /// Lives the journey; never fails (failures are the journey's end).
    pub async fn live(self, ctx: Arc<Ctx>) -> Trace {
        let mut rng = StdRng::seed_from_u64(ctx.seed ^ (self.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let c = &ctx.pool[self.index % ctx.pool.len()];
        let mut trace = Trace {
            user: self.user.clone(),
            token: String::new(),
            join_sent: Duration::ZERO,
            join_answered: Duration::ZERO,
            left: false,
            admitted: false,
            charged: 0,
            bought: Vec::new(),
            charge_unknown: 0,
            pay_unknown: Vec::new(),
            payment_id: None,
            end: End::Failed,
        };
        let due = ctx.recorder.start + self.arrival;
        tokio::time::sleep_until(due.into()).await;
        trace.end = match self.journey(&ctx, c, &mut rng, &mut trace, due).await {
            Ok(end) | Err(end) => end,
        };
        ctx.gauges.done.fetch_add(1, Ordering::Relaxed);
        trace
    }

    async fn journey(
        &self,
        ctx: &Arc<Ctx>,
        c: &Clients,
        rng: &mut StdRng,
        trace: &mut Trace,
        due: Instant,
    ) -> Result<End, End> {
        let mut session = self.session.clone();
        let status = self.join(ctx, c, rng, trace, due).await?;
        trace.token.clone_from(&status.token);
        session.token = status.token.clone();
        ctx.gauges.waiting.fetch_add(1, Ordering::Relaxed);
        let patience =
            (self.abandon == Some(Abandon::InLine)).then(|| Duration::from_millis(rng.random_range(0..10_000)));
        let waited = self.wait(ctx, c, &session, &status, patience).await;
        ctx.gauges.waiting.fetch_sub(1, Ordering::Relaxed);
        match waited {
            Wait::Admitted(pass) => session.pass = pass,
            Wait::Gone(end) => {
                if end != End::TokenExpired {
                    trace.left = self.leave(ctx, c, &session).await;
                }
                return Err(end);
            }
        }
        trace.admitted = true;
        ctx.recorder.admitted();
        ctx.gauges.admitted.fetch_add(1, Ordering::Relaxed);
        let end = self.shop_in_lane(ctx, rng, &session, trace).await;
        ctx.gauges.admitted.fetch_sub(1, Ordering::Relaxed);
        if !matches!(end, End::Paid | End::TokenExpired) {
            trace.left = self.leave(ctx, c, &session).await;
        }
        Ok(end)
    }

    /// [`Person::shop`] on the admitted lane ([`ShopLane`]), with the lane's channels.
    async fn shop_in_lane(&self, ctx: &Arc<Ctx>, rng: &mut StdRng, session: &Session, trace: &mut Trace) -> End {
        let (me, cx, s, mut r, mut t) = (self.clone(), Arc::clone(ctx), session.clone(), rng.clone(), trace.clone());
        let shopped = ctx
            .shop
            .run(async move {
                let c = &cx.shop.pool[me.index % cx.shop.pool.len()];
                let end = me.shop(&cx, c, &mut r, &s, &mut t).await;
                (end, r, t)
            })
            .await;
        match shopped {
            Some((end, r, t)) => {
                (*rng, *trace) = (r, t);
                end
            }
            None => End::Failed,
        }
    }

    /// Joins the line, trying again (as the page does) while the queue is too busy: a
    /// second join of the same user returns the same token, so a join that did happen is
    /// never doubled. The first try is timed from the arrival schedule.
    async fn join(
        &self,
        ctx: &Ctx,
        c: &Clients,
        rng: &mut StdRng,
        trace: &mut Trace,
        due: Instant,
    ) -> Result<concert_proto::concert::queue::v1::QueueStatus, End> {
        // The first try's start: a retried join may have been placed by an earlier try, so
        // the join order is judged on the whole span from the first send to the answer.
        trace.join_sent = due.max(Instant::now()) - ctx.recorder.start;
        let first = std::sync::atomic::AtomicBool::new(true);
        // Exponential backoff with jitter from 1 s, capped at 30 s and at the run's end, or
        // the server's RetryInfo when later: a flood of people all retrying every second
        // would be a retry storm of its own.
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .with_jitter_seed(rng.random())
            .with_max_times(usize::MAX)
            .with_total_delay(Some(ctx.deadline.saturating_duration_since(Instant::now())));
        let status = (|| async {
            let t = if first.swap(false, Ordering::Relaxed) { due } else { Instant::now() };
            let join = IssueTokenRequest { user_id: String::new(), concert_id: ctx.concert_id.clone() };
            let request = self.session.request(join).map_err(|_| Status::internal("metadata"))?;
            rec(ctx, Rpc::IssueToken, t, c.queue().issue_token(request).await)
        })
        .retry(backoff)
        .when(|s| transient(s.code()))
        // A refusal names the slot the server booked for this retry (RetryInfo): never
        // sooner, or a refused crowd comes back as a wave.
        .adjust(|s, planned| planned.map(|d| d.max(platform::status::retry_after(s).unwrap_or_default())))
        .await;
        match status {
            Ok(r) => {
                trace.join_answered = ctx.recorder.start.elapsed();
                r.into_inner().status.ok_or(End::Failed)
            }
            Err(s) if transient(s.code()) => Err(End::OutOfTime),
            Err(_) => Err(End::Failed),
        }
    }

    async fn leave(&self, ctx: &Ctx, c: &Clients, session: &Session) -> bool {
        let t = Instant::now();
        let Ok(request) = session.request(LeaveQueueRequest { token: session.token.clone() }) else { return false };
        rec(ctx, Rpc::LeaveQueue, t, c.queue().leave_queue(request).await).is_ok()
    }

    pub(super) async fn think(&self, ctx: &Ctx, rng: &mut StdRng) {
        if !ctx.think.is_zero() {
            // Uniform in [0.5, 1.5) × think: people are not in lockstep.
            tokio::time::sleep(ctx.think.mul_f64(rng.random_range(0.5..1.5))).await;
        }
    }
}

/// How waiting in line ended.
enum Wait {
    /// Admitted, with the admission pass (empty when the queue hands out none).
    Admitted(String),
    Gone(End),
}

/// The next poll's delay the server asked for, with ±10 % jitter so that people who joined
/// together do not poll together.
fn server_pace(poll_after_seconds: u32, rng: &mut StdRng) -> Duration {
    Duration::from_secs(u64::from(poll_after_seconds.max(1))).mul_f64(rng.random_range(0.9..1.1))
}

impl Person {
    async fn wait(
        &self,
        ctx: &Ctx,
        c: &Clients,
        session: &Session,
        joined: &concert_proto::concert::queue::v1::QueueStatus,
        patience: Option<Duration>,
    ) -> Wait {
        if joined.state == TokenState::Active as i32 {
            return Wait::Admitted(joined.admission_pass.clone());
        }
        let mut rng = StdRng::seed_from_u64(ctx.seed ^ (self.index as u64).wrapping_add(0x5151));
        let give_up = patience.map_or(ctx.deadline, |p| (Instant::now() + p).min(ctx.deadline));
        let fixed = match ctx.waiting {
            Waiting::PollEvery(every) => Some(every),
            Waiting::PollAtServerPace => None,
            Waiting::Watch => match self.watch(ctx, c, session, give_up).await {
                Some(done) => return done,
                None => None,
            },
        };
        // Each poll's latency counts from when it was due. A fixed schedule starts spread
        // over one interval; the server's pace starts from the join's answer.
        let mut due = match fixed {
            Some(every) => Instant::now() + every.mul_f64((self.index % 97) as f64 / 97.0),
            None => Instant::now() + server_pace(joined.poll_after_seconds, &mut rng),
        };
        // The pace the server last asked for: a refused poll keeps it (at least its RetryInfo)
        // instead of coming back a second later, or an overloaded queue's refusals double its
        // polls of people far back in line.
        let mut pace = joined.poll_after_seconds;
        loop {
            if let Some(done) = self.gone(ctx, give_up) {
                return done;
            }
            tokio::time::sleep_until(due.min(give_up).into()).await;
            if Instant::now() < due {
                continue; // woke to give up
            }
            let Ok(request) = session.request(GetQueueStatusRequest { token: session.token.clone() }) else {
                return Wait::Gone(End::Failed);
            };
            let mut retry_after = Duration::ZERO;
            match rec(ctx, Rpc::GetQueueStatus, due, c.queue().get_queue_status(request).await) {
                Ok(r) => match r.into_inner().status {
                    Some(s) if s.state == TokenState::Active as i32 => return Wait::Admitted(s.admission_pass),
                    // The waiting room says every seat is sold: nothing to wait for.
                    Some(s) if s.sold_out => return Wait::Gone(End::SoldOut),
                    Some(s) if s.state == TokenState::Waiting as i32 => pace = s.poll_after_seconds,
                    _ => return Wait::Gone(End::TokenExpired),
                },
                Err(s) if transient(s.code()) => {
                    retry_after = platform::status::retry_after(&s).unwrap_or_default();
                }
                Err(_) => return Wait::Gone(End::Failed),
            }
            due = match fixed {
                Some(every) => (due + every).max(Instant::now()),
                // Answered or refused, the next poll at the server's last pace, as the page does.
                None => Instant::now() + server_pace(pace, &mut rng).max(retry_after),
            };
        }
    }

    /// `Some` when the person stops waiting: out of patience, out of time, or sold out.
    fn gone(&self, ctx: &Ctx, give_up: Instant) -> Option<Wait> {
        if *ctx.sold_out.borrow() {
            return Some(Wait::Gone(End::SoldOut));
        }
        if Instant::now() >= give_up {
            let end = if give_up < ctx.deadline { End::Abandoned } else { End::OutOfTime };
            return Some(Wait::Gone(end));
        }
        None
    }

    /// Waits on a WatchQueue stream; `None` when the stream was refused or broke (the
    /// caller polls instead).
    async fn watch(&self, ctx: &Ctx, c: &Clients, session: &Session, give_up: Instant) -> Option<Wait> {
        let t = Instant::now();
        let request = session.request(WatchQueueRequest { token: session.token.clone() }).ok()?;
        let mut stream = match c.queue().watch_queue(request).await {
            Ok(s) => s.into_inner(),
            Err(e) => {
                rec::<()>(ctx, Rpc::WatchQueue, t, Err(e)).ok();
                return None;
            }
        };
        let mut first = true;
        let mut sold_out = ctx.sold_out.subscribe();
        loop {
            if let Some(done) = self.gone(ctx, give_up) {
                return Some(done);
            }
            let message = tokio::select! {
                m = stream.next() => m,
                () = tokio::time::sleep_until(give_up.into()) => continue,
                _ = sold_out.wait_for(|sold| *sold) => continue,
            };
            let status = match message {
                Some(Ok(m)) => m.status,
                Some(Err(e)) => {
                    if first {
                        rec::<()>(ctx, Rpc::WatchQueue, t, Err(e)).ok();
                    }
                    return None;
                }
                None => return None,
            };
            if first {
                ctx.recorder.call(Rpc::WatchQueue, t, Code::Ok);
                first = false;
            }
            match status {
                Some(s) if s.state == TokenState::Active as i32 => return Some(Wait::Admitted(s.admission_pass)),
                Some(s) if s.sold_out => return Some(Wait::Gone(End::SoldOut)),
                Some(s) if s.state == TokenState::Waiting as i32 => {}
                _ => return Some(Wait::Gone(End::TokenExpired)),
            }
        }
    }
}
