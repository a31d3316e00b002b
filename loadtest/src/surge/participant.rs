//! One member's Monday morning, as the call page goes through it: load the page, ask who one is
//! in the class (`capabilities`) and for the ICE servers, then join over the WebSocket with a
//! real offer ([`crate::client`]), wait for the answer, admission and ICE+DTLS, stay a while and
//! leave. A request the server turns away early (`429`/`503` with `Retry-After`, or an `error`
//! with a wait in its text) is tried again after the wait it gave, with jitter; a request left
//! without an answer is a timeout, the bad kind of failure, and is tried again after a backoff.
//! Everything is recorded in an [`Outcome`]; nothing is judged here.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{self, ClientConfig, Progress, SlotPlan};
use crate::media::SpeakerSchedule;
use crate::refusal::Refusal;
use crate::surge::plan::{backoff, Draws};
use crate::timeline::{ms_since, Ms};

/// What every participant of the surge shares.
pub struct Settings {
    pub epoch: Instant,
    /// How long a request (an API call; the WebSocket up to `joined`) may go unanswered.
    pub answer_timeout: Duration,
    /// How long ICE and DTLS may take after `joined`.
    pub connect_timeout: Duration,
    /// From its arrival, how long a participant keeps trying to get in.
    pub give_up_after: Duration,
    /// How long it stays once in.
    pub hold: Duration,
    pub slots: SlotPlan,
    pub speakers: Arc<SpeakerSchedule>,
    pub bind_ip: IpAddr,
    pub e2ee: bool,
    pub teacher_camera: bool,
    /// Load the page and call the API before joining, as the page does.
    pub page_requests: bool,
}

/// One participant: who, where, and when it arrives.
pub struct Participant {
    pub class_idx: usize,
    /// 0: the teacher.
    pub member_idx: usize,
    pub replica_idx: usize,
    /// The API replica it uses, `http://host:port`.
    pub base_url: String,
    pub class_id: String,
    pub token: String,
    /// Bound to its source address when the surge spreads addresses.
    pub http: reqwest::Client,
    pub tcp_bind: Option<IpAddr>,
    /// Since the epoch.
    pub arrival: Duration,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Turned away early, with a wait: what a server under load should do.
    Refused,
    /// No answer in time: what it should not.
    Timeout,
    /// Anything else: a connection error, an unexpected status or message.
    Other,
}

/// Something that went wrong on the way in.
#[derive(Debug, Clone)]
pub struct Incident {
    pub at: Ms,
    pub severity: Severity,
    /// Where and what: `upgrade 503 server_busy`, `join server_busy`, `api 429 rate_limited`,
    /// `join: no answer`...
    pub kind: String,
    /// Retried after it (false: it was the last word).
    pub retried: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub class_idx: usize,
    pub member_idx: usize,
    pub replica_idx: usize,
    pub arrived: Ms,
    pub first_join_attempt: Option<Ms>,
    /// Of the attempt that got in.
    pub joined: Option<Ms>,
    pub admitted: Option<Ms>,
    pub connected: Option<Ms>,
    /// When it stopped reading its socket to leave (its hold was over).
    pub leaving: Option<Ms>,
    pub left: Option<Ms>,
    pub n_join_attempts: u32,
    pub n_api_calls: u32,
    pub incidents: Vec<Incident>,
    /// Why it never got in (refused for good, or out of time).
    pub gave_up: Option<String>,
    /// An error after it got in (the socket closed, `left`...).
    pub broken: Option<String>,
    pub participant_id: Option<String>,
    pub peers_seen: Vec<String>,
    pub keys_sealed: u64,
    pub keys_received: u64,
    pub keys_rejected: u64,
    pub frames_decrypted: u64,
    pub frames_failed: u64,
}

impl Outcome {
    pub fn got_in(&self) -> bool {
        self.admitted.is_some() && self.connected.is_some()
    }
}

/// Why an attempt's `stop` ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    NotAdmitted,
    NotConnected,
    Held,
}

impl Participant {
    pub async fn run(self, settings: Arc<Settings>) -> Outcome {
        let epoch = settings.epoch;
        tokio::time::sleep_until(tokio::time::Instant::from_std(epoch + self.arrival)).await;
        let arrived_at = Instant::now();
        let deadline = arrived_at + settings.give_up_after;
        let mut outcome = Outcome {
            class_idx: self.class_idx,
            member_idx: self.member_idx,
            replica_idx: self.replica_idx,
            arrived: ms_since(epoch, arrived_at),
            ..Outcome::default()
        };
        let mut draws = Draws::new(self.seed);
        if settings.page_requests {
            // The page itself, then what prejoin.js and ice.js fetch before the join.
            let class_id = &self.class_id;
            for path in [
                format!("/call/{class_id}"),
                format!("/v1/classes/{class_id}/capabilities"),
                format!("/v1/classes/{class_id}/visio/ice-servers"),
            ] {
                if !self.get(&path, &settings, deadline, &mut draws, &mut outcome).await {
                    return outcome;
                }
            }
        }
        self.join(&settings, deadline, &mut draws, &mut outcome).await;
        outcome
    }

    /// One API request until it gets an answer other than "wait"; false when the participant
    /// gave up.
    async fn get(
        &self,
        path: &str,
        settings: &Settings,
        deadline: Instant,
        draws: &mut Draws,
        outcome: &mut Outcome,
    ) -> bool {
        let what = if path.starts_with("/call/") { "page" } else { "api" };
        let mut retry_idx = 0;
        loop {
            outcome.n_api_calls += 1;
            let sent = self
                .http
                .get(format!("{}{path}", self.base_url))
                .bearer_auth(&self.token)
                .timeout(settings.answer_timeout)
                .send()
                .await;
            let at = ms_since(settings.epoch, Instant::now());
            let (severity, kind, told) = match sent {
                Ok(response) if response.status().is_success() => {
                    // The body is read as a page would; a failure to read it is not the point.
                    let _ = response.bytes().await;
                    return true;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let body = response.bytes().await.unwrap_or_default();
                    let refusal = Refusal::of_http(status, retry_after.as_deref(), &body);
                    if !refusal.is_retryable() {
                        // The page goes on to the join, which decides (prejoin.js).
                        let kind = format!("{what} {}", refusal.kind());
                        outcome.incidents.push(Incident {
                            at,
                            severity: Severity::Other,
                            kind,
                            retried: false,
                        });
                        return true;
                    }
                    (Severity::Refused, format!("{what} {}", refusal.kind()), refusal.retry_after)
                }
                Err(err) if err.is_timeout() => (
                    Severity::Timeout,
                    format!("{what}: no answer in {} s", settings.answer_timeout.as_secs()),
                    None,
                ),
                Err(err) => (Severity::Other, format!("{what}: {}", error_kind(&err)), None),
            };
            let wait = backoff(told, retry_idx, draws.next());
            retry_idx += 1;
            let retried = Instant::now() + wait < deadline;
            outcome.incidents.push(Incident { at, severity, kind: kind.clone(), retried });
            if !retried {
                outcome.gave_up = Some(format!("out of time after {kind}"));
                return false;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Joins until in, refused for good, or out of time; once in, stays `hold` and leaves.
    async fn join(&self, settings: &Settings, deadline: Instant, draws: &mut Draws, outcome: &mut Outcome) {
        let epoch = settings.epoch;
        let ws_url =
            format!("{}/v1/classes/{}/visio/ws", self.base_url.replacen("http", "ws", 1), self.class_id);
        let mut retry_idx = 0;
        loop {
            let started = Instant::now();
            outcome.n_join_attempts += 1;
            outcome.first_join_attempt.get_or_insert(ms_since(epoch, started));
            let config = ClientConfig {
                participant_idx: self.member_idx,
                ws_url: ws_url.clone(),
                token: self.token.clone(),
                camera: self.member_idx == 0 && settings.teacher_camera,
                slots: settings.slots,
                speakers: settings.speakers.clone(),
                bind_ip: settings.bind_ip,
                epoch,
                clip: None,
                e2ee: settings.e2ee,
                tcp_bind: self.tcp_bind,
            };
            let progress = Arc::new(Progress::default());
            let stopped: Arc<Mutex<Option<(Stop, Instant)>>> = Arc::default();
            let stop = {
                let progress = progress.clone();
                let stopped = stopped.clone();
                let (connect_timeout, hold) = (settings.connect_timeout, settings.hold);
                async move {
                    let reason = if !progress.wait_until(|p| &p.admitted, deadline).await {
                        Stop::NotAdmitted
                    } else if !progress.wait_until(|p| &p.connected, Instant::now() + connect_timeout).await {
                        Stop::NotConnected
                    } else {
                        tokio::time::sleep(hold).await;
                        Stop::Held
                    };
                    *stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some((reason, Instant::now()));
                }
            };
            let run = client::run(config, progress.clone(), stop);
            tokio::pin!(run);
            let answer_by = started + settings.answer_timeout;
            // The client waits on its socket without a deadline of its own until `joined`:
            // past `answer_timeout` it is dropped, socket and all.
            let report = tokio::select! {
                report = &mut run => Some(report),
                false = progress.wait_until(|p| &p.joined, answer_by) => None,
            };
            let now = Instant::now();
            let at = ms_since(epoch, now);
            let Some(report) = report else {
                let kind = format!("join: no answer in {} s", settings.answer_timeout.as_secs());
                if !self
                    .again(Severity::Timeout, kind, None, &mut retry_idx, deadline, draws, outcome, at)
                    .await
                {
                    return;
                }
                continue;
            };
            let e2ee = &report.e2ee;
            outcome.keys_sealed += e2ee.keys_sealed;
            outcome.keys_received += e2ee.keys_received;
            outcome.keys_rejected += e2ee.keys_rejected;
            outcome.frames_decrypted += e2ee.frames_decrypted;
            outcome.frames_failed += e2ee.failed.len() as u64;
            let stopped_at = *stopped.lock().unwrap_or_else(|p| p.into_inner());
            let stopped = stopped_at.map(|(reason, _)| reason);
            if report.admitted.is_some() && report.connected.is_some() {
                outcome.joined = report.joined;
                outcome.admitted = report.admitted;
                outcome.connected = report.connected;
                outcome.participant_id = report.participant_id;
                outcome.peers_seen = report.peers_seen;
                outcome.leaving = stopped_at.map(|(_, leaving)| ms_since(epoch, leaving));
                outcome.left = Some(at);
                if stopped != Some(Stop::Held) {
                    outcome.broken = Some(report.error.unwrap_or_else(|| "ended before its time".into()));
                }
                return;
            }
            let (severity, kind, told) = match (&report.refused, stopped) {
                (Some(refusal), _) if !refusal.is_retryable() => {
                    let kind = where_refused(refusal);
                    outcome.incidents.push(Incident {
                        at,
                        severity: Severity::Refused,
                        kind: kind.clone(),
                        retried: false,
                    });
                    outcome.gave_up = Some(format!("refused: {kind}"));
                    return;
                }
                (Some(refusal), _) => (Severity::Refused, where_refused(refusal), refusal.retry_after),
                // Joined, and waited to be admitted until the participant's deadline: a parent
                // whose teacher is not in yet waits so by design; not a request left unanswered.
                (None, Some(Stop::NotAdmitted)) => {
                    (Severity::Other, "join: answered, not admitted by the deadline".into(), None)
                }
                (None, Some(Stop::NotConnected)) => (
                    Severity::Timeout,
                    format!("ICE+DTLS: not connected in {} s", settings.connect_timeout.as_secs()),
                    None,
                ),
                (None, _) => {
                    let error = report.error.unwrap_or_else(|| "ended without an error".into());
                    (Severity::Other, format!("join: {}", short(&error)), None)
                }
            };
            if !self.again(severity, kind, told, &mut retry_idx, deadline, draws, outcome, at).await {
                return;
            }
        }
    }

    /// Records an incident and waits before the next attempt; false when out of time.
    #[allow(clippy::too_many_arguments)]
    async fn again(
        &self,
        severity: Severity,
        kind: String,
        told: Option<Duration>,
        retry_idx: &mut u32,
        deadline: Instant,
        draws: &mut Draws,
        outcome: &mut Outcome,
        at: Ms,
    ) -> bool {
        let wait = backoff(told, *retry_idx, draws.next());
        *retry_idx += 1;
        let retried = Instant::now() + wait < deadline;
        outcome.incidents.push(Incident { at, severity, kind: kind.clone(), retried });
        if !retried {
            outcome.gave_up = Some(format!("out of time after {kind}"));
            return false;
        }
        tokio::time::sleep(wait).await;
        true
    }
}

/// `upgrade 503 server_busy` (refused before the WebSocket opened) or `join server_busy` (an
/// `error` on the open socket).
fn where_refused(refusal: &Refusal) -> String {
    let place = if refusal.http_status.is_some() { "upgrade" } else { "join" };
    format!("{place} {}", refusal.kind())
}

/// An error's kind without the details that differ every time (ports, ids), for counting.
fn short(error: &str) -> String {
    let first = error.split(':').next().unwrap_or(error).trim();
    first.chars().take(60).collect()
}

fn error_kind(err: &reqwest::Error) -> &'static str {
    if err.is_connect() {
        "connection refused or reset"
    } else if err.is_request() {
        "request failed"
    } else if err.is_body() || err.is_decode() {
        "body cut"
    } else {
        "error"
    }
}
