//! The verification keys: a JSON Web Key Set (RFC 7517) from a file, a URL or given directly,
//! reduced to the asymmetric keys a token may be checked against.
use std::{collections::HashMap, path::PathBuf, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet},
};

/// Where the key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS JSON file, read once at start-up (`AUTH_JWKS_FILE`).
    File(PathBuf),
    /// An identity provider's `jwks_uri` (`AUTH_JWKS_URL`), fetched at start-up and again when
    /// a token names an unknown `kid` (key rotation) or the set is older than its max age.
    Url(String),
    /// A JWKS JSON document given directly (tests, embedding).
    Json(String),
}

/// Why a key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot fetch the JWKS from {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },
    #[error("the JWKS is not a valid JSON Web Key Set: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the JWKS has no usable key (asymmetric, with a `kid`)")]
    Empty,
    #[error("cannot build the HTTP client for JWKS fetches: {0}")]
    Client(reqwest::Error),
}

/// One usable key: what it verifies and with which algorithms.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

/// The usable keys by `kid`.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: HashMap<String, VerificationKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    /// Keeps the keys a token may be verified with: RSA, EC (P-256, P-384) and Ed25519 keys
    /// that have a `kid` and are meant for signatures. Symmetric (`oct`) keys are dropped: a
    /// shared secret published in a key set could sign tokens for anyone.
    pub(crate) fn from_json(json: &str) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_str(json)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                tracing::warn!("JWKS key without `kid` ignored: tokens are matched to keys by kid");
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)) {
                continue;
            }
            let Some(algorithms) = algorithms_for(jwk) else {
                tracing::warn!(%kid, "JWKS key of an unsupported type or algorithm ignored");
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, VerificationKey { key, algorithms });
                }
                Err(e) => tracing::warn!(%kid, error = %e, "JWKS key that cannot be decoded ignored"),
            }
        }
        if keys.is_empty() { Err(JwksError::Empty) } else { Ok(Self { keys }) }
    }
}

/// The signature algorithms of RSA keys.
const RSA_ALGORITHMS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// Whether a token may be signed with `alg`: asymmetric algorithms only. With HMAC (HS256…)
/// anyone holding the published verification key could sign; `none` cannot even be parsed.
pub(crate) fn is_accepted(alg: Algorithm) -> bool {
    RSA_ALGORITHMS.contains(&alg) || matches!(alg, Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA)
}

/// The signature algorithms a key may verify: the key's own `alg` when it names one, else
/// every algorithm of its type. `None` for symmetric keys and unknown types or curves.
fn algorithms_for(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    let of_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &RSA_ALGORITHMS,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        // Symmetric (`oct`) and unknown key types.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(of_type.to_vec()),
        Some(named) => {
            let named = Algorithm::try_from(named).ok()?;
            of_type.contains(&named).then(|| vec![named])
        }
    }
}

/// Reads or fetches the key set's JSON.
pub(crate) async fn load(source: &JwksSource, http: &reqwest::Client) -> Result<KeySet, JwksError> {
    let json = match source {
        JwksSource::File(path) => {
            tokio::fs::read_to_string(path).await.map_err(|source| JwksError::Read { path: path.clone(), source })?
        }
        JwksSource::Url(url) => fetch(url, http).await?,
        JwksSource::Json(json) => json.clone(),
    };
    KeySet::from_json(&json)
}

async fn fetch(url: &str, http: &reqwest::Client) -> Result<String, JwksError> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|source| JwksError::Fetch { url: url.to_owned(), source })?;
    response.text().await.map_err(|source| JwksError::Fetch { url: url.to_owned(), source })
}

/// The HTTP client JWKS fetches use: rustls on aws-lc-rs (the crypto library token
/// verification uses too), the operating system's root certificates, and a timeout so a slow
/// identity provider cannot hold a verification for long.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // Installing fails only when a provider is already installed, which is as good.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(!is_accepted(alg), "{alg:?}");
        }
        for alg in [Algorithm::RS256, Algorithm::PS512, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            assert!(is_accepted(alg), "{alg:?}");
        }
    }

    #[test]
    fn symmetric_keys_and_keys_without_kid_are_never_used() {
        let json = r#"{"keys":[
            {"kty":"oct","kid":"shared","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        assert!(matches!(KeySet::from_json(json), Err(JwksError::Empty)));
    }

    #[test]
    fn a_key_verifies_only_its_named_algorithm_or_its_types() {
        let json = r#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"EC","crv":"P-256","kid":"ec","alg":"ES256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let set = KeySet::from_json(json).unwrap();
        assert_eq!(set.keys["ed"].algorithms, vec![Algorithm::EdDSA]);
        assert_eq!(set.keys["ec"].algorithms, vec![Algorithm::ES256]);
    }

    #[test]
    fn a_key_whose_alg_does_not_fit_its_type_is_dropped() {
        let json = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"ec","alg":"HS256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        assert!(matches!(KeySet::from_json(json), Err(JwksError::Empty)));
    }
}
