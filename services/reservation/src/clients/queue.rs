//! The queue's internal API: expiring the tokens of paid payments, and asking which tokens'
//! admissions ended.
use concert_proto::concert::queue::v1::{
    ExpireTokenRequest, ExpireTokensRequest, TokenState, ValidateTokensRequest,
    queue_internal_service_client::QueueInternalServiceClient,
};
use platform::{
    grpc_client::PeerChannel,
    outbound::{CallPolicy, Deadline, Idempotency, Peer},
    status::from_peer,
};
use tonic::Code;
use uuid::Uuid;

use crate::error::ReservationError;

/// The queue's internal API.
#[derive(Debug, Clone)]
pub struct Queue(Peer<QueueInternalServiceClient<PeerChannel>>);

impl Queue {
    #[must_use]
    pub fn new(channel: PeerChannel, policy: CallPolicy) -> Self {
        Self(Peer::new("queue", QueueInternalServiceClient::new(channel), policy))
    }

    /// Expires a token (idempotent, so retried); an unknown token counts as expired.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the queue cannot be reached.
    pub async fn expire_token(&self, token: Uuid, deadline: Deadline) -> Result<(), ReservationError> {
        let request = ExpireTokenRequest { token: token.to_string() };
        let answer =
            self.0.unary(deadline, Idempotency::Idempotent, &request, async |mut c, r| c.expire_token(r).await).await;
        match answer {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(ReservationError::Peer(from_peer("queue", &s))),
        }
    }
}

impl Queue {
    /// Expires many tokens at once (idempotent, so retried).
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the queue cannot be reached.
    pub async fn expire_tokens(&self, tokens: &[Uuid], deadline: Deadline) -> Result<(), ReservationError> {
        let request = ExpireTokensRequest { tokens: tokens.iter().map(Uuid::to_string).collect() };
        self.0
            .unary(deadline, Idempotency::Idempotent, &request, async |mut c, r| c.expire_tokens(r).await)
            .await
            .map(|_| ())
            .map_err(|s| ReservationError::Peer(from_peer("queue", &s)))
    }
}

/// Most tokens one ValidateTokens call may carry (the queue's limit).
const MAX_VALIDATE_BATCH: usize = 1_000;

impl Queue {
    /// Of `tokens`, those whose admission has ended: EXPIRED (the token left the line, its
    /// active time ran out, or it paid) or unknown to the queue (purged after its retention).
    /// A token still WAITING or ACTIVE is not among them. One ValidateTokens call per 1,000
    /// tokens, on the queue's internal lane.
    ///
    /// # Errors
    /// [`ReservationError::Peer`] when the queue cannot be reached: then nothing is known to
    /// have ended.
    pub async fn ended_admissions(&self, tokens: &[Uuid], deadline: Deadline) -> Result<Vec<Uuid>, ReservationError> {
        let mut ended = Vec::new();
        for chunk in tokens.chunks(MAX_VALIDATE_BATCH) {
            let request = ValidateTokensRequest { tokens: chunk.iter().map(Uuid::to_string).collect() };
            let answer = self
                .0
                .unary(deadline, Idempotency::Idempotent, &request, async |mut c, r| c.validate_tokens(r).await)
                .await
                .map_err(|s| ReservationError::Peer(from_peer("queue", &s)))?;
            // One result per token, in request order.
            for (token, result) in chunk.iter().zip(answer.results) {
                if result.status.is_none_or(|s| s.state == TokenState::Expired as i32) {
                    ended.push(*token);
                }
            }
        }
        Ok(ended)
    }
}
