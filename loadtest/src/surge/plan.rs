//! When each class arrives, which tier it has, and how long a refused participant waits before
//! trying again: pure functions of their inputs (a seed, a uniform draw), so that tests pass the
//! draws in.

use std::time::Duration;

/// How the classes' starts spread over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Evenly over the window.
    Uniform,
    /// A Monday morning: few early, more and more towards 9:00 (a triangular density that
    /// rises over the first three quarters of the window and falls over the last).
    Ramp,
    /// Everyone in the first second: the worst case.
    Burst,
}

/// Where the latest arrivals of the ramp's triangle peak, as a share of the window.
const RAMP_PEAK: f64 = 0.75;

/// The start of each of `n_classes`, as offsets into `window`, in order. Deterministic: the
/// `idx`-th class starts at the profile's `(idx + 0.5) / n` quantile.
pub fn arrivals(profile: Profile, n_classes: usize, window: Duration) -> Vec<Duration> {
    let window_s = window.as_secs_f64();
    (0..n_classes)
        .map(|idx| {
            let q = (idx as f64 + 0.5) / n_classes as f64;
            let share = match profile {
                Profile::Uniform => q,
                Profile::Ramp => triangular_quantile(q, RAMP_PEAK),
                Profile::Burst => q * (1.0 / window_s.max(1.0)),
            };
            Duration::from_secs_f64(share * window_s)
        })
        .collect()
}

/// The quantile `q` of the triangular distribution on [0, 1] with its mode at `mode`.
fn triangular_quantile(q: f64, mode: f64) -> f64 {
    if q < mode {
        (q * mode).sqrt()
    } else {
        1.0 - ((1.0 - q) * (1.0 - mode)).sqrt()
    }
}

/// Whether the `class_idx`-th class is on the Plus tier: `plus_share` of them, spread evenly.
pub fn is_plus(class_idx: usize, plus_share: f64) -> bool {
    let share = plus_share.clamp(0.0, 1.0);
    ((class_idx + 1) as f64 * share).floor() > (class_idx as f64 * share).floor()
}

/// How long to wait before the `retry_idx`-th retry (0: the first), given what the server said
/// (`told`: its `Retry-After` or the hint of its message) and a uniform draw `u` in [0, 1).
///
/// Told: at least what it said, plus up to half of it again (at least 250 ms of spread), so
/// that the many clients it refused in one second do not all come back in one second.
/// Not told (a timeout, a connection error): exponential from 1 s, doubling to 16 s at most,
/// drawn in its upper half ("equal jitter").
pub fn backoff(told: Option<Duration>, retry_idx: u32, u: f64) -> Duration {
    let u = u.clamp(0.0, 1.0);
    match told {
        Some(told) => told + (told / 2).max(Duration::from_millis(250)).mul_f64(u),
        None => {
            let ceiling = Duration::from_secs(1 << retry_idx.min(4));
            ceiling / 2 + (ceiling / 2).mul_f64(u)
        }
    }
}

/// A small xorshift: jitter needs spread, not good randomness, and a seed makes runs repeatable.
#[derive(Debug, Clone)]
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Draws {
        Draws(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A uniform draw in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests;
