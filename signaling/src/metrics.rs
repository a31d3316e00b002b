//! Prometheus metrics of the signaling service, in the classic text format.
//!
//! Label values come from small sets only: method, matched route, status, tier. Never an id.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use models::ErrorCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use sfu::{CloseReason, LeaveReason, MediaCounters, SfuEvent};

use crate::error::ErrorCause;
use crate::AppState;

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    classes: IntGaugeVec,
    members: IntGaugeVec,
    sfu: SfuMetrics,
    /// TURN credentials handed out, by where (`turn::Via`).
    turn_credentials: IntCounterVec,
    /// `resume` messages, by outcome.
    resumes: IntCounterVec,
}

/// What the SFU reports as events, as Prometheus series (see [`record_sfu_events`]).
struct SfuMetrics {
    rooms: IntGauge,
    participants: IntGauge,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    nacks: IntCounter,
    retransmissions: IntCounter,
    renegotiations: IntCounterVec,
    slot_switches: IntCounter,
    links: IntCounterVec,
    bandwidth_pauses: IntCounter,
    downlink_estimate: Histogram,
    keyframe_requests: IntCounterVec,
    receiver_loss: Histogram,
    session_duration: Histogram,
    joins_refused: IntCounterVec,
    /// Admissions to sessions, and sessions ended, by whether they were end-to-end encrypted.
    participants_joined: IntCounterVec,
    sessions_ended: IntCounterVec,
    /// Sealed media keys of `e2ee_keys` messages, by what became of them.
    e2ee_keys: IntCounterVec,
    participants_left: IntCounterVec,
    /// What the SFU's shell dropped rather than queue, by queue; read at each scrape.
    queue_drops: IntCounterVec,
    event_backlog: IntGauge,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    // Every name is registered once, on a fresh registry, so it cannot collide.
    registry.register(Box::new(collector.clone())).expect("unique metric name");
    collector
}

impl SfuMetrics {
    fn new(registry: &Registry) -> SfuMetrics {
        // Static definitions with valid names and labels cannot fail.
        let gauge =
            |name: &str, help: &str| register(registry, IntGauge::new(name, help).expect("valid metric"));
        let counter =
            |name: &str, help: &str| register(registry, IntCounter::new(name, help).expect("valid metric"));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric"),
            )
        };
        let metrics = SfuMetrics {
            rooms: gauge("sfu_rooms", "Rooms with a session or people waiting."),
            participants: gauge("sfu_participants", "Participants connected to rooms."),
            packets: counter_vec("sfu_rtp_packets_total", "RTP packets, by direction and kind.", &["direction", "kind"]),
            bytes: counter_vec("sfu_rtp_bytes_total", "RTP payload bytes, by direction and kind.", &["direction", "kind"]),
            nacks: counter("sfu_nacks_received_total", "NACKs received from subscribers."),
            retransmissions: counter("sfu_retransmissions_total", "Packets resent in answer to NACKs."),
            renegotiations: {
                let vec = counter_vec(
                    "sfu_renegotiations_total",
                    "SDP renegotiations after a join, by who offered: `client` (its own publishing \
                     changed) or `server` (never: joins and departures renegotiate nobody).",
                    &["initiator"],
                );
                // Both series exist from the start, so that `server` reads 0 rather than absent.
                vec.with_label_values(&["client"]);
                vec.with_label_values(&["server"]);
                vec
            },
            slot_switches: counter("sfu_slot_switches_total", "Times a receive slot changed publisher."),
            links: {
                let vec = counter_vec(
                    "sfu_participant_links_total",
                    "Participants whose connection broke (`lost`: shown as reconnecting, place kept for \
                     the grace period) or came back within it (`restored`).",
                    &["event"],
                );
                vec.with_label_values(&["lost"]);
                vec.with_label_values(&["restored"]);
                vec
            },
            bandwidth_pauses: counter(
                "sfu_bandwidth_pauses_total",
                "Times a video slot was paused because its receiver's downlink had no room for it.",
            ),
            downlink_estimate: histogram(
                "sfu_downlink_estimate_kbps",
                "Downlink estimates of the participants whose video they limit (from reported loss), sampled at each stats interval.",
                vec![150.0, 300.0, 600.0, 1000.0, 2000.0, 4000.0, 8000.0],
            ),
            keyframe_requests: counter_vec(
                "sfu_keyframe_requests_total",
                "Keyframe requests (PLI/FIR): received from subscribers, sent to publishers after throttling.",
                &["direction"],
            ),
            receiver_loss: histogram(
                "sfu_receiver_loss_ratio",
                "Fraction of packets lost as reported by receivers, per room and stats interval.",
                vec![0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
            ),
            session_duration: histogram(
                "sfu_session_duration_seconds",
                "Duration of closed sessions.",
                vec![60.0, 300.0, 600.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0, 14400.0],
            ),
            joins_refused: counter_vec("sfu_joins_refused_total", "Joins refused, by error code.", &["code"]),
            participants_joined: counter_vec(
                "sfu_participants_joined_total",
                "Participants admitted to a call session, by whether their page encrypts end to end \
                 (e2ee=\"false\": a browser without encoded transforms, in a class that allows it).",
                &["e2ee"],
            ),
            sessions_ended: counter_vec(
                "sfu_sessions_ended_total",
                "Call sessions ended, by whether they were end-to-end encrypted (everyone admitted had a key).",
                &["e2ee"],
            ),
            e2ee_keys: counter_vec(
                "sfu_e2ee_keys_total",
                "Sealed media keys of e2ee_keys messages: relayed to their recipient, skipped (the recipient \
                 is not an admitted participant with a key, e.g. it just left), or refused (a malformed or \
                 rate-limited message).",
                &["outcome"],
            ),
            participants_left: counter_vec(
                "sfu_participants_left_total",
                "Participants who left a call, by reason (too_slow: dropped for not reading their events).",
                &["reason"],
            ),
            queue_drops: counter_vec(
                "sfu_queue_drops_total",
                "What the SFU dropped rather than queue without bound: datagrams (a room's queue full), \
                 ice_tcp_frames (a TCP peer's write queue full), ice_tcp_connections (connection limit), \
                 udp_sends (the media socket's send buffer full).",
                &["queue"],
            ),
            event_backlog: gauge(
                "sfu_event_backlog",
                "Call events waiting to be recorded; joins are refused (server_busy) past limits.max_call_event_backlog.",
            ),
        };
        // Series exist from the start at 0, so rates and dashboards work before the first call.
        for kind in ["audio", "video"] {
            for direction in ["in", "out", "dropped"] {
                metrics.packets.with_label_values(&[direction, kind]);
            }
            for direction in ["in", "out"] {
                metrics.bytes.with_label_values(&[direction, kind]);
            }
        }
        for direction in ["received", "sent"] {
            metrics.keyframe_requests.with_label_values(&[direction]);
        }
        for code in [
            ErrorCode::RoomFull,
            ErrorCode::TierForbidsVisio,
            ErrorCode::SessionLocked,
            ErrorCode::E2eeRequired,
        ] {
            metrics.joins_refused.with_label_values(&[code.as_str()]);
        }
        for e2ee in ["true", "false"] {
            metrics.participants_joined.with_label_values(&[e2ee]);
            metrics.sessions_ended.with_label_values(&[e2ee]);
        }
        for outcome in ["relayed", "skipped", "refused"] {
            metrics.e2ee_keys.with_label_values(&[outcome]);
        }
        for reason in [LeaveReason::Left, LeaveReason::ConnectionLost, LeaveReason::TooSlow] {
            metrics.participants_left.with_label_values(&[leave_reason(reason)]);
        }
        metrics
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "signaling_http_requests_total",
                "HTTP requests answered, by method, route and status.",
            ),
            &["method", "path", "status"],
        )
        .expect("static metric definition is valid");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("signaling_http_request_duration_seconds", "Time to answer an HTTP request.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["method", "path"],
        )
        .expect("static metric definition is valid");
        let classes = IntGaugeVec::new(
            Opts::new("signaling_directory_classes", "Classes in the directory, by tier."),
            &["tier"],
        )
        .expect("static metric definition is valid");
        let members = IntGaugeVec::new(
            Opts::new("signaling_directory_members", "Approved class members in the directory, by tier."),
            &["tier"],
        )
        .expect("static metric definition is valid");
        // Registering distinct names on a fresh registry cannot collide.
        registry.register(Box::new(http_requests.clone())).expect("unique metric name");
        registry.register(Box::new(http_duration.clone())).expect("unique metric name");
        registry.register(Box::new(classes.clone())).expect("unique metric name");
        registry.register(Box::new(members.clone())).expect("unique metric name");
        let sfu = SfuMetrics::new(&registry);
        let turn_credentials = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "signaling_turn_credentials_issued_total",
                    "TURN credentials handed to pages, by where: the ice-servers endpoint or the call's join.",
                ),
                &["via"],
            )
            .expect("static metric definition is valid"),
        );
        // Both series exist from the start, so the TURN alerts read 0 rather than absent.
        for via in [crate::turn::Via::Endpoint, crate::turn::Via::Join] {
            turn_credentials.with_label_values(&[via.as_str()]);
        }
        let resumes = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "visio_resumes_total",
                    "Call sessions resumed on a new WebSocket after theirs broke (`resumed`), or refused \
                     (`failed`: the grace period had passed, or the token was not the user's).",
                ),
                &["outcome"],
            )
            .expect("static metric definition is valid"),
        );
        for outcome in ["resumed", "failed"] {
            resumes.with_label_values(&[outcome]);
        }
        Metrics { registry, http_requests, http_duration, classes, members, sfu, turn_credentials, resumes }
    }

    /// The registry other components of the process (SFU, media worker) register into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Brings the SFU's own counters (kept by its shell) into the registry, at each scrape.
    pub fn set_sfu_queues(&self, drops: sfu::DropCounts, event_backlog: usize) {
        let metrics = &self.sfu;
        for (queue, total) in [
            ("datagrams", drops.datagrams),
            ("ice_tcp_frames", drops.tcp_frames),
            ("ice_tcp_connections", drops.tcp_connections),
            ("udp_sends", drops.udp_sends),
        ] {
            let counter = metrics.queue_drops.with_label_values(&[queue]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        metrics.event_backlog.set(event_backlog as i64);
    }

    /// A join the signaling server refused itself before the SFU saw it (`e2ee_required`).
    pub fn join_refused(&self, code: ErrorCode) {
        self.sfu.joins_refused.with_label_values(&[code.as_str()]).inc();
    }

    /// Sealed keys of an `e2ee_keys` message refused before the SFU saw them.
    pub fn e2ee_keys_refused(&self, n_keys: usize) {
        self.sfu.e2ee_keys.with_label_values(&["refused"]).inc_by(n_keys as u64);
    }

    /// A `resume` was carried out, or refused.
    pub fn resume(&self, resumed: bool) {
        self.resumes.with_label_values(&[if resumed { "resumed" } else { "failed" }]).inc();
    }

    pub fn turn_credentials_issued(&self, via: crate::turn::Via) {
        self.turn_credentials.with_label_values(&[via.as_str()]).inc();
    }

    pub fn set_directory_counts(&self, tier: models::Tier, n_classes: i64, n_members: i64) {
        self.classes.with_label_values(&[tier.as_str()]).set(n_classes);
        self.members.with_label_values(&[tier.as_str()]).set(n_members);
    }

    pub fn encode(&self) -> String {
        // Text encoding into a String only fails on invalid metric families, which `new` rules out.
        TextEncoder::new().encode_to_string(&self.registry.gather()).expect("metrics encode as text")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The method as a label value: the standard ones, and `other` for anything a client invents, so
/// that invented methods cannot add series without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every request, and logs the cause of every 5xx.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    // Unmatched paths are one label value, so that scanners cannot grow the series without bound.
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status();
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::error!(cause = %format!("{cause:#}"), %method, %path, status = status.as_u16(), "request failed");
    }
    state.metrics.http_requests.with_label_values(&[&method, &path, status.as_str()]).inc();
    state.metrics.http_duration.with_label_values(&[&method, &path]).observe(started.elapsed().as_secs_f64());
    response
}

/// Why a session closed, as a label value.
pub fn close_reason(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::MaxDuration => "max_duration",
        CloseReason::EndedByModerator => "ended_by_moderator",
        CloseReason::Empty => "empty",
        CloseReason::ServerShutdown => "server_shutdown",
        CloseReason::ClassDeleted => "class_deleted",
    }
}

/// Why a participant left, as a label value.
pub fn leave_reason(reason: LeaveReason) -> &'static str {
    match reason {
        LeaveReason::Left => "left",
        LeaveReason::RemovedByModerator => "removed_by_moderator",
        LeaveReason::RemovedFromClass => "removed_from_class",
        LeaveReason::DuplicateIdentity => "duplicate_identity",
        LeaveReason::RoomFull => "room_full",
        LeaveReason::ConnectionLost => "connection_lost",
        LeaveReason::TooSlow => "too_slow",
        LeaveReason::SessionClosed(reason) => close_reason(reason),
    }
}

impl Metrics {
    /// Counters and histograms of one SFU event.
    pub fn sfu_event(&self, event: &SfuEvent) {
        let sfu = &self.sfu;
        match event {
            SfuEvent::SessionClosed { duration, e2ee, .. } => {
                sfu.session_duration.observe(duration.as_secs_f64());
                sfu.sessions_ended.with_label_values(&[bool_label(*e2ee)]).inc();
            }
            SfuEvent::ParticipantJoined { e2ee, .. } => {
                sfu.participants_joined.with_label_values(&[bool_label(*e2ee)]).inc()
            }
            SfuEvent::JoinRefused { code, .. } => sfu.joins_refused.with_label_values(&[code.as_str()]).inc(),
            SfuEvent::Stats { stats, .. } => {
                for (kind, counters) in [("audio", &stats.audio), ("video", &stats.video)] {
                    record_counters(sfu, kind, counters);
                }
                sfu.nacks.inc_by(stats.nacks_received);
                sfu.retransmissions.inc_by(stats.retransmissions);
                sfu.renegotiations.with_label_values(&["client"]).inc_by(stats.client_offers);
                sfu.slot_switches.inc_by(stats.slot_switches);
                sfu.links.with_label_values(&["lost"]).inc_by(stats.links_lost);
                sfu.links.with_label_values(&["restored"]).inc_by(stats.links_restored);
                sfu.bandwidth_pauses.inc_by(stats.bandwidth_pauses);
                sfu.e2ee_keys.with_label_values(&["relayed"]).inc_by(stats.e2ee_keys_relayed);
                sfu.e2ee_keys.with_label_values(&["skipped"]).inc_by(stats.e2ee_keys_skipped);
                for kbps in &stats.downlink_estimates_kbps {
                    sfu.downlink_estimate.observe(f64::from(*kbps));
                }
                sfu.keyframe_requests
                    .with_label_values(&["received"])
                    .inc_by(stats.keyframe_requests_received);
                sfu.keyframe_requests.with_label_values(&["sent"]).inc_by(stats.keyframe_requests_sent);
                if let Some(loss) = stats.receiver_loss_fraction {
                    sfu.receiver_loss.observe(f64::from(loss));
                }
            }
            SfuEvent::ParticipantLeft { reason, .. } => {
                sfu.participants_left.with_label_values(&[leave_reason(*reason)]).inc()
            }
            SfuEvent::SessionStarted { .. } => {}
        }
    }

    pub fn set_sfu_occupancy(&self, n_rooms: i64, n_participants: i64) {
        self.sfu.rooms.set(n_rooms);
        self.sfu.participants.set(n_participants);
    }
}

fn bool_label(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

fn record_counters(sfu: &SfuMetrics, kind: &str, counters: &MediaCounters) {
    sfu.packets.with_label_values(&["in", kind]).inc_by(counters.packets_in);
    sfu.packets.with_label_values(&["out", kind]).inc_by(counters.packets_out);
    sfu.packets.with_label_values(&["dropped", kind]).inc_by(counters.packets_dropped);
    sfu.bytes.with_label_values(&["in", kind]).inc_by(counters.bytes_in);
    sfu.bytes.with_label_values(&["out", kind]).inc_by(counters.bytes_out);
}
