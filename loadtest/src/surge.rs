//! `loadtest surge`: a school's Monday at 9:00. Hundreds of classes start their calls within a
//! minute, spread over one or several API replicas: each member first calls the API (the class's
//! capabilities, as the app does before showing the call button), then joins the call's
//! WebSocket with a real SDP offer and an end-to-end encryption key, stays a while, and leaves.
//! Teachers join first, their members within seconds.
//!
//! Overload must be answered early: `503 server_busy` or `429` with `Retry-After` before the
//! WebSocket upgrade, or a `server_busy` error in it, never a timeout. A refused join is retried
//! after its `Retry-After` (at most twice), as a page would. The report gives the joins per second
//! held, join latency percentiles (from the first attempt to `joined`) and errors by kind.
//!
//! Participants negotiate but send no media: this measures admission, signaling and placement,
//! not forwarding (`loadtest call` does that).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::media::{Direction, MediaKind};
use tokio_tungstenite::tungstenite::Message;

use crate::mint;

#[derive(clap::Args)]
pub struct SurgeArgs {
    /// The API replicas' base URLs; each user goes to one of them (as a Service would).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// The class backend's API key (to create classes and their members).
    #[arg(long, env = "KLASS_API_KEY")]
    api_key: String,
    /// The HS256 secret of user tokens.
    #[arg(long, env = "KLASS_JWT_SECRET")]
    jwt_secret: String,
    #[arg(long, default_value_t = 200)]
    classes: usize,
    /// People per class, the teacher included.
    #[arg(long, default_value_t = 5)]
    people: usize,
    /// The calls start within this many seconds.
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// How long each participant stays.
    #[arg(long, default_value_t = 20)]
    hold_secs: u64,
    #[arg(long, default_value = "standard")]
    tier: String,
    /// A join not answered within this long counts as a timeout.
    #[arg(long, default_value_t = 15)]
    timeout_secs: u64,
}

#[derive(Default)]
struct Tally {
    /// Join latency of each admitted participant, ms, with the time it was joined.
    joined: Vec<(Duration, Instant)>,
    api_ms: Vec<u64>,
    /// Refusals and failures by kind (`http_503`, `server_busy`, `timeout`, ...), counting
    /// every attempt.
    errors: BTreeMap<String, u64>,
    /// Refusals that carried `Retry-After` (or said when to try again).
    with_retry_after: u64,
    /// Participants never admitted after their tries.
    gave_up: u64,
}

fn class_of(c: usize) -> String {
    format!("surge-{c}")
}

fn user_of(c: usize, i: usize) -> String {
    if i == 0 {
        format!("surge-{c}-teacher")
    } else {
        format!("surge-{c}-parent-{i}")
    }
}

/// A browser-like first offer: audio and video, send and receive.
fn offer() -> anyhow::Result<(str0m::Rtc, String)> {
    let mut rtc = str0m::Rtc::builder().set_rtp_mode(true).build(Instant::now());
    let mut changes = rtc.sdp_api();
    changes.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    changes.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, _pending) = changes.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
    Ok((rtc, offer.to_sdp_string()))
}

/// The form of a page's public key (an uncompressed P-256 point, base64url): the server checks
/// only its form, and nobody decrypts here.
fn public_key(user: &str) -> String {
    use base64::Engine;
    let mut point = [0x04u8; 65];
    for (byte, seed) in point[1..].iter_mut().zip(user.bytes().cycle()) {
        *byte = seed;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(point)
}

pub async fn surge(args: SurgeArgs) -> anyhow::Result<bool> {
    let http = reqwest::Client::new();
    let setup_started = Instant::now();
    for c in 0..args.classes {
        let url = &args.urls[c % args.urls.len()];
        let class = http
            .put(format!("{url}/v1/classes/{}", class_of(c)))
            .bearer_auth(&args.api_key)
            .json(&json!({ "name": "Surge", "tier": args.tier, "options": { "confort_famille": false } }))
            .send()
            .await?;
        anyhow::ensure!(class.status().is_success(), "creating a class: {}", class.text().await?);
        for i in 0..args.people {
            let role = if i == 0 { "teacher" } else { "parent" };
            let member = http
                .put(format!("{url}/v1/classes/{}/members/{}", class_of(c), user_of(c, i)))
                .bearer_auth(&args.api_key)
                .json(&json!({ "display_name": format!("Personne {i}"), "role": role, "approved": true }))
                .send()
                .await?;
            anyhow::ensure!(member.status().is_success(), "adding a member: {}", member.text().await?);
        }
    }
    println!(
        "setup       {} classes of {} people through {} replica(s) in {:.1} s",
        args.classes,
        args.people,
        args.urls.len(),
        setup_started.elapsed().as_secs_f64()
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.classes {
        // Calls start evenly over the window; members come 0 to 5 s after their teacher.
        let class_start =
            Duration::from_millis(args.window_secs * 1000 * c as u64 / args.classes.max(1) as u64);
        for i in 0..args.people {
            let member_delay = if i == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(((c * 7919 + i * 104_729) % 5000) as u64)
            };
            let user = user_of(c, i);
            let participant = Participant {
                url: args.urls[(c + i) % args.urls.len()].clone(),
                class_id: class_of(c),
                token: mint(&args.jwt_secret, &user)?,
                public_key: public_key(&user),
                hold: Duration::from_secs(args.hold_secs),
                timeout: Duration::from_secs(args.timeout_secs),
            };
            let tally = tally.clone();
            let http = http.clone();
            let at = started + class_start + member_delay;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                participant.run(&http, &tally).await;
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }

    let tally = tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let n_people = args.classes * args.people;
    let mut latencies: Vec<u64> =
        tally.joined.iter().map(|(latency, _)| latency.as_millis() as u64).collect();
    latencies.sort_unstable();
    let span =
        match (tally.joined.iter().map(|(_, at)| *at).min(), tally.joined.iter().map(|(_, at)| *at).max()) {
            (Some(first), Some(last)) if last > first => last.duration_since(first).as_secs_f64(),
            _ => 1.0,
        };
    // The busiest second: what the servers held at the peak of the surge.
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, at) in &tally.joined {
        *per_second.entry(at.duration_since(started).as_secs()).or_default() += 1;
    }
    let peak = per_second.values().copied().max().unwrap_or(0);
    let mut api = tally.api_ms.clone();
    api.sort_unstable();
    println!("joined      {} of {} ({} gave up)", tally.joined.len(), n_people, tally.gave_up);
    println!(
        "joins/s     {:.1} on average over {:.1} s, {} in the busiest second",
        tally.joined.len() as f64 / span,
        span,
        peak
    );
    println!(
        "join        p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        percentile(&latencies, 50),
        percentile(&latencies, 95),
        percentile(&latencies, 99),
        latencies.last().copied().unwrap_or(0)
    );
    println!(
        "api         {} calls, p50 {} ms, p95 {} ms, p99 {} ms",
        api.len(),
        percentile(&api, 50),
        percentile(&api, 95),
        percentile(&api, 99)
    );
    let errors: Vec<String> = tally.errors.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    println!(
        "errors      {} ({} with Retry-After)",
        if errors.is_empty() { "none".to_owned() } else { errors.join(", ") },
        tally.with_retry_after
    );
    let timeouts = tally.errors.get("timeout").copied().unwrap_or(0);
    Ok(tally.gave_up == 0 && timeouts == 0)
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) * p / 100).min(sorted.len() - 1)]
}

struct Participant {
    url: String,
    class_id: String,
    token: String,
    public_key: String,
    hold: Duration,
    timeout: Duration,
}

/// How one join attempt ended.
enum Attempt {
    Joined(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>),
    /// Refused; retry after this long if it said so.
    Refused {
        kind: String,
        retry_after: Option<Duration>,
    },
}

impl Participant {
    async fn run(self, http: &reqwest::Client, tally: &Mutex<Tally>) {
        let lock = || tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let api_started = Instant::now();
        let capabilities = http
            .get(format!("{}/v1/classes/{}/capabilities", self.url, self.class_id))
            .bearer_auth(&self.token)
            .timeout(self.timeout)
            .send()
            .await;
        match capabilities {
            Ok(response) if response.status().is_success() => {
                lock().api_ms.push(api_started.elapsed().as_millis() as u64);
            }
            Ok(response) => {
                let retry = response.headers().contains_key("retry-after");
                let kind = format!("api_http_{}", response.status().as_u16());
                let mut tally = lock();
                *tally.errors.entry(kind).or_default() += 1;
                tally.with_retry_after += u64::from(retry);
            }
            Err(err) => {
                let kind = if err.is_timeout() { "api_timeout" } else { "api_failed" };
                *lock().errors.entry(kind.to_owned()).or_default() += 1;
            }
        }

        let first_try = Instant::now();
        for _try in 0..3 {
            let attempt = tokio::time::timeout(self.timeout, self.attempt()).await;
            match attempt {
                Ok(Attempt::Joined(mut socket)) => {
                    lock().joined.push((first_try.elapsed(), Instant::now()));
                    // Stays, answering nothing but reading (the server pings).
                    let _ = tokio::time::timeout(self.hold, async { while socket.next().await.is_some() {} })
                        .await;
                    let _ = socket.send(Message::Text(json!({ "type": "leave" }).to_string().into())).await;
                    let _ = (*socket).close(None).await;
                    return;
                }
                Ok(Attempt::Refused { kind, retry_after }) => {
                    {
                        let mut tally = lock();
                        *tally.errors.entry(kind).or_default() += 1;
                        tally.with_retry_after += u64::from(retry_after.is_some());
                    }
                    match retry_after {
                        Some(wait) => tokio::time::sleep(wait.min(Duration::from_secs(10))).await,
                        None => break,
                    }
                }
                Err(_) => {
                    *lock().errors.entry("timeout".to_owned()).or_default() += 1;
                    break;
                }
            }
        }
        lock().gave_up += 1;
    }

    async fn attempt(&self) -> Attempt {
        let url = format!("{}/v1/classes/{}/visio/ws", self.url.replacen("http", "ws", 1), self.class_id);
        let mut socket = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => socket,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse().ok())
                    .map(Duration::from_secs);
                return Attempt::Refused {
                    kind: format!("http_{}", response.status().as_u16()),
                    retry_after,
                };
            }
            Err(_) => return Attempt::Refused { kind: "connect_failed".into(), retry_after: None },
        };
        // The peer is dropped at once: nobody sends media here.
        let sdp = match offer() {
            Ok((_, sdp)) => sdp,
            Err(_) => return Attempt::Refused { kind: "offer_failed".into(), retry_after: None },
        };
        let join = json!({
            "type": "join", "token": self.token, "sdp": sdp, "tracks": [],
            "e2ee": { "public_key": self.public_key },
        });
        if socket.send(Message::Text(join.to_string().into())).await.is_err() {
            return Attempt::Refused { kind: "socket_closed".into(), retry_after: None };
        }
        while let Some(message) = socket.next().await {
            let Ok(Message::Text(text)) = message else { continue };
            let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
            match message["type"].as_str() {
                Some("joined") => return Attempt::Joined(Box::new(socket)),
                Some("error") => {
                    let code = message["code"].as_str().unwrap_or("error").to_owned();
                    // `server_busy` and `rate_limited` say when to come back ("in N s").
                    let retry_after = matches!(code.as_str(), "server_busy" | "rate_limited").then(|| {
                        let text = message["message"].as_str().unwrap_or("");
                        let secs = text
                            .split_whitespace()
                            .zip(text.split_whitespace().skip(1))
                            .find(|(_, unit)| unit.starts_with('s'))
                            .and_then(|(n, _)| n.parse().ok())
                            .unwrap_or(1);
                        Duration::from_secs(secs)
                    });
                    return Attempt::Refused { kind: code, retry_after };
                }
                _ => {}
            }
        }
        Attempt::Refused { kind: "socket_closed".into(), retry_after: None }
    }
}
