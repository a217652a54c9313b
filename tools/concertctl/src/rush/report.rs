//! The rush's report: printed, as JSON, and the data behind the plot.
use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Serialize;

use super::{
    RushArgs,
    checks::Check,
    person::{End, Trace},
    stats::{Rpc, RpcStats, Second},
};

/// Everything a run measured and checked.
#[derive(Debug, Clone, Serialize)]
pub struct RushReport {
    pub users: u64,
    pub seats: u64,
    pub arrival_rate: f64,
    pub abandon: f64,
    pub max_active: u64,
    pub seed: u64,
    /// Seconds from the first arrival until every person was done.
    pub elapsed_s: f64,
    /// Seconds from the first arrival until the last seat was paid; `None`: not sold out.
    pub sold_out_after_s: Option<f64>,
    /// Seconds from the first arrival until half, 95 % and all of the seats were paid
    /// (whole seconds of the timeline; `None`: not reached).
    pub sold_50_s: Option<u64>,
    pub sold_95_s: Option<u64>,
    pub sold_100_s: Option<u64>,
    pub seats_sold: usize,
    /// How each person's journey ended.
    pub outcomes: BTreeMap<String, u64>,
    pub rpcs: Vec<RpcRow>,
    /// The admitted path's calls (dates, seat map, hold, charge, pay) by RPC, apart from the
    /// line's (joins, polls, streams): what an admitted buyer felt. Same rows as `rpcs`.
    pub admitted: BTreeMap<&'static str, RpcRow>,
    /// This generator's CPU time over the run as a share of the machine (all cores): 0.5 on
    /// two cores is one core busy with generating load.
    pub generator_cpu_share: f64,
    /// The generator's CPU time per person, microseconds.
    pub generator_cpu_us_per_person: f64,
    /// How people waited: "WatchQueue" streams, or polls ("GetQueueStatus").
    pub waiting_by: &'static str,
    /// The queue replica's resident memory (with `--queue-pid`), MiB: at the first sample and
    /// at its peak.
    pub queue_rss_first_mb: Option<f64>,
    pub queue_rss_peak_mb: Option<f64>,
    /// (peak − first sample) / the most people in line at once, KiB: what one waiting person
    /// costs the replica, streams and polls told apart by `waiting_by`.
    pub queue_kb_per_waiting: Option<f64>,
    pub timeline: Vec<SecondRow>,
    pub checks: Vec<Check>,
    /// Every broken invariant (empty: the run passed).
    pub violations: Vec<String>,
}

/// One RPC over the whole run. Latencies in milliseconds, from when the call was due.
#[derive(Debug, Clone, Serialize)]
pub struct RpcRow {
    pub rpc: &'static str,
    pub calls: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Calls by gRPC status code name.
    pub codes: BTreeMap<String, u64>,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct SecondRow {
    pub t: u64,
    /// People in line (waiting and pre-queue) and admitted, as the queue reported them.
    pub waiting: Option<u64>,
    pub active: Option<u64>,
    pub admitted: u64,
    pub paid: u64,
    pub calls: u64,
    pub errors: u64,
    /// p99 of every call ending in this second, milliseconds.
    pub p99_ms: f64,
    /// p99 of the admitted path's calls ending in this second, milliseconds (0: none).
    pub admitted_p99_ms: f64,
    /// The queue replica's resident memory, MiB (with `--queue-pid`).
    pub queue_rss_mb: Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// p99 of a histogram, milliseconds; 0 for an empty one.
fn p99_ms(h: &hdrhistogram::Histogram<u64>) -> f64 {
    if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(0.99)) }
}

impl SecondRow {
    fn new(t: u64, s: &Second) -> Self {
        Self {
            t,
            waiting: s.waiting,
            active: s.active,
            admitted: s.admitted,
            paid: s.paid,
            calls: s.latency_us.len(),
            errors: s.errors,
            p99_ms: p99_ms(&s.latency_us),
            admitted_p99_ms: p99_ms(&s.admitted_latency_us),
            queue_rss_mb: s.queue_rss_kb.map(|kb| kb as f64 / 1024.0),
        }
    }
}

/// The whole seconds after which each share of `seats` had been paid for (`None`: never).
fn sold_marks<const N: usize>(timeline: &[Second], seats: u64, shares: [f64; N]) -> [Option<u64>; N] {
    let mut marks = [None; N];
    let mut sold = 0;
    for (t, s) in timeline.iter().enumerate() {
        sold += s.paid;
        for (mark, share) in marks.iter_mut().zip(shares) {
            if mark.is_none() && seats > 0 && sold as f64 >= share * seats as f64 {
                *mark = Some(t as u64 + 1);
            }
        }
    }
    marks
}

/// The queue replica's resident memory at the first sample and at its peak, KiB, and
/// (peak − first) per person in line at the line's longest.
fn queue_memory(timeline: &[Second]) -> (Option<u64>, Option<u64>, Option<f64>) {
    let rss: Vec<u64> = timeline.iter().filter_map(|s| s.queue_rss_kb).collect();
    let peak_waiting = timeline.iter().filter_map(|s| s.waiting).max().unwrap_or(0);
    let (first, peak) = (rss.first().copied(), rss.iter().copied().max());
    let per_waiting = match (first, peak) {
        (Some(first), Some(peak)) if peak_waiting > 0 => Some(peak.saturating_sub(first) as f64 / peak_waiting as f64),
        _ => None,
    };
    (first, peak, per_waiting)
}

impl RushReport {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        args: &RushArgs,
        seats: u64,
        elapsed: Duration,
        generator_cpu: Duration,
        sold_out: Option<Duration>,
        traces: &[Trace],
        rpcs: &BTreeMap<Rpc, RpcStats>,
        timeline: &[Second],
        checks: Vec<Check>,
    ) -> Self {
        let mut outcomes = BTreeMap::new();
        for t in traces {
            *outcomes.entry(format!("{:?}", t.end)).or_default() += 1;
        }
        let secs = elapsed.as_secs_f64().max(1e-9);
        let rpcs: Vec<RpcRow> = Rpc::ALL
            .iter()
            .filter_map(|rpc| rpcs.get(rpc).map(|s| (rpc, s)))
            .map(|(rpc, s)| RpcRow {
                rpc: rpc.name(),
                calls: s.latency_us.len(),
                per_sec: s.latency_us.len() as f64 / secs,
                p50_ms: ms(s.latency_us.value_at_quantile(0.50)),
                p95_ms: ms(s.latency_us.value_at_quantile(0.95)),
                p99_ms: ms(s.latency_us.value_at_quantile(0.99)),
                max_ms: ms(s.latency_us.max()),
                codes: s.codes.iter().map(|(c, n)| (format!("{:?}", tonic::Code::from_i32(*c)), *n)).collect(),
            })
            .collect();
        let admitted = Rpc::ALL
            .iter()
            .filter(|rpc| rpc.is_admitted_path())
            .filter_map(|rpc| rpcs.iter().find(|r| r.rpc == rpc.name()).map(|r| (rpc.name(), r.clone())))
            .collect();
        let [sold_50_s, sold_95_s, sold_100_s] = sold_marks(timeline, seats, [0.5, 0.95, 1.0]);
        let (rss_first, rss_peak, queue_kb_per_waiting) = queue_memory(timeline);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
        let timeline = timeline.iter().enumerate().map(|(t, s)| SecondRow::new(t as u64, s)).collect();
        let violations = checks
            .iter()
            .filter(|c| !c.ok)
            .flat_map(|c| c.examples.iter().map(move |e| format!("{}: {e}", c.name)))
            .collect();
        Self {
            users: args.users,
            seats,
            arrival_rate: args.arrival_rate,
            abandon: args.abandon,
            max_active: args.max_active,
            seed: args.seed,
            elapsed_s: elapsed.as_secs_f64(),
            sold_out_after_s: sold_out.map(|d| d.as_secs_f64()),
            sold_50_s,
            sold_95_s,
            sold_100_s,
            admitted,
            generator_cpu_share: generator_cpu.as_secs_f64() / (secs * cores),
            generator_cpu_us_per_person: generator_cpu.as_secs_f64() * 1e6 / args.users.max(1) as f64,
            waiting_by: if args.poll || args.poll_ms > 0 { "GetQueueStatus" } else { "WatchQueue" },
            queue_rss_first_mb: rss_first.map(|kb| kb as f64 / 1024.0),
            queue_rss_peak_mb: rss_peak.map(|kb| kb as f64 / 1024.0),
            queue_kb_per_waiting,
            seats_sold: traces.iter().filter(|t| t.end == End::Paid).map(|t| t.bought.len()).sum(),
            outcomes,
            rpcs,
            timeline,
            checks,
            violations,
        }
    }

    /// The highest p99 of any RPC, milliseconds.
    #[must_use]
    pub fn worst_p99_ms(&self) -> f64 {
        self.rpcs.iter().map(|r| r.p99_ms).fold(0.0, f64::max)
    }
}

impl RushReport {
    /// Every 5th second of the timeline, one line each.
    fn fmt_timeline(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "over time (every 5th second): t  in line  active  admitted/s  paid/s  calls/s  p99 ms  admitted p99 ms"
        )?;
        for s in self.timeline.iter().step_by(5) {
            writeln!(
                f,
                "  {:>4} {:>8} {:>7} {:>11} {:>7} {:>8} {:>7.1} {:>16.1}",
                s.t,
                s.waiting.map_or("-".into(), |w| w.to_string()),
                s.active.map_or("-".into(), |a| a.to_string()),
                s.admitted,
                s.paid,
                s.calls,
                s.p99_ms,
                s.admitted_p99_ms
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for RushReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rush: {} people, {} seats, arrivals {}, abandon {:.0} %, max active {}, seed {}",
            self.users,
            self.seats,
            if self.arrival_rate > 0.0 { format!("{}/s", self.arrival_rate) } else { "all at once".into() },
            self.abandon * 100.0,
            self.max_active,
            self.seed
        )?;
        match self.sold_out_after_s {
            Some(s) => writeln!(f, "sold out after {s:.1} s; every person done after {:.1} s", self.elapsed_s)?,
            None => writeln!(
                f,
                "NOT sold out: {} of {} seats sold in {:.1} s",
                self.seats_sold, self.seats, self.elapsed_s
            )?,
        }
        let at = |s: Option<u64>| s.map_or("-".to_owned(), |s| format!("{s} s"));
        writeln!(
            f,
            "seats sold: 50 % after {}, 95 % after {}, 100 % after {}",
            at(self.sold_50_s),
            at(self.sold_95_s),
            at(self.sold_100_s)
        )?;
        writeln!(
            f,
            "generator: {:.0} % of the machine's CPU, {:.0} µs per person",
            self.generator_cpu_share * 100.0,
            self.generator_cpu_us_per_person
        )?;
        if let (Some(first), Some(peak)) = (self.queue_rss_first_mb, self.queue_rss_peak_mb) {
            writeln!(
                f,
                "queue memory: {first:.0} MiB at the start, peak {peak:.0} MiB; {} per waiting person ({})",
                self.queue_kb_per_waiting.map_or("-".into(), |kb| format!("{kb:.1} KiB")),
                self.waiting_by
            )?;
        }
        let outcomes: Vec<String> = self.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "people: {}", outcomes.join(", "))?;
        let admitted: Vec<String> =
            self.admitted.iter().map(|(rpc, r)| format!("{rpc} p99 {:.1} ms", r.p99_ms)).collect();
        writeln!(f, "admitted people's calls: {}", admitted.join(", "))?;
        writeln!(
            f,
            "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  codes",
            "rpc", "calls", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"
        )?;
        for r in &self.rpcs {
            let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            writeln!(
                f,
                "{:<20} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}",
                r.rpc,
                r.calls,
                r.per_sec,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.max_ms,
                codes.join(", ")
            )?;
        }
        self.fmt_timeline(f)?;
        for c in &self.checks {
            writeln!(f, "{} {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail)?;
            for e in &c.examples {
                writeln!(f, "       {e}")?;
            }
        }
        Ok(())
    }
}
