//! HMAC-signed webhooks to the class backend: session started or ended, participant joined or left.
//!
//! Deliveries leave in order from one task, each retried with exponential backoff until the backend
//! answers 2xx or `max_attempts` is spent. The queue lives in memory: events of a crash are lost
//! (attendance in the database is not).
//!
//! Signature: header `Klass-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! so the backend can reject replays by their timestamp. `Klass-Event-Id` is stable across retries.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST events. Unset: no webhooks. KLASS_WEBHOOK_URL.
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

const QUEUE: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Delivery {
    event_id: String,
    body: String,
}

#[derive(Clone)]
pub struct Webhooks {
    queue: Option<mpsc::Sender<Delivery>>,
}

impl Webhooks {
    /// Starts the delivery task when a URL is configured. `validate` ensures a secret comes with it.
    pub fn start(config: &WebhookConfig) -> Webhooks {
        let (Some(url), Some(secret)) = (config.url.clone(), config.secret.clone()) else {
            return Webhooks { queue: None };
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(
            rx,
            url,
            secret,
            config.max_attempts.max(1),
            Duration::from_millis(config.first_retry_ms),
        ));
        Webhooks { queue: Some(tx) }
    }

    /// Queues an event: `{"event": kind, "event_id", "at", ...fields}`.
    pub fn send(&self, kind: &str, mut fields: serde_json::Value) {
        let Some(queue) = &self.queue else { return };
        let event_id = crate::uploads::random_token();
        if let Some(object) = fields.as_object_mut() {
            object.insert("event".into(), kind.into());
            object.insert("event_id".into(), event_id.clone().into());
            object.insert("at".into(), crate::db::now_secs().into());
        }
        let delivery = Delivery { event_id, body: fields.to_string() };
        if queue.try_send(delivery).is_err() {
            tracing::warn!(event = kind, "webhook queue full: event dropped");
        }
    }
}

pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn deliver(
    mut rx: mpsc::Receiver<Delivery>,
    url: String,
    secret: String,
    max_attempts: u32,
    first_retry: Duration,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    while let Some(delivery) = rx.recv().await {
        let mut backoff = first_retry;
        for attempt in 1..=max_attempts {
            let timestamp = crate::db::now_secs();
            let result = client
                .post(&url)
                .header("content-type", "application/json")
                .header("klass-event-id", &delivery.event_id)
                .header(
                    "klass-signature",
                    format!("t={timestamp},v1={}", signature(&secret, timestamp, &delivery.body)),
                )
                .body(delivery.body.clone())
                .send()
                .await;
            match result {
                Ok(response) if response.status().is_success() => break,
                Ok(response) => {
                    tracing::warn!(attempt, status = response.status().as_u16(), "webhook refused")
                }
                Err(err) => tracing::warn!(attempt, cause = %err, "webhook delivery failed"),
            }
            if attempt == max_attempts {
                tracing::error!(event_id = %delivery.event_id, "webhook dropped after {max_attempts} attempts");
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
