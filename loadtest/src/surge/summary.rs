//! What `loadtest surge` prints once everyone has left, and whether the surge passed: everyone
//! got in within `--give-up-after`, nothing timed out, class mates saw each other whatever
//! replica they came through, and every sealed key and frame of end-to-end encryption opened.

use std::collections::{BTreeMap, HashSet};

use super::figures::{cpu_percent, mean_cpu_percent, rates, Spread};
use super::participant::{Outcome, Severity};
use super::{Sample, SurgeArgs};
use crate::server::Metrics;
use crate::timeline::Ms;

pub(super) struct Summary<'a> {
    pub args: &'a SurgeArgs,
    pub outcomes: &'a [Outcome],
    pub samples: &'a [Sample],
    /// Each replica's `/metrics` before and after.
    pub metrics: (&'a [Option<Metrics>], &'a [Option<Metrics>]),
    /// Accept queue overflows on this machine during the surge (every listening socket).
    pub listen_overflows: Option<u64>,
}

/// Server counters worth showing after a surge, by family.
const SERVER_COUNTERS: [&str; 2] = ["limits_refused_total", "sfu_joins_refused_total"];

/// The timeline's step, in milliseconds.
const TIMELINE_STEP: Ms = 5000;

/// A class mate admitted less than this before one stopped reading (to leave) may not have been
/// announced to it yet: on a saturated machine a message can wait that long in a socket.
const OVERLAP_MS: Ms = 2000;

impl Summary<'_> {
    pub fn print(&self) -> bool {
        let args = self.args;
        let outcomes = self.outcomes;
        let mut failures = Vec::new();
        println!(
            "surge: {} classes x {} people ({:.0} % Plus), starts over {} s ({:?}), parents within {} s of their \
             teacher, hold {} s, {} replica(s) picked {:?}, e2ee {}, {}",
            args.classes,
            args.people,
            args.plus_share * 100.0,
            args.window,
            args.profile,
            args.members_within,
            args.hold,
            args.url.len(),
            args.pick,
            if args.no_e2ee { "off" } else { "on" },
            if args.source_addresses > 0 {
                format!("{} source addresses", args.source_addresses)
            } else {
                "one source address".into()
            }
        );

        let n_in = outcomes.iter().filter(|o| o.got_in()).count();
        let not_in: Vec<&Outcome> = outcomes.iter().filter(|o| !o.got_in()).collect();
        println!("got in              {n_in} / {} (admitted and ICE+DTLS connected)", outcomes.len());
        if !not_in.is_empty() {
            let mut why: BTreeMap<&str, usize> = BTreeMap::new();
            for outcome in &not_in {
                *why.entry(outcome.gave_up.as_deref().unwrap_or("?")).or_default() += 1;
            }
            for (reason, n) in why.iter().rev().take(8) {
                println!("  never in          {n}: {reason}");
            }
        }
        if not_in.len() > args.allow_not_in {
            failures.push(format!(
                "{} participants never got in (allowed: {})",
                not_in.len(),
                args.allow_not_in
            ));
        }
        let broken: Vec<&str> = outcomes.iter().filter_map(|o| o.broken.as_deref()).collect();
        if !broken.is_empty() {
            println!("  dropped once in   {} (first: {})", broken.len(), broken[0]);
            failures.push(format!("{} participants lost their call before leaving", broken.len()));
        }

        // Joins per second: `joined` answers of those who got in, from the first arrival to the
        // last of them; against the arrivals offered.
        let first_arrival = outcomes.iter().map(|o| o.arrived).min().unwrap_or(0);
        let joined: Vec<Ms> = outcomes.iter().filter(|o| o.got_in()).filter_map(|o| o.joined).collect();
        let last_joined = joined.iter().copied().max().unwrap_or(first_arrival);
        let arrivals: Vec<Ms> = outcomes.iter().map(|o| o.arrived).collect();
        let last_arrival = arrivals.iter().copied().max().unwrap_or(first_arrival);
        let offered = rates(&arrivals, first_arrival, last_arrival + 1);
        let held = rates(&joined, first_arrival, last_joined + 1);
        println!(
            "arrivals            {:.1}/s over {:.1} s, peak {}/s, best 10 s {:.1}/s",
            offered.mean,
            f64::from(last_arrival - first_arrival) / 1e3,
            offered.peak_1s,
            offered.best_10s
        );
        println!(
            "joins held          {:.1}/s over {:.1} s (first arrival to last `joined`), peak {}/s, best 10 s {:.1}/s",
            held.mean,
            f64::from(last_joined - first_arrival) / 1e3,
            held.peak_1s,
            held.best_10s
        );

        let span = |from: Option<Ms>, to: Option<Ms>| Some(f64::from(to?.checked_sub(from?)?));
        let spread = |f: &dyn Fn(&Outcome) -> Option<f64>| {
            Spread::of(&outcomes.iter().filter(|o| o.got_in()).filter_map(f).collect::<Vec<_>>())
        };
        println!(
            "to `joined`         {}  (arrival: page and API calls, retries)",
            Spread::line(spread(&|o| span(Some(o.arrived), o.joined)))
        );
        println!(
            "  from 1st join     {}  (first WebSocket attempt to `joined`)",
            Spread::line(spread(&|o| span(o.first_join_attempt, o.joined)))
        );
        println!(
            "to admitted         {}  (arrival to `admitted`; parents may wait for their teacher)",
            Spread::line(spread(&|o| span(Some(o.arrived), o.admitted)))
        );
        println!(
            "to media connected  {}  (arrival to ICE+DTLS connected)",
            Spread::line(spread(&|o| span(Some(o.arrived), o.connected)))
        );

        // Until the last one left: the CPU of holding everyone shows too.
        let last_left = outcomes.iter().filter_map(|o| o.left).max().unwrap_or(0);
        self.print_timeline(first_arrival, last_left.max(last_joined).max(last_arrival));
        self.print_incidents(&mut failures);
        self.print_class_mates(&mut failures);
        self.print_e2ee(&mut failures);
        self.print_machine(first_arrival, last_joined.max(last_arrival));
        self.print_server_counters();

        for failure in &failures {
            eprintln!("FAIL: {failure}");
        }
        let ok = failures.is_empty();
        println!("{}", if ok { "PASS" } else { "FAIL" });
        ok
    }

    /// Every `TIMELINE_STEP`: arrivals, joins answered, refusals and timeouts, the join latency
    /// of those who arrived then, and CPU: where the surge starts to hurt, and whose CPU was
    /// full by then.
    fn print_timeline(&self, from: Ms, to: Ms) {
        let outcomes = self.outcomes;
        let bucket_of = |at: Ms| (at.saturating_sub(from) / TIMELINE_STEP) as usize;
        let n_buckets = bucket_of(to) + 1;
        let mut arrived = vec![0u64; n_buckets];
        let mut joined = vec![0u64; n_buckets];
        let mut refused = vec![0u64; n_buckets];
        let mut timeouts = vec![0u64; n_buckets];
        let mut latencies = vec![Vec::new(); n_buckets];
        for outcome in outcomes {
            let bucket = bucket_of(outcome.arrived).min(n_buckets - 1);
            arrived[bucket] += 1;
            if let (true, Some(at)) = (outcome.got_in(), outcome.joined) {
                joined[bucket_of(at).min(n_buckets - 1)] += 1;
                latencies[bucket].push(f64::from(at - outcome.arrived));
            }
            for incident in &outcome.incidents {
                let bucket = bucket_of(incident.at).min(n_buckets - 1);
                match incident.severity {
                    Severity::Refused => refused[bucket] += 1,
                    Severity::Timeout => timeouts[bucket] += 1,
                    Severity::Other => {}
                }
            }
        }
        let series = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(Ms, f64)> {
            self.samples.iter().filter_map(|s| Some((s.at, f(s)?))).collect()
        };
        let server: Vec<Vec<(Ms, f64)>> =
            (0..self.args.server_pid.len()).map(|idx| series(&|s| s.servers.get(idx)?.0)).collect();
        let own = series(&|s| s.own_cpu);
        let machine = series(&|s| s.machine_cpu);
        let cpu = |samples: &[(Ms, f64)], start: Ms| {
            mean_cpu_percent(samples, start, start + TIMELINE_STEP).map_or("-".into(), |p| format!("{p:.0}"))
        };
        println!(
            "timeline (every {} s from the first arrival; latency: arrival to `joined` of those who \
             arrived then; CPU in % of one core)",
            TIMELINE_STEP / 1000
        );
        println!(
            "  {:>6} {:>8} {:>7} {:>8} {:>8} {:>18} {:>11} {:>11} {:>8}",
            "from",
            "arrived",
            "joined",
            "refused",
            "timeouts",
            "latency p50 / p95",
            "server CPU",
            "client CPU",
            "machine"
        );
        for bucket in 0..n_buckets {
            let start = from + bucket as Ms * TIMELINE_STEP;
            let latency = Spread::of(&latencies[bucket])
                .map_or("-".into(), |s| format!("{:.0} / {:.0} ms", s.p50, s.p95));
            let server_cpu: Vec<String> = server.iter().map(|samples| cpu(samples, start)).collect();
            let server_cpu = if server_cpu.is_empty() { "-".into() } else { server_cpu.join("+") };
            println!(
                "  {:>5}s {:>8} {:>7} {:>8} {:>8} {:>18} {:>11} {:>11} {:>8}",
                bucket as Ms * TIMELINE_STEP / 1000,
                arrived[bucket],
                joined[bucket],
                refused[bucket],
                timeouts[bucket],
                latency,
                server_cpu,
                cpu(&own, start),
                cpu(&machine, start)
            );
        }
    }

    /// Refusals, timeouts and other failures by kind; retries.
    fn print_incidents(&self, failures: &mut Vec<String>) {
        let outcomes = self.outcomes;
        // Per kind: how many, how many retried, first and last time.
        let mut by_kind: BTreeMap<(Severity, &str), (u64, u64, Ms, Ms)> = BTreeMap::new();
        for incident in outcomes.iter().flat_map(|o| &o.incidents) {
            let entry =
                by_kind.entry((incident.severity, incident.kind.as_str())).or_insert((0, 0, Ms::MAX, 0));
            entry.0 += 1;
            entry.1 += u64::from(incident.retried);
            entry.2 = entry.2.min(incident.at);
            entry.3 = entry.3.max(incident.at);
        }
        let first_arrival = outcomes.iter().map(|o| o.arrived).min().unwrap_or(0);
        let n_retries: u64 = by_kind.values().map(|(_, retried, _, _)| retried).sum();
        let n_retrying = outcomes.iter().filter(|o| o.incidents.iter().any(|i| i.retried)).count();
        let attempts: Vec<f64> = outcomes.iter().map(|o| f64::from(o.n_join_attempts)).collect();
        let n_api: u64 = outcomes.iter().map(|o| u64::from(o.n_api_calls)).sum();
        println!(
            "retries             {n_retries} by {n_retrying} participants; join attempts per participant max {:.0}; \
             {n_api} page/API requests",
            crate::report::percentile(&attempts, 1.0)
        );
        let count = |severity: Severity| {
            by_kind.iter().filter(|((s, _), _)| *s == severity).map(|(_, (n, ..))| n).sum::<u64>()
        };
        println!(
            "refusals / timeouts / other   {} / {} / {}",
            count(Severity::Refused),
            count(Severity::Timeout),
            count(Severity::Other)
        );
        let since = |at: Ms| f64::from(at.saturating_sub(first_arrival)) / 1e3;
        for ((severity, kind), (n, retried, first, last)) in &by_kind {
            let severity = match severity {
                Severity::Refused => "refused",
                Severity::Timeout => "TIMEOUT",
                Severity::Other => "other",
            };
            println!(
                "  {severity:<8} {n:>6} x {kind} ({retried} retried; from +{:.1} s to +{:.1} s)",
                since(*first),
                since(*last)
            );
        }
        let timeouts = count(Severity::Timeout) as usize;
        if timeouts > self.args.allow_timeouts {
            failures.push(format!("{timeouts} timeouts (allowed: {})", self.args.allow_timeouts));
        }
    }

    /// Whether everyone in a class's call at the same time was told of everyone else, through
    /// whichever replica each came: one class, one room.
    fn print_class_mates(&self, failures: &mut Vec<String>) {
        let mut by_class: BTreeMap<usize, Vec<&Outcome>> = BTreeMap::new();
        for outcome in self.outcomes.iter().filter(|o| o.got_in()) {
            by_class.entry(outcome.class_idx).or_default().push(outcome);
        }
        let (mut expected, mut missed, mut split_classes) = (0u64, 0u64, Vec::new());
        let mut examples = Vec::new();
        for (class_idx, members) in &by_class {
            let mut class_missed = 0;
            for viewer in members {
                let seen: HashSet<&str> = viewer.peers_seen.iter().map(String::as_str).collect();
                for other in members.iter().filter(|o| o.member_idx != viewer.member_idx) {
                    let (Some(a), Some(b), Some(a_left), Some(b_left)) =
                        (viewer.admitted, other.admitted, viewer.leaving, other.leaving)
                    else {
                        continue;
                    };
                    if a + OVERLAP_MS >= b_left || b + OVERLAP_MS >= a_left {
                        continue;
                    }
                    expected += 1;
                    if !other.participant_id.as_deref().is_some_and(|id| seen.contains(id)) {
                        class_missed += 1;
                        if examples.len() < 6 {
                            examples.push(format!(
                                "{} member {} ({}, in {:.1}-{:.1} s, {} attempts) was not told of member {} \
                                 ({}, in {:.1}-{:.1} s, {} attempts); it was told of {:?}",
                                super::class_id(*class_idx),
                                viewer.member_idx,
                                viewer.participant_id.as_deref().unwrap_or("?"),
                                f64::from(a) / 1e3,
                                f64::from(a_left) / 1e3,
                                viewer.n_join_attempts,
                                other.member_idx,
                                other.participant_id.as_deref().unwrap_or("?"),
                                f64::from(b) / 1e3,
                                f64::from(b_left) / 1e3,
                                other.n_join_attempts,
                                viewer.peers_seen
                            ));
                        }
                    }
                }
            }
            missed += class_missed;
            if class_missed > 0 {
                split_classes.push(*class_idx);
            }
        }
        let replicas = |class_idx: usize| {
            let set: HashSet<usize> =
                self.outcomes.iter().filter(|o| o.class_idx == class_idx).map(|o| o.replica_idx).collect();
            set.len()
        };
        let n_spread = by_class.keys().filter(|c| replicas(**c) > 1).count();
        println!(
            "class mates seen    {} of {expected} (viewer, class mate in the call at the same time) pairs; \
             {n_spread} classes came through more than one replica",
            expected - missed
        );
        for example in &examples {
            eprintln!("  not told: {example}");
        }
        if missed > 0 {
            let shown: Vec<String> = split_classes.iter().take(8).map(|c| super::class_id(*c)).collect();
            failures.push(format!(
                "{missed} pairs of class mates in the call together were not told of each other \
                 (split rooms?): {}{}",
                shown.join(", "),
                if split_classes.len() > 8 { ", ..." } else { "" }
            ));
        }
    }

    fn print_e2ee(&self, failures: &mut Vec<String>) {
        if self.args.no_e2ee {
            println!("e2ee                off (--no-e2ee)");
            return;
        }
        let sum = |f: &dyn Fn(&Outcome) -> u64| self.outcomes.iter().map(f).sum::<u64>();
        let (sealed, opened, rejected) =
            (sum(&|o| o.keys_sealed), sum(&|o| o.keys_received), sum(&|o| o.keys_rejected));
        let (decrypted, failed) = (sum(&|o| o.frames_decrypted), sum(&|o| o.frames_failed));
        println!(
            "e2ee                sealed keys sent {sealed}, opened {opened}, refused {rejected}; frames decrypted \
             {decrypted}, that did not verify {failed}"
        );
        if rejected > 0 || failed > 0 {
            failures
                .push(format!("e2ee: {rejected} sealed keys did not open, {failed} frames did not verify"));
        }
    }

    /// The server's processes, this one and the machine over the surge (first arrival to the
    /// last `joined` or arrival): mean and busiest second, and the servers' memory.
    fn print_machine(&self, from: Ms, to: Ms) {
        let series = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(Ms, f64)> {
            self.samples.iter().filter_map(|s| Some((s.at, f(s)?))).collect()
        };
        let cpu_line = |samples: &[(Ms, f64)]| -> Option<(f64, f64)> {
            let mean = mean_cpu_percent(samples, from, to)?;
            let peak = cpu_percent(samples)
                .iter()
                .filter(|(at, _)| (from..=to + 1000).contains(at))
                .map(|(_, p)| *p)
                .fold(0.0, f64::max);
            Some((mean, peak))
        };
        let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut server_total = (0.0, 0.0);
        for (idx, pid) in self.args.server_pid.iter().enumerate() {
            let cpu = series(&|s| s.servers.get(idx)?.0);
            let rss: Vec<u64> = self.samples.iter().filter_map(|s| s.servers.get(idx)?.1).collect();
            match cpu_line(&cpu) {
                Some((mean, peak)) => {
                    server_total.0 += mean;
                    server_total.1 += peak;
                    println!(
                        "server {pid:<8}     CPU {mean:.0} % of one core over the surge, busiest second {peak:.0} %; \
                         RSS {} MiB before, peak {} MiB, {} MiB after",
                        rss.first().map_or(0, |k| k / 1024),
                        rss.iter().max().map_or(0, |k| k / 1024),
                        rss.last().map_or(0, |k| k / 1024)
                    );
                }
                None => println!("server {pid:<8}     not readable (another machine, or gone)"),
            }
        }
        if self.args.server_pid.is_empty() {
            println!("server              CPU and memory not sampled (no --server-pid)");
        }
        let own = cpu_line(&series(&|s| s.own_cpu));
        let machine = cpu_line(&series(&|s| s.machine_cpu));
        if let Some((mean, peak)) = own {
            println!(
                "load clients        CPU {mean:.0} % of one core over the surge, busiest second {peak:.0} %"
            );
        }
        if let Some((mean, peak)) = machine {
            println!(
                "machine             CPU {mean:.0} % of one core over the surge, busiest second {peak:.0} % \
                 ({n_cores} cores: {:.0} %)",
                n_cores as f64 * 100.0
            );
            let others = mean - own.map_or(0.0, |o| o.0) - server_total.0;
            println!(
                "  shares            server {:.0} %, load clients {:.0} %, everything else {:.0} % (of one core, mean)",
                server_total.0,
                own.map_or(0.0, |o| o.0),
                others.max(0.0)
            );
            if peak >= n_cores as f64 * 100.0 * 0.9 {
                println!(
                    "  saturated         the machine's cores were all busy at the peak: figures above measure \
                     this machine as much as the server"
                );
            }
        }
    }

    /// What each replica counted itself: refusals by kind and scope, joins refused by code; and
    /// the connections the kernel dropped for a full accept queue.
    fn print_server_counters(&self) {
        if let Some(overflows) = self.listen_overflows {
            println!(
                "accept queues       {overflows} connections dropped for a full accept queue on this machine \
                 (ListenOverflows, all sockets): each costs its client a SYN retry of 1 s or more"
            );
        }
        let (before, after) = self.metrics;
        for (idx, url) in self.args.url.iter().enumerate() {
            let (Some(Some(before)), Some(Some(after))) = (before.get(idx), after.get(idx)) else {
                println!("replica {url}: /metrics not readable");
                continue;
            };
            let mut lines = Vec::new();
            for family in SERVER_COUNTERS {
                for (labels, value) in after.family(family) {
                    let was = before.family(family).find(|(l, _)| *l == labels).map_or(0.0, |(_, v)| v);
                    if value > was {
                        lines.push(format!("{family}{labels} +{}", value - was));
                    }
                }
            }
            let shown = if lines.is_empty() { "no refusal counted".into() } else { lines.join(", ") };
            println!("replica {url}: {shown}");
        }
    }
}
