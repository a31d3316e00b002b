//! Rate limits per user and per address (`429` + `Retry-After`), call connections per user,
//! uploads in progress per class, and the node's admission of joins (`503 server_busy`).

use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::support::{expect_error, Db, TestServer};
use crate::visio::join;

fn rate(per_minute: u32, burst: u32) -> signaling::limits::Rate {
    signaling::limits::Rate { per_minute, burst }
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_over_the_rate_get_429_with_retry_after() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.limits.api_per_user = rate(60, 5);
        config.limits.api_per_address = rate(600, 12);
    })
    .await;
    server.class_with_people("c", "plus", false).await;
    for _ in 0..5 {
        assert_eq!(server.call(Method::GET, "/v1/classes/c/capabilities", "teacher").await.status(), 200);
    }
    let limited = server.call(Method::GET, "/v1/classes/c/capabilities", "teacher").await;
    assert_eq!(limited.status(), 429);
    assert!((1..=2).contains(&retry_after(&limited)), "{:?}", limited.headers());
    expect_error(limited, 429, "rate_limited").await;
    // Another user has a bucket of their own; the class backend is never limited.
    assert_eq!(server.call(Method::GET, "/v1/classes/c/capabilities", "parent").await.status(), 200);
    for idx in 0..20 {
        let response = server.put_member("c", &format!("p{idx}"), "parent", true).await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    // Without a token, the address's bucket: 12 at once from 127.0.0.1, then 429.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses
            .push(server.request(Method::GET, "/v1/classes/c/capabilities").send().await.unwrap().status());
    }
    assert!(statuses.iter().any(|s| *s == 429), "{statuses:?}");
    // Health and metrics are never limited (probes, scrapers).
    for _ in 0..20 {
        assert_eq!(server.request(Method::GET, "/healthz").send().await.unwrap().status(), 200);
    }
    let metrics = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("limits_refused_total{kind=\"api\",scope=\"user\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_over_the_rate_and_connections_past_the_limit_are_refused() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.limits.joins_per_user = rate(6, 2);
        config.limits.max_call_connections_per_user = 2;
    })
    .await;
    for class_id in ["a", "b", "c"] {
        server.class_with_people(class_id, "plus", false).await;
    }
    // The same parent in the calls of two classes (two children): two connections, the limit.
    let (_a, _rtc_a, joined) = join(&server, "a", "parent").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let (_b, _rtc_b, joined) = join(&server, "b", "parent").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    // A third join: over the join rate (2 at once) before anything else.
    let (_c, _rtc_c, refused) = join(&server, "c", "parent").await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");

    // Another user, with room in the rate but not in connections.
    let server =
        TestServer::start_with(Db::Sqlite, |config| config.limits.max_call_connections_per_user = 2).await;
    for class_id in ["a", "b", "c"] {
        server.class_with_people(class_id, "plus", false).await;
    }
    let (_a, _rtc_a, _) = join(&server, "a", "teacher").await;
    let (_b, _rtc_b, _) = join(&server, "b", "teacher").await;
    let (_c, _rtc_c, refused) = join(&server, "c", "teacher").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "too_many_connections", "{refused}");
    drop((_a, _rtc_a));
    // A closed connection frees its place.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_c, _rtc_c, joined) = join(&server, "c", "teacher").await;
        if joined["type"] == "joined" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{joined}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_admits_no_join_answers_503_at_once() {
    let server = TestServer::start_with(Db::Sqlite, |config| config.limits.max_joins_in_progress = 0).await;
    server.class_with_people("c", "plus", false).await;
    let url = format!("{}/v1/classes/c/visio/ws", server.base.replace("http://", "ws://"));
    let started = std::time::Instant::now();
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "2");
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("server_busy"), "{body}");
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// A join counts among those in progress until its media connects, not only until it is answered:
/// the ICE and DTLS that follow cost the node most. One whose media never connects frees its place
/// at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_in_progress_until_its_media_connects_or_its_deadline() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.limits.max_joins_in_progress = 1;
        config.limits.join_connect_timeout_secs = 2;
    })
    .await;
    server.class_with_people("c", "plus", false).await;
    // Answered, but nothing drives its peer connection: its media never connects.
    let (_teacher, _teacher_rtc, joined) = join(&server, "c", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let url = format!("{}/v1/classes/c/visio/ws", server.base.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("the node's one place is taken: expected a 503, got {other:?}"),
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_parent, _parent_rtc, joined) = join(&server, "c", "parent").await;
    assert_eq!(joined["type"], "joined", "the place was freed at the deadline: {joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_has_a_bounded_number_of_uploads_in_progress() {
    let server =
        TestServer::start_with(Db::Sqlite, |config| config.limits.max_uploads_in_progress_per_class = 2)
            .await;
    server.class_with_people("c", "plus", false).await;
    let post_id = server.new_post("c").await;
    let path = format!("/v1/classes/c/posts/{post_id}/media");
    let announce =
        || server.user(Method::POST, &path, "teacher").json(&json!({ "kind": "photo", "size_bytes": 1000 }));
    for _ in 0..2 {
        let response = announce().send().await.unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    expect_error(announce().send().await.unwrap(), 429, "too_many_uploads").await;
}

/// Behind a trusted proxy, each client named by `X-Forwarded-For` has a bucket of its own; from
/// an untrusted peer the header changes nothing (a client cannot escape its limit by writing it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_clients_are_limited_apart_only_behind_trusted_proxies() {
    async fn statuses(server: &TestServer, forwarded_for: &str) -> Vec<u16> {
        let mut out = Vec::new();
        for _ in 0..4 {
            let request = server.request(Method::GET, "/v1/classes/c/capabilities");
            let response = request.header("x-forwarded-for", forwarded_for).send().await.unwrap();
            out.push(response.status().as_u16());
        }
        out
    }
    for (trusted, separate) in [(vec!["127.0.0.0/8".to_owned()], true), (vec![], false)] {
        let server = TestServer::start_with(Db::Sqlite, |config| {
            config.limits.api_per_address = rate(60, 3);
            config.http.trusted_proxies = trusted.clone();
        })
        .await;
        // 3 requests in the burst, the 4th refused: then another client through the same proxy.
        let first = statuses(&server, "203.0.113.1").await;
        assert_eq!(first, [401, 401, 401, 429], "trusted {trusted:?}");
        let second = statuses(&server, "1.2.3.4, 203.0.113.2").await;
        let expected: &[u16] = if separate { &[401, 401, 401, 429] } else { &[429, 429, 429, 429] };
        assert_eq!(second, expected, "trusted {trusted:?}");
    }
}
