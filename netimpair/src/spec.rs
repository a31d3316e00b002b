//! The text form of a link's settings, as the command line and the control socket take it:
//! comma-separated `key=value` pairs, e.g. `delay=150,jitter=10,loss=8,rate=600,limit-ms=80`.
//!
//! | key | value | meaning |
//! | --- | --- | --- |
//! | `delay` | ms | fixed added delay |
//! | `jitter` | ms | uniform in ±jitter, on top of `delay` |
//! | `reorder` | `0`/`1` (or no value) | let jitter reorder packets |
//! | `loss` | % | independent random loss |
//! | `burst` | `p/r[/bad[/good]]` in % | Gilbert-Elliott burst loss (loss in Bad, Good: 100 %, 0 % by default) |
//! | `rate` | kbit/s | bottleneck rate |
//! | `limit-ms` | ms | bottleneck queue, in time at `rate` (default 100) |
//! | `limit-bytes` | bytes | bottleneck queue, in bytes |
//!
//! An empty text is a link that passes everything at once.

use std::fmt;
use std::time::Duration;

use crate::link::{GilbertElliott, LinkConfig, QueueLimit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn err(message: String) -> SpecError {
    SpecError(message)
}

fn number(key: &str, value: &str) -> Result<f64, SpecError> {
    let n: f64 = value.trim().parse().map_err(|_| err(format!("{key}: not a number: {value:?}")))?;
    if !n.is_finite() || n < 0.0 {
        return Err(err(format!("{key}: must be a finite number ≥ 0, not {value:?}")));
    }
    Ok(n)
}

fn percent(key: &str, value: &str) -> Result<f64, SpecError> {
    let n = number(key, value)?;
    if n > 100.0 {
        return Err(err(format!("{key}: a percentage is at most 100, not {value:?}")));
    }
    Ok(n / 100.0)
}

fn millis(key: &str, value: &str) -> Result<Duration, SpecError> {
    Ok(Duration::from_secs_f64(number(key, value)? / 1000.0))
}

/// Parses a link's settings; see the module's table.
pub fn parse(text: &str) -> Result<LinkConfig, SpecError> {
    let mut config = LinkConfig::default();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let (key, value) = (key.trim(), value.trim());
        match key {
            "delay" => config.delay = millis(key, value)?,
            "jitter" => config.jitter = millis(key, value)?,
            "reorder" => config.reorder = matches!(value, "" | "1" | "true" | "on"),
            "loss" => config.loss = percent(key, value)?,
            "burst" => {
                let parts: Vec<&str> = value.split('/').collect();
                if !(2..=4).contains(&parts.len()) {
                    return Err(err(format!("burst: want p/r[/loss_bad[/loss_good]] in %, not {value:?}")));
                }
                config.burst = Some(GilbertElliott {
                    p: percent("burst p", parts[0])?,
                    r: percent("burst r", parts[1])?,
                    loss_bad: parts.get(2).map_or(Ok(1.0), |v| percent("burst loss_bad", v))?,
                    loss_good: parts.get(3).map_or(Ok(0.0), |v| percent("burst loss_good", v))?,
                });
            }
            "rate" => {
                let kbit = number(key, value)?;
                if kbit < 1.0 {
                    return Err(err(format!("rate: at least 1 kbit/s, not {value:?}")));
                }
                config.rate_bps = Some((kbit * 1000.0).round() as u64);
            }
            "limit-ms" => config.queue_limit = QueueLimit::Time(millis(key, value)?),
            "limit-bytes" => config.queue_limit = QueueLimit::Bytes(number(key, value)?.round() as u64),
            _ => {
                return Err(err(format!(
                "unknown setting {key:?} (delay, jitter, reorder, loss, burst, rate, limit-ms, limit-bytes)"
            )))
            }
        }
    }
    Ok(config)
}

/// The text form of `config`, as `parse` reads it (for logs and `stats`).
pub fn describe(config: &LinkConfig) -> String {
    let mut parts = Vec::new();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if !config.delay.is_zero() {
        parts.push(format!("delay={}", ms(config.delay)));
    }
    if !config.jitter.is_zero() {
        parts.push(format!("jitter={}", ms(config.jitter)));
    }
    if config.reorder {
        parts.push("reorder=1".to_owned());
    }
    if config.loss > 0.0 {
        parts.push(format!("loss={}", config.loss * 100.0));
    }
    if let Some(ge) = config.burst {
        parts.push(format!(
            "burst={}/{}/{}/{}",
            ge.p * 100.0,
            ge.r * 100.0,
            ge.loss_bad * 100.0,
            ge.loss_good * 100.0
        ));
    }
    if let Some(rate) = config.rate_bps {
        parts.push(format!("rate={}", rate as f64 / 1000.0));
        parts.push(match config.queue_limit {
            QueueLimit::Time(time) => format!("limit-ms={}", ms(time)),
            QueueLimit::Bytes(bytes) => format!("limit-bytes={bytes}"),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests;
