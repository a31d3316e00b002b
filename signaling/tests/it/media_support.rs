//! Helpers of the media tests: test media, the `ffmpeg` CLI, uploads through the API and waiting
//! for the worker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signaling::config::Config;

use crate::support::{status_json, TestServer};

pub fn test_media(name: &str) -> PathBuf {
    let path = media_worker::cache_dir().join("test-media").join(name);
    assert!(path.is_file(), "{} is missing: run `bash scripts/install-deps.sh --test-media`", path.display());
    path
}

pub fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI");
    assert!(output.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The workers of test servers look at the queue often, so tests do not wait a second per job.
pub fn fast_worker(config: &mut Config) {
    config.worker.poll_interval_ms = 50;
}

/// Announces and uploads `bytes` in chunks the server accepts; returns the media id.
pub async fn upload(
    server: &TestServer,
    class_id: &str,
    post_id: &str,
    kind: &str,
    bytes: &[u8],
    blur: bool,
) -> String {
    let announce = server
        .user(Method::POST, &format!("/v1/classes/{class_id}/posts/{post_id}/media"), "teacher")
        .json(&json!({ "kind": kind, "size_bytes": bytes.len(), "blur_faces": blur }))
        .send()
        .await
        .unwrap();
    let (status, media) = status_json(announce).await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    let url = media["upload_url"].as_str().unwrap().to_owned();
    let chunk = media["max_chunk_bytes"].as_u64().unwrap() as usize;
    for start in (0..bytes.len()).step_by(chunk) {
        let end = (start + chunk).min(bytes.len());
        let response = server
            .user(Method::PUT, &url, "teacher")
            .header("content-range", format!("bytes {start}-{}/{}", end - 1, bytes.len()))
            .body(bytes[start..end].to_vec())
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_eq!(status, 200, "{body}");
    }
    media["media_id"].as_str().unwrap().to_owned()
}

pub async fn media_status(server: &TestServer, class_id: &str, media_id: &str) -> Value {
    let response =
        server.call(Method::GET, &format!("/v1/classes/{class_id}/media/{media_id}"), "teacher").await;
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls until the medium is `ready` or `failed`; returns every state seen, and the last answer.
pub async fn wait_processed(
    server: &TestServer,
    class_id: &str,
    media_id: &str,
) -> (Vec<(String, u64)>, Value) {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let body = media_status(server, class_id, media_id).await;
        let state = body["state"].as_str().unwrap().to_owned();
        let progress = body["progress_percent"].as_u64().unwrap();
        if seen.last() != Some(&(state.clone(), progress)) {
            seen.push((state.clone(), progress));
        }
        if state == "ready" || state == "failed" {
            return (seen, body);
        }
        assert!(started.elapsed() < Duration::from_secs(240), "still {state} after 4 minutes: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get_post(server: &TestServer, class_id: &str, post_id: &str, user: &str) -> reqwest::Response {
    server.call(Method::GET, &format!("/v1/classes/{class_id}/posts/{post_id}"), user).await
}

/// Fetches a signed link as a browser does: no `Authorization`.
pub async fn fetch(server: &TestServer, link: &str) -> reqwest::Response {
    server.request(Method::GET, link).send().await.unwrap()
}

pub fn with_query(link: &str, name: &str, value: &str) -> String {
    let (path, query) = link.split_once('?').unwrap();
    let query: Vec<String> =
        query
            .split('&')
            .map(|pair| {
                if pair.starts_with(&format!("{name}=")) {
                    format!("{name}={value}")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
    format!("{path}?{}", query.join("&"))
}

/// Encodes a photo as HEIC with libheif's `heif-enc` (Debian's `libheif-examples`), as iPhones
/// store them.
pub fn heif_enc(input: &std::path::Path, output: &std::path::Path) {
    let result = Command::new("heif-enc")
        .args(["-q", "85"])
        .arg(input)
        .arg("-o")
        .arg(output)
        .output()
        .expect("heif-enc is installed (libheif-examples, scripts/install-deps.sh)");
    assert!(result.status.success(), "heif-enc failed: {}", String::from_utf8_lossy(&result.stderr));
}

/// A phone-like H.264 + AAC video of `size` ("WxH") made by the ffmpeg CLI.
pub fn test_video(dir: &Path, name: &str, size: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=s={size}:r=25:d={seconds}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=f=440:d={seconds}"),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
        path.to_str().unwrap(),
    ]);
    path
}

/// Uploads a file, waits until it is ready, publishes the post, and returns the medium's id and
/// the post as `viewer` sees it.
pub async fn upload_and_publish(
    server: &TestServer,
    class_id: &str,
    post_id: &str,
    kind: &str,
    bytes: &[u8],
    viewer: &str,
) -> (String, Value) {
    let media_id = upload(server, class_id, post_id, kind, bytes, true).await;
    let (_, done) = wait_processed(server, class_id, &media_id).await;
    assert_eq!(done["state"], "ready", "{done}");
    let publish = server
        .call(Method::POST, &format!("/v1/classes/{class_id}/posts/{post_id}/publish"), "teacher")
        .await;
    assert_eq!(publish.status(), 200);
    let (status, post) = status_json(get_post(server, class_id, post_id, viewer).await).await;
    assert_eq!(status, 200, "{post}");
    (media_id, post)
}
