//! SDP from a call participant, through the real `sfu::room::Room` with simulated time and no
//! sockets: the room's own checks (`parse_offer`: size, str0m's parser, m-line bound), then a
//! join with the fuzzed offer beside a teacher already in the call, the teacher's and the new
//! participant's renegotiation with it, its lines as trickled ICE candidates, and the room's
//! timers. Never a panic, and a refused join leaves the room as it was.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use models::{Role, Tier, TierPolicy, UserId};
use sfu::room::{parse_offer, Room, RoomInput, RoomOutput, RoomParams, MAX_MEDIA_LINES};
use sfu::{
    ParticipantId, ParticipantParams, RoomConfig, RoomId, SlotDeclaration, SlotKind, TrackDeclaration, TrackSource,
};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

fuzz_target!(|data: &[u8]| {
    // Client messages are JSON strings: UTF-8.
    let Ok(sdp) = std::str::from_utf8(data) else { return };
    for line in sdp.lines().take(4) {
        let line = line.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let _ = Candidate::from_sdp_string(line);
    }
    // Whatever `parse_offer` refuses, the room refuses before it changes anything: building a
    // room for it would only slow the fuzzer down.
    if parse_offer(sdp, MAX_MEDIA_LINES).is_err() {
        return;
    }
    in_a_room(sdp);
});

fn in_a_room(sdp: &str) {
    // Every `unwrap` here is on a constant: ids, a policy and an address that are valid.
    let t0 = Instant::now();
    let params = RoomParams {
        room_id: RoomId::new("class-1").unwrap(),
        policy: TierPolicy::offer(Tier::Standard).visio.unwrap(),
        config: RoomConfig::default(),
        local_candidates: vec![Candidate::host("127.0.0.1:3478".parse().unwrap(), "udp").unwrap()],
    };
    let mut room = Room::new(params, t0);
    let teacher = ParticipantId::new("teacher").unwrap();
    room.join(t0, teacher.clone(), participant("teacher", Role::Teacher), valid_offer(), &[], &[])
        .expect("a str0m offer joins");
    drain(&mut room);
    let n_active = room.session().n_active();

    // The mids the offer names, declared in order as microphone, camera and screen share, and
    // the others as slots of each kind in turn.
    let sources = [TrackSource::Microphone, TrackSource::Camera, TrackSource::ScreenShare];
    let mids: Vec<&str> = sdp.lines().filter_map(|line| line.trim().strip_prefix("a=mid:")).collect();
    let tracks: Vec<TrackDeclaration> =
        mids.iter().zip(sources).map(|(mid, source)| TrackDeclaration { mid: (*mid).to_owned(), source, layers: vec![] }).collect();
    let kinds = [SlotKind::Audio, SlotKind::Stage, SlotKind::Thumbnail];
    let slots: Vec<SlotDeclaration> = mids
        .iter()
        .skip(sources.len())
        .zip(kinds.iter().cycle())
        .map(|(mid, kind)| SlotDeclaration { mid: (*mid).to_owned(), kind: *kind })
        .collect();

    let t1 = t0 + Duration::from_millis(10);
    let parent = ParticipantId::new("parent").unwrap();
    let joined = room.join(t1, parent.clone(), participant("parent", Role::Parent), sdp, &tracks, &slots);
    if joined.is_err() {
        assert_eq!(room.session().n_active(), n_active, "a refused join changed the session");
        assert!(room.is_alive());
    }
    drain(&mut room);
    let _ = room.handle_offer(t1, &teacher, sdp, &tracks);
    drain(&mut room);
    if joined.is_ok() {
        let _ = room.handle_offer(t1, &parent, sdp, &tracks);
        drain(&mut room);
        for line in sdp.lines().filter(|line| line.contains("candidate")).take(4) {
            let _ = room.add_remote_candidate(&parent, line);
        }
        drain(&mut room);
    }
    // Timers: str0m's and the room's, a little later and past the connect timeout.
    for later in [Duration::from_millis(500), RoomConfig::default().connect_timeout] {
        room.handle_input(RoomInput::Timeout(t0 + later));
        drain(&mut room);
    }
}

fn participant(id: &str, role: Role) -> ParticipantParams {
    ParticipantParams {
        user_id: UserId::new(id).unwrap(),
        display_name: id.to_owned(),
        role,
        e2ee_public_key: None,
    }
}

/// What the load test offers: one audio m-line, sent. Made once: a `Rtc` costs a certificate.
fn valid_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host("127.0.0.1:5000".parse().unwrap(), "udp").unwrap());
        let mut changes = rtc.sdp_api();
        changes.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _pending) = changes.apply().expect("one new m-line is a change");
        offer.to_sdp_string()
    })
}

fn drain(room: &mut Room) {
    // A room always ends a drain with its next timeout; the bound catches one that would not.
    for _ in 0..100_000 {
        if let RoomOutput::Timeout(_) = room.poll_output() {
            return;
        }
    }
    panic!("the room never stopped producing output");
}
