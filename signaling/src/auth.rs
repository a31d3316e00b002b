//! Who is calling: the class backend (API key) or a user (JWT minted by the class backend).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use models::UserId;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, JwtAlgorithm};

/// The claims we read. Anything else in the token is ignored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    /// Not before: checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at: checked when present (not in the future, and `exp - iat` within the maximum
    /// lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid or expired token")]
    Invalid,
    #[error("token subject is not a valid user id")]
    BadSubject,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read JWT public key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid JWT key: {0}")]
    Parse(#[from] jsonwebtoken::errors::Error),
    #[error("no JWT key configured")]
    Missing,
}

/// Checks user tokens. Only the configured algorithm is accepted, so a token cannot pick its own
/// (no "alg: none", no HS256 signed with a public key).
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    max_lifetime_secs: u64,
    leeway_secs: u64,
}

impl JwtVerifier {
    pub fn from_config(auth: &AuthConfig) -> Result<JwtVerifier, KeyError> {
        let (algorithm, key) = match (auth.jwt_algorithm, &auth.jwt_public_key_file, &auth.jwt_secret) {
            (JwtAlgorithm::HS256, _, Some(secret)) => {
                (Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes()))
            }
            (JwtAlgorithm::EdDSA, Some(path), _) => {
                (Algorithm::EdDSA, DecodingKey::from_ed_pem(&read_pem(path)?)?)
            }
            (JwtAlgorithm::RS256, Some(path), _) => {
                (Algorithm::RS256, DecodingKey::from_rsa_pem(&read_pem(path)?)?)
            }
            _ => return Err(KeyError::Missing),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = auth.jwt_leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        Ok(JwtVerifier {
            key,
            validation,
            max_lifetime_secs: auth.jwt_max_lifetime_secs,
            leeway_secs: auth.jwt_leeway_secs,
        })
    }

    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        self.check_lifetime(&data.claims, unix_now())?;
        UserId::new(data.claims.sub).map_err(|_| AuthError::BadSubject)
    }

    /// A stolen token must not work for years: `exp` may be at most the maximum lifetime after
    /// `iat` (or after now, for a token without `iat`), and `iat` may not be in the future.
    fn check_lifetime(&self, claims: &Claims, now: u64) -> Result<(), AuthError> {
        let issued = claims.iat.unwrap_or(now);
        if issued > now.saturating_add(self.leeway_secs) {
            return Err(AuthError::Invalid);
        }
        let latest_exp = issued.saturating_add(self.max_lifetime_secs).saturating_add(self.leeway_secs);
        if claims.exp > latest_exp {
            return Err(AuthError::Invalid);
        }
        Ok(())
    }
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })
}

/// Mints an HS256 user token, as the class backend does. Used by demo mode and tests.
pub fn mint_hs256(secret: &str, user_id: &UserId, ttl_secs: u64) -> String {
    let now = unix_now();
    let claims = Claims { sub: user_id.to_string(), exp: now + ttl_secs, nbf: None, iat: Some(now) };
    // Encoding with an HMAC key cannot fail: there is no key parsing and the claims always serialize.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 encoding is infallible")
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The class backend's key, compared in constant time.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }

    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The token of an `Authorization: Bearer ...` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let token = value.strip_prefix("Bearer ").ok_or(AuthError::Invalid)?.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}
