use std::time::{Duration, Instant};

use super::*;

#[test]
fn resuming_video_bumps_generation_and_asks_for_a_keyframe() {
    let t0 = Instant::now();
    let mut buffer = Buffer::new(MediaKind::Video, TrackSource::Camera, Duration::from_secs(1), 2);
    assert!(buffer.is_forwarding());
    buffer.set_forwarding(false);
    assert_eq!(buffer.generation(), 0);
    assert!(!buffer.poll_keyframe_request(0, t0), "pausing asks for nothing");
    buffer.set_forwarding(true);
    assert_eq!(buffer.generation(), 1);
    assert_eq!(buffer.due_keyframe_requests(t0).collect::<Vec<_>>(), [0, 1], "every layer");
    assert!(buffer.poll_keyframe_request(0, t0));
    assert!(buffer.poll_keyframe_request(1, t0));
    // Turning on what is already on changes nothing.
    buffer.set_forwarding(true);
    assert_eq!(buffer.generation(), 1);
}

#[test]
fn audio_never_asks_for_keyframes() {
    let t0 = Instant::now();
    let mut buffer = Buffer::new(MediaKind::Audio, TrackSource::Microphone, Duration::from_secs(1), 1);
    buffer.request_keyframe(0);
    buffer.set_forwarding(false);
    buffer.set_forwarding(true);
    assert!(!buffer.poll_keyframe_request(0, t0));
    assert_eq!(buffer.generation(), 1);
}

#[test]
fn layers_ask_for_keyframes_each_on_its_own() {
    let t0 = Instant::now();
    let mut buffer = Buffer::new(MediaKind::Video, TrackSource::Camera, Duration::from_secs(1), 1);
    let high = buffer.add_layer();
    assert_eq!((high, buffer.n_layers()), (1, 2));
    buffer.request_keyframe(high);
    assert_eq!(buffer.due_keyframe_requests(t0).collect::<Vec<_>>(), [1]);
    assert!(!buffer.poll_keyframe_request(0, t0));
    assert!(buffer.poll_keyframe_request(1, t0));
    // Throttled: the next one for that layer waits for the interval.
    buffer.request_keyframe(high);
    assert!(!buffer.poll_keyframe_request(1, t0 + Duration::from_millis(500)));
    assert!(buffer.poll_keyframe_request(1, t0 + Duration::from_secs(1)));
    assert!(!buffer.poll_keyframe_request(7, t0), "no such layer");
}
