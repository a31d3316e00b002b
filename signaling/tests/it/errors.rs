//! Bad input gets a clear 4xx with a code, never a 5xx, and changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::support::{both_backends, expect_error, status_json, Db, TestServer};

async fn malformed_requests_get_4xx(db: Db) {
    let server = TestServer::start(db).await;
    server.put_class("c", "plus", false).await;

    let raw = |method: Method, path: &str, body: &'static str| {
        server.backend(method, path).header("content-type", "application/json").body(body).send()
    };
    // Not JSON at all, truncated JSON, wrong content type: 400.
    expect_error(raw(Method::PUT, "/v1/classes/c", "{not json").await.unwrap(), 400, "malformed_request")
        .await;
    expect_error(
        raw(Method::PUT, "/v1/classes/c", r#"{"name": "x", "#).await.unwrap(),
        400,
        "malformed_request",
    )
    .await;
    let text = server.backend(Method::PUT, "/v1/classes/c").body(r#"{"name":"x","tier":"plus"}"#).send();
    expect_error(text.await.unwrap(), 400, "malformed_request").await;

    // Valid JSON with invalid content: 422.
    for body in [
        json!({ "name": "x", "tier": "gold" }),
        json!({ "name": "x", "tier": "Plus" }),
        json!({ "name": "x" }),
        json!({ "name": "x", "tier": "plus", "options": { "confort_famille": "yes" } }),
        json!({ "name": "x", "tier": "plus", "unknown": 1 }),
        json!({ "name": "", "tier": "plus" }),
        json!({ "name": "x".repeat(201), "tier": "plus" }),
        // The limit is on what is stored, spaces included, as the document's maxLength says.
        json!({ "name": format!(" {}", "x".repeat(200)), "tier": "plus" }),
        json!([1, 2, 3]),
    ] {
        let response = server.backend(Method::PUT, "/v1/classes/c").json(&body).send().await.unwrap();
        expect_error(response, 422, "invalid_request").await;
    }
    for body in [
        json!({ "display_name": "A", "role": "child", "approved": true }),
        json!({ "display_name": "A", "role": "parent", "approved": "yes" }),
        json!({ "display_name": "", "role": "parent", "approved": true }),
        json!({ "display_name": "Léa\n", "role": "parent", "approved": true }),
        json!({ "display_name": "A\u{0}B", "role": "parent", "approved": true }),
    ] {
        let response =
            server.backend(Method::PUT, "/v1/classes/c/members/u").json(&body).send().await.unwrap();
        expect_error(response, 422, "invalid_request").await;
    }

    // Ids outside the safe alphabet.
    for path in ["/v1/classes/a.b", "/v1/classes/a%2Fb", "/v1/classes/%C3%A9t%C3%A9", "/v1/classes/a%00"] {
        let response = server.backend(Method::PUT, path).json(&json!({ "name": "x", "tier": "plus" })).send();
        expect_error(response.await.unwrap(), 422, "invalid_request").await;
    }
    let long_id = format!("/v1/classes/c/members/{}", "u".repeat(65));
    let response = server
        .backend(Method::PUT, &long_id)
        .json(&json!({ "display_name": "A", "role": "parent", "approved": true }));
    expect_error(response.send().await.unwrap(), 422, "invalid_request").await;

    // An oversized body: 413.
    let huge = json!({ "name": "x".repeat(100_000), "tier": "plus" });
    let response = server.backend(Method::PUT, "/v1/classes/c").json(&huge).send().await.unwrap();
    expect_error(response, 413, "payload_too_large").await;

    // Unknown endpoints and methods.
    expect_error(server.request(Method::GET, "/nope").send().await.unwrap(), 404, "not_found").await;
    let response = server.backend(Method::POST, "/v1/classes/c").send().await.unwrap();
    expect_error(response, 405, "method_not_allowed").await;

    // None of it changed the class.
    let (_, body) = status_json(server.backend(Method::GET, "/v1/classes/c").send().await.unwrap()).await;
    assert_eq!(body["name"], "class c");
    assert_eq!(body["tier"], "plus");
    assert_eq!(body["n_members"], 0);
}
both_backends!(malformed_requests_get_4xx);
