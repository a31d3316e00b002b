//! GDPR: erasing a user on request, and purging classes nobody used for two years after a warning
//! a month before.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{
    both_backends, expect_error, status_json, webhook_receiver, Db, TestServer, WEBHOOK_SECRET,
};

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn sql(server: &TestServer, statement: &str) -> u64 {
    let pool = media_worker::queue::open_pool(&server.database_url(), 1).await.unwrap();
    let n = sqlx::query(statement).execute(&pool).await.unwrap().rows_affected();
    pool.close().await;
    n
}

async fn count(server: &TestServer, query: &str) -> i64 {
    use sqlx::Row;
    let pool = media_worker::queue::open_pool(&server.database_url(), 1).await.unwrap();
    let n = sqlx::query(query).fetch_one(&pool).await.unwrap().try_get::<i64, _>(0).unwrap();
    pool.close().await;
    n
}

async fn a_user_is_erased_on_request(db: Db) {
    let server = TestServer::start(db).await;
    server.class_with_people("a", "plus", false).await;
    server.class_with_people("b", "standard", false).await;
    server.put_member("b", "other-teacher", "teacher", true).await;
    let post_id = server.new_post("a").await;
    // A call the teacher attended, as the SFU's events record it.
    sql(&server, "INSERT INTO visio_sessions (session_id, class_id, started_at) VALUES ('s1', 'a', 1)").await;
    sql(
        &server,
        "INSERT INTO attendance (session_id, participant_id, user_id, display_name, role, joined_at)
         VALUES ('s1', 'p1', 'teacher', 'Mme Martin', 'teacher', 1), ('s1', 'p2', 'parent', 'Papa de Léa', 'parent', 2)",
    )
    .await;

    let erased = server.backend(Method::DELETE, "/v1/users/teacher").send().await.unwrap();
    assert_eq!(erased.status(), StatusCode::NO_CONTENT);
    for class_id in ["a", "b"] {
        let response =
            server.call(Method::GET, &format!("/v1/classes/{class_id}/capabilities"), "teacher").await;
        expect_error(response, 403, "not_a_member").await;
    }
    assert_eq!(count(&server, "SELECT COUNT(*) FROM attendance WHERE user_id = 'teacher'").await, 0);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM attendance WHERE display_name LIKE '%Martin%'").await, 0);
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM attendance WHERE user_id = 'parent'").await,
        1,
        "others keep theirs"
    );
    assert_eq!(count(&server, "SELECT COUNT(*) FROM posts WHERE author_id = 'teacher'").await, 0);
    assert_eq!(
        count(
            &server,
            &format!("SELECT COUNT(*) FROM posts WHERE post_id = '{post_id}' AND author_id = 'erased'")
        )
        .await,
        1,
        "the class keeps its post, without its author"
    );
    // Other members are untouched; erasing again is not an error.
    let parent = server.call(Method::GET, "/v1/classes/a/capabilities", "parent").await;
    assert_eq!(parent.status(), 200);
    let again = server.backend(Method::DELETE, "/v1/users/teacher").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let user_token = server.user(Method::DELETE, "/v1/users/parent", "parent").send().await.unwrap();
    expect_error(user_token, 401, "unauthorized").await;
}
both_backends!(a_user_is_erased_on_request);

async fn wait_for_events(
    received: &std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>,
    n: usize,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events: Vec<Value> = received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, body)| serde_json::from_str::<Value>(body).ok())
            .filter(|event| event["event"].as_str().is_some_and(|e| e.starts_with("class_purge")))
            .collect();
        // The receiver refuses the first delivery: count distinct event ids.
        let mut ids: Vec<&str> = events.iter().filter_map(|e| e["event_id"].as_str()).collect();
        ids.sort();
        ids.dedup();
        if ids.len() >= n {
            let mut unique = Vec::new();
            for event in events {
                if !unique.iter().any(|u: &Value| u["event_id"] == event["event_id"]) {
                    unique.push(event);
                }
            }
            return unique;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "waiting for {n} events: {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn unused_classes_are_warned_then_purged(db: Db) {
    let (hook_url, received) = webhook_receiver().await;
    let server = TestServer::start_with(db, |config| {
        config.webhooks.url = Some(hook_url.clone());
        config.webhooks.secret = Some(WEBHOOK_SECRET.into());
        config.webhooks.first_retry_ms = 50;
        config.retention.sweep_interval_secs = 1;
    })
    .await;
    for class_id in ["almost", "warned-long-ago", "never-warned", "active"] {
        server.class_with_people(class_id, "standard", false).await;
    }
    let post_id = server.new_post("warned-long-ago").await;
    let now = now();
    // 710 days unused: inside the last month, warned now. 800 days and warned 31 days ago: purged.
    // 800 days but never warned (the server was off): warned now, purged a month later, not now.
    sql(
        &server,
        &format!("UPDATE classes SET last_active_at = {} WHERE class_id = 'almost'", now - 710 * DAY),
    )
    .await;
    sql(
        &server,
        &format!(
            "UPDATE classes SET last_active_at = {}, purge_warned_at = {} WHERE class_id = 'warned-long-ago'",
            now - 800 * DAY,
            now - 31 * DAY
        ),
    )
    .await;
    sql(
        &server,
        &format!("UPDATE classes SET last_active_at = {} WHERE class_id = 'never-warned'", now - 800 * DAY),
    )
    .await;
    sql(
        &server,
        &format!("UPDATE classes SET last_active_at = {} WHERE class_id = 'active'", now - 10 * DAY),
    )
    .await;

    let events = wait_for_events(&received, 3).await;
    let of = |kind: &str| -> Vec<String> {
        let mut classes: Vec<String> = events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| e["class_id"].as_str().unwrap().to_owned())
            .collect();
        classes.sort();
        classes
    };
    assert_eq!(of("class_purge_scheduled"), ["almost", "never-warned"]);
    assert_eq!(of("class_purged"), ["warned-long-ago"]);
    let never_warned = events.iter().find(|e| e["class_id"] == "never-warned").unwrap();
    assert!(never_warned["purge_at"].as_i64().unwrap() >= now + 30 * DAY, "a month's notice: {never_warned}");

    // The purged class is gone with its posts; the others are there.
    let gone = server.backend(Method::GET, "/v1/classes/warned-long-ago").send().await.unwrap();
    expect_error(gone, 404, "not_found").await;
    assert_eq!(count(&server, &format!("SELECT COUNT(*) FROM posts WHERE post_id = '{post_id}'")).await, 0);
    for class_id in ["almost", "never-warned", "active"] {
        let kept = server.backend(Method::GET, &format!("/v1/classes/{class_id}")).send().await.unwrap();
        assert_eq!(kept.status(), 200, "{class_id}");
    }
    let (status, scheduled) =
        status_json(server.backend(Method::GET, "/v1/retention/scheduled").send().await.unwrap()).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> =
        scheduled.as_array().unwrap().iter().map(|s| s["class_id"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 2, "{scheduled}");
    assert!(listed.contains(&"almost") && listed.contains(&"never-warned"));

    // A parent opens the class: it is in use again, and its purge is called off.
    let used = server.call(Method::GET, "/v1/classes/almost/capabilities", "parent").await;
    assert_eq!(used.status(), 200);
    let (_, scheduled) =
        status_json(server.backend(Method::GET, "/v1/retention/scheduled").send().await.unwrap()).await;
    let listed: Vec<&str> =
        scheduled.as_array().unwrap().iter().map(|s| s["class_id"].as_str().unwrap()).collect();
    assert_eq!(listed, ["never-warned"]);
    // Nobody else reads the schedule.
    let parent = server.call(Method::GET, "/v1/retention/scheduled", "parent").await;
    expect_error(parent, 401, "unauthorized").await;
}
both_backends!(unused_classes_are_warned_then_purged);
