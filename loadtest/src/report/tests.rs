use super::*;
use crate::timeline::{Arrival, SlotChange};

const A_AUDIO: u32 = 100;
const A_VIDEO: u32 = 200;
const B_AUDIO: u32 = 300;

fn every(step: Ms, from: Ms, to: Ms) -> Vec<Ms> {
    (from..to).step_by(step as usize).collect()
}

fn change(at: Ms, slot_idx: usize, who: Option<(&str, u32)>) -> SlotChange {
    SlotChange { at, slot_idx, participant_id: who.map(|(id, _)| id.to_owned()), csrc: who.map(|(_, c)| c) }
}

/// A receiver (0) with an audio slot and a thumbnail; A (1) speaks and has a camera, B (2)
/// speaks. Each sends from 0 to 2000 ms.
fn call(receiver_changes: Vec<SlotChange>, arrivals: Vec<Arrival>) -> Vec<ClientReport> {
    let receiver = ClientReport {
        participant_id: Some("r".into()),
        slot_kinds: vec![SlotKind::Audio, SlotKind::Thumbnail],
        slot_changes: receiver_changes,
        arrivals,
        ..ClientReport::default()
    };
    let a = ClientReport {
        participant_id: Some("a".into()),
        audio_ssrc: Some(A_AUDIO),
        video_ssrc: Some(A_VIDEO),
        sent: SendLog {
            audio: every(20, 0, 2000),
            video: every(50, 0, 2000),
            keyframes: vec![0, 1000],
            talkspurts: vec![0],
        },
        ..ClientReport::default()
    };
    let b = ClientReport {
        participant_id: Some("b".into()),
        audio_ssrc: Some(B_AUDIO),
        sent: SendLog { audio: every(20, 0, 2000), ..SendLog::default() },
        ..ClientReport::default()
    };
    vec![receiver, a, b]
}

/// Packets sent by a publisher from `from` to `to` (ms) every `step`, arriving on `slot_idx`.
fn arrivals(slot_idx: u16, csrc: u32, step: Ms, from: Ms, to: Ms) -> Vec<Arrival> {
    (from / step..to.div_ceil(step)).map(|counter| Arrival { slot_idx, csrc, counter }).collect()
}

const RULES: DeliveryRules =
    DeliveryRules { window: (0, 2000), switch_guard: 100, keyframe_lookback: 50, count_video: true };

fn check(changes: Vec<SlotChange>, arrived: Vec<Arrival>, expected: Delivery) -> Vec<Ms> {
    let reports = call(changes, arrived);
    let mut missing = Vec::new();
    assert_eq!(delivery(&reports[0], &Publishers::new(&reports), RULES, &mut missing), expected);
    missing
}

#[test]
fn a_slot_counts_its_publisher_while_announced() {
    let changes = vec![
        change(500, 0, Some(("a", A_AUDIO))),
        change(1500, 0, Some(("b", B_AUDIO))),
        // An empty thumbnail filled at 300: counted from A's next keyframe, at 1000.
        change(300, 1, Some(("a", A_VIDEO))),
    ];
    let mut arrived = arrivals(0, A_AUDIO, 20, 300, 1500);
    // Two of A's audio packets lost while announced, a duplicate that counts once.
    arrived.retain(|a| a.counter != 30 && a.counter != 31);
    arrived.push(Arrival { slot_idx: 0, csrc: A_AUDIO, counter: 40 });
    arrived.extend(arrivals(0, B_AUDIO, 20, 1500, 2000));
    arrived.extend(arrivals(1, A_VIDEO, 50, 1000, 2000));
    // A's audio sent in 500..1400 (the guard before B): 45, of which 43 arrived; B's in
    // 1500..2000: 25; A's video in 1000..2000: 20.
    let missing = check(
        changes,
        arrived,
        Delivery {
            audio_expected: 70,
            audio_arrived: 68,
            video_expected: 20,
            video_arrived: 20,
            bad_announcements: 0,
        },
    );
    assert_eq!(missing, vec![600, 620]);
}

#[test]
fn packets_on_the_wrong_slot_or_with_the_wrong_csrc_do_not_count() {
    let changes = vec![change(0, 0, Some(("a", A_AUDIO)))];
    let mut arrived = arrivals(1, A_AUDIO, 20, 0, 2000);
    arrived.extend(arrivals(0, B_AUDIO, 20, 0, 2000));
    let missing = check(changes, arrived, Delivery { audio_expected: 100, ..Delivery::default() });
    assert_eq!(missing.len(), 100);
}

#[test]
fn an_emptied_slot_expects_nothing_and_a_bad_announcement_is_noticed() {
    let changes = vec![
        change(0, 0, Some(("a", A_AUDIO))),
        change(1000, 0, None),
        // Announced as B with A's SSRC.
        change(0, 1, Some(("b", A_VIDEO))),
        // One of ours under an SSRC it does not send: wrong.
        change(1000, 1, Some(("a", 999))),
        // Someone not ours (a browser in the same call): not ours to count.
        change(1500, 1, Some(("a-browser", 998))),
    ];
    let arrived = arrivals(0, A_AUDIO, 20, 0, 1000);
    // A's audio in 0..900: 45 packets; the thumbnail counts A's video from its keyframe at 0 to
    // the guard at 900: 18, none arrived.
    let _ = check(
        changes,
        arrived,
        Delivery {
            audio_expected: 45,
            audio_arrived: 45,
            video_expected: 18,
            video_arrived: 0,
            bad_announcements: 2,
        },
    );
}

#[test]
fn only_the_window_counts() {
    let reports = call(vec![change(0, 0, Some(("a", A_AUDIO)))], arrivals(0, A_AUDIO, 20, 0, 2000));
    let rules = DeliveryRules { window: (1000, 1500), ..RULES };
    let got = delivery(&reports[0], &Publishers::new(&reports), rules, &mut Vec::new());
    assert_eq!((got.audio_expected, got.audio_arrived), (25, 25));
}

#[test]
fn switch_latency_runs_from_the_first_voiced_packet_to_each_receivers_messages() {
    let mut reports = call(vec![change(4600, 0, Some(("b", B_AUDIO)))], Vec::new());
    reports[0].admitted = Some(0);
    reports[0].speakers = vec![(100, vec!["a".into()]), (4400, vec!["b".into()])];
    // A already has B in a slot and listed when B starts: nothing to measure.
    reports[1].admitted = Some(0);
    reports[1].slot_kinds = vec![SlotKind::Audio];
    reports[1].slot_changes = vec![change(3000, 0, Some(("b", B_AUDIO)))];
    reports[1].speakers = vec![(3000, vec!["b".into()])];
    reports[2].admitted = Some(0);
    reports[2].sent.talkspurts = vec![10, 4005];
    let turns = vec![Turn { start: 4000, end: 8000, new_speakers: vec![2] }];
    let got = switch_latencies(&reports, &turns);
    assert_eq!(
        got,
        SwitchLatencies {
            slots: vec![595.0],
            slots_missed: vec![],
            speakers: vec![395.0],
            speakers_missed: vec![]
        }
    );

    // Within the turn or never.
    let turns = vec![Turn { start: 4000, end: 4500, new_speakers: vec![2] }];
    let got = switch_latencies(&reports, &turns);
    assert_eq!(
        got,
        SwitchLatencies {
            slots: vec![],
            slots_missed: vec![(2, 0)],
            speakers: vec![395.0],
            speakers_missed: vec![]
        }
    );
}

#[test]
fn percentiles() {
    assert_eq!(percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.5), 3.0);
    assert_eq!(percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 1.0), 5.0);
    assert!(percentile(&[], 0.5).is_nan());
}
