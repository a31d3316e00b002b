//! One impaired direction of a link, as a plain state machine: packets come in with the time
//! they arrived, and out come verdicts (accept, or drop with a reason) and the time of the next
//! one. It never reads the clock: the shell passes `now`, and tests pass made-up instants.
//!
//! A packet's path, in order:
//!
//! 1. `cut`: dropped while the link is cut.
//! 2. Loss: independent random loss (`loss`), then the Gilbert-Elliott burst loss (`burst`).
//!    Lost packets take no room in the bottleneck, as on a wire that loses them.
//! 3. The bottleneck (`rate_bps`): one packet at a time at the link's rate, behind a drop-tail
//!    queue of `queue_limit`. A packet that would make the backlog larger than the limit is
//!    dropped; the others wait for the ones before them, so queuing delay grows up to the limit.
//! 4. Propagation: `delay`, plus a uniform `jitter` in `[-jitter, +jitter]`. Unless `reorder`
//!    is set, a packet never leaves before the one that came before it: its jitter is then
//!    bunching, as the jitter of real queues is, and not reordering.
//!
//! A packet still held when the link is cut is dropped when it would have left.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// How the link treats packets. `LinkConfig::default()` passes everything at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkConfig {
    pub delay: Duration,
    pub jitter: Duration,
    /// Let jitter reorder packets (each packet's delay is drawn alone).
    pub reorder: bool,
    /// Probability, 0 to 1, that a packet is lost, independently of the others.
    pub loss: f64,
    pub burst: Option<GilbertElliott>,
    /// The bottleneck's rate in bit/s; `None`: no bottleneck.
    pub rate_bps: Option<u64>,
    /// What the bottleneck's queue holds; only used with `rate_bps`.
    pub queue_limit: QueueLimit,
}

/// Two-state burst loss: in `Good` a packet is lost with `loss_good`, in `Bad` with `loss_bad`;
/// after each packet the state moves Good→Bad with probability `p` and Bad→Good with `r`. Mean
/// burst length (in packets, with `loss_bad` = 1) is `1 / r`; the share of time in Bad `p / (p + r)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    pub p: f64,
    pub r: f64,
    pub loss_bad: f64,
    pub loss_good: f64,
}

/// The bottleneck queue's size, in bytes or in time at the link's rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueueLimit {
    Bytes(u64),
    Time(Duration),
}

impl Default for QueueLimit {
    fn default() -> Self {
        QueueLimit::Time(Duration::from_millis(100))
    }
}

/// The smallest queue a bottleneck gets, whatever its limit: one full-size packet and a bit, so
/// that a tiny limit at a low rate still passes something.
const MIN_QUEUE_BYTES: u64 = 1600;

/// The id the kernel gave a packet (NFQUEUE's packet id), opaque here.
pub type PacketId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Cut,
    Loss,
    Burst,
    QueueFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Accept(PacketId),
    Drop(PacketId, DropReason),
    /// Nothing more until then: call `poll_output` again at this instant.
    Timeout(Instant),
    /// No packet held.
    Idle,
}

/// What a link did so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped_cut: u64,
    pub dropped_loss: u64,
    pub dropped_burst: u64,
    pub dropped_queue_full: u64,
    /// Sum and maximum of (accepted at − arrived at) over accepted packets.
    pub added_delay_total: Duration,
    pub added_delay_max: Duration,
    /// The largest bottleneck backlog seen, in bytes, counting the arriving packet.
    pub peak_backlog_bytes: u64,
    /// How late verdicts came after their due time (the shell's wake-up latency), summed and
    /// at most, over accepted packets: what the delays above owe to a busy machine.
    pub late_total: Duration,
    pub late_max: Duration,
}

impl LinkStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_cut + self.dropped_loss + self.dropped_burst + self.dropped_queue_full
    }

    pub fn mean_added_delay(&self) -> Duration {
        self.mean_over_out(self.added_delay_total)
    }

    pub fn mean_late(&self) -> Duration {
        self.mean_over_out(self.late_total)
    }

    fn mean_over_out(&self, total: Duration) -> Duration {
        match u32::try_from(self.packets_out) {
            Ok(0) => Duration::ZERO,
            Ok(n) => total / n,
            Err(_) => Duration::from_secs_f64(total.as_secs_f64() / self.packets_out as f64),
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    release_at: Instant,
    /// Arrival order, which breaks ties between equal release times.
    seq: u64,
    id: PacketId,
    arrived_at: Instant,
    len: u32,
}

/// One direction of an impaired link.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    cut: bool,
    rng: SplitMix64,
    burst_bad: bool,
    /// When the bottleneck has sent everything queued so far.
    busy_until: Option<Instant>,
    /// The latest release time given out, which the next packet may not precede (no reorder).
    last_release: Option<Instant>,
    held: BinaryHeap<Reverse<Held>>,
    outbox: VecDeque<Output>,
    next_seq: u64,
    stats: LinkStats,
}

impl Link {
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Link {
            config,
            cut: false,
            rng: SplitMix64(seed),
            burst_bad: false,
            busy_until: None,
            last_release: None,
            held: BinaryHeap::new(),
            outbox: VecDeque::new(),
            next_seq: 0,
            stats: LinkStats::default(),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// New settings for the packets that arrive from now on; held packets keep their schedule.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    pub fn is_cut(&self) -> bool {
        self.cut
    }

    pub fn set_cut(&mut self, cut: bool) {
        self.cut = cut;
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Starts the counters again from zero (a test's measuring window).
    pub fn reset_stats(&mut self) {
        self.stats = LinkStats::default();
    }

    /// Packets held now (waiting in the bottleneck or on the wire).
    pub fn n_held(&self) -> usize {
        self.held.len()
    }

    /// A packet of `len` bytes (its IP length) arrived at `now`.
    pub fn handle_packet(&mut self, now: Instant, id: PacketId, len: u32) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += u64::from(len);
        if self.cut {
            return self.drop_now(id, DropReason::Cut);
        }
        if self.config.loss > 0.0 && self.rng.chance(self.config.loss) {
            return self.drop_now(id, DropReason::Loss);
        }
        if let Some(ge) = self.config.burst {
            let lost = self.rng.chance(if self.burst_bad { ge.loss_bad } else { ge.loss_good });
            // The state moves after each packet, lost or not.
            self.burst_bad = if self.burst_bad { !self.rng.chance(ge.r) } else { self.rng.chance(ge.p) };
            if lost {
                return self.drop_now(id, DropReason::Burst);
            }
        }
        let departs_at = match self.config.rate_bps {
            None => now,
            Some(rate_bps) => match self.through_bottleneck(now, len, rate_bps) {
                Some(at) => at,
                None => return self.drop_now(id, DropReason::QueueFull),
            },
        };
        let mut release_at = departs_at + self.config.delay;
        if !self.config.jitter.is_zero() {
            let jitter_ns = u64::try_from(self.config.jitter.as_nanos()).unwrap_or(u64::MAX);
            // Uniform in [-jitter, +jitter], and never before the packet left the bottleneck.
            let offset = self.rng.below(jitter_ns.saturating_mul(2).saturating_add(1));
            release_at = if offset >= jitter_ns {
                release_at + Duration::from_nanos(offset - jitter_ns)
            } else {
                release_at
                    .checked_sub(Duration::from_nanos(jitter_ns - offset))
                    .unwrap_or(departs_at)
                    .max(departs_at)
            };
        }
        if !self.config.reorder {
            if let Some(last) = self.last_release {
                release_at = release_at.max(last);
            }
        }
        self.last_release = Some(self.last_release.map_or(release_at, |last| last.max(release_at)));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held.push(Reverse(Held { release_at, seq, id, arrived_at: now, len }));
    }

    /// When the packet leaves the bottleneck, or `None` when its queue is full.
    fn through_bottleneck(&mut self, now: Instant, len: u32, rate_bps: u64) -> Option<Instant> {
        let rate_bps = rate_bps.max(1);
        let start = self.busy_until.map_or(now, |busy| busy.max(now));
        let backlog_ns = start.duration_since(now).as_nanos();
        let backlog_bytes =
            u64::try_from(backlog_ns * u128::from(rate_bps) / 8 / 1_000_000_000).unwrap_or(u64::MAX);
        let limit_bytes = match self.config.queue_limit {
            QueueLimit::Bytes(bytes) => bytes,
            QueueLimit::Time(time) => {
                u64::try_from(time.as_nanos() * u128::from(rate_bps) / 8 / 1_000_000_000).unwrap_or(u64::MAX)
            }
        }
        .max(MIN_QUEUE_BYTES);
        let with_packet = backlog_bytes.saturating_add(u64::from(len));
        if with_packet > limit_bytes {
            return None;
        }
        self.stats.peak_backlog_bytes = self.stats.peak_backlog_bytes.max(with_packet);
        let transmit_ns = u128::from(len) * 8 * 1_000_000_000 / u128::from(rate_bps);
        let departs_at = start + Duration::from_nanos(u64::try_from(transmit_ns).unwrap_or(u64::MAX));
        self.busy_until = Some(departs_at);
        Some(departs_at)
    }

    fn drop_now(&mut self, id: PacketId, reason: DropReason) {
        self.count_drop(reason);
        self.outbox.push_back(Output::Drop(id, reason));
    }

    fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Cut => &mut self.stats.dropped_cut,
            DropReason::Loss => &mut self.stats.dropped_loss,
            DropReason::Burst => &mut self.stats.dropped_burst,
            DropReason::QueueFull => &mut self.stats.dropped_queue_full,
        };
        *counter += 1;
    }

    /// The next verdict due at `now`, else when to ask again.
    pub fn poll_output(&mut self, now: Instant) -> Output {
        if let Some(output) = self.outbox.pop_front() {
            return output;
        }
        let Some(Reverse(next)) = self.held.peek() else {
            return Output::Idle;
        };
        if next.release_at > now {
            return Output::Timeout(next.release_at);
        }
        // The heap is not empty: `peek` just returned an element.
        let Reverse(held) = self.held.pop().expect("peeked");
        if self.cut {
            self.count_drop(DropReason::Cut);
            return Output::Drop(held.id, DropReason::Cut);
        }
        let added = now.saturating_duration_since(held.arrived_at);
        let late = now.saturating_duration_since(held.release_at);
        self.stats.late_total += late;
        self.stats.late_max = self.stats.late_max.max(late);
        self.stats.packets_out += 1;
        self.stats.bytes_out += u64::from(held.len);
        self.stats.added_delay_total += added;
        self.stats.added_delay_max = self.stats.added_delay_max.max(added);
        Output::Accept(held.id)
    }

    /// Every held packet, accepted now (on exit: rather deliver them early than lose them).
    pub fn flush(&mut self) -> Vec<PacketId> {
        let mut ids: Vec<Held> = self.held.drain().map(|Reverse(held)| held).collect();
        ids.sort();
        ids.into_iter().map(|held| held.id).collect()
    }
}

/// A small deterministic generator (SplitMix64): reproducible runs from a seed, and no
/// dependency for what needs no cryptographic quality.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.unit() < probability
    }

    /// Uniform in [0, n); `n` > 0.
    fn below(&mut self, n: u64) -> u64 {
        u64::try_from((u128::from(self.next_u64()) * u128::from(n)) >> 64).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
