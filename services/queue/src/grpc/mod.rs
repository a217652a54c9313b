//! gRPC handlers of the queue.
use concert_proto::concert::queue::v1::{
    self as pb, ExpireTokenRequest, ExpireTokenResponse, ExpireTokensRequest, ExpireTokensResponse,
    GetQueueStatsRequest, GetQueueStatsResponse, GetQueueStatusRequest, GetQueueStatusResponse, IssueTokenRequest,
    IssueTokenResponse, LeaveQueueRequest, LeaveQueueResponse, ValidateTokenRequest, ValidateTokenResponse,
    queue_internal_service_server::QueueInternalService, queue_service_server::QueueService,
};
use platform::{
    clock::SharedClock,
    convert::timestamp,
    validate::{self, FieldViolation},
};
use tonic::{Request, Response, Status};

use crate::{
    admission::Admission,
    domain::{AdmissionPolicy, QueueStatus, TokenState},
    repo::QueueRepo,
};

/// Implements the public and the internal queue API.
#[derive(Debug, Clone)]
pub struct QueueApi {
    repo: QueueRepo,
    admission: Admission,
    policy: AdmissionPolicy,
    clock: SharedClock,
}

impl QueueApi {
    #[must_use]
    pub fn new(repo: QueueRepo, admission: Admission, policy: AdmissionPolicy, clock: SharedClock) -> Self {
        Self { repo, admission, policy, clock }
    }

    /// Expires a token and lets the next in line move up at once.
    async fn expire(&self, token: &str) -> Result<pb::QueueStatus, Status> {
        let token = validate::uuid("token", token)?;
        let token = self.repo.expire(token, self.clock.now()).await?;
        self.admission.wake();
        Ok(to_proto(&QueueStatus::new(token, 0, 0, self.clock.now())))
    }

    async fn status_of(&self, token: &str) -> Result<pb::QueueStatus, Status> {
        let token = validate::uuid("token", token)?;
        let status = self.repo.status(token, self.clock.now()).await?;
        Ok(to_proto(&status))
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn issue_token(&self, request: Request<IssueTokenRequest>) -> Result<Response<IssueTokenResponse>, Status> {
        let user_id = validate::key("user_id", &request.into_inner().user_id)?;
        let token = self.repo.join(&user_id, self.clock.now()).await?;
        if token.state == TokenState::Waiting {
            self.admission.wake();
        }
        let status = self.status_of(&token.token.to_string()).await?;
        Ok(Response::new(IssueTokenResponse { status: Some(status) }))
    }

    #[tracing::instrument(skip_all, fields(token = %request.get_ref().token))]
    async fn get_queue_status(
        &self,
        request: Request<GetQueueStatusRequest>,
    ) -> Result<Response<GetQueueStatusResponse>, Status> {
        let status = self.status_of(&request.into_inner().token).await?;
        Ok(Response::new(GetQueueStatusResponse { status: Some(status) }))
    }

    #[tracing::instrument(skip_all, fields(token = %request.get_ref().token))]
    async fn leave_queue(&self, request: Request<LeaveQueueRequest>) -> Result<Response<LeaveQueueResponse>, Status> {
        let status = self.expire(&request.into_inner().token).await?;
        Ok(Response::new(LeaveQueueResponse { status: Some(status) }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_queue_stats(
        &self,
        _request: Request<GetQueueStatsRequest>,
    ) -> Result<Response<GetQueueStatsResponse>, Status> {
        let counts = self.repo.counts(self.clock.now()).await?;
        Ok(Response::new(GetQueueStatsResponse {
            waiting_count: counts.waiting,
            active_count: counts.active,
            admitted_last_minute: counts.admitted_last_minute,
            serving_seq: counts.serving_seq,
            max_active: self.policy.max_active,
            active_ttl_seconds: u64::try_from(self.policy.active_ttl.num_seconds()).unwrap_or(0),
        }))
    }
}

#[tonic::async_trait]
impl QueueInternalService for QueueApi {
    #[tracing::instrument(skip_all, fields(token = %request.get_ref().token))]
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let token = validate::uuid("token", &request.into_inner().token)?;
        let token = self.repo.get(token).await?;
        // Position is not needed to authorise a call, so this stays a primary-key read.
        let status = QueueStatus::new(token, 0, 0, self.clock.now());
        Ok(Response::new(ValidateTokenResponse { status: Some(to_proto(&status)) }))
    }

    #[tracing::instrument(skip_all, fields(token = %request.get_ref().token))]
    async fn expire_token(
        &self,
        request: Request<ExpireTokenRequest>,
    ) -> Result<Response<ExpireTokenResponse>, Status> {
        let status = self.expire(&request.into_inner().token).await?;
        Ok(Response::new(ExpireTokenResponse { status: Some(status) }))
    }

    #[tracing::instrument(skip_all, fields(tokens = request.get_ref().tokens.len()))]
    async fn expire_tokens(
        &self,
        request: Request<ExpireTokensRequest>,
    ) -> Result<Response<ExpireTokensResponse>, Status> {
        let tokens = &request.get_ref().tokens;
        if tokens.len() > MAX_EXPIRE_BATCH {
            return Err(FieldViolation::new("tokens", format!("at most {MAX_EXPIRE_BATCH}")).into());
        }
        let tokens = tokens.iter().map(|t| validate::uuid("tokens", t)).collect::<Result<Vec<_>, _>>()?;
        let expired = self.repo.expire_many(&tokens, self.clock.now()).await?;
        if expired > 0 {
            self.admission.wake();
        }
        Ok(Response::new(ExpireTokensResponse { expired }))
    }
}

/// Most tokens one ExpireTokens call may name.
const MAX_EXPIRE_BATCH: usize = 1_000;

fn to_proto(s: &QueueStatus) -> pb::QueueStatus {
    let state = match s.state {
        TokenState::Waiting => pb::TokenState::Waiting,
        TokenState::Active => pb::TokenState::Active,
        TokenState::Expired => pb::TokenState::Expired,
    };
    pb::QueueStatus {
        token: s.token.token.to_string(),
        user_id: s.token.user_id.clone(),
        state: state.into(),
        position: s.position,
        waiting_count: s.waiting_count,
        expires_at: s.token.expires_at.map(timestamp),
        issued_at: Some(timestamp(s.token.issued_at)),
    }
}
