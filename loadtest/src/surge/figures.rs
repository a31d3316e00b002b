//! The surge's arithmetic, on times in milliseconds since the run's epoch: latency percentiles,
//! joins per second (over the surge, at the peak second, over the best ten seconds), and CPU
//! shares from cumulative CPU seconds. No clock, no I/O.

use crate::report::percentile;
use crate::timeline::Ms;

/// Percentiles of a set of durations in milliseconds (nearest rank, as [`percentile`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        (!values.is_empty()).then(|| Spread {
            n: values.len(),
            p50: percentile(values, 0.50),
            p95: percentile(values, 0.95),
            p99: percentile(values, 0.99),
            max: percentile(values, 1.0),
        })
    }

    pub fn line(spread: Option<Spread>) -> String {
        match spread {
            None => "-".into(),
            Some(s) => format!(
                "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n = {})",
                s.p50, s.p95, s.p99, s.max, s.n
            ),
        }
    }
}

/// Events per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// All events over `from..to` (at least one second).
    pub mean: f64,
    /// The busiest whole second (counted from `from`).
    pub peak_1s: u64,
    /// The best ten consecutive whole seconds (all of them if fewer), per second: a rate held,
    /// not a spike.
    pub best_10s: f64,
}

/// The rates of events at `times` over `from..to`; events outside are left out.
pub fn rates(times: &[Ms], from: Ms, to: Ms) -> Rates {
    let span_ms = to.saturating_sub(from).max(1000);
    let n_seconds = span_ms.div_ceil(1000) as usize;
    let mut per_second = vec![0u64; n_seconds];
    for at in times.iter().filter(|at| (from..to.max(from + 1)).contains(at)) {
        per_second[((at - from) / 1000) as usize] += 1;
    }
    let total: u64 = per_second.iter().sum();
    let width = per_second.len().min(10);
    let best = per_second.windows(width).map(|w| w.iter().sum::<u64>()).max().unwrap_or(0);
    let best_10s = best as f64 / width as f64;
    Rates {
        mean: total as f64 / (f64::from(span_ms) / 1000.0),
        peak_1s: per_second.iter().copied().max().unwrap_or(0),
        best_10s,
    }
}

/// Intervals shorter than this are merged into the next: CPU time is counted in ticks of 10 ms,
/// so over a few milliseconds one tick reads as hundreds of percent.
const MIN_CPU_INTERVAL: Ms = 500;

/// CPU use between samples of cumulative CPU seconds at least [`MIN_CPU_INTERVAL`] apart, in
/// percent of one core: `(at, percent)` at the end of each interval.
pub fn cpu_percent(samples: &[(Ms, f64)]) -> Vec<(Ms, f64)> {
    let mut percents = Vec::new();
    let Some(mut last) = samples.first().copied() else { return percents };
    for &(at, cpu) in &samples[1..] {
        if at >= last.0 + MIN_CPU_INTERVAL {
            percents.push((at, (cpu - last.1).max(0.0) * 100_000.0 / f64::from(at - last.0)));
            last = (at, cpu);
        }
    }
    percents
}

/// The mean CPU (percent of one core) over `from..to`, from cumulative CPU seconds: the
/// difference between the last sample at or before `from` and the first at or after `to`.
pub fn mean_cpu_percent(samples: &[(Ms, f64)], from: Ms, to: Ms) -> Option<f64> {
    let start = samples.iter().rev().find(|(at, _)| *at <= from).or(samples.first())?;
    let end = samples.iter().find(|(at, _)| *at >= to).or(samples.last())?;
    (end.0 > start.0).then(|| (end.1 - start.1).max(0.0) * 100_000.0 / f64::from(end.0 - start.0))
}

#[cfg(test)]
mod tests;
