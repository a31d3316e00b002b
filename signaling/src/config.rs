//! The one typed configuration of the `signaling` binary.
//!
//! Loading order: defaults, then strict YAML (a file, or the whole body in `KLASS_CONFIG_BODY` as
//! Kubernetes passes a ConfigMap), then `KLASS_*` environment overrides, then [`Config::validate`].
//! Unknown YAML keys are errors: a typo must not silently fall back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use models::{Tier, TierPolicyOverride, TierTable};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    /// Where the embedded defaults keep their files: the SQLite database, later the media.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub media: MediaSection,
    /// Media workers this process runs (`concurrency: 0` for none: separate `media-worker work`
    /// processes claim the jobs), and how they work.
    pub worker: media_worker::worker::WorkerConfig,
    /// GDPR retention: classes unused for two years are purged, after a warning.
    pub retention: crate::privacy::RetentionConfig,
    pub sfu: SfuSection,
    /// Scale-out: SFU nodes as their own processes (`signaling sfu`) and API replicas that use
    /// them (`cluster.enabled`). Off by default: one process runs everything.
    pub cluster: crate::cluster::ClusterConfig,
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Rate limits, connection limits and admission control (see `limits`).
    pub limits: crate::limits::LimitsConfig,
    pub auth: AuthConfig,
    /// STUN and TURN servers for call pages, and the secret shared with coturn (see `turn`).
    pub turn: crate::turn::TurnConfig,
    /// Partial overrides of the offers, per tier. See `config.sample.yaml`.
    pub tiers: BTreeMap<Tier, TierPolicyOverride>,
    /// Demo mode: missing secrets are generated, a demo school is created and tokens are printed.
    /// Never for production.
    pub demo: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// Largest JSON body accepted on the API.
    pub max_json_body_bytes: usize,
    /// The URL users reach this server at, used in the links the demo prints.
    pub public_url: Option<String>,
    /// Open connections at most; the surplus is closed as soon as accepted.
    pub max_connections: usize,
    /// A connection whose client sends nothing for this long is closed. Call WebSockets are
    /// pinged every third of it, and browsers answer pings by themselves.
    pub idle_timeout_secs: u64,
    /// A request whose headers are not all in within this long is closed,
    /// however slowly its bytes trickle in.
    pub header_timeout_secs: u64,
    /// A request's whole body must arrive within this long (a chunk of `max_chunk_bytes` on a
    /// slow phone included); past it the request fails and the connection is freed.
    pub body_timeout_secs: u64,
    /// Load balancers and ingresses (addresses or CIDR networks) whose `X-Forwarded-For` names the
    /// client, for the per-address rate limits (`client_addr`). Empty: the header is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            // Loopback by default: exposing the server is a deliberate act.
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_json_body_bytes: 64 * 1024,
            public_url: None,
            max_connections: 10_000,
            idle_timeout_secs: 60,
            header_timeout_secs: 10,
            body_timeout_secs: 300,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`. Unset: a SQLite file in `data_dir`.
    pub url: Option<String>,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, max_connections: 8 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Unset: files under `<data_dir>/media`. `s3://bucket` for an S3-compatible store, configured by
    /// the usual `AWS_*` variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...).
    pub url: Option<String>,
    /// object_store options on top of the `AWS_*` variables: `aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`, ...
    pub options: BTreeMap<String, String>,
    /// Largest chunk of an upload accepted in one request.
    pub max_chunk_bytes: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { url: None, options: BTreeMap::new(), max_chunk_bytes: 8 * 1024 * 1024 }
    }
}

/// Processing jobs and the links members view media through.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// Attempts of a job that fails on our side (storage down, a worker crash) before it is failed.
    pub max_attempts: u32,
    /// How long a signed link to a photo or video works.
    pub link_ttl_secs: u64,
    /// Key that signs media links. Unset: derived from the API key.
    pub link_key: Option<String>,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection { max_attempts: 3, link_ttl_secs: 600, link_key: None }
    }
}

// The link key never reaches logs.
impl std::fmt::Debug for MediaSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSection")
            .field("max_attempts", &self.max_attempts)
            .field("link_ttl_secs", &self.link_ttl_secs)
            .field("link_key", &self.link_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl StorageConfig {
    /// Largest file accepted: a 10-minute phone video fits in 2 GB; a photo in 50 MB.
    pub fn max_upload_bytes(&self, kind: models::media::MediaKind) -> u64 {
        match kind {
            models::media::MediaKind::Photo => 50 * 1024 * 1024,
            models::media::MediaKind::Video => 2 * 1024 * 1024 * 1024,
        }
    }
}

/// Where the in-process SFU listens. Every peer of every room shares the one UDP port; ICE-TCP on
/// one TCP port serves networks that block UDP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfuSection {
    pub udp_addr: SocketAddr,
    /// `null`: no ICE-TCP.
    pub tcp_addr: Option<SocketAddr>,
    /// The address browsers reach the SFU at, put in its ICE candidates (public IP behind 1:1 NAT).
    pub advertised_ip: std::net::IpAddr,
    /// Audio slots the SFU fills per participant: the loudest speakers, teachers always.
    pub audio_slots: usize,
    /// Camera thumbnails the SFU fills per participant (teachers and the latest speakers first),
    /// besides the stage. A client may declare fewer.
    pub thumbnail_slots: usize,
    /// Send each room's datagrams in batches with `sendmmsg(2)` (Linux).
    pub batch_sends: bool,
    /// Run the media plane on its own thread and single-threaded runtime.
    pub media_thread: bool,
    /// How long a participant whose connection broke keeps their place, holds and attendance
    /// row while their page reconnects (ICE restart, WebSocket `resume`).
    pub reconnect_grace_secs: u64,
}

impl Default for SfuSection {
    fn default() -> Self {
        // Loopback by default, like HTTP: exposing media ports is a deliberate act.
        SfuSection {
            udp_addr: SocketAddr::from(([127, 0, 0, 1], 3478)),
            tcp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 3478))),
            advertised_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            audio_slots: sfu::RoomConfig::default().audio_slots,
            thumbnail_slots: sfu::RoomConfig::default().thumbnail_slots,
            batch_sends: sfu::SfuConfig::default().batch_sends,
            media_thread: sfu::SfuConfig::default().media_thread,
            reconnect_grace_secs: sfu::RoomConfig::default().reconnect_grace.as_secs(),
        }
    }
}

impl SfuSection {
    /// The media plane's own configuration: of the in-process SFU, or of an SFU node.
    pub fn sfu_config(&self) -> sfu::SfuConfig {
        sfu::SfuConfig {
            udp_bind: self.udp_addr,
            tcp_bind: self.tcp_addr,
            advertised_ip: self.advertised_ip,
            room: self.room_config(),
            tcp_limits: sfu::TcpLimits::default(),
            batch_sends: self.batch_sends,
            media_thread: self.media_thread,
        }
    }

    pub fn room_config(&self) -> sfu::RoomConfig {
        sfu::RoomConfig {
            audio_slots: self.audio_slots,
            thumbnail_slots: self.thumbnail_slots,
            reconnect_grace: std::time::Duration::from_secs(self.reconnect_grace_secs),
            ..sfu::RoomConfig::default()
        }
    }
}

/// How user tokens are signed by the class backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    EdDSA,
    RS256,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer key of the class backend on the sync API.
    pub api_key: Option<String>,
    /// Shared secret for HS256 user tokens.
    pub jwt_secret: Option<String>,
    /// PEM public key for EdDSA or RS256 user tokens; used instead of `jwt_secret` when set.
    pub jwt_public_key_file: Option<PathBuf>,
    pub jwt_algorithm: JwtAlgorithm,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub jwt_leeway_secs: u64,
    /// Longest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`), in seconds.
    pub jwt_max_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            api_key: None,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_leeway_secs: 30,
            jwt_max_lifetime_secs: 24 * 3600,
        }
    }
}

// Secrets never reach logs, not even through `{:?}`.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_leeway_secs", &self.jwt_leeway_secs)
            .field("jwt_max_lifetime_secs", &self.jwt_max_lifetime_secs)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: HttpConfig::default(),
            data_dir: PathBuf::from("data"),
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
            media: MediaSection::default(),
            worker: media_worker::worker::WorkerConfig::default(),
            retention: crate::privacy::RetentionConfig::default(),
            sfu: SfuSection::default(),
            cluster: crate::cluster::ClusterConfig::default(),
            webhooks: crate::webhooks::WebhookConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            auth: AuthConfig::default(),
            turn: crate::turn::TurnConfig::default(),
            tiers: BTreeMap::new(),
            demo: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("invalid value in {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Shortest secrets we accept. Shorter ones are guessable.
const MIN_API_KEY_LEN: usize = 16;
const MIN_JWT_SECRET_LEN: usize = 32;

impl Config {
    /// Defaults, then the YAML file or `KLASS_CONFIG_BODY`, then the environment. Not validated.
    pub fn load(file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file = file.map(Path::to_path_buf).or_else(|| env("KLASS_CONFIG").map(PathBuf::from));
        let mut config = match (file, env("KLASS_CONFIG_BODY")) {
            (Some(path), _) => {
                let body = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                Config::from_yaml(&body)?
            }
            (None, Some(body)) => Config::from_yaml(&body)?,
            (None, None) => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    pub fn from_yaml(body: &str) -> Result<Config, ConfigError> {
        // An empty file means "all defaults", which serde_yaml reads as null.
        if body.trim().is_empty() {
            return Ok(Config::default());
        }
        Ok(serde_yaml::from_str(body)?)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(addr) = env("KLASS_HTTP_ADDR") {
            self.http.addr = addr
                .parse()
                .map_err(|err| ConfigError::Env { var: "KLASS_HTTP_ADDR", message: format!("{err}") })?;
        }
        if let Some(url) = env("KLASS_PUBLIC_URL") {
            self.http.public_url = Some(url);
        }
        if let Some(list) = env("KLASS_TRUSTED_PROXIES") {
            self.http.trusted_proxies =
                list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        }
        if let Some(dir) = env("KLASS_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(url) = env("KLASS_DATABASE_URL") {
            self.database.url = Some(url);
        }
        self.apply_cluster_env(env)?;
        if let Some(addr) = env("KLASS_SFU_UDP_ADDR") {
            self.sfu.udp_addr = addr
                .parse()
                .map_err(|err| ConfigError::Env { var: "KLASS_SFU_UDP_ADDR", message: format!("{err}") })?;
        }
        if let Some(addr) = env("KLASS_SFU_TCP_ADDR") {
            self.sfu.tcp_addr = match addr.as_str() {
                "" | "off" => None,
                _ => Some(addr.parse().map_err(|err| ConfigError::Env {
                    var: "KLASS_SFU_TCP_ADDR",
                    message: format!("{err}"),
                })?),
            };
        }
        if let Some(ip) = env("KLASS_SFU_ADVERTISED_IP") {
            self.sfu.advertised_ip = ip.parse().map_err(|err| ConfigError::Env {
                var: "KLASS_SFU_ADVERTISED_IP",
                message: format!("{err}"),
            })?;
        }
        if let Some(batch) = env("KLASS_SFU_BATCH_SENDS") {
            self.sfu.batch_sends = batch.parse().map_err(|err| ConfigError::Env {
                var: "KLASS_SFU_BATCH_SENDS",
                message: format!("{err} (true or false)"),
            })?;
        }
        if let Some(dedicated) = env("KLASS_SFU_MEDIA_THREAD") {
            self.sfu.media_thread = dedicated.parse().map_err(|err| ConfigError::Env {
                var: "KLASS_SFU_MEDIA_THREAD",
                message: format!("{err} (true or false)"),
            })?;
        }
        if let Some(secs) = env("KLASS_SFU_RECONNECT_GRACE_SECS") {
            self.sfu.reconnect_grace_secs = secs.parse().map_err(|err| ConfigError::Env {
                var: "KLASS_SFU_RECONNECT_GRACE_SECS",
                message: format!("{err} (whole seconds)"),
            })?;
        }
        if let Some(url) = env("KLASS_WEBHOOK_URL") {
            self.webhooks.url = Some(url);
        }
        if let Some(secret) = env("KLASS_WEBHOOK_SECRET") {
            self.webhooks.secret = Some(secret);
        }
        if let Some(url) = env("KLASS_STORAGE_URL") {
            self.storage.url = Some(url);
        }
        if let Some(n) = env("KLASS_WORKER_CONCURRENCY") {
            self.worker.concurrency = n.parse().map_err(|err| ConfigError::Env {
                var: "KLASS_WORKER_CONCURRENCY",
                message: format!("{err}"),
            })?;
        }
        if let Some(path) = env("KLASS_FACE_MODEL") {
            self.worker.face_model = Some(PathBuf::from(path));
        }
        if let Some(key) = env("KLASS_MEDIA_LINK_KEY") {
            self.media.link_key = Some(key);
        }
        if let Some(key) = env("KLASS_API_KEY") {
            self.auth.api_key = Some(key);
        }
        if let Some(secret) = env("KLASS_JWT_SECRET") {
            self.auth.jwt_secret = Some(secret);
        }
        if let Some(path) = env("KLASS_JWT_PUBLIC_KEY_FILE") {
            self.auth.jwt_public_key_file = Some(PathBuf::from(path));
        }
        if let Some(algorithm) = env("KLASS_JWT_ALGORITHM") {
            self.auth.jwt_algorithm = match algorithm.as_str() {
                "HS256" => JwtAlgorithm::HS256,
                "EdDSA" => JwtAlgorithm::EdDSA,
                "RS256" => JwtAlgorithm::RS256,
                other => {
                    return Err(ConfigError::Env {
                        var: "KLASS_JWT_ALGORITHM",
                        message: format!("{other:?} is not one of HS256, EdDSA, RS256"),
                    })
                }
            };
        }
        if let Some(urls) = env("KLASS_TURN_URLS") {
            // Comma- or space-separated; an empty value clears the list.
            self.turn.urls = urls
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(secret) = env("KLASS_TURN_SECRET") {
            self.turn.secret = Some(secret);
        }
        if let Some(demo) = env("KLASS_DEMO") {
            self.demo = matches!(demo.as_str(), "1" | "true" | "yes");
        }
        Ok(())
    }

    /// Fills what demo mode may generate, then refuses configurations that cannot run safely.
    fn apply_cluster_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let cluster = &mut self.cluster;
        if let Some(enabled) = env("KLASS_CLUSTER") {
            cluster.enabled = enabled
                .parse()
                .map_err(|_| ConfigError::Env { var: "KLASS_CLUSTER", message: "true or false".into() })?;
        }
        if let Some(secret) = env("KLASS_CLUSTER_SECRET") {
            cluster.secret = Some(secret);
        }
        if let Some(node_id) = env("KLASS_NODE_ID") {
            cluster.node_id = Some(node_id);
        }
        if let Some(addr) = env("KLASS_NODE_ADDR") {
            cluster.node_addr = addr
                .parse()
                .map_err(|err| ConfigError::Env { var: "KLASS_NODE_ADDR", message: format!("{err}") })?;
        }
        if let Some(url) = env("KLASS_NODE_URL") {
            cluster.node_url = Some(url);
        }
        for (var, field) in [
            ("KLASS_CLUSTER_HEARTBEAT_MS", &mut cluster.heartbeat_ms),
            ("KLASS_CLUSTER_DEAD_AFTER_MS", &mut cluster.dead_after_ms),
            ("KLASS_CLUSTER_REAP_AFTER_MS", &mut cluster.reap_after_ms),
            ("KLASS_NODE_DRAIN_TIMEOUT_SECS", &mut cluster.drain_timeout_secs),
        ] {
            if let Some(value) = env(var) {
                *field = value.parse().map_err(|err| ConfigError::Env { var, message: format!("{err}") })?;
            }
        }
        Ok(())
    }

    /// What an SFU node (`signaling sfu`) or a replica in a cluster needs besides the rest.
    pub fn validate_cluster(&self) -> Result<(), ConfigError> {
        match &self.cluster.secret {
            Some(secret) if secret.len() >= crate::cluster::MIN_SECRET_LEN => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                "KLASS_CLUSTER_SECRET must be set, at least {} characters: replicas present it to SFU nodes",
                crate::cluster::MIN_SECRET_LEN
            )))
            }
        }
        if self.cluster.heartbeat_ms == 0 || self.cluster.dead_after_ms < 2 * self.cluster.heartbeat_ms {
            return Err(ConfigError::Invalid(
                "cluster.dead_after_ms must be at least twice cluster.heartbeat_ms".into(),
            ));
        }
        if self.cluster.reap_after_ms < self.cluster.dead_after_ms {
            return Err(ConfigError::Invalid(
                "cluster.reap_after_ms must be at least cluster.dead_after_ms".into(),
            ));
        }
        Ok(())
    }

    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.cluster.enabled {
            self.validate_cluster()?;
        }
        if self.http.idle_timeout_secs < 3 {
            return Err(ConfigError::Invalid(
                "http.idle_timeout_secs must be at least 3 s: call WebSockets are pinged every third of it"
                    .into(),
            ));
        }
        let max_slots = sfu::room::MAX_SLOTS - 1;
        if self.sfu.audio_slots == 0 || self.sfu.audio_slots + self.sfu.thumbnail_slots > max_slots {
            return Err(ConfigError::Invalid(format!(
                "sfu.audio_slots must be at least 1, and sfu.audio_slots + sfu.thumbnail_slots at most {max_slots}"
            )));
        }
        if !(1..=600).contains(&self.sfu.reconnect_grace_secs) {
            return Err(ConfigError::Invalid("sfu.reconnect_grace_secs must be between 1 and 600 s".into()));
        }
        crate::client_addr::TrustedProxies::parse(&self.http.trusted_proxies)
            .map_err(|err| ConfigError::Invalid(format!("http.trusted_proxies: {err}")))?;
        if self.demo {
            self.auth.api_key.get_or_insert_with(|| random_secret(24));
            if self.auth.jwt_public_key_file.is_none() {
                self.auth.jwt_secret.get_or_insert_with(|| random_secret(32));
            }
        }
        match &self.auth.api_key {
            None => {
                return Err(ConfigError::Invalid(
                    "KLASS_API_KEY is not set: the class backend needs it to sync classes \
                     (or run with --demo to generate one)"
                        .into(),
                ))
            }
            Some(key) if key.len() < MIN_API_KEY_LEN => {
                return Err(ConfigError::Invalid(format!(
                    "KLASS_API_KEY is too short: use at least {MIN_API_KEY_LEN} characters"
                )))
            }
            Some(_) => {}
        }
        match (self.auth.jwt_algorithm, &self.auth.jwt_secret, &self.auth.jwt_public_key_file) {
            (JwtAlgorithm::HS256, None, _) => {
                return Err(ConfigError::Invalid(
                    "KLASS_JWT_SECRET is not set: user tokens cannot be checked \
                     (or set KLASS_JWT_ALGORITHM=EdDSA|RS256 with KLASS_JWT_PUBLIC_KEY_FILE, \
                     or run with --demo)"
                        .into(),
                ))
            }
            (JwtAlgorithm::HS256, Some(secret), _) if secret.len() < MIN_JWT_SECRET_LEN => {
                return Err(ConfigError::Invalid(format!(
                    "KLASS_JWT_SECRET is too short: use at least {MIN_JWT_SECRET_LEN} bytes"
                )))
            }
            (JwtAlgorithm::EdDSA | JwtAlgorithm::RS256, _, None) => {
                return Err(ConfigError::Invalid(
                    "KLASS_JWT_ALGORITHM asks for a public key but KLASS_JWT_PUBLIC_KEY_FILE is not set"
                        .into(),
                ))
            }
            _ => {}
        }
        if self.http.max_json_body_bytes == 0 {
            return Err(ConfigError::Invalid("http.max_json_body_bytes must be positive".into()));
        }
        if self.webhooks.url.is_some()
            && self.webhooks.secret.as_deref().is_none_or(|s| s.len() < MIN_JWT_SECRET_LEN)
        {
            return Err(ConfigError::Invalid(format!(
                "KLASS_WEBHOOK_URL needs KLASS_WEBHOOK_SECRET of at least {MIN_JWT_SECRET_LEN} bytes to sign events"
            )));
        }
        if self.storage.max_chunk_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid("storage.max_chunk_bytes must be at least 65536".into()));
        }
        if self.media.link_key.as_deref().is_some_and(|key| key.len() < MIN_JWT_SECRET_LEN) {
            return Err(ConfigError::Invalid(format!(
                "KLASS_MEDIA_LINK_KEY is too short: use at least {MIN_JWT_SECRET_LEN} bytes"
            )));
        }
        if self.media.link_ttl_secs == 0 || self.media.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "media.link_ttl_secs and media.max_attempts must be positive".into(),
            ));
        }
        if self.retention.inactive_days > 0 && self.retention.warning_days >= self.retention.inactive_days {
            return Err(ConfigError::Invalid(
                "retention.warning_days must be less than retention.inactive_days".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid("database.max_connections must be positive".into()));
        }
        self.turn.validate().map_err(|err| ConfigError::Invalid(err.to_string()))?;
        Ok(())
    }

    pub fn tier_table(&self) -> TierTable {
        TierTable::with_overrides(&self.tiers)
    }

    /// The database URL: the configured one, or a SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("klass.db").display()),
        }
    }

    pub fn public_url(&self) -> String {
        self.http.public_url.clone().unwrap_or_else(|| format!("http://{}", self.http.addr))
    }
}

fn random_secret(n_bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = vec![0u8; n_bytes];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
