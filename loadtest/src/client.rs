//! One simulated participant: the public WebSocket protocol (`models::visio`, version 2) and a
//! str0m peer connection in RTP mode over UDP.
//!
//! It offers once, at its join: a send-only microphone, a send-only camera if it has one, and its
//! receive slots (receive-only m-lines declared in `slots`), and never negotiates again. It
//! publishes what [`crate::media`] synthesises and records, in a [`ClientReport`], what it sent,
//! each `slots` and `speakers` message, and every packet that arrived on a slot with the CSRC the
//! SFU put on it. It judges nothing itself: [`crate::report`] does, once everyone is done.
//!
//! Its media are end-to-end encrypted as a page's are (docs/e2ee.md, [`crate::e2ee`]): it joins
//! with a public key, seals its media key for the others as the key rules say, encrypts each frame
//! before packetising it, and decrypts what it receives: each audio packet (one frame), and each
//! video frame once rebuilt from its packets ([`crate::reassembly`]). A frame it cannot decrypt is
//! dropped, as a page drops it: an audio packet so dropped does not count as delivered.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use models::visio::{
    ClientMessage, ServerMessage, SlotDeclaration, SlotKind, SlotState, Source, TrackDeclaration,
};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

use crate::e2ee::{E2eeSession, FrameKind, Received};
use crate::media::{read_counter, AudioSource, SpeakerSchedule, VideoSource, COUNTER_LEN};
use crate::reassembly::FrameAssembler;
use crate::timeline::{ms_since, Arrival, ClientReport, Ms, Refusal, SlotChange};

/// How many receive slots of each kind a participant declares.
#[derive(Debug, Clone, Copy)]
pub struct SlotPlan {
    pub audio: usize,
    pub stage: bool,
    pub thumbnails: usize,
}

impl SlotPlan {
    /// The declared slots' kinds, in the order of their m-lines.
    pub fn kinds(&self) -> Vec<SlotKind> {
        let mut kinds = vec![SlotKind::Audio; self.audio];
        if self.stage {
            kinds.push(SlotKind::Stage);
        }
        kinds.extend(std::iter::repeat_n(SlotKind::Thumbnail, self.thumbnails));
        kinds
    }
}

pub struct ClientConfig {
    /// Position in the call (0: the teacher); picks the speaking turns and seeds the media.
    pub participant_idx: usize,
    /// `ws://host:port/v1/classes/{class_id}/visio/ws`.
    pub ws_url: String,
    pub token: String,
    pub camera: bool,
    pub slots: SlotPlan,
    pub speakers: Arc<SpeakerSchedule>,
    pub bind_ip: IpAddr,
    /// The origin of every time in the report.
    pub epoch: Instant,
    /// A real VP8 clip to send instead of synthetic frames (`--video-ivf`).
    pub clip: Option<Arc<crate::ivf::Clip>>,
    /// Join with a public key and encrypt end to end (off: `--no-e2ee`).
    pub e2ee: bool,
    /// Local address of the WebSocket's TCP connection (`ws://` only), so that one process can
    /// come from many addresses as a school's classes do (`loadtest surge`). `None`: the system
    /// picks.
    pub tcp_bind: Option<IpAddr>,
}

/// What the caller may watch while the participant runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// The server answered the join (`joined`).
    pub joined: AtomicBool,
    pub admitted: AtomicBool,
    /// ICE and DTLS are up.
    pub connected: AtomicBool,
    pub receiving: AtomicBool,
    pub done: AtomicBool,
    /// Told whenever a flag is set, for callers that wait on many participants without polling.
    pub changed: tokio::sync::Notify,
}

impl Progress {
    pub fn get(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }

    /// Waits until `flag` (one of this participant's) is set or `deadline` passes; says which.
    pub async fn wait_until(&self, flag: impl Fn(&Progress) -> &AtomicBool, deadline: Instant) -> bool {
        loop {
            // Registered before the flag is read, so that a `set` in between is not missed.
            let changed = self.changed.notified();
            if Progress::get(flag(self)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, changed).await.is_err() {
                return Progress::get(flag(self));
            }
        }
    }
}

fn set(progress: &Progress, flag: &AtomicBool) {
    flag.store(true, Ordering::Relaxed);
    progress.changed.notify_waiters();
}

/// Runs one participant until `stop` completes (then it says `leave`) or the server ends its
/// participation. Errors land in the report.
pub async fn run(
    config: ClientConfig,
    progress: Arc<Progress>,
    stop: impl Future<Output = ()>,
) -> ClientReport {
    let mut report = ClientReport { slot_kinds: config.slots.kinds(), ..ClientReport::default() };
    let mut e2ee = E2eeSession::new(config.e2ee, config.epoch);
    if let Err(err) = drive(&config, &progress, &mut report, &mut e2ee, stop).await {
        report.error = Some(format!("{err:#}"));
    }
    report.e2ee = e2ee.into_log();
    set(&progress, &progress.done);
    report
}

/// The peer connection's side of a participant: its own tracks and its slots' m-lines.
struct Peer {
    rtc: Rtc,
    microphone: Mid,
    camera: Option<Mid>,
    slot_mids: Vec<Mid>,
    /// Incoming SSRC to slot, learnt from str0m on the first packet of each.
    slot_of_ssrc: Vec<(Ssrc, Option<usize>)>,
    audio: AudioSource,
    video: VideoSource,
    connected: bool,
    /// Each publisher's SSRC (the CSRC of what the SFU forwards) to its participant id, from the
    /// `slots` messages: whose keys decrypt a packet.
    owners: HashMap<u32, String>,
    /// Per slot, the video frames being rebuilt (`None` for audio slots).
    assemblers: Vec<Option<FrameAssembler>>,
}

fn encode(message: &ClientMessage) -> Message {
    // A message of plain strings and enums always serialises.
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

async fn drive(
    config: &ClientConfig,
    progress: &Progress,
    report: &mut ClientReport,
    e2ee: &mut E2eeSession,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let epoch = config.epoch;
    let socket = UdpSocket::bind(SocketAddr::new(config.bind_ip, 0)).await?;
    enlarge_receive_buffer(&socket);
    let local_addr = socket.local_addr()?;
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local_addr, "udp")?);
    let mut changes = rtc.sdp_api();
    let microphone = changes.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let camera =
        config.camera.then(|| changes.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
    let slot_mids: Vec<Mid> = report
        .slot_kinds
        .iter()
        .map(|kind| {
            let media_kind = if *kind == SlotKind::Audio { MediaKind::Audio } else { MediaKind::Video };
            changes.add_media(media_kind, Direction::RecvOnly, None, None, None)
        })
        .collect();
    let (offer, pending) = changes.apply().ok_or_else(|| anyhow::anyhow!("no offer to make"))?;
    let mut tracks =
        vec![TrackDeclaration { mid: microphone.to_string(), source: Source::Microphone, layers: vec![] }];
    tracks.extend(camera.map(|mid| TrackDeclaration {
        mid: mid.to_string(),
        source: Source::Camera,
        layers: vec![],
    }));
    let slots = slot_mids
        .iter()
        .zip(&report.slot_kinds)
        .map(|(mid, kind)| SlotDeclaration { mid: mid.to_string(), kind: *kind })
        .collect();

    let ws = match connect(&config.ws_url, config.tcp_bind).await {
        Ok(ws) => ws,
        Err(err) => {
            report.refused = refusal_of_upgrade(&err);
            return Err(err.into());
        }
    };
    report.ws_opened = Some(ms_since(epoch, Instant::now()));
    let (mut ws_tx, mut ws_rx) = ws.split();
    let join = ClientMessage::Join {
        token: config.token.clone(),
        sdp: offer.to_sdp_string(),
        tracks,
        slots,
        e2ee: e2ee.hello(),
    };
    ws_tx.send(encode(&join)).await?;
    report.join_sent = Some(ms_since(epoch, Instant::now()));
    let mut pending = Some(pending);

    // Synthetic video payloads end with the publisher's packet counter, outside the frame.
    let trailer_len = if config.clip.is_some() { 0 } else { COUNTER_LEN };
    let assemblers = report
        .slot_kinds
        .iter()
        .map(|kind| (*kind != SlotKind::Audio).then(|| FrameAssembler::new(trailer_len)))
        .collect();
    let seed =
        0x9E37_79B9_7F4A_7C15 ^ (config.participant_idx as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut peer = Peer {
        rtc,
        microphone,
        camera,
        slot_mids,
        slot_of_ssrc: Vec::new(),
        audio: AudioSource::new(epoch, seed),
        video: VideoSource::with_clip(epoch, seed.rotate_left(17), config.clip.clone()),
        connected: false,
        owners: HashMap::new(),
        assemblers,
    };
    let mut buf = vec![0u8; 2048];
    tokio::pin!(stop);
    loop {
        let timeout = peer.drain(&socket, report, progress, e2ee, epoch).await?;
        let now = Instant::now();
        let speaking = config.speakers.speaks(config.participant_idx, now);
        let mut wake = timeout;
        if let Some(rotation) = e2ee.poll_timeout() {
            wake = wake.min(rotation);
        }
        if peer.connected {
            wake = wake.min(peer.audio.next_at(speaking));
            if let Some(change) = config.speakers.next_change(now) {
                wake = wake.min(change);
            }
            if peer.camera.is_some() {
                wake = wake.min(peer.video.next_at());
            }
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, source) = received?;
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive {
                    proto: Protocol::Udp, source, destination: local_addr, contents,
                });
                let _ = peer.rtc.handle_input(input);
            }
            message = ws_rx.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => anyhow::bail!("the server closed the call socket"),
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => return Err(err.into()),
                };
                let now = Instant::now();
                let at = ms_since(epoch, now);
                let mut sealed = Vec::new();
                match serde_json::from_str::<ServerMessage>(&text)? {
                    ServerMessage::Joined { participant_id, sdp, protocol_version, .. } => {
                        anyhow::ensure!(protocol_version == models::visio::PROTOCOL_VERSION,
                            "the server speaks protocol version {protocol_version}");
                        let pending = pending.take().ok_or_else(|| anyhow::anyhow!("joined twice"))?;
                        peer.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&sdp)?)?;
                        e2ee.joined(&participant_id, now);
                        report.participant_id = Some(participant_id);
                        report.joined = Some(at);
                        set(progress, &progress.joined);
                    }
                    ServerMessage::Admitted { participants, .. } => {
                        report.admitted = Some(at);
                        report.peers_seen.extend(participants.iter().map(|p| p.participant_id.clone()));
                        set(progress, &progress.admitted);
                        sealed = e2ee.admitted(&participants, now);
                    }
                    ServerMessage::ParticipantJoined { participant } => {
                        report.peers_seen.push(participant.participant_id.clone());
                        sealed = e2ee.participant_joined(&participant, now);
                    }
                    ServerMessage::ParticipantLeft { participant_id } => {
                        sealed = e2ee.participant_left(&participant_id, now);
                    }
                    ServerMessage::E2eeKey { from, sealed } => e2ee.e2ee_key(&from, &sealed),
                    ServerMessage::Slots { slots } => {
                        for state in &slots {
                            if let (Some(csrc), Some(participant_id)) = (state.csrc, &state.participant_id) {
                                peer.owners.insert(csrc, participant_id.clone());
                            }
                        }
                        record_slots(report, &peer.slot_mids, at, &slots)
                    }
                    ServerMessage::Speakers { participant_ids } => report.speakers.push((at, participant_ids)),
                    ServerMessage::Left { reason } => anyhow::bail!("left the call: {reason:?}"),
                    ServerMessage::Error { code, message } => {
                        if report.joined.is_none() {
                            report.refused = Some(Refusal::of_message(code.as_str(), &message));
                        }
                        anyhow::bail!("{}: {message}", code.as_str())
                    }
                    ServerMessage::Answer { .. } => report.unexpected.push("answer".into()),
                    _ => {}
                }
                for message in e2ee.key_messages(sealed) {
                    ws_tx.send(encode(&message)).await?;
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                e2ee.handle_timeout(now);
                if peer.connected {
                    let speaking = config.speakers.speaks(config.participant_idx, now);
                    peer.send_media(now, speaking, report, e2ee, epoch);
                }
                let _ = peer.rtc.handle_input(Input::Timeout(now));
            }
            _ = &mut stop => {
                let _ = ws_tx.send(encode(&ClientMessage::Leave)).await;
                let _ = ws_tx.close().await;
                return Ok(());
            }
        }
    }
}

/// Keeps the slots whose publisher changed.
fn record_slots(report: &mut ClientReport, slot_mids: &[Mid], at: Ms, slots: &[SlotState]) {
    for state in slots {
        let Some(slot_idx) = slot_mids.iter().position(|mid| mid.to_string() == state.mid) else {
            report.unexpected.push(format!("slot of undeclared mid {}", state.mid));
            continue;
        };
        let last = report.slot_changes.iter().rev().find(|c| c.slot_idx == slot_idx);
        let (last_participant, last_csrc) =
            last.map_or((None, None), |c| (c.participant_id.as_ref(), c.csrc));
        if last_participant != state.participant_id.as_ref() || last_csrc != state.csrc {
            report.slot_changes.push(SlotChange {
                at,
                slot_idx,
                participant_id: state.participant_id.clone(),
                csrc: state.csrc,
            });
        }
    }
}

impl Peer {
    /// Sends what str0m has to send and handles its events, until it only waits.
    async fn drain(
        &mut self,
        socket: &UdpSocket,
        report: &mut ClientReport,
        progress: &Progress,
        e2ee: &mut E2eeSession,
        epoch: Instant,
    ) -> anyhow::Result<Instant> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(transmit) => {
                    let _ = socket.send_to(&transmit.contents, transmit.destination).await;
                }
                Output::Event(Event::Connected) => {
                    self.connected = true;
                    report.connected = Some(ms_since(epoch, Instant::now()));
                    set(progress, &progress.connected);
                    let mut direct = self.rtc.direct_api();
                    report.audio_ssrc = direct.stream_tx_by_mid(self.microphone, None).map(|s| *s.ssrc());
                    report.video_ssrc =
                        self.camera.and_then(|mid| direct.stream_tx_by_mid(mid, None).map(|s| *s.ssrc()));
                }
                Output::Event(Event::KeyframeRequest(_)) => {
                    report.keyframe_requests.push(ms_since(epoch, Instant::now()));
                    self.video.request_keyframe();
                }
                Output::Event(Event::RtpPacket(packet)) => {
                    let slot_idx = self.slot_of(packet.header.ssrc);
                    let csrc = if packet.header.csrc_count > 0 { packet.header.csrc[0] } else { 0 };
                    let now = Instant::now();
                    let sender = self.owners.get(&csrc).map(String::as_str);
                    let assembler =
                        slot_idx.and_then(|idx| self.assemblers.get_mut(idx)).and_then(Option::as_mut);
                    // An audio packet is one frame, decrypted before its counter is read. A
                    // video packet's counter is outside the frame; the frame is decrypted once
                    // all its packets are in.
                    let counted = match assembler {
                        None => match e2ee.unprotect(sender, FrameKind::Audio, &packet.payload, now) {
                            Received::Frame(frame) => Some(read_counter(&frame)),
                            // Counted in the E2EE log, not as delivered.
                            Received::Dropped(_) => None,
                        },
                        Some(assembler) => {
                            let header = &packet.header;
                            let frame = assembler.push(
                                *packet.seq_no,
                                header.timestamp,
                                header.marker,
                                csrc,
                                &packet.payload,
                            );
                            e2ee.record_incomplete(std::mem::take(&mut assembler.n_incomplete));
                            if let Some(frame) = frame {
                                let sender = self.owners.get(&frame.csrc).map(String::as_str);
                                e2ee.unprotect(sender, FrameKind::Vp8, &frame.data, now);
                            }
                            Some(read_counter(&packet.payload))
                        }
                    };
                    match (slot_idx, counted) {
                        (_, None) => {}
                        (Some(slot_idx), Some(Some(counter))) if csrc != 0 => {
                            report.arrivals.push(Arrival { slot_idx: slot_idx as u16, csrc, counter });
                        }
                        _ => report.n_unattributed += 1,
                    }
                    if report.first_media.is_none() {
                        report.first_media = Some(ms_since(epoch, Instant::now()));
                        set(progress, &progress.receiving);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    /// The slot an incoming SSRC belongs to. A participant has a handful of slots, each with one
    /// SSRC for good (RTX arrives unwrapped), so the list stays short.
    fn slot_of(&mut self, ssrc: Ssrc) -> Option<usize> {
        if let Some((_, slot_idx)) = self.slot_of_ssrc.iter().find(|(s, _)| *s == ssrc) {
            return *slot_idx;
        }
        let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
        let slot_idx = mid.and_then(|mid| self.slot_mids.iter().position(|m| *m == mid));
        self.slot_of_ssrc.push((ssrc, slot_idx));
        slot_idx
    }

    fn send_media(
        &mut self,
        now: Instant,
        speaking: bool,
        report: &mut ClientReport,
        e2ee: &mut E2eeSession,
        epoch: Instant,
    ) {
        let at = ms_since(epoch, now);
        let opus = self.rtc.codec_config().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt());
        let vp8 = self.rtc.codec_config().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt());
        // Audio is never dropped: it has no clear prefix to be too short for.
        let audio = self.audio.poll(now, speaking).and_then(|mut packet| {
            packet.payload = e2ee.protect(FrameKind::Audio, std::mem::take(&mut packet.payload))?;
            Some(packet)
        });
        if let (Some(pt), Some(packet)) = (opus, audio) {
            let mut direct = self.rtc.direct_api();
            if let Some(stream) = direct.stream_tx_by_mid(self.microphone, None) {
                let ext_vals = ExtensionValues {
                    audio_level: Some(packet.level),
                    voice_activity: Some(packet.voice),
                    ..Default::default()
                };
                let write = RtpWrite::new(pt, packet.seq_no.into(), packet.timestamp, now, packet.payload);
                stream.write_rtp(write.marker(packet.marker).ext_vals(ext_vals));
                report.sent.audio.push(at);
                if packet.marker {
                    report.sent.talkspurts.push(at);
                }
            }
        }
        let Some(camera) = self.camera else { return };
        let frame = self.video.poll(now, |frame| e2ee.protect(FrameKind::Vp8, frame));
        if let (Some(pt), Some(frame)) = (vp8, frame) {
            let mut direct = self.rtc.direct_api();
            let Some(stream) = direct.stream_tx_by_mid(camera, None) else { return };
            if frame.keyframe {
                report.sent.keyframes.push(at);
            }
            for packet in frame.packets {
                let write = RtpWrite::new(pt, packet.seq_no.into(), frame.timestamp, now, packet.payload);
                stream.write_rtp(write.marker(packet.marker).nackable(true));
                report.sent.video.push(at);
            }
        }
    }
}

/// Asks for a 1 MiB receive buffer (the kernel caps it at `net.core.rmem_max`). Each real
/// participant has a machine of its own; here 70 of them share two cores with the server, and a
/// client task that waits a few tens of milliseconds for a core must not lose the keyframes
/// that arrived meanwhile, or the test would measure this machine instead of the server.
fn enlarge_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    const SOL_SOCKET: i32 = 1;
    const SO_RCVBUF: i32 = 8;
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
    }
    let size: i32 = 1 << 20;
    // SAFETY: the descriptor is open for as long as `socket` lives, and `value` points to an
    // i32 of the length given. A failure leaves the default buffer, which is fine.
    let _ = unsafe {
        setsockopt(
            socket.as_raw_fd(),
            SOL_SOCKET,
            SO_RCVBUF,
            (&size as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
}

/// Waits until `flag` is set or `limit` passes; says which.
pub async fn wait_for(flag: &AtomicBool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !Progress::get(flag) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

type CallSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the call WebSocket, from `tcp_bind` when given (plain `ws://` only).
async fn connect(
    ws_url: &str,
    tcp_bind: Option<IpAddr>,
) -> Result<CallSocket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(local_ip) = tcp_bind else {
        return Ok(tokio_tungstenite::connect_async(ws_url).await?.0);
    };
    let request = ws_url.into_client_request()?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(tokio_tungstenite::tungstenite::Error::Url(
            tokio_tungstenite::tungstenite::error::UrlError::UnsupportedUrlScheme,
        ));
    }
    let host = uri.host().unwrap_or("127.0.0.1").trim_start_matches('[').trim_end_matches(']');
    let remote = tokio::net::lookup_host((host, uri.port_u16().unwrap_or(80)))
        .await?
        .find(|addr| addr.is_ipv4() == local_ip.is_ipv4())
        .ok_or_else(|| std::io::Error::other(format!("{host} has no address of the family of {local_ip}")))?;
    let socket =
        if local_ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(local_ip, 0))?;
    let stream = socket.connect(remote).await?;
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    Ok(tokio_tungstenite::client_async(request, stream).await?.0)
}

/// A refused WebSocket upgrade (`429`, `503`...): its status, `Retry-After` and code.
fn refusal_of_upgrade(err: &tokio_tungstenite::tungstenite::Error) -> Option<Refusal> {
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else { return None };
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
    let body = response.body().as_deref().unwrap_or_default();
    Some(Refusal::of_http(response.status().as_u16(), retry_after, body))
}
