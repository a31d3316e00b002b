//! The room with its `Rtc`s, driven by hand with simulated time: no sockets, no sleeping.

use std::time::{Duration, Instant};

use models::{Role, Tier, TierPolicy, UserId};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind as Str0mKind};
use str0m::{Candidate, Rtc};

use super::*;
use crate::proto::{SlotKind, TrackSource};

pub(super) fn room(t0: Instant) -> Room {
    room_with(t0, TierPolicy::offer(Tier::Standard).visio.unwrap(), RoomConfig::default())
}

fn room_with(t0: Instant, policy: models::VisioPolicy, config: RoomConfig) -> Room {
    let params = RoomParams {
        room_id: RoomId::new("class-1").unwrap(),
        policy,
        config,
        local_candidates: vec![Candidate::host("127.0.0.1:3478".parse().unwrap(), "udp").unwrap()],
    };
    Room::new(params, t0)
}

pub(super) fn offer(t0: Instant) -> String {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(t0);
    rtc.add_local_candidate(Candidate::host("127.0.0.1:5000".parse().unwrap(), "udp").unwrap());
    let mut changes = rtc.sdp_api();
    changes.add_media(Str0mKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _pending) = changes.apply().unwrap();
    offer.to_sdp_string()
}

fn join(room: &mut Room, t0: Instant, id: &str, role: Role) -> Result<JoinAccepted, SfuError> {
    let params = ParticipantParams {
        user_id: UserId::new(id).unwrap(),
        display_name: id.to_owned(),
        role,
        e2ee_public_key: None,
    };
    room.join(t0, ParticipantId::new(id).unwrap(), params, &offer(t0), &[], &[])
}

/// Drains the room up to its timeout; returns the events for participants and the server.
pub(super) fn drain(room: &mut Room) -> (Vec<(ParticipantId, ParticipantEvent)>, Vec<SfuEvent>, Instant) {
    let mut to_participants = Vec::new();
    let mut to_server = Vec::new();
    loop {
        match room.poll_output() {
            RoomOutput::Timeout(at) => return (to_participants, to_server, at),
            RoomOutput::Transmit(_) => {}
            RoomOutput::ToParticipant(id, event) => to_participants.push((id, event)),
            RoomOutput::Server(event) => to_server.push(event),
        }
    }
}

#[test]
fn room_warns_and_closes_on_simulated_time() {
    // Durations shortened through configuration, as the issue allows for tests: a Room whose
    // `Rtc` never hears from its client would otherwise see ICE give up long before 30 minutes.
    // The 30-minute defaults are covered by the session tests.
    let t0 = Instant::now();
    let mut policy = TierPolicy::offer(Tier::Standard).visio.unwrap();
    policy.max_duration = Some(Duration::from_secs(20));
    let config = RoomConfig {
        warn_before_end: vec![Duration::from_secs(10), Duration::from_secs(5)],
        ..RoomConfig::default()
    };
    let mut room = room_with(t0, policy, config);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    let (events, server, _) = drain(&mut room);
    assert!(
        matches!(events[0].1, ParticipantEvent::Admitted { remaining: Some(r), .. } if r == Duration::from_secs(20))
    );
    assert!(matches!(server[0], SfuEvent::SessionStarted { .. }));

    room.handle_input(RoomInput::Timeout(t0 + Duration::from_secs(10)));
    let (events, _, _) = drain(&mut room);
    let warning = ParticipantEvent::TimeWarning { remaining: Duration::from_secs(10) };
    assert!(events.iter().any(|(_, e)| *e == warning), "{events:?}");
    room.handle_input(RoomInput::Timeout(t0 + Duration::from_secs(15)));
    let (events, _, _) = drain(&mut room);
    assert!(events
        .iter()
        .any(|(_, e)| *e == ParticipantEvent::TimeWarning { remaining: Duration::from_secs(5) }));
    room.handle_input(RoomInput::Timeout(t0 + Duration::from_secs(20)));
    let (events, server, _) = drain(&mut room);
    let closed = LeaveReason::SessionClosed(CloseReason::MaxDuration);
    assert!(events.iter().any(|(_, e)| *e == ParticipantEvent::Left { reason: closed }), "{events:?}");
    let closed_after = server.iter().find_map(|e| match e {
        SfuEvent::SessionClosed { reason: CloseReason::MaxDuration, duration, .. } => Some(*duration),
        _ => None,
    });
    assert_eq!(closed_after, Some(Duration::from_secs(20)), "{server:?}");
    assert!(!room.is_alive());
}

#[test]
fn room_refuses_ninth_and_bad_sdp_without_disturbing_others() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    for idx in 1..8 {
        join(&mut room, t0, &format!("parent{idx}"), Role::Parent).unwrap();
    }
    assert_eq!(join(&mut room, t0, "parent8", Role::Parent), Err(SfuError::RoomFull { max_participants: 8 }));
    let params = ParticipantParams {
        user_id: UserId::new("x").unwrap(),
        display_name: "x".into(),
        role: Role::Parent,
        e2ee_public_key: None,
    };
    let bad = room.join(t0, ParticipantId::new("x").unwrap(), params, "v=0\r\ngarbage", &[], &[]);
    assert!(matches!(bad, Err(SfuError::InvalidSdp(_))));
    assert_eq!(room.session().n_active(), 8);
    assert!(room.is_alive());
}

#[test]
fn media_that_never_connects_times_out() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    drain(&mut room);
    room.handle_input(RoomInput::Timeout(t0 + RoomConfig::default().connect_timeout));
    let (events, _, _) = drain(&mut room);
    assert!(events.iter().any(|(_, e)| *e == ParticipantEvent::Left { reason: LeaveReason::ConnectionLost }));
}

#[test]
fn parent_cannot_publish_a_screen_share() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    let params = ParticipantParams {
        user_id: UserId::new("p").unwrap(),
        display_name: "p".into(),
        role: Role::Parent,
        e2ee_public_key: None,
    };
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(t0);
    rtc.add_local_candidate(Candidate::host("127.0.0.1:5001".parse().unwrap(), "udp").unwrap());
    let mut changes = rtc.sdp_api();
    let screen = changes.add_media(Str0mKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = changes.apply().unwrap();
    let tracks =
        [TrackDeclaration { mid: screen.to_string(), source: TrackSource::ScreenShare, layers: vec![] }];
    room.join(t0, ParticipantId::new("p").unwrap(), params, &offer.to_sdp_string(), &tracks, &[]).unwrap();
    drain(&mut room);
    // The m-line is accepted (SDP has no notion of roles) but nothing is published or forwarded.
    let parent = room.participants.iter().find(|p| p.id.as_str() == "p").unwrap();
    assert!(parent.tracks_in.is_empty());
}

/// A client's offer with `n_media_lines` audio m-lines it sends on.
fn offer_with(t0: Instant, n_media_lines: usize) -> String {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(t0);
    rtc.add_local_candidate(Candidate::host("127.0.0.1:5002".parse().unwrap(), "udp").unwrap());
    let mut changes = rtc.sdp_api();
    for _ in 0..n_media_lines {
        changes.add_media(Str0mKind::Audio, Direction::SendOnly, None, None, None);
    }
    let (offer, _pending) = changes.apply().unwrap();
    offer.to_sdp_string()
}

fn parent(id: &str) -> (ParticipantId, ParticipantParams) {
    let params = ParticipantParams {
        user_id: UserId::new(id).unwrap(),
        display_name: id.into(),
        role: Role::Parent,
        e2ee_public_key: None,
    };
    (ParticipantId::new(id).unwrap(), params)
}

#[test]
fn offers_with_too_many_media_lines_are_refused() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    let (id, params) = parent("many");
    let refused =
        room.join(t0, id.clone(), params.clone(), &offer_with(t0, MAX_JOIN_MEDIA_LINES + 1), &[], &[]);
    let n = MAX_JOIN_MEDIA_LINES + 1;
    assert_eq!(refused, Err(SfuError::InvalidSdp(format!("{n} m-lines (at most {MAX_JOIN_MEDIA_LINES})"))));
    assert_eq!(room.session().n_active(), 1);
    room.join(t0, id.clone(), params, &offer_with(t0, MAX_JOIN_MEDIA_LINES), &[], &[]).unwrap();
    assert_eq!(room.session().n_active(), 2);

    // Later offers carry the m-lines of what the participant receives too: a larger bound.
    let refused = room.handle_offer(t0, &id, &offer_with(t0, MAX_MEDIA_LINES + 1), &[]);
    assert_eq!(refused, Err(SfuError::InvalidSdp(format!("1025 m-lines (at most {MAX_MEDIA_LINES})"))));
    assert_eq!(room.session().n_active(), 2);
    assert!(room.is_alive());
}

#[test]
fn track_declarations_are_bounded_over_offers() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    let declarations = |from: usize, n: usize| -> Vec<TrackDeclaration> {
        (from..from + n)
            .map(|idx| TrackDeclaration {
                mid: format!("m{idx}"),
                source: TrackSource::Camera,
                layers: vec![],
            })
            .collect()
    };
    let (id, params) = parent("p");
    let too_many = declarations(0, MAX_MEDIA_LINES + 1);
    let refused = room.join(t0, id.clone(), params.clone(), &offer(t0), &too_many, &[]);
    assert!(matches!(refused, Err(SfuError::InvalidTrack(_))), "{refused:?}");

    // The client's own connection, so that its later offers are real renegotiations.
    let mut client = Rtc::builder().set_rtp_mode(true).build(t0);
    client.add_local_candidate(Candidate::host("127.0.0.1:5003".parse().unwrap(), "udp").unwrap());
    let client_offer = |client: &mut Rtc| {
        let mut changes = client.sdp_api();
        changes.add_media(Str0mKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = changes.apply().unwrap();
        (offer.to_sdp_string(), pending)
    };
    let (sdp, pending) = client_offer(&mut client);
    let accepted = room.join(t0, id.clone(), params, &sdp, &declarations(0, MAX_MEDIA_LINES), &[]).unwrap();
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&accepted.answer_sdp).unwrap())
        .unwrap();
    drain(&mut room);
    // Declaring the same mids again is what a client does on every offer; new ones add up.
    let (sdp, pending) = client_offer(&mut client);
    let answer = room.handle_offer(t0, &id, &sdp, &declarations(0, MAX_MEDIA_LINES)).unwrap();
    client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    drain(&mut room);
    let (sdp, _pending) = client_offer(&mut client);
    let refused = room.handle_offer(t0, &id, &sdp, &declarations(MAX_MEDIA_LINES, 1));
    assert!(matches!(refused, Err(SfuError::InvalidTrack(_))), "{refused:?}");
    assert_eq!(room.session().n_active(), 2);
}

/// An offer with one sending audio m-line and receive-only m-lines of the given kinds; returns
/// it with the mids of the receive-only ones.
fn offer_with_slots(t0: Instant, kinds: &[Str0mKind]) -> (String, Vec<String>) {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(t0);
    rtc.add_local_candidate(Candidate::host("127.0.0.1:5004".parse().unwrap(), "udp").unwrap());
    let mut changes = rtc.sdp_api();
    changes.add_media(Str0mKind::Audio, Direction::SendOnly, None, None, None);
    let mids = kinds
        .iter()
        .map(|kind| changes.add_media(*kind, Direction::RecvOnly, None, None, None).to_string())
        .collect();
    let (offer, _pending) = changes.apply().unwrap();
    (offer.to_sdp_string(), mids)
}

#[test]
fn slot_declarations_must_name_receive_only_m_lines_of_their_kind() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    let (sdp, mids) = offer_with_slots(t0, &[Str0mKind::Audio, Str0mKind::Video]);
    let slot = |mid: &str, kind| SlotDeclaration { mid: mid.to_owned(), kind };
    let (id, params) = parent("p");
    let refusals = [
        // The sending m-line (mid "0") is not a slot.
        vec![slot("0", SlotKind::Audio)],
        // A video m-line is not an audio slot.
        vec![slot(&mids[1], SlotKind::Audio)],
        vec![slot(&mids[0], SlotKind::Audio), slot(&mids[0], SlotKind::Audio)],
        vec![slot("nope", SlotKind::Stage)],
        vec![slot("", SlotKind::Stage)],
        (0..=MAX_SLOTS).map(|i| slot(&format!("s{i}"), SlotKind::Thumbnail)).collect(),
    ];
    for slots in refusals {
        let refused = room.join(t0, id.clone(), params.clone(), &sdp, &[], &slots);
        assert!(matches!(refused, Err(SfuError::InvalidTrack(_))), "{slots:?}: {refused:?}");
        assert_eq!(room.session().n_active(), 1, "a refused join leaves the room as it was");
    }
    let slots = [slot(&mids[0], SlotKind::Audio), slot(&mids[1], SlotKind::Stage)];
    let accepted = room.join(t0, id.clone(), params, &sdp, &[], &slots).unwrap();
    // Our answer names the SSRC of each slot: it never changes, whoever fills the slot.
    let answer = SdpAnswer::from_sdp_string(&accepted.answer_sdp).unwrap().to_sdp_string();
    assert!(
        answer.lines().filter(|l| l.starts_with("a=ssrc:") && l.contains("cname")).count() >= 2,
        "{answer}"
    );
    // The joiner is admitted and told its (empty) slot map; nobody gets an offer.
    let (events, _, _) = drain(&mut room);
    let map = events.iter().find_map(|(to, e)| match e {
        ParticipantEvent::Slots(slots) if *to == id => Some(slots.clone()),
        _ => None,
    });
    let map = map.expect("a slot map");
    assert_eq!(map.len(), 2);
    assert!(map.iter().all(|s| s.publisher.is_none()));
}

#[test]
fn our_answer_offers_only_what_we_forward_with_dtx() {
    let t0 = Instant::now();
    let mut room = room(t0);
    let (sdp, _) = offer_with_slots(t0, &[Str0mKind::Video]);
    let (id, params) = parent("p");
    room.join(t0, id, params, &sdp, &[], &[]).ok();
    // The teacher's join in a fresh room, with a browser-like offer: Opus and VP8 only.
    let mut room = self::room(t0);
    let (id, mut params) = parent("t");
    params.role = Role::Teacher;
    let accepted = room.join(t0, id, params, &sdp, &[], &[]).unwrap();
    let answer = accepted.answer_sdp;
    assert!(answer.contains("opus/48000/2"), "{answer}");
    assert!(answer.contains("usedtx=1"), "{answer}");
    assert!(answer.contains("VP8/90000"), "{answer}");
    for absent in ["H264", "VP9", "AV1", "PCMU"] {
        assert!(!answer.contains(absent), "{absent} in {answer}");
    }
}

/// What `to` was told of the parent's link: the `Connection` events it got, in order.
fn connection_events(events: &[(ParticipantId, ParticipantEvent)], to: &str) -> Vec<bool> {
    events
        .iter()
        .filter(|(id, _)| id.as_str() == to)
        .filter_map(|(_, e)| match e {
            ParticipantEvent::Connection { participant_id, reconnecting }
                if participant_id.as_str() == "parent" =>
            {
                Some(*reconnecting)
            }
            _ => None,
        })
        .collect()
}

fn left(events: &[(ParticipantId, ParticipantEvent)], who: &str) -> Option<LeaveReason> {
    events.iter().find_map(|(id, e)| match e {
        ParticipantEvent::Left { reason } if id.as_str() == who => Some(*reason),
        _ => None,
    })
}

#[test]
fn a_broken_signaling_link_keeps_the_place_for_the_grace_period() {
    let t0 = Instant::now();
    let config = RoomConfig { reconnect_grace: Duration::from_secs(30), ..RoomConfig::default() };
    let mut room = room_with(t0, TierPolicy::offer(Tier::Standard).visio.unwrap(), config);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    join(&mut room, t0, "parent", Role::Parent).unwrap();
    drain(&mut room);
    // Their media connected long ago: only the signaling link is under test here.
    for p in &mut room.participants {
        p.connected = true;
    }
    let parent = ParticipantId::new("parent").unwrap();

    room.signal_lost(t0 + Duration::from_secs(1), &parent);
    let (events, server, _) = drain(&mut room);
    assert_eq!(connection_events(&events, "teacher"), vec![true]);
    assert!(connection_events(&events, "parent").is_empty(), "one is not told of oneself");
    assert!(!server.iter().any(|e| matches!(e, SfuEvent::ParticipantLeft { .. })));
    // A newcomer learns who is reconnecting.
    join(&mut room, t0 + Duration::from_secs(2), "late", Role::Parent).unwrap();
    let (events, _, _) = drain(&mut room);
    let admitted = events.iter().find_map(|(id, e)| match e {
        ParticipantEvent::Admitted { participants, .. } if id.as_str() == "late" => {
            Some(participants.clone())
        }
        _ => None,
    });
    let shown = admitted.unwrap().into_iter().find(|p| p.participant_id == parent).unwrap();
    assert!(shown.reconnecting);

    // Back within the grace period (with datagrams flowing again): still in, nothing left.
    for step in 3..=25 {
        let now = t0 + Duration::from_secs(step);
        for idx in 0..room.participants.len() {
            room.heard_from(idx, now);
        }
        room.handle_input(RoomInput::Timeout(now));
    }
    room.signal_restored(t0 + Duration::from_secs(25), &parent);
    let (events, server, _) = drain(&mut room);
    assert_eq!(connection_events(&events, "teacher"), vec![false]);
    assert_eq!(left(&events, "parent"), None);
    assert!(!server.iter().any(|e| matches!(e, SfuEvent::ParticipantLeft { .. })), "{server:?}");

    // Lost again, for longer than the grace period: out, as a lost connection.
    room.signal_lost(t0 + Duration::from_secs(30), &parent);
    for step in 31..=61 {
        let now = t0 + Duration::from_secs(step);
        for idx in 0..room.participants.len() {
            room.heard_from(idx, now);
        }
        room.handle_input(RoomInput::Timeout(now));
        if step < 60 {
            let (events, _, _) = drain(&mut room);
            assert_eq!(left(&events, "parent"), None, "left {step} s in, before the grace period ended");
        }
    }
    let (events, server, _) = drain(&mut room);
    assert_eq!(left(&events, "parent"), Some(LeaveReason::ConnectionLost));
    assert!(server.iter().any(|e| matches!(e,
        SfuEvent::ParticipantLeft { participant_id, reason: LeaveReason::ConnectionLost, .. } if *participant_id == parent)));
}

#[test]
fn silent_media_makes_a_participant_reconnecting_and_a_datagram_brings_them_back() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    join(&mut room, t0, "parent", Role::Parent).unwrap();
    drain(&mut room);
    for p in &mut room.participants {
        p.connected = true;
    }
    let teacher = room.index_of_id(&ParticipantId::new("teacher").unwrap()).unwrap();
    // The teacher keeps sending; the parent goes silent at t0.
    let mut now = t0;
    let mut seen = Vec::new();
    while now < t0 + link::LINK_SILENCE + Duration::from_secs(1) {
        now += Duration::from_millis(250);
        room.heard_from(teacher, now);
        room.handle_input(RoomInput::Timeout(now));
        let (events, _, _) = drain(&mut room);
        seen.extend(connection_events(&events, "teacher"));
        if now < t0 + link::LINK_SILENCE {
            assert!(seen.is_empty(), "reconnecting after {:?} of silence only", now - t0);
        }
    }
    assert_eq!(seen, vec![true]);
    let parent = room.index_of_id(&ParticipantId::new("parent").unwrap()).unwrap();
    room.heard_from(parent, now);
    let (events, _, _) = drain(&mut room);
    assert_eq!(connection_events(&events, "teacher"), vec![false]);
    assert_eq!(left(&events, "parent"), None);
}

/// The first time a participant's ICE and DTLS come up, it (alone) is told `MediaConnected`: the
/// signaling server stops counting its join as in progress. A later connection (an ICE restart)
/// says nothing.
#[test]
fn media_connected_is_told_once_to_its_participant() {
    let t0 = Instant::now();
    let mut room = room(t0);
    join(&mut room, t0, "teacher", Role::Teacher).unwrap();
    join(&mut room, t0, "parent", Role::Parent).unwrap();
    drain(&mut room);
    let key = room.participants[1].key;
    room.handle_rtc_event(key, str0m::Event::Connected, t0 + Duration::from_millis(300));
    let (events, _, _) = drain(&mut room);
    let told: Vec<&str> = events
        .iter()
        .filter(|(_, e)| *e == ParticipantEvent::MediaConnected)
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(told, ["parent"]);
    room.handle_rtc_event(key, str0m::Event::Connected, t0 + Duration::from_secs(5));
    let (events, _, _) = drain(&mut room);
    assert!(!events.iter().any(|(_, e)| *e == ParticipantEvent::MediaConnected));
}
