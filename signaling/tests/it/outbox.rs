//! Nothing lost: webhooks are written to the database with what caused them and delivered from
//! there, so events queued while the class backend is down survive a restart of our server.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{both_backends, free_port, webhook_receiver, Db, TestServer, WEBHOOK_SECRET};
use crate::visio::short_call;

async fn count(server: &TestServer, query: &str) -> i64 {
    use sqlx::Row;
    let pool = media_worker::queue::open_pool(&server.database_url(), 1).await.unwrap();
    let n = sqlx::query(query).fetch_one(&pool).await.unwrap().try_get::<i64, _>(0).unwrap();
    pool.close().await;
    n
}

async fn webhooks_queued_before_a_restart_are_delivered_after_it(db: Db) {
    // The class backend is down: nothing listens there.
    let down = format!("http://127.0.0.1:{}/hooks", free_port());
    let server = TestServer::start_with(db, |config| {
        config.webhooks.url = Some(down.clone());
        config.webhooks.secret = Some(WEBHOOK_SECRET.into());
        config.webhooks.first_retry_ms = 50;
        config.webhooks.max_attempts = 1000;
    })
    .await;
    server.put_class("std", "standard", false).await;
    server.put_member("std", "teacher", "teacher", true).await;
    server.put_member("std", "parent0", "parent", true).await;
    short_call(&server, "std").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&server, "SELECT COUNT(*) FROM webhook_outbox WHERE body LIKE '%session_ended%'").await < 1 {
        assert!(Instant::now() < deadline, "the call's events are not in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while count(&server, "SELECT MAX(attempts) FROM webhook_outbox").await < 1 {
        assert!(Instant::now() < deadline, "delivery was not tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The server restarts (all it had in memory is gone); the backend is back.
    let (hook_url, received) = webhook_receiver().await;
    let server = server
        .restart_with(|config| {
            config.webhooks.url = Some(hook_url.clone());
            config.webhooks.secret = Some(WEBHOOK_SECRET.into());
            config.webhooks.first_retry_ms = 50;
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let mut events: Vec<Value> = Vec::new();
        for (_, body) in received.lock().unwrap().iter() {
            let event: Value = serde_json::from_str(body).unwrap();
            if !events.iter().any(|seen| seen["event_id"] == event["event_id"]) {
                events.push(event);
            }
        }
        if events.len() >= 6 && count(&server, "SELECT COUNT(*) FROM webhook_outbox").await == 0 {
            break events;
        }
        assert!(Instant::now() < deadline, "not all webhooks delivered after the restart: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let summary: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e["event"].as_str().unwrap(), e["user_id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        summary,
        [
            "session_started ",
            "participant_joined teacher",
            "participant_joined parent0",
            "participant_left parent0",
            "participant_left teacher",
            "session_ended "
        ],
        "each event once, in order"
    );
}
both_backends!(webhooks_queued_before_a_restart_are_delivered_after_it);
