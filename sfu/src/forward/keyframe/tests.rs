use std::time::{Duration, Instant};

use super::*;

#[test]
fn keyframe_requests_are_throttled_to_one_per_interval_and_never_lost() {
    let t0 = Instant::now();
    let mut throttle = KeyframeThrottle::new(Duration::from_secs(1));
    assert!(!throttle.poll(t0), "nothing requested");
    throttle.request();
    assert!(throttle.poll(t0));
    assert_eq!(throttle.next_timeout(), None);

    // Three subscribers ask within the second: one request, at the end of the interval.
    throttle.request();
    assert!(!throttle.poll(t0 + Duration::from_millis(100)));
    throttle.request();
    assert!(!throttle.poll(t0 + Duration::from_millis(500)));
    assert_eq!(throttle.next_timeout(), Some(t0 + Duration::from_secs(1)));
    assert!(throttle.poll(t0 + Duration::from_secs(1)));
    assert!(!throttle.poll(t0 + Duration::from_secs(3)), "already sent");
}

#[test]
fn vp8_keyframe_detection() {
    // Payload descriptor: S=1, PID=0, no extension; VP8 header P bit 0 means keyframe.
    assert!(is_keyframe_start(VideoCodec::Vp8, &[0x10, 0x00, 0x9d, 0x01, 0x2a]));
    // P bit 1: interframe.
    assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x10, 0x01, 0x00]));
    // Not the start of a partition.
    assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x00, 0x00, 0x00]));
    // Malformed input is just "not a keyframe".
    assert!(!is_keyframe_start(VideoCodec::Vp8, &[]));
    assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x90]));
}

#[test]
fn h264_keyframe_detection() {
    // Single NAL unit of type 5 (IDR).
    assert!(is_keyframe_start(VideoCodec::H264, &[0x65, 0x88, 0x80]));
    // Type 1: non-IDR slice.
    assert!(!is_keyframe_start(VideoCodec::H264, &[0x41, 0x9a]));
    assert!(!is_keyframe_start(VideoCodec::H264, &[]));
}
