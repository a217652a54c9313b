//! Admission passes: what an admitted person shows catalog and reservation instead of a
//! queue token that must be looked up.
//!
//! When the waiting room answers a token's owner with the token ACTIVE, it also hands out a
//! pass: a compact JWS (RFC 7515, EdDSA over Ed25519) that the queue signs with a key of its
//! own and that names the token (`jti`), the user (`sub`), the concert (`cid`) and the end of
//! the admission (`exp`, seconds since the Unix epoch, never later than the token's
//! `expires_at`). Catalog and reservation hold the public half and verify a pass locally,
//! so an admitted buyer's seat map never waits behind the joins and polls of the line: the
//! model of AWS's Virtual Waiting Room, whose admitted clients carry a JWT the protected
//! site verifies itself.
//!
//! What a pass cannot say is that its token was revoked before `exp` (it paid, or its owner
//! left the line). Reads accept a verified pass until `exp`; calls that write still ask the
//! queue (its internal port, which runs apart from the line's traffic) on every call, so a
//! paid or left token books nothing (the token validator's `authenticate_fresh` in `auth`).
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `iss` of every pass: the waiting room.
const ISSUER: &str = "concert-queue";
/// The `aud` of every pass: the services that admit on it (catalog and reservation).
const AUDIENCE: &str = "concert-admitted";
/// Most verified passes one replica remembers (~300 bytes each): the people admitted in one
/// active TTL at opening-day rates, many times over. Bounded by count and by time (an
/// admission lasts at most a day), so made-up passes cannot grow it.
const VERIFIED_CAPACITY: u64 = 100_000;

/// What a pass says: who was admitted, to which concert, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// The queue token that was admitted.
    pub token: Uuid,
    /// The user it is bound to.
    pub user_id: String,
    /// The only concert it unlocks.
    pub concert_id: Uuid,
    /// When the admission ends (whole seconds: a pass ends no later than its token).
    pub expires_at: DateTime<Utc>,
}

/// The claims on the wire (RFC 7519 names where one exists).
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    jti: Uuid,
    cid: Uuid,
    exp: i64,
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("admission pass key: {0}")]
pub struct PassKeyError(#[from] jsonwebtoken::errors::Error);

/// Why a pass is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassRefusal {
    /// Not a pass this suite signed (bad format, signature, issuer or audience).
    #[error("not a valid admission pass")]
    Invalid,
    /// Its admission ended.
    #[error("the admission pass has expired")]
    Expired,
}

/// Signs passes: the waiting room's half of the key (an Ed25519 PKCS#8 PEM).
#[derive(Clone)]
pub struct PassSigner {
    key: EncodingKey,
    public: DecodingKey,
}

impl std::fmt::Debug for PassSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassSigner").finish_non_exhaustive()
    }
}

impl PassSigner {
    /// A signer from an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    ///
    /// # Errors
    /// When the PEM is not an Ed25519 private key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PassKeyError> {
        let key = EncodingKey::from_ed_pem(pem)?;
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
        let public = DecodingKey::from_jwk(&jwk)?;
        Ok(Self { key, public })
    }

    /// The pass for an admitted token.
    ///
    /// # Errors
    /// When signing fails (it does not with a key `from_pem` accepted).
    pub fn sign(&self, pass: &Pass) -> Result<String, PassKeyError> {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: pass.user_id.clone(),
            jti: pass.token,
            cid: pass.concert_id,
            exp: pass.expires_at.timestamp(),
        };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key)?)
    }

    /// A verifier with this key's public half (tests, and a suite run from one key file).
    #[must_use]
    pub fn verifier(&self) -> PassVerifier {
        PassVerifier::new(self.public.clone())
    }
}

/// Verifies passes with the waiting room's public key, remembering the ones it verified so
/// a pass's signature is checked once per replica.
#[derive(Clone)]
pub struct PassVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: moka::sync::Cache<String, Pass>,
}

impl std::fmt::Debug for PassVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassVerifier").finish_non_exhaustive()
    }
}

impl PassVerifier {
    /// A verifier from the Ed25519 public key in SPKI PEM (`openssl pkey -pubout`).
    ///
    /// # Errors
    /// When the PEM is not an Ed25519 public key.
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, PassKeyError> {
        Ok(Self::new(DecodingKey::from_ed_pem(pem)?))
    }

    fn new(key: DecodingKey) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `exp` is judged against the service's clock below, not the system's.
        validation.validate_exp = false;
        let verified = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_CAPACITY)
            .time_to_live(std::time::Duration::from_secs(24 * 60 * 60))
            .build();
        Self { key, validation, verified }
    }

    /// The pass `compact` carries, if this suite signed it and it has not ended at `now`.
    ///
    /// # Errors
    /// [`PassRefusal::Invalid`] for anything not signed by the waiting room's key;
    /// [`PassRefusal::Expired`] once `now` reaches its `exp`.
    pub fn verify(&self, compact: &str, now: DateTime<Utc>) -> Result<Pass, PassRefusal> {
        let pass = self.decode(compact)?;
        if pass.expires_at <= now { Err(PassRefusal::Expired) } else { Ok(pass) }
    }

    /// The pass `compact` carries if this suite signed it, ended or not: which token a caller
    /// names when it asks how a payment with that (spent) token ended.
    ///
    /// # Errors
    /// [`PassRefusal::Invalid`] for anything not signed by the waiting room's key.
    pub fn decode(&self, compact: &str) -> Result<Pass, PassRefusal> {
        if let Some(pass) = self.verified.get(compact) {
            return Ok(pass);
        }
        let claims = jsonwebtoken::decode::<Claims>(compact, &self.key, &self.validation)
            .map_err(|_| PassRefusal::Invalid)?
            .claims;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or(PassRefusal::Invalid)?;
        let pass = Pass { token: claims.jti, user_id: claims.sub, concert_id: claims.cid, expires_at };
        self.verified.insert(compact.to_owned(), pass.clone());
        Ok(pass)
    }
}

/// Whether a `x-queue-token` value is a pass rather than a bare token id (a JWS has two dots;
/// a UUID has none).
#[must_use]
pub fn looks_like_pass(value: &str) -> bool {
    value.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Duration;

    const KEY: &[u8] = include_bytes!("identity/test_keys/eddsa.pem");
    const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMzaFWg4zRu026seqoIDZbTpBpvf+H1VNcyB2YaKq6n0
-----END PRIVATE KEY-----
";

    fn pass(expires_at: DateTime<Utc>) -> Pass {
        Pass { token: Uuid::new_v4(), user_id: "alice".into(), concert_id: Uuid::new_v4(), expires_at }
    }

    fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp(t.timestamp(), 0).unwrap()
    }

    #[test]
    fn a_signed_pass_verifies_and_says_what_was_signed() {
        let signer = PassSigner::from_pem(KEY).unwrap();
        let now = Utc::now();
        let p = pass(now + Duration::seconds(300));
        let compact = signer.sign(&p).unwrap();
        assert!(looks_like_pass(&compact));
        let verified = signer.verifier().verify(&compact, now).unwrap();
        assert_eq!(verified, Pass { expires_at: whole_seconds(p.expires_at), ..p });
    }

    #[test]
    fn an_ended_pass_is_refused_even_once_remembered() {
        let signer = PassSigner::from_pem(KEY).unwrap();
        let verifier = signer.verifier();
        let now = Utc::now();
        let compact = signer.sign(&pass(now + Duration::seconds(10))).unwrap();
        assert!(verifier.verify(&compact, now).is_ok());
        assert_eq!(verifier.verify(&compact, now + Duration::seconds(11)), Err(PassRefusal::Expired));
        let ended = signer.sign(&pass(now - Duration::seconds(1))).unwrap();
        assert_eq!(verifier.verify(&ended, now), Err(PassRefusal::Expired));
    }

    #[test]
    fn passes_not_signed_by_the_waiting_room_are_refused() {
        let signer = PassSigner::from_pem(KEY).unwrap();
        let verifier = signer.verifier();
        let now = Utc::now();
        let forged = PassSigner::from_pem(OTHER_KEY.as_bytes()).unwrap().sign(&pass(now + Duration::hours(1))).unwrap();
        assert_eq!(verifier.verify(&forged, now), Err(PassRefusal::Invalid));
        // Claims altered after signing: the signature no longer matches.
        let genuine = signer.sign(&pass(now + Duration::hours(1))).unwrap();
        let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
        let altered = serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "jti": Uuid::new_v4(),
            "cid": Uuid::new_v4(), "exp": (now + Duration::hours(1)).timestamp()});
        parts[1] = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, altered.to_string());
        assert_eq!(verifier.verify(&parts.join("."), now), Err(PassRefusal::Invalid));
        assert_eq!(verifier.verify("a.b.c", now), Err(PassRefusal::Invalid));
        // An access token is no pass, even from a key the verifier trusts: wrong iss/aud.
        let access = crate::identity::signer::Signer::from_pem(KEY, "k", Algorithm::EdDSA)
            .unwrap()
            .sign(&crate::identity::signer::Claims::new("alice", "iss", "aud", std::time::Duration::from_secs(60)))
            .unwrap();
        assert_eq!(verifier.verify(&access, now), Err(PassRefusal::Invalid));
    }

    #[test]
    fn the_public_half_reads_from_pem() {
        // The public half of the test key (`openssl pkey -pubout`) verifies what it signs.
        let public = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAOJ2DI+1rVZDAGpIX/pK2ZrkMLHh8FDV7jKQAMtCDLgQ=\n-----END PUBLIC KEY-----\n";
        let now = Utc::now();
        let compact = PassSigner::from_pem(KEY).unwrap().sign(&pass(now + Duration::seconds(60))).unwrap();
        assert!(PassVerifier::from_public_pem(public).unwrap().verify(&compact, now).is_ok());
        assert!(PassVerifier::from_public_pem(b"not a key").is_err());
        assert!(!looks_like_pass(&Uuid::new_v4().to_string()));
    }
}
