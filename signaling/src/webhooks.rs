//! HMAC-signed webhooks to the class backend: session started or ended, participant joined or left,
//! class purge scheduled or done.
//!
//! An event is a row of `webhook_outbox`, written in the same transaction as what caused it (an
//! attendance row, a purge warning), so a restart or a crash loses none. One task per process
//! delivers the rows in order, each retried with exponential backoff until the backend answers
//! 2xx or `max_attempts` is spent (the row then stays, marked given up, for an operator). A row is
//! claimed for [`LEASE_MS`] before it is sent, so several replicas can share the outbox.
//!
//! Signature: header `Klass-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! so the backend can reject replays by their timestamp. `Klass-Event-Id` is stable across retries.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use models::UserId;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;
use sha2::Sha256;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST events. Unset: no webhooks (and none stored). KLASS_WEBHOOK_URL.
    pub url: Option<String>,
    /// HMAC key shared with the class backend. KLASS_WEBHOOK_SECRET.
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    pub max_attempts: u32,
    /// Wait before the first retry; doubled at each retry, at most one minute.
    pub first_retry_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig { url: None, secret: None, max_attempts: 8, first_retry_ms: 1000 }
    }
}

const MAX_BACKOFF_MS: i64 = 60_000;
/// How long a row being sent is kept from other deliverers (a little more than the HTTP timeout).
pub const LEASE_MS: i64 = 15_000;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows read at once; the next ones are read when these are delivered.
const BATCH: i64 = 32;
/// How often the outbox is read when nothing woke the deliverer (another replica's rows).
const POLL: Duration = Duration::from_secs(1);

/// Queues events into the outbox and wakes the deliverer. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    enabled: bool,
    wake: Arc<Notify>,
    /// Orders the rows this process writes, even several in one millisecond.
    last_seq: Arc<AtomicI64>,
}

#[derive(Clone)]
struct DeliveryMetrics {
    deliveries: IntCounterVec,
    pending: IntGauge,
}

impl DeliveryMetrics {
    fn new(registry: &Registry) -> DeliveryMetrics {
        // Static definitions with valid names cannot fail; a second registration (a second server
        // on one registry, in tests) keeps the series unregistered.
        let deliveries = IntCounterVec::new(
            Opts::new("webhook_deliveries_total", "Webhook delivery attempts, by result."),
            &["result"],
        )
        .expect("valid metric");
        let pending = IntGauge::new(
            "webhook_outbox_pending",
            "Webhooks in the outbox, not yet delivered nor given up.",
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(deliveries.clone()));
        let _ = registry.register(Box::new(pending.clone()));
        DeliveryMetrics { deliveries, pending }
    }
}

impl Webhooks {
    pub fn new(config: &WebhookConfig) -> Webhooks {
        Webhooks {
            enabled: config.url.is_some() && config.secret.is_some(),
            wake: Arc::new(Notify::new()),
            last_seq: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Writes an event `{"event": kind, "event_id", "at", ...fields}` on `conn`, inside the
    /// caller's transaction; nothing when no URL is configured. `about` is the user it names.
    /// Call [`Webhooks::wake`] once the transaction is committed.
    pub async fn enqueue(
        &self,
        conn: &mut AnyConnection,
        kind: &str,
        about: Option<&UserId>,
        mut fields: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        if !self.enabled {
            return Ok(());
        }
        let event_id = crate::uploads::random_token();
        if let Some(object) = fields.as_object_mut() {
            object.insert("event".into(), kind.into());
            object.insert("event_id".into(), event_id.clone().into());
            object.insert("at".into(), crate::db::now_secs().into());
        }
        let now = now_ms();
        let next = |last: i64| last.max(now - 1) + 1;
        let previous =
            self.last_seq.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(next(last)));
        let seq = next(previous.unwrap_or_else(|last| last));
        sqlx::query(
            "INSERT INTO webhook_outbox (event_id, seq, user_id, body, next_attempt_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&event_id)
        .bind(seq)
        .bind(about.map(|user| user.as_str().to_owned()))
        .bind(fields.to_string())
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Tells the deliverer that new rows are committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The delivery loop, until `stop` turns true; `None` when no URL is configured.
    pub fn deliverer(&self, config: &WebhookConfig, pool: AnyPool, registry: &Registry) -> Option<Deliverer> {
        let (Some(url), Some(secret)) = (config.url.clone(), config.secret.clone()) else { return None };
        let deliverer = Deliverer {
            pool,
            url,
            secret,
            max_attempts: config.max_attempts.max(1) as i64,
            first_retry_ms: config.first_retry_ms.max(1) as i64,
            wake: self.wake.clone(),
            metrics: DeliveryMetrics::new(registry),
            client: reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().unwrap_or_default(),
        };
        Some(deliverer)
    }
}

pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends the outbox's rows; see [`Webhooks::deliverer`].
pub struct Deliverer {
    pool: AnyPool,
    url: String,
    secret: String,
    max_attempts: i64,
    first_retry_ms: i64,
    wake: Arc<Notify>,
    metrics: DeliveryMetrics,
    client: reqwest::Client,
}

/// One outbox row, as read for delivery.
struct Pending {
    event_id: String,
    body: String,
    attempts: i64,
    next_attempt_ms: i64,
}

impl Deliverer {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let wait = match self.deliver_due().await {
                Ok(wait) => wait,
                Err(err) => {
                    tracing::warn!(cause = %err, "webhook outbox unreadable; trying again");
                    POLL
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Delivers the due rows in order; stops at the first one that is not due (retrying, or
    /// claimed by another replica) so that no event overtakes it. Returns how long to wait.
    async fn deliver_due(&self) -> Result<Duration, sqlx::Error> {
        loop {
            let rows = sqlx::query(
                "SELECT event_id, body, attempts, next_attempt_ms FROM webhook_outbox
                 WHERE gave_up_at IS NULL ORDER BY seq, event_id LIMIT $1",
            )
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            self.update_pending().await;
            if rows.is_empty() {
                return Ok(POLL);
            }
            for row in &rows {
                let pending = Pending {
                    event_id: row.try_get("event_id")?,
                    body: row.try_get("body")?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_ms: row.try_get("next_attempt_ms")?,
                };
                let now = now_ms();
                if pending.next_attempt_ms > now {
                    return Ok(Duration::from_millis((pending.next_attempt_ms - now) as u64).min(POLL));
                }
                // Claimed, unless another replica claimed it first.
                let claimed = sqlx::query(
                    "UPDATE webhook_outbox SET next_attempt_ms = $1 WHERE event_id = $2 AND next_attempt_ms = $3",
                )
                .bind(now + LEASE_MS)
                .bind(&pending.event_id)
                .bind(pending.next_attempt_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if claimed == 0 {
                    return Ok(Duration::ZERO);
                }
                if !self.attempt(&pending).await? {
                    return Ok(Duration::ZERO);
                }
            }
        }
    }

    /// Sends one row; `true` when it is done with (delivered or given up).
    async fn attempt(&self, pending: &Pending) -> Result<bool, sqlx::Error> {
        let timestamp = crate::db::now_secs();
        let result = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("klass-event-id", &pending.event_id)
            .header(
                "klass-signature",
                format!("t={timestamp},v1={}", signature(&self.secret, timestamp, &pending.body)),
            )
            .body(pending.body.clone())
            .send()
            .await;
        let attempts = pending.attempts + 1;
        match result {
            Ok(response) if response.status().is_success() => {
                sqlx::query("DELETE FROM webhook_outbox WHERE event_id = $1")
                    .bind(&pending.event_id)
                    .execute(&self.pool)
                    .await?;
                self.metrics.deliveries.with_label_values(&["delivered"]).inc();
                return Ok(true);
            }
            Ok(response) => tracing::warn!(attempts, status = response.status().as_u16(), "webhook refused"),
            Err(err) => tracing::warn!(attempts, cause = %err, "webhook delivery failed"),
        }
        if attempts >= self.max_attempts {
            tracing::error!(event_id = %pending.event_id, "webhook given up after {attempts} attempts");
            sqlx::query("UPDATE webhook_outbox SET attempts = $1, gave_up_at = $2 WHERE event_id = $3")
                .bind(attempts)
                .bind(crate::db::now_secs())
                .bind(&pending.event_id)
                .execute(&self.pool)
                .await?;
            self.metrics.deliveries.with_label_values(&["given_up"]).inc();
            return Ok(true);
        }
        let backoff = (self.first_retry_ms << (attempts - 1).min(20)).min(MAX_BACKOFF_MS);
        sqlx::query("UPDATE webhook_outbox SET attempts = $1, next_attempt_ms = $2 WHERE event_id = $3")
            .bind(attempts)
            .bind(now_ms() + backoff)
            .bind(&pending.event_id)
            .execute(&self.pool)
            .await?;
        self.metrics.deliveries.with_label_values(&["retried"]).inc();
        Ok(false)
    }

    async fn update_pending(&self) {
        let count = sqlx::query("SELECT COUNT(*) AS n FROM webhook_outbox WHERE gave_up_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get::<i64, _>("n"));
        if let Ok(n) = count {
            self.metrics.pending.set(n);
        }
    }
}
