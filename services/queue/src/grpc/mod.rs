//! gRPC handlers of the queue.

use concert_proto::concert::queue::v1::{
    self as pb, GetQueueStatsRequest, GetQueueStatsResponse, GetQueueStatusRequest, GetQueueStatusResponse,
    GetRoomStatsRequest, GetRoomStatsResponse, IssueTokenRequest, IssueTokenResponse, LeaveQueueRequest,
    LeaveQueueResponse, SetAdmissionPolicyRequest, SetAdmissionPolicyResponse, WatchQueueRequest, WatchQueueResponse,
    queue_admin_service_server::QueueAdminService, queue_service_server::QueueService,
};
use futures::StreamExt;
use platform::{
    admission::{Pass, PassSigner},
    auth::require_owner,
    clock::SharedClock,
    convert::timestamp,
    identity,
    validate::{self, FieldViolation},
};
use tonic::{Request, Response, Status};

mod internal;

use crate::{
    domain::{AdmissionPolicy, PolicyOverrides, QueueStatus, TokenState},
    service::{rooms::Rooms, stats::Stats, tokens::Tokens, watchers::Watchers},
};

/// The stream `WatchQueue` returns.
pub type WatchStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchQueueResponse, Status>> + Send + 'static>>;

/// Implements the public and the internal queue API: validates, checks ownership and
/// converts; the use cases are `service::tokens` (joins, positions, expiry) and
/// `service::rooms` (policies). Built by `app::run`, which owns the background tasks.
#[derive(Debug, Clone)]
pub struct QueueApi {
    /// Shared, not copied: each WatchQueue stream keeps a pointer to it.
    pub(crate) tokens: std::sync::Arc<Tokens>,
    pub(crate) rooms: Rooms,
    /// GetQueueStats' figures (counted once per room, line refresh and replica).
    pub(crate) stats: Stats,
    pub(crate) clock: SharedClock,
    /// Live WatchQueue streams (one per token, a cap per replica).
    pub(crate) watchers: Watchers,
    /// Signs the admission passes of ACTIVE tokens (`None`: no passes).
    /// Shared, not copied: each WatchQueue stream keeps a pointer to it.
    pub(crate) passes: Option<std::sync::Arc<PassSigner>>,
}

impl QueueApi {
    /// The same API over other use cases: the internal lane's, on its own pool (token
    /// checks, expiry, the operator's policies and figures).
    #[must_use]
    pub fn with_use_cases(&self, tokens: Tokens, stats: Stats, rooms: Rooms) -> Self {
        Self { tokens: std::sync::Arc::new(tokens), stats, rooms, ..self.clone() }
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn issue_token(&self, request: Request<IssueTokenRequest>) -> Result<Response<IssueTokenResponse>, Status> {
        let user_id = identity::user(&request, "user_id", &request.get_ref().user_id)?;
        let r = request.into_inner();
        let concert_id = validate::uuid("concert_id", &r.concert_id)?;
        let status = self.tokens.join(user_id, concert_id).await?;
        Ok(Response::new(IssueTokenResponse { status: Some(for_owner(&status, self.passes.as_deref())) }))
    }

    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn get_queue_status(
        &self,
        request: Request<GetQueueStatusRequest>,
    ) -> Result<Response<GetQueueStatusResponse>, Status> {
        let id = validate::uuid("token", &request.get_ref().token)?;
        let status = self.tokens.status(id).await?;
        require_owner(&request, &status.token.user_id)?;
        Ok(Response::new(GetQueueStatusResponse { status: Some(for_owner(&status, self.passes.as_deref())) }))
    }

    type WatchQueueStream = WatchStream;

    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn watch_queue(&self, request: Request<WatchQueueRequest>) -> Result<Response<WatchStream>, Status> {
        let token = validate::uuid("token", &request.get_ref().token)?;
        let token = self.tokens.last_seen(token).await?;
        require_owner(&request, &token.user_id)?;
        let guard = self.watchers.register(token.token)?;
        let passes = self.passes.clone();
        let feed = self.tokens.watch(token, guard).await?.map(move |update| {
            update.map(|s| WatchQueueResponse { status: Some(for_owner(&s, passes.as_deref())) }).map_err(Status::from)
        });
        Ok(Response::new(Box::pin(feed)))
    }

    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn leave_queue(&self, request: Request<LeaveQueueRequest>) -> Result<Response<LeaveQueueResponse>, Status> {
        let id = validate::uuid("token", &request.get_ref().token)?;
        if identity::identity(&request).is_some() {
            // Only its owner may give a place in line away: read whose it is first.
            require_owner(&request, &self.tokens.last_seen(id).await?.user_id)?;
        }
        let status = self.tokens.expire(id).await?;
        Ok(Response::new(LeaveQueueResponse { status: Some(to_proto(&status)) }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn get_queue_stats(
        &self,
        request: Request<GetQueueStatsRequest>,
    ) -> Result<Response<GetQueueStatsResponse>, Status> {
        Ok(Response::new(self.room_stats(&request.get_ref().concert_id).await?))
    }
}

impl QueueApi {
    /// One room's figures (GetQueueStats on the public port, GetRoomStats on the internal one).
    async fn room_stats(&self, concert_id: &str) -> Result<GetQueueStatsResponse, Status> {
        let concert_id = validate::uuid("concert_id", concert_id)?;
        let stats = self.stats.of(concert_id).await?;
        let (room, counts) = (&stats.room, &stats.counts);
        Ok(GetQueueStatsResponse {
            concert_id: concert_id.to_string(),
            waiting_count: counts.waiting,
            active_count: counts.active,
            admitted_last_minute: counts.admitted_last_minute,
            serving_seq: counts.serving_seq,
            policy: Some(policy_to_proto(&stats.policy)),
            sale_opens_at: room.sale_opens_at.map(timestamp),
            pre_queue_count: if room.is_open(stats.at) { 0 } else { counts.waiting },
            active_limit: stats.policy.concurrency(counts.pace, stats.at),
        })
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
        Ok(Response::new(SetAdmissionPolicyResponse { policy: Some(policy_to_proto(&self.stats.policy_of(&room))) }))
    }

    #[tracing::instrument(skip_all, fields(concert_id = %request.get_ref().concert_id))]
    async fn get_room_stats(
        &self,
        request: Request<GetRoomStatsRequest>,
    ) -> Result<Response<GetRoomStatsResponse>, Status> {
        let stats = self.room_stats(&request.get_ref().concert_id).await?;
        Ok(Response::new(GetRoomStatsResponse { stats: Some(stats) }))
    }
}

fn state_to_proto(state: TokenState) -> pb::TokenState {
    match state {
        TokenState::Waiting => pb::TokenState::Waiting,
        TokenState::Active => pb::TokenState::Active,
        TokenState::Expired => pb::TokenState::Expired,
    }
}

/// The status as its owner sees it: with the admission pass while ACTIVE. A pass that cannot
/// be signed is left out (logged): the bare token still works, checked with the queue.
fn for_owner(s: &QueueStatus, passes: Option<&PassSigner>) -> pb::QueueStatus {
    let mut status = to_proto(s);
    if let (TokenState::Active, Some(signer), Some(expires_at)) = (s.state, passes, s.token.expires_at) {
        let pass =
            Pass { token: s.token.token, user_id: s.token.user_id.clone(), concert_id: s.token.concert_id, expires_at };
        match signer.sign(&pass) {
            Ok(compact) => status.admission_pass = compact,
            Err(e) => tracing::error!(error = %e, "cannot sign an admission pass"),
        }
    }
    status
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
        admission_pass: String::new(),
        poll_after_seconds: s.poll_after_secs,
        sold_out: s.sold_out,
    }
}

fn policy_to_proto(p: &AdmissionPolicy) -> pb::AdmissionPolicy {
    pb::AdmissionPolicy {
        max_active: p.max_active,
        admit_per_sec: p.admit_per_sec,
        active_ttl_seconds: u64::try_from(p.active_ttl.num_seconds()).unwrap_or(0),
    }
}
