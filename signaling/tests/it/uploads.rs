//! Posts and resumable uploads: roles, tier limits before any byte is stored, resuming after a
//! broken connection, and what ends up in storage.

use models::{Tier, TierPolicy};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{both_backends, expect_error, status_json, Db, TestServer};

const CHUNK: usize = 64 * 1024;

async fn start(db: Db) -> TestServer {
    TestServer::start_with(db, |config| {
        config.storage.max_chunk_bytes = CHUNK;
        // Upload tests look at uploads alone: no worker picks the files up.
        config.worker.concurrency = 0;
    })
    .await
}

async fn announce(server: &TestServer, class_id: &str, post_id: &str, body: Value) -> reqwest::Response {
    server
        .user(Method::POST, &format!("/v1/classes/{class_id}/posts/{post_id}/media"), "teacher")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn put_chunk(
    server: &TestServer,
    url: &str,
    bytes: &[u8],
    start: usize,
    total: usize,
) -> reqwest::Response {
    server
        .user(Method::PUT, url, "teacher")
        .header("content-range", format!("bytes {start}-{}/{total}", start + bytes.len() - 1))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn resumable_upload_stores_the_exact_bytes(db: Db) {
    let server = start(db).await;
    server.class_with_people("c", "standard", false).await;
    let post_id = server.new_post("c").await;
    let file: Vec<u8> = (0..(2 * CHUNK + 1234)).map(|i| (i * 7 % 251) as u8).collect();
    let (status, media) = status_json(
        announce(&server, "c", &post_id, json!({ "kind": "photo", "size_bytes": file.len() })).await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    assert_eq!(media["state"], "uploading");
    let url = media["upload_url"].as_str().unwrap().to_owned();
    let media_id = media["media_id"].as_str().unwrap().to_owned();

    // First chunk arrives.
    let (status, body) = status_json(put_chunk(&server, &url, &file[..CHUNK], 0, file.len()).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["received_bytes"], CHUNK);
    // The connection broke while sending the second chunk; the client retries the first one.
    let retry = put_chunk(&server, &url, &file[..CHUNK], 0, file.len()).await;
    assert_eq!(retry.headers()["upload-offset"], CHUNK.to_string().as_str());
    expect_error(retry, 409, "upload_offset_mismatch").await;
    // It asks where the upload stands, and resumes from there.
    let (_, status_body) =
        status_json(server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}"), "teacher").await)
            .await;
    let offset = status_body["received_bytes"].as_u64().unwrap() as usize;
    assert_eq!(offset, CHUNK);
    for start in (offset..file.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(file.len());
        let (status, body) =
            status_json(put_chunk(&server, &url, &file[start..end], start, file.len()).await).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, done) =
        status_json(server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}"), "teacher").await)
            .await;
    assert_eq!(done["state"], "uploaded", "{done}");
    assert_eq!(done["received_bytes"], file.len());
    assert!(done["upload_url"].is_null());

    // The original is the exact file, and no chunk is left behind.
    let original = server.data_dir().join(format!("media/originals/c/{media_id}"));
    assert_eq!(std::fs::read(&original).unwrap(), file);
    let leftovers = server.data_dir().join(format!("media/uploads/{media_id}"));
    assert!(!leftovers.exists() || std::fs::read_dir(&leftovers).unwrap().next().is_none());
    // A complete upload takes no more bytes.
    expect_error(
        put_chunk(&server, &url, &file[..10], file.len() - 10, file.len()).await,
        409,
        "upload_closed",
    )
    .await;
}
both_backends!(resumable_upload_stores_the_exact_bytes);

async fn only_teachers_and_admins_of_the_class_upload(db: Db) {
    let server = start(db).await;
    server.class_with_people("c", "plus", false).await;
    server.class_with_people("other", "plus", false).await;
    server.put_member("other", "stranger", "teacher", true).await;
    let parent = server.call(Method::POST, "/v1/classes/c/posts", "parent").await;
    expect_error(parent, 403, "forbidden_role").await;
    let stranger = server.call(Method::POST, "/v1/classes/c/posts", "stranger").await;
    expect_error(stranger, 403, "not_a_member").await;

    // A post of another class cannot be filled from this one, nor its uploads touched.
    let other_post = {
        let response = server.call(Method::POST, "/v1/classes/other/posts", "teacher").await;
        status_json(response).await.1["post_id"].as_str().unwrap().to_owned()
    };
    let response = announce(&server, "c", &other_post, json!({ "kind": "photo", "size_bytes": 10 })).await;
    expect_error(response, 404, "not_found").await;
    let (_, media) = status_json(
        announce(&server, "other", &other_post, json!({ "kind": "photo", "size_bytes": 10 })).await,
    )
    .await;
    let media_id = media["media_id"].as_str().unwrap();
    let response = server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}"), "teacher").await;
    expect_error(response, 404, "not_found").await;
}
both_backends!(only_teachers_and_admins_of_the_class_upload);

async fn per_post_limits_of_every_tier(db: Db) {
    let server = start(db).await;
    for tier in Tier::ALL {
        let class_id = format!("c-{tier}");
        server.class_with_people(&class_id, tier.as_str(), false).await;
        let post_id = server.new_post(&class_id).await;
        let policy = TierPolicy::offer(tier);
        for _ in 0..policy.max_photos_per_post {
            let response =
                announce(&server, &class_id, &post_id, json!({ "kind": "photo", "size_bytes": 1000 })).await;
            assert_eq!(response.status(), StatusCode::CREATED, "{tier}");
        }
        let response =
            announce(&server, &class_id, &post_id, json!({ "kind": "photo", "size_bytes": 1000 })).await;
        expect_error(response, 409, "too_many_photos").await;
        for _ in 0..policy.max_videos_per_post {
            let body = json!({ "kind": "video", "size_bytes": 1000, "duration_seconds": 12.5 });
            assert_eq!(
                announce(&server, &class_id, &post_id, body).await.status(),
                StatusCode::CREATED,
                "{tier}"
            );
        }
        let response =
            announce(&server, &class_id, &post_id, json!({ "kind": "video", "size_bytes": 1000 })).await;
        expect_error(response, 409, "too_many_videos").await;
        // A new post starts empty.
        let post_2 = server.new_post(&class_id).await;
        let response =
            announce(&server, &class_id, &post_2, json!({ "kind": "video", "size_bytes": 1000 })).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}
both_backends!(per_post_limits_of_every_tier);

async fn quota_duration_and_size_are_checked_before_storing(db: Db) {
    let server = start(db).await;
    server.class_with_people("c", "free", false).await;
    let post_id = server.new_post("c").await;
    let quota = TierPolicy::offer(Tier::Free).storage_quota_bytes;

    let too_long = json!({ "kind": "video", "size_bytes": 1000, "duration_seconds": 601 });
    expect_error(announce(&server, "c", &post_id, too_long).await, 422, "video_too_long").await;
    let huge_photo = json!({ "kind": "photo", "size_bytes": 60 * 1024 * 1024 });
    expect_error(announce(&server, "c", &post_id, huge_photo).await, 413, "media_too_large").await;
    let over_quota = json!({ "kind": "video", "size_bytes": quota + 1 });
    expect_error(announce(&server, "c", &post_id, over_quota).await, 409, "storage_quota_exceeded").await;

    // Reservations count: 0.6 GB fits, a second 0.6 GB does not.
    let post_2 = server.new_post("c").await;
    let big = json!({ "kind": "video", "size_bytes": quota * 6 / 10 });
    assert_eq!(announce(&server, "c", &post_id, big.clone()).await.status(), StatusCode::CREATED);
    expect_error(announce(&server, "c", &post_2, big).await, 409, "storage_quota_exceeded").await;

    // Bad chunks are refused without storing anything.
    let (_, media) =
        status_json(announce(&server, "c", &post_2, json!({ "kind": "photo", "size_bytes": 100 })).await)
            .await;
    let url = media["upload_url"].as_str().unwrap().to_owned();
    let (_, large) = status_json(
        announce(&server, "c", &post_2, json!({ "kind": "photo", "size_bytes": 2 * CHUNK })).await,
    )
    .await;
    let too_big_chunk = vec![0u8; CHUNK + 1];
    let response = server
        .user(Method::PUT, large["upload_url"].as_str().unwrap(), "teacher")
        .header("content-range", format!("bytes 0-{}/{}", CHUNK, 2 * CHUNK))
        .body(too_big_chunk)
        .send()
        .await
        .unwrap();
    expect_error(response, 413, "payload_too_large").await;
    expect_error(put_chunk(&server, &url, &[1u8; 150], 0, 100).await, 422, "invalid_request").await;
    let no_range = server.user(Method::PUT, &url, "teacher").body(vec![1u8; 10]).send().await.unwrap();
    expect_error(no_range, 422, "invalid_request").await;
    expect_error(put_chunk(&server, &url, &[1u8; 10], 50, 100).await, 409, "upload_offset_mismatch").await;
    // Ranges whose length overflows, or that end past the total, are refused and lose nothing:
    // the real chunks after them are taken.
    for range in [
        "bytes 0-18446744073709551615/100",
        "bytes 1-0/100",
        "bytes 0-99/99",
        "bytes 18446744073709551615-18446744073709551615/100",
    ] {
        let response = server
            .user(Method::PUT, &url, "teacher")
            .header("content-range", range)
            .body(Vec::new())
            .send()
            .await
            .unwrap();
        expect_error(response, 422, "invalid_request").await;
    }
    let (status, body) = status_json(put_chunk(&server, &url, &[1u8; 100], 0, 100).await).await;
    assert_eq!((status.as_u16(), body["received_bytes"].as_u64()), (200, Some(100)), "{body}");
}
both_backends!(quota_duration_and_size_are_checked_before_storing);

/// Sends a chunk's head and the first bytes of a body announced as `length` bytes, then reads the
/// status line: the server must answer without waiting for the rest.
async fn status_before_body(
    server: &TestServer,
    url: &str,
    user: &str,
    range: &str,
    length: usize,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let token =
        signaling::auth::mint_hs256(crate::support::JWT_SECRET, &models::UserId::new(user).unwrap(), 600);
    let head = format!(
        "PUT {url} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Range: {range}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 10]).await.unwrap();
    let mut response = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("an answer before the body is sent")
        .unwrap();
    String::from_utf8_lossy(&response[..n]).lines().next().unwrap_or_default().to_owned()
}

async fn refusals_come_before_the_body_is_read(db: Db) {
    let server = start(db).await;
    server.class_with_people("c", "standard", false).await;
    server.put_class("other", "standard", false).await;
    server.put_member("other", "stranger", "teacher", true).await;
    let post_id = server.new_post("c").await;
    let size = CHUNK;
    let (_, media) =
        status_json(announce(&server, "c", &post_id, json!({ "kind": "photo", "size_bytes": size })).await)
            .await;
    let url = media["upload_url"].as_str().unwrap().to_owned();
    let range = format!("bytes 0-{}/{size}", size - 1);
    // A parent of the class, and a teacher of another class: refused from the request's head.
    for user in ["parent", "stranger"] {
        let status = status_before_body(&server, &url, user, &range, size).await;
        assert!(status.contains(" 403 "), "{user}: {status}");
    }
    // A bad range is refused before the body too.
    let status = status_before_body(&server, &url, "teacher", "bytes 0-18446744073709551615/100", size).await;
    assert!(status.contains(" 422 "), "{status}");
}
both_backends!(refusals_come_before_the_body_is_read);
