//! Transcoding checked with ffprobe: codecs, size, moov first, orientation, no metadata, VFR.

use std::ops::ControlFlow;
use std::path::Path;

use media_worker::{process, ProcessConfig};

use crate::support::*;

/// Checks what every output MP4 must satisfy and returns its ffprobe JSON.
fn check_publishable_mp4(path: &Path, max_short_side: u64) -> serde_json::Value {
    let probe = ffprobe(path);
    let video = stream(&probe, "video").expect("a video stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["pix_fmt"], "yuv420p");
    let (width, height) =
        (video["width"].as_u64().expect("width"), video["height"].as_u64().expect("height"));
    assert!(width % 2 == 0 && height % 2 == 0, "odd size {width}x{height}");
    assert!(width.min(height) <= max_short_side && width.max(height) <= max_short_side * 16 / 9);
    assert!(video.get("side_data_list").is_none(), "side data left: {video}");
    assert!(video["tags"].get("rotate").is_none());
    if let Some(audio) = stream(&probe, "audio") {
        assert_eq!(audio["codec_name"], "aac");
    }
    let atoms = top_level_atoms(path);
    let moov = atoms.iter().position(|a| a == "moov").expect("a moov atom");
    let mdat = atoms.iter().position(|a| a == "mdat").expect("an mdat atom");
    assert!(moov < mdat, "moov must come before mdat for progressive playback: {atoms:?}");
    for tag in all_tags(&probe) {
        let key = tag.split('=').next().unwrap_or_default().to_lowercase();
        assert!(
            matches!(
                key.as_str(),
                "major_brand"
                    | "minor_version"
                    | "compatible_brands"
                    | "encoder"
                    | "handler_name"
                    | "vendor_id"
                    | "language"
            ),
            "unexpected tag {tag}"
        );
        assert!(
            !tag.contains("Apple") && !tag.contains("iPhone") && !tag.contains("+48."),
            "identifying tag {tag}"
        );
    }
    probe
}

#[test]
fn megamind_becomes_h264_aac_faststart_mp4_with_progress_poster_and_thumbnail() {
    let dir = tempdir();
    let clip = megamind_clip(dir.path(), 4.0);
    let output = dir.path().join("out.mp4");
    let mut fractions = Vec::new();
    let (info, result) = process(&clip, &output, &ProcessConfig::default(), &mut |f| {
        fractions.push(f);
        ControlFlow::Continue(())
    })
    .expect("transcodes");
    assert_eq!(info.video_codec.as_deref(), Some("mpeg4"));
    assert_eq!(info.audio_codec.as_deref(), Some("ac3"));
    let probe = check_publishable_mp4(&output, 720);
    assert!(stream(&probe, "audio").is_some(), "the AC3 track becomes AAC");
    let video = stream(&probe, "video").expect("video");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(720), Some(528)));
    let duration: f64 = probe["format"]["duration"].as_str().expect("duration").parse().expect("a number");
    assert!((duration - 4.0).abs() < 0.3, "duration {duration}");

    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "progress goes forward: {fractions:?}");
    assert_eq!(fractions.last(), Some(&1.0));
    assert!(fractions.len() > 10, "progress is reported along the way: {fractions:?}");

    let poster = image::load_from_memory(&result.poster_jpeg).expect("poster is a JPEG");
    assert_eq!((poster.width(), poster.height()), (720, 528));
    let thumbnail = image::load_from_memory(&result.thumbnail_jpeg).expect("thumbnail is a JPEG");
    assert_eq!(thumbnail.width().max(thumbnail.height()), 320);
}

/// A phone clip: stored landscape 1080p with location, make and model tags and a rotation tag.
/// FFmpeg 5.1's CLI only turns `rotate` into a display matrix when copying streams, hence the two
/// steps.
pub(crate) fn phone_clip(dir: &Path, file_name: &str, rotate_tag: u32) -> std::path::PathBuf {
    let encoded = dir.join(format!("encoded-{file_name}"));
    // A white block in the stored top-left corner shows where the rotation puts it.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=1920x1080:r=30:d=1,drawbox=x=0:y=0:w=480:h=270:color=white:t=fill",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-metadata",
        "location=+48.8566+002.3522/",
        "-metadata",
        "com.apple.quicktime.location.ISO6709=+48.8566+002.3522+035.000/",
        "-metadata",
        "com.apple.quicktime.make=Apple",
        "-metadata",
        "com.apple.quicktime.model=iPhone 12",
        "-metadata",
        "make=Apple",
        "-metadata",
        "model=iPhone 12",
        "-movflags",
        "use_metadata_tags",
        path_str(&encoded),
    ]);
    let clip = dir.join(file_name);
    let tag = format!("rotate={rotate_tag}");
    ffmpeg(&[
        "-i",
        path_str(&encoded),
        "-c",
        "copy",
        "-metadata:s:v:0",
        &tag,
        "-movflags",
        "use_metadata_tags",
        path_str(&clip),
    ]);
    clip
}

/// The clockwise rotation players apply, from ffprobe's counterclockwise `rotation`.
pub(crate) fn ffprobe_clockwise_rotation(probe: &serde_json::Value) -> u32 {
    let video = stream(probe, "video").expect("video");
    let counterclockwise = video["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|d| d["rotation"].as_i64()))
        .expect("the clip has a display matrix");
    (360 - counterclockwise).rem_euclid(360) as u32
}

fn check_phone_clip_is_turned_upright_and_anonymous(file_name: &str, rotate_tag: u32) {
    let dir = tempdir();
    let clip = phone_clip(dir.path(), file_name, rotate_tag);
    let input_probe = ffprobe(&clip);
    assert!(all_tags(&input_probe).iter().any(|t| t.contains("+48.8566")), "the input has a location");
    assert!(all_tags(&input_probe).iter().any(|t| t.contains("iPhone")), "the input names the phone");
    let clockwise = ffprobe_clockwise_rotation(&input_probe);
    let info = media_worker::probe(&clip, &Default::default()).expect("probes");
    assert_eq!(info.rotation, clockwise, "{info:?}");
    assert_eq!(info.display_size(), (1080, 1920));

    let output = dir.path().join("out.mp4");
    process(&clip, &output, &ProcessConfig::default(), &mut |_| ControlFlow::Continue(()))
        .expect("transcodes");
    let probe = check_publishable_mp4(&output, 720);
    let video = stream(&probe, "video").expect("video");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(720), Some(1280)), "portrait 720p");

    // The ffmpeg CLI applies the input's rotation when decoding: both must show the same picture.
    let (w, h, expected) = rgb_frames(&clip, 10, Some((720, 1280)));
    let (_, _, actual) = rgb_frames(&output, 10, Some((720, 1280)));
    let mean = |frame: &[u8], x0: u32, y0: u32| {
        let mut sum = 0u64;
        for y in y0..y0 + 100 {
            for x in x0..x0 + 100 {
                sum += u64::from(frame[((y * w + x) * 3) as usize]);
            }
        }
        sum / 10_000
    };
    for (x0, y0) in [(0, 0), (w - 100, 0), (0, h - 100), (w - 100, h - 100)] {
        let (got, want) = (mean(&actual[0], x0, y0), mean(&expected[0], x0, y0));
        assert!(got.abs_diff(want) < 30, "corner ({x0},{y0}): {got} vs {want}");
    }
    // Turned clockwise, the stored top-left corner is displayed top-right; counterclockwise,
    // bottom-left.
    let (x0, y0) = if clockwise == 90 { (w - 100, 0) } else { (0, h - 100) };
    assert!(mean(&actual[0], x0, y0) > 200, "the stored top-left corner is displayed at ({x0},{y0})");
    assert!(mean(&actual[0], w - 100 - x0, h - 100 - y0) < 50);
}

#[test]
fn phone_clip_held_upright_is_turned_and_loses_location_and_device() {
    check_phone_clip_is_turned_upright_and_anonymous("phone.mov", 90);
}

#[test]
fn phone_clip_held_the_other_way_is_turned_too() {
    check_phone_clip_is_turned_upright_and_anonymous("phone.mp4", 270);
}

#[test]
fn variable_frame_rate_timestamps_are_kept() {
    let dir = tempdir();
    let clip = dir.path().join("vfr.mp4");
    // 30 fps for the first second, then 10 fps for the next one, as phones do in low light.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=30:d=2",
        "-vf",
        "select='lt(n\\,30)+not(mod(n\\,3))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        path_str(&clip),
    ]);
    let input_times = frame_times(&clip);
    assert_eq!(input_times.len(), 40);
    let output = dir.path().join("out.mp4");
    process(&clip, &output, &ProcessConfig::default(), &mut |_| ControlFlow::Continue(()))
        .expect("transcodes");
    check_publishable_mp4(&output, 720);
    let output_times = frame_times(&output);
    assert_eq!(output_times.len(), input_times.len());
    let offset = output_times[0] - input_times[0];
    for (got, want) in output_times.iter().zip(&input_times) {
        assert!((got - offset - want).abs() < 0.002, "frame at {got} s, expected {want} s");
    }
}

#[test]
fn hevc_input_becomes_h264() {
    if !has_encoder("libx265") {
        // The HEVC *decoder* is always there; only making the input needs libx265.
        eprintln!("libx265 encoder missing: HEVC input not generated, test not run");
        return;
    }
    let dir = tempdir();
    let clip = dir.path().join("hevc.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=1920x1080:r=30:d=1",
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-tag:v",
        "hvc1",
        path_str(&clip),
    ]);
    let info = media_worker::probe(&clip, &Default::default()).expect("probes");
    assert_eq!(info.video_codec.as_deref(), Some("hevc"));
    let output = dir.path().join("out.mp4");
    process(&clip, &output, &ProcessConfig::default(), &mut |_| ControlFlow::Continue(()))
        .expect("transcodes");
    let probe = check_publishable_mp4(&output, 720);
    let video = stream(&probe, "video").expect("video");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(1280), Some(720)));
}

#[test]
fn max_height_is_configurable() {
    let dir = tempdir();
    let clip = dir.path().join("src.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=1280x720:r=25:d=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        path_str(&clip),
    ]);
    let mut config = ProcessConfig::default();
    config.video.max_height = 360;
    let output = dir.path().join("out.mp4");
    let (_, result) =
        process(&clip, &output, &config, &mut |_| ControlFlow::Continue(())).expect("transcodes");
    assert_eq!((result.width, result.height), (640, 360));
    check_publishable_mp4(&output, 360);
}

#[test]
fn a_cancelled_job_stops_and_leaves_no_output() {
    let dir = tempdir();
    let clip = megamind_clip(dir.path(), 2.0);
    let output = dir.path().join("out.mp4");
    let mut n_reports = 0;
    let err = process(&clip, &output, &ProcessConfig::default(), &mut |_| {
        n_reports += 1;
        if n_reports == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .expect_err("stopped");
    assert!(matches!(err, media_worker::MediaError::Cancelled), "{err}");
    assert_eq!(n_reports, 3);
    assert!(!output.exists());
}
