//! Real answers: str0m's to offers of Chromium 156 (microphone, simulcast camera and slots,
//! captured with `createOffer`), of aiortc 1.16 (the same without simulcast) and of Firefox (the
//! fuzz seed), through the room's `Rtc` and through `Room::join` and `Room::handle_offer`.

use std::time::Instant;

use models::{Role, Tier, TierPolicy, UserId};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::TcpType;
use str0m::{Candidate, Rtc};

use super::finish_answer;
use crate::config::RoomConfig;
use crate::proto::{
    ParticipantId, ParticipantParams, RoomId, SlotDeclaration, SlotKind, TrackDeclaration, TrackSource,
};
use crate::room::{sdp, Room, RoomParams};

const CHROMIUM_OFFER: &str = include_str!("chromium-offer.sdp");
const AIORTC_OFFER: &str = include_str!("aiortc-offer.sdp");
const FIREFOX_OFFER: &str = include_str!("../../../../fuzz/seeds/sdp_offer/firefox-simulcast.sdp");

/// Our candidates as the shell makes them: the UDP socket and the passive ICE-TCP port.
fn local_candidates() -> Vec<Candidate> {
    let addr = "127.0.0.1:3478".parse().unwrap();
    vec![
        Candidate::host(addr, "udp").unwrap(),
        Candidate::builder().tcp().host(addr).tcptype(TcpType::Passive).build().unwrap(),
    ]
}

/// What str0m answers, before `finish_answer`.
fn str0m_answer(offer: &str) -> String {
    let mut rtc = sdp::new_rtc(&RoomConfig::default(), Instant::now());
    for candidate in local_candidates() {
        rtc.add_local_candidate(candidate);
    }
    let offer = sdp::parse_offer(offer, sdp::MAX_JOIN_MEDIA_LINES).unwrap();
    rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string()
}

fn room(t0: Instant) -> Room {
    let params = RoomParams {
        room_id: RoomId::new("class-1").unwrap(),
        policy: TierPolicy::offer(Tier::Standard).visio.unwrap(),
        config: RoomConfig::default(),
        local_candidates: local_candidates(),
    };
    Room::new(params, t0)
}

fn teacher() -> (ParticipantId, ParticipantParams) {
    let params = ParticipantParams {
        user_id: UserId::new("t").unwrap(),
        display_name: "t".into(),
        role: Role::Teacher,
        e2ee_public_key: None,
    };
    (ParticipantId::new("t").unwrap(), params)
}

fn track(mid: &str, source: TrackSource, layers: &[&str]) -> TrackDeclaration {
    TrackDeclaration { mid: mid.into(), source, layers: layers.iter().map(|rid| rid.to_string()).collect() }
}

/// Microphone on mid 0, camera on mid 1, then two audio slots, the stage and a thumbnail.
fn declarations(camera_layers: &[&str]) -> (Vec<TrackDeclaration>, Vec<SlotDeclaration>) {
    let tracks =
        vec![track("0", TrackSource::Microphone, &[]), track("1", TrackSource::Camera, camera_layers)];
    let slot = |mid: &str, kind| SlotDeclaration { mid: mid.into(), kind };
    let slots = vec![
        slot("2", SlotKind::Audio),
        slot("3", SlotKind::Audio),
        slot("4", SlotKind::Stage),
        slot("5", SlotKind::Thumbnail),
    ];
    (tracks, slots)
}

/// The m-sections of an answer, each as its lines.
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    sections
}

fn attribute<'a>(section: &[&'a str], prefix: &str) -> Option<&'a str> {
    section.iter().find(|line| line.starts_with(prefix)).copied()
}

/// What the document promises of every answer: CRLF lines; in every m-section that is not
/// rejected, our UDP and TCP candidates followed by one `a=end-of-candidates`, and the same ICE
/// credentials, fingerprint and `a=setup:passive`; codecs Opus (with DTX and in-band FEC) and
/// its RED, VP8 and its RTX only, each payload type of the m= line with its `a=rtpmap`, and no
/// attribute for a payload type the m= line lacks. Returns the number of m-sections checked.
fn check_answer(answer: &str) -> usize {
    assert!(answer.ends_with("\r\n"), "{answer}");
    assert!(!answer.replace("\r\n", "").contains(['\r', '\n']), "bare CR or LF in {answer}");
    assert!(answer.lines().any(|line| line == "a=ice-lite"), "{answer}");
    let sections = sections(answer);
    let live: Vec<&Vec<&str>> = sections.iter().filter(|s| s[0].split(' ').nth(1) != Some("0")).collect();
    assert!(!live.is_empty());
    let transport = ["a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:"];
    let first = live[0];
    for section in &live {
        let candidates: Vec<&str> =
            section.iter().copied().filter(|line| line.starts_with("a=candidate:")).collect();
        assert_eq!(candidates.len(), 2, "{section:#?}");
        assert!(candidates[0].contains(" udp ") && candidates[0].contains(" typ host"), "{section:#?}");
        assert!(candidates[1].contains(" tcp ") && candidates[1].contains("tcptype passive"), "{section:#?}");
        let last_candidate = section.iter().rposition(|line| line.starts_with("a=candidate:")).unwrap();
        assert_eq!(section[last_candidate + 1], "a=end-of-candidates", "{section:#?}");
        assert_eq!(section.iter().filter(|line| **line == "a=end-of-candidates").count(), 1);
        for prefix in transport {
            let value = attribute(section, prefix);
            assert!(value.is_some(), "no {prefix} in {section:#?}");
            assert_eq!(value, attribute(first, prefix), "{prefix} differs between m-sections");
        }
        assert_eq!(attribute(section, "a=setup:"), Some("a=setup:passive"));
        check_codecs(section);
    }
    for rejected in sections.iter().filter(|s| s[0].split(' ').nth(1) == Some("0")) {
        assert!(!rejected
            .iter()
            .any(|line| line.starts_with("a=candidate:") || *line == "a=end-of-candidates"));
    }
    live.len()
}

fn check_codecs(section: &[&str]) {
    let payload_types: Vec<&str> = section[0].split(' ').skip(3).collect();
    let rtpmap =
        |pt: &str| attribute(section, &format!("a=rtpmap:{pt} ")).and_then(|line| line.split(' ').nth(1));
    let fmtp =
        |pt: &str| attribute(section, &format!("a=fmtp:{pt} ")).map(|line| line.split_once(' ').unwrap().1);
    let find = |encoding: &str| payload_types.iter().copied().find(|pt| rtpmap(pt) == Some(encoding));
    let (opus, vp8) = (find("opus/48000/2"), find("VP8/90000"));
    for pt in &payload_types {
        match rtpmap(pt) {
            Some("opus/48000/2") => {
                assert!(section[0].starts_with("m=audio"));
                let params = fmtp(pt).unwrap();
                assert_eq!(params.matches("usedtx=1").count(), 1, "{params}");
                assert!(params.contains("useinbandfec=1"), "{params}");
            }
            // RFC 2198 redundancy, of Opus only.
            Some("red/48000/2") => {
                let opus = opus.unwrap();
                assert_eq!(fmtp(pt), Some(format!("{opus}/{opus}").as_str()));
            }
            Some("VP8/90000") => assert!(section[0].starts_with("m=video")),
            // Retransmissions, of VP8 only.
            Some("rtx/90000") => assert_eq!(fmtp(pt), vp8.map(|vp8| format!("apt={vp8}")).as_deref()),
            other => panic!("payload type {pt}: {other:?} in {section:#?}"),
        }
    }
    for line in section {
        for prefix in ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"] {
            if let Some(rest) = line.strip_prefix(prefix) {
                let pt = rest.split(' ').next().unwrap();
                assert!(payload_types.contains(&pt), "{line} for a payload type the m= line lacks");
            }
        }
    }
}

/// `finish_answer` only adds lines and `usedtx=1`: without candidates outside the first
/// m-section, `a=end-of-candidates` and the DTX parameter, its answer is str0m's, byte for byte.
fn check_only_adds(raw: &str, finished: &str) {
    let without_dtx = |sdp: &str| sdp.replace(";usedtx=1", "");
    let mut n_sections = 0;
    let mut kept = String::new();
    for line in finished.split_inclusive("\r\n") {
        if line.starts_with("m=") {
            n_sections += 1;
        }
        let added = line == "a=end-of-candidates\r\n" || (n_sections > 1 && line.starts_with("a=candidate:"));
        if !added {
            kept.push_str(line);
        }
    }
    assert_eq!(without_dtx(&kept), without_dtx(raw));
}

#[test]
fn candidates_and_end_of_candidates_in_every_m_section_and_nothing_else_changed() {
    for (name, offer) in [("chromium", CHROMIUM_OFFER), ("aiortc", AIORTC_OFFER), ("firefox", FIREFOX_OFFER)]
    {
        let raw = str0m_answer(offer);
        // What the issue saw: candidates in the first m-section only, no end-of-candidates.
        let raw_sections = sections(&raw);
        assert!(raw_sections[0].iter().any(|line| line.starts_with("a=candidate:")), "{name}");
        assert!(raw_sections[1..].iter().flatten().all(|line| !line.starts_with("a=candidate:")), "{name}");
        assert!(!raw.contains("end-of-candidates"), "{name}");

        let finished = finish_answer(raw.clone());
        assert_eq!(check_answer(&finished), raw_sections.len(), "{name}");
        check_only_adds(&raw, &finished);
        // Finishing twice changes nothing; str0m (our loadtest, the tests' clients) still reads it.
        assert_eq!(finish_answer(finished.clone()), finished, "{name}");
        let parsed = SdpAnswer::from_sdp_string(&finished).unwrap().to_sdp_string();
        assert_eq!(sections(&parsed).len(), raw_sections.len());
    }
}

#[test]
fn rejected_m_sections_get_no_candidates() {
    // Chromium's offer with two more m-lines in its bundle, of codecs we do not forward: the
    // answer rejects them (port 0) and leaves them out of its BUNDLE group.
    let extra = |media: &str, mid: &str, rtpmap: &str| {
        format!(
            "m={media} 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na=recvonly\r\n\
             a=rtcp-mux\r\na=rtpmap:0 {rtpmap}\r\n"
        )
    };
    let offer = CHROMIUM_OFFER.replace("a=group:BUNDLE 0 1 2 3 4 5", "a=group:BUNDLE 0 1 2 3 4 5 6 7")
        + &extra("audio", "6", "PCMU/8000")
        + &extra("video", "7", "H264/90000");
    let finished = finish_answer(str0m_answer(&offer));
    let sections = sections(&finished);
    assert_eq!(sections.len(), 8);
    assert!(
        sections[6][0].starts_with("m=audio 0 ") && sections[7][0].starts_with("m=video 0 "),
        "{finished}"
    );
    assert_eq!(check_answer(&finished), 6);
}

#[test]
fn answers_of_joins_and_later_offers_are_finished() {
    let t0 = Instant::now();
    let mut room = room(t0);
    let (id, params) = teacher();
    let (tracks, slots) = declarations(&["q", "f"]);
    let accepted = room.join(t0, id, params, CHROMIUM_OFFER, &tracks, &slots).unwrap();
    assert_eq!(check_answer(&accepted.answer_sdp), 6);

    // A client on str0m, as the loadtest: it accepts our answers, then offers again when its own
    // publishing changes (a screen share); the room answers that offer the same way.
    let mut room = self::room(t0);
    let mut client = Rtc::builder().set_rtp_mode(true).build(t0);
    client.add_local_candidate(Candidate::host("127.0.0.1:5010".parse().unwrap(), "udp").unwrap());
    let mut changes = client.sdp_api();
    let microphone = changes.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let slot = changes.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = changes.apply().unwrap();
    let (id, params) = teacher();
    let tracks = vec![track(&microphone.to_string(), TrackSource::Microphone, &[])];
    let slots = vec![SlotDeclaration { mid: slot.to_string(), kind: SlotKind::Stage }];
    let accepted = room.join(t0, id.clone(), params, &offer.to_sdp_string(), &tracks, &slots).unwrap();
    assert_eq!(check_answer(&accepted.answer_sdp), 2);
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&accepted.answer_sdp).unwrap())
        .unwrap();

    let mut changes = client.sdp_api();
    let screen = changes.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = changes.apply().unwrap();
    let mut tracks = tracks;
    tracks.push(track(&screen.to_string(), TrackSource::ScreenShare, &[]));
    let answer = room.handle_offer(t0, &id, &offer.to_sdp_string(), &tracks).unwrap();
    assert_eq!(check_answer(&answer), 3);
    client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
}
