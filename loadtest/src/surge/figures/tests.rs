use super::*;

#[test]
fn percentiles_take_the_nearest_rank() {
    let values: Vec<f64> = (1..=100).map(f64::from).collect();
    let spread = Spread::of(&values).unwrap();
    assert_eq!((spread.n, spread.p50, spread.p95, spread.p99, spread.max), (100, 51.0, 95.0, 99.0, 100.0));
    // Order does not matter.
    let mut shuffled = values.clone();
    shuffled.reverse();
    assert_eq!(Spread::of(&shuffled), Some(spread));
    let one = Spread::of(&[42.0]).unwrap();
    assert_eq!((one.p50, one.p99, one.max), (42.0, 42.0, 42.0));
    // A tail of 2 % slow joins shows in p99 and max, not in p95. (Ranks are rounded: a tail of
    // exactly 1 % would sit right at p99's rank.)
    let mut tail = vec![100.0; 980];
    tail.extend([5000.0; 20]);
    let spread = Spread::of(&tail).unwrap();
    assert_eq!((spread.p50, spread.p95, spread.p99, spread.max), (100.0, 100.0, 5000.0, 5000.0));
    assert_eq!(Spread::of(&[]), None);
    assert_eq!(Spread::line(None), "-");
}

fn check_rates(times: &[Ms], from: Ms, to: Ms, expected: (f64, u64, f64)) {
    let rates = rates(times, from, to);
    assert_eq!((rates.mean, rates.peak_1s, rates.best_10s), expected, "{times:?} in {from}..{to}");
}

#[test]
fn joins_per_second() {
    // 60 joins evenly over 60 s.
    let even: Vec<Ms> = (0..60).map(|s| s * 1000 + 500).collect();
    check_rates(&even, 0, 60_000, (1.0, 1, 1.0));
    // The same joins with 30 of them in one second: the peak shows it, the mean does not.
    let mut spike: Vec<Ms> = (0..30).map(|s| s * 2000 + 1000).collect();
    spike.extend(std::iter::repeat_n(10_500, 30));
    check_rates(&spike, 0, 60_000, (1.0, 30, 3.5));
    // Counted from `from`, events outside the range left out.
    check_rates(&[999, 1000, 1999, 2000, 2999, 5000], 1000, 3000, (2.0, 2, 2.0));
    // Shorter than a second counts as a second.
    check_rates(&[0, 10, 20], 0, 100, (3.0, 3, 3.0));
    check_rates(&[], 0, 60_000, (0.0, 0, 0.0));
}

#[test]
fn cpu_from_cumulative_seconds() {
    // 0.5 s of CPU in one second, then 1.5 s in the next half second.
    let samples = [(0, 10.0), (1000, 10.5), (1500, 12.0)];
    assert_eq!(cpu_percent(&samples), vec![(1000, 50.0), (1500, 300.0)]);
    // A sample a few milliseconds after another is merged into the next interval: one 10 ms
    // tick over 10 ms would read 100 %.
    let close = [(0, 0.0), (1000, 0.5), (1010, 0.51), (2000, 1.0)];
    assert_eq!(cpu_percent(&close), vec![(1000, 50.0), (2000, 50.0)]);
    assert_eq!(cpu_percent(&[]), vec![]);
    assert_eq!(mean_cpu_percent(&samples, 0, 1500), Some(2.0 * 100.0 / 1.5));
    assert_eq!(mean_cpu_percent(&samples, 200, 900), Some(50.0));
    assert_eq!(mean_cpu_percent(&samples[..1], 0, 1000), None);
    assert_eq!(mean_cpu_percent(&[], 0, 1000), None);
}
