//! What the rush measures: per RPC a latency histogram and counts by status code, and per
//! second of the run the calls, their p99, admissions, payments and the line's length.
use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tonic::Code;

/// The RPCs a person makes, in journey order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rpc {
    IssueToken,
    /// Time from opening the stream to its first status.
    WatchQueue,
    GetQueueStatus,
    LeaveQueue,
    ListAvailableDates,
    ListSeats,
    HoldSeat,
    GetBalance,
    Charge,
    PayReservation,
    /// The operator's sample of the line every 5 s (the queue's internal port), recorded
    /// so that a sample the flood kept from answering shows in the report with its code.
    GetRoomStats,
}

impl Rpc {
    pub const ALL: [Rpc; 11] = [
        Rpc::IssueToken,
        Rpc::WatchQueue,
        Rpc::GetQueueStatus,
        Rpc::LeaveQueue,
        Rpc::ListAvailableDates,
        Rpc::ListSeats,
        Rpc::HoldSeat,
        Rpc::GetBalance,
        Rpc::Charge,
        Rpc::PayReservation,
        Rpc::GetRoomStats,
    ];

    /// A call of the admitted path (an admitted person shopping), not of the line (joins,
    /// polls, streams, leaving) nor the operator's.
    #[must_use]
    pub fn is_admitted_path(self) -> bool {
        !matches!(self, Rpc::IssueToken | Rpc::WatchQueue | Rpc::GetQueueStatus | Rpc::LeaveQueue | Rpc::GetRoomStats)
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Rpc::IssueToken => "IssueToken",
            Rpc::WatchQueue => "WatchQueue",
            Rpc::GetQueueStatus => "GetQueueStatus",
            Rpc::LeaveQueue => "LeaveQueue",
            Rpc::ListAvailableDates => "ListAvailableDates",
            Rpc::ListSeats => "ListSeats",
            Rpc::HoldSeat => "HoldSeat",
            Rpc::GetBalance => "GetBalance",
            Rpc::Charge => "Charge",
            Rpc::PayReservation => "PayReservation",
            Rpc::GetRoomStats => "GetRoomStats",
        }
    }
}

/// Latencies are recorded in microseconds, 1 µs to 10 minutes, 3 significant digits
/// (~170 KB a histogram).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// One second's latencies: 2 significant digits (a p99 within 1 %) keep a histogram at
/// ~25 KB, so a run of many minutes stays small.
fn histogram_per_second() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// One RPC's totals.
#[derive(Debug)]
pub struct RpcStats {
    pub latency_us: Histogram<u64>,
    /// Calls by gRPC status code (0 = OK).
    pub codes: BTreeMap<i32, u64>,
}

/// One second of the run.
#[derive(Debug)]
pub struct Second {
    /// Every RPC's latency in this second (by completion time).
    pub latency_us: Histogram<u64>,
    /// The admitted path's calls only (see [`Rpc::is_admitted_path`]).
    pub admitted_latency_us: Histogram<u64>,
    pub admitted: u64,
    pub paid: u64,
    pub errors: u64,
    /// The line as the queue reported it (GetQueueStats, sampled once a second).
    pub waiting: Option<u64>,
    pub active: Option<u64>,
    /// The queue replica's resident memory, KiB (with `--queue-pid`).
    pub queue_rss_kb: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    rpcs: BTreeMap<Rpc, RpcStats>,
    timeline: Vec<Second>,
}

/// Shared by every person of the run (one lock: a record is a few hundred nanoseconds).
#[derive(Debug)]
pub struct Recorder {
    pub start: Instant,
    inner: Mutex<Inner>,
}

impl Recorder {
    #[must_use]
    pub fn new(start: Instant) -> Self {
        Self { start, inner: Mutex::new(Inner { rpcs: BTreeMap::new(), timeline: Vec::new() }) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn second(inner: &mut Inner, at: Instant, start: Instant) -> &mut Second {
        let i = at.saturating_duration_since(start).as_secs() as usize;
        while inner.timeline.len() <= i {
            inner.timeline.push(Second {
                latency_us: histogram_per_second(),
                admitted_latency_us: histogram_per_second(),
                admitted: 0,
                paid: 0,
                errors: 0,
                waiting: None,
                active: None,
                queue_rss_kb: None,
            });
        }
        &mut inner.timeline[i]
    }

    /// One call of `rpc` that was due at `intended` (the schedule's time, so a late start
    /// counts against the call: no coordinated omission) and ended now with `code`.
    pub fn call(&self, rpc: Rpc, intended: Instant, code: Code) {
        let now = Instant::now();
        let us = now.saturating_duration_since(intended).as_micros().max(1) as u64;
        let start = self.start;
        self.with(|inner| {
            let stats =
                inner.rpcs.entry(rpc).or_insert_with(|| RpcStats { latency_us: histogram(), codes: BTreeMap::new() });
            let _ = stats.latency_us.record(us);
            *stats.codes.entry(code as i32).or_default() += 1;
            let second = Self::second(inner, now, start);
            let _ = second.latency_us.record(us);
            if rpc.is_admitted_path() {
                let _ = second.admitted_latency_us.record(us);
            }
            if code != Code::Ok {
                second.errors += 1;
            }
        });
    }

    pub fn admitted(&self) {
        let start = self.start;
        self.with(|inner| Self::second(inner, Instant::now(), start).admitted += 1);
    }

    pub fn paid(&self) {
        let start = self.start;
        self.with(|inner| Self::second(inner, Instant::now(), start).paid += 1);
    }

    /// The line's length as GetQueueStats reported it now.
    pub fn line(&self, waiting: u64, active: u64) {
        let start = self.start;
        self.with(|inner| {
            let s = Self::second(inner, Instant::now(), start);
            s.waiting = Some(waiting);
            s.active = Some(active);
        });
    }

    /// The queue replica's resident memory now, KiB.
    pub fn queue_memory(&self, kb: u64) {
        let start = self.start;
        self.with(|inner| Self::second(inner, Instant::now(), start).queue_rss_kb = Some(kb));
    }

    /// Takes what was recorded.
    pub fn finish(&self, elapsed: Duration) -> (BTreeMap<Rpc, RpcStats>, Vec<Second>) {
        let start = self.start;
        self.with(|inner| {
            // Every second of the run has a row, quiet ones too.
            let _ = Self::second(inner, start + elapsed, start);
            (std::mem::take(&mut inner.rpcs), std::mem::take(&mut inner.timeline))
        })
    }
}
