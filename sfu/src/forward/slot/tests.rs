use std::time::{Duration, Instant};

use super::*;

/// A packet of publisher `ssrc`, `ms` after `t0`; 30 fps video or 20 ms audio timestamps.
fn packet(t0: Instant, ssrc: u32, seq_no: u64, ms: u64, keyframe_start: bool) -> PacketView {
    PacketView {
        seq_no,
        timestamp: 1_000_000u32.wrapping_mul(ssrc).wrapping_add((ms * 90) as u32),
        ssrc,
        marker: false,
        keyframe_start,
        arrival: t0 + Duration::from_millis(ms),
    }
}

fn forwarded(decision: SlotDecision) -> (u64, u32, bool) {
    match decision {
        SlotDecision::Forward { seq_no, timestamp, switched } => (seq_no, timestamp, switched),
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn a_video_slot_switches_publisher_only_at_the_new_ones_keyframe() {
    let t0 = Instant::now();
    let mut slot: SlotForwarder<u32> = SlotForwarder::new(MediaKind::Video);
    // Empty slot, first publisher: shown (and announced) from its first keyframe.
    assert!(!slot.assign(Some(1), 0), "nothing to show before a keyframe");
    assert_eq!(slot.current(), None);
    assert_eq!(
        slot.forward(1, &packet(t0, 11, 500, 0, false), 0),
        SlotDecision::Drop(DropReason::WaitingForKeyframe)
    );
    assert!(slot.waits_for_keyframe_of(1));
    let (first, _, switched) = forwarded(slot.forward(1, &packet(t0, 11, 501, 33, true), 0));
    assert!(switched, "the slot shows publisher 1 from this packet");
    assert_eq!(forwarded(slot.forward(1, &packet(t0, 11, 502, 66, false), 0)).0, first + 1);

    // The allocation moves the slot to publisher 2: 1 goes on until 2 sends a keyframe.
    assert!(!slot.assign(Some(2), 0), "nothing changes for the receiver yet");
    assert_eq!(slot.target(), Some(2));
    assert_eq!(slot.listening(), [1, 2], "packets of both reach the slot until the switch");
    assert!(slot.waits_for_keyframe_of(2));
    assert_eq!(
        slot.forward(2, &packet(t0, 22, 9_000, 80, false), 0),
        SlotDecision::Drop(DropReason::WaitingForKeyframe)
    );
    let (seq, ts_before, _) = forwarded(slot.forward(1, &packet(t0, 11, 503, 100, false), 0));
    assert_eq!(seq, first + 2);
    // 2's keyframe: the switch, with numbers that continue the slot's.
    let (seq, ts, switched) = forwarded(slot.forward(2, &packet(t0, 22, 9_001, 133, true), 0));
    assert!(switched);
    assert_eq!(seq, first + 3, "no hole and no jump in sequence numbers");
    assert_eq!(ts.wrapping_sub(ts_before), 33 * 90, "timestamps advance by the wall-clock time");
    assert_eq!(slot.current(), Some(2));
    assert_eq!(slot.listening(), [2]);
    // 1's late packets no longer reach the receiver; 2's go on.
    assert_eq!(slot.forward(1, &packet(t0, 11, 504, 140, false), 0), SlotDecision::NotHere);
    let (next, _, switched) = forwarded(slot.forward(2, &packet(t0, 22, 9_002, 166, false), 0));
    assert_eq!((next, switched), (first + 4, false));
}

#[test]
fn publishers_with_the_same_ssrc_still_get_their_own_timestamp_origin() {
    let t0 = Instant::now();
    let mut slot: SlotForwarder<u32> = SlotForwarder::new(MediaKind::Audio);
    slot.assign(Some(1), 0);
    let a = PacketView {
        seq_no: 10,
        timestamp: 5_000,
        ssrc: 7,
        marker: false,
        keyframe_start: false,
        arrival: t0,
    };
    let (_, ts_a, _) = forwarded(slot.forward(1, &a, 0));
    // Audio switches at once; the other publisher's clock is far off, its SSRC the same.
    assert!(slot.assign(Some(2), 0));
    let b = PacketView {
        seq_no: 40_000,
        timestamp: 3_000_000_000,
        ssrc: 7,
        marker: false,
        keyframe_start: false,
        arrival: t0 + Duration::from_millis(20),
    };
    let (seq, ts_b, switched) = forwarded(slot.forward(2, &b, 0));
    assert!(!switched, "audio switched when assigned, not at a packet");
    assert_eq!(seq, 11);
    assert_eq!(ts_b.wrapping_sub(ts_a), 20 * 48, "audio runs at 48 kHz");
}

#[test]
fn emptying_a_slot_stops_it_and_refilling_waits_for_a_keyframe() {
    let t0 = Instant::now();
    let mut slot: SlotForwarder<u32> = SlotForwarder::new(MediaKind::Video);
    slot.assign(Some(1), 0);
    forwarded(slot.forward(1, &packet(t0, 11, 1, 0, true), 0));
    assert!(slot.assign(None, 0));
    assert_eq!(slot.forward(1, &packet(t0, 11, 2, 33, false), 0), SlotDecision::NotHere);
    assert!(!slot.assign(Some(1), 0));
    assert_eq!(
        slot.forward(1, &packet(t0, 11, 3, 66, false), 0),
        SlotDecision::Drop(DropReason::WaitingForKeyframe)
    );
    let (seq, _, _) = forwarded(slot.forward(1, &packet(t0, 11, 4, 100, true), 0));
    assert_eq!(seq, 2, "the receiver sees no gap across the empty time");
    // Pointing a slot at what it already shows cancels a pending switch.
    slot.assign(Some(2), 0);
    assert_eq!(slot.pending(), Some(2));
    assert!(!slot.assign(Some(1), 0));
    assert_eq!(slot.pending(), None);
}
