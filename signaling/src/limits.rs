//! Rate limits per address and per user, and the node's admission of calls.
//!
//! - **Rates** (GCRA buckets from `governor`): every API request counts against its address and,
//!   with a valid user token, its user, in one of three kinds: `api`, `join` (opening a call
//!   WebSocket) and `upload` (announcing a file, sending a chunk). Over the rate: `429` with
//!   `Retry-After`, before the handler runs or a body byte is read. The class backend (API key)
//!   and health, metrics and static pages are not limited. IPv6 addresses count per /64, as one
//!   household's devices share a prefix.
//! - **Connections**: a user has at most `max_call_connections_per_user` call WebSockets at once.
//! - **Admission**: at most `max_joins_in_progress` joins are negotiated at once, and none while
//!   the SFU's call events wait for the database (`max_call_event_backlog`): a surge gets a quick
//!   `503 server_busy` with `Retry-After` instead of timing out. A join is in progress from its
//!   `join` message until its media connects (ICE and DTLS), `join_connect_timeout_secs` at most.
//!
//! The buckets forget idle keys every minute, so their memory follows the active users.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use models::{ApiError, ErrorCode, UserId};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AppState;

/// A rate: `per_minute` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    const fn new(per_minute: u32, burst: u32) -> Rate {
        Rate { per_minute, burst }
    }

    pub(crate) fn quota(self) -> Quota {
        let period = Duration::from_secs(60) / self.per_minute.max(1);
        Quota::with_period(period.max(Duration::from_micros(1)))
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(self.burst.max(1)).expect("at least one"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Off only for benchmarks that play thousands of users from one address.
    pub rate_limits: bool,
    pub api_per_address: Rate,
    pub api_per_user: Rate,
    /// A school's network puts a whole class behind one address at 9:00.
    pub joins_per_address: Rate,
    pub joins_per_user: Rate,
    /// Chunks of an upload count one each.
    pub uploads_per_address: Rate,
    pub uploads_per_user: Rate,
    /// `e2ee_keys` messages of one call participant. A join or a departure in a 70-person call
    /// makes every page send one; beyond the rate, `rate_limited` and the call goes on.
    pub e2ee_keys_per_participant: Rate,
    /// Call WebSockets one user may hold at once (tabs, devices, a reconnection overlapping).
    pub max_call_connections_per_user: usize,
    /// Joins negotiated at once by this node; the next get `503 server_busy`. 0 admits none
    /// (a node being drained).
    pub max_joins_in_progress: usize,
    /// A join counts among those in progress until its media connects (ICE and DTLS), or this
    /// long at most.
    pub join_connect_timeout_secs: u64,
    /// Call events waiting for the database past which this node admits no join.
    pub max_call_event_backlog: usize,
    /// Files of one class uploading at once (announced, not complete, touched in the last day):
    /// above the largest post a tier allows (36 photos and 3 videos), so a full post always fits.
    pub max_uploads_in_progress_per_class: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            rate_limits: true,
            api_per_address: Rate::new(3000, 500),
            api_per_user: Rate::new(1200, 200),
            joins_per_address: Rate::new(120, 40),
            joins_per_user: Rate::new(20, 6),
            uploads_per_address: Rate::new(3000, 600),
            uploads_per_user: Rate::new(1200, 300),
            e2ee_keys_per_participant: Rate::new(1200, 100),
            max_call_connections_per_user: 4,
            // Counted until media connects: a 300-class ramp (about 22 joins a second) keeps
            // some 30 to 60 in progress on a busy node (docs/benchmarks.md); 32 refused some.
            max_joins_in_progress: 96,
            join_connect_timeout_secs: 10,
            max_call_event_backlog: 10_000,
            max_uploads_in_progress_per_class: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Api,
    Join,
    Upload,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Join => "join",
            Kind::Upload => "upload",
        }
    }

    /// The kind of a matched route; `None` for what is never limited.
    fn of(route: &str, method: &axum::http::Method) -> Option<Kind> {
        match route {
            "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/web/{file}" | "/call/{class_id}"
            | "/media/{class_id}" => None,
            "/v1/classes/{class_id}/visio/ws" => Some(Kind::Join),
            "/v1/classes/{class_id}/media/{media_id}/content" => Some(Kind::Upload),
            "/v1/classes/{class_id}/posts/{post_id}/media"
            | "/v1/classes/{class_id}/posts/{post_id}/uploads"
                if method == axum::http::Method::POST =>
            {
                Some(Kind::Upload)
            }
            _ => Some(Kind::Api),
        }
    }
}

type Buckets<K> = DefaultKeyedRateLimiter<K>;

struct KindBuckets {
    by_address: Buckets<IpAddr>,
    by_user: Buckets<UserId>,
}

pub struct Limits {
    config: LimitsConfig,
    api: KindBuckets,
    join: KindBuckets,
    upload: KindBuckets,
    connections: Mutex<HashMap<UserId, usize>>,
    joins: Arc<Semaphore>,
    refused: IntCounterVec,
}

/// Over a limit: how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
    pub scope: &'static str,
}

impl Limited {
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl Limits {
    pub fn new(config: LimitsConfig, registry: &Registry) -> Limits {
        let buckets = |by_address: Rate, by_user: Rate| KindBuckets {
            by_address: Buckets::keyed(by_address.quota()),
            by_user: Buckets::keyed(by_user.quota()),
        };
        let refused = IntCounterVec::new(
            Opts::new(
                "limits_refused_total",
                "Requests refused by a rate limit, a connection limit or admission control.",
            ),
            &["kind", "scope"],
        )
        .expect("valid metric");
        // A second server on one registry (tests) keeps the first's series.
        let _ = registry.register(Box::new(refused.clone()));
        Limits {
            api: buckets(config.api_per_address, config.api_per_user),
            join: buckets(config.joins_per_address, config.joins_per_user),
            upload: buckets(config.uploads_per_address, config.uploads_per_user),
            connections: Mutex::new(HashMap::new()),
            joins: Arc::new(Semaphore::new(config.max_joins_in_progress)),
            refused,
            config,
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    fn buckets(&self, kind: Kind) -> &KindBuckets {
        match kind {
            Kind::Api => &self.api,
            Kind::Join => &self.join,
            Kind::Upload => &self.upload,
        }
    }

    fn count_refusal(&self, kind: &str, scope: &str) {
        self.refused.with_label_values(&[kind, scope]).inc();
    }

    /// Takes one request of `kind` from the address's bucket.
    pub fn check_address(&self, kind: Kind, address: IpAddr) -> Result<(), Limited> {
        if !self.config.rate_limits {
            return Ok(());
        }
        self.buckets(kind).by_address.check_key(&address_key(address)).map_err(|not_until| {
            self.count_refusal(kind.as_str(), "address");
            Limited { retry_after: not_until.wait_time_from(DefaultClock::default().now()), scope: "address" }
        })
    }

    /// Takes one request of `kind` from the user's bucket.
    pub fn check_user(&self, kind: Kind, user_id: &UserId) -> Result<(), Limited> {
        if !self.config.rate_limits {
            return Ok(());
        }
        self.buckets(kind).by_user.check_key(user_id).map_err(|not_until| {
            self.count_refusal(kind.as_str(), "user");
            Limited { retry_after: not_until.wait_time_from(DefaultClock::default().now()), scope: "user" }
        })
    }

    /// A place for one more call WebSocket of this user, held until the guard is dropped.
    pub fn open_connection(self: &Arc<Self>, user_id: &UserId) -> Option<ConnectionGuard> {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let open = connections.entry(user_id.clone()).or_insert(0);
        if *open >= self.config.max_call_connections_per_user {
            drop(connections);
            self.count_refusal("join", "connections");
            return None;
        }
        *open += 1;
        Some(ConnectionGuard { limits: self.clone(), user_id: user_id.clone() })
    }

    /// Whether this node admits joins now: a free slot among the joins in progress, while the SFU's
    /// events are not piling up. Checked before the WebSocket upgrade, so a surge is answered at
    /// once with `503`; the slot itself is taken with the join message ([`Limits::start_join`]),
    /// so sockets that never say `join` hold none.
    pub fn admits_joins(&self, event_backlog: usize) -> Result<(), Limited> {
        if event_backlog > self.config.max_call_event_backlog {
            return Err(self.busy("event_backlog"));
        }
        if self.joins.available_permits() == 0 {
            return Err(self.busy("joins_in_progress"));
        }
        Ok(())
    }

    /// A slot among the joins in progress, held until the join's media connects (or a deadline).
    pub fn start_join(&self) -> Result<OwnedSemaphorePermit, Limited> {
        self.joins.clone().try_acquire_owned().map_err(|_| self.busy("joins_in_progress"))
    }

    fn busy(&self, scope: &'static str) -> Limited {
        self.count_refusal("join", scope);
        Limited { retry_after: Duration::from_secs(2), scope }
    }

    /// Forgets the buckets of keys idle long enough to be full again.
    pub fn forget_idle(&self) {
        for kind in [&self.api, &self.join, &self.upload] {
            kind.by_address.retain_recent();
            kind.by_address.shrink_to_fit();
            kind.by_user.retain_recent();
            kind.by_user.shrink_to_fit();
        }
    }
}

/// One open call WebSocket of a user; dropping it frees the place.
pub struct ConnectionGuard {
    limits: Arc<Limits>,
    user_id: UserId,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut connections = self.limits.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = connections.get_mut(&self.user_id) {
            *open -= 1;
            if *open == 0 {
                connections.remove(&self.user_id);
            }
        }
    }
}

/// IPv4 addresses as they are; IPv6 by /64 (IPv4-mapped ones as IPv4).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The `429`/`503` answer: the code's JSON and `Retry-After`.
pub fn refusal(code: ErrorCode, limited: Limited) -> Response {
    let message = match code {
        ErrorCode::ServerBusy => format!("the server is busy; try again in {} s", limited.retry_after_secs()),
        _ => format!(
            "too many requests from this {}; try again in {} s",
            limited.scope,
            limited.retry_after_secs()
        ),
    };
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let mut response = (status, Json(ApiError::new(code, message))).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
    response
}

/// The middleware: classifies the request by its route and takes it from the address's bucket
/// and, when it carries a valid user token, from the user's.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let kind =
        request.extensions().get::<MatchedPath>().and_then(|path| Kind::of(path.as_str(), request.method()));
    let Some(kind) = kind else { return next.run(request).await };
    let headers = request.headers();
    let bearer = crate::auth::bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())).ok();
    if bearer.is_some_and(|key| state.api_key.matches(key)) {
        return next.run(request).await;
    }
    let limits = &state.limits;
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        if let Err(limited) = limits.check_address(kind, peer.ip()) {
            return refusal(ErrorCode::RateLimited, limited);
        }
    }
    if let Some(user_id) = bearer.and_then(|token| state.jwt.verify(token).ok()) {
        if let Err(limited) = limits.check_user(kind, &user_id) {
            return refusal(ErrorCode::RateLimited, limited);
        }
    }
    next.run(request).await
}

/// Forgets idle buckets every minute, for as long as the process runs.
pub fn start(limits: Arc<Limits>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            limits.forget_idle();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_household_counts_as_one_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_burst_passes_then_waits_are_told() {
        let config = LimitsConfig { api_per_user: Rate::new(60, 3), ..LimitsConfig::default() };
        let limits = Limits::new(config, &Registry::new());
        let user = UserId::new("u").unwrap();
        for _ in 0..3 {
            limits.check_user(Kind::Api, &user).unwrap();
        }
        let limited = limits.check_user(Kind::Api, &user).unwrap_err();
        assert_eq!(limited.retry_after_secs(), 1);
        // Another user is not affected.
        limits.check_user(Kind::Api, &UserId::new("v").unwrap()).unwrap();
    }

    #[test]
    fn connections_are_counted_per_user_and_freed() {
        let limits = Arc::new(Limits::new(LimitsConfig::default(), &Registry::new()));
        let user = UserId::new("u").unwrap();
        let guards: Vec<_> = (0..4).map(|_| limits.open_connection(&user).unwrap()).collect();
        assert!(limits.open_connection(&user).is_none());
        drop(guards);
        assert!(limits.open_connection(&user).is_some());
        assert!(limits.connections.lock().unwrap().len() <= 1);
    }
}
