use std::time::{Duration, Instant};

use super::*;
use crate::spec;

const MS: Duration = Duration::from_millis(1);

fn link(settings: &str) -> Link {
    Link::new(spec::parse(settings).unwrap(), 7)
}

/// Every verdict up to `until`, stepping through the link's own timeouts: (id, when, verdict).
fn drain(link: &mut Link, from: Instant, until: Instant) -> Vec<(PacketId, Duration, Option<DropReason>)> {
    let mut out = Vec::new();
    let mut now = from;
    loop {
        match link.poll_output(now) {
            Output::Accept(id) => out.push((id, now - from, None)),
            Output::Drop(id, reason) => out.push((id, now - from, Some(reason))),
            Output::Timeout(at) if at <= until => now = at,
            Output::Timeout(_) | Output::Idle => return out,
        }
    }
}

/// Sends `n` packets of `len` bytes, one every `interval`, and collects every verdict, polling
/// at each arrival and at each timeout as the shell does. Returns (id, at, verdict) with `at`
/// from the first arrival.
fn run(
    link: &mut Link,
    n: u32,
    len: u32,
    interval: Duration,
) -> Vec<(PacketId, Duration, Option<DropReason>)> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut now = t0;
    for id in 0..n {
        let arrival = t0 + interval * id;
        // Verdicts due before this arrival.
        loop {
            match link.poll_output(now) {
                Output::Accept(done) => out.push((done, now - t0, None)),
                Output::Drop(done, reason) => out.push((done, now - t0, Some(reason))),
                Output::Timeout(at) if at <= arrival => now = at,
                Output::Timeout(_) | Output::Idle => break,
            }
        }
        now = arrival;
        link.handle_packet(now, id, len);
    }
    let end = now + Duration::from_secs(60);
    out.extend(drain(link, now, end).into_iter().map(|(id, at, v)| (id, at + (now - t0), v)));
    out
}

fn accepted(out: &[(PacketId, Duration, Option<DropReason>)]) -> Vec<PacketId> {
    out.iter().filter(|(_, _, v)| v.is_none()).map(|(id, _, _)| *id).collect()
}

fn count(out: &[(PacketId, Duration, Option<DropReason>)], reason: DropReason) -> usize {
    out.iter().filter(|(_, _, v)| *v == Some(reason)).count()
}

#[test]
fn passes_everything_at_once_without_settings() {
    let mut link = link("");
    let t0 = Instant::now();
    link.handle_packet(t0, 1, 100);
    link.handle_packet(t0, 2, 100);
    assert_eq!(link.poll_output(t0), Output::Accept(1));
    assert_eq!(link.poll_output(t0), Output::Accept(2));
    assert_eq!(link.poll_output(t0), Output::Idle);
    assert_eq!(link.stats().packets_out, 2);
    assert_eq!(link.stats().mean_added_delay(), Duration::ZERO);
}

#[test]
fn fixed_delay_holds_each_packet_that_long_in_order() {
    let mut link = link("delay=150");
    let t0 = Instant::now();
    link.handle_packet(t0, 1, 100);
    link.handle_packet(t0 + 10 * MS, 2, 100);
    assert_eq!(link.poll_output(t0 + 10 * MS), Output::Timeout(t0 + 150 * MS));
    assert_eq!(link.poll_output(t0 + 149 * MS), Output::Timeout(t0 + 150 * MS));
    assert_eq!(link.poll_output(t0 + 150 * MS), Output::Accept(1));
    assert_eq!(link.poll_output(t0 + 150 * MS), Output::Timeout(t0 + 160 * MS));
    assert_eq!(link.poll_output(t0 + 170 * MS), Output::Accept(2));
    assert_eq!(link.poll_output(t0 + 170 * MS), Output::Idle);
    // Added delay is measured when the verdict is given: 150 and 160 ms, packet 2 being 10 ms late.
    assert_eq!(link.stats().mean_added_delay(), 155 * MS);
    assert_eq!(link.stats().added_delay_max, 160 * MS);
    assert_eq!(link.stats().late_max, 10 * MS);
    assert_eq!(link.stats().mean_late(), 5 * MS);
    link.reset_stats();
    assert_eq!(link.stats(), &LinkStats::default());
}

#[test]
fn jitter_without_reorder_keeps_the_order() {
    let mut link = link("delay=50,jitter=20");
    let out = run(&mut link, 2000, 200, MS);
    let ids = accepted(&out);
    assert_eq!(ids.len(), 2000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "reordered");
    // The delays still vary: not all 50 ms.
    let delays: Vec<Duration> = out.iter().map(|(id, at, _)| *at - MS * *id).collect();
    assert!(delays.iter().any(|d| *d > 60 * MS));
    assert!(delays.iter().all(|d| *d >= 30 * MS && *d <= 70 * MS), "{:?}", delays.iter().max());
}

#[test]
fn jitter_with_reorder_reorders_within_its_bounds() {
    let mut link = link("delay=50,jitter=20,reorder");
    let out = run(&mut link, 2000, 200, MS);
    let ids = accepted(&out);
    assert_eq!(ids.len(), 2000);
    assert!(ids.windows(2).any(|w| w[0] > w[1]), "never reordered");
    for (id, at, _) in &out {
        let delay = *at - MS * *id;
        assert!(delay >= 30 * MS && delay <= 70 * MS, "packet {id}: {delay:?}");
    }
}

#[test]
fn random_loss_drops_its_share() {
    let mut link = link("loss=8");
    let out = run(&mut link, 20_000, 100, MS);
    let lost = count(&out, DropReason::Loss);
    assert!((1400..=1800).contains(&lost), "{lost} of 20000 lost at 8 %");
    assert_eq!(link.stats().dropped_loss as usize, lost);
    assert_eq!(accepted(&out).len() + lost, 20_000);
}

#[test]
fn burst_loss_comes_in_bursts() {
    // Into Bad with 1 %, out with 25 %: bursts of 4 packets on average, 3.8 % of packets lost.
    let mut link = link("burst=1/25");
    let out = run(&mut link, 50_000, 100, MS);
    let lost: Vec<bool> = {
        let mut by_id = vec![false; 50_000];
        for (id, _, v) in &out {
            by_id[*id as usize] = *v == Some(DropReason::Burst);
        }
        by_id
    };
    let n_lost = lost.iter().filter(|l| **l).count();
    let n_bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
    let mean_burst = n_lost as f64 / n_bursts as f64;
    assert!((1400..=2500).contains(&n_lost), "{n_lost} lost");
    assert!((3.0..=5.0).contains(&mean_burst), "mean burst {mean_burst}");
}

#[test]
fn rate_limit_paces_packets_at_the_link_rate() {
    // 600 kbit/s: a 1200-byte packet takes 16 ms on the wire.
    let mut link = link("rate=600,limit-ms=1000");
    let t0 = Instant::now();
    for id in 0..3 {
        link.handle_packet(t0, id, 1200);
    }
    assert_eq!(
        drain(&mut link, t0, t0 + Duration::from_secs(1)),
        vec![(0, 16 * MS, None), (1, 32 * MS, None), (2, 48 * MS, None)]
    );
}

#[test]
fn an_overloaded_bottleneck_queues_up_to_its_limit_then_drops_tail() {
    // 1 Mbit/s offered (1250-byte packets every 10 ms) into 600 kbit/s with an 80 ms queue
    // (6000 bytes): the queuing delay grows to about 80 ms, then packets are dropped, and what
    // gets through is the link's rate.
    let mut link = link("rate=600,limit-ms=80");
    let out = run(&mut link, 1000, 1250, 10 * MS);
    let dropped = count(&out, DropReason::QueueFull);
    let passed = accepted(&out).len();
    assert_eq!(passed + dropped, 1000);
    // 10 s of 600 kbit/s is 600 packets of 1250 bytes (and the queue's content at the end).
    assert!((595..=610).contains(&passed), "{passed} passed");
    let first_drop = out.iter().filter(|(_, _, v)| v.is_some()).map(|(id, _, _)| *id).min().unwrap();
    // The queue fills at 400 kbit/s of excess: 6000 bytes in about 120 ms.
    assert!((8..=20).contains(&first_drop), "first drop at packet {first_drop}");
    let stats = link.stats();
    assert!(stats.peak_backlog_bytes <= 6000, "{}", stats.peak_backlog_bytes);
    // Packets wait in the queue up to its limit plus their own time on the wire.
    assert!(
        stats.added_delay_max > 70 * MS && stats.added_delay_max <= 80 * MS + 17 * MS,
        "{:?}",
        stats.added_delay_max
    );
    // Order is kept.
    let ids = accepted(&out);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_link_under_its_rate_adds_only_the_time_on_the_wire() {
    let mut link = link("rate=600,limit-ms=80");
    let out = run(&mut link, 500, 500, 20 * MS); // 200 kbit/s
    assert_eq!(accepted(&out).len(), 500);
    // 500 bytes at 600 kbit/s: 6.67 ms.
    let max = link.stats().added_delay_max;
    assert!(max >= 6 * MS && max <= 7 * MS, "{max:?}");
}

#[test]
fn a_tiny_queue_still_passes_one_packet_at_a_time() {
    let mut link = link("rate=100,limit-bytes=10");
    let t0 = Instant::now();
    link.handle_packet(t0, 1, 1200);
    link.handle_packet(t0, 2, 1200);
    assert_eq!(link.poll_output(t0), Output::Drop(2, DropReason::QueueFull));
    assert_eq!(link.poll_output(t0), Output::Timeout(t0 + 96 * MS));
}

#[test]
fn delay_comes_after_the_bottleneck() {
    let mut link = link("delay=100,rate=600,limit-ms=1000");
    let t0 = Instant::now();
    link.handle_packet(t0, 1, 1200);
    link.handle_packet(t0, 2, 1200);
    assert_eq!(
        drain(&mut link, t0, t0 + Duration::from_secs(1)),
        vec![(1, 116 * MS, None), (2, 132 * MS, None)]
    );
}

#[test]
fn a_cut_drops_new_and_held_packets_until_restored() {
    let mut link = link("delay=100");
    let t0 = Instant::now();
    link.handle_packet(t0, 1, 100);
    link.set_cut(true);
    link.handle_packet(t0 + 10 * MS, 2, 100);
    assert_eq!(link.poll_output(t0 + 10 * MS), Output::Drop(2, DropReason::Cut));
    // Packet 1 was on the wire when the link was cut: lost too, when it would have arrived.
    assert_eq!(link.poll_output(t0 + 100 * MS), Output::Drop(1, DropReason::Cut));
    link.set_cut(false);
    link.handle_packet(t0 + 200 * MS, 3, 100);
    assert_eq!(link.poll_output(t0 + 300 * MS), Output::Accept(3));
    assert_eq!(link.stats().dropped_cut, 2);
    assert_eq!(link.stats().packets_out, 1);
}

#[test]
fn new_settings_apply_to_new_packets_only() {
    let mut link = link("delay=100");
    let t0 = Instant::now();
    link.handle_packet(t0, 1, 100);
    link.set_config(LinkConfig::default());
    link.handle_packet(t0 + MS, 2, 100);
    // No reorder: packet 2 waits for packet 1, which keeps its 100 ms.
    assert_eq!(link.poll_output(t0 + MS), Output::Timeout(t0 + 100 * MS));
    assert_eq!(link.poll_output(t0 + 100 * MS), Output::Accept(1));
    assert_eq!(link.poll_output(t0 + 100 * MS), Output::Accept(2));
}

#[test]
fn flush_hands_back_held_packets_in_order() {
    let mut link = link("delay=100");
    let t0 = Instant::now();
    for id in [5, 6, 7] {
        link.handle_packet(t0, id, 100);
    }
    assert_eq!(link.flush(), vec![5, 6, 7]);
    assert_eq!(link.poll_output(t0 + Duration::from_secs(1)), Output::Idle);
}

#[test]
fn same_seed_same_losses() {
    let losses = |seed| {
        let mut link = Link::new(spec::parse("loss=30,jitter=5,delay=10").unwrap(), seed);
        run(&mut link, 200, 100, MS)
    };
    assert_eq!(losses(1), losses(1));
    assert_ne!(losses(1), losses(2));
}
