//! `loadtest call`: one class call with N participants, each a [`crate::client`], and the figures
//! it prints. The teacher joins first and starts the session, then the parents one by one. Once
//! everyone is in and a warm-up has passed, a measurement window starts; speakers change every
//! `--speaker-period` all along. After the window the participants leave and [`crate::report`]
//! reads what they recorded: admission and join times, what each slot delivered against what it
//! should have, how fast slots followed a new speaker, and the server's CPU per forwarded packet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use models::visio::SlotKind;
use serde_json::json;
use tokio::sync::watch;

use crate::client::{self, ClientConfig, Progress, SlotPlan};
use crate::media::SpeakerSchedule;
use crate::report::{self, percentile, Delivery, DeliveryRules, Publishers, Turn};
use crate::server::{cpu_seconds, machine_cpu_seconds, udp_socket_drops, Metrics};

use crate::timeline::{ms_since, ClientReport, Ms, SlotChange};
use crate::{mint, ServerArgs};

#[derive(clap::Args)]
pub struct CallArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, default_value = "loadtest")]
    class: String,
    /// Tier of the class: `plus` (70 at once) or `standard` (8).
    #[arg(long, default_value = "plus")]
    tier: String,
    /// Participants, the teacher included.
    #[arg(long, default_value_t = 8)]
    participants: usize,
    /// How many of them have a camera on (the first ones; all have a microphone). Default: all.
    #[arg(long)]
    cameras: Option<usize>,
    /// How many speak at once; everyone else sends DTX silence.
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// Seconds between two changes of speakers: the next `--speakers` participants take over
    /// (the teacher speaks in the first turn).
    #[arg(long, default_value_t = 4)]
    speaker_period: u64,
    /// Audio slots each participant declares (the server fills 4 by default: the teacher and
    /// three others).
    #[arg(long, default_value_t = 4)]
    audio_slots: usize,
    /// Thumbnail slots each participant declares (plus one stage).
    #[arg(long, default_value_t = 9)]
    thumbnails: usize,
    /// Seconds between everyone being in and the measurement window.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pause between two joins.
    #[arg(long, default_value_t = 50)]
    join_interval_ms: u64,
    /// Local address the clients' UDP sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: std::net::IpAddr,
    /// The server's pid, to report its CPU use over the window (Linux).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Least share of the expected packets each participant's slots must deliver.
    #[arg(long, default_value_t = 0.98)]
    min_delivery: f64,
    /// Also print one line per participant: its delivery and the slot changes it was told of.
    #[arg(long)]
    per_participant: bool,
    /// Send this VP8 clip (an IVF file, played in a loop) instead of synthetic video, so that
    /// browsers in the call decode it. Video delivery is then not counted (no packet counter).
    #[arg(long)]
    video_ivf: Option<std::path::PathBuf>,
    /// Every participant is a parent (`lt-parent-0`...): the session must already run, started
    /// by a teacher from elsewhere (a browser).
    #[arg(long)]
    no_teacher: bool,
    /// Write each turn of speakers as a JSON line: its start (Unix milliseconds) and the display
    /// names that speak in it, for a test that checks what pages show.
    #[arg(long)]
    speaker_log: Option<std::path::PathBuf>,
}

fn user_of(participant_idx: usize, no_teacher: bool) -> String {
    if participant_idx == 0 && !no_teacher {
        "lt-teacher".into()
    } else {
        format!("lt-parent-{participant_idx}")
    }
}

/// What each participant is called on the pages.
fn display_name(participant_idx: usize) -> String {
    format!("Participant {participant_idx}")
}

async fn setup(args: &CallArgs, http: &reqwest::Client) -> anyhow::Result<()> {
    let put = |path: String, body: serde_json::Value| {
        http.put(format!("{}{path}", args.server.url)).bearer_auth(&args.server.api_key).json(&body).send()
    };
    let class = put(
        format!("/v1/classes/{}", args.class),
        json!({ "name": "Load test", "tier": args.tier, "options": { "confort_famille": false } }),
    )
    .await?;
    anyhow::ensure!(class.status().is_success(), "creating the class: {}", class.text().await?);
    for idx in 0..args.participants {
        let role = if idx == 0 && !args.no_teacher { "teacher" } else { "parent" };
        let user = user_of(idx, args.no_teacher);
        let member = put(
            format!("/v1/classes/{}/members/{user}", args.class),
            json!({ "display_name": display_name(idx), "role": role, "approved": true }),
        )
        .await?;
        anyhow::ensure!(member.status().is_success(), "adding {user}: {}", member.text().await?);
    }
    Ok(())
}

/// The server's CPU time and counters at one moment.
struct Sample {
    at: Instant,
    cpu: Option<f64>,
    metrics: Option<Metrics>,
    /// Receive-buffer drops on the server's UDP sockets and on this process's.
    server_udp_drops: Option<u64>,
    own_udp_drops: Option<u64>,
    own_cpu: Option<f64>,
    machine_cpu: Option<f64>,
}

const FORWARDED: &str = "sfu_rtp_packets_total";
const OUT: &str = "direction=\"out\"";

async fn sample(http: &reqwest::Client, args: &CallArgs) -> Sample {
    let metrics = Metrics::scrape(http, &args.server.url).await.ok();
    let cpu = args.server_pid.and_then(cpu_seconds);
    Sample {
        at: Instant::now(),
        cpu,
        metrics,
        server_udp_drops: args.server_pid.and_then(udp_socket_drops),
        own_udp_drops: udp_socket_drops(std::process::id()),
        own_cpu: cpu_seconds(std::process::id()),
        machine_cpu: machine_cpu_seconds(),
    }
}

fn forwarded(sample: &Sample) -> Option<f64> {
    sample.metrics.as_ref().map(|m| m.sum(FORWARDED, OUT))
}

/// How long the late packets of the window get to arrive before everyone leaves.
const DRAIN: Duration = Duration::from_secs(1);
/// How often the server's counters are read during the window: the SFU adds its packet counts
/// to them every few seconds (`sfu.stats_interval`), so CPU is compared between two such flushes.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

pub async fn call(args: CallArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.participants >= 2, "at least 2 participants");
    let cameras = args.cameras.unwrap_or(args.participants).min(args.participants);
    let http = reqwest::Client::new();
    setup(&args, &http).await.context("setting up the class through the sync API")?;
    let ws_url = format!("{}/v1/classes/{}/visio/ws", args.server.url.replacen("http", "ws", 1), args.class);

    let epoch = Instant::now();
    let period = Duration::from_secs(args.speaker_period.max(1));
    let schedule = Arc::new(SpeakerSchedule::rotating(epoch, period, args.speakers, args.participants));
    let slots = SlotPlan { audio: args.audio_slots, stage: true, thumbnails: args.thumbnails };
    let clip = match &args.video_ivf {
        Some(path) => Some(Arc::new(crate::ivf::Clip::read(path)?)),
        None => None,
    };
    if let Some(path) = &args.speaker_log {
        write_speaker_log(path, &schedule, args.participants, epoch)?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut progress = Vec::new();
    let mut tasks = Vec::new();
    for idx in 0..args.participants {
        let config = ClientConfig {
            participant_idx: idx,
            ws_url: ws_url.clone(),
            token: mint(&args.server.jwt_secret, &user_of(idx, args.no_teacher))?,
            camera: idx < cameras,
            slots,
            speakers: schedule.clone(),
            bind_ip: args.bind_ip,
            epoch,
            clip: clip.clone(),
        };
        let mut stop_rx = stop_rx.clone();
        let stop = async move {
            // An error means the sender is gone: stop as well.
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        let client_progress = Arc::new(Progress::default());
        tasks.push(tokio::spawn(client::run(config, client_progress.clone(), stop)));
        progress.push(client_progress);
        if idx == 0 && !args.no_teacher {
            // The teacher starts the session; parents who come first would wait.
            let admitted = client::wait_for(&progress[0].admitted, Duration::from_secs(10)).await;
            anyhow::ensure!(
                admitted || Progress::get(&progress[0].done),
                "the teacher was not admitted within 10 s"
            );
        }
        tokio::time::sleep(Duration::from_millis(args.join_interval_ms)).await;
    }

    // Everyone in and receiving (or failed), then a warm-up, then the window.
    let all_in_by =
        Instant::now() + Duration::from_secs(20) + Duration::from_millis(100) * args.participants as u32;
    let everyone_in = || {
        progress
            .iter()
            .all(|p| Progress::get(&p.done) || (Progress::get(&p.admitted) && Progress::get(&p.receiving)))
    };
    while Instant::now() < all_in_by && !everyone_in() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let mut samples = vec![sample(&http, &args).await];
    let window_start = samples[0].at;
    let window_end = window_start + Duration::from_secs(args.seconds);
    while Instant::now() < window_end {
        tokio::time::sleep(SAMPLE_EVERY.min(window_end.saturating_duration_since(Instant::now()))).await;
        samples.push(sample(&http, &args).await);
    }
    tokio::time::sleep(DRAIN).await;
    let _ = stop_tx.send(true);
    let mut reports = Vec::new();
    for task in tasks {
        let report = match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(report)) => report,
            Ok(Err(err)) => {
                ClientReport { error: Some(format!("the client panicked: {err}")), ..Default::default() }
            }
            Err(_) => ClientReport { error: Some("did not stop within 10 s".into()), ..Default::default() },
        };
        reports.push(report);
    }

    let window = (ms_since(epoch, window_start), ms_since(epoch, window_end));
    let turns = turns(&schedule, args.participants, window.0, ms_since(epoch, window_end + DRAIN), epoch);
    let summary =
        Summary { args: &args, cameras, reports: &reports, window, turns: &turns, samples: &samples };
    Ok(summary.print())
}

/// The turns of speakers for the next ten minutes, a JSON line each: `{"at_unix_ms", "speakers"}`.
fn write_speaker_log(
    path: &std::path::Path,
    schedule: &SpeakerSchedule,
    n_participants: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let unix_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.saturating_sub(epoch.elapsed());
    let mut lines = String::new();
    for round in 0..600 {
        let start = schedule.round_start(round);
        let at = unix_epoch + start.saturating_duration_since(epoch);
        let speakers: Vec<String> = (0..n_participants)
            .filter(|idx| schedule.speaks_in_round(*idx, round))
            .map(display_name)
            .collect();
        lines.push_str(&json!({ "at_unix_ms": at.as_millis() as u64, "speakers": speakers }).to_string());
        lines.push('\n');
        if schedule.next_change(start).is_none() {
            break;
        }
    }
    std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))
}

/// The turns of speakers that start and end within `from..to`.
fn turns(schedule: &SpeakerSchedule, n_participants: usize, from: Ms, to: Ms, epoch: Instant) -> Vec<Turn> {
    let mut turns = Vec::new();
    let mut round = schedule.round_at(epoch + Duration::from_millis(u64::from(from)));
    loop {
        round += 1;
        let start = ms_since(epoch, schedule.round_start(round));
        let end = ms_since(epoch, schedule.round_start(round + 1));
        if end > to {
            return turns;
        }
        let new_speakers = (0..n_participants)
            .filter(|idx| schedule.speaks_in_round(*idx, round) && !schedule.speaks_in_round(*idx, round - 1))
            .collect();
        turns.push(Turn { start, end, new_speakers });
    }
}

struct Summary<'a> {
    args: &'a CallArgs,
    cameras: usize,
    reports: &'a [ClientReport],
    window: (Ms, Ms),
    turns: &'a [Turn],
    samples: &'a [Sample],
}

fn ms_stats(values: &[f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    format!("p50 {:.0} ms, p95 {:.0} ms", percentile(values, 0.5), percentile(values, 0.95))
}

impl Summary<'_> {
    /// Prints the figures; returns whether the call passed.
    fn print(&self) -> bool {
        let args = self.args;
        let mut failures: Vec<String> = Vec::new();
        for (idx, report) in self.reports.iter().enumerate() {
            if let Some(err) = &report.error {
                failures.push(format!("{}: {err}", user_of(idx, args.no_teacher)));
            }
            if !report.unexpected.is_empty() {
                eprintln!(
                    "{}: unexpected from the server: {}",
                    user_of(idx, args.no_teacher),
                    report.unexpected.join(", ")
                );
            }
        }
        let n_admitted = self.reports.iter().filter(|r| r.admitted.is_some()).count();
        if n_admitted < args.participants {
            failures.push(format!("{n_admitted} of {} participants admitted", args.participants));
        }
        let span = |from: Option<Ms>, to: Option<Ms>| Some(f64::from(to?.checked_sub(from?)?));
        let collect =
            |f: &dyn Fn(&ClientReport) -> Option<f64>| self.reports.iter().filter_map(f).collect::<Vec<_>>();
        let joins = collect(&|r| span(r.ws_opened, r.joined));
        let connects = collect(&|r| span(r.join_sent, r.connected));
        let firsts = collect(&|r| span(r.join_sent, r.first_media));

        println!(
            "call: {} participants requested ({} tier), {} with a camera, {} speaking at a time, turns of {} s; \
             slots {} audio + 1 stage + {} thumbnails",
            args.participants, args.tier, self.cameras, args.speakers, args.speaker_period, args.audio_slots,
            args.thumbnails
        );
        println!("admitted            {n_admitted} / {}", args.participants);
        println!("join                {}  (WebSocket open to `joined`)", ms_stats(&joins));
        println!("ICE+DTLS connected  {}  (join sent to connected)", ms_stats(&connects));
        println!("first media         {}  (join sent to first packet on a slot)", ms_stats(&firsts));

        let rules = DeliveryRules {
            window: self.window,
            switch_guard: 250,
            keyframe_lookback: 50,
            count_video: args.video_ivf.is_none(),
        };
        if !rules.count_video {
            println!("video delivery      not counted (--video-ivf: a real clip carries no packet counter)");
        }
        let publishers = Publishers::new(self.reports);
        let mut total = Delivery::default();
        let mut ratios = Vec::new();
        let mut missing = Vec::new();
        for (idx, receiver) in self.reports.iter().enumerate() {
            let delivery = report::delivery(receiver, &publishers, rules, &mut missing);
            total.add(&delivery);
            if args.per_participant {
                let changes: Vec<String> = receiver
                    .slot_changes
                    .iter()
                    .filter(|c| (self.window.0..self.window.1).contains(&c.at))
                    .map(|c| {
                        let who = c
                            .csrc
                            .and_then(|ssrc| publishers.owner(ssrc))
                            .map_or("-".into(), |i| i.to_string());
                        format!("{:.1}s:{}={who}", f64::from(c.at - self.window.0) / 1e3, c.slot_idx)
                    })
                    .collect();
                println!(
                    "  {idx:>3} {}: audio {}/{}, video {}/{}; slot changes (time:slot=participant) {}",
                    receiver.participant_id.as_deref().unwrap_or("?"),
                    delivery.audio_arrived,
                    delivery.audio_expected,
                    delivery.video_arrived,
                    delivery.video_expected,
                    changes.join(" ")
                );
            }
            match delivery.ratio() {
                Some(ratio) => {
                    ratios.push(ratio);
                    if ratio < args.min_delivery {
                        failures.push(format!(
                            "{}: slots delivered {} of {} packets ({:.1} %; audio {}/{}, video {}/{})",
                            user_of(idx, args.no_teacher),
                            delivery.arrived(),
                            delivery.expected(),
                            ratio * 100.0,
                            delivery.audio_arrived,
                            delivery.audio_expected,
                            delivery.video_arrived,
                            delivery.video_expected
                        ));
                    }
                }
                None if receiver.admitted.is_some() => failures.push(format!(
                    "{}: its slots were to carry nothing in the window",
                    user_of(idx, args.no_teacher)
                )),
                None => {}
            }
        }
        let window_s = f64::from(self.window.1 - self.window.0) / 1e3;
        println!(
            "delivery            min {:.4}, p5 {:.4}, median {:.4} over {} participants (minimum {})",
            percentile(&ratios, 0.0),
            percentile(&ratios, 0.05),
            percentile(&ratios, 0.5),
            ratios.len(),
            args.min_delivery
        );
        println!(
            "  packets           audio {} of {} expected, video {} of {}; {:.0} packets/s into all slots",
            total.audio_arrived,
            total.audio_expected,
            total.video_arrived,
            total.video_expected,
            total.arrived() as f64 / window_s
        );
        if !missing.is_empty() {
            // Losses bunched at a few moments point at a stall (of the server, or of this
            // machine) rather than at forwarding.
            let mut by_100ms = std::collections::BTreeMap::<Ms, u64>::new();
            for at in &missing {
                *by_100ms.entry(at / 100).or_default() += 1;
            }
            let mut worst: Vec<(Ms, u64)> = by_100ms.into_iter().collect();
            worst.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            let worst: Vec<String> = worst
                .iter()
                .take(5)
                .map(|(bucket, n)| {
                    format!("{n} sent at +{:.1} s", f64::from(bucket * 100 - self.window.0) / 1e3)
                })
                .collect();
            println!("  missing           {} packets; most in 100 ms: {}", missing.len(), worst.join(", "));
        }
        if total.bad_announcements > 0 {
            failures.push(format!(
                "{} slot announcements named an unknown SSRC or the wrong participant",
                total.bad_announcements
            ));
        }
        let unattributed: u64 = self.reports.iter().map(|r| r.n_unattributed).sum();
        let in_window = |at: &Ms| (self.window.0..self.window.1).contains(at);
        let count = |f: &dyn Fn(&ClientReport) -> usize| self.reports.iter().map(f).sum::<usize>();
        let keyframe_requests = count(&|r| r.keyframe_requests.iter().filter(|at| in_window(at)).count());
        let keyframes = count(&|r| r.sent.keyframes.iter().filter(|at| in_window(at)).count());
        let changes = |audio: bool| {
            count(&|r| {
                let is_audio =
                    |c: &&SlotChange| (r.slot_kinds.get(c.slot_idx) == Some(&SlotKind::Audio)) == audio;
                r.slot_changes.iter().filter(|c| in_window(&c.at)).filter(is_audio).count()
            })
        };
        println!(
            "  in the window     {} audio and {} video slot changes announced; {keyframes} keyframes sent, \
             {keyframe_requests} keyframe requests received; {unattributed} packets without a slot or CSRC (whole run)",
            changes(true),
            changes(false)
        );

        let latencies = report::switch_latencies(self.reports, self.turns);
        let line = |values: &[f64], missed: &[(usize, usize)]| {
            if values.is_empty() && missed.is_empty() {
                return "-".to_owned();
            }
            let mut text = format!(
                "p50 {:.0} / p95 {:.0} / max {:.0} ms over {} (speaker, receiver) pairs; {} pairs never within the turn",
                percentile(values, 0.5),
                percentile(values, 0.95),
                percentile(values, 1.0),
                values.len(),
                missed.len()
            );
            let shown: Vec<String> = missed.iter().take(6).map(|(s, r)| format!("{s}->{r}")).collect();
            if !shown.is_empty() {
                text += &format!(
                    " (speaker->receiver: {}{})",
                    shown.join(", "),
                    if missed.len() > 6 { ", ..." } else { "" }
                );
            }
            text
        };
        println!("speaker switch      {} turns in the window", self.turns.len());
        println!("  to `slots`        {}", line(&latencies.slots, &latencies.slots_missed));
        println!("  to `speakers`     {}", line(&latencies.speakers, &latencies.speakers_missed));
        self.print_server(window_s);

        for failure in &failures {
            eprintln!("FAIL: {failure}");
        }
        let ok = failures.is_empty();
        println!("{}", if ok { "PASS" } else { "FAIL" });
        ok
    }

    fn print_server(&self, window_s: f64) {
        let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) else { return };
        // The forwarded-packet counter moves when the SFU flushes its stats: compare the CPU
        // between the first and the last flush seen in the window when there are two.
        let flushes: Vec<&Sample> = self
            .samples
            .windows(2)
            .filter(|pair| forwarded(&pair[1]) != forwarded(&pair[0]))
            .map(|pair| &pair[1])
            .collect();
        let (from, to, exact) = match (flushes.first(), flushes.last()) {
            (Some(a), Some(b)) if a.at < b.at => (*a, *b, true),
            _ => (first, last, false),
        };
        let seconds = (to.at - from.at).as_secs_f64();
        let cpu = from.cpu.zip(to.cpu).map(|(a, b)| b - a);
        let packets = forwarded(from).zip(forwarded(to)).map(|(a, b)| b - a);
        let share = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a) / window_s * 100.0);
        let server = share(first.cpu, last.cpu);
        let own = share(first.own_cpu, last.own_cpu);
        let machine = share(first.machine_cpu, last.machine_cpu);
        match server {
            Some(server) => println!("server CPU          {server:.1} % of one core over the window"),
            None => println!("server CPU          - (no --server-pid, or no /proc)"),
        }
        if let (Some(own), Some(machine)) = (own, machine) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            println!(
                "machine CPU         load test {own:.1} %, everything else {:.1} % of one core ({cores} cores): \
                 figures are only meaningful when the latter is near 0",
                (machine - own - server.unwrap_or(0.0)).max(0.0)
            );
        }
        match packets {
            Some(packets) => {
                let note = if exact {
                    "between two stats flushes"
                } else {
                    "approximate: fewer than two stats flushes seen"
                };
                println!(
                    "forwarded packets   {packets:.0} in {seconds:.1} s ({:.0}/s; {note})",
                    packets / seconds.max(1e-9)
                );
                match cpu {
                    Some(cpu) if packets > 0.0 => {
                        println!("server CPU per forwarded packet: {:.2} µs", cpu / packets * 1e6)
                    }
                    _ => println!("server CPU per forwarded packet: -"),
                }
            }
            None => println!("forwarded packets   - (no /metrics)"),
        }
        let delta =
            |a: Option<u64>, b: Option<u64>| a.zip(b).map_or("-".to_owned(), |(a, b)| (b - a).to_string());
        println!(
            "UDP receive-buffer drops in the window: server sockets {}, load-test sockets {}",
            delta(first.server_udp_drops, last.server_udp_drops),
            delta(first.own_udp_drops, last.own_udp_drops)
        );
        let (Some(before), Some(after)) = (first.metrics.as_ref(), last.metrics.as_ref()) else { return };
        // Deltas, not exact to the window: the packet counters move at each stats flush.
        for family in [
            "sfu_rtp_packets_total",
            "sfu_nacks_received_total",
            "sfu_retransmissions_total",
            "sfu_keyframe_requests_total",
            "sfu_queue_drops_total",
            "sfu_renegotiations_total",
        ] {
            let series: Vec<String> = after
                .family(family)
                .map(|(labels, value)| {
                    let was = before.family(family).find(|(l, _)| *l == labels).map_or(0.0, |(_, v)| v);
                    format!("{labels} +{:.0} (total {value:.0})", value - was)
                })
                .collect();
            let series = if series.is_empty() { "absent".to_owned() } else { series.join(", ") };
            println!("{family} {series}");
        }
    }
}
