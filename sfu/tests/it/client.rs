//! A WebRTC client made of str0m, talking to the SFU over real loopback UDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use models::{Role, Tier, TierPolicy, UserId};
use sfu::{
    JoinRequest, ParticipantEvent, ParticipantId, ParticipantParams, RoomId, SfuError, SfuHandle,
    SlotDeclaration, SlotKind,
};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::TcpType;
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub audio: u64,
    pub video: u64,
}

#[derive(Debug, Default)]
pub struct ClientState {
    pub connected: bool,
    /// Packets received, by their CSRC: the publisher's SSRC.
    pub received: HashMap<u32, Counts>,
    /// Packets that named no publisher in a CSRC.
    pub without_csrc: u64,
    /// Per slot and publisher (CSRC) in it: whether the first video packet started a keyframe.
    pub first_video_was_keyframe: HashMap<(Mid, u32), bool>,
    pub events: Vec<ParticipantEvent>,
    pub keyframe_requests: u64,
    /// Whether our audio carries speech (RFC 6464 level -20 dBov and the voice flag) or silence.
    pub speaking: bool,
    /// Publishers' SSRCs to their participant id, from every slot map so far.
    pub publishers: HashMap<u32, String>,
    /// Our camera's simulcast layers and their SSRCs.
    pub layer_ssrcs: Vec<(String, u32)>,
}

pub struct Client {
    pub participant_id: ParticipantId,
    pub state: Arc<Mutex<ClientState>>,
    control: mpsc::Sender<Control>,
}

enum Control {
    Stop,
    /// Renegotiate with our video m-line inactive, as a browser does when a track stops.
    StopSendingVideo,
}

pub fn standard_policy() -> Option<models::VisioPolicy> {
    TierPolicy::offer(Tier::Standard).visio
}

pub fn room(raw: &str) -> RoomId {
    RoomId::new(raw).unwrap()
}

pub fn participant(user: &str, role: Role) -> ParticipantParams {
    ParticipantParams {
        user_id: UserId::new(user).unwrap(),
        display_name: user.to_owned(),
        role,
        e2ee_public_key: None,
    }
}

/// Slots the test clients declare: 3 audio, a stage and 4 thumbnails.
pub const SLOT_KINDS: [SlotKind; 8] = [
    SlotKind::Audio,
    SlotKind::Audio,
    SlotKind::Audio,
    SlotKind::Stage,
    SlotKind::Thumbnail,
    SlotKind::Thumbnail,
    SlotKind::Thumbnail,
    SlotKind::Thumbnail,
];

/// A client-side offer with one audio and one video m-line, both sending, and receive-only
/// m-lines for `slots`, which it returns declared.
pub fn client_offer(
    rtc: &mut Rtc,
    slots: &[SlotKind],
) -> (SdpOffer, SdpPendingOffer, Vec<(Mid, MediaKind)>, Vec<SlotDeclaration>) {
    client_offer_with(rtc, slots, &[])
}

/// [`client_offer`] with a camera that sends these simulcast layers (none: no simulcast).
pub fn client_offer_with(
    rtc: &mut Rtc,
    slots: &[SlotKind],
    layers: &[&str],
) -> (SdpOffer, SdpPendingOffer, Vec<(Mid, MediaKind)>, Vec<SlotDeclaration>) {
    let mut changes = rtc.sdp_api();
    let audio = changes.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let simulcast = (!layers.is_empty()).then(|| str0m::media::Simulcast {
        send: layers.iter().map(|rid| str0m::media::SimulcastLayer::new(rid)).collect(),
        recv: vec![],
    });
    let video = changes.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
    let declarations = slots
        .iter()
        .map(|kind| {
            let media = if *kind == SlotKind::Audio { MediaKind::Audio } else { MediaKind::Video };
            let mid = changes.add_media(media, Direction::RecvOnly, None, None, None);
            SlotDeclaration { mid: mid.to_string(), kind: *kind }
        })
        .collect();
    let (offer, pending) = changes.apply().unwrap();
    (offer, pending, vec![(audio, MediaKind::Audio), (video, MediaKind::Video)], declarations)
}

/// Joins without connecting media: enough for admission tests.
pub async fn join_only(
    handle: &SfuHandle,
    room_id: &RoomId,
    policy: Option<models::VisioPolicy>,
    user: &str,
    role: Role,
) -> Result<sfu::Joined, SfuError> {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap());
    let (offer, _pending, _mids, slots) = client_offer(&mut rtc, &SLOT_KINDS);
    handle
        .join(JoinRequest {
            room_id: room_id.clone(),
            policy,
            participant: participant(user, role),
            offer_sdp: offer.to_sdp_string(),
            tracks: vec![],
            slots,
        })
        .await
}

impl Client {
    /// Joins, connects over UDP and publishes Opus-like audio every 20 ms and VP8 video at 30
    /// frames per second (one packet per frame, a keyframe every two seconds or on request).
    pub async fn connect(handle: &SfuHandle, room_id: &RoomId, user: &str, role: Role) -> Client {
        Client::connect_simulcast(handle, room_id, user, role, &[]).await
    }

    /// Like `connect`, with a camera that sends simulcast `layers` (lowest first): each frame in
    /// each layer, the higher ones larger.
    pub async fn connect_simulcast(
        handle: &SfuHandle,
        room_id: &RoomId,
        user: &str,
        role: Role,
        layers: &[&str],
    ) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local_addr = socket.local_addr().unwrap();
        let candidate = Candidate::host(local_addr, "udp").unwrap();
        Client::connect_over(handle, room_id, user, role, (Link::Udp(socket), local_addr, candidate), layers)
            .await
    }

    /// Like `connect`, over ICE-TCP only (RFC 4571 framing), as behind a UDP-blocking firewall.
    pub async fn connect_tcp(handle: &SfuHandle, room_id: &RoomId, user: &str, role: Role) -> Client {
        let server = handle.tcp_addr().unwrap();
        let stream = TcpStream::connect(server).await.unwrap();
        let local_addr = stream.local_addr().unwrap();
        let candidate = Candidate::builder().tcp().host(local_addr).tcptype(TcpType::Active).build().unwrap();
        let (mut reader, writer) = stream.into_split();
        let (frames_tx, frames) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(len) = reader.read_u16().await {
                if reader.read_exact(&mut buf[..len as usize]).await.is_err() {
                    break;
                }
                if frames_tx.send(buf[..len as usize].to_vec()).await.is_err() {
                    break;
                }
            }
        });
        let link = Link::Tcp { frames, writer, server };
        Client::connect_over(handle, room_id, user, role, (link, local_addr, candidate), &[]).await
    }

    async fn connect_over(
        handle: &SfuHandle,
        room_id: &RoomId,
        user: &str,
        role: Role,
        (link, local_addr, candidate): (Link, SocketAddr, Candidate),
        layers: &[&str],
    ) -> Client {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        rtc.add_local_candidate(candidate);
        let (offer, pending, own_mids, slots) = client_offer_with(&mut rtc, &SLOT_KINDS, layers);
        let tracks = if layers.is_empty() {
            vec![]
        } else {
            let camera = own_mids.iter().find(|(_, kind)| *kind == MediaKind::Video).unwrap().0;
            vec![sfu::TrackDeclaration {
                mid: camera.to_string(),
                source: sfu::TrackSource::Camera,
                layers: layers.iter().map(|rid| rid.to_string()).collect(),
            }]
        };
        let joined = handle
            .join(JoinRequest {
                room_id: room_id.clone(),
                policy: standard_policy(),
                participant: participant(user, role),
                offer_sdp: offer.to_sdp_string(),
                tracks,
                slots,
            })
            .await
            .unwrap();
        let answer = SdpAnswer::from_sdp_string(&joined.answer_sdp).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();

        let state = Arc::new(Mutex::new(ClientState::default()));
        if let Some((camera, _)) = own_mids.iter().find(|(_, kind)| *kind == MediaKind::Video) {
            for rid in layers {
                let ssrc = rtc.direct_api().stream_tx_by_mid(*camera, Some((*rid).into())).map(|s| *s.ssrc());
                state.lock().unwrap().layer_ssrcs.extend(ssrc.map(|ssrc| (rid.to_string(), ssrc)));
            }
        }
        let (control, control_rx) = mpsc::channel(4);
        let driver = Driver {
            rtc,
            own_mids,
            layers: layers.iter().map(|rid| str0m::media::Rid::from(*rid)).collect(),
            link,
            local_addr,
            handle: handle.clone(),
            room_id: room_id.clone(),
            participant_id: joined.participant_id.clone(),
            events: joined.events,
            state: state.clone(),
            control: control_rx,
        };
        tokio::spawn(driver.run());
        Client { participant_id: joined.participant_id, state, control }
    }

    /// Packets received from `publisher`, known by the SSRCs the slot maps gave for it.
    pub fn counts_from(&self, publisher: &ParticipantId) -> Counts {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = Counts::default();
        for (csrc, counts) in &state.received {
            if state.publishers.get(csrc).map(String::as_str) == Some(publisher.as_str()) {
                total.audio += counts.audio;
                total.video += counts.video;
            }
        }
        total
    }

    pub fn has_event(&self, matches: impl Fn(&ParticipantEvent) -> bool) -> bool {
        self.state.lock().unwrap().events.iter().any(matches)
    }

    pub fn set_speaking(&self, speaking: bool) {
        self.state.lock().unwrap().speaking = speaking;
    }

    /// The SSRC of each simulcast layer this client's camera sends, by RID.
    pub fn layer_ssrcs(&self) -> Vec<(String, u32)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).layer_ssrcs.clone()
    }

    pub async fn stop(&self) {
        let _ = self.control.send(Control::Stop).await;
    }

    pub async fn stop_sending_video(&self) {
        let _ = self.control.send(Control::StopSendingVideo).await;
    }
}

/// Waits until `condition` holds, polling, or panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Driver {
    rtc: Rtc,
    own_mids: Vec<(Mid, MediaKind)>,
    /// Simulcast layers of the camera, lowest first; empty without simulcast.
    layers: Vec<str0m::media::Rid>,
    link: Link,
    local_addr: SocketAddr,
    handle: SfuHandle,
    room_id: RoomId,
    participant_id: ParticipantId,
    events: mpsc::Receiver<ParticipantEvent>,
    state: Arc<Mutex<ClientState>>,
    control: mpsc::Receiver<Control>,
}

enum Link {
    Udp(UdpSocket),
    Tcp { frames: mpsc::Receiver<Vec<u8>>, writer: OwnedWriteHalf, server: SocketAddr },
}

impl Link {
    async fn send(&mut self, contents: &[u8], destination: SocketAddr) {
        match self {
            Link::Udp(socket) => {
                let _ = socket.send_to(contents, destination).await;
            }
            Link::Tcp { writer, .. } => {
                let _ = writer.write_u16(contents.len() as u16).await;
                let _ = writer.write_all(contents).await;
            }
        }
    }

    async fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr, Protocol)> {
        match self {
            Link::Udp(socket) => {
                let (n, source) = socket.recv_from(buf).await.ok()?;
                Some((n, source, Protocol::Udp))
            }
            Link::Tcp { frames, server, .. } => {
                let frame = frames.recv().await?;
                buf[..frame.len()].copy_from_slice(&frame);
                Some((frame.len(), *server, Protocol::Tcp))
            }
        }
    }
}

struct Sender {
    seq_no: u64,
    timestamp: u32,
    n_frames: u64,
    next_at: Instant,
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; 65536];
        let start = Instant::now();
        let mut audio = Sender { seq_no: 1, timestamp: 0, n_frames: 0, next_at: start };
        let mut video = Sender { seq_no: 1, timestamp: 0, n_frames: 0, next_at: start };
        let mut want_keyframe = false;
        loop {
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(at)) => break at,
                    Ok(Output::Transmit(transmit)) => {
                        self.link.send(&transmit.contents, transmit.destination).await;
                    }
                    Ok(Output::Event(event)) => self.on_event(event, &mut want_keyframe),
                    Err(_) => {
                        self.rtc.disconnect();
                        break Instant::now();
                    }
                }
            };
            if !self.rtc.is_alive() {
                // The server closed the connection; its events (the reason why) may still be
                // on their way.
                while let Some(event) = self.events.recv().await {
                    self.state.lock().unwrap().events.push(event);
                }
                return;
            }
            let connected = self.state.lock().unwrap().connected;
            let next_media = if connected { audio.next_at.min(video.next_at) } else { timeout };
            let wake = timeout.min(next_media);
            tokio::select! {
                received = self.link.recv(&mut buf) => {
                    let Some((n, source, proto)) = received else { return };
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive {
                        proto, source, destination: self.local_addr, contents,
                    });
                    let _ = self.rtc.handle_input(input);
                }
                event = self.events.recv() => {
                    let Some(event) = event else { return };
                    let mut state = self.state.lock().unwrap();
                    if let ParticipantEvent::Slots(slots) = &event {
                        for slot in slots {
                            if let (Some(publisher), Some(csrc)) = (&slot.publisher, slot.csrc) {
                                state.publishers.insert(csrc, publisher.to_string());
                            }
                        }
                    }
                    state.events.push(event);
                }
                control = self.control.recv() => match control {
                    Some(Control::StopSendingVideo) => self.stop_video().await,
                    _ => return,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    if connected {
                        self.send_media(now, &mut audio, &mut video, &mut want_keyframe);
                    }
                    let _ = self.rtc.handle_input(Input::Timeout(now));
                }
            }
        }
    }

    async fn stop_video(&mut self) {
        let Some((mid, _)) = self.own_mids.iter().find(|(_, kind)| *kind == MediaKind::Video).copied() else {
            return;
        };
        self.own_mids.retain(|(own, _)| *own != mid);
        let mut changes = self.rtc.sdp_api();
        changes.set_direction(mid, Direction::Inactive);
        let Some((offer, pending)) = changes.apply() else { return };
        let answer = self
            .handle
            .offer(&self.room_id, &self.participant_id, offer.to_sdp_string(), vec![])
            .await
            .unwrap();
        self.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    }

    fn on_event(&mut self, event: Event, want_keyframe: &mut bool) {
        let mut state = self.state.lock().unwrap();
        match event {
            Event::Connected => state.connected = true,
            Event::KeyframeRequest(_) => {
                state.keyframe_requests += 1;
                *want_keyframe = true;
            }
            Event::RtpPacket(packet) => {
                let Some(mid) = self.rtc.direct_api().stream_rx(&packet.header.ssrc).map(|s| s.mid()) else {
                    return;
                };
                let Some(kind) = self.rtc.media(mid).map(|m| m.kind()) else { return };
                if packet.header.csrc_count == 0 {
                    state.without_csrc += 1;
                    return;
                }
                let publisher = packet.header.csrc[0];
                let counts = state.received.entry(publisher).or_default();
                match kind {
                    MediaKind::Audio => counts.audio += 1,
                    MediaKind::Video => {
                        counts.video += 1;
                        let keyframe = str0m::format::detect_vp8_keyframe(&packet.payload);
                        state.first_video_was_keyframe.entry((mid, publisher)).or_insert(keyframe);
                    }
                }
            }
            _ => {}
        }
    }

    fn send_media(&mut self, now: Instant, audio: &mut Sender, video: &mut Sender, want_keyframe: &mut bool) {
        let speaking = self.state.lock().unwrap().speaking;
        let level = str0m::rtp::ExtensionValues {
            audio_level: Some(if speaking { -20 } else { -127 }),
            voice_activity: Some(speaking),
            ..Default::default()
        };
        let opus = self.rtc.codec_config().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt());
        let vp8 = self.rtc.codec_config().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt());
        let rids: Vec<Option<str0m::media::Rid>> =
            if self.layers.is_empty() { vec![None] } else { self.layers.iter().copied().map(Some).collect() };
        for (mid, kind) in self.own_mids.clone() {
            match kind {
                MediaKind::Audio if now >= audio.next_at => {
                    let Some(pt) = opus else { continue };
                    let mut direct = self.rtc.direct_api();
                    let Some(stream) = direct.stream_tx_by_mid(mid, None) else { continue };
                    let payload = vec![0xfc; 60];
                    stream.write_rtp(
                        RtpWrite::new(pt, audio.seq_no.into(), audio.timestamp, now, payload)
                            .marker(true)
                            .ext_vals(level.clone()),
                    );
                    audio.seq_no += 1;
                    audio.timestamp = audio.timestamp.wrapping_add(960);
                    audio.next_at += Duration::from_millis(20);
                }
                MediaKind::Video if now >= video.next_at => {
                    let Some(pt) = vp8 else { continue };
                    let keyframe = *want_keyframe || video.n_frames.is_multiple_of(60);
                    *want_keyframe = false;
                    // Each layer its own SSRC and sequence space, the higher ones larger.
                    for (index, rid) in rids.iter().enumerate() {
                        let mut direct = self.rtc.direct_api();
                        let Some(stream) = direct.stream_tx_by_mid(mid, *rid) else { continue };
                        // VP8 payload descriptor (S=1, PID=0), then the payload header whose low
                        // bit is 0 for a keyframe; the rest is filler no decoder will ever see.
                        let mut payload = vec![0x10, if keyframe { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a];
                        payload.resize(300 * (index + 1), 0xaa);
                        stream.write_rtp(
                            RtpWrite::new(pt, video.seq_no.into(), video.timestamp, now, payload)
                                .marker(true)
                                .nackable(true),
                        );
                    }
                    video.seq_no += 1;
                    video.n_frames += 1;
                    video.timestamp = video.timestamp.wrapping_add(3000);
                    video.next_at += Duration::from_millis(33);
                }
                _ => {}
            }
        }
    }
}
