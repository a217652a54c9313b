//! Opportunistic batching of database writes.
//!
//! On opening day thousands of identical small writes (joins, holds) arrive at once, and
//! PostgreSQL's fixed cost per statement and per commit dwarfs the cost of one row. A few
//! worker tasks each take every item already waiting (up to `max_batch`) and hand them to
//! the [`BatchHandler`] as one batch, typically one multi-row statement and one commit.
//! Nothing waits to fill a batch: under light load a batch is a single item, so latency
//! does not grow.
//!
//! What a batch means for correctness is the handler's business (a unique index deciding
//! every row, for instance). The batcher only guarantees that every caller gets the answer
//! for its own item: if a batch fails as a whole, each of its items is retried alone.
//!
//! A batch serves many callers, each in its own trace: a batch of several runs in a `batch`
//! span of its own whose links point at every caller's span, so each caller's trace leads
//! to the batch that did its work (and the batch's trace to every caller); a batch of one
//! runs inside its caller's trace. Batch sizes are
//! recorded in the `batch_items` histogram.
use std::{future::Future, sync::Arc};

use opentelemetry::trace::TraceContextExt as _;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Does the work for a batch of items.
pub trait BatchHandler: Send + Sync + 'static {
    type Item: Clone + Send + Sync + 'static;
    type Output: Send + 'static;
    type Error: std::fmt::Display + Send + 'static;

    /// Handles `items` together and returns one output per item, in the same order.
    fn run(&self, items: &[Self::Item]) -> impl Future<Output = Result<Vec<Self::Output>, Self::Error>> + Send;
}

/// Why a submitted item got no output from its handler.
#[derive(Debug, thiserror::Error)]
pub enum BatchError<E> {
    /// The handler failed for this item (when run alone, after its batch failed).
    #[error(transparent)]
    Failed(E),
    /// The workers are gone (the service is shutting down) or the handler broke its contract.
    #[error("batch worker unavailable: {0}")]
    Stopped(&'static str),
}

impl<E: From<anyhow::Error>> BatchError<E> {
    /// The handler's error, or, when the workers are gone, the caller's error for an
    /// unexpected failure: what every typed wrapper around a [`Batcher`] returns.
    pub fn into_error(self) -> E {
        match self {
            Self::Failed(e) => e,
            Self::Stopped(why) => anyhow::anyhow!(why).into(),
        }
    }
}

/// An item, where to send its answer, and the span of the caller who submitted it.
type Job<H> = (
    <H as BatchHandler>::Item,
    oneshot::Sender<Result<<H as BatchHandler>::Output, BatchError<<H as BatchHandler>::Error>>>,
    tracing::Span,
);

/// Hands items to the batch workers.
pub struct Batcher<H: BatchHandler> {
    tx: mpsc::Sender<Job<H>>,
}

impl<H: BatchHandler> Clone for Batcher<H> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<H: BatchHandler> std::fmt::Debug for Batcher<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("queued", &(self.tx.max_capacity() - self.tx.capacity())).finish()
    }
}

impl<H: BatchHandler> Batcher<H> {
    /// Starts `workers` workers (each runs one batch at a time, so at most `workers` pooled
    /// connections are busy with batches) taking up to `max_batch` items per batch, spawned
    /// into `tasks`, the replica's owner of background work. They stop when every `Batcher`
    /// clone is dropped, or when `tasks` is shut down.
    #[must_use]
    pub fn start(handler: H, workers: usize, max_batch: usize, tasks: &mut crate::app::Tasks) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel::<Job<H>>(max_batch * workers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        let handler = Arc::new(handler);
        for _ in 0..workers.max(1) {
            tasks.spawn(worker(handler.clone(), rx.clone(), max_batch));
        }
        Self { tx }
    }

    /// Submits one item and waits for its output.
    ///
    /// # Errors
    /// [`BatchError::Failed`] with the handler's error for this item;
    /// [`BatchError::Stopped`] when the workers are gone.
    pub async fn submit(&self, item: H::Item) -> Result<H::Output, BatchError<H::Error>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((item, reply, tracing::Span::current()))
            .await
            .map_err(|_| BatchError::Stopped("batcher stopped"))?;
        answer.await.map_err(|_| BatchError::Stopped("batch dropped"))?
    }

    /// Hands one item to the workers without waiting for its output (work whose caller has
    /// already answered, such as a saga's last step); false when the queue is full or the
    /// workers are gone, and the item was not taken.
    #[must_use]
    pub fn offer(&self, item: H::Item) -> bool {
        let (reply, _) = oneshot::channel();
        self.tx.try_send((item, reply, tracing::Span::current())).is_ok()
    }
}

async fn worker<H: BatchHandler>(handler: Arc<H>, rx: Arc<Mutex<mpsc::Receiver<Job<H>>>>, max_batch: usize) {
    let mut batch: Vec<Job<H>> = Vec::with_capacity(max_batch);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, max_batch).await == 0 {
                return; // every sender is gone
            }
        }
        let items: Vec<H::Item> = batch.iter().map(|(item, _, _)| item.clone()).collect();
        let span = batch_span::<H>(&batch.iter().map(|(_, _, caller)| caller).collect::<Vec<_>>());
        let outputs = run_together(&*handler, &items).instrument(span).await;
        for ((_, reply, _), output) in batch.drain(..).zip(outputs) {
            let _ = reply.send(output);
        }
    }
}

/// The span a batch runs in. A batch of one is part of its caller's trace (a child of the
/// caller's span), so a call at low load reads as one trace from end to end. A batch of
/// several belongs to no one caller: it is a root span linked to each caller's span.
fn batch_span<H: BatchHandler>(callers: &[&tracing::Span]) -> tracing::Span {
    let name = handler_name::<H>();
    let size = callers.len();
    crate::metrics::record_batch(name, size);
    if let [caller] = callers {
        return tracing::info_span!(parent: *caller, "batch", otel.name = format!("batch {name}"), batch = name, size);
    }
    let span = tracing::info_span!(parent: None, "batch", otel.name = format!("batch {name}"), batch = name, size);
    for caller in callers {
        let context = caller.context();
        let caller = context.span().span_context().clone();
        if caller.is_valid() {
            span.add_link(caller);
        }
    }
    span
}

/// The handler's type name without its path (`HoldInserter`, `DebitBatcher`, …).
fn handler_name<H>() -> &'static str {
    let full = std::any::type_name::<H>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Runs `items` as one batch; if the batch fails as a whole, runs each item alone, so each
/// item gets its own answer. What the workers do with every batch they take, for callers
/// that receive their items already batched (a `...Many` RPC, say).
///
/// Returns one result per item, in order.
pub async fn run_together<H: BatchHandler>(
    handler: &H,
    items: &[H::Item],
) -> Vec<Result<H::Output, BatchError<H::Error>>> {
    match handler.run(items).await {
        Ok(outputs) if outputs.len() == items.len() => outputs.into_iter().map(Ok).collect(),
        Ok(outputs) => {
            tracing::error!(items = items.len(), outputs = outputs.len(), "batch handler broke its contract");
            items
                .iter()
                .map(|_| Err(BatchError::Stopped("batch handler returned the wrong number of outputs")))
                .collect()
        }
        Err(e) if items.len() == 1 => vec![Err(BatchError::Failed(e))],
        Err(e) => {
            tracing::warn!(error = %e, size = items.len(), "batch failed; retrying its items one by one");
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                results.push(match handler.run(std::slice::from_ref(item)).await {
                    Ok(mut one) if one.len() == 1 => one.pop().ok_or(BatchError::Stopped("no output")),
                    Ok(_) => Err(BatchError::Stopped("batch handler returned the wrong number of outputs")),
                    Err(e) => Err(BatchError::Failed(e)),
                });
            }
            results
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn into_error_keeps_the_handlers_error_and_maps_a_stop() {
        let failed: BatchError<anyhow::Error> = BatchError::Failed(anyhow::anyhow!("row locked"));
        assert_eq!(failed.into_error().to_string(), "row locked");
        let stopped: BatchError<anyhow::Error> = BatchError::Stopped("batcher stopped");
        assert_eq!(stopped.into_error().to_string(), "batcher stopped");
    }

    /// Doubles numbers; counts batches; fails any batch holding 13 (and 13 alone).
    struct Doubler {
        batches: Arc<AtomicUsize>,
    }

    impl BatchHandler for Doubler {
        type Item = u32;
        type Output = u32;
        type Error = String;

        async fn run(&self, items: &[u32]) -> Result<Vec<u32>, String> {
            self.batches.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
            if items.contains(&13) {
                return Err("unlucky".into());
            }
            Ok(items.iter().map(|n| n * 2).collect())
        }
    }

    #[tokio::test]
    async fn concurrent_items_share_batches_and_each_gets_its_own_answer() {
        let batches = Arc::new(AtomicUsize::new(0));
        let mut tasks = crate::app::Tasks::new();
        let b = Batcher::start(Doubler { batches: batches.clone() }, 1, 64, &mut tasks);
        let answers = futures_join(&b, (0..200).filter(|n| *n != 13).collect()).await;
        assert!(answers.iter().all(|(n, r)| r.as_ref().is_ok_and(|d| *d == n * 2)));
        let used = batches.load(Ordering::Relaxed);
        assert!(used < 199, "199 items in {used} batches: they were batched");
    }

    #[tokio::test]
    async fn offered_items_are_worked_without_a_waiting_caller_until_the_queue_is_full() {
        let batches = Arc::new(AtomicUsize::new(0));
        let mut tasks = crate::app::Tasks::new();
        let b = Batcher::start(Doubler { batches: batches.clone() }, 1, 2, &mut tasks);
        // The queue holds max_batch × workers × 4 = 8 items; the worker has not run yet (this
        // test's runtime is single-threaded and has not yielded), so the ninth is refused.
        let taken: Vec<bool> = (0..9).map(|n| b.offer(n)).collect();
        assert_eq!(taken, [true, true, true, true, true, true, true, true, false]);
        while batches.load(Ordering::Relaxed) < 4 {
            tokio::task::yield_now().await;
        }
        assert_eq!(batches.load(Ordering::Relaxed), 4, "eight items in batches of two, nobody awaiting them");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_only_the_item_that_fails_alone() {
        let mut tasks = crate::app::Tasks::new();
        let b = Batcher::start(Doubler { batches: Arc::new(AtomicUsize::new(0)) }, 1, 64, &mut tasks);
        let answers = futures_join(&b, (10..20).collect()).await;
        for (n, r) in answers {
            match r {
                Err(BatchError::Failed(e)) => assert_eq!((n, e.as_str()), (13, "unlucky")),
                Ok(d) => assert_eq!(d, n * 2),
                Err(other) => panic!("{n}: {other}"),
            }
        }
    }

    #[tokio::test]
    async fn run_together_answers_each_item_of_a_batch_received_whole() {
        let batches = Arc::new(AtomicUsize::new(0));
        let handler = Doubler { batches: batches.clone() };
        let fine = run_together(&handler, &[1, 2, 3]).await;
        assert_eq!(fine.into_iter().map(Result::ok).collect::<Vec<_>>(), vec![Some(2), Some(4), Some(6)]);
        assert_eq!(batches.load(Ordering::Relaxed), 1, "one batch for three items");

        let mixed = run_together(&handler, &[12, 13, 14]).await;
        assert_eq!(batches.load(Ordering::Relaxed), 5, "the failed batch, then each item alone");
        assert!(matches!(mixed[0], Ok(24)));
        assert!(matches!(&mixed[1], Err(BatchError::Failed(e)) if e == "unlucky"));
        assert!(matches!(mixed[2], Ok(28)));
    }

    async fn futures_join(b: &Batcher<Doubler>, items: Vec<u32>) -> Vec<(u32, Result<u32, BatchError<String>>)> {
        let tasks: Vec<_> = items
            .into_iter()
            .map(|n| {
                let b = b.clone();
                tokio::spawn(async move { (n, b.submit(n).await) })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| panic!("task: {e}")));
        }
        out
    }
}
