//! The `media-worker` binary, run as a user would.

use std::process::Command;

use crate::support::*;

fn media_worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_media-worker"))
}

#[test]
fn process_blurs_a_photo_and_writes_a_thumbnail() {
    let dir = tempdir();
    let output = dir.path().join("astronaut.jpg");
    let status = media_worker()
        .args(["process", path_str(&test_media("astronaut.png")), path_str(&output), "--blur"])
        .args(["--model", path_str(&face_model())])
        .status()
        .expect("runs");
    assert!(status.success());
    assert!(image::open(&output).is_ok());
    assert!(image::open(dir.path().join("astronaut.thumb.jpg")).is_ok());
}

#[test]
fn process_transcodes_a_video_with_poster() {
    let dir = tempdir();
    let clip = megamind_clip(dir.path(), 1.0);
    let output = dir.path().join("out.mp4");
    let status = media_worker()
        .args(["process", path_str(&clip), path_str(&output), "--max-height", "360"])
        .status()
        .expect("runs");
    assert!(status.success());
    let probe = ffprobe(&output);
    let video = stream(&probe, "video").expect("video");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(490), Some(360)));
    assert!(image::open(dir.path().join("out.poster.jpg")).is_ok());
}

#[test]
fn refusals_exit_non_zero_with_the_error_code() {
    let dir = tempdir();
    let input = eleven_minute_clip(dir.path());
    let output = media_worker()
        .args(["process", path_str(&input), path_str(&dir.path().join("out.mp4"))])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("video_too_long"), "{stderr}");
}

#[test]
fn probe_prints_json() {
    let output = media_worker().args(["probe", path_str(&test_media("vtest.avi"))]).output().expect("runs");
    assert!(output.status.success());
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(info["kind"], "video");
    assert_eq!(info["width"], 768);
}

/// The Kubernetes manifest of the workers sets only variables `media-worker work` reads.
#[test]
fn work_reads_the_variables_its_manifest_sets() {
    let help = Command::new(env!("CARGO_BIN_EXE_media-worker")).args(["work", "--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/overlays/cluster/media-worker.yaml");
    let manifest = std::fs::read_to_string(manifest).unwrap();
    let vars: Vec<&str> =
        manifest.lines().filter_map(|line| line.trim().strip_prefix("- name: KLASS_")).collect();
    assert!(vars.len() >= 3);
    for var in vars {
        assert!(
            help.contains(&format!("env: KLASS_{var}")),
            "KLASS_{var} is not read by `media-worker work`:\n{help}"
        );
    }
}
