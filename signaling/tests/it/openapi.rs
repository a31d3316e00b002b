//! The OpenAPI document says what the server does: every refusal it can give on an operation is
//! documented there, and ids carry the pattern and length the server checks (what
//! `scripts/schemathesis.sh` checks by generating requests, here for the cases that matter).

use models::ids::{ID_PATTERN, MAX_ID_LEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{expect_error, status_json, Db, TestServer};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

async fn document(server: &TestServer) -> Value {
    let (status, doc) = status_json(server.request(Method::GET, "/openapi.json").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// Every operation of the document, as (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                operations.push((path.clone(), method.to_owned(), operation.clone()));
            }
        }
    }
    assert!(operations.len() > 20, "{} operations", operations.len());
    operations
}

/// `value` itself, or what its `$ref` points to in the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => doc.pointer(reference.trim_start_matches('#')).expect("the reference resolves"),
        None => value,
    }
}

fn response<'a>(doc: &'a Value, operation: &'a Value, status: &str) -> Option<&'a Value> {
    operation["responses"].get(status).map(|response| resolve(doc, response))
}

#[tokio::test]
async fn path_ids_carry_the_pattern_and_length_the_server_checks() {
    let server = TestServer::start(Db::Sqlite).await;
    let doc = document(&server).await;
    let mut n_ids = 0;
    for (path, method, operation) in operations(&doc) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] != "path" {
                continue;
            }
            let schema = resolve(&doc, &parameter["schema"]);
            assert_eq!(schema["pattern"], ID_PATTERN, "{method} {path} {parameter}");
            assert_eq!(schema["maxLength"], MAX_ID_LEN, "{method} {path} {parameter}");
            assert_eq!(schema["minLength"], 1, "{method} {path} {parameter}");
            n_ids += 1;
        }
        if path.contains('{') {
            let invalid =
                response(&doc, &operation, "422").unwrap_or_else(|| panic!("{method} {path}: no 422"));
            assert!(invalid["content"]["application/json"].is_object(), "{method} {path}");
        }
    }
    assert!(n_ids > 20, "{n_ids} path ids");
    // Body ids are the same schemas.
    let class_view = &doc["components"]["schemas"]["ClassView"]["properties"]["class_id"];
    assert_eq!(resolve(&doc, class_view)["pattern"], ID_PATTERN);
}

#[tokio::test]
async fn ids_past_the_documented_length_get_the_documented_422() {
    let server = TestServer::start(Db::Sqlite).await;
    let doc = document(&server).await;
    assert!(response(&doc, &doc["paths"]["/v1/classes/{class_id}"]["get"], "422").is_some());
    let longest = "c".repeat(MAX_ID_LEN);
    let response = server.backend(Method::GET, &format!("/v1/classes/{longest}")).send().await.unwrap();
    expect_error(response, 404, "not_found").await;
    let too_long = "c".repeat(MAX_ID_LEN + 1);
    for path in [
        format!("/v1/classes/{too_long}"),
        format!("/v1/classes/c/members/{too_long}"),
        format!("/v1/users/{too_long}"),
    ] {
        let response = server.backend(Method::DELETE, &path).send().await.unwrap();
        expect_error(response, 422, "invalid_request").await;
    }
    // Also where the id is checked after the token.
    server.class_with_people("c", "plus", false).await;
    for path in [
        format!("/v1/classes/c/sessions/{too_long}/attendance"),
        "/v1/classes/c/sessions/a.b/attendance".to_owned(),
        format!("/v1/classes/c/posts/{too_long}"),
        format!("/v1/classes/c/media/{too_long}"),
    ] {
        expect_error(server.call(Method::GET, &path, "teacher").await, 422, "invalid_request").await;
    }
}

#[tokio::test]
async fn methods_an_endpoint_lacks_get_405_with_allow() {
    let server = TestServer::start(Db::Sqlite).await;
    for (method, path, allow) in [
        (Method::TRACE, "/healthz", "GET,HEAD"),
        (Method::PATCH, "/v1/classes/c", "GET,HEAD,PUT,DELETE"),
        (Method::POST, "/v1/classes/c", "GET,HEAD,PUT,DELETE"),
        (Method::DELETE, "/v1/classes/c/posts", "GET,HEAD,POST"),
        (Method::GET, "/v1/classes/c/media/m/content", "PUT,PATCH,HEAD,DELETE"),
        (Method::GET, "/v1/classes/c/posts/p/uploads", "OPTIONS,POST"),
        (Method::OPTIONS, "/v1/users/u", "DELETE"),
    ] {
        let response = server.backend(method.clone(), path).send().await.unwrap();
        let header = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), Some(allow), "{method} {path}");
        expect_error(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn every_operation_documents_rate_limiting_and_its_shared_refusals() {
    let server = TestServer::start(Db::Sqlite).await;
    let doc = document(&server).await;
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().unwrap();
    for code in ["method_not_allowed", "rate_limited", "too_many_uploads", "unavailable", "server_busy"] {
        assert!(codes.iter().any(|c| c == code), "{code} missing from ErrorCode");
    }
    for (path, method, operation) in operations(&doc) {
        let rate_limited =
            response(&doc, &operation, "429").unwrap_or_else(|| panic!("{method} {path}: no 429"));
        assert!(rate_limited["headers"]["Retry-After"].is_object(), "{method} {path}");
        if operation["security"].as_array().is_some_and(|security| !security.is_empty()) {
            assert!(response(&doc, &operation, "401").is_some(), "{method} {path}: no 401");
        }
        if operation["requestBody"]["content"]["application/json"].is_object() {
            for status in ["400", "413", "422"] {
                assert!(response(&doc, &operation, status).is_some(), "{method} {path}: no {status}");
            }
        }
    }
    // Admission control: the call WebSocket and uploads may answer 503 with Retry-After.
    for (path, method) in [
        ("/v1/classes/{class_id}/visio/ws", "get"),
        ("/v1/classes/{class_id}/posts/{post_id}/media", "post"),
        ("/v1/classes/{class_id}/media/{media_id}/content", "put"),
        ("/v1/classes/{class_id}/posts/{post_id}/uploads", "post"),
        ("/v1/classes/{class_id}/media/{media_id}/content", "patch"),
    ] {
        let unavailable = response(&doc, &doc["paths"][path][method], "503").expect("a 503");
        assert!(unavailable["headers"]["Retry-After"].is_object(), "{method} {path}");
    }
    // A new post links to its media, and a new medium to its upload.
    let created = response(&doc, &doc["paths"]["/v1/classes/{class_id}/posts"]["post"], "201").unwrap();
    assert_eq!(created["links"]["announce_media"]["operationId"], "announce_media");
}

#[tokio::test]
async fn plain_requests_to_the_call_websocket_get_json() {
    let server = TestServer::start(Db::Sqlite).await;
    let response = server.request(Method::GET, "/v1/classes/c/visio/ws").send().await.unwrap();
    expect_error(response, 400, "malformed_request").await;
    let response = server.request(Method::GET, "/v1/classes/a.b/visio/ws").send().await.unwrap();
    expect_error(response, 422, "invalid_request").await;
}

#[tokio::test]
async fn bodies_valid_for_the_document_are_taken() {
    let server = TestServer::start_with(Db::Sqlite, |config| config.worker.concurrency = 0).await;
    server.class_with_people("c", "plus", false).await;
    // JSON Schema's integers include 1024.0.
    let post_id = server.new_post("c").await;
    let response = server
        .user(Method::POST, &format!("/v1/classes/c/posts/{post_id}/media"), "teacher")
        .json(&json!({ "kind": "photo", "size_bytes": 1024.0 }))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let response = server
        .user(Method::POST, &format!("/v1/classes/c/posts/{post_id}/media"), "teacher")
        .json(&json!({ "kind": "photo", "size_bytes": 1024.5 }))
        .send()
        .await
        .unwrap();
    expect_error(response, 422, "invalid_request").await;
    // The query string of attendance is checked like a body.
    let response =
        server.call(Method::GET, "/v1/classes/c/sessions/s/attendance?format=a&format=b", "teacher");
    expect_error(response.await, 422, "invalid_request").await;
}
