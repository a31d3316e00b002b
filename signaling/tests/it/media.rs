//! Media end to end: upload through the API, the in-process worker processes the file (real FFmpeg
//! and face detection), teachers check the faces and publish, members view through signed links.
//! Also refusals after probing, processing again with manual regions, and an S3-compatible store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use models::{Tier, TierPolicyOverride};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::media_support::{
    fast_worker, fetch, ffmpeg, get_post, media_status, test_media, test_video, upload, upload_and_publish,
    wait_processed, with_query,
};
use crate::support::{both_backends, expect_error, free_port, status_json, Db, TestServer};

async fn a_photo_is_blurred_checked_published_and_viewed_through_signed_links(db: Db) {
    let server = TestServer::start_with(db, fast_worker).await;
    server.class_with_people("c", "standard", false).await;
    server.put_class("other", "plus", true).await;
    server.put_member("other", "stranger", "teacher", true).await;
    let post_id = server.new_post("c").await;
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    let media_id = upload(&server, "c", &post_id, "photo", &photo, true).await;

    let (_, done) = wait_processed(&server, "c", &media_id).await;
    assert_eq!(
        (done["state"].as_str(), done["progress_percent"].as_u64()),
        (Some("ready"), Some(100)),
        "{done}"
    );

    // The teacher checks what the detector found before publishing.
    let faces = server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}/faces"), "teacher").await;
    let (status, faces) = status_json(faces).await;
    assert_eq!(status, 200, "{faces}");
    assert_eq!(faces["version"], 1);
    let boxes = faces["frames"][0]["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), 1, "the astronaut's face: {faces}");
    let parent_faces =
        server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}/faces"), "parent").await;
    expect_error(parent_faces, 403, "forbidden_role").await;

    // Unpublished: parents do not see the post at all, the teacher does.
    expect_error(get_post(&server, "c", &post_id, "parent").await, 404, "not_found").await;
    let (_, draft) = status_json(get_post(&server, "c", &post_id, "teacher").await).await;
    assert!(draft["published_at"].is_null());
    assert!(draft["media"][0]["links"]["download"].is_string(), "teachers may download: {draft}");
    let publish =
        server.call(Method::POST, &format!("/v1/classes/c/posts/{post_id}/publish"), "parent").await;
    expect_error(publish, 403, "forbidden_role").await;
    let publish =
        server.call(Method::POST, &format!("/v1/classes/c/posts/{post_id}/publish"), "teacher").await;
    let (status, published) = status_json(publish).await;
    assert_eq!(status, 200, "{published}");
    assert!(published["published_at"].is_i64());

    // A parent of a class without "Confort famille" views, and cannot download.
    let (status, post) = status_json(get_post(&server, "c", &post_id, "parent").await).await;
    assert_eq!(status, 200, "{post}");
    let links = &post["media"][0]["links"];
    assert!(links["download"].is_null(), "no download without Confort famille: {post}");
    let view = links["view"].as_str().unwrap().to_owned();
    let response = fetch(&server, &view).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.headers()["content-disposition"], "inline");
    let jpeg = response.bytes().await.unwrap();
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    assert!(!jpeg.windows(4).any(|w| w == b"Exif"), "no EXIF in what members get");
    // The face the detector found in the upload is no longer found in what members see.
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("published.jpg");
    std::fs::write(&published, &jpeg).unwrap();
    let remaining = tokio::task::spawn_blocking(move || {
        let config = media_worker::ProcessConfig {
            face_blur: Some(media_worker::FaceBlurConfig::default()),
            ..media_worker::ProcessConfig::default()
        };
        media_worker::detect_faces(&published, &config).expect("detection runs")
    })
    .await
    .unwrap();
    assert!(remaining.iter().all(|frame| frame.boxes.is_empty()), "faces left: {remaining:?}");
    let thumbnail = fetch(&server, links["thumbnail"].as_str().unwrap()).await;
    assert_eq!(thumbnail.status(), 200);

    // Byte ranges, as players ask for them.
    let partial = server.request(Method::GET, &view).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(partial.headers()["content-range"], format!("bytes 0-99/{}", jpeg.len()).as_str());
    assert_eq!(partial.bytes().await.unwrap(), jpeg.slice(..100));
    let past_end = server
        .request(Method::GET, &view)
        .header("range", format!("bytes={}-", jpeg.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(past_end.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // A link turned into a download, or pointed at another medium, or forged, is refused.
    expect_error(fetch(&server, &with_query(&view, "dl", "1")).await, 401, "unauthorized").await;
    expect_error(fetch(&server, &with_query(&view, "sig", &"0".repeat(64))).await, 401, "unauthorized").await;
    expect_error(fetch(&server, &view.replace(&media_id, "someone-else")).await, 401, "unauthorized").await;
    expect_error(fetch(&server, &view.replace("/c/", "/other/")).await, 401, "unauthorized").await;
    expect_error(fetch(&server, view.split('?').next().unwrap()).await, 401, "unauthorized").await;

    // Nobody outside the class reaches the post, whatever their role elsewhere.
    expect_error(get_post(&server, "c", &post_id, "stranger").await, 403, "not_a_member").await;
    let stranger_status =
        server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}"), "stranger").await;
    expect_error(stranger_status, 403, "not_a_member").await;
    // Nor through their own class.
    expect_error(get_post(&server, "other", &post_id, "stranger").await, 404, "not_found").await;
}
both_backends!(a_photo_is_blurred_checked_published_and_viewed_through_signed_links);

/// The byte offsets of the top-level MP4 atoms, by name.
fn top_level_atoms(bytes: &[u8]) -> Vec<String> {
    let mut atoms = Vec::new();
    let mut offset = 0usize;
    while offset + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        atoms.push(String::from_utf8_lossy(&bytes[offset + 4..offset + 8]).into_owned());
        if size < 8 {
            break;
        }
        offset += size;
    }
    atoms
}

fn ffprobe_json(path: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_video_reports_progress_and_parents_download_it_with_confort_famille() {
    let server = TestServer::start_with(Db::Sqlite, fast_worker).await;
    server.class_with_people("c", "plus", true).await;
    let post_id = server.new_post("c").await;
    // A phone video: held upright (rotation tag), with the place it was filmed.
    let dir = tempfile::tempdir().unwrap();
    let encoded = test_video(dir.path(), "encoded.mp4", "1280x720", 15);
    let input = dir.path().join("phone.mp4");
    // FFmpeg 5.1's CLI turns `rotate` into a display matrix only when copying streams.
    ffmpeg(&[
        "-i",
        encoded.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata",
        "location=+48.8584+002.2945/",
        "-metadata:s:v:0",
        "rotate=90",
        input.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&input).unwrap();
    let media_id = upload(&server, "c", &post_id, "video", &bytes, false).await;

    let (seen, done) = wait_processed(&server, "c", &media_id).await;
    assert_eq!(done["state"], "ready", "{done}");
    assert!(
        seen.iter().any(|(state, progress)| state == "processing" && (1..100).contains(progress)),
        "progress is readable while the worker runs: {seen:?}"
    );

    let publish =
        server.call(Method::POST, &format!("/v1/classes/c/posts/{post_id}/publish"), "teacher").await;
    assert_eq!(publish.status(), 200);
    let (_, post) = status_json(get_post(&server, "c", &post_id, "parent").await).await;
    let links = &post["media"][0]["links"];
    assert!(links["poster"].is_string(), "{post}");
    let download = links["download"].as_str().expect("Confort famille: parents may download").to_owned();
    let response = fetch(&server, &download).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/mp4");
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"{media_id}.mp4\"").as_str()
    );
    let mp4 = response.bytes().await.unwrap();
    let atoms = top_level_atoms(&mp4);
    let position = |name: &str| atoms.iter().position(|a| a == name);
    assert!(position("moov") < position("mdat"), "faststart: {atoms:?}");

    let output = dir.path().join("published.mp4");
    std::fs::write(&output, &mp4).unwrap();
    let probe = ffprobe_json(&output);
    let streams = probe["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!((video["codec_name"].as_str(), video["pix_fmt"].as_str()), (Some("h264"), Some("yuv420p")));
    // Upright: the rotation is applied to the pixels (720x1280 shown, fitted to 720p: 720 wide).
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(720), Some(1280)), "{video}");
    assert!(streams.iter().any(|s| s["codec_type"] == "audio" && s["codec_name"] == "aac"));
    let text = probe.to_string();
    assert!(
        !text.contains("48.8584") && probe["format"]["tags"].get("location").is_none(),
        "no place: {text}"
    );
    assert!(!text.contains("rotate") && !text.contains("Display Matrix"), "no rotation tag left: {text}");

    // The original kept for later reprocessing lost its location too, but not its rotation.
    let original = server.data_dir().join("media").join("originals").join("c").join(&media_id);
    let probe = ffprobe_json(&original);
    let text = probe.to_string();
    assert!(!text.contains("48.8584"), "no place in the stored original: {text}");
    assert!(text.contains("Display Matrix"), "the original keeps its rotation: {text}");
}

async fn files_refused_after_probing_say_why_and_give_their_quota_back(db: Db) {
    let server = TestServer::start_with(db, |config| {
        fast_worker(config);
        let quota =
            TierPolicyOverride { storage_quota_bytes: Some(100_000), ..TierPolicyOverride::default() };
        config.tiers.insert(Tier::Standard, quota);
    })
    .await;
    server.class_with_people("c", "standard", false).await;
    let post_id = server.new_post("c").await;

    // 60 kB of text announced as a photo: accepted before any byte (the quota allows it), refused
    // once the worker reads it.
    let text = vec![b'a'; 60_000];
    let media_id = upload(&server, "c", &post_id, "photo", &text, true).await;
    let (_, failed) = wait_processed(&server, "c", &media_id).await;
    assert_eq!(
        (failed["state"].as_str(), failed["error"].as_str()),
        (Some("failed"), Some("unsupported_media")),
        "{failed}"
    );
    // A photo announced as a video is refused too.
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.jpg");
    ffmpeg(&[
        "-i",
        test_media("astronaut.png").to_str().unwrap(),
        "-vf",
        "scale=128:128",
        small.to_str().unwrap(),
    ]);
    let small = std::fs::read(&small).unwrap();
    assert!(photo.len() > small.len());
    let video_post = server.new_post("c").await;
    let as_video = upload(&server, "c", &video_post, "video", &small, false).await;
    let (_, refused) = wait_processed(&server, "c", &as_video).await;
    assert_eq!(refused["error"], "unsupported_media", "{refused}");

    // The failed upload no longer counts: another 60 kB fits in the 100 kB quota.
    let again = server
        .user(Method::POST, &format!("/v1/classes/c/posts/{post_id}/media"), "teacher")
        .json(&json!({ "kind": "photo", "size_bytes": 60_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    // A post whose media are not all ready cannot be published.
    let publish =
        server.call(Method::POST, &format!("/v1/classes/c/posts/{post_id}/publish"), "teacher").await;
    expect_error(publish, 409, "media_not_ready").await;
    // Nor processed again while it is not done.
    let regions = server
        .user(Method::PUT, &format!("/v1/classes/c/media/{media_id}/regions"), "teacher")
        .json(&json!({ "regions": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(regions.status(), 202, "a failed file may be tried again");
}
both_backends!(files_refused_after_probing_say_why_and_give_their_quota_back);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_regions_make_a_new_version_and_retire_the_old_one() {
    let server = TestServer::start_with(Db::Sqlite, fast_worker).await;
    server.class_with_people("c", "standard", false).await;
    let post_id = server.new_post("c").await;
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    let media_id = upload(&server, "c", &post_id, "photo", &photo, true).await;
    wait_processed(&server, "c", &media_id).await;
    let (_, draft) = status_json(get_post(&server, "c", &post_id, "teacher").await).await;
    let old_view = draft["media"][0]["links"]["view"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&server, &old_view).await.status(), 200);

    let url = format!("/v1/classes/c/media/{media_id}/regions");
    for bad in [
        json!({ "regions": [{ "x": 0.5, "y": 0.5, "width": 0.9, "height": 2.0 }] }),
        json!({ "regions": [{ "x": 0.1, "y": 0.1, "width": 0.1, "height": 0.1, "start_s": 5.0, "end_s": 1.0 }] }),
        json!({ "regions": [{ "x": 0.1, "y": 0.1, "width": 0.0, "height": 0.1 }] }),
    ] {
        let response = server.user(Method::PUT, &url, "teacher").json(&bad).send().await.unwrap();
        expect_error(response, 422, "invalid_request").await;
    }
    // The name badge, bottom left, blurred whatever the detector says.
    let region = json!({ "x": 0.0, "y": 0.7, "width": 0.3, "height": 0.3 });
    let response =
        server.user(Method::PUT, &url, "teacher").json(&json!({ "regions": [region] })).send().await.unwrap();
    let (status, queued) = status_json(response).await;
    assert_eq!(status, 202, "{queued}");
    assert!(matches!(queued["state"].as_str(), Some("uploaded" | "processing")), "{queued}");
    let (_, done) = wait_processed(&server, "c", &media_id).await;
    assert_eq!(done["state"], "ready");

    let faces = server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}/faces"), "teacher").await;
    let (_, faces) = status_json(faces).await;
    assert_eq!(faces["version"], 2);
    assert_eq!(faces["manual_regions"][0]["y"].as_f64().map(|y| (y * 10.0).round()), Some(7.0), "{faces}");
    // The old version's files are gone: its links no longer work; the new ones do.
    expect_error(fetch(&server, &old_view).await, 404, "not_found").await;
    let (_, draft) = status_json(get_post(&server, "c", &post_id, "teacher").await).await;
    let new_view = draft["media"][0]["links"]["view"].as_str().unwrap().to_owned();
    assert!(new_view.contains("/v2/"), "{new_view}");
    assert_eq!(fetch(&server, &new_view).await.status(), 200);
    let old_dir = server.data_dir().join(format!("media/published/c/{media_id}/v1"));
    assert!(!old_dir.exists() || std::fs::read_dir(&old_dir).unwrap().next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_expire() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        fast_worker(config);
        config.media.link_ttl_secs = 1;
    })
    .await;
    server.class_with_people("c", "standard", false).await;
    let post_id = server.new_post("c").await;
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    let media_id = upload(&server, "c", &post_id, "photo", &photo, false).await;
    wait_processed(&server, "c", &media_id).await;
    let (_, draft) = status_json(get_post(&server, "c", &post_id, "teacher").await).await;
    let view = draft["media"][0]["links"]["view"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&server, &view).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = expect_error(fetch(&server, &view).await, 401, "unauthorized").await;
    assert!(expired["message"].as_str().unwrap().contains("expired"), "{expired}");
}

/// moto's S3 server on a free loopback port, killed with the test.
pub(crate) struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_s3() -> S3Server {
    let moto = media_worker::cache_dir().join("venv/bin/moto_server");
    assert!(moto.is_file(), "{} is missing: run `bash scripts/install-deps.sh --test-media`", moto.display());
    let port = free_port();
    let child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = S3Server { child, endpoint };
    let client = reqwest::Client::new();
    let started = Instant::now();
    // CreateBucket: moto accepts it unsigned.
    loop {
        if let Ok(response) = client.put(format!("{}/klass-media", server.endpoint)).send().await {
            assert!(response.status().is_success(), "create bucket: {}", response.status());
            return server;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_jobs_and_links_work_on_an_s3_compatible_store() {
    let s3 = start_s3().await;
    let endpoint = s3.endpoint.clone();
    let server = TestServer::start_with(Db::Sqlite, move |config| {
        fast_worker(config);
        config.storage.max_chunk_bytes = 64 * 1024;
        config.storage.url = Some("s3://klass-media".into());
        for (key, value) in [
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "eu-west-3"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ] {
            config.storage.options.insert(key.into(), value.into());
        }
    })
    .await;
    server.class_with_people("c", "standard", true).await;
    let post_id = server.new_post("c").await;
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    let (media_id, post) = upload_and_publish(&server, "c", &post_id, "photo", &photo, "parent").await;
    let download = fetch(&server, post["media"][0]["links"]["download"].as_str().unwrap()).await;
    assert_eq!(download.status(), 200);
    assert_eq!(&download.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);

    // The objects are in the bucket, not on the local disk.
    let listing =
        reqwest::get(format!("{}/klass-media?list-type=2", s3.endpoint)).await.unwrap().text().await.unwrap();
    assert!(listing.contains(&format!("originals/c/{media_id}")), "{listing}");
    assert!(listing.contains(&format!("published/c/{media_id}/v1/photo.jpg")), "{listing}");
    assert!(!listing.contains("uploads/"), "chunks are deleted once joined: {listing}");
    assert!(!server.data_dir().join("media").exists());
}

/// Many workers at once on the same queue, on both databases: each job is claimed once.
async fn concurrent_workers_never_claim_the_same_job(db: Db) {
    let server = TestServer::start_with(db, |config| config.worker.concurrency = 0).await;
    server.class_with_people("c", "plus", false).await;
    let post_id = server.new_post("c").await;
    let mut media_ids = Vec::new();
    for i in 0..3u8 {
        media_ids.push(upload(&server, "c", &post_id, "photo", &[i; 1000], false).await);
    }
    let pool = media_worker::queue::open_pool(&server.database_url(), 8).await.unwrap();
    let queue = media_worker::queue::Queue::new(pool);
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let queue = queue.clone();
        claimers.spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = queue.claim(&format!("w{w}"), Duration::from_secs(60)).await.unwrap() {
                mine.push(job.media_id.as_str().to_owned());
            }
            mine
        });
    }
    let mut claimed = Vec::new();
    while let Some(mine) = claimers.join_next().await {
        claimed.extend(mine.unwrap());
    }
    claimed.sort();
    media_ids.sort();
    assert_eq!(claimed, media_ids, "every job exactly once");
    for media_id in &media_ids {
        assert_eq!(media_status(&server, "c", media_id).await["state"], "processing");
    }
}
both_backends!(concurrent_workers_never_claim_the_same_job);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_class_deletes_its_files_and_jobs() {
    let server = TestServer::start_with(Db::Sqlite, fast_worker).await;
    server.class_with_people("c", "standard", false).await;
    server.class_with_people("kept", "standard", false).await;
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    let mut uploads = Vec::new();
    for class_id in ["c", "kept"] {
        let post_id = server.new_post(class_id).await;
        let media_id = upload(&server, class_id, &post_id, "photo", &photo, false).await;
        wait_processed(&server, class_id, &media_id).await;
        uploads.push(media_id);
    }
    // An upload left half done has chunks in storage too.
    let post_id = server.new_post("c").await;
    let half = server
        .user(Method::POST, &format!("/v1/classes/c/posts/{post_id}/media"), "teacher")
        .json(&json!({ "kind": "photo", "size_bytes": 200_000 }))
        .send()
        .await
        .unwrap();
    let (_, half) = status_json(half).await;
    let chunk = server
        .user(Method::PUT, half["upload_url"].as_str().unwrap(), "teacher")
        .header("content-range", "bytes 0-99999/200000")
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(chunk.status(), 200);
    let media = server.data_dir().join("media");
    assert!(media.join("originals/c").exists() && media.join("published/c").exists());

    let deleted = server.backend(Method::DELETE, "/v1/classes/c").send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let files: Vec<PathBuf> = walk(&media);
    let pattern = |p: &PathBuf| {
        let p = p.to_string_lossy();
        p.contains("/c/") || p.contains(&uploads[0]) || p.contains(half["media_id"].as_str().unwrap())
    };
    assert!(!files.iter().any(pattern), "files of the deleted class remain: {files:?}");
    assert!(files.iter().any(|p| p.to_string_lossy().contains(&uploads[1])), "other classes keep theirs");
    let pool = media_worker::queue::open_pool(&server.database_url(), 1).await.unwrap();
    let queue = media_worker::queue::Queue::new(pool);
    assert!(queue.status(&models::MediaId::new(uploads[0].clone()).unwrap()).await.unwrap().is_none());
    assert!(queue.status(&models::MediaId::new(uploads[1].clone()).unwrap()).await.unwrap().is_some());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
