use models::Role;

use super::*;

/// Participants in one process, with the server's relay done by hand.
struct Call {
    t0: Instant,
    now: Instant,
    sessions: BTreeMap<String, E2eeSession>,
}

impl Call {
    fn new() -> Call {
        let t0 = Instant::now();
        Call { t0, now: t0, sessions: BTreeMap::new() }
    }

    fn participant(&self, id: &str) -> Participant {
        Participant {
            participant_id: id.into(),
            display_name: id.into(),
            role: Role::Parent,
            audio_muted: false,
            video_off: false,
            reconnecting: false,
            e2ee_public_key: self.sessions[id].hello().map(|hello| hello.public_key),
        }
    }

    /// What the server does with `e2ee_keys` from `from`.
    fn relay(&mut self, from: &str, sealed: Vec<SealedKey>) {
        for key in sealed {
            self.sessions.get_mut(&key.to).unwrap().e2ee_key(from, &key.sealed);
        }
    }

    /// `id` joins (with or without e2ee): `joined`, `admitted` with those in, and
    /// `participant_joined` to each of them.
    fn join(&mut self, id: &str, e2ee: bool) {
        let mut session = E2eeSession::new(e2ee, self.t0);
        session.joined(id, self.now);
        let others: Vec<String> = self.sessions.keys().cloned().collect();
        self.sessions.insert(id.into(), session);
        let listed: Vec<Participant> = others.iter().map(|other| self.participant(other)).collect();
        let newcomer = self.participant(id);
        for other in &others {
            let now = self.now;
            let sealed = self.sessions.get_mut(other).unwrap().participant_joined(&newcomer, now);
            self.relay(other, sealed);
        }
        let now = self.now;
        let sealed = self.sessions.get_mut(id).unwrap().admitted(&listed, now);
        self.relay(id, sealed);
    }

    fn leave(&mut self, id: &str) -> E2eeSession {
        let gone = self.sessions.remove(id).unwrap();
        let others: Vec<String> = self.sessions.keys().cloned().collect();
        for other in others {
            let now = self.now;
            let sealed = self.sessions.get_mut(&other).unwrap().participant_left(id, now);
            self.relay(&other, sealed);
        }
        gone
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for session in self.sessions.values_mut() {
            session.handle_timeout(self.now);
        }
    }

    fn send(&mut self, from: &str, frame: &[u8]) -> Vec<u8> {
        self.sessions.get_mut(from).unwrap().protect(FrameKind::Vp8, frame.to_vec()).unwrap()
    }

    fn receive(&mut self, to: &str, from: &str, wire: &[u8]) -> Received {
        let now = self.now;
        self.sessions.get_mut(to).unwrap().unprotect(Some(from), FrameKind::Vp8, wire, now)
    }
}

const FRAME: &[u8] = &[0x31, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8];

#[test]
fn everyone_decrypts_everyone_and_newcomers_not_the_past() {
    let mut call = Call::new();
    call.join("pA", true);
    call.join("pB", true);
    assert!(call.sessions["pA"].encrypting());
    let before_c = call.send("pA", FRAME);
    assert_ne!(before_c, FRAME);
    assert_eq!(call.receive("pB", "pA", &before_c), Received::Frame(FRAME.to_vec()));
    let wire = call.send("pB", FRAME);
    assert_eq!(call.receive("pA", "pB", &wire), Received::Frame(FRAME.to_vec()));

    call.join("pC", true);
    for (from, to) in [("pA", "pB"), ("pA", "pC"), ("pB", "pC"), ("pC", "pA"), ("pC", "pB"), ("pB", "pA")] {
        let wire = call.send(from, FRAME);
        assert_eq!(call.receive(to, from, &wire), Received::Frame(FRAME.to_vec()), "{from} -> {to}");
        // Without knowing the sender, by KID alone.
        let now = call.now;
        let by_kid = call.sessions.get_mut(to).unwrap().unprotect(None, FrameKind::Vp8, &wire, now);
        assert_eq!(by_kid, Received::Frame(FRAME.to_vec()));
    }
    // The newcomer got the ratcheted step: what A sent before is not readable.
    assert!(matches!(call.receive("pC", "pA", &before_c), Received::Dropped(FrameError::NoKey(_))));
    let log = &call.sessions["pC"].log;
    assert_eq!((log.keys_sealed, log.keys_received, log.keys_rejected), (2, 2, 0));
    assert_eq!(call.sessions["pC"].log.no_key.len(), 1);
    assert!(call.sessions.values().all(|s| s.log.failed.is_empty()));
}

#[test]
fn after_a_leave_a_fresh_key_is_used_one_second_later() {
    let mut call = Call::new();
    for id in ["pA", "pB", "pC"] {
        call.join(id, true);
    }
    let mut b = call.leave("pB");
    assert_eq!(call.sessions["pA"].log.rotations, 1);
    // Within the second, the old key still goes out: B can read it.
    call.advance(Duration::from_millis(500));
    let wire = call.send("pA", FRAME);
    assert_eq!(call.receive("pC", "pA", &wire), Received::Frame(FRAME.to_vec()));
    assert_eq!(b.unprotect(Some("pA"), FrameKind::Vp8, &wire, call.now), Received::Frame(FRAME.to_vec()));
    // Then the fresh one, which C has and B never had.
    call.advance(Duration::from_millis(500));
    let wire = call.send("pA", FRAME);
    assert_eq!(call.receive("pC", "pA", &wire), Received::Frame(FRAME.to_vec()));
    assert!(matches!(
        b.unprotect(Some("pA"), FrameKind::Vp8, &wire, call.now),
        Received::Dropped(FrameError::NoKey(_))
    ));
}

#[test]
fn a_join_during_the_second_after_a_leave_gets_both_keys() {
    let mut call = Call::new();
    for id in ["pA", "pB", "pC"] {
        call.join(id, true);
    }
    call.leave("pB");
    call.advance(Duration::from_millis(300));
    call.join("pD", true);
    let wire = call.send("pA", FRAME);
    assert_eq!(call.receive("pD", "pA", &wire), Received::Frame(FRAME.to_vec()), "the ratcheted current key");
    call.advance(Duration::from_millis(700));
    let wire = call.send("pA", FRAME);
    assert_eq!(call.receive("pD", "pA", &wire), Received::Frame(FRAME.to_vec()), "the fresh key");
    assert_eq!(call.receive("pC", "pA", &wire), Received::Frame(FRAME.to_vec()));
}

#[test]
fn a_participant_without_e2ee_makes_everyone_send_in_clear_until_it_leaves() {
    let mut call = Call::new();
    call.join("pA", true);
    call.join("pB", true);
    call.join("pX", false);
    assert!(call.sessions["pX"].hello().is_none());
    assert!(!call.sessions["pA"].encrypting());
    let wire = call.send("pA", FRAME);
    assert_eq!(wire, FRAME, "in clear");
    assert_eq!(call.receive("pX", "pA", &wire), Received::Frame(FRAME.to_vec()));
    assert_eq!(call.receive("pB", "pA", &wire), Received::Frame(FRAME.to_vec()), "passed through");
    let from_x = call.send("pX", FRAME);
    assert_eq!(call.receive("pA", "pX", &from_x), Received::Frame(FRAME.to_vec()));
    assert_eq!(call.sessions["pB"].log.frames_received_clear, 1);
    assert_eq!(call.sessions["pX"].log.keys_sealed, 0);

    call.leave("pX");
    assert!(call.sessions["pA"].encrypting());
    call.advance(Duration::from_secs(1));
    let wire = call.send("pA", FRAME);
    assert_ne!(wire, FRAME);
    assert_eq!(call.receive("pB", "pA", &wire), Received::Frame(FRAME.to_vec()));
    // In an encrypted call, a frame that does not verify is dropped.
    let mut tampered = wire.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert_eq!(call.receive("pB", "pA", &tampered), Received::Dropped(FrameError::Auth));
    assert_eq!(call.sessions["pB"].log.failed.len(), 1);
}

#[test]
fn keys_from_a_sender_not_known_yet_wait_for_it_and_bad_ones_are_ignored() {
    let mut call = Call::new();
    call.join("pA", true);
    let t0 = call.t0;
    let mut b = E2eeSession::new(true, t0);
    b.joined("pB", call.now);
    call.sessions.insert("pB".into(), b);
    let a_listed = call.participant("pA");
    let b_listed = call.participant("pB");
    // B is admitted and seals for A before A hears of B.
    let now = call.now;
    let sealed = call.sessions.get_mut("pB").unwrap().admitted(&[a_listed], now);
    call.relay("pB", sealed.clone());
    assert_eq!(call.sessions["pA"].log.keys_received, 0);
    let sealed_for_b = call.sessions.get_mut("pA").unwrap().participant_joined(&b_listed, now);
    call.relay("pA", sealed_for_b);
    assert_eq!(call.sessions["pA"].log.keys_received, 1);
    let wire = call.send("pB", FRAME);
    assert_eq!(call.receive("pA", "pB", &wire), Received::Frame(FRAME.to_vec()));

    // Replayed as if from someone else, or tampered: ignored.
    let a = call.sessions.get_mut("pA").unwrap();
    a.e2ee_key("pB", "AAAA");
    let mut text = sealed[0].sealed.clone().into_bytes();
    text[20] = if text[20] == b'A' { b'B' } else { b'A' };
    a.e2ee_key("pB", std::str::from_utf8(&text).unwrap());
    assert_eq!(a.log.keys_rejected, 2);
    assert_eq!(a.log.keys_received, 1);
}

#[test]
fn one_counter_per_kid_never_reused() {
    let mut call = Call::new();
    call.join("pA", true);
    call.join("pB", true);
    let mut seen = std::collections::HashSet::new();
    for round in 0..3 {
        for _ in 0..10 {
            let wire = call.send("pA", FRAME);
            let header = sframe::frame_header(FrameKind::Vp8, &wire).unwrap();
            assert!(seen.insert((header.kid, header.ctr)), "round {round}");
        }
        call.join(&format!("pN{round}"), true);
    }
    let kids: std::collections::BTreeSet<u64> = seen.iter().map(|(kid, _)| *kid).collect();
    assert_eq!(kids.len(), 3, "one step per join");
    assert!(seen.iter().all(|(_, ctr)| *ctr < 10), "each KID counts from 0");
}

#[test]
fn a_sender_unseen_for_more_than_64_joins_is_still_decrypted() {
    let mut call = Call::new();
    call.join("pA", true);
    call.join("pB", true);
    // B sees none of A's frames meanwhile (A is in none of its slots), and A ratchets 70 times.
    for idx in 0..70 {
        call.join(&format!("pN{idx:02}"), true);
        call.sessions.remove(&format!("pN{idx:02}"));
    }
    let wire = call.send("pA", FRAME);
    assert_eq!(sframe::frame_header(FrameKind::Vp8, &wire).unwrap().kid & 0xffff, 71);
    assert_eq!(call.receive("pB", "pA", &wire), Received::Frame(FRAME.to_vec()));
}

#[test]
fn key_messages_name_each_recipient_once_and_hold_at_most_256_keys() {
    let mut session = E2eeSession::new(true, Instant::now());
    let key = |to: &str| SealedKey { to: to.into(), sealed: "x".into() };
    let mut sealed: Vec<SealedKey> = (0..300).map(|idx| key(&format!("p{idx}"))).collect();
    sealed.insert(1, key("p0"));
    let messages = session.key_messages(sealed);
    let batches: Vec<Vec<String>> = messages
        .iter()
        .map(|message| match message {
            ClientMessage::E2eeKeys { keys } => keys.iter().map(|k| k.to.clone()).collect(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [1, 256, 44]);
    assert_eq!(batches[0], ["p0"]);
    assert_eq!(batches[1][0], "p0", "the second key for p0 goes in the next message, in order");
    assert_eq!(session.log.key_messages_sent, 3);
}
