use std::time::{Duration, Instant};

use super::*;

fn simulcast(low_bps: u64, high_bps: u64) -> Vec<LayerOption> {
    vec![
        LayerOption { index: 0, rate_bps: low_bps, flowing: true },
        LayerOption { index: 1, rate_bps: high_bps, flowing: true },
    ]
}

fn want(kind: SlotKind, rank: Rank, current: Option<usize>) -> VideoWant {
    VideoWant { kind, rank, layers: simulcast(150_000, 700_000), current }
}

/// A stage with the teacher, a speaker's thumbnail and two others'.
fn class_call(current: [Option<usize>; 4]) -> Vec<VideoWant> {
    vec![
        want(SlotKind::Stage, Rank::First, current[0]),
        want(SlotKind::Thumbnail, Rank::Speaker, current[1]),
        want(SlotKind::Thumbnail, Rank::Other, current[2]),
        want(SlotKind::Thumbnail, Rank::Other, current[3]),
    ]
}

#[test]
fn a_good_downlink_gets_the_stage_high_and_every_thumbnail() {
    let fit = fit(Some(3_000_000), 2, &class_call([None; 4]));
    assert_eq!(fit.choices, vec![Choice::Layer(1), Choice::Layer(0), Choice::Layer(0), Choice::Layer(0)]);
    assert_eq!(fit.desired_bps, 2 * AUDIO_SLOT_BPS + 700_000 + 3 * 150_000);
}

#[test]
fn a_600_kbit_link_keeps_audio_and_the_stage_low_and_pauses_thumbnails_by_rank() {
    // 600 kbit/s: 510 usable, 128 for two audio slots: the stage's low layer (150) and one
    // thumbnail (150, the speaker's) fit; the others pause.
    let fit = fit(Some(600_000), 2, &class_call([None; 4]));
    assert_eq!(fit.choices, vec![Choice::Layer(0), Choice::Layer(0), Choice::Paused, Choice::Paused]);
    assert!(fit.used_bps <= 600_000, "{fit:?}");
}

#[test]
fn the_teacher_never_pauses_even_below_its_lowest_layer() {
    let fit = fit(Some(100_000), 4, &class_call([Some(1), Some(0), Some(0), Some(0)]));
    assert_eq!(fit.choices, vec![Choice::Layer(0), Choice::Paused, Choice::Paused, Choice::Paused]);
}

#[test]
fn going_up_needs_room_to_spare_but_keeping_a_layer_does_not() {
    // 1 Mbit/s: 850 usable, 64 audio: 786 left. The stage's top layer (700) fits as it is, but
    // is not taken from the low layer without 25 % to spare (875).
    let stage_only = |current| vec![want(SlotKind::Stage, Rank::First, current)];
    assert_eq!(fit(Some(1_000_000), 1, &stage_only(Some(1))).choices, vec![Choice::Layer(1)]);
    assert_eq!(fit(Some(1_000_000), 1, &stage_only(Some(0))).choices, vec![Choice::Layer(0)]);
    assert_eq!(fit(Some(1_200_000), 1, &stage_only(Some(0))).choices, vec![Choice::Layer(1)]);
    // A paused thumbnail resumes only with room for its layer and the margin.
    let thumb = |current| vec![want(SlotKind::Thumbnail, Rank::Other, current)];
    assert_eq!(fit(Some(280_000), 1, &thumb(Some(0))).choices, vec![Choice::Layer(0)]);
    assert_eq!(fit(Some(280_000), 1, &thumb(None)).choices, vec![Choice::Paused]);
    assert_eq!(fit(Some(330_000), 1, &thumb(None)).choices, vec![Choice::Layer(0)]);
}

#[test]
fn without_an_estimate_nothing_is_limited_and_silent_layers_are_skipped() {
    let mut stage = want(SlotKind::Stage, Rank::First, None);
    stage.layers[1].flowing = false;
    let fit = fit(None, 0, &[stage, want(SlotKind::Thumbnail, Rank::Other, None)]);
    assert_eq!(fit.choices, vec![Choice::Layer(0), Choice::Layer(0)]);
}

#[test]
fn unmeasured_layers_count_at_nominal_rates() {
    let mut stage = want(SlotKind::Stage, Rank::First, None);
    stage.layers = vec![
        LayerOption { index: 0, rate_bps: 0, flowing: true },
        LayerOption { index: 1, rate_bps: 0, flowing: true },
    ];
    // 700 kbit/s nominal for the top layer: not within 500 usable.
    assert_eq!(fit(Some(600_000), 0, &[stage.clone()]).choices, vec![Choice::Layer(0)]);
    assert_eq!(fit(Some(2_000_000), 0, &[stage]).choices, vec![Choice::Layer(1)]);
}

#[test]
fn a_dip_of_the_estimate_is_ignored_but_a_slow_link_is_not() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut downlink = Downlink::default();
    downlink.record(at(0), 1_500_000);
    // No sign of congestion: the estimate does not limit.
    downlink.report(at(0), 1, Some(0.0), Some(Duration::from_millis(5)));
    assert_eq!(downlink.usable(at(0)), None);
    // Loss on every stream: it does.
    downlink.report(at(0), 1, Some(0.05), Some(Duration::from_millis(5)));
    downlink.report(at(0), 2, Some(0.04), Some(Duration::from_millis(5)));
    assert_eq!(downlink.usable(at(0)), Some(1_500_000));
    downlink.record(at(1000), 300_000);
    // The dip is within the window of the better estimate.
    assert_eq!(downlink.usable(at(1500)), Some(1_500_000));
    // Three seconds later only the low ones remain: the link is slow.
    downlink.record(at(2000), 550_000);
    downlink.record(at(3500), 500_000);
    assert_eq!(downlink.usable(at(4000)), Some(550_000));
    // Nothing recent: the latest estimate stands.
    assert_eq!(downlink.usable(at(50_000)), Some(500_000));
    // A minute without congestion: no limit again.
    assert_eq!(downlink.usable(at(61_000)), None);
    // A queue building up (the round trip 40 ms over its shortest) is congestion too.
    downlink.report(at(62_000), 1, Some(0.0), Some(Duration::from_millis(60)));
    assert_eq!(downlink.usable(at(62_000)), Some(500_000));
}

#[test]
fn a_lossy_receiver_gets_the_lowest_layers() {
    let t0 = Instant::now();
    let mut downlink = Downlink::default();
    downlink.report(t0, 1, Some(0.03), None);
    assert!(!downlink.lossy(t0));
    downlink.report(t0, 1, Some(0.08), None);
    downlink.report(t0, 2, Some(0.07), None);
    assert!(downlink.lossy(t0 + Duration::from_secs(5)));
    assert!(!downlink.lossy(t0 + Duration::from_secs(11)));
    // One publisher's lossy uplink shows in one stream only: not this receiver's downlink.
    let mut downlink = Downlink::default();
    downlink.report(t0, 1, Some(0.08), None);
    downlink.report(t0, 2, Some(0.0), None);
    downlink.report(t0, 1, Some(0.08), None);
    assert!(!downlink.lossy(t0));
    assert_eq!(downlink.usable(t0), None);
    let mut stage = want(SlotKind::Stage, Rank::First, Some(1));
    lowest_only(&mut stage);
    assert_eq!(fit(None, 0, &[stage]).choices, vec![Choice::Layer(0)]);
}

#[test]
fn probes_are_asked_for_now_and_then() {
    let t0 = Instant::now();
    let mut downlink = Downlink::default();
    assert!(downlink.probe_due(t0));
    assert!(!downlink.probe_due(t0 + Duration::from_secs(1)));
    assert!(downlink.probe_due(t0 + Duration::from_secs(5)));
}

#[test]
fn a_fit_says_whether_anything_gets_less_than_it_would_take() {
    assert!(!fit(Some(3_000_000), 2, &class_call([None; 4])).limited);
    assert!(fit(Some(600_000), 2, &class_call([None; 4])).limited);
    assert!(!fit(None, 2, &class_call([None; 4])).limited);
}
