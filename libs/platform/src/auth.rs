//! Queue-token authentication for protected RPCs.
//!
//! Protected RPCs take the queue token as gRPC metadata `authorization: Bearer <token>`.
//! The user is always the token's user, never a request field. The token is checked with
//! the queue service's internal `ValidateToken` on every call, so a token that expired or
//! was used to pay is refused at once.
use chrono::{DateTime, Utc};
use concert_proto::concert::queue::v1::{
    TokenState, ValidateTokenRequest, queue_internal_service_client::QueueInternalServiceClient,
};
use tonic::{Code, Request, Status, metadata::MetadataMap, transport::Channel};
use uuid::Uuid;

use crate::status::{from_peer, with_reason};

/// Who is calling: an ACTIVE token and the user it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The queue token.
    pub token: Uuid,
    /// The user the token is bound to.
    pub user_id: String,
}

/// Reads the bearer token from request metadata.
///
/// # Errors
/// UNAUTHENTICATED (reason TOKEN_MISSING / TOKEN_MALFORMED) when the header is absent or
/// is not `Bearer <uuid>`.
pub fn bearer_token(metadata: &MetadataMap) -> Result<Uuid, Status> {
    let value = metadata.get("authorization").ok_or_else(|| {
        with_reason(Code::Unauthenticated, "TOKEN_MISSING", "authorization: Bearer <queue token> is required")
    })?;
    let value = value
        .to_str()
        .map_err(|_| with_reason(Code::Unauthenticated, "TOKEN_MALFORMED", "authorization header is not ASCII"))?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or_else(|| {
        with_reason(Code::Unauthenticated, "TOKEN_MALFORMED", "authorization must be `Bearer <token>`")
    })?;
    Uuid::parse_str(token.trim())
        .map_err(|_| with_reason(Code::Unauthenticated, "TOKEN_MALFORMED", "queue token must be a UUID"))
}

/// Checks queue tokens against the queue service.
#[derive(Debug, Clone)]
pub struct TokenValidator {
    client: QueueInternalServiceClient<Channel>,
}

impl TokenValidator {
    /// A validator calling the queue service over `channel`.
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self { client: QueueInternalServiceClient::new(channel) }
    }

    /// Authenticates a protected call.
    ///
    /// # Errors
    /// UNAUTHENTICATED when the token is missing, malformed, unknown or EXPIRED;
    /// PERMISSION_DENIED (reason TOKEN_WAITING) while it is still WAITING; UNAVAILABLE when
    /// the queue service cannot be reached.
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let token = bearer_token(request.metadata())?;
        self.check(token, Utc::now()).await
    }

    async fn check(&self, token: Uuid, now: DateTime<Utc>) -> Result<Principal, Status> {
        let response = self.client.clone().validate_token(ValidateTokenRequest { token: token.to_string() }).await;
        let status = match response {
            Ok(r) => r.into_inner().status.unwrap_or_default(),
            Err(s) if s.code() == Code::NotFound => {
                return Err(with_reason(Code::Unauthenticated, "TOKEN_UNKNOWN", "unknown queue token"));
            }
            Err(s) => return Err(from_peer("queue", &s)),
        };
        match TokenState::try_from(status.state) {
            Ok(TokenState::Active) => {
                let expired = status
                    .expires_at
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
                    .is_some_and(|t| t <= now);
                if expired {
                    Err(with_reason(Code::Unauthenticated, "TOKEN_EXPIRED", "queue token has expired"))
                } else {
                    Ok(Principal { token, user_id: status.user_id })
                }
            }
            Ok(TokenState::Waiting) => Err(with_reason(
                Code::PermissionDenied,
                "TOKEN_WAITING",
                format!("still waiting in the queue (position {})", status.position),
            )),
            _ => Err(with_reason(Code::Unauthenticated, "TOKEN_EXPIRED", "queue token has expired")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn bearer_token_parses_and_rejects() {
        let id = Uuid::new_v4();
        assert_eq!(bearer_token(&metadata(&format!("Bearer {id}"))).unwrap(), id);
        assert_eq!(bearer_token(&MetadataMap::new()).unwrap_err().code(), Code::Unauthenticated);
        assert_eq!(bearer_token(&metadata("Basic abc")).unwrap_err().code(), Code::Unauthenticated);
        assert_eq!(bearer_token(&metadata("Bearer nope")).unwrap_err().code(), Code::Unauthenticated);
    }
}
