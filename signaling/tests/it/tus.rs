//! tus 1.0 (core and creation) over the uploads of `POST .../media` and `PUT .../content`: the
//! protocol's headers and statuses, resuming with `HEAD`, the same roles and tier checks, hostile
//! offsets and ids; and the class's post listing parents read.

use base64::Engine;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::media_support::{fast_worker, test_media, wait_processed};
use crate::support::{both_backends, expect_error, status_json, Db, TestServer};

const CHUNK: usize = 64 * 1024;

async fn start(db: Db) -> TestServer {
    TestServer::start_with(db, |config| {
        config.storage.max_chunk_bytes = CHUNK;
        // These tests look at uploads alone: no worker picks the files up.
        config.worker.concurrency = 0;
    })
    .await
}

fn b64(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

fn tus(request: RequestBuilder) -> RequestBuilder {
    request.header("tus-resumable", "1.0.0")
}

async fn create(
    server: &TestServer,
    class_id: &str,
    post_id: &str,
    user: &str,
    length: u64,
    metadata: &str,
) -> reqwest::Response {
    tus(server.user(Method::POST, &format!("/v1/classes/{class_id}/posts/{post_id}/uploads"), user))
        .header("upload-length", length.to_string())
        .header("upload-metadata", metadata)
        .send()
        .await
        .unwrap()
}

/// Creates an upload; returns its `Location`.
async fn created(server: &TestServer, class_id: &str, post_id: &str, length: u64, metadata: &str) -> String {
    let response = create(server, class_id, post_id, "teacher", length, metadata).await;
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    assert_eq!(response.headers()["upload-offset"], "0");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, body) = status_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "uploading");
    assert_eq!(body["upload_url"], location.as_str());
    location
}

async fn patch(
    server: &TestServer,
    location: &str,
    user: &str,
    offset: u64,
    bytes: &[u8],
) -> reqwest::Response {
    // A refused PATCH is answered before its body is read, and the server then closes the
    // connection: a new one each time, so that no next request races that close.
    tus(server.user(Method::PATCH, location, user))
        .header("connection", "close")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn head_offset(server: &TestServer, location: &str) -> u64 {
    let response = tus(server.user(Method::HEAD, location, "teacher")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
}

fn photo_metadata() -> String {
    format!("filename {},filetype {}", b64("école.jpg"), b64("image/jpeg"))
}

async fn a_tus_upload_resumes_from_the_servers_offset(db: Db) {
    let server = start(db).await;
    server.class_with_people("c", "standard", false).await;
    let post_id = server.new_post("c").await;

    // Discovery needs no token.
    let options = server
        .request(Method::OPTIONS, &format!("/v1/classes/c/posts/{post_id}/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    assert_eq!(options.headers()["tus-resumable"], "1.0.0");
    assert_eq!(options.headers()["tus-extension"], "creation,termination");
    assert!(options.headers()["tus-max-size"].to_str().unwrap().parse::<u64>().unwrap() > 0);

    let file: Vec<u8> = (0..(2 * CHUNK + 1234)).map(|i| (i * 7 % 251) as u8).collect();
    let location = created(&server, "c", &post_id, file.len() as u64, &photo_metadata()).await;
    let media_id = location.split('/').nth(5).unwrap().to_owned();
    assert_eq!(head_offset(&server, &location).await, 0);

    let first = patch(&server, &location, "teacher", 0, &file[..CHUNK]).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(first.headers()["upload-offset"], CHUNK.to_string().as_str());
    assert_eq!(first.headers()["tus-resumable"], "1.0.0");

    // The connection broke during the second PATCH: the client does not know what arrived, sends
    // the first chunk again, is told where the upload stands, and asks with HEAD after a reload.
    let again = patch(&server, &location, "teacher", 0, &file[..CHUNK]).await;
    assert_eq!(again.headers()["upload-offset"], CHUNK.to_string().as_str());
    expect_error(again, 409, "upload_offset_mismatch").await;
    let offset = head_offset(&server, &location).await as usize;
    assert_eq!(offset, CHUNK);
    // A PATCH that tries to skip ahead is refused the same way.
    let ahead =
        patch(&server, &location, "teacher", (offset + 10) as u64, &file[offset + 10..offset + 20]).await;
    expect_error(ahead, 409, "upload_offset_mismatch").await;

    // The same upload may be finished with the older protocol's PUT, then with tus.
    let put = server
        .user(Method::PUT, &location, "teacher")
        .header("content-range", format!("bytes {offset}-{}/{}", offset + CHUNK - 1, file.len()))
        .body(file[offset..offset + CHUNK].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let offset = head_offset(&server, &location).await as usize;
    assert_eq!(offset, 2 * CHUNK);
    let last = patch(&server, &location, "teacher", offset as u64, &file[offset..]).await;
    assert_eq!(last.status(), StatusCode::NO_CONTENT);
    assert_eq!(last.headers()["upload-offset"], file.len().to_string().as_str());

    // Complete: the job is queued, the original is the exact file, and no more bytes are taken.
    let (_, status) =
        status_json(server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}"), "teacher").await)
            .await;
    assert_eq!(status["state"], "uploaded", "{status}");
    assert_eq!(status["kind"], "photo");
    let original = server.data_dir().join(format!("media/originals/c/{media_id}"));
    assert_eq!(std::fs::read(&original).unwrap(), file);
    assert_eq!(head_offset(&server, &location).await, file.len() as u64);
    expect_error(patch(&server, &location, "teacher", file.len() as u64, b"x").await, 409, "upload_closed")
        .await;
}
both_backends!(a_tus_upload_resumes_from_the_servers_offset);

async fn tus_refusals(db: Db) {
    let server = start(db).await;
    server.class_with_people("c", "free", false).await;
    server.class_with_people("other", "plus", false).await;
    server.put_member("other", "other-teacher", "teacher", true).await;
    let post_id = server.new_post("c").await;
    let uploads = format!("/v1/classes/c/posts/{post_id}/uploads");
    let location = created(&server, "c", &post_id, 100, &photo_metadata()).await;
    let media_id = location.split('/').nth(5).unwrap().to_owned();

    // Protocol: another version (412 with ours), a PATCH that is not offset+octet-stream (415).
    let old = server
        .user(Method::POST, &uploads, "teacher")
        .header("tus-resumable", "0.2.2")
        .header("upload-length", "100")
        .header("upload-metadata", photo_metadata())
        .send()
        .await
        .unwrap();
    assert_eq!(old.headers()["tus-version"], "1.0.0");
    expect_error(old, 412, "invalid_request").await;
    let no_version = server.user(Method::HEAD, &location, "teacher").send().await.unwrap();
    assert_eq!(no_version.status(), 412);
    let json = tus(server.user(Method::PATCH, &location, "teacher"))
        .header("upload-offset", "0")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(json, 415, "invalid_request").await;
    let no_offset = tus(server.user(Method::PATCH, &location, "teacher"))
        .header("content-type", "application/offset+octet-stream")
        .body("abc")
        .send()
        .await
        .unwrap();
    expect_error(no_offset, 422, "invalid_request").await;

    // Offsets: beyond the length, and bytes past the announced length.
    let beyond = patch(&server, &location, "teacher", 1_000, b"abc").await;
    assert_eq!(beyond.headers()["upload-offset"], "0");
    expect_error(beyond, 409, "upload_offset_mismatch").await;
    expect_error(patch(&server, &location, "teacher", 0, &[0u8; 101]).await, 422, "invalid_request").await;
    // More than one chunk's worth in one PATCH: refused before it is stored.
    let big = patch(&server, &location, "teacher", 0, &vec![0u8; CHUNK + 1]).await;
    assert_eq!(big.status(), 413);
    assert_eq!(head_offset(&server, &location).await, 0);

    // People: a parent neither creates nor sends; a teacher of another class cannot reach this
    // upload through their own class, nor through this one.
    expect_error(
        create(&server, "c", &post_id, "parent", 100, &photo_metadata()).await,
        403,
        "forbidden_role",
    )
    .await;
    expect_error(patch(&server, &location, "parent", 0, b"abc").await, 403, "forbidden_role").await;
    let parent_head = tus(server.user(Method::HEAD, &location, "parent")).send().await.unwrap();
    assert_eq!(parent_head.status(), 403);
    let through_other = format!("/v1/classes/other/media/{media_id}/content");
    expect_error(patch(&server, &through_other, "other-teacher", 0, b"abc").await, 404, "not_found").await;
    let other_head = tus(server.user(Method::HEAD, &through_other, "other-teacher")).send().await.unwrap();
    assert_eq!(other_head.status(), 404);
    expect_error(patch(&server, &location, "other-teacher", 0, b"abc").await, 403, "not_a_member").await;
    let other_post = {
        let response = server.call(Method::POST, "/v1/classes/other/posts", "other-teacher").await;
        status_json(response).await.1["post_id"].as_str().unwrap().to_owned()
    };
    expect_error(
        create(&server, "c", &other_post, "teacher", 100, &photo_metadata()).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(head_offset(&server, &location).await, 0);

    // Sizes and the tier: too large for any file, too large for a photo, the Free tier's one
    // video per post, a video longer than the tier allows, no kind at all.
    let huge = create(&server, "c", &post_id, "teacher", 999_999_999_999_999_999, &photo_metadata()).await;
    expect_error(huge, 413, "media_too_large").await;
    let photo_limit = 60 * 1024 * 1024;
    expect_error(
        create(&server, "c", &post_id, "teacher", photo_limit, &photo_metadata()).await,
        413,
        "media_too_large",
    )
    .await;
    let video = format!("kind {}", b64("video"));
    created(&server, "c", &post_id, 1000, &video).await;
    expect_error(create(&server, "c", &post_id, "teacher", 1000, &video).await, 409, "too_many_videos").await;
    let other_post_c = server.new_post("c").await;
    let long = format!("kind {},duration_seconds {}", b64("video"), b64("36000"));
    expect_error(create(&server, "c", &other_post_c, "teacher", 1000, &long).await, 422, "video_too_long")
        .await;
    let unknown = format!("filetype {}", b64("text/plain"));
    expect_error(
        create(&server, "c", &other_post_c, "teacher", 1000, &unknown).await,
        422,
        "invalid_request",
    )
    .await;
    expect_error(
        create(&server, "c", &other_post_c, "teacher", 1000, "kind ***").await,
        422,
        "invalid_request",
    )
    .await;
    let no_length = tus(server.user(Method::POST, &uploads, "teacher")).send().await.unwrap();
    expect_error(no_length, 422, "invalid_request").await;
    expect_error(
        create(&server, "c", &post_id, "teacher", 0, &photo_metadata()).await,
        422,
        "invalid_request",
    )
    .await;
}
both_backends!(tus_refusals);

/// tus termination: an upload given up frees its place in the post and its bytes, and its URL is
/// gone; a complete upload cannot be terminated; parents cannot terminate.
async fn a_terminated_upload_frees_its_place(db: Db) {
    let server = start(db).await;
    server.class_with_people("c", "free", false).await;
    let post_id = server.new_post("c").await;
    let video = format!("kind {}", b64("video"));
    let file = vec![7u8; 2 * CHUNK];
    let location = created(&server, "c", &post_id, file.len() as u64, &video).await;
    let media_id = location.split('/').nth(5).unwrap().to_owned();
    assert_eq!(patch(&server, &location, "teacher", 0, &file[..CHUNK]).await.status(), 204);
    // The Free tier's one video per post is taken.
    expect_error(create(&server, "c", &post_id, "teacher", 1000, &video).await, 409, "too_many_videos").await;

    let parent = tus(server.user(Method::DELETE, &location, "parent")).send().await.unwrap();
    expect_error(parent, 403, "forbidden_role").await;
    let no_version = server.user(Method::DELETE, &location, "teacher").send().await.unwrap();
    assert_eq!(no_version.status(), 412);
    let terminated = tus(server.user(Method::DELETE, &location, "teacher")).send().await.unwrap();
    assert_eq!(terminated.status(), StatusCode::NO_CONTENT);
    assert_eq!(terminated.headers()["tus-resumable"], "1.0.0");

    // Gone: its URL, its status, its chunks; and the post takes a video again.
    let head = tus(server.user(Method::HEAD, &location, "teacher")).send().await.unwrap();
    assert_eq!(head.status(), 404);
    expect_error(patch(&server, &location, "teacher", CHUNK as u64, &file[CHUNK..]).await, 404, "not_found")
        .await;
    let status = server.call(Method::GET, &format!("/v1/classes/c/media/{media_id}"), "teacher").await;
    expect_error(status, 404, "not_found").await;
    let chunks = server.data_dir().join(format!("media/uploads/{media_id}"));
    assert!(!chunks.exists() || std::fs::read_dir(&chunks).unwrap().next().is_none(), "chunks left behind");
    let again = tus(server.user(Method::DELETE, &location, "teacher")).send().await.unwrap();
    expect_error(again, 404, "not_found").await;
    let next = created(&server, "c", &post_id, file.len() as u64, &video).await;

    // A complete upload is a video of the post: not terminated.
    assert_eq!(patch(&server, &next, "teacher", 0, &file[..CHUNK]).await.status(), 204);
    assert_eq!(patch(&server, &next, "teacher", CHUNK as u64, &file[CHUNK..]).await.status(), 204);
    let complete = tus(server.user(Method::DELETE, &next, "teacher")).send().await.unwrap();
    expect_error(complete, 409, "upload_closed").await;
}
both_backends!(a_terminated_upload_frees_its_place);

fn post_of<'a>(posts: &'a Value, post_id: &str) -> Option<&'a Value> {
    posts.as_array().unwrap().iter().find(|post| post["post_id"] == post_id)
}

/// A photo sent with tus is processed and published; parents list the class's published posts
/// only, with a download link only when the class has Confort famille, and the server refuses a
/// download link forged from the view link.
async fn parents_list_published_posts_with_downloads_as_the_class_allows(db: Db) {
    let server = TestServer::start_with(db, fast_worker).await;
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    for (class_id, confort_famille) in [("with-cf", true), ("without-cf", false)] {
        server.class_with_people(class_id, "standard", confort_famille).await;
        let draft = server.new_post(class_id).await;
        let post_id = server.new_post(class_id).await;
        let metadata = format!("filetype {}", b64("image/png"));
        let location = created(&server, class_id, &post_id, photo.len() as u64, &metadata).await;
        let media_id = location.split('/').nth(5).unwrap().to_owned();
        let done = patch(&server, &location, "teacher", 0, &photo).await;
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
        let (_, ready) = wait_processed(&server, class_id, &media_id).await;
        assert_eq!(ready["state"], "ready", "{ready}");
        let publish = server
            .call(Method::POST, &format!("/v1/classes/{class_id}/posts/{post_id}/publish"), "teacher")
            .await;
        assert_eq!(publish.status(), 200);

        let posts_path = format!("/v1/classes/{class_id}/posts");
        let list = |user: &'static str| server.call(Method::GET, &posts_path, user);
        let (status, teacher_posts) = status_json(list("teacher").await).await;
        assert_eq!(status, 200, "{teacher_posts}");
        assert!(post_of(&teacher_posts, &draft).is_some(), "teachers see drafts: {teacher_posts}");
        let (status, parent_posts) = status_json(list("parent").await).await;
        assert_eq!(status, 200, "{parent_posts}");
        assert!(post_of(&parent_posts, &draft).is_none(), "parents see published posts only: {parent_posts}");
        let post = post_of(&parent_posts, &post_id).expect("the published post");
        let links = &post["media"][0]["links"];
        assert_eq!(links["download"].is_string(), confort_famille, "{class_id}: {links}");
        let view = links["view"].as_str().unwrap();
        assert_eq!(server.request(Method::GET, view).send().await.unwrap().status(), 200);
        if !confort_famille {
            let forged = view.replace("dl=0", "dl=1");
            assert_ne!(forged, view);
            expect_error(server.request(Method::GET, &forged).send().await.unwrap(), 401, "unauthorized")
                .await;
        }
    }
    // Strangers get nothing.
    server.put_class("third", "standard", true).await;
    server.put_member("third", "stranger", "parent", true).await;
    let stranger = server.call(Method::GET, "/v1/classes/with-cf/posts", "stranger").await;
    expect_error(stranger, 403, "not_a_member").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_list_published_posts_sqlite() {
    parents_list_published_posts_with_downloads_as_the_class_allows(Db::Sqlite).await;
}
