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
    pub seats_sold: usize,
    /// How each person's journey ended.
    pub outcomes: BTreeMap<String, u64>,
    pub rpcs: Vec<RpcRow>,
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
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

impl RushReport {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        args: &RushArgs,
        seats: u64,
        elapsed: Duration,
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
        let rpcs = Rpc::ALL
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
        let timeline = timeline
            .iter()
            .enumerate()
            .map(|(t, s)| SecondRow {
                t: t as u64,
                waiting: s.waiting,
                active: s.active,
                admitted: s.admitted,
                paid: s.paid,
                calls: s.latency_us.len(),
                errors: s.errors,
                p99_ms: if s.latency_us.is_empty() { 0.0 } else { ms(s.latency_us.value_at_quantile(0.99)) },
            })
            .collect();
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
            seats_sold: traces.iter().filter(|t| t.end == End::Paid).count(),
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
        let outcomes: Vec<String> = self.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "people: {}", outcomes.join(", "))?;
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
        writeln!(f, "over time (every 5th second): t  in line  active  admitted/s  paid/s  calls/s  p99 ms")?;
        for s in self.timeline.iter().step_by(5) {
            writeln!(
                f,
                "  {:>4} {:>8} {:>7} {:>11} {:>7} {:>8} {:>7.1}",
                s.t,
                s.waiting.map_or("-".into(), |w| w.to_string()),
                s.active.map_or("-".into(), |a| a.to_string()),
                s.admitted,
                s.paid,
                s.calls,
                s.p99_ms
            )?;
        }
        for c in &self.checks {
            writeln!(f, "{} {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail)?;
            for e in &c.examples {
                writeln!(f, "       {e}")?;
            }
        }
        Ok(())
    }
}
