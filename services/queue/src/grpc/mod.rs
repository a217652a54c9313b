//! gRPC handlers of the queue.

use concert_proto::concert::queue::v1::{
    self as pb, GetQueueStatsRequest, GetQueueStatsResponse, GetQueueStatusRequest, GetQueueStatusResponse,
    IssueTokenRequest, IssueTokenResponse, LeaveQueueRequest, LeaveQueueResponse, SetAdmissionPolicyRequest,
    SetAdmissionPolicyResponse, WatchQueueRequest, WatchQueueResponse, queue_admin_service_server::QueueAdminService,
    queue_service_server::QueueService,
};
use platform::{
    auth::require_owner,
    clock::SharedClock,
    convert::timestamp,
    identity,
    validate::{self, FieldViolation},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::AbortOnDropHandle;
use tonic::{Request, Response, Status};
use uuid::Uuid;

mod internal;

use crate::{
    batch::joins::JoinBatcher,
    domain::{AdmissionPolicy, PolicyOverrides, QueueStatus, Token, TokenState, pre_queue_key},
    error::QueueError,
    service::admission::Admission,
    service::line::Line,
    service::rate_limit::JoinLimiter,
    service::rooms::Rooms,
    service::seen::Seen,
    service::watchers::Watchers,
    store::QueueCounts,
    store::{Join, QueueRepo},
};

/// Most WAITING tokens one replica remembers for cheap polls (~100 bytes each).
const WAITING_CACHE_CAPACITY: u64 = 1_000_000;

/// Longest silence on a `WatchQueue` stream: a heartbeat status is sent at least this often.
pub const WATCH_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// The stream `WatchQueue` returns.
pub type WatchStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchQueueResponse, Status>> + Send + 'static>>;

/// Implements the public and the internal queue API.
#[derive(Debug, Clone)]
pub struct QueueApi {
    repo: QueueRepo,
    /// Writes joins in batches.
    joining: JoinBatcher,
    rooms: Rooms,
    admission: Admission,
    line: Line,
    joins: JoinLimiter,
    seen: Seen,
    /// WAITING tokens this replica has seen (see `status_of`).
    waiting: moka::sync::Cache<Uuid, Token>,
    /// The service-wide admission policy (rooms may override parts of it).
    policy: AdmissionPolicy,
    clock: SharedClock,
    /// Live WatchQueue streams (one per token, a cap per replica).
    watchers: Watchers,
    /// GetQueueStats counts per concert, reused for one line refresh: however many callers,
    /// one count per concert and refresh on this replica.
    stats: moka::future::Cache<Uuid, QueueCounts>,
}

impl QueueApi {
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: QueueRepo,
        joining: JoinBatcher,
        rooms: Rooms,
        admission: Admission,
        line: Line,
        joins: JoinLimiter,
        seen: Seen,
        policy: AdmissionPolicy,
        clock: SharedClock,
        (watchers, line_refresh): (Watchers, std::time::Duration),
    ) -> Self {
        let waiting = moka::sync::Cache::builder()
            .max_capacity(WAITING_CACHE_CAPACITY)
            .time_to_idle(std::time::Duration::from_secs(15 * 60))
            .build();
        let stats = moka::future::Cache::builder().max_capacity(100_000).time_to_live(line_refresh).build();
        Self { repo, joining, rooms, admission, line, joins, seen, waiting, policy, clock, watchers, stats }
    }

    /// Expires a token and lets the next in line move up at once.
    pub(super) async fn expire(&self, token: &str) -> Result<pb::QueueStatus, Status> {
        let token = validate::uuid("token", token)?;
        let token = self.repo.expire(token, self.clock.now()).await?;
        self.remember(&token);
        self.admission.wake();
        Ok(to_proto(&QueueStatus::new(token, 0, 0, self.clock.now())))
    }

    async fn status_of(&self, token: &str) -> Result<pb::QueueStatus, Status> {
        let id = validate::uuid("token", token)?;
        let line = self.line.current();
        // A WAITING token changes only by leaving the line, which the snapshot shows: while
        // the snapshot still holds its seq, the remembered row is as current as the
        // position, and the poll costs no query. Otherwise the row is read now.
        let token = match self.waiting.get(&id) {
            Some(t) if line.room(t.concert_id).contains(t.place) => {
                self.seen.mark(id);
                t
            }
            _ => {
                let fresh = self.repo.get(id).await?;
                self.remember(&fresh);
                fresh
            }
        };
        self.placed(token, &line).await
    }

    /// The status of `token` against a snapshot of the lines, with its room's sale time.
    async fn placed(&self, token: Token, line: &crate::domain::LineSnapshot) -> Result<pb::QueueStatus, Status> {
        let room = self.rooms.get(token.concert_id).await?;
        Ok(to_proto(&QueueStatus::in_line(token, line, room.sale_opens_at, self.clock.now())))
    }

    /// Keeps WAITING tokens for cheap polls; forgets the others.
    fn remember(&self, token: &Token) {
        if token.state == TokenState::Waiting {
            self.seen.mark(token.token);
            self.waiting.insert(token.token, token.clone());
        } else {
            self.waiting.invalidate(&token.token);
        }
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn issue_token(&self, request: Request<IssueTokenRequest>) -> Result<Response<IssueTokenResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let concert_id = validate::uuid("concert_id", &r.concert_id)?;
        self.joins.check(&user_id).map_err(|retry_after| QueueError::RateLimited { retry_after })?;
        let room = self.rooms.get(concert_id).await?;
        let now = self.clock.now();
        // The database decides whether the key is kept (see `QueueRepo::join_many`).
        let token = self.joining.join(Join { user_id, concert_id, pre_queue_key: pre_queue_key(), now }).await?;
        if token.state == TokenState::Waiting {
            self.admission.wake();
        }
        self.remember(&token);
        let status = QueueStatus::in_line(token, &self.line.current(), room.sale_opens_at, self.clock.now());
        Ok(Response::new(IssueTokenResponse { status: Some(to_proto(&status)) }))
    }

    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn get_queue_status(
        &self,
        request: Request<GetQueueStatusRequest>,
    ) -> Result<Response<GetQueueStatusResponse>, Status> {
        let status = self.status_of(&request.get_ref().token).await?;
        require_owner(&request, &status.user_id)?;
        Ok(Response::new(GetQueueStatusResponse { status: Some(status) }))
    }

    type WatchQueueStream = WatchStream;

    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn watch_queue(&self, request: Request<WatchQueueRequest>) -> Result<Response<WatchStream>, Status> {
        let token = validate::uuid("token", &request.get_ref().token)?;
        let token = self.repo.get(token).await?;
        require_owner(&request, &token.user_id)?;
        let guard = self.watchers.register(token.token)?;
        let (tx, rx) = mpsc::channel(4);
        let feeder = AbortOnDropHandle::new(tokio::spawn(watch(self.clone(), token, tx, guard)));
        Ok(Response::new(Box::pin(Watch { updates: ReceiverStream::new(rx), _feeder: feeder })))
    }

    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn leave_queue(&self, request: Request<LeaveQueueRequest>) -> Result<Response<LeaveQueueResponse>, Status> {
        if identity::identity(&request).is_some() {
            // Only its owner may give a place in line away: read whose it is first.
            let token = self.repo.get(validate::uuid("token", &request.get_ref().token)?).await?;
            require_owner(&request, &token.user_id)?;
        }
        let status = self.expire(&request.get_ref().token).await?;
        Ok(Response::new(LeaveQueueResponse { status: Some(status) }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn get_queue_stats(
        &self,
        request: Request<GetQueueStatsRequest>,
    ) -> Result<Response<GetQueueStatsResponse>, Status> {
        let concert_id = validate::uuid("concert_id", &request.get_ref().concert_id)?;
        let room = self.rooms.fresh(concert_id).await?;
        let now = self.clock.now();
        let repo = self.repo.clone();
        let counts = self
            .stats
            .try_get_with(concert_id, async move { repo.counts(concert_id, now).await })
            .await
            .map_err(|e| Status::from(QueueError::shared(&e, "counting the line")))?;
        Ok(Response::new(GetQueueStatsResponse {
            concert_id: concert_id.to_string(),
            waiting_count: counts.waiting,
            active_count: counts.active,
            admitted_last_minute: counts.admitted_last_minute,
            serving_seq: counts.serving_seq,
            policy: Some(policy_to_proto(&self.policy.with_overrides(&room.overrides))),
            sale_opens_at: room.sale_opens_at.map(timestamp),
            pre_queue_count: if room.is_open(now) { 0 } else { counts.waiting },
        }))
    }
}

#[tonic::async_trait]
impl QueueAdminService for QueueApi {
    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn set_admission_policy(
        &self,
        request: Request<SetAdmissionPolicyRequest>,
    ) -> Result<Response<SetAdmissionPolicyResponse>, Status> {
        let r = request.into_inner();
        let concert_id = validate::uuid("concert_id", &r.concert_id)?;
        let overrides = PolicyOverrides {
            max_active: r.max_active,
            admit_per_sec: r.admit_per_sec,
            active_ttl_secs: r.active_ttl_seconds,
        };
        overrides.validate().map_err(|(field, rule)| FieldViolation::new(field, rule))?;
        let room = self.rooms.set_policy(concert_id, &overrides).await?;
        Ok(Response::new(SetAdmissionPolicyResponse {
            policy: Some(policy_to_proto(&self.policy.with_overrides(&room.overrides))),
        }))
    }
}

/// One `WatchQueue` stream and the task that feeds it. The stream owns the task: when tonic
/// drops the stream (the client went away, the server stopped), the task is aborted.
struct Watch {
    updates: ReceiverStream<Result<WatchQueueResponse, Status>>,
    _feeder: AbortOnDropHandle<()>,
}

impl tokio_stream::Stream for Watch {
    type Item = Result<WatchQueueResponse, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.updates).poll_next(cx)
    }
}

/// Feeds one `WatchQueue` stream from the replica's shared snapshot of the line. The token
/// is read from the database only when the snapshot no longer shows it waiting (admitted,
/// expired, or joined after the snapshot), so a waiting stream costs no queries.
async fn watch(
    api: QueueApi,
    mut token: Token,
    tx: mpsc::Sender<Result<WatchQueueResponse, Status>>,
    mut guard: crate::service::watchers::WatchGuard,
) {
    let mut line = api.line.subscribe();
    let mut heartbeat = tokio::time::interval(WATCH_HEARTBEAT);
    heartbeat.tick().await; // the first tick is immediate
    let mut sent: Option<(i32, u64, bool)> = None;
    let mut beat = false;
    let sale_opens_at = match api.rooms.get(token.concert_id).await {
        Ok(room) => room.sale_opens_at,
        Err(e) => {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
    };
    loop {
        let snapshot = line.borrow_and_update().clone();
        if !(token.state == TokenState::Waiting && snapshot.room(token.concert_id).contains(token.place)) {
            match api.repo.get(token.token).await {
                Ok(fresh) => token = fresh,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
        let status = to_proto(&QueueStatus::in_line(token.clone(), &snapshot, sale_opens_at, api.clock.now()));
        let key = (status.state, status.position, status.pre_queue);
        let done = status.state != pb::TokenState::Waiting as i32;
        if sent != Some(key) || beat {
            if tx.send(Ok(WatchQueueResponse { status: Some(status) })).await.is_err() {
                return; // the client went away
            }
            sent = Some(key);
        }
        if done {
            return;
        }
        // An open stream keeps its place: it counts as polling.
        api.seen.mark(token.token);
        tokio::select! {
            changed = line.changed() => {
                if changed.is_err() {
                    return;
                }
                beat = false;
            }
            _ = heartbeat.tick() => beat = true,
            () = tx.closed() => return,
            _ = &mut guard.replaced => {
                let _ = tx.send(Err(Status::aborted("a newer WatchQueue stream of this token replaced this one"))).await;
                return;
            }
        }
    }
}

fn state_to_proto(state: TokenState) -> pb::TokenState {
    match state {
        TokenState::Waiting => pb::TokenState::Waiting,
        TokenState::Active => pb::TokenState::Active,
        TokenState::Expired => pb::TokenState::Expired,
    }
}

fn to_proto(s: &QueueStatus) -> pb::QueueStatus {
    pb::QueueStatus {
        token: s.token.token.to_string(),
        user_id: s.token.user_id.clone(),
        state: state_to_proto(s.state).into(),
        position: s.position,
        waiting_count: s.waiting_count,
        expires_at: s.token.expires_at.map(timestamp),
        issued_at: Some(timestamp(s.token.issued_at)),
        estimated_wait_seconds: s.estimated_wait_secs,
        active_count: s.active_count,
        concert_id: s.token.concert_id.to_string(),
        pre_queue: s.pre_queue,
        sale_opens_at: s.sale_opens_at.map(timestamp),
    }
}

fn policy_to_proto(p: &AdmissionPolicy) -> pb::AdmissionPolicy {
    pb::AdmissionPolicy {
        max_active: p.max_active,
        admit_per_sec: p.admit_per_sec,
        active_ttl_seconds: u64::try_from(p.active_ttl.num_seconds()).unwrap_or(0),
    }
}
