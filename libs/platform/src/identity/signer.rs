//! Mints access tokens from a private key: for the demo (`concertctl token`, with the dev-only
//! key under `deploy/dev-auth/`) and for tests. Production tokens come from the identity
//! provider; nothing in the services signs.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde::Serialize;

/// The claims of a minted token (RFC 7519 names; times in seconds since the Unix epoch).
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

impl Claims {
    /// Claims for `sub`, valid from now for `ttl`.
    #[must_use]
    pub fn new(sub: &str, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            sub: sub.to_owned(),
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl.as_secs()),
        }
    }
}

/// A private key with its `kid` and algorithm.
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
    kid: String,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// Why a key cannot sign.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the signing key: {0}")]
pub struct SignerError(#[from] jsonwebtoken::errors::Error);

impl Signer {
    /// A PKCS#8 PEM private key: ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA), as `algorithm`
    /// says.
    ///
    /// # Errors
    /// When the PEM is not a key of that algorithm.
    pub fn from_pem(pem: &[u8], kid: &str, algorithm: Algorithm) -> Result<Self, SignerError> {
        let key = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem)?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem)?,
            _ => EncodingKey::from_rsa_pem(pem)?,
        };
        Ok(Self { key, kid: kid.to_owned(), algorithm })
    }

    /// The key's `kid`.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` with this key, naming it in the `kid` header.
    ///
    /// # Errors
    /// When signing fails.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, SignerError> {
        self.sign_as(&self.kid, claims)
    }

    /// Signs `claims` but names `kid` in the header (tests of unknown or mismatched keys).
    ///
    /// # Errors
    /// When signing fails.
    pub fn sign_as(&self, kid: &str, claims: &impl Serialize) -> Result<String, SignerError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    /// The public key as a JWK (with `kid`, `alg` and `use: sig`), for a JWKS.
    ///
    /// # Errors
    /// When the public key cannot be derived.
    pub fn jwk(&self) -> Result<Jwk, SignerError> {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm)?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(jwk)
    }
}

/// A JWKS document (`{"keys": [...]}`) of the given signers' public keys.
///
/// # Errors
/// When a public key cannot be derived.
pub fn jwks_json(signers: &[&Signer]) -> Result<String, SignerError> {
    let keys = signers.iter().map(|s| s.jwk()).collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::to_string_pretty(&jsonwebtoken::jwk::JwkSet { keys }).unwrap_or_default())
}
