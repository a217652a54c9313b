//! Queue-token authentication for protected RPCs.
//!
//! Protected RPCs take gRPC metadata `x-queue-token`: the **admission pass** the waiting room
//! handed out when the token became ACTIVE (see [`crate::admission`]), or the bare queue
//! token id (the `authorization` header carries the caller's access token, see
//! [`crate::identity`]). The user is always the token's user, never a request field, and the
//! token must have been issued to the caller the access token names.
//!
//! A pass is verified here, with the waiting room's public key: a read
//! ([`TokenValidator::authenticate`]) with a pass never calls the queue, so admitted people's
//! seat maps do not wait behind the line's joins and polls. A bare token id is checked with
//! the queue as follows.
//!
//! Tokens are checked with the queue service's internal `ValidateTokens`: the tokens of
//! concurrent requests go to the queue together (see [`crate::batch`]), one call and one
//! database read for a batch instead of one per request. An ACTIVE answer
//! is cached in this replica for `TOKEN_CACHE_TTL_MS` (default 1,000 ms; 0 disables) so
//! protected calls do not cost a queue round trip each. What the cache cannot hide:
//! - time-based expiry: the cached `expires_at` is compared with the clock on every call;
//! - expiry by payment: reservation refuses a token that paid, from its own `payments`
//!   table, on every HoldSeat and PayReservation, so no second booking slips through.
//!
//! What it can delay, by at most the TTL: a read-only catalog call (ListSeats,
//! ListAvailableDates) made with a token that another replica has just expired or that left
//! the queue. Calls that write (HoldSeat, PayReservation, CancelReservation) use
//! [`TokenValidator::authenticate_fresh`], which always asks the queue: a token that left the
//! line (LeaveQueue) gave its slot to the next person and must not book anything more.
use std::time::Duration;

use chrono::{DateTime, Utc};
use concert_proto::concert::queue::v1::{
    QueueStatus, TokenState, ValidateTokensRequest, queue_internal_service_client::QueueInternalServiceClient,
};
use moka::future::Cache;
use tonic::{Code, Request, Status, metadata::MetadataMap};
use uuid::Uuid;

use crate::{
    admission::{Pass, PassRefusal, PassVerifier, looks_like_pass},
    batch::{BatchError, BatchHandler, Batcher},
    clock::SharedClock,
    grpc_client::PeerChannel,
    outbound::{CallPolicy, Deadline, Idempotency, Peer},
    status::{from_peer, with_reason},
};

/// Who is calling: an ACTIVE token and the user it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The queue token.
    pub token: Uuid,
    /// The user the token is bound to.
    pub user_id: String,
    /// The concert whose waiting room admitted the token: the only concert it unlocks.
    pub concert_id: Uuid,
    /// When the token stops being ACTIVE.
    pub expires_at: DateTime<Utc>,
}

impl Principal {
    /// Checks that the token was admitted for `concert_id` (the concert of the schedule or
    /// reservation being touched). Rule from the waiting room: a token unlocks only the
    /// concert whose queue it waited in.
    ///
    /// # Errors
    /// PERMISSION_DENIED (reason TOKEN_WRONG_CONCERT) for a token of another concert.
    pub fn require_concert(&self, concert_id: Uuid) -> Result<(), Status> {
        if self.concert_id == concert_id { Ok(()) } else { Err(wrong_concert()) }
    }
}

/// PERMISSION_DENIED (reason TOKEN_WRONG_CONCERT): the token was admitted for another concert.
#[must_use]
pub fn wrong_concert() -> Status {
    with_reason(
        Code::PermissionDenied,
        "TOKEN_WRONG_CONCERT",
        "this queue token was admitted for another concert; join that concert's waiting room",
    )
}

/// The metadata key carrying the queue token on protected RPCs.
pub const QUEUE_TOKEN_HEADER: &str = "x-queue-token";

/// What `x-queue-token` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bare queue token id: checked with the queue.
    Token(Uuid),
    /// An admission pass (compact JWS): verified locally.
    Pass(String),
}

/// Reads `x-queue-token: <admission pass or queue token>` from request metadata.
///
/// # Errors
/// UNAUTHENTICATED (reason TOKEN_MISSING / TOKEN_MALFORMED) when the header is absent, or is
/// neither a UUID nor shaped like a pass.
pub fn credential(metadata: &MetadataMap) -> Result<Credential, Status> {
    let value = metadata.get(QUEUE_TOKEN_HEADER).ok_or_else(|| {
        with_reason(
            Code::Unauthenticated,
            "TOKEN_MISSING",
            "x-queue-token: <admission pass or queue token> is required",
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| with_reason(Code::Unauthenticated, "TOKEN_MALFORMED", "x-queue-token is not ASCII"))?
        .trim();
    if looks_like_pass(value) {
        return Ok(Credential::Pass(value.to_owned()));
    }
    Uuid::parse_str(value).map(Credential::Token).map_err(|_| {
        with_reason(
            Code::Unauthenticated,
            "TOKEN_MALFORMED",
            "x-queue-token must be an admission pass or a queue token",
        )
    })
}

/// Checks that a queue token belongs to the verified caller, when there is one (there is
/// none when user authentication is disabled).
///
/// # Errors
/// PERMISSION_DENIED (reason TOKEN_NOT_YOURS) when the token was issued to another user.
pub fn require_owner<T>(request: &Request<T>, token_user: &str) -> Result<(), Status> {
    match crate::identity::identity(request) {
        Some(identity) if identity.subject != token_user => {
            Err(with_reason(Code::PermissionDenied, "TOKEN_NOT_YOURS", "this queue token was issued to another user"))
        }
        _ => Ok(()),
    }
}

/// Verifies admission passes and checks queue tokens against the queue service, caching
/// ACTIVE answers briefly.
#[derive(Debug, Clone)]
pub struct TokenValidator {
    lookups: Batcher<QueueLookup>,
    cache: Option<Cache<Uuid, Principal>>,
    /// The waiting room's public key; `None`: passes are refused (TOKEN_MALFORMED).
    passes: Option<PassVerifier>,
    clock: SharedClock,
}

/// Most tokens one replica keeps cached.
const CACHE_CAPACITY: u64 = 200_000;
/// Most tokens one ValidateTokens call carries (the queue accepts up to 1,000).
const MAX_LOOKUP_BATCH: usize = 128;
/// ValidateTokens calls in flight at once (two: fewer, fuller batches cost the queue less per
/// token; see reservation's `batch::payment_starts::WORKERS` for the measurement).
const LOOKUP_WORKERS: usize = 2;

/// Asks the queue about a batch of tokens in one ValidateTokens call (an idempotent read,
/// under the default call policy); `None` for an unknown token.
#[derive(Debug)]
struct QueueLookup(Peer<QueueInternalServiceClient<PeerChannel>>);

impl BatchHandler for QueueLookup {
    type Item = Uuid;
    type Output = Option<QueueStatus>;
    type Error = Status;

    async fn run(&self, tokens: &[Uuid]) -> Result<Vec<Option<QueueStatus>>, Status> {
        let request = ValidateTokensRequest { tokens: tokens.iter().map(Uuid::to_string).collect() };
        let answer = self
            .0
            .unary(Deadline::NONE, Idempotency::Idempotent, &request, async |mut c, r| c.validate_tokens(r).await);
        // One image ships every service, so every queue replica has ValidateTokens.
        Ok(answer.await?.results.into_iter().map(|r| r.status).collect())
    }
}

impl TokenValidator {
    /// A validator calling the queue over `channel`, caching ACTIVE answers for `cache_ttl`
    /// (zero disables the cache), and accepting the passes `passes` verifies. Its lookup
    /// workers are spawned into `tasks`.
    #[must_use]
    pub fn new(
        channel: PeerChannel,
        cache_ttl: Duration,
        passes: Option<PassVerifier>,
        clock: SharedClock,
        tasks: &mut crate::app::Tasks,
    ) -> Self {
        let cache = (!cache_ttl.is_zero())
            .then(|| Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(cache_ttl).build());
        let lookups = Batcher::start(
            QueueLookup(Peer::new("queue", QueueInternalServiceClient::new(channel), CallPolicy::default())),
            LOOKUP_WORKERS,
            MAX_LOOKUP_BATCH,
            tasks,
        );
        Self { lookups, cache, passes, clock }
    }

    /// Authenticates a protected call that only reads. A pass is verified here and trusted
    /// until its `exp`: a read may still be answered for a token that paid or left the line
    /// since (the window is the rest of the admission, at most the room's active TTL).
    ///
    /// # Errors
    /// UNAUTHENTICATED when the token is missing, malformed, unknown or EXPIRED (reasons
    /// TOKEN_MISSING, TOKEN_MALFORMED, TOKEN_INVALID for a pass the waiting room did not
    /// sign, TOKEN_UNKNOWN, TOKEN_EXPIRED);
    /// PERMISSION_DENIED (reason TOKEN_NOT_YOURS) when it was issued to another user than
    /// the access token names, (reason TOKEN_WAITING) while it is still WAITING; UNAVAILABLE
    /// when the queue service cannot be reached.
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.authenticate_with(request, false).await
    }

    /// Authenticates a call that writes: a pass is verified first (a forged one never reaches
    /// the queue), then the token's state is read from the queue now (the answer still
    /// refreshes the cache for reads), so a token that left the queue or expired on another
    /// replica is refused at once. Checks of concurrent calls still go to the queue together,
    /// to its internal port, which the queue serves apart from the line's traffic.
    ///
    /// # Errors
    /// As [`TokenValidator::authenticate`].
    pub async fn authenticate_fresh<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.authenticate_with(request, true).await
    }

    async fn authenticate_with<T>(&self, request: &Request<T>, fresh: bool) -> Result<Principal, Status> {
        let now = self.clock.now();
        let token = match credential(request.metadata())? {
            Credential::Token(token) => token,
            Credential::Pass(compact) => {
                let pass = self.verified_pass(request, &compact, now)?;
                if !fresh {
                    return Ok(Principal::from(pass));
                }
                pass.token
            }
        };
        if !fresh
            && let Some(cache) = &self.cache
            && let Some(cached) = cache.get(&token).await
        {
            require_owner(request, &cached.user_id)?;
            return if cached.expires_at > now { Ok(cached) } else { Err(expired()) };
        }
        let principal = self.check(token, now).await?;
        if let Some(cache) = &self.cache {
            cache.insert(token, principal.clone()).await;
        }
        require_owner(request, &principal.user_id)?;
        Ok(principal)
    }

    /// The admission a pass in `x-queue-token` shows, verified here without asking the queue
    /// (so not whether the token was revoked since); `None` for a bare token id. For refusing
    /// a call before the queue is asked, never for allowing a write.
    ///
    /// # Errors
    /// As [`TokenValidator::authenticate`] for a missing, malformed, forged or ended
    /// credential, or one of another user.
    pub fn admission_shown<T>(&self, request: &Request<T>) -> Result<Option<Principal>, Status> {
        match credential(request.metadata())? {
            Credential::Token(_) => Ok(None),
            Credential::Pass(compact) => {
                Ok(Some(Principal::from(self.verified_pass(request, &compact, self.clock.now())?)))
            }
        }
    }

    /// The token `x-queue-token` names, whether or not it is still usable: a bare id, or the
    /// token of a pass the waiting room signed (ended or not). For asking how a payment with
    /// a spent token ended.
    ///
    /// # Errors
    /// UNAUTHENTICATED (TOKEN_MISSING, TOKEN_MALFORMED, TOKEN_INVALID).
    pub fn token_named(&self, metadata: &MetadataMap) -> Result<Uuid, Status> {
        match credential(metadata)? {
            Credential::Token(token) => Ok(token),
            Credential::Pass(compact) => Ok(self.pass_verifier()?.decode(&compact).map_err(pass_refused)?.token),
        }
    }

    /// The pass `compact`, signed by the waiting room, unended at `now`, and the caller's own.
    fn verified_pass<T>(&self, request: &Request<T>, compact: &str, now: DateTime<Utc>) -> Result<Pass, Status> {
        let pass = self.pass_verifier()?.verify(compact, now).map_err(pass_refused)?;
        require_owner(request, &pass.user_id)?;
        Ok(pass)
    }

    fn pass_verifier(&self) -> Result<&PassVerifier, Status> {
        self.passes.as_ref().ok_or_else(|| {
            with_reason(
                Code::Unauthenticated,
                "TOKEN_MALFORMED",
                "this service is not configured for admission passes: send the queue token",
            )
        })
    }

    /// Drops a token from this replica's cache (e.g. right after it paid).
    pub async fn forget(&self, token: Uuid) {
        if let Some(cache) = &self.cache {
            cache.invalidate(&token).await;
        }
    }

    async fn check(&self, token: Uuid, now: DateTime<Utc>) -> Result<Principal, Status> {
        let status = match self.lookups.submit(token).await {
            Ok(Some(status)) => status,
            Ok(None) => return Err(with_reason(Code::Unauthenticated, "TOKEN_UNKNOWN", "unknown queue token")),
            Err(BatchError::Failed(s)) => return Err(from_peer("queue", &s)),
            Err(BatchError::Stopped(why)) => return Err(crate::status::internal(&anyhow::anyhow!(why))),
        };
        match TokenState::try_from(status.state) {
            Ok(TokenState::Active) => {
                let expires_at = status
                    .expires_at
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
                    .ok_or_else(|| crate::status::internal(&anyhow::anyhow!("ACTIVE token without expires_at")))?;
                let concert_id = Uuid::parse_str(&status.concert_id)
                    .map_err(|_| crate::status::internal(&anyhow::anyhow!("ACTIVE token without a concert")))?;
                if expires_at <= now {
                    Err(expired())
                } else {
                    Ok(Principal { token, user_id: status.user_id, concert_id, expires_at })
                }
            }
            Ok(TokenState::Waiting) => Err(with_reason(
                Code::PermissionDenied,
                "TOKEN_WAITING",
                format!("still waiting in the queue (position {})", status.position),
            )),
            _ => Err(expired()),
        }
    }
}

impl From<Pass> for Principal {
    fn from(pass: Pass) -> Self {
        Self { token: pass.token, user_id: pass.user_id, concert_id: pass.concert_id, expires_at: pass.expires_at }
    }
}

fn pass_refused(refusal: PassRefusal) -> Status {
    match refusal {
        PassRefusal::Invalid => with_reason(
            Code::Unauthenticated,
            "TOKEN_INVALID",
            "x-queue-token is not an admission pass this waiting room signed",
        ),
        PassRefusal::Expired => expired(),
    }
}

fn expired() -> Status {
    with_reason(Code::Unauthenticated, "TOKEN_EXPIRED", "queue token has expired")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(QUEUE_TOKEN_HEADER, value.parse().unwrap());
        m
    }

    #[test]
    fn the_credential_parses_and_rejects() {
        let id = Uuid::new_v4();
        assert_eq!(credential(&metadata(&id.to_string())).unwrap(), Credential::Token(id));
        assert_eq!(credential(&metadata(" a.b.c ")).unwrap(), Credential::Pass("a.b.c".into()));
        assert_eq!(credential(&MetadataMap::new()).unwrap_err().code(), Code::Unauthenticated);
        assert_eq!(credential(&metadata(&format!("Bearer {id}"))).unwrap_err().code(), Code::Unauthenticated);
        assert_eq!(credential(&metadata("nope")).unwrap_err().code(), Code::Unauthenticated);
    }

    #[test]
    fn a_token_belongs_to_the_user_the_access_token_names() {
        let mut request = Request::new(());
        assert!(require_owner(&request, "alice").is_ok(), "no identity: authentication disabled");
        request.extensions_mut().insert(crate::identity::Identity { subject: "alice".into() });
        assert!(require_owner(&request, "alice").is_ok());
        let err = require_owner(&request, "bob").unwrap_err();
        assert_eq!(
            (err.code(), crate::status::reason(&err).as_deref()),
            (Code::PermissionDenied, Some("TOKEN_NOT_YOURS"))
        );
    }

    #[test]
    fn a_token_unlocks_only_its_own_concert() {
        let concert = Uuid::new_v4();
        let p = Principal { token: Uuid::new_v4(), user_id: "u".into(), concert_id: concert, expires_at: Utc::now() };
        assert!(p.require_concert(concert).is_ok());
        let err = p.require_concert(Uuid::new_v4()).unwrap_err();
        assert_eq!(
            (err.code(), crate::status::reason(&err).as_deref()),
            (Code::PermissionDenied, Some("TOKEN_WRONG_CONCERT"))
        );
    }
}
