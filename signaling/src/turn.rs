//! TURN for networks that let only TLS on 443 through (and UDP 3478 where allowed): the short-lived
//! credentials of the TURN REST API scheme, which coturn checks with `use-auth-secret` and
//! `static-auth-secret`, and the page's `iceServers`.
//!
//! The server and coturn share one secret and nothing else: no database, no call between them. A
//! credential is `username = "<expiry unix seconds>:<participant>"` and `credential =
//! base64(HMAC-SHA1(secret, username))`; coturn recomputes the HMAC and refuses a username whose
//! expiry has passed, on the allocation and on every refresh after it. So a credential must outlive
//! the call it serves (`credential_ttl_secs`).
//!
//! The participant part is an opaque id (a `UserId` or a participant id), never a name, an email or
//! a phone number: coturn logs usernames.
//!
//! This module does not run or reach coturn; `k8s/base/coturn.yaml` deploys it and
//! `tests/it/turn.rs` proves its allocations against a real `turnserver`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use hmac::{Hmac, Mac};
use models::visio::IceServer;
use models::{ApiError, ClassId, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::extract::{ClassPath, User};
use crate::AppState;

/// Shortest shared secret accepted: coturn takes anything, but a short one is guessable offline
/// from any credential a member sees.
pub const MIN_SECRET_LEN: usize = 32;

/// Shortest credential lifetime accepted: one TURN allocation lifetime (600 s), which browsers
/// refresh with the same credential.
pub const MIN_CREDENTIAL_TTL_SECS: u64 = 600;

/// STUN and TURN servers handed to pages (the `turn` section of the configuration).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// `stun:`, `turn:` and `turns:` URLs, e.g. `turn:turn.example.org:3478?transport=udp` and
    /// `turns:turn.example.org:443?transport=tcp`. Empty: pages get no ICE servers.
    pub urls: Vec<String>,
    /// The secret shared with coturn (`static-auth-secret`); `KLASS_TURN_SECRET`. Required as soon
    /// as one URL is `turn:` or `turns:`.
    pub secret: Option<String>,
    /// How long a credential is valid. coturn checks it on every allocation refresh, so it must be
    /// longer than the longest call (Plus calls have no duration limit).
    pub credential_ttl_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig { urls: Vec::new(), secret: None, credential_ttl_secs: 6 * 3600 }
    }
}

// The secret never reaches logs.
impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("credential_ttl_secs", &self.credential_ttl_secs)
            .finish()
    }
}

/// What [`TurnConfig::validate`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnConfigError {
    #[error("turn.urls: {0:?} is not a stun:, turn: or turns: URL")]
    BadUrl(String),
    #[error("turn.urls has TURN servers but KLASS_TURN_SECRET (turn.secret) is not set")]
    MissingSecret,
    #[error("KLASS_TURN_SECRET is too short: use at least {MIN_SECRET_LEN} bytes")]
    ShortSecret,
    #[error("turn.credential_ttl_secs must be at least {MIN_CREDENTIAL_TTL_SECS}")]
    ShortTtl,
}

impl TurnConfig {
    pub fn validate(&self) -> Result<(), TurnConfigError> {
        for url in &self.urls {
            if scheme(url).is_none() {
                return Err(TurnConfigError::BadUrl(url.clone()));
            }
        }
        match &self.secret {
            None if self.has_turn() => return Err(TurnConfigError::MissingSecret),
            Some(secret) if secret.len() < MIN_SECRET_LEN => return Err(TurnConfigError::ShortSecret),
            _ => {}
        }
        if self.credential_ttl_secs < MIN_CREDENTIAL_TTL_SECS {
            return Err(TurnConfigError::ShortTtl);
        }
        Ok(())
    }

    /// Whether any URL is a TURN server, which needs credentials.
    fn has_turn(&self) -> bool {
        self.urls.iter().any(|url| scheme(url).is_some_and(|scheme| scheme != Scheme::Stun))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Stun,
    Turn,
}

/// The scheme of an ICE server URL (RFC 7064, RFC 7065), with something after it. `stuns:` is
/// left out: browsers refuse it, and one URL they refuse makes `new RTCPeerConnection` throw.
fn scheme(url: &str) -> Option<Scheme> {
    let (scheme, rest) = url.split_once(':')?;
    if rest.is_empty() || rest.chars().any(char::is_whitespace) {
        return None;
    }
    match scheme {
        "stun" => Some(Scheme::Stun),
        "turn" | "turns" => Some(Scheme::Turn),
        _ => None,
    }
}

/// The page's `iceServers`: STUN URLs as they are, TURN URLs together with a credential for
/// `participant` that expires `credential_ttl_secs` after `now`. Empty when nothing is configured.
pub fn ice_servers(config: &TurnConfig, participant: &str, now: SystemTime) -> Vec<IceServer> {
    let (turn, stun): (Vec<&String>, Vec<&String>) =
        config.urls.iter().partition(|url| scheme(url) == Some(Scheme::Turn));
    let mut servers = Vec::new();
    if !stun.is_empty() {
        servers.push(IceServer {
            urls: stun.into_iter().cloned().collect(),
            username: None,
            credential: None,
        });
    }
    // `validate` refuses TURN URLs without a secret; without one they are left out rather than
    // handed out with a credential coturn would refuse.
    if let (false, Some(secret)) = (turn.is_empty(), &config.secret) {
        let expiry = now + Duration::from_secs(config.credential_ttl_secs);
        let username = format!("{}:{participant}", unix_seconds(expiry));
        let credential = credential(secret, &username);
        servers.push(IceServer {
            urls: turn.into_iter().cloned().collect(),
            username: Some(username),
            credential: Some(credential),
        });
    }
    servers
}

/// base64(HMAC-SHA1(secret, username)), as coturn computes it for `use-auth-secret`.
pub fn credential(secret: &str, username: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn unix_seconds(time: SystemTime) -> u64 {
    // A clock before 1970 is a broken host; expiring at once is then the safe answer.
    time.duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0)
}

/// Where credentials were handed out, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `GET /v1/classes/{class_id}/visio/ice-servers`.
    Endpoint,
    /// The call's `joined` message.
    Join,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Endpoint => "endpoint",
            Via::Join => "join",
        }
    }
}

/// [`ice_servers`] at the current time, counted in `signaling_turn_credentials_issued_total`
/// when they carry a credential. For the call's `joined` message and the endpoint.
pub fn issue(state: &AppState, participant: &str, via: Via) -> Vec<IceServer> {
    let servers = ice_servers(&state.config.turn, participant, SystemTime::now());
    if servers.iter().any(|server| server.credential.is_some()) {
        state.metrics.turn_credentials_issued(via);
    }
    servers
}

/// The body of `GET /v1/classes/{class_id}/visio/ice-servers`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IceServersView {
    /// For `new RTCPeerConnection({ iceServers })`; empty when the deployment has no STUN or TURN
    /// server.
    #[schema(value_type = Vec<IceServerSchema>)]
    pub ice_servers: Vec<IceServer>,
    /// How long the credentials stay valid, in seconds; fetch new ones for a call that starts later.
    pub ttl_seconds: u64,
}

/// A STUN or TURN server, in the shape of the browser's `RTCIceServer`.
// `models::visio::IceServer` as the OpenAPI document shows it; only its schema is used.
#[derive(utoipa::ToSchema)]
#[schema(as = IceServer)]
#[allow(dead_code)]
struct IceServerSchema {
    /// `stun:`, `turn:` or `turns:` URLs.
    urls: Vec<String>,
    /// `<expiry unix seconds>:<user id>`; absent for STUN.
    username: Option<String>,
    /// base64 HMAC-SHA1 of `username`; absent for STUN.
    credential: Option<String>,
}

/// STUN and TURN servers for the call page's `RTCPeerConnection`, with short-lived TURN
/// credentials (the TURN REST API scheme). Approved members of a class whose tier has calls only;
/// anyone else gets the same 403 `not_a_member` as elsewhere.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/visio/ice-servers", tag = "user",
    params(("class_id" = ClassId, Path)),
    responses(
        (status = 200, description = "For the page's RTCPeerConnection", body = IceServersView),
        (status = 401, description = "Missing, forged or expired token", body = ApiError),
        (status = 403, description = "not_a_member, or tier_forbids_visio", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn ice_servers_endpoint(
    User(user_id): User,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<impl IntoResponse, AppError> {
    let (_, tier, _) =
        state.directory.approved_member(&class_id, &user_id).await?.ok_or_else(AppError::not_a_member)?;
    if state.directory.tiers().policy(tier).visio.is_none() {
        return Err(AppError::client(ErrorCode::TierForbidsVisio, "this class's offer has no video calls"));
    }
    let view = IceServersView {
        ice_servers: issue(&state, user_id.as_str(), Via::Endpoint),
        ttl_seconds: state.config.turn.credential_ttl_secs,
    };
    // Credentials are for this user only: no cache keeps them.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)))
}

#[cfg(test)]
mod tests;
