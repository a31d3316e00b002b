use super::*;

/// The SFU's rule (`sfu::forward::keyframe::is_keyframe_start` for VP8 is str0m's detector):
/// the first packet of a frame (S=1, PID=0), past the descriptor's optional fields, a VP8
/// payload header whose P bit is 0.
fn sfu_sees_keyframe_start(payload: &[u8]) -> bool {
    str0m::format::detect_vp8_keyframe(payload)
}

fn check_frame(keyframe: bool, frame_len: usize, expected_packets: usize) {
    let payloads = packetize_vp8(0x1234, keyframe, frame_len, 7);
    assert_eq!(payloads.len(), expected_packets);
    for (idx, payload) in payloads.iter().enumerate() {
        assert!(payload.len() <= MAX_VIDEO_PAYLOAD);
        assert_eq!(read_counter(payload), Some(7 + idx as u32));
        // Only the first packet starts a keyframe; no packet of a delta frame does.
        assert_eq!(sfu_sees_keyframe_start(payload), keyframe && idx == 0, "packet {idx}");
        assert_eq!(payload[0] & 0x10 != 0, idx == 0, "S bit of packet {idx}");
        assert_eq!(payload[0] & 0x07, 0, "PID of packet {idx}");
    }
}

#[test]
fn keyframes_and_delta_frames_are_told_apart_as_the_sfu_does() {
    check_frame(true, 30_000, 28);
    check_frame(true, 20_000, 19);
    check_frame(false, 1500, 2);
    check_frame(false, 1000, 1);
}

#[test]
fn video_keyframes_come_every_three_seconds_and_on_request() {
    let t0 = Instant::now();
    let mut video = VideoSource::new(t0, 3);
    let mut keyframes = Vec::new();
    let mut n_frames = 0;
    let mut at = t0;
    while at < t0 + Duration::from_secs(7) {
        if let Some(frame) = video.poll(at, Some) {
            n_frames += 1;
            assert!(frame.packets.last().is_some_and(|p| p.marker));
            assert_eq!(frame.packets.iter().filter(|p| p.marker).count(), 1);
            if frame.keyframe {
                keyframes.push((at - t0).as_millis());
            }
        }
        if at == t0 + Duration::from_millis(4000) {
            video.request_keyframe();
        }
        at = video.next_at();
    }
    assert_eq!(n_frames, 140);
    assert_eq!(keyframes, vec![0, 3000, 4050]);
}

#[test]
fn silent_audio_is_dtx_and_speech_has_a_level() {
    let t0 = Instant::now();
    let mut audio = AudioSource::new(t0, 5);
    let mut sent = Vec::new();
    let mut at = t0;
    // Silent for one second, then speaking for one.
    while at < t0 + Duration::from_secs(2) {
        let speaking = at >= t0 + Duration::from_secs(1);
        if let Some(packet) = audio.poll(at, speaking) {
            sent.push(((at - t0).as_millis(), packet));
        }
        let next = audio.next_at(speaking);
        let change = t0 + Duration::from_secs(1);
        at = if at < change { next.min(change) } else { next };
    }
    let silent: Vec<_> = sent.iter().filter(|(ms, _)| *ms < 1000).collect();
    assert_eq!(silent.iter().map(|(ms, _)| *ms).collect::<Vec<_>>(), vec![0, 400, 800]);
    assert!(silent.iter().all(|(_, p)| p.level == SILENCE_DBOV && !p.voice && p.payload.len() < 10));
    let speech: Vec<_> = sent.iter().filter(|(ms, _)| *ms >= 1000).collect();
    assert_eq!(speech.len(), 50);
    assert!(speech[0].1.marker && speech[1..].iter().all(|(_, p)| !p.marker));
    assert!(speech
        .iter()
        .all(|(_, p)| p.voice && p.level == SPEECH_DBOV && (80..=120).contains(&p.payload.len())));
    // Timestamps follow the 48 kHz frame clock through the silence.
    assert_eq!(speech[0].1.timestamp.wrapping_sub(sent[0].1.timestamp), 50 * 960);
    let counters: Vec<u32> = sent.iter().filter_map(|(_, p)| read_counter(&p.payload)).collect();
    assert_eq!(counters, (0..sent.len() as u32).collect::<Vec<_>>());
}

#[test]
fn speakers_rotate_through_everyone_from_the_teacher() {
    let t0 = Instant::now();
    let schedule = SpeakerSchedule::rotating(t0, Duration::from_secs(4), 3, 8);
    let speaking =
        |round: u64| (0..8).filter(|idx| schedule.speaks_in_round(*idx, round)).collect::<Vec<_>>();
    assert_eq!(speaking(0), vec![0, 1, 2]);
    assert_eq!(speaking(1), vec![3, 4, 5]);
    assert_eq!(speaking(2), vec![0, 6, 7]);
    assert_eq!(speaking(3), vec![1, 2, 3]);
    assert!(schedule.speaks(4, t0 + Duration::from_millis(4000)));
    assert!(!schedule.speaks(4, t0 + Duration::from_millis(3999)));
    assert_eq!(schedule.next_change(t0 + Duration::from_secs(5)), Some(t0 + Duration::from_secs(8)));
    let fixed = SpeakerSchedule::fixed(1, 6);
    assert!(fixed.speaks(0, t0 + Duration::from_secs(100)) && !fixed.speaks(1, t0));
    assert_eq!(fixed.next_change(t0), None);
}
