//! Hostile uploads through the real server: playlists and lists that would open other files
//! (another class's published video among them), an image sequence, a resolution change and
//! thousands of frames per second inside a stream, a decompression bomb, a truncated HEIC. Each is
//! refused with its code while a call goes on in the same server; nothing is published and the
//! other class's file is untouched. Then the job's child process is killed mid-job, and another
//! runs out of its memory limit: jobs fail or retry as designed, and the server goes on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use media_worker::queue::Queue;
use reqwest::Method;
use serde_json::Value;

use crate::media_support::{
    fast_worker, ffmpeg, media_status, test_media, test_video, upload, wait_processed,
};
use crate::support::{both_backends, Db, TestServer};
use crate::visio::{join, next_of};

/// An MPEG-TS of H.264 whose first frames are 320x240 and whose last frame is 8192x8192: the
/// header says 320x240.
fn resolution_change(dir: &Path) -> Vec<u8> {
    let (small, large) = (dir.join("small.ts"), dir.join("large.ts"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=25:d=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "mpegts",
        small.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=8192x8192:r=25:d=0.04",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-output_ts_offset",
        "2",
        "-f",
        "mpegts",
        large.to_str().unwrap(),
    ]);
    [std::fs::read(small).unwrap(), std::fs::read(large).unwrap()].concat()
}

/// 2000 frames whose timestamps are one 90 kHz tick apart: 90 000 frames per second, in a
/// stream whose header says 1000.
fn dense_timestamps(dir: &Path) -> Vec<u8> {
    let path = dir.join("dense.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=64x64:r=1000:d=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-bsf:v",
        "setts=ts=N",
        "-f",
        "mpegts",
        path.to_str().unwrap(),
    ]);
    std::fs::read(path).unwrap()
}

/// A PNG of 12000x12000 grey pixels (432 MB decoded) in about 150 KB: IHDR, one zlib stream of
/// zero rows, IEND.
fn decompression_bomb_png(dir: &Path) -> Vec<u8> {
    let path = dir.join("bomb.png");
    let script = r#"
import struct, sys, zlib
w = h = 12000
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
z = zlib.compressobj(9)
row = b"\x00" * (w * 3 + 1)
body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
"#;
    let status = std::process::Command::new("python3").args(["-c", script]).arg(&path).status().unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

/// A HEIC photo made by libheif's `heif-enc`, cut in half.
fn truncated_heic(dir: &Path) -> Vec<u8> {
    let path = dir.join("astronaut.heic");
    crate::media_support::heif_enc(&test_media("astronaut.png"), &path);
    let bytes = std::fs::read(path).unwrap();
    bytes[..bytes.len() / 2].to_vec()
}

/// Several JPEG frames back to back (an MJPEG stream, as `image2pipe` writes it), and an
/// animated GIF: sequences of pictures, not videos we accept.
fn picture_sequences(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let (mjpeg, gif) = (dir.join("frames.mjpeg"), dir.join("anim.gif"));
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=s=64x64:r=5:d=2", "-f", "mjpeg", mjpeg.to_str().unwrap()]);
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=s=64x64:r=5:d=2", gif.to_str().unwrap()]);
    (std::fs::read(mjpeg).unwrap(), std::fs::read(gif).unwrap())
}

fn published_files(data_dir: &Path, class_id: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![data_dir.join("media").join("published").join(class_id)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

async fn hostile_uploads_are_refused_while_the_server_and_its_calls_go_on(db: Db) {
    let server = TestServer::start_with(db, |config| {
        fast_worker(config);
        // The teacher's socket is not read while the files are processed, and only a client that
        // reads answers the server's pings: on a loaded machine that can pass the idle time.
        config.http.idle_timeout_secs = 600;
    })
    .await;
    server.class_with_people("a", "standard", false).await;
    server.class_with_people("b", "standard", false).await;
    let dir = tempfile::tempdir().unwrap();

    // Class B publishes a video: the target of the playlists below.
    let b_post = server.new_post("b").await;
    let b_video = std::fs::read(test_video(dir.path(), "b.mp4", "320x240", 2)).unwrap();
    let b_media = upload(&server, "b", &b_post, "video", &b_video, false).await;
    let (_, done) = wait_processed(&server, "b", &b_media).await;
    assert_eq!(done["state"], "ready", "{done}");
    let b_files = published_files(server.data_dir(), "b");
    let b_mp4 = b_files.iter().find(|p| p.ends_with("media.mp4")).expect("class B's video").clone();
    let b_bytes = std::fs::read(&b_mp4).unwrap();
    let b_path = b_mp4.display().to_string();

    // A call runs in class A all along.
    let (mut teacher, _teacher_rtc, joined) = join(&server, "a", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut teacher, "admitted").await;

    let (mjpeg, gif) = picture_sequences(dir.path());
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("hls naming class B's file", "video",
            format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{b_path}\n#EXT-X-ENDLIST\n").into_bytes(),
            "unsupported_media"),
        ("hls with a file URL and subfile", "video",
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile://{b_path}\n#EXTINF:10.0,\nsubfile,,start,0,end,0,,:{b_path}\n#EXT-X-ENDLIST\n").into_bytes(),
            "unsupported_media"),
        ("dash manifest", "video",
            format!(r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"><Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="100000"><BaseURL>file://{b_path}</BaseURL></Representation></AdaptationSet></Period></MPD>"#).into_bytes(),
            "unsupported_media"),
        ("concat list naming itself", "video", b"ffconcat version 1.0\nfile input\nfile input\n".to_vec(), "unsupported_media"),
        ("concat list naming class B's file", "video", format!("ffconcat version 1.0\nfile '{b_path}'\n").into_bytes(), "unsupported_media"),
        ("concat list of an image sequence pattern", "video", b"ffconcat version 1.0\nfile 'img%03d.png'\n".to_vec(), "unsupported_media"),
        ("tee and pipe URLs", "video", format!("tee:{b_path}|pipe:1\n").into_bytes(), "unsupported_media"),
        ("an MJPEG picture sequence", "video", mjpeg, "unsupported_media"),
        ("an animated GIF", "video", gif, "unsupported_media"),
        ("a resolution change mid-stream", "video", resolution_change(dir.path()), "media_too_large"),
        ("90 000 frames per second", "video", dense_timestamps(dir.path()), "media_too_large"),
        ("a decompression-bomb PNG", "photo", decompression_bomb_png(dir.path()), "media_too_large"),
        ("a truncated HEIC", "photo", truncated_heic(dir.path()), "corrupt_media"),
    ];

    let mut uploads = Vec::new();
    for (name, kind, bytes, code) in &cases {
        // One post each: the tier allows only a few videos per post.
        let post = server.new_post("a").await;
        uploads.push((name, code, upload(&server, "a", &post, kind, bytes, false).await));
    }
    for (name, code, media_id) in &uploads {
        let (_, done) = wait_processed(&server, "a", media_id).await;
        assert_eq!(
            (done["state"].as_str(), done["error"].as_str()),
            (Some("failed"), Some(**code)),
            "{name}: {done}"
        );
    }

    // Nothing of class A was published, its refused originals are gone, and class B's video is as
    // it was.
    assert_eq!(published_files(server.data_dir(), "a"), Vec::<PathBuf>::new());
    let originals = server.data_dir().join("media").join("originals").join("a");
    let left: Vec<_> =
        std::fs::read_dir(&originals).into_iter().flatten().flatten().map(|e| e.path()).collect();
    assert!(left.iter().all(|p| p.is_dir() && std::fs::read_dir(p).unwrap().next().is_none()), "{left:?}");
    assert_eq!(std::fs::read(&b_mp4).unwrap(), b_bytes, "class B's file is untouched");

    // The server and the call are alive: a parent joins the teacher's call.
    assert_eq!(server.request(Method::GET, "/healthz").send().await.unwrap().status(), 200);
    let (_parent, _parent_rtc, joined) = join(&server, "a", "parent").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let seen = next_of(&mut teacher, "participant_joined").await;
    assert_eq!(seen["participant"]["display_name"], "Person parent", "{seen}");
}
both_backends!(hostile_uploads_are_refused_while_the_server_and_its_calls_go_on);

/// The pids of this process's children that run a media job in a scratch directory under
/// `scratch_root`: tests on both databases run side by side in this process, each with its own
/// server and scratch root.
fn job_children(scratch_root: &Path) -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the command name, which is in parentheses: state, ppid, ...
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        let parent = after.split_whitespace().nth(1).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let in_scratch =
            std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(scratch_root));
        if parent == me && in_scratch && cmdline.split(|b| *b == 0).any(|arg| arg == b"media-job") {
            pids.push(pid);
        }
    }
    pids
}

async fn job_status(server: &TestServer, media_id: &str) -> media_worker::queue::JobStatus {
    let pool = media_worker::queue::open_pool(&server.database_url(), 1).await.unwrap();
    let media_id = models::MediaId::new(media_id).expect("a media id");
    Queue::new(pool).status(&media_id).await.unwrap().expect("the job exists")
}

async fn a_killed_job_is_retried_and_one_over_its_memory_limit_is_refused(db: Db) {
    let scratch = tempfile::tempdir().unwrap();
    let scratch_root = scratch.path().to_path_buf();
    let server = TestServer::start_with(db, |config| {
        fast_worker(config);
        config.worker.scratch_dir = Some(scratch_root.clone());
        // Enough for a 640x480 video, too little for a 10000x10000 photo (300 MB as RGB, then
        // resized).
        config.worker.job_limits.memory_mb = 400;
    })
    .await;
    server.class_with_people("a", "standard", false).await;
    let dir = tempfile::tempdir().unwrap();
    let post = server.new_post("a").await;

    // A minute of video; its child is killed with SIGKILL once it has made progress.
    let video = std::fs::read(test_video(dir.path(), "v.mp4", "640x480", 60)).unwrap();
    let video_id = upload(&server, "a", &post, "video", &video, false).await;
    let started = Instant::now();
    let victim = loop {
        let status = media_status(&server, "a", &video_id).await;
        let progress = status["progress_percent"].as_u64().unwrap_or(0);
        if let (Some(pid), true) = (job_children(scratch.path()).first(), (5..90).contains(&progress)) {
            break *pid;
        }
        assert_ne!(status["state"], "ready", "the job finished before it could be killed");
        if status["state"] == "failed" {
            panic!("the job failed: {:?}", job_status(&server, &video_id).await);
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no job child at work: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // SAFETY: kill(2) on a pid that is our own child.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let (_, done) = wait_processed(&server, "a", &video_id).await;
    assert_eq!(done["state"], "ready", "the job runs again after its child was killed: {done}");
    let status = job_status(&server, &video_id).await;
    assert_eq!(status.attempts, 2, "{status:?}");

    // A photo too large for the job's memory.
    let big = dir.path().join("big.png");
    ffmpeg(&["-f", "lavfi", "-i", "color=c=gray:s=10000x10000", "-frames:v", "1", big.to_str().unwrap()]);
    let big_id = upload(&server, "a", &post, "photo", &std::fs::read(&big).unwrap(), false).await;
    let (_, done) = wait_processed(&server, "a", &big_id).await;
    assert_eq!(
        (done["state"].as_str(), done["error"].as_str()),
        (Some("failed"), Some("media_too_large")),
        "{done}"
    );
    let status = job_status(&server, &big_id).await;
    assert_eq!(
        (status.error_code.as_deref(), status.attempts),
        (Some("media_memory_limit"), 1),
        "{status:?}"
    );

    // The server goes on: a normal photo is processed.
    let photo = std::fs::read(test_media("astronaut.png")).unwrap();
    let photo_id = upload(&server, "a", &post, "photo", &photo, true).await;
    let (_, done): (_, Value) = wait_processed(&server, "a", &photo_id).await;
    assert_eq!(done["state"], "ready", "{done}");
}
both_backends!(a_killed_job_is_retried_and_one_over_its_memory_limit_is_refused);
