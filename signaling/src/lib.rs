//! The signaling server: the HTTP and WebSocket face of the class visio and media server.
//!
//! # Layout
//! - [`config`]: the typed `Config`, loaded from defaults, YAML and `KLASS_*` variables.
//! - [`directory`]: classes and members in SQLite (default) or PostgreSQL; tier limits enforced there.
//! - [`auth`]: the class backend's API key and users' JWTs.
//! - [`api`]: JSON handlers; [`openapi`]: the OpenAPI document, with the answers every operation
//!   shares; [`extract`] and [`error`] make every refusal a JSON `{code, message}`.
//! - [`metrics`]: Prometheus metrics and the middleware that records them.
//! - [`visio`]: the call WebSocket of each participant, relayed to the SFU, and the class's call
//!   settings (`visio::settings`); [`web`]: the call page.
//! - [`api_media`], [`uploads`], [`storage`]: posts and resumable uploads into object storage; each
//!   complete upload queues a `media-worker` job in the same transaction. [`links`]: signed,
//!   expiring links to the published files.
//! - [`privacy`]: erasing a user's or a class's data, and purging classes unused for two years.
//! - [`demo`]: the demo school of `serve --demo`.
//! - [`cluster`]: scale-out. SFU nodes (`signaling sfu`) behind an internal WebSocket, their
//!   registry and room placements in the database, and [`cluster::MediaPlane`], the one interface
//!   to the in-process SFU (the default) or to the room's node.
//!
//! # Design
//! `main` only parses configuration and binds; [`run`] serves on a given listener until `shutdown`
//! resolves, so tests start the real server on `127.0.0.1:0`. [`app`] builds the router from an
//! [`AppState`], so a test can also call it without a socket.
//!
//! This crate does not carry media itself: calls go through the in-process `sfu` ([`visio`] relays
//! each participant's WebSocket to it), and uploads land in object storage for `media-worker`,
//! whose workers run in this process by default (`worker.concurrency`) or as separate
//! `media-worker work` processes on the same database and store.

pub mod api;
pub mod api_media;
pub mod attendance;
pub mod auth;
pub mod client_addr;
pub mod cluster;
pub mod config;
pub mod db;
pub mod demo;
pub mod directory;
pub mod error;
pub mod events;
pub mod extract;
pub mod home;
pub mod limits;
pub mod links;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod privacy;
pub mod storage;
pub mod turn;
pub mod tus;
pub mod uploads;
pub mod visio;
pub mod web;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use models::ErrorCode;
use tokio::net::TcpListener;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;

use crate::auth::{ApiKey, JwtVerifier};
use crate::config::Config;
use crate::directory::Directory;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::uploads::Uploads;

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub directory: Directory,
    pub attendance: attendance::Attendance,
    /// The in-process SFU, or the SFU nodes of a cluster (`cluster.enabled`).
    pub sfu: cluster::MediaPlane,
    /// Call sessions whose WebSocket may be replaced by a `resume` (see [`visio`]).
    pub calls: Arc<visio::Resumable>,
    pub uploads: Uploads,
    pub storage: Storage,
    pub links: links::LinkSigner,
    pub jwt: JwtVerifier,
    pub api_key: ApiKey,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<limits::Limits>,
    pub config: Arc<Config>,
    /// The media workers this process runs, if any (`worker.concurrency`). Stopped, a job in
    /// progress goes back to the queue for the next worker.
    pub workers: Background,
    pub webhooks: webhooks::Webhooks,
    /// The loop over the SFU's events (metrics, attendance, webhooks). Stopped, it records what
    /// is queued (after an SFU shutdown: every departure) first.
    pub events: Background,
    /// Sends the webhook outbox to the class backend (see [`webhooks`]).
    pub webhook_delivery: Background,
}

/// A background task that runs until asked to stop: the loop over the SFU's events, the media
/// workers. Cheap to clone; stopping waits for the task to finish its last work.
#[derive(Clone)]
pub struct Background {
    name: &'static str,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    task: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Background {
    /// Spawns `run` with the receiver it must watch; `None` spawns nothing.
    fn spawn<F>(
        name: &'static str,
        run: Option<impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F>,
    ) -> Background
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = run.map(|run| tokio::spawn(run(stopped)));
        Background { name, stop: Arc::new(stop), task: Arc::new(tokio::sync::Mutex::new(task)) }
    }

    /// Asks the task to stop and waits for it.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.lock().await.take() {
            if let Err(err) = task.await {
                tracing::error!(task = self.name, cause = %err, "background task failed");
            }
        }
    }
}

impl AppState {
    /// Opens the database (running migrations) and loads keys. `config` must be validated.
    pub async fn new(config: Config) -> anyhow::Result<AppState> {
        if config.database.url.is_none() {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        }
        let pool = db::connect(&config.database_url(), config.database.max_connections)
            .await
            .context("cannot open the database")?;
        let directory = Directory::new(pool.clone(), config.tier_table());
        let attendance = attendance::Attendance::new(pool.clone());
        let uploads = Uploads::new(
            pool.clone(),
            config.tier_table(),
            config.media.max_attempts,
            config.limits.max_uploads_in_progress_per_class,
        );
        let storage = Storage::open(config.storage.url.as_deref(), &config.data_dir, &config.storage.options)
            .context("cannot open media storage")?;
        let jwt = JwtVerifier::from_config(&config.auth).context("cannot load the JWT key")?;
        // `validate` guarantees the key is set.
        let api_key_raw = config.auth.api_key.clone().context("KLASS_API_KEY is not set")?;
        let links = links::LinkSigner::new(
            config.media.link_key.as_deref(),
            &api_key_raw,
            config.media.link_ttl_secs,
        );
        let api_key = ApiKey::new(api_key_raw);
        let metrics = Arc::new(Metrics::new());
        let (sfu, sfu_events) = if config.cluster.enabled {
            let registry = cluster::registry::Registry::new(pool.clone(), config.cluster.dead_after_ms);
            // `validate` guarantees the secret is set.
            let secret = config.cluster.secret.clone().context("KLASS_CLUSTER_SECRET is not set")?;
            let cluster_metrics = cluster::metrics::ReplicaMetrics::new(metrics.registry());
            let cluster = cluster::Cluster::new(registry, secret, config.sfu.room_config(), cluster_metrics);
            (cluster::MediaPlane::Cluster(Arc::new(cluster)), None)
        } else {
            let sfu = sfu::Sfu::start(config.sfu.sfu_config()).await.context("cannot start the SFU")?;
            (cluster::MediaPlane::InProcess(sfu.handle), Some(sfu.events))
        };
        let webhooks = webhooks::Webhooks::new(&config.webhooks);
        let deliverer = webhooks.deliverer(&config.webhooks, attendance.pool().clone(), metrics.registry());
        let webhook_delivery =
            Background::spawn("webhook delivery", deliverer.map(|deliverer| move |stop| deliverer.run(stop)));
        let sinks = events::EventSinks {
            metrics: metrics.clone(),
            attendance: attendance.clone(),
            directory: directory.clone(),
            webhooks: webhooks.clone(),
            node_id: None,
        };
        // A replica of a cluster has no SFU events: each node records its rooms' own.
        let events = Background::spawn(
            "call events",
            sfu_events.map(|sfu_events| move |stop| events::run(sfu_events, sinks, stop)),
        );
        let worker = (config.worker.concurrency > 0).then(|| {
            media_worker::worker::Worker::new(
                uploads.queue().clone(),
                storage.object_store(),
                config.worker.clone(),
                media_worker::metrics::WorkerMetrics::new(metrics.registry()),
            )
        });
        let workers = Background::spawn("media workers", worker.map(|worker| move |stop| worker.run(stop)));
        let limits = Arc::new(limits::Limits::new(config.limits.clone(), metrics.registry()));
        Ok(AppState {
            directory,
            attendance,
            sfu,
            calls: Arc::default(),
            uploads,
            storage,
            links,
            jwt,
            api_key,
            metrics,
            limits,
            config: Arc::new(config),
            workers,
            webhooks,
            events,
            webhook_delivery,
        })
    }
}

pub fn app(state: AppState) -> Router {
    let max_body = state.config.http.max_json_body_bytes;
    let max_chunk = state.config.storage.max_chunk_bytes;
    Router::new()
        .route("/v1/classes/{class_id}", get(api::get_class).put(api::put_class).delete(api::delete_class))
        .route(
            "/v1/classes/{class_id}/members/{user_id}",
            axum::routing::put(api::put_member).delete(api::delete_member),
        )
        .route("/v1/classes/{class_id}/capabilities", get(api::capabilities))
        .route("/v1/users/{user_id}", axum::routing::delete(privacy::erase_user))
        .route("/v1/retention/scheduled", get(privacy::scheduled))
        .route("/v1/classes/{class_id}/posts", get(api_media::list_posts).post(api_media::create_post))
        .route(
            "/v1/classes/{class_id}/posts/{post_id}/uploads",
            axum::routing::options(tus::options)
                .post(tus::create)
                .layer(axum::middleware::from_fn(tus::tus_resumable_header)),
        )
        .route("/v1/classes/{class_id}/posts/{post_id}", get(api_media::get_post))
        .route("/v1/classes/{class_id}/posts/{post_id}/publish", axum::routing::post(api_media::publish_post))
        .route("/v1/classes/{class_id}/posts/{post_id}/media", axum::routing::post(api_media::announce_media))
        .route("/v1/classes/{class_id}/media/{media_id}", get(api_media::media_status))
        .route("/v1/classes/{class_id}/media/{media_id}/faces", get(api_media::media_faces))
        .route("/v1/classes/{class_id}/media/{media_id}/regions", axum::routing::put(api_media::put_regions))
        .route("/media-files/{class_id}/{media_id}/{version}/{file}", get(api_media::media_file))
        .route(
            "/v1/classes/{class_id}/media/{media_id}/content",
            axum::routing::put(api_media::put_chunk)
                .merge(
                    axum::routing::patch(tus::patch)
                        .head(tus::head)
                        .delete(tus::terminate)
                        .layer(axum::middleware::from_fn(tus::tus_resumable_header)),
                )
                .layer(DefaultBodyLimit::max(max_chunk)),
        )
        .route("/v1/classes/{class_id}/visio/ws", get(visio::visio_ws))
        .route("/v1/classes/{class_id}/visio/ice-servers", get(turn::ice_servers_endpoint))
        .route(
            "/v1/classes/{class_id}/visio/settings",
            get(visio::settings::get_settings).put(visio::settings::put_settings),
        )
        .route("/v1/classes/{class_id}/sessions", get(api::sessions))
        .route("/v1/classes/{class_id}/sessions/{session_id}/attendance", get(api::attendance))
        .route("/", get(home::home))
        .route("/call/{class_id}", get(web::call_page))
        .route("/media/{class_id}", get(web::media_page))
        .route("/web/{file}", get(web::asset))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::observe))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let path = request
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|matched| matched.as_str().to_owned())
                        .unwrap_or_else(|| "unmatched".to_owned());
                    tracing::info_span!("http", method = %request.method(), path)
                })
                .on_failure(log_failure),
        )
        .with_state(state)
}

/// A `503` is the server refusing work it cannot take now (`server_busy`, `unavailable`): during a
/// surge there are thousands, each answered on purpose and counted on `/metrics`, so they are not
/// logged as errors. Other server errors are.
fn log_failure(class: ServerErrorsFailureClass, latency: std::time::Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(status)
            if status == axum::http::StatusCode::SERVICE_UNAVAILABLE =>
        {
            tracing::debug!(%status, latency_ms, "refused: the server is busy or unavailable")
        }
        class => tracing::error!(%class, latency_ms, "response failed"),
    }
}

async fn not_found() -> AppError {
    AppError::client(ErrorCode::NotFound, "no such endpoint")
}

/// axum adds the `Allow` header listing the endpoint's methods.
async fn method_not_allowed() -> AppError {
    AppError::client(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let directory = state.directory.clone();
    let sfu = state.sfu.clone();
    let workers = state.workers.clone();
    let events = state.events.clone();
    let webhook_delivery = state.webhook_delivery.clone();
    privacy::start(state.clone());
    cluster::start_reaper(&state);
    limits::start(state.limits.clone());
    let http = &state.config.http;
    let listener = listener::LimitedListener::new(
        listener,
        http.max_connections,
        std::time::Duration::from_secs(http.idle_timeout_secs.max(1)),
    );
    let timeouts = listener::Timeouts {
        header: std::time::Duration::from_secs(http.header_timeout_secs.max(1)),
        body: std::time::Duration::from_secs(http.body_timeout_secs.max(1)),
    };
    // Checked by `Config::validate`.
    let proxies = client_addr::TrustedProxies::parse(&http.trusted_proxies).unwrap_or_default();
    listener::serve(listener, app(state), timeouts, proxies, shutdown).await;
    workers.stop().await;
    sfu.shutdown().await;
    // The departures the shutdown caused are recorded before the database closes.
    events.stop().await;
    webhook_delivery.stop().await;
    directory.close().await;
    Ok(())
}
