//! `loadtest soak`: many users of several classes for minutes, as a school day would: each joins
//! its class's call, stays a few seconds, leaves, calls the API, and teachers upload photos. At
//! the end it checks that nothing was lost: the server's attendance rows, and the webhooks its
//! embedded receiver got (each event once), against each other and against the joins the clients
//! saw; and it samples the server's memory, which must stay flat.
//!
//! The server must send its webhooks to `http://127.0.0.1:<webhook_port>/hooks` (KLASS_WEBHOOK_URL)
//! and run with rate limits off (every simulated user comes from 127.0.0.1): `scripts/soak.sh`
//! does both.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, ClientConfig, Progress, SlotPlan};
use crate::media::SpeakerSchedule;
use crate::mint;

#[derive(clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    server: crate::ServerArgs,
    /// Classes, each with its own call.
    #[arg(long, default_value_t = 4)]
    classes: usize,
    /// People per class, the teacher included.
    #[arg(long, default_value_t = 6)]
    people: usize,
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Where this program receives the server's webhooks.
    #[arg(long)]
    webhook_port: u16,
    /// The server's pid, to sample its memory (Linux).
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: std::net::IpAddr,
}

#[derive(Default)]
struct Tally {
    joins_seen: AtomicU64,
    join_failures: AtomicU64,
    api_calls: AtomicU64,
    api_failures: AtomicU64,
    uploads: AtomicU64,
    upload_failures: AtomicU64,
    /// End-to-end encryption (docs/e2ee.md), summed over the calls.
    keys_sealed: AtomicU64,
    keys_opened: AtomicU64,
    keys_refused: AtomicU64,
    frames_decrypted: AtomicU64,
    frames_not_verified: AtomicU64,
}

/// A small xorshift: the soak needs varied waits, not good randomness.
struct Jitter(u64);

impl Jitter {
    fn between(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(low_ms + self.0 % (high_ms - low_ms).max(1))
    }
}

fn class_of(c: usize) -> String {
    format!("soak-{c}")
}

fn user_of(c: usize, i: usize) -> String {
    if i == 0 {
        format!("soak-{c}-teacher")
    } else {
        format!("soak-{c}-parent-{i}")
    }
}

pub async fn soak(args: SoakArgs) -> anyhow::Result<bool> {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.webhook_port)).await?;
    tokio::spawn(receive_webhooks(listener, received.clone()));
    let http = reqwest::Client::new();
    for c in 0..args.classes {
        let class = http
            .put(format!("{}/v1/classes/{}", args.server.url, class_of(c)))
            .bearer_auth(&args.server.api_key)
            .json(&json!({ "name": "Soak", "tier": "plus", "options": { "confort_famille": false } }))
            .send()
            .await?;
        anyhow::ensure!(class.status().is_success(), "creating a class: {}", class.text().await?);
        for i in 0..args.people {
            let role = if i == 0 { "teacher" } else { "parent" };
            let member = http
                .put(format!("{}/v1/classes/{}/members/{}", args.server.url, class_of(c), user_of(c, i)))
                .bearer_auth(&args.server.api_key)
                .json(&json!({ "display_name": format!("Personne {i}"), "role": role, "approved": true }))
                .send()
                .await?;
            anyhow::ensure!(member.status().is_success(), "adding a member: {}", member.text().await?);
        }
    }

    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.classes {
        for i in 0..args.people {
            let user = User {
                url: args.server.url.clone(),
                class_id: class_of(c),
                token: mint(&args.server.jwt_secret, &user_of(c, i))?,
                teacher: i == 0,
                bind_ip: args.bind_ip,
                seed: 0x9E37_79B9_7F4A_7C15 ^ ((c * 1000 + i) as u64 + 1),
            };
            tasks.push(tokio::spawn(user.run(end, tally.clone(), http.clone())));
        }
    }
    let memory = tokio::spawn(sample_memory(args.server_pid, end));
    for task in tasks {
        task.await?;
    }
    let samples = memory.await?;

    // Everyone left: each room ends its session. Then every webhook must arrive.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows = attendance_rows(&args, &http).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events = distinct_events(&received);
        let joined = events.get("participant_joined").copied().unwrap_or(0);
        if (joined >= rows.attendance && events.get("session_ended") >= events.get("session_started"))
            || Instant::now() > deadline
        {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let count = |kind: &str| events.get(kind).copied().unwrap_or(0);
    println!("| what | count |\n|---|---|");
    println!("| joins the clients saw admitted | {} |", tally.joins_seen.load(Ordering::Relaxed));
    println!("| joins that failed (refused, timed out) | {} |", tally.join_failures.load(Ordering::Relaxed));
    println!(
        "| API calls (failed) | {} ({}) |",
        tally.api_calls.load(Ordering::Relaxed),
        tally.api_failures.load(Ordering::Relaxed)
    );
    println!(
        "| uploads (failed) | {} ({}) |",
        tally.uploads.load(Ordering::Relaxed),
        tally.upload_failures.load(Ordering::Relaxed)
    );
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "| e2ee sealed keys sent / opened / refused | {} / {} / {} |",
        load(&tally.keys_sealed),
        load(&tally.keys_opened),
        load(&tally.keys_refused)
    );
    println!(
        "| e2ee frames decrypted / that did not verify | {} / {} |",
        load(&tally.frames_decrypted),
        load(&tally.frames_not_verified)
    );
    println!("| sessions in the database | {} |", rows.sessions);
    println!("| attendance rows | {} |", rows.attendance);
    for kind in ["session_started", "session_ended", "participant_joined", "participant_left"] {
        println!("| webhooks `{kind}` | {} |", count(kind));
    }
    println!("| duplicate webhook deliveries | {} |", count("duplicates"));
    if !samples.is_empty() {
        let line: Vec<String> =
            samples.iter().map(|(t, kib)| format!("{t} s: {:.1} MiB", *kib as f64 / 1024.0)).collect();
        println!("\nserver memory (RSS): {}", line.join(", "));
    }

    let mut ok = true;
    let mut fail = |what: String| {
        eprintln!("soak: {what}");
        ok = false;
    };
    let seen = tally.joins_seen.load(Ordering::Relaxed);
    if rows.attendance < seen {
        fail(format!("{} attendance rows for {seen} joins seen", rows.attendance));
    }
    if count("participant_joined") != rows.attendance || count("participant_left") != rows.attendance {
        fail(format!(
            "webhooks joined {} / left {} for {} attendance rows",
            count("participant_joined"),
            count("participant_left"),
            rows.attendance
        ));
    }
    if count("session_started") != rows.sessions || count("session_ended") != rows.sessions {
        fail(format!(
            "webhooks started {} / ended {} for {} sessions",
            count("session_started"),
            count("session_ended"),
            rows.sessions
        ));
    }
    if seen == 0 {
        fail("nobody was admitted to a call".into());
    }
    if load(&tally.keys_refused) > 0 || load(&tally.frames_not_verified) > 0 {
        fail(format!(
            "e2ee: {} sealed keys did not open, {} frames did not verify",
            load(&tally.keys_refused),
            load(&tally.frames_not_verified)
        ));
    }
    // Flat: the last sample within a quarter of the first one taken after the first minute.
    let settled: Vec<u64> = samples.iter().filter(|(t, _)| *t >= 60).map(|(_, kib)| *kib).collect();
    if let (Some(first), Some(last)) = (settled.first(), settled.last()) {
        if *last as f64 > *first as f64 * 1.25 + 8.0 * 1024.0 {
            fail(format!("server memory grew from {first} KiB to {last} KiB"));
        }
    }
    Ok(ok)
}

struct User {
    url: String,
    class_id: String,
    token: String,
    teacher: bool,
    bind_ip: std::net::IpAddr,
    seed: u64,
}

impl User {
    async fn run(self, end: Instant, tally: Arc<Tally>, http: reqwest::Client) {
        let mut jitter = Jitter(self.seed);
        let ws_url = format!("{}/v1/classes/{}/visio/ws", self.url.replacen("http", "ws", 1), self.class_id);
        tokio::time::sleep(jitter.between(0, 2000)).await;
        while Instant::now() < end {
            // A call: a few seconds in, microphone on, camera off (the soak is about churn). The
            // teacher speaks; everyone declares the usual slots.
            let config = ClientConfig {
                participant_idx: usize::from(!self.teacher),
                ws_url: ws_url.clone(),
                token: self.token.clone(),
                camera: false,
                slots: SlotPlan { audio: 3, stage: true, thumbnails: 9 },
                speakers: Arc::new(SpeakerSchedule::fixed(1, 2)),
                bind_ip: self.bind_ip,
                epoch: Instant::now(),
                clip: None,
                e2ee: true,
                tcp_bind: None,
            };
            let stay = jitter.between(2000, 8000);
            let report = client::run(config, Arc::new(Progress::default()), tokio::time::sleep(stay)).await;
            let e2ee = &report.e2ee;
            tally.keys_sealed.fetch_add(e2ee.keys_sealed, Ordering::Relaxed);
            tally.keys_opened.fetch_add(e2ee.keys_received, Ordering::Relaxed);
            tally.keys_refused.fetch_add(e2ee.keys_rejected, Ordering::Relaxed);
            tally.frames_decrypted.fetch_add(e2ee.frames_decrypted, Ordering::Relaxed);
            tally.frames_not_verified.fetch_add(e2ee.failed.len() as u64, Ordering::Relaxed);
            if report.admitted.is_some() {
                tally.joins_seen.fetch_add(1, Ordering::Relaxed);
            } else if !self.teacher {
                // A parent may wait for the teacher all along: not a failure.
            } else {
                tally.join_failures.fetch_add(1, Ordering::Relaxed);
            }
            // Between calls: the API, and for teachers a photo.
            for _ in 0..3 {
                let ok = http
                    .get(format!("{}/v1/classes/{}/capabilities", self.url, self.class_id))
                    .bearer_auth(&self.token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                tally.api_calls.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    tally.api_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            if self.teacher {
                tally.uploads.fetch_add(1, Ordering::Relaxed);
                if self.upload(&http).await.is_err() {
                    tally.upload_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(jitter.between(500, 2000)).await;
        }
    }

    /// A post with one 64 KiB file, announced then sent in one chunk.
    async fn upload(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let base = format!("{}/v1/classes/{}", self.url, self.class_id);
        let post: Value = http
            .post(format!("{base}/posts"))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let post_id = post["post_id"].as_str().unwrap_or_default();
        let size = 64 * 1024;
        let media: Value = http
            .post(format!("{base}/posts/{post_id}/media"))
            .bearer_auth(&self.token)
            .json(&json!({ "kind": "photo", "size_bytes": size }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let media_id = media["media_id"].as_str().unwrap_or_default();
        http.put(format!("{base}/media/{media_id}/content"))
            .bearer_auth(&self.token)
            .header("content-range", format!("bytes 0-{}/{size}", size - 1))
            .body(vec![0xA5u8; size])
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

struct Rows {
    sessions: u64,
    attendance: u64,
}

/// Sessions and attendance rows of the soak's classes, read as a teacher through the API.
async fn attendance_rows(args: &SoakArgs, http: &reqwest::Client) -> anyhow::Result<Rows> {
    let mut rows = Rows { sessions: 0, attendance: 0 };
    for c in 0..args.classes {
        let token = mint(&args.server.jwt_secret, &user_of(c, 0))?;
        let base = format!("{}/v1/classes/{}/sessions", args.server.url, class_of(c));
        let sessions: Vec<Value> =
            http.get(&base).bearer_auth(&token).send().await?.error_for_status()?.json().await?;
        for session in sessions {
            rows.sessions += 1;
            let id = session["session_id"].as_str().unwrap_or_default();
            let records: Vec<Value> = http
                .get(format!("{base}/{id}/attendance"))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            rows.attendance += records.len() as u64;
        }
    }
    Ok(rows)
}

/// Webhooks by kind, each event id counted once; `duplicates` counts repeated deliveries.
fn distinct_events(received: &Mutex<Vec<Value>>) -> BTreeMap<String, u64> {
    let received = received.lock().unwrap_or_else(|p| p.into_inner());
    let mut seen = HashSet::new();
    let mut counts = BTreeMap::new();
    for event in received.iter() {
        let id = event["event_id"].as_str().unwrap_or_default().to_owned();
        let kind = if seen.insert(id) {
            event["event"].as_str().unwrap_or("?").to_owned()
        } else {
            "duplicates".into()
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

/// A minimal HTTP/1.1 receiver: reads each request's JSON body and answers 204.
async fn receive_webhooks(listener: tokio::net::TcpListener, received: Arc<Mutex<Vec<Value>>>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let received = received.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                if let Some(head_end) = head_end {
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + length {
                        let body = &buf[head_end + 4..head_end + 4 + length];
                        if let Ok(event) = serde_json::from_slice::<Value>(body) {
                            received.lock().unwrap_or_else(|p| p.into_inner()).push(event);
                        }
                        buf.drain(..head_end + 4 + length);
                        let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
    }
}

/// The server's resident memory every 30 s until `end`: (seconds since start, KiB).
async fn sample_memory(pid: Option<u32>, end: Instant) -> Vec<(u64, u64)> {
    let Some(pid) = pid else { return Vec::new() };
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix(" kB")?.trim().parse().ok())
        });
        if let Some(kib) = rss {
            samples.push((started.elapsed().as_secs(), kib));
        }
        if Instant::now() >= end {
            return samples;
        }
        tokio::time::sleep(Duration::from_secs(30).min(end.saturating_duration_since(Instant::now()))).await;
    }
}
