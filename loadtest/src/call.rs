//! `loadtest call`: one class call with N participants, each a [`crate::client`], and the figures
//! it prints. The teacher joins first and starts the session, then the parents one by one. Once
//! everyone is in and a warm-up has passed, a measurement window starts; speakers change every
//! `--speaker-period` all along. After the window the participants leave and [`crate::report`]
//! reads what they recorded: admission and join times, what each slot delivered against what it
//! should have, how fast slots followed a new speaker, and the server's CPU per forwarded packet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::watch;

use crate::client::{self, ClientConfig, Progress, SlotPlan};
use crate::media::SpeakerSchedule;
use crate::report::Turn;
use crate::server::{cpu_seconds, machine_cpu_seconds, udp_socket_drops, Metrics};
use crate::timeline::{ms_since, ClientReport, Ms};
use crate::{mint, ServerArgs};

mod summary;
use summary::Summary;

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
    /// Join without end-to-end encryption (no public key, frames in clear), as a browser without
    /// encoded transforms does; the class then allows unencrypted calls. By default every
    /// participant encrypts as the page does (docs/e2ee.md).
    #[arg(long)]
    no_e2ee: bool,
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
        json!({
            "name": "Load test",
            "tier": args.tier,
            "options": { "confort_famille": false, "visio_allow_unencrypted": args.no_e2ee },
        }),
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
            e2ee: !args.no_e2ee,
            tcp_bind: None,
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
