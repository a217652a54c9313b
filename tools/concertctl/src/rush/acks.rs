//! The client's own log of its writes (`bench rush --ack-log`), Jepsen-style: one JSON line
//! per try of a write (HoldSeat, Charge, PayReservation) with what the server answered, and
//! for an acknowledged one what it was told was done (the hold, the won charged, the payment
//! and its seats). The books are compared against what people were told afterwards (the
//! "acknowledged and lost" check in [`super::checks`]); the log is the evidence that outlives
//! the run, and gives when writes failed (the failover window of `scripts/test-failover.sh`).
//!
//! A line: `{"at_ms": 1796560000123, "rpc": "PayReservation", "user": "rush-…-17", "code":
//! "Ok", "payment_id": "…", "seats": [["<schedule>", 4]], "amount": 90000}`; `at_ms` is when
//! the answer came, Unix time in milliseconds (to line up with events outside the run, such
//! as a failover); fields a try does not have are left out.
use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    sync::Mutex,
    time::SystemTime,
};

use serde::Serialize;
use tonic::Code;

use super::stats::Rpc;

/// One try of a write and its answer.
#[derive(Debug, Default, Serialize)]
pub struct Ack<'a> {
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<&'a str>,
    /// Won.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// (schedule, seat) held or paid for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<(&'a str, u32)>,
}

#[derive(Serialize)]
struct Line<'a> {
    at_ms: u64,
    rpc: &'static str,
    code: String,
    #[serde(flatten)]
    ack: &'a Ack<'a>,
}

/// Where the tries go; shared by every person of the run.
#[derive(Debug)]
pub struct AckLog {
    out: Mutex<BufWriter<File>>,
}

impl AckLog {
    /// Creates (truncates) the log at `path`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self { out: Mutex::new(BufWriter::new(File::create(path)?)) })
    }

    /// Writes one try. A write error is reported once at [`Self::finish`], never ends a
    /// person's journey.
    pub fn record(&self, rpc: Rpc, code: Code, ack: &Ack<'_>) {
        let line = Line {
            at_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            rpc: rpc.name(),
            code: format!("{code:?}"),
            ack,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else { return };
        text.push(b'\n');
        if let Ok(mut out) = self.out.lock() {
            // The error stays in the writer and comes out at `finish`'s flush.
            let _ = out.write_all(&text);
        }
    }

    /// Flushes the log.
    ///
    /// # Errors
    /// When a line could not be written.
    pub fn finish(&self) -> std::io::Result<()> {
        self.out.lock().map_err(|_| std::io::Error::other("ack log lock poisoned"))?.flush()
    }
}
