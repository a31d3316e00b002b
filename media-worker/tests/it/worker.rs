//! Workers on the real queue (SQLite) and a local object store: outputs, refusals with their codes,
//! and a worker process killed in the middle of a job whose job another worker then finishes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media_worker::metrics::WorkerMetrics;
use media_worker::queue::{JobState, JobStatus, Queue};
use media_worker::worker::{Worker, WorkerConfig};
use media_worker::{queue, store};
use models::media::MediaKind;
use models::MediaId;
use object_store::ObjectStore;

use crate::queue::{enqueue, spec, sqlite_queue};
use crate::support::*;

fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    store::open(None, &dir.join("media"), &BTreeMap::new()).expect("local store")
}

async fn put_file(store: &dyn ObjectStore, key: &str, path: &Path) {
    store::upload(store, path, key).await.expect("upload the original");
}

async fn wait_for(
    queue: &Queue,
    media: &str,
    timeout: Duration,
    done: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    let started = Instant::now();
    let id = MediaId::new(media).expect("id");
    loop {
        let status = queue.status(&id).await.expect("status").expect("job exists");
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < timeout,
            "job {media} still {:?} after {timeout:?}: {status:?}",
            status.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_over(status: &JobStatus) -> bool {
    matches!(status.state, JobState::Done | JobState::Failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_with_their_codes_and_good_ones_published() {
    let dir = tempdir();
    let queue = sqlite_queue(dir.path()).await;
    let store = local_store(dir.path());

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a picture at all, just words").unwrap();
    let truncated = dir.path().join("cut.png");
    let png = std::fs::read(test_media("astronaut.png")).unwrap();
    std::fs::write(&truncated, &png[..png.len() / 3]).unwrap();
    let long = eleven_minute_clip(dir.path());
    let photo = test_media("astronaut.png");
    let cases: [(&str, &Path, MediaKind, Option<&str>); 5] = [
        ("text", &text, MediaKind::Photo, Some("unsupported_media")),
        ("truncated", &truncated, MediaKind::Photo, Some("corrupt_media")),
        ("long", &long, MediaKind::Video, Some("video_too_long")),
        ("photo-as-video", &photo, MediaKind::Video, Some("unsupported_media")),
        ("photo", &photo, MediaKind::Photo, None),
    ];
    for (media, path, kind, _) in &cases {
        let key = format!("originals/class-1/{media}");
        put_file(store.as_ref(), &key, path).await;
        enqueue(&queue, media, &spec(&key, *kind, true), 3).await;
    }
    // A job whose original vanished from storage fails instead of waiting forever.
    enqueue(&queue, "missing", &spec("originals/class-1/missing", MediaKind::Photo, false), 3).await;

    let registry = prometheus::Registry::new();
    let config = WorkerConfig {
        concurrency: 2,
        poll_interval_ms: 50,
        face_model: Some(face_model()),
        job_program: Some(env!("CARGO_BIN_EXE_media-worker").into()),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(queue.clone(), store.clone(), config, WorkerMetrics::new(&registry));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));

    for (media, _, _, code) in &cases {
        let status = wait_for(&queue, media, Duration::from_secs(120), is_over).await;
        assert_eq!(status.attempts, 1, "{media}: refused inputs are not retried");
        match code {
            Some(code) => {
                assert_eq!(
                    (status.state, status.error_code.as_deref()),
                    (JobState::Failed, Some(*code)),
                    "{media}"
                );
            }
            None => {
                assert_eq!(status.state, JobState::Done, "{media}: {:?}", status.error_message);
                let result = status.result.expect("a result");
                assert!(result.stats.n_face_detections >= 1, "the astronaut's face is found");
                let prefix = queue::media_prefix(&status.class_id, &status.media_id);
                let mut keys = store::list(store.as_ref(), &prefix).await.unwrap();
                keys.sort();
                let expected: Vec<String> = ["faces.json", "photo.jpg", "thumb.jpg"]
                    .iter()
                    .map(|f| format!("{prefix}v1/{f}"))
                    .collect();
                assert_eq!(keys, expected);
                let faces: serde_json::Value = serde_json::from_slice(
                    &store.get(&result.files.faces.as_str().into()).await.unwrap().bytes().await.unwrap(),
                )
                .unwrap();
                assert_eq!(
                    faces["frames"][0]["boxes"].as_array().map(Vec::len),
                    Some(result.stats.n_face_detections as usize)
                );
            }
        }
    }
    let missing = wait_for(&queue, "missing", Duration::from_secs(30), is_over).await;
    assert_eq!(missing.error_code.as_deref(), Some("original_missing"));

    stop.send(true).unwrap();
    running.await.unwrap();
    let metrics = scrape_registry(&registry);
    assert!(metrics.contains("klass_media_jobs_total{kind=\"photo\",result=\"done\"} 1"), "{metrics}");
    assert!(metrics.contains("klass_media_jobs_total{kind=\"photo\",result=\"refused\"} 3"), "{metrics}");
    assert!(metrics.contains("klass_media_jobs_total{kind=\"video\",result=\"refused\"} 2"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_face_model_a_blur_job_fails_and_says_so() {
    let dir = tempdir();
    let queue = sqlite_queue(dir.path()).await;
    let store = local_store(dir.path());
    put_file(store.as_ref(), "originals/class-1/p", &test_media("astronaut.png")).await;
    enqueue(&queue, "p", &spec("originals/class-1/p", MediaKind::Photo, true), 1).await;
    let config = WorkerConfig {
        poll_interval_ms: 50,
        face_model: Some(dir.path().join("no-such-model.onnx")),
        job_program: Some(env!("CARGO_BIN_EXE_media-worker").into()),
        ..WorkerConfig::default()
    };
    let worker =
        Worker::new(queue.clone(), store.clone(), config, WorkerMetrics::new(&prometheus::Registry::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    let status = wait_for(&queue, "p", Duration::from_secs(30), is_over).await;
    assert_eq!((status.state, status.error_code.as_deref()), (JobState::Failed, Some("face_model_missing")));
    assert!(
        store::list(store.as_ref(), "published/").await.unwrap().is_empty(),
        "nothing unblurred is published"
    );
    stop.send(true).unwrap();
    running.await.unwrap();
}

fn scrape_registry(registry: &prometheus::Registry) -> String {
    let mut body = String::new();
    prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut body).expect("encode");
    body
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_worker(data_dir: &Path, metrics_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_media-worker"))
        .args(["work", "--lease-secs", "2", "--poll-interval-ms", "100"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the media-worker binary starts")
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_leaves_it_to_another_that_finishes_it_once() {
    let dir = tempdir();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    // The worker binary's defaults: `<data-dir>/klass.db` and `<data-dir>/media`.
    let url = format!("sqlite://{}?mode=rwc", data_dir.join("klass.db").display());
    let pool = queue::open_pool(&url, 2).await.unwrap();
    queue::migrate(&pool).await.unwrap();
    let queue = Queue::new(pool);
    let store = local_store(&data_dir);

    // 40 s of 720p: long enough to be caught in the middle.
    let video = dir.path().join("long.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=1280x720:r=30:d=40",
        "-f",
        "lavfi",
        "-i",
        "sine=d=40",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
        path_str(&video),
    ]);
    let key = "originals/class-1/clip";
    put_file(store.as_ref(), key, &video).await;
    enqueue(&queue, "clip", &spec(key, MediaKind::Video, false), 3).await;

    let mut first = spawn_worker(&data_dir, free_port());
    let caught = wait_for(&queue, "clip", Duration::from_secs(120), |s| {
        s.state == JobState::Running && s.progress_percent >= 10
    })
    .await;
    assert!(caught.progress_percent < 100);
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    first.wait().unwrap();
    let killed_at = Instant::now();
    // Nobody renews the lease now; the job is still marked running until it expires.
    assert_eq!(queue.status(&MediaId::new("clip").unwrap()).await.unwrap().unwrap().state, JobState::Running);

    let port = free_port();
    let mut second = spawn_worker(&data_dir, port);
    let done = wait_for(&queue, "clip", Duration::from_secs(300), is_over).await;
    assert_eq!((done.state, done.attempts), (JobState::Done, 2), "{:?}", done.error_message);
    assert!(killed_at.elapsed() >= Duration::from_secs(2), "taken over only after the lease expired");

    // One set of outputs, at the keys of this version; the killed run left nothing else.
    let prefix = queue::media_prefix(&done.class_id, &done.media_id);
    let mut keys = store::list(store.as_ref(), "published/").await.unwrap();
    keys.sort();
    let expected: Vec<String> = ["faces.json", "media.mp4", "poster.jpg", "thumb.jpg"]
        .iter()
        .map(|f| format!("{prefix}v1/{f}"))
        .collect();
    assert_eq!(keys, expected);
    let output = dir.path().join("out.mp4");
    store::download(store.as_ref(), &done.result.as_ref().unwrap().files.media, &output).await.unwrap();
    let probe = ffprobe(&output);
    assert_eq!(stream(&probe, "video").unwrap()["codec_name"], "h264");
    assert_eq!(stream(&probe, "audio").unwrap()["codec_name"], "aac");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 40.0).abs() < 0.5, "the whole video: {duration} s");
    let atoms = top_level_atoms(&output);
    assert!(atoms.iter().position(|a| a == "moov") < atoms.iter().position(|a| a == "mdat"), "{atoms:?}");

    let metrics = http_get(port, "/metrics");
    assert!(metrics.contains("klass_media_jobs_total{kind=\"video\",result=\"done\"} 1"), "{metrics}");
    assert!(metrics.contains("klass_media_transcode_realtime_factor_count 1"), "{metrics}");

    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = second.wait().unwrap();
    assert!(status.success(), "SIGTERM stops the worker cleanly: {status:?}");
}
