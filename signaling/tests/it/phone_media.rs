//! What iPhones make, through the server: a HEIC photo is accepted, published as a JPEG without
//! metadata, and its stored original becomes a clean JPEG too.

use crate::media_support::{fast_worker, fetch, heif_enc, test_media, upload_and_publish};
use crate::support::{Db, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heic_photo_is_published_as_a_jpeg_and_its_original_kept_clean() {
    let server = TestServer::start_with(Db::Sqlite, fast_worker).await;
    server.class_with_people("c", "standard", false).await;
    let dir = tempfile::tempdir().unwrap();
    let heic = dir.path().join("IMG_0001.HEIC");
    heif_enc(&test_media("astronaut.png"), &heic);
    let bytes = std::fs::read(&heic).unwrap();
    assert_eq!(&bytes[4..12], b"ftypheic", "an HEIC file as iPhones write it");

    let post_id = server.new_post("c").await;
    let (media_id, post) = upload_and_publish(&server, "c", &post_id, "photo", &bytes, "parent").await;
    let link = post["media"][0]["links"]["view"].as_str().expect("a view link").to_owned();
    let response = fetch(&server, &link).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let jpeg = response.bytes().await.unwrap();
    assert!(!jpeg.windows(4).any(|w| w == b"Exif"), "no EXIF in the published photo");
    let published = dir.path().join("published.jpg");
    std::fs::write(&published, &jpeg).unwrap();
    let info = media_worker::probe(&published, &Default::default()).expect("a photo");
    assert_eq!((info.format.as_str(), info.width, info.height), ("jpeg", 512, 512));

    let original = server.data_dir().join("media").join("originals").join("c").join(&media_id);
    let bytes = std::fs::read(&original).unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"Exif"), "the stored original has no metadata");
    let info = media_worker::probe(&original, &Default::default()).expect("the original is a photo");
    assert_eq!((info.format.as_str(), info.width, info.height), ("jpeg", 512, 512), "now a JPEG");
}
