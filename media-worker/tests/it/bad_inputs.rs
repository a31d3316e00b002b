//! Each bad input is refused with its own error, from the headers when possible, and leaves no
//! output behind.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use media_worker::{probe, process, MediaError, ProbeLimits, ProcessConfig};

use crate::support::*;

fn check_refused(input: &Path, expected_code: &str) -> MediaError {
    let output = input.with_extension("out");
    let err = process(input, &output, &ProcessConfig::default(), &mut |_| ControlFlow::Continue(()))
        .expect_err("refused");
    assert_eq!(err.code(), expected_code, "{err}");
    assert!(err.is_input_error(), "{err} is the input's fault");
    assert!(!output.exists(), "nothing is left at {}", output.display());
    err
}

fn small_mp4(dir: &Path, name: &str, faststart: bool) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut args =
        vec!["-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=4", "-c:v", "libx264", "-preset", "ultrafast"];
    if faststart {
        args.extend(["-movflags", "+faststart"]);
    }
    args.push(path_str(&path));
    ffmpeg(&args);
    path
}

fn truncate(path: &Path, fraction: f64) {
    let bytes = std::fs::read(path).expect("read");
    std::fs::write(path, &bytes[..(bytes.len() as f64 * fraction) as usize]).expect("write");
}

#[test]
fn empty_file_is_corrupt() {
    let dir = tempdir();
    let input = dir.path().join("empty.mp4");
    std::fs::write(&input, b"").expect("write");
    check_refused(&input, "corrupt_media");
}

#[test]
fn text_file_is_unsupported() {
    let dir = tempdir();
    let input = dir.path().join("notes.mp4");
    std::fs::write(&input, "these are not the pixels you are looking for\n".repeat(100)).expect("write");
    check_refused(&input, "unsupported_media");
}

#[test]
fn audio_only_file_is_unsupported() {
    let dir = tempdir();
    let input = dir.path().join("song.m4a");
    ffmpeg(&["-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", path_str(&input)]);
    let err = check_refused(&input, "unsupported_media");
    assert!(err.to_string().contains("no video stream"), "{err}");
}

#[test]
fn garbage_after_an_mp4_signature_is_corrupt() {
    let dir = tempdir();
    let input = dir.path().join("broken.mp4");
    let mut bytes = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    bytes.extend((0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&input, bytes).expect("write");
    check_refused(&input, "corrupt_media");
}

#[test]
fn truncated_mp4_without_its_index_is_corrupt() {
    let dir = tempdir();
    // The index (moov) is written last without faststart: cutting the file loses it.
    let input = small_mp4(dir.path(), "cut.mp4", false);
    truncate(&input, 0.6);
    check_refused(&input, "corrupt_media");
}

#[test]
fn truncated_faststart_mp4_is_corrupt() {
    let dir = tempdir();
    // The index survives at the front; the frames stop halfway through the declared duration.
    let input = small_mp4(dir.path(), "cut.mp4", true);
    truncate(&input, 0.5);
    let err = check_refused(&input, "corrupt_media");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn truncated_png_is_corrupt() {
    let dir = tempdir();
    let input = dir.path().join("cut.png");
    std::fs::copy(test_media("astronaut.png"), &input).expect("copy");
    truncate(&input, 0.5);
    check_refused(&input, "corrupt_media");
}

#[test]
fn eleven_minute_video_is_too_long() {
    let dir = tempdir();
    let input = eleven_minute_clip(dir.path());
    let err = check_refused(&input, "video_too_long");
    match err {
        MediaError::TooLong { actual, limit } => {
            assert!((actual.as_secs_f64() - 660.0).abs() < 2.0, "{actual:?}");
            assert_eq!(limit, Duration::from_secs(600));
        }
        other => panic!("{other}"),
    }
    // The limit is a parameter.
    let limits = ProbeLimits { max_duration: Duration::from_secs(12 * 60), ..ProbeLimits::default() };
    let info = probe(&input, &limits).expect("accepted under a 12-minute limit");
    assert!(info.duration.is_some_and(|d| d > Duration::from_secs(600)));
}

/// A PNG whose header declares `width` x `height` followed by a tiny, incomplete image body.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut bytes = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&crc32(&body).to_be_bytes());
        bytes
    }
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // A zlib stream of a few zero bytes: nowhere near the 2.7 GB the header announces.
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn huge_png_is_refused_from_its_header() {
    let dir = tempdir();
    let input = dir.path().join("huge.png");
    std::fs::write(&input, png_header_only(30_000, 30_000)).expect("write");
    let started = Instant::now();
    let err = check_refused(&input, "media_too_large");
    assert!(matches!(err, MediaError::TooLarge { width: 30_000, height: 30_000, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused without decoding");
}
