use std::time::Duration;

use super::*;

/// The range `backoff` draws from: `(least, most)`.
fn backoff_bounds(told: Option<Duration>, retry_idx: u32) -> (Duration, Duration) {
    (backoff(told, retry_idx, 0.0), backoff(told, retry_idx, 1.0))
}

fn secs(values: &[Duration]) -> Vec<f64> {
    values.iter().map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0).collect()
}

#[test]
fn uniform_arrivals_spread_evenly() {
    assert_eq!(secs(&arrivals(Profile::Uniform, 4, Duration::from_secs(60))), vec![7.5, 22.5, 37.5, 52.5]);
}

#[test]
fn the_ramp_rises_to_its_peak_then_falls() {
    let starts = arrivals(Profile::Ramp, 1000, Duration::from_secs(60));
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "in order");
    assert!(starts.iter().all(|s| *s < Duration::from_secs(60)));
    let in_second = |second: u64| starts.iter().filter(|s| s.as_secs() == second).count();
    // The density of a triangle with its mode at 45 s: 2t/(60·45) before, 2(60-t)/(60·15) after.
    assert!(in_second(5) < in_second(20) && in_second(20) < in_second(44), "rising");
    assert!(in_second(46) > in_second(55), "falling");
    let peak = (0..60).map(in_second).max().unwrap();
    assert!((peak as i64 - 2000 / 60).abs() <= 3, "peak of {peak} a second, 2n/T expected");
    // Three quarters of the classes start before the mode.
    let before_mode = starts.iter().filter(|s| s.as_secs_f64() < 45.0).count();
    assert!((740..=760).contains(&before_mode), "{before_mode}");
}

#[test]
fn a_burst_arrives_within_the_first_second() {
    let starts = arrivals(Profile::Burst, 300, Duration::from_secs(60));
    assert!(starts.iter().all(|s| *s < Duration::from_secs(1)));
}

#[test]
fn plus_classes_are_the_share_asked_for() {
    let count = |share: f64, n: usize| (0..n).filter(|idx| is_plus(*idx, share)).count();
    assert_eq!(count(0.0, 100), 0);
    assert_eq!(count(1.0, 100), 100);
    assert_eq!(count(0.3, 100), 30);
    assert_eq!(count(0.25, 8), 2);
    // Spread, not all first.
    assert_eq!(
        (0..8).map(|idx| is_plus(idx, 0.25)).collect::<Vec<_>>(),
        [false, false, false, true, false, false, false, true]
    );
}

#[test]
fn a_told_wait_is_kept_with_jitter_on_top() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    assert_eq!(backoff_bounds(Some(s(2)), 0), (s(2), s(3)));
    assert_eq!(backoff_bounds(Some(s(2)), 5), (s(2), s(3)), "the server's word, whatever the count");
    assert_eq!(backoff_bounds(Some(s(0)), 0), (s(0), ms(250)));
    assert_eq!(backoff_bounds(Some(ms(300)), 0), (ms(300), ms(550)));
    assert_eq!(backoff(Some(s(2)), 0, 0.5), ms(2500));
    // Out-of-range draws are clamped, never below what was told.
    assert_eq!(backoff(Some(s(2)), 0, -1.0), s(2));
    assert_eq!(backoff(Some(s(2)), 0, 7.0), s(3));
}

#[test]
fn an_untold_wait_doubles_up_to_a_ceiling() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    assert_eq!(backoff_bounds(None, 0), (ms(500), s(1)));
    assert_eq!(backoff_bounds(None, 1), (s(1), s(2)));
    assert_eq!(backoff_bounds(None, 3), (s(4), s(8)));
    assert_eq!(backoff_bounds(None, 4), (s(8), s(16)));
    assert_eq!(backoff_bounds(None, 40), (s(8), s(16)));
}

#[test]
fn draws_are_uniform_in_the_unit_interval() {
    let mut draws = Draws::new(7);
    let values: Vec<f64> = (0..10_000).map(|_| draws.next()).collect();
    assert!(values.iter().all(|u| (0.0..1.0).contains(u)));
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!((mean - 0.5).abs() < 0.02, "{mean}");
    let low = values.iter().filter(|u| **u < 0.1).count();
    assert!((800..1200).contains(&low), "{low}");
    // Seeded: the same seed draws the same values; another seed others.
    assert_eq!(Draws::new(7).next(), values[0]);
    assert_ne!(Draws::new(8).next(), values[0]);
}
