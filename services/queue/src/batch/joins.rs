//! Joins are written in batches: concurrent `IssueToken` calls of one replica share one
//! `INSERT … SELECT FROM UNNEST` and one commit (see `platform::batch`). Nothing waits to
//! fill a batch, so a lone join is written at once.
//!
//! Order and fairness are unchanged: a batch draws its `seq`s in arrival order under the
//! shared join fence and commits them together, so "FIFO = commit order of joins" holds
//! for batches as it did for single joins, and the unique index over live tokens still
//! gives a user one token per concert, within a batch too.
use platform::{
    app::Tasks,
    batch::{BatchError, BatchHandler, Batcher},
};

use crate::{
    domain::Token,
    error::QueueError,
    store::{Join, QueueRepo},
};

/// Most joins one statement writes.
pub const MAX_BATCH: usize = 128;
/// Batches in flight at once per replica (each holds one pooled connection).
pub const WORKERS: usize = 4;

/// Writes batches of joins.
#[derive(Debug)]
pub struct JoinWriter(QueueRepo);

impl BatchHandler for JoinWriter {
    type Item = Join;
    type Output = Token;
    type Error = QueueError;

    async fn run(&self, joins: &[Join]) -> Result<Vec<Token>, QueueError> {
        self.0.join_many(joins).await
    }
}

/// The join batcher of one replica.
#[derive(Debug, Clone)]
pub struct JoinBatcher(Batcher<JoinWriter>);

impl JoinBatcher {
    /// Starts the workers in `tasks`; they stop when every clone is dropped.
    #[must_use]
    pub fn start(repo: QueueRepo, tasks: &mut Tasks) -> Self {
        Self(Batcher::start(JoinWriter(repo), WORKERS, MAX_BATCH, tasks))
    }

    /// Joins a line (or finds the user's live token for that concert).
    ///
    /// # Errors
    /// Database failures.
    pub async fn join(&self, join: Join) -> Result<Token, QueueError> {
        self.0.submit(join).await.map_err(BatchError::into_error)
    }
}
