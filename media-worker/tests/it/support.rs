//! Helpers shared by the integration tests: test media, the `ffmpeg`/`ffprobe` CLIs, MP4 atoms.

use std::path::{Path, PathBuf};
use std::process::Command;

use media_worker::{FaceConfig, FaceDetector};
use serde_json::Value;

pub fn cache_dir() -> PathBuf {
    media_worker::cache_dir()
}

/// A file fetched by `scripts/install-deps.sh --test-media`. Missing media fail the test: a test
/// that skips silently proves nothing.
pub fn test_media(name: &str) -> PathBuf {
    let path = cache_dir().join("test-media").join(name);
    assert!(
        path.is_file(),
        "test media {} is missing: run `bash scripts/install-deps.sh --test-media` (KLASS_CACHE={})",
        path.display(),
        cache_dir().display()
    );
    path
}

pub fn face_model() -> PathBuf {
    let path = FaceConfig::default_model_path();
    assert!(
        path.is_file(),
        "face model {} is missing: run `bash scripts/install-deps.sh` (or set KLASS_FACE_MODEL)",
        path.display()
    );
    path
}

pub fn detector() -> FaceDetector {
    let config = FaceConfig { model_path: face_model(), ..FaceConfig::default() };
    FaceDetector::new(config).expect("the face model loads")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Runs the `ffmpeg` CLI and fails the test if it fails.
pub fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is installed (scripts/install-deps.sh)");
    assert!(output.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

pub fn has_encoder(name: &str) -> bool {
    let output = Command::new("ffmpeg").args(["-hide_banner", "-encoders"]).output().expect("ffmpeg CLI");
    String::from_utf8_lossy(&output.stdout).split_whitespace().any(|word| word == name)
}

/// `ffprobe -show_format -show_streams` as JSON.
pub fn ffprobe(path: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .expect("the ffprobe CLI is installed");
    assert!(output.status.success(), "ffprobe {} failed", path.display());
    serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON")
}

/// Presentation times of the video frames, in seconds, as ffprobe reads them.
pub fn frame_times(path: &Path) -> Vec<f64> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    let mut times: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

pub fn stream<'a>(probe: &'a Value, codec_type: &str) -> Option<&'a Value> {
    probe["streams"].as_array()?.iter().find(|s| s["codec_type"] == codec_type)
}

/// Top-level MP4 boxes in file order.
pub fn top_level_atoms(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read the MP4");
    let mut atoms = Vec::new();
    let mut offset = 0usize;
    while offset + 8 <= bytes.len() {
        let size32 = u32::from_be_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        let kind = String::from_utf8_lossy(&bytes[offset + 4..offset + 8]).into_owned();
        let size = match size32 {
            0 => bytes.len() - offset,
            1 => u64::from_be_bytes(bytes[offset + 8..offset + 16].try_into().expect("8 bytes")) as usize,
            size => size,
        };
        atoms.push(kind);
        if size < 8 {
            break;
        }
        offset += size;
    }
    atoms
}

/// Decoded frames (RGB, `width * 3` bytes per row) of a video, every `step`-th one, decoded by the
/// ffmpeg CLI (which applies rotation tags), optionally scaled to `scale_to`.
pub fn rgb_frames(path: &Path, step: u32, scale_to: Option<(u32, u32)>) -> (u32, u32, Vec<Vec<u8>>) {
    let (width, height) = match scale_to {
        Some(size) => size,
        None => {
            let probe = ffprobe(path);
            let video = stream(&probe, "video").expect("a video stream");
            let (w, h) = (
                video["width"].as_u64().expect("width") as u32,
                video["height"].as_u64().expect("height") as u32,
            );
            let rotated = video["side_data_list"].as_array().is_some_and(|list| {
                list.iter().any(|d| d["rotation"].as_i64().is_some_and(|r| r.abs() == 90))
            });
            if rotated {
                (h, w)
            } else {
                (w, h)
            }
        }
    };
    let filter = format!("select='not(mod(n\\,{step}))',scale={width}:{height}");
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-vf", &filter, "-vsync", "0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        output.status.success(),
        "decoding {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let frame_len = (width * height * 3) as usize;
    let frames = output.stdout.chunks_exact(frame_len).map(<[u8]>::to_vec).collect();
    (width, height, frames)
}

/// Every tag of the container and of each stream, as "key=value".
pub fn all_tags(probe: &Value) -> Vec<String> {
    let mut tags = Vec::new();
    let mut collect = |value: &Value| {
        if let Some(map) = value["tags"].as_object() {
            tags.extend(map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    };
    collect(&probe["format"]);
    for stream in probe["streams"].as_array().into_iter().flatten() {
        collect(stream);
    }
    tags
}

/// Cuts a short clip of Megamind (faces, AC3 audio) into `dir`, re-encoded as MPEG-4 part 2 in AVI
/// like the original.
pub fn megamind_clip(dir: &Path, seconds: f64) -> PathBuf {
    let clip = dir.join("megamind.avi");
    let source = test_media("Megamind.avi");
    ffmpeg(&[
        "-i",
        source.to_str().expect("utf-8 path"),
        "-t",
        &seconds.to_string(),
        "-c",
        "copy",
        clip.to_str().expect("utf-8"),
    ]);
    clip
}

/// An eleven-minute video, tiny and at 1 fps, so that it takes a second to make.
pub fn eleven_minute_clip(dir: &Path) -> PathBuf {
    let output = dir.join("long.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=32x32:r=1:d=660",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        path_str(&output),
    ]);
    output
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
