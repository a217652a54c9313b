//! Who is calling a public RPC: the user named by a verified OAuth2/OIDC access token.
//!
//! A caller sends `authorization: Bearer <JWT>`. The public server's [`layer`] verifies it
//! ([`JwtVerifier`]: signature against the identity provider's JWKS, asymmetric algorithms
//! only, `exp`/`nbf` with a small leeway, `iss` and `aud`) before any handler runs, and puts
//! the [`Identity`] (the token's `sub`) in the request's extensions. Handlers take the user
//! from there with [`user`], never from a request field.
//!
//! Internal ports carry no user tokens: peers are trusted by network policy, and internal
//! RPCs name the user in their fields. A service may also be started explicitly without user
//! authentication ([`Authentication::Disabled`], for internal use); then public RPCs trust
//! their `user_id` fields, as internal ones do.
mod jwks;
pub mod layer;
pub mod signer;
mod verifier;

use tonic::{Code, Request, Status};

pub use jwks::{JwksError, JwksSource};
pub use verifier::{JwtSettings, JwtVerifier};

use crate::status::with_reason;

/// The verified caller: the access token's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the user id every user-scoped RPC acts for.
    pub subject: String,
}

/// How a public server learns who calls.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// Every public RPC but the anonymous ones needs a valid access token.
    Jwt(JwtVerifier),
    /// No user authentication: public RPCs trust their `user_id` fields. Only for a suite
    /// that no untrusted caller can reach; start-up logs it at WARN.
    Disabled,
}

/// What start-up needs to build an [`Authentication`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// Verify access tokens.
    Jwt(JwtSettings),
    /// Run without user authentication, as explicitly asked.
    Disabled,
}

impl AuthSettings {
    /// Builds the authentication these settings describe (loads the keys).
    ///
    /// # Errors
    /// When the key set cannot be loaded.
    pub async fn build(&self) -> Result<Authentication, JwksError> {
        match self {
            Self::Jwt(settings) => Ok(Authentication::Jwt(JwtVerifier::new(settings.clone()).await?)),
            Self::Disabled => {
                tracing::warn!(
                    "USER AUTHENTICATION IS DISABLED (AUTH_DISABLED=true): public RPCs trust the `user_id` \
                     in requests. Never expose this service to untrusted callers."
                );
                Ok(Authentication::Disabled)
            }
        }
    }
}

/// Why an access token was not accepted. Each maps to UNAUTHENTICATED with its own reason,
/// except [`Refusal::KeysUnavailable`] (UNAVAILABLE: retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `authorization` header.
    #[error("authorization: Bearer <access token> is required")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("authorization must be `Bearer <access token>`")]
    Malformed,
    /// `exp` is past (beyond the leeway).
    #[error("the access token has expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// Anything else: bad signature, algorithm, key, issuer, audience or claims.
    #[error("{0}")]
    Invalid(String),
    /// The token names a key not yet known, and the key set is still being fetched from the
    /// identity provider (longer than `JwtSettings::unknown_kid_wait`).
    #[error("the access token's key is being fetched from the identity provider; retry shortly")]
    KeysUnavailable,
}

impl Refusal {
    /// The reason code in the status's `ErrorInfo`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KeysUnavailable => "ACCESS_TOKEN_KEYS_UNAVAILABLE",
            Self::Missing => "ACCESS_TOKEN_MISSING",
            Self::Malformed | Self::Invalid(_) => "ACCESS_TOKEN_INVALID",
            Self::Expired => "ACCESS_TOKEN_EXPIRED",
            Self::NotYetValid => "ACCESS_TOKEN_NOT_YET_VALID",
        }
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        let code = match refusal {
            // The token may well be good: the caller retries, it does not sign in again.
            Refusal::KeysUnavailable => Code::Unavailable,
            _ => Code::Unauthenticated,
        };
        with_reason(code, refusal.reason(), refusal.to_string())
    }
}

/// The user a user-scoped public RPC acts for.
///
/// With a verified [`Identity`] that is its subject; the request's own `field` (kept for
/// compatibility) must then be empty or name the same user. Without one (authentication
/// disabled, or an internal call) the field names the user and must be a valid key.
///
/// # Errors
/// PERMISSION_DENIED (reason USER_MISMATCH) when the field names another user than the
/// token; INVALID_ARGUMENT naming `field` when there is no identity and the field is empty
/// or over 128 bytes.
/// The user is also recorded as `user_id` in the current span, when the span declares it
/// (`fields(user_id = tracing::field::Empty)`).
pub fn user<T>(request: &Request<T>, field: &'static str, claimed: &str) -> Result<String, Status> {
    let user = match request.extensions().get::<Identity>() {
        Some(identity) if claimed.is_empty() || claimed == identity.subject => identity.subject.clone(),
        Some(_) => {
            return Err(with_reason(
                Code::PermissionDenied,
                "USER_MISMATCH",
                format!("`{field}` names another user than the access token; leave it empty"),
            ));
        }
        None => crate::validate::key(field, claimed)?,
    };
    tracing::Span::current().record("user_id", user.as_str());
    Ok(user)
}

/// The verified caller, when there is one.
#[must_use]
pub fn identity<T>(request: &Request<T>) -> Option<&Identity> {
    request.extensions().get::<Identity>()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_identity(subject: &str) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(Identity { subject: subject.into() });
        r
    }

    #[test]
    fn the_token_names_the_user_and_the_field_may_only_agree() {
        assert_eq!(user(&with_identity("alice"), "user_id", "").unwrap(), "alice");
        assert_eq!(user(&with_identity("alice"), "user_id", "alice").unwrap(), "alice");
        let err = user(&with_identity("alice"), "user_id", "bob").unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(crate::status::reason(&err).as_deref(), Some("USER_MISMATCH"));
    }

    #[test]
    fn without_an_identity_the_field_names_the_user() {
        assert_eq!(user(&Request::new(()), "user_id", "carol").unwrap(), "carol");
        let err = user(&Request::new(()), "user_id", "").unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("user_id"), "{}", err.message());
    }
}
