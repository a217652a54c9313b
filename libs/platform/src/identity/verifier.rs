//! Verifies OAuth2/OIDC access tokens (JWT, RFC 7519) against the identity provider's keys.
use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::Deserialize;

use super::{
    Identity, Refusal,
    jwks::{self, JwksError, JwksSource, KeySet, VerificationKey},
};

/// Most verified tokens one replica remembers: the people polling one replica during an
/// opening-day rush (a line of 100,000 and more), so a poll never checks a signature twice.
/// Each entry is a SHA-256 digest of the token and its claims (~150 bytes with the cache's
/// bookkeeping, ~40 MB when full), not the ~500-byte token itself.
const VERIFIED_CACHE_CAPACITY: u64 = 250_000;

/// A verified token's cache key: its SHA-256 digest. A collision would need a second
/// pre-image of SHA-256, so a cached claim set is only ever found for its own token.
type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// How access tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// Where the verification keys come from.
    pub jwks: JwksSource,
    /// The only accepted `iss` (the identity provider's issuer URL, exactly as in its tokens).
    pub issuer: String,
    /// The `aud` a token must carry (the API's identifier at the identity provider).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub leeway: Duration,
    /// Shortest time between two JWKS fetches caused by tokens naming unknown keys (default
    /// 10 s): a flood of made-up `kid`s costs the identity provider one fetch per interval.
    pub min_refresh_interval: Duration,
    /// Longest a call naming an unknown `kid` waits for the key set to be fetched again
    /// (default 500 ms), outside the in-flight limit (`layer::AwaitKeysLayer`); past it
    /// the call is refused UNAVAILABLE while the fetch goes on, so a slow identity provider
    /// holds up no call for its full timeout and no in-flight slot at all.
    pub unknown_kid_wait: Duration,
    /// Age after which a fetched key set is fetched again (default 300 s), so keys the
    /// provider retired stop being accepted.
    pub max_age: Duration,
    /// How long a verified token is remembered, so its signature is checked once per token
    /// and replica rather than on every call (default 1 h, beyond the lifetime of the
    /// tokens this suite is given). `exp` and `nbf` are still checked on every call, and so
    /// is the signing key: a remembered token whose key has left the key set is verified
    /// again (and refused), so retiring a key takes effect within `max_age` either way.
    /// A shorter remembrance re-checks the signature of everyone in line each time it
    /// lapses: at 60 s, people polling every 30 s cost an ES256 check every second or third
    /// poll (~15 % of the queue's CPU in the 100,000-person flood).
    pub verified_ttl: Duration,
}

impl JwtSettings {
    /// Settings with the defaults above.
    #[must_use]
    pub fn new(jwks: JwksSource, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            jwks,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(30),
            min_refresh_interval: Duration::from_secs(10),
            unknown_kid_wait: Duration::from_millis(500),
            max_age: Duration::from_secs(300),
            verified_ttl: Duration::from_secs(3600),
        }
    }
}

/// A verified token as remembered: its claims and the key that signed it.
#[derive(Debug, Clone)]
struct Verified {
    claims: Claims,
    kid: String,
}

/// The claims this service reads; `iss` and `aud` are checked by the decoder.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// The key set and when it was last fetched.
struct Keys {
    set: Arc<KeySet>,
    fetched_at: Instant,
}

/// Checks bearer access tokens. Cheap to clone (shared state).
#[derive(Clone)]
pub struct JwtVerifier(Arc<Inner>);

struct Inner {
    settings: JwtSettings,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Held while fetching, so concurrent requests do not fetch the same set twice.
    fetching: tokio::sync::Mutex<()>,
    /// Whether a fetch for an unknown `kid` runs in the background (one at a time).
    unknown_kid_fetch: std::sync::atomic::AtomicBool,
    /// Counts finished fetches for unknown `kid`s, so callers can wait for the next one.
    fetched: tokio::sync::watch::Sender<u64>,
    verified: moka::sync::Cache<TokenDigest, Verified>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("settings", &self.0.settings).finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads the key set (reads the file or fetches the URL once).
    ///
    /// # Errors
    /// When the key set cannot be read, fetched or parsed, or has no usable key.
    pub async fn new(settings: JwtSettings) -> Result<Self, JwksError> {
        let http = jwks::http_client(Duration::from_secs(5)).map_err(JwksError::Client)?;
        let set = jwks::load(&settings.jwks, &http).await?;
        tracing::info!(keys = ?set, issuer = %settings.issuer, audience = %settings.audience, "access-token keys loaded");
        let verified = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_CACHE_CAPACITY)
            .time_to_live(settings.verified_ttl)
            .build();
        Ok(Self(Arc::new(Inner {
            keys: RwLock::new(Keys { set: Arc::new(set), fetched_at: Instant::now() }),
            settings,
            http,
            fetching: tokio::sync::Mutex::new(()),
            unknown_kid_fetch: std::sync::atomic::AtomicBool::new(false),
            fetched: tokio::sync::watch::Sender::new(0),
            verified,
        })))
    }

    /// Verifies `token` (the compact JWT, without `Bearer `) and returns who it names. It
    /// never waits for the identity provider: a key it does not know is fetched by
    /// [`Self::await_key`], which callers run first (outside any in-flight limit).
    ///
    /// # Errors
    /// A [`Refusal`] saying why the token is not accepted.
    pub async fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        let now = unix_now();
        let cache_key = digest(token);
        if let Some(known) = self.0.verified.get(&cache_key) {
            // A key set past its max age is fetched again here too, or a line of remembered
            // tokens would never learn that a key was retired.
            self.refresh_if_old().await;
            if self.knows(&known.kid) {
                return self.still_valid(&known.claims, now);
            }
            // Its key was retired: verified again below, against the keys there are now.
            self.0.verified.invalidate(&cache_key);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refusal::Invalid(format!("the access token is not a signed JWT ({e})")))?;
        // Refused before any key is looked at.
        if !jwks::is_accepted(header.alg) {
            return Err(Refusal::Invalid(format!(
                "access token algorithm {:?} is not accepted (RS*, PS*, ES256, ES384 or EdDSA only)",
                header.alg
            )));
        }
        let kid = header.kid.ok_or_else(|| Refusal::Invalid("the access token has no `kid` header".into()))?;
        self.refresh_if_old().await;
        // Never waits here (inside the in-flight limit): `await_key` waited, outside it.
        let key = match self.key(&kid) {
            Some(key) => key,
            None if self.0.unknown_kid_fetch.load(std::sync::atomic::Ordering::Acquire) => {
                return Err(Refusal::KeysUnavailable);
            }
            None => return Err(Refusal::Invalid(format!("the access token's key `{kid}` is not known"))),
        };
        if !key.algorithms.contains(&header.alg) {
            return Err(Refusal::Invalid(format!("key `{kid}` does not verify {:?} signatures", header.alg)));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(header.alg))
            .map_err(|e| refusal_for(e.kind()))?
            .claims;
        // The subject becomes the user id everywhere, so it obeys the user id rules.
        if let Err(violation) = crate::validate::key("sub", &claims.sub) {
            return Err(Refusal::Invalid(format!("the access token's subject is not a usable user id: {violation}")));
        }
        let identity = self.still_valid(&claims, now)?;
        self.0.verified.insert(cache_key, Verified { claims, kid });
        Ok(identity)
    }

    /// Waits, at most `unknown_kid_wait`, for the key set to be fetched again when `token`
    /// names a key not in it (and the last fetch for an unknown key is older than
    /// `min_refresh_interval`). Returns at once for a token verified before, a known key, a
    /// token that is no JWT (`verify` refuses it), or a key set read from a file.
    pub async fn await_key(&self, token: &str) {
        if !matches!(self.0.settings.jwks, JwksSource::Url(_)) || self.0.verified.contains_key(&digest(token)) {
            return;
        }
        let Some(kid) = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid) else { return };
        if self.key(&kid).is_some() {
            return;
        }
        let mut fetched = self.0.fetched.subscribe();
        let before = *fetched.borrow_and_update();
        if self.fetch_for_unknown_kid() {
            let _ = tokio::time::timeout(self.0.settings.unknown_kid_wait, fetched.wait_for(|n| *n > before)).await;
        }
    }

    /// Starts a fetch of the key set in the background unless one runs or the last ended
    /// less than `min_refresh_interval` ago; whether a fetch now runs. The fetch is a task
    /// of its own, so callers that stop waiting do not cancel it.
    fn fetch_for_unknown_kid(&self) -> bool {
        use std::sync::atomic::Ordering;
        if !matches!(self.0.settings.jwks, JwksSource::Url(_)) {
            return false;
        }
        if self.0.unknown_kid_fetch.load(Ordering::Acquire) {
            return true;
        }
        if self.fetched_at().elapsed() < self.0.settings.min_refresh_interval {
            return false;
        }
        if self.0.unknown_kid_fetch.swap(true, Ordering::AcqRel) {
            return true;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.refresh(true).await;
            this.0.unknown_kid_fetch.store(false, Ordering::Release);
            this.0.fetched.send_modify(|n| *n += 1);
        });
        true
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.0.settings.issuer]);
        v.set_audience(&[&self.0.settings.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = self.0.settings.leeway.as_secs();
        v
    }

    /// `exp` and `nbf` against the clock, with the leeway: checked again on every cached use.
    fn still_valid(&self, claims: &Claims, now: u64) -> Result<Identity, Refusal> {
        let leeway = self.0.settings.leeway.as_secs();
        if claims.exp.saturating_add(leeway) <= now {
            return Err(Refusal::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(Refusal::NotYetValid);
        }
        Ok(Identity { subject: claims.sub.clone() })
    }

    /// Whether the key set still holds `kid` (checked on every remembered token, so without
    /// cloning the key).
    fn knows(&self, kid: &str) -> bool {
        self.0.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).set.keys.contains_key(kid)
    }

    fn key(&self, kid: &str) -> Option<VerificationKey> {
        let keys = self.0.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.set.keys.get(kid).cloned()
    }

    fn fetched_at(&self) -> Instant {
        self.0.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).fetched_at
    }

    /// Fetches the key set again when it comes from a URL and was not fetched in the last
    /// `min_refresh_interval` (`unknown_kid`) or `max_age`. A failed fetch keeps the old keys.
    async fn refresh(&self, unknown_kid: bool) {
        let JwksSource::Url(url) = &self.0.settings.jwks else { return };
        let wait = if unknown_kid { self.0.settings.min_refresh_interval } else { self.0.settings.max_age };
        let _fetching = if unknown_kid {
            // Only the background fetch for unknown kids waits here, for a routine one.
            self.0.fetching.lock().await
        } else {
            // A routine refresh never holds up other calls: while one fetches, the current
            // keys keep serving.
            match self.0.fetching.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        };
        // Someone else may have fetched while this call waited for the lock.
        if self.fetched_at().elapsed() < wait {
            return;
        }
        let result = jwks::load(&self.0.settings.jwks, &self.0.http).await;
        let mut keys = self.0.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Failed or not, the next attempt waits its interval: an identity provider outage is
        // not answered by fetching on every request.
        keys.fetched_at = Instant::now();
        match result {
            Ok(set) => {
                tracing::info!(%url, keys = ?set, "access-token keys fetched again");
                keys.set = Arc::new(set);
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot fetch the access-token keys again; keeping the old ones")
            }
        }
    }

    async fn refresh_if_old(&self) {
        if matches!(self.0.settings.jwks, JwksSource::Url(_)) && self.fetched_at().elapsed() >= self.0.settings.max_age
        {
            self.refresh(false).await;
        }
    }
}

/// Why the decoder refused a token, in the caller's terms.
fn refusal_for(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidSignature => Refusal::Invalid("the access token's signature does not verify".into()),
        ErrorKind::InvalidIssuer => Refusal::Invalid("the access token's issuer (`iss`) is not accepted".into()),
        ErrorKind::InvalidAudience => Refusal::Invalid("the access token is not meant for this API (`aud`)".into()),
        ErrorKind::MissingRequiredClaim(claim) => Refusal::Invalid(format!("the access token has no `{claim}` claim")),
        other => Refusal::Invalid(format!("the access token is not valid ({other:?})")),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
