//! `loadtest surge`: a school's Monday at 9:00. Hundreds of classes (a mix of Standard and Plus)
//! start their calls within a minute: each class's teacher arrives at the class's start, drawn
//! from an arrival profile ([`plan::Profile`]), and its parents in the seconds after. Each
//! participant goes through what the call page does ([`participant`]): the page, `capabilities`,
//! the ICE servers, then the WebSocket with a real offer, end to end encrypted; it waits for the
//! answer, admission and ICE+DTLS, stays `--hold` seconds and leaves. Refusals with a wait
//! (`429`, `503 server_busy`) are retried as told, with jitter; unanswered requests are timeouts.
//!
//! Classes and members are created first through the class backend's API, untimed. With several
//! `--url`s (API replicas) each participant picks one; the room of a class must be the same
//! whatever the replica, which the report checks from what participants saw: each one must have
//! been told of every class mate that was in the call at the same time.
//!
//! The printout ([`summary`]): joins per second held, latency percentiles (to `joined`, to
//! admission, to media connected), refusals, timeouts and other failures by kind, retries, and the
//! server's CPU and memory next to this process's and the machine's, to tell which saturated first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;

use crate::client::SlotPlan;
use crate::media::SpeakerSchedule;
use crate::mint;
use crate::server::{cpu_seconds, listen_overflows, machine_cpu_seconds, rss_kib, Metrics};
use crate::timeline::{ms_since, Ms};

mod figures;
mod participant;
mod plan;
mod summary;

use participant::{Outcome, Participant, Settings};
use plan::Profile;

#[derive(clap::Args)]
pub struct SurgeArgs {
    /// The API replicas' base URLs (repeat the option or separate with commas). Classes are
    /// created through the first; each participant picks one (`--pick`).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    url: Vec<String>,
    /// The class backend's API key (to create classes and their members).
    #[arg(long, env = "KLASS_API_KEY")]
    api_key: String,
    /// The HS256 secret of user tokens.
    #[arg(long, env = "KLASS_JWT_SECRET")]
    jwt_secret: String,
    /// Classes whose calls start within the window.
    #[arg(long, default_value_t = 300)]
    classes: usize,
    /// People per class, the teacher included.
    #[arg(long, default_value_t = 5)]
    people: usize,
    /// Share of the classes on the Plus tier; the others are Standard.
    #[arg(long, default_value_t = 0.3)]
    plus_share: f64,
    /// Seconds over which the classes' calls start.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// How the starts spread over the window.
    #[arg(long, value_enum, default_value_t = Profile::Ramp)]
    profile: Profile,
    /// Parents arrive within this many seconds after their teacher.
    #[arg(long, default_value_t = 10)]
    members_within: u64,
    /// Seconds each participant stays once in (admitted and connected).
    #[arg(long, default_value_t = 20)]
    hold: u64,
    /// A request (API call, WebSocket up to `joined`) unanswered this long is a timeout.
    #[arg(long, default_value_t = 10)]
    answer_timeout: u64,
    /// ICE and DTLS not up this long after `joined` is a timeout.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// A participant not in this long after it arrived gives up (and the run fails).
    #[arg(long, default_value_t = 90)]
    give_up_after: u64,
    /// How each participant picks its replica among `--url`s.
    #[arg(long, value_enum, default_value_t = Pick::RoundRobin)]
    pick: Pick,
    /// Source addresses: class `c` comes from 127.77.x.y number `c % N` (a school's network per
    /// class), so the server's per-address rate limits see households, not one client. 0: every
    /// participant from the system's default address.
    #[arg(long, default_value_t = 0)]
    source_addresses: usize,
    /// Local address the participants' UDP sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Audio slots each participant declares.
    #[arg(long, default_value_t = 4)]
    audio_slots: usize,
    /// Thumbnail slots each participant declares (plus one stage).
    #[arg(long, default_value_t = 9)]
    thumbnails: usize,
    /// The teacher sends a camera (synthetic VP8) besides the microphone; by default audio only.
    #[arg(long)]
    teacher_camera: bool,
    /// Nobody speaks (everyone sends DTX silence); by default each teacher speaks.
    #[arg(long)]
    silent: bool,
    /// Join without end-to-end encryption (the classes then allow it). On by default, as the
    /// pages do.
    #[arg(long)]
    no_e2ee: bool,
    /// Join straight away, without loading the page and calling `capabilities` and
    /// `ice-servers` first.
    #[arg(long)]
    no_page_requests: bool,
    /// The server processes' pids (repeat for several), to sample their CPU and memory (Linux).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Pass even if this many participants never got in.
    #[arg(long, default_value_t = 0)]
    allow_not_in: usize,
    /// Pass even with this many timeouts.
    #[arg(long, default_value_t = 0)]
    allow_timeouts: usize,
    /// Seed of the jitter and of the parents' arrivals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pick {
    /// Participant after participant: a class's members spread over the replicas.
    RoundRobin,
    /// Each at random.
    Random,
    /// All of a class on one replica, class after class.
    Class,
}

fn class_id(class_idx: usize) -> String {
    format!("surge-{class_idx}")
}

fn user_id(class_idx: usize, member_idx: usize) -> String {
    if member_idx == 0 {
        format!("surge-{class_idx}-teacher")
    } else {
        format!("surge-{class_idx}-parent-{member_idx}")
    }
}

/// Class `class_idx`'s source address among `n_addresses`, in 127.77.0.0/16 (loopback: every
/// address of 127/8 reaches this machine).
fn source_address(class_idx: usize, n_addresses: usize) -> Option<IpAddr> {
    (n_addresses > 0).then(|| {
        let k = class_idx % n_addresses;
        IpAddr::V4(Ipv4Addr::new(127, 77, (k / 250) as u8, (k % 250 + 1) as u8))
    })
}

/// Creates the classes and their members through the class backend's API, a few at a time.
async fn setup(args: &SurgeArgs, http: &reqwest::Client) -> anyhow::Result<()> {
    let base = &args.url[0];
    let requests = (0..args.classes).map(|class_idx| async move {
        let tier = if plan::is_plus(class_idx, args.plus_share) { "plus" } else { "standard" };
        let put = |path: String, body: serde_json::Value| {
            http.put(format!("{base}{path}")).bearer_auth(&args.api_key).json(&body).send()
        };
        let class = put(
            format!("/v1/classes/{}", class_id(class_idx)),
            json!({
                "name": format!("Classe {class_idx}"),
                "tier": tier,
                "options": { "confort_famille": false, "visio_allow_unencrypted": args.no_e2ee },
            }),
        )
        .await?;
        anyhow::ensure!(class.status().is_success(), "creating a class: {}", class.text().await?);
        for member_idx in 0..args.people {
            let role = if member_idx == 0 { "teacher" } else { "parent" };
            let member = put(
                format!("/v1/classes/{}/members/{}", class_id(class_idx), user_id(class_idx, member_idx)),
                json!({ "display_name": format!("Personne {member_idx}"), "role": role, "approved": true }),
            )
            .await?;
            anyhow::ensure!(member.status().is_success(), "adding a member: {}", member.text().await?);
        }
        Ok(())
    });
    let mut results = futures_util::stream::iter(requests).buffer_unordered(8);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// The server's processes, this one and the machine at one moment.
pub struct Sample {
    pub at: Ms,
    /// Per `--server-pid`: cumulative CPU seconds and resident memory (KiB).
    pub servers: Vec<(Option<f64>, Option<u64>)>,
    pub own_cpu: Option<f64>,
    pub machine_cpu: Option<f64>,
}

fn sample(epoch: Instant, pids: &[u32]) -> Sample {
    Sample {
        at: ms_since(epoch, Instant::now()),
        servers: pids.iter().map(|pid| (cpu_seconds(*pid), rss_kib(*pid))).collect(),
        own_cpu: cpu_seconds(std::process::id()),
        machine_cpu: machine_cpu_seconds(),
    }
}

pub async fn surge(args: SurgeArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.classes >= 1 && args.people >= 1, "at least one class of one person");
    anyhow::ensure!(!args.url.is_empty(), "at least one --url");
    let setup_http = reqwest::Client::new();
    let setup_started = Instant::now();
    setup(&args, &setup_http).await.context("creating the classes through the class backend's API")?;
    println!(
        "setup: {} classes of {} people ({:.0} % Plus) created in {:.1} s through {} (not timed below)",
        args.classes,
        args.people,
        args.plus_share * 100.0,
        setup_started.elapsed().as_secs_f64(),
        args.url[0]
    );
    let metrics_before = scrape_all(&setup_http, &args.url).await;
    let overflows_before = listen_overflows();

    // One HTTP client per source address, as each household's browser has its own.
    let mut clients: HashMap<Option<IpAddr>, reqwest::Client> = HashMap::new();
    let mut http_for = |address: Option<IpAddr>| -> anyhow::Result<reqwest::Client> {
        if let Some(client) = clients.get(&address) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder();
        if let Some(address) = address {
            builder = builder.local_address(address);
        }
        let client = builder.build()?;
        clients.insert(address, client.clone());
        Ok(client)
    };

    // A few seconds for the spawning below before the first arrival.
    let epoch = Instant::now() + Duration::from_secs(1);
    let n_speakers = usize::from(!args.silent);
    let settings = Arc::new(Settings {
        epoch,
        answer_timeout: Duration::from_secs(args.answer_timeout),
        connect_timeout: Duration::from_secs(args.connect_timeout),
        give_up_after: Duration::from_secs(args.give_up_after),
        hold: Duration::from_secs(args.hold),
        slots: SlotPlan { audio: args.audio_slots, stage: true, thumbnails: args.thumbnails },
        speakers: Arc::new(SpeakerSchedule::fixed(n_speakers, args.people)),
        bind_ip: args.bind_ip,
        e2ee: !args.no_e2ee,
        teacher_camera: args.teacher_camera,
        page_requests: !args.no_page_requests,
    });
    let starts = plan::arrivals(args.profile, args.classes, Duration::from_secs(args.window));
    let mut draws = plan::Draws::new(args.seed);
    let mut tasks = Vec::new();
    for (class_idx, start) in starts.iter().enumerate() {
        let address = source_address(class_idx, args.source_addresses);
        for member_idx in 0..args.people {
            let participant_idx = tasks.len();
            let replica_idx = match args.pick {
                Pick::RoundRobin => participant_idx % args.url.len(),
                Pick::Random => (draws.next() * args.url.len() as f64) as usize % args.url.len(),
                Pick::Class => class_idx % args.url.len(),
            };
            // The teacher first; the parents within `members_within`, never before 0.5 s after.
            let after = if member_idx == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(500)
                    + Duration::from_secs(args.members_within)
                        .saturating_sub(Duration::from_millis(500))
                        .mul_f64(draws.next())
            };
            let participant = Participant {
                class_idx,
                member_idx,
                replica_idx,
                base_url: args.url[replica_idx].trim_end_matches('/').to_owned(),
                class_id: class_id(class_idx),
                token: mint(&args.jwt_secret, &user_id(class_idx, member_idx))?,
                http: http_for(address)?,
                tcp_bind: address,
                arrival: *start + after,
                seed: args.seed ^ ((participant_idx as u64 + 1) << 20),
            };
            tasks.push(tokio::spawn(participant.run(settings.clone())));
        }
    }

    // Samples every second until everyone is done, from the epoch on (times before it would
    // all read 0).
    tokio::time::sleep_until(tokio::time::Instant::from_std(epoch)).await;
    let mut samples = vec![sample(epoch, &args.server_pid)];
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(tasks.len());
    let mut pending = tasks.into_iter();
    let mut next = pending.next();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while let Some(task) = next.as_mut() {
        tokio::select! {
            joined = task => {
                outcomes.push(joined.unwrap_or_else(|err| Outcome {
                    gave_up: Some(format!("the participant's task failed: {err}")),
                    ..Outcome::default()
                }));
                next = pending.next();
            }
            _ = tick.tick() => samples.push(sample(epoch, &args.server_pid)),
        }
    }
    samples.push(sample(epoch, &args.server_pid));
    let metrics_after = scrape_all(&setup_http, &args.url).await;
    let listen_overflows = listen_overflows().zip(overflows_before).map(|(after, before)| after - before);

    let summary = summary::Summary {
        args: &args,
        outcomes: &outcomes,
        samples: &samples,
        metrics: (&metrics_before, &metrics_after),
        listen_overflows,
    };
    Ok(summary.print())
}

async fn scrape_all(http: &reqwest::Client, urls: &[String]) -> Vec<Option<Metrics>> {
    let mut all = Vec::new();
    for url in urls {
        all.push(Metrics::scrape(http, url.trim_end_matches('/')).await.ok());
    }
    all
}
