use super::*;

fn check_size(input: (u32, u32), sar: f64, max_height: u32, expected: (u32, u32)) {
    assert_eq!(output_size(input.0, input.1, sar, max_height), expected, "{input:?} sar {sar}");
}

#[test]
fn output_fits_the_box_whichever_way_it_is_held() {
    check_size((1920, 1080), 1.0, 720, (1280, 720));
    check_size((1080, 1920), 1.0, 720, (720, 1280));
    check_size((3840, 2160), 1.0, 720, (1280, 720));
    check_size((768, 576), 1.0, 720, (768, 576));
    check_size((1920, 1080), 1.0, 480, (852, 480));
}

#[test]
fn output_sides_are_even_and_keep_the_aspect_ratio() {
    check_size((721, 405), 1.0, 720, (720, 404));
    check_size((1440, 1080), 1.0, 720, (960, 720));
    // Anamorphic DVD: 720x576 stored, 16:9 displayed.
    check_size((720, 576), 64.0 / 45.0, 720, (1024, 576));
    check_size((1, 1), 1.0, 720, (2, 2));
}

#[test]
fn rotations_become_filters() {
    assert_eq!(rotation_filter(0), None);
    assert_eq!(rotation_filter(90), Some("transpose=clock"));
    assert_eq!(rotation_filter(180), Some("hflip,vflip"));
    assert_eq!(rotation_filter(270), Some("transpose=cclock"));
}

fn info(duration_s: f64) -> MediaInfo {
    MediaInfo {
        kind: probe::MediaKind::Video,
        format: "mp4".into(),
        width: 640,
        height: 360,
        rotation: 0,
        duration: Some(std::time::Duration::from_secs_f64(duration_s)),
        video_codec: None,
        audio_codec: None,
        frame_rate: None,
    }
}

#[test]
fn a_video_that_stops_early_is_truncated() {
    assert!(check_not_truncated(&info(10.0), 9.9).is_ok());
    assert!(check_not_truncated(&info(1.0), 0.0).is_ok());
    assert_eq!(check_not_truncated(&info(10.0), 4.0).map_err(|e| e.code()), Err("corrupt_media"));
}
