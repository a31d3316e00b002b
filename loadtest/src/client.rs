//! One simulated participant: the public WebSocket protocol (`models::visio`) and a str0m peer
//! connection over UDP, publishing Opus-like audio (50 packets/s) and, with a camera, VP8-like
//! video (30 packets/s, a keyframe every 2 s or on request), and counting what it receives from
//! each other participant.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use models::visio::{ClientMessage, ServerMessage, Source, TrackDeclaration};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Packets received from one publisher.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub audio: u64,
    pub video: u64,
}

/// What a client saw, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub participant_id: Option<String>,
    pub joined: Option<Duration>,
    pub admitted: Option<Duration>,
    pub connected: Option<Duration>,
    pub first_media: Option<Duration>,
    /// By publisher participant id (the MediaStream id the server puts in its offers).
    pub received: HashMap<String, Counts>,
    pub error: Option<String>,
    pub done: bool,
}

pub struct ClientConfig {
    /// `ws://host:port/v1/classes/{class_id}/visio/ws`.
    pub ws_url: String,
    pub token: String,
    pub camera: bool,
    /// Whether the audio carries speech (RFC 6464 level -20 dBov and the voice flag) or silence:
    /// the server's last-N ranks speakers first.
    pub speaking: bool,
    pub bind_ip: std::net::IpAddr,
}

/// Runs one participant until `stop` is reached or the server ends its session. Errors land in
/// `progress.error`.
pub async fn run(config: ClientConfig, progress: Arc<Mutex<Progress>>, started: Instant, stop: Instant) {
    let result = drive(&config, &progress, started, stop).await;
    let mut progress = progress.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(err) = result {
        progress.error.get_or_insert(format!("{err:#}"));
    }
    progress.done = true;
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|p| p.into_inner())
}

async fn drive(
    config: &ClientConfig,
    progress: &Mutex<Progress>,
    started: Instant,
    stop: Instant,
) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(config.bind_ip, 0)).await?;
    let local_addr = socket.local_addr()?;
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local_addr, "udp")?);
    let mut changes = rtc.sdp_api();
    let mut own =
        vec![(changes.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None), MediaKind::Audio)];
    if config.camera {
        own.push((
            changes.add_media(MediaKind::Video, Direction::SendOnly, None, None, None),
            MediaKind::Video,
        ));
    }
    let (offer, pending) = changes.apply().ok_or_else(|| anyhow::anyhow!("no offer to make"))?;
    let tracks = own
        .iter()
        .map(|(mid, kind)| TrackDeclaration {
            mid: mid.to_string(),
            source: if *kind == MediaKind::Audio { Source::Microphone } else { Source::Camera },
        })
        .collect();

    let (ws, _) = tokio_tungstenite::connect_async(config.ws_url.as_str()).await?;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let send =
        |message: &ClientMessage| Message::Text(serde_json::to_string(message).unwrap_or_default().into());
    ws_tx
        .send(send(&ClientMessage::Join { token: config.token.clone(), sdp: offer.to_sdp_string(), tracks }))
        .await?;
    let mut pending = Some(pending);
    let mut msids: HashMap<Mid, String> = HashMap::new();

    let mut buf = vec![0u8; 65536];
    let mut audio = Pacer::new(Duration::from_millis(20));
    let mut video = Pacer::new(Duration::from_millis(33));
    let mut want_keyframe = false;
    let mut connected = false;
    loop {
        let timeout = loop {
            match rtc.poll_output()? {
                Output::Timeout(at) => break at,
                Output::Transmit(transmit) => {
                    let _ = socket.send_to(&transmit.contents, transmit.destination).await;
                }
                Output::Event(event) => match event {
                    Event::Connected => {
                        connected = true;
                        lock(progress).connected = Some(started.elapsed());
                    }
                    Event::KeyframeRequest(_) => want_keyframe = true,
                    Event::RtpPacket(packet) => {
                        let mid = rtc.direct_api().stream_rx(&packet.header.ssrc).map(|s| s.mid());
                        let kind = mid.and_then(|mid| rtc.media(mid)).map(|m| m.kind());
                        let publisher = mid.and_then(|mid| msids.get(&mid).cloned()).unwrap_or_default();
                        let mut progress = lock(progress);
                        progress.first_media.get_or_insert(started.elapsed());
                        let counts = progress.received.entry(publisher).or_default();
                        match kind {
                            Some(MediaKind::Audio) => counts.audio += 1,
                            Some(MediaKind::Video) => counts.video += 1,
                            None => {}
                        }
                    }
                    _ => {}
                },
            }
        };
        if Instant::now() >= stop {
            let _ = ws_tx.send(send(&ClientMessage::Leave)).await;
            return Ok(());
        }
        let next_media = if connected { audio.next_at.min(video.next_at) } else { timeout };
        let wake = timeout.min(next_media).min(stop);
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, source) = received?;
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive {
                    proto: Protocol::Udp, source, destination: local_addr, contents,
                });
                let _ = rtc.handle_input(input);
            }
            message = ws_rx.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => anyhow::bail!("the server closed the call socket"),
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => return Err(err.into()),
                };
                match serde_json::from_str::<ServerMessage>(&text)? {
                    ServerMessage::Joined { participant_id, sdp, .. } => {
                        let pending = pending.take().ok_or_else(|| anyhow::anyhow!("joined twice"))?;
                        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&sdp)?)?;
                        let mut progress = lock(progress);
                        progress.participant_id = Some(participant_id);
                        progress.joined = Some(started.elapsed());
                    }
                    ServerMessage::Admitted { .. } => lock(progress).admitted = Some(started.elapsed()),
                    ServerMessage::Offer { sdp } => {
                        msids.extend(parse_msids(&sdp));
                        let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&sdp)?)?;
                        ws_tx.send(send(&ClientMessage::Answer { sdp: answer.to_sdp_string() })).await?;
                    }
                    ServerMessage::Left { reason } => anyhow::bail!("left the call: {reason:?}"),
                    ServerMessage::Error { code, message } => anyhow::bail!("{}: {message}", code.as_str()),
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                if connected {
                    let pacers = Pacers { audio: &mut audio, video: &mut video, want_keyframe: &mut want_keyframe };
                    send_media(&mut rtc, &own, now, pacers, config.speaking);
                }
                let _ = rtc.handle_input(Input::Timeout(now));
            }
        }
    }
}

/// Packets of one kind at a steady rate.
struct Pacer {
    seq_no: u64,
    timestamp: u32,
    n_packets: u64,
    period: Duration,
    next_at: Instant,
}

impl Pacer {
    fn new(period: Duration) -> Pacer {
        Pacer { seq_no: 1, timestamp: 0, n_packets: 0, period, next_at: Instant::now() }
    }

    fn advance(&mut self, ticks: u32) {
        self.seq_no += 1;
        self.n_packets += 1;
        self.timestamp = self.timestamp.wrapping_add(ticks);
        self.next_at += self.period;
    }
}

struct Pacers<'a> {
    audio: &'a mut Pacer,
    video: &'a mut Pacer,
    want_keyframe: &'a mut bool,
}

fn send_media(rtc: &mut Rtc, own: &[(Mid, MediaKind)], now: Instant, pacers: Pacers<'_>, speaking: bool) {
    let Pacers { audio, video, want_keyframe } = pacers;
    let level = str0m::rtp::ExtensionValues {
        audio_level: Some(if speaking { -20 } else { -127 }),
        voice_activity: Some(speaking),
        ..Default::default()
    };
    let opus = rtc.codec_config().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt());
    let vp8 = rtc.codec_config().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt());
    for (mid, kind) in own {
        let mut direct = rtc.direct_api();
        let Some(stream) = direct.stream_tx_by_mid(*mid, None) else { continue };
        match kind {
            MediaKind::Audio if now >= audio.next_at => {
                let Some(pt) = opus else { continue };
                let write = RtpWrite::new(pt, audio.seq_no.into(), audio.timestamp, now, vec![0xfc; 60]);
                stream.write_rtp(write.marker(true).ext_vals(level.clone()));
                audio.advance(960);
            }
            MediaKind::Video if now >= video.next_at => {
                let Some(pt) = vp8 else { continue };
                let keyframe = *want_keyframe || video.n_packets.is_multiple_of(60);
                *want_keyframe = false;
                // VP8 payload descriptor (S=1), then a payload header whose low bit is 0 for a
                // keyframe; filler after it (the SFU never decodes).
                let mut payload = vec![0x10, if keyframe { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a];
                payload.resize(800, 0xaa);
                let write = RtpWrite::new(pt, video.seq_no.into(), video.timestamp, now, payload);
                stream.write_rtp(write.marker(true).nackable(true));
                video.advance(3000);
            }
            _ => {}
        }
    }
}

/// `a=mid` to the stream id of `a=msid`, for each m-section of an SDP.
fn parse_msids(sdp: &str) -> HashMap<Mid, String> {
    let mut msids = HashMap::new();
    for section in sdp.split("\nm=").skip(1) {
        let (mut mid, mut stream) = (None, None);
        for line in section.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("a=mid:") {
                mid = Some(Mid::from(value));
            }
            if let Some(value) = line.strip_prefix("a=msid:") {
                stream = value.split_whitespace().next().map(str::to_owned);
            }
        }
        if let (Some(mid), Some(stream)) = (mid, stream) {
            msids.insert(mid, stream);
        }
    }
    msids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msids_map_each_m_line_to_its_publisher() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=msid:p-7 t-1\r\n";
        let msids = parse_msids(sdp);
        assert_eq!(msids.len(), 1);
        assert_eq!(msids.get(&Mid::from("3")).map(String::as_str), Some("p-7"));
    }
}
