//! The internal API: token checks and expiry for protected services, and the token export
//! for audits.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use concert_proto::concert::queue::v1::{
    self as pb, ExpireTokenRequest, ExpireTokenResponse, ExpireTokensRequest, ExpireTokensResponse,
    ExportTokensRequest, ExportTokensResponse, ValidateTokenRequest, ValidateTokenResponse, ValidateTokensRequest,
    ValidateTokensResponse, queue_internal_service_server::QueueInternalService,
};
use platform::{convert::timestamp, validate};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{QueueApi, state_to_proto, to_proto};
use crate::domain::{QueueStatus, Token, TokenHistory};

/// Most tokens one ExpireTokens call may name.
const MAX_EXPIRE_BATCH: usize = 1_000;
/// Most tokens one ValidateTokens call may name.
const MAX_VALIDATE_BATCH: usize = 1_000;
/// Tokens per ExportTokens message (a message stays far below the 4 MiB default limit).
const EXPORT_CHUNK: usize = 1_000;

/// The stream ExportTokens returns.
pub type ExportTokensStream = futures::stream::Iter<std::vec::IntoIter<Result<ExportTokensResponse, Status>>>;

#[tonic::async_trait]
impl QueueInternalService for QueueApi {
    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let token = validate::uuid("token", &request.into_inner().token)?;
        let token = self.tokens.get(token).await?;
        Ok(Response::new(ValidateTokenResponse { status: Some(validation(token, self.clock.now())) }))
    }

    #[tracing::instrument(skip_all, fields(tokens = request.get_ref().tokens.len()))]
    async fn validate_tokens(
        &self,
        request: Request<ValidateTokensRequest>,
    ) -> Result<Response<ValidateTokensResponse>, Status> {
        let tokens = validate::uuids("tokens", &request.get_ref().tokens, MAX_VALIDATE_BATCH)?;
        let now = self.clock.now();
        let found: HashMap<Uuid, pb::QueueStatus> =
            self.tokens.get_many(&tokens).await?.into_iter().map(|t| (t.token, validation(t, now))).collect();
        let results = tokens.iter().map(|id| pb::TokenValidation { status: found.get(id).cloned() }).collect();
        Ok(Response::new(ValidateTokensResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(token = %platform::telemetry::redacted(&request.get_ref().token)))]
    async fn expire_token(
        &self,
        request: Request<ExpireTokenRequest>,
    ) -> Result<Response<ExpireTokenResponse>, Status> {
        let token = validate::uuid("token", &request.into_inner().token)?;
        let status = self.tokens.expire(token).await?;
        Ok(Response::new(ExpireTokenResponse { status: Some(to_proto(&status)) }))
    }

    #[tracing::instrument(skip_all, fields(tokens = request.get_ref().tokens.len()))]
    async fn expire_tokens(
        &self,
        request: Request<ExpireTokensRequest>,
    ) -> Result<Response<ExpireTokensResponse>, Status> {
        let tokens = validate::uuids("tokens", &request.get_ref().tokens, MAX_EXPIRE_BATCH)?;
        let expired = self.tokens.expire_many(&tokens).await?;
        Ok(Response::new(ExpireTokensResponse { expired }))
    }

    type ExportTokensStream = ExportTokensStream;

    #[tracing::instrument(skip_all)]
    async fn export_tokens(
        &self,
        request: Request<ExportTokensRequest>,
    ) -> Result<Response<Self::ExportTokensStream>, Status> {
        let concert_id = validate::uuid("concert_id", &request.get_ref().concert_id)?;
        let history = self.tokens.export(concert_id).await?;
        let messages: Vec<_> = history
            .chunks(EXPORT_CHUNK)
            .map(|c| Ok(ExportTokensResponse { tokens: c.iter().map(record).collect() }))
            .collect();
        Ok(Response::new(futures::stream::iter(messages)))
    }
}

/// What ValidateToken and ValidateTokens say of a token: its state as of `now`, without a
/// place in line (not needed to authorise a call, so the read stays a primary-key read).
fn validation(token: Token, now: DateTime<Utc>) -> pb::QueueStatus {
    to_proto(&QueueStatus::new(token, 0, 0, now))
}

fn record(h: &TokenHistory) -> pb::TokenRecord {
    pb::TokenRecord {
        token: h.token.token.to_string(),
        user_id: h.token.user_id.clone(),
        state: state_to_proto(h.token.state).into(),
        place: h.token.place,
        pre_queue: h.token.place < 0,
        issued_at: Some(timestamp(h.token.issued_at)),
        activated_at: h.activated_at.map(timestamp),
        expired_at: h.expired_at.map(timestamp),
        // Round numbers come from a sequence starting at 1.
        admission_round: h.admission_round.and_then(|r| u64::try_from(r).ok()).unwrap_or(0),
    }
}
