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
fn loss_on_every_stream_cuts_the_estimate_and_a_clean_link_grows_it_back() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut downlink = Downlink::default();
    downlink.usage(1_300_000, 1_300_000);
    // Clean: no limit.
    downlink.report(at(0), 1, Some(0.0));
    downlink.report(at(0), 2, Some(0.01));
    assert_eq!(downlink.usable(), None);
    // 30 % lost on every stream (a 600 kbit/s link): cut to what got through, a little less.
    downlink.report(at(2), 1, Some(0.3));
    downlink.report(at(2), 2, Some(0.3));
    let first = downlink.usable().unwrap();
    assert!(first.abs_diff(819_000) <= 1, "{first}");
    // The second stream's report of the same round does not cut again.
    downlink.report(at(3), 2, Some(0.3));
    assert_eq!(downlink.usable(), Some(first));
    // Still losing in the next round: cut again, never below the floor.
    downlink.usage(first, 1_300_000);
    downlink.report(at(4), 1, Some(0.3));
    let second = downlink.usable().unwrap();
    assert!(second < first && second >= 250_000, "{second}");
    // Clean for 30 s: a quarter more, up to no limit once everything fits.
    downlink.usage(second, 1_300_000);
    for s in 5..40 {
        downlink.report(at(s), 1, Some(0.0));
        downlink.report(at(s), 2, Some(0.0));
    }
    assert_eq!(downlink.usable(), Some((second as f64 * 1.25) as u64));
}

#[test]
fn random_loss_holds_what_flows_and_lowers_the_layers() {
    let t0 = Instant::now();
    let mut downlink = Downlink::default();
    // The stage and three thumbnails on their low layers, and two audio slots.
    let mut wants = class_call([Some(0); 4]);
    wants.iter_mut().for_each(lowest_only);
    let sending = fit(None, 2, &wants);
    downlink.usage(sending.used_bps, sending.desired_bps);
    // 8 % at random: not congestion. The layers go down for it, and the estimate holds what is
    // sent now, which still fits, to grow back slowly when the hold ends.
    downlink.report(t0, 1, Some(0.08));
    downlink.report(t0, 2, Some(0.08));
    assert!(downlink.lossy(t0));
    let held = downlink.usable().unwrap();
    assert_eq!(fit(Some(held), 2, &wants).choices, sending.choices);
    downlink.report(t0 + Duration::from_secs(2), 1, Some(0.09));
    downlink.report(t0 + Duration::from_secs(2), 2, Some(0.09));
    assert_eq!(downlink.usable(), Some(held));
}

#[test]
fn a_publishers_lossy_uplink_is_not_the_receivers_downlink() {
    let t0 = Instant::now();
    let mut downlink = Downlink::default();
    downlink.usage(1_000_000, 1_000_000);
    // One stream alone says nothing.
    downlink.report(t0, 1, Some(0.3));
    assert_eq!(downlink.usable(), None);
    // Another stream is clean: the loss is upstream of us.
    downlink.report(t0, 2, Some(0.0));
    downlink.report(t0 + Duration::from_secs(2), 1, Some(0.3));
    assert_eq!(downlink.usable(), None);
    assert!(!downlink.lossy(t0 + Duration::from_secs(2)));
}

#[test]
fn a_lossy_receiver_gets_the_lowest_layers() {
    let t0 = Instant::now();
    let mut downlink = Downlink::default();
    downlink.report(t0, 1, Some(0.03));
    downlink.report(t0, 2, Some(0.03));
    assert!(!downlink.lossy(t0));
    downlink.report(t0, 1, Some(0.08));
    downlink.report(t0, 2, Some(0.07));
    assert!(downlink.lossy(t0 + Duration::from_secs(5)));
    assert!(!downlink.lossy(t0 + Duration::from_secs(31)));
    let mut stage = want(SlotKind::Stage, Rank::First, Some(1));
    lowest_only(&mut stage);
    assert_eq!(fit(None, 0, &[stage]).choices, vec![Choice::Layer(0)]);
}
