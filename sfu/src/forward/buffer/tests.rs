use std::time::{Duration, Instant};

use super::*;

#[test]
fn resuming_video_bumps_generation_and_asks_for_a_keyframe() {
    let t0 = Instant::now();
    let mut buffer = Buffer::new(MediaKind::Video, TrackSource::Camera, Duration::from_secs(1));
    assert!(buffer.is_forwarding());
    buffer.set_forwarding(false);
    assert_eq!(buffer.generation(), 0);
    assert!(!buffer.poll_keyframe_request(t0), "pausing asks for nothing");
    buffer.set_forwarding(true);
    assert_eq!(buffer.generation(), 1);
    assert!(buffer.poll_keyframe_request(t0));
    // Turning on what is already on changes nothing.
    buffer.set_forwarding(true);
    assert_eq!(buffer.generation(), 1);
}

#[test]
fn audio_never_asks_for_keyframes() {
    let t0 = Instant::now();
    let mut buffer = Buffer::new(MediaKind::Audio, TrackSource::Microphone, Duration::from_secs(1));
    buffer.request_keyframe();
    buffer.set_forwarding(false);
    buffer.set_forwarding(true);
    assert!(!buffer.poll_keyframe_request(t0));
    assert_eq!(buffer.generation(), 1);
}
