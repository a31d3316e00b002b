//! `loadtest`: acts as many real call participants against a running server, through its public
//! API only, and prints what they measured.
//!
//! `loadtest call` creates (or updates) a class through the sync API, mints each member's token
//! with the server's HS256 secret, as the class backend does, then joins: the teacher first (who
//! starts the session), then the parents, each a str0m peer connection over UDP. After everyone
//! is in and a warm-up, it counts the packets each participant receives from each other one for
//! the measurement window, and prints join times, delivery against what was sent, and the
//! server's CPU when given its pid. Exit status 1 when a participant failed or received less than
//! `--min-delivery` of what it should have.
//!
//! `loadtest soak` plays a school day in fast motion for minutes (see [`soak`]).

mod client;
mod soak;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use client::{ClientConfig, Counts, Progress};
use serde_json::json;

#[derive(Parser)]
#[command(name = "loadtest", about = "Many real call participants against a running server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One class call with N participants.
    Call(CallArgs),
    /// Minutes of join/leave churn, API calls and uploads in several classes; checks that no
    /// attendance row or webhook is lost and that the server's memory stays flat.
    Soak(soak::SoakArgs),
}

/// The server, and what the class backend holds to act on it.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The class backend's API key (to create classes and their members).
    #[arg(long, env = "KLASS_API_KEY")]
    pub api_key: String,
    /// The HS256 secret of user tokens.
    #[arg(long, env = "KLASS_JWT_SECRET")]
    pub jwt_secret: String,
}

#[derive(clap::Args)]
struct CallArgs {
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
    /// How many of them have a camera on (all have a microphone).
    #[arg(long)]
    cameras: Option<usize>,
    /// How many of them speak (the first ones; the teacher is the first).
    #[arg(long, default_value_t = 2)]
    speakers: usize,
    /// The server's `sfu.last_n`: each participant should receive this many cameras at most
    /// (the teacher, the speakers, then the first to arrive). 0: every camera.
    #[arg(long, default_value_t = 12)]
    last_n: usize,
    /// Length of the measurement window, after everyone joined and a 3 s warm-up.
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
    /// Least share of the expected packets each participant must receive.
    #[arg(long, default_value_t = 0.9)]
    min_delivery: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ok = match Cli::parse().command {
        Command::Call(args) => call(args).await?,
        Command::Soak(args) => soak::soak(args).await?,
    };
    std::process::exit(if ok { 0 } else { 1 });
}

fn mint(secret: &str, user: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let claims = json!({ "sub": user, "exp": exp });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

fn user_of(i: usize) -> String {
    if i == 0 {
        "lt-teacher".into()
    } else {
        format!("lt-parent-{i}")
    }
}

async fn setup(args: &CallArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let put = |path: String, body: serde_json::Value| {
        http.put(format!("{}{path}", args.server.url)).bearer_auth(&args.server.api_key).json(&body).send()
    };
    let class = put(
        format!("/v1/classes/{}", args.class),
        json!({ "name": "Load test", "tier": args.tier, "options": { "confort_famille": false } }),
    )
    .await?;
    anyhow::ensure!(class.status().is_success(), "creating the class: {}", class.text().await?);
    for i in 0..args.participants {
        let role = if i == 0 { "teacher" } else { "parent" };
        let member = put(
            format!("/v1/classes/{}/members/{}", args.class, user_of(i)),
            json!({ "display_name": format!("Participant {i}"), "role": role, "approved": true }),
        )
        .await?;
        anyhow::ensure!(member.status().is_success(), "adding {}: {}", user_of(i), member.text().await?);
    }
    Ok(())
}

/// CPU seconds (user + system) of a process so far, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn snapshot(clients: &[Arc<Mutex<Progress>>]) -> Vec<BTreeMap<String, Counts>> {
    clients
        .iter()
        .map(|c| {
            c.lock()
                .unwrap_or_else(|p| p.into_inner())
                .received
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        })
        .collect()
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

async fn call(args: CallArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.participants >= 2, "at least 2 participants");
    let cameras = args.cameras.unwrap_or(args.participants).min(args.participants);
    setup(&args).await.context("setting up the class through the sync API")?;
    let ws_url = format!("{}/v1/classes/{}/visio/ws", args.server.url.replacen("http", "ws", 1), args.class);

    let started = Instant::now();
    // Far enough for everyone to join; the window's end is set once they have.
    let join_budget =
        Duration::from_millis(args.join_interval_ms) * args.participants as u32 + Duration::from_secs(20);
    let stop = started + join_budget + Duration::from_secs(3 + args.seconds);
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..args.participants {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let config = ClientConfig {
            ws_url: ws_url.clone(),
            token: mint(&args.server.jwt_secret, &user_of(i))?,
            camera: i < cameras,
            speaking: i < args.speakers,
            bind_ip: args.bind_ip,
        };
        // Each participant's times count from its own start.
        tasks.push(tokio::spawn(client::run(config, progress.clone(), Instant::now(), stop)));
        clients.push(progress);
        if i == 0 {
            // The teacher starts the session; parents who come first would wait.
            let deadline = Instant::now() + Duration::from_secs(10);
            while clients[0].lock().unwrap_or_else(|p| p.into_inner()).admitted.is_none() {
                anyhow::ensure!(Instant::now() < deadline, "the teacher was not admitted within 10 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(args.join_interval_ms)).await;
    }
    // Everyone in (or failed), then a warm-up, then the window.
    let all_in = Instant::now() + Duration::from_secs(20);
    while Instant::now() < all_in
        && !clients.iter().all(|c| {
            let c = c.lock().unwrap_or_else(|p| p.into_inner());
            c.first_media.is_some() || c.done
        })
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = snapshot(&clients);
    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let window_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let after = snapshot(&clients);
    let window = window_start.elapsed().as_secs_f64();
    let cpu_after = args.server_pid.and_then(cpu_seconds);
    for task in tasks {
        task.abort();
    }

    // Each participant should get 50 audio packets/s from every other one and 30 video packets/s
    // from every other visible camera. With last-N, the visible cameras are the teacher's, the
    // speakers' and the first to arrive: the first `visible` participants here.
    let visible = if args.last_n == 0 { cameras } else { cameras.min(args.last_n) };
    let mut ok = true;
    let (mut joins, mut connects, mut firsts, mut deliveries) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut audio_in, mut video_in) = (0u64, 0u64);
    for (i, client) in clients.iter().enumerate() {
        let progress = client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(err) = &progress.error {
            eprintln!("{}: {err}", user_of(i));
            ok = false;
        }
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        joins.extend(ms(progress.admitted));
        connects.extend(ms(progress.connected));
        firsts.extend(ms(progress.first_media));
        let others = args.participants - 1;
        let other_cameras = visible - usize::from(i < visible);
        let expected = (others as f64 * 50.0 + other_cameras as f64 * 30.0) * window;
        let got: u64 = after[i]
            .iter()
            .map(|(publisher, counts)| {
                let was = before[i].get(publisher).copied().unwrap_or_default();
                audio_in += counts.audio - was.audio;
                video_in += counts.video - was.video;
                (counts.audio - was.audio) + (counts.video - was.video)
            })
            .sum();
        let delivery = got as f64 / expected;
        if delivery < args.min_delivery {
            eprintln!(
                "{}: received {got} packets of {expected:.0} expected ({:.1} %)",
                user_of(i),
                delivery * 100.0
            );
            ok = false;
        }
        deliveries.push(delivery);
    }
    let n_admitted = joins.len();
    println!(
        "| participants | cameras | admitted | join p50 / p95 | ICE connected p50 / p95 | first media p50 | packets/s received (audio + video, all clients) | delivery min / median | server CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => format!("{:.1} % of one core", (after - before) / window * 100.0),
        _ => "-".into(),
    };
    println!(
        "| {} | {cameras} | {n_admitted} | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.0} ms | {:.0} + {:.0} | {:.3} / {:.3} | {cpu} |",
        args.participants,
        percentile(&mut joins.clone(), 0.5),
        percentile(&mut joins, 0.95),
        percentile(&mut connects.clone(), 0.5),
        percentile(&mut connects, 0.95),
        percentile(&mut firsts, 0.5),
        audio_in as f64 / window,
        video_in as f64 / window,
        percentile(&mut deliveries.clone(), 0.0),
        percentile(&mut deliveries, 0.5),
    );
    if n_admitted < args.participants {
        eprintln!("{} of {} participants were admitted", n_admitted, args.participants);
        ok = false;
    }
    Ok(ok)
}
