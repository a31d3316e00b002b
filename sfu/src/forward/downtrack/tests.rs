use std::time::{Duration, Instant};

use super::*;

fn packet(t0: Instant, seq_no: u64, keyframe_start: bool) -> PacketView {
    PacketView {
        seq_no,
        timestamp: (seq_no as u32) * 3000,
        ssrc: 1111,
        marker: false,
        keyframe_start,
        arrival: t0 + Duration::from_millis(seq_no * 33),
    }
}

fn check(track: &mut DownTrack, input: PacketView, generation: u32, expected: Option<u64>) {
    let decision = track.forward(&input, generation);
    match expected {
        Some(seq_no) => assert!(
            matches!(decision, Decision::Forward { seq_no: got, .. } if got == seq_no),
            "packet {} expected out {seq_no}, got {decision:?}",
            input.seq_no
        ),
        None => assert!(
            matches!(decision, Decision::Drop(_)),
            "packet {} expected drop, got {decision:?}",
            input.seq_no
        ),
    }
}

#[test]
fn new_video_subscriber_waits_for_keyframe() {
    let t0 = Instant::now();
    let mut track = DownTrack::new(MediaKind::Video, 0);
    check(&mut track, packet(t0, 70_000, false), 0, None);
    check(&mut track, packet(t0, 70_001, false), 0, None);
    // Starts at the keyframe, below 2^16 so that no rollover counter needs signalling.
    check(&mut track, packet(t0, 70_002, true), 0, Some(70_002 & 0xffff));
    check(&mut track, packet(t0, 70_003, false), 0, Some((70_002 & 0xffff) + 1));
    // Network loss keeps its hole, so that the subscriber NACKs it...
    check(&mut track, packet(t0, 70_005, false), 0, Some((70_002 & 0xffff) + 3));
    // ...and the retransmission fills it.
    check(&mut track, packet(t0, 70_004, false), 0, Some((70_002 & 0xffff) + 2));
}

#[test]
fn audio_starts_at_once() {
    let t0 = Instant::now();
    let mut track = DownTrack::new(MediaKind::Audio, 0);
    check(&mut track, packet(t0, 10, false), 0, Some(10));
    check(&mut track, packet(t0, 11, false), 0, Some(11));
}

#[test]
fn pause_leaves_no_hole_and_video_resumes_on_keyframe() {
    let t0 = Instant::now();
    let mut track = DownTrack::new(MediaKind::Video, 0);
    check(&mut track, packet(t0, 100, true), 0, Some(100));
    check(&mut track, packet(t0, 101, false), 0, Some(101));
    // Packets 102..=199 were not forwarded (camera off); generation 1 is the resume.
    check(&mut track, packet(t0, 200, false), 1, None);
    check(&mut track, packet(t0, 201, true), 1, Some(102));
    check(&mut track, packet(t0, 202, false), 1, Some(103));
    // A straggler from before the pause would collide with numbers already used.
    check(&mut track, packet(t0, 150, false), 1, None);
}

#[test]
fn audio_resumes_after_mute_with_continuous_numbers_and_real_timestamps() {
    let t0 = Instant::now();
    let mut track = DownTrack::new(MediaKind::Audio, 0);
    check(&mut track, packet(t0, 5, false), 0, Some(5));
    let resumed = packet(t0, 500, false);
    assert_eq!(track.forward(&resumed, 1), Decision::Forward { seq_no: 6, timestamp: resumed.timestamp });
}

#[test]
fn ssrc_change_rebases_timestamps_by_elapsed_time() {
    let t0 = Instant::now();
    let mut track = DownTrack::new(MediaKind::Audio, 0);
    let first = PacketView {
        seq_no: 10,
        timestamp: 1000,
        ssrc: 1,
        marker: false,
        keyframe_start: false,
        arrival: t0,
    };
    assert_eq!(track.forward(&first, 0), Decision::Forward { seq_no: 10, timestamp: 1000 });
    let switched = PacketView {
        seq_no: 40_000,
        timestamp: 7,
        ssrc: 2,
        marker: false,
        keyframe_start: false,
        arrival: t0 + Duration::from_millis(20),
    };
    // 20 ms at 48 kHz is 960 ticks.
    assert_eq!(track.forward(&switched, 0), Decision::Forward { seq_no: 11, timestamp: 1960 });
}
