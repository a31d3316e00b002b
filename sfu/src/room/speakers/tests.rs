use super::*;

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn pupil(key: PeerKey) -> AudioCandidate {
    AudioCandidate { key, moderator: false }
}

/// `key` speaks at `dbov` every 20 ms from `from` to `to` (ms after t0).
fn speak(speakers: &mut Speakers, key: PeerKey, dbov: i8, t0: Instant, from: u64, to: u64) {
    for t in (from..to).step_by(20) {
        let _ = speakers.heard(key, Some(dbov), None, ms(t0, t));
    }
}

#[test]
fn the_teacher_always_has_a_place_and_speakers_take_the_free_ones() {
    let t0 = Instant::now();
    let mut speakers = Speakers::default();
    let teacher = AudioCandidate { key: 1, moderator: true };
    let everyone = [teacher, pupil(2), pupil(3), pupil(4)];
    // Nobody speaks: the teacher, then silent participants in the places nobody needs.
    assert!(speakers.rank(&everyone, 3, t0));
    assert_eq!(speakers.chosen(), &[1]);
    assert_eq!(speakers.audible(t0), [1, 2, 3]);
    // 4 speaks: it comes before the silent ones at once.
    speak(&mut speakers, 4, -30, t0, 0, 200);
    assert!(speakers.rank(&everyone, 3, ms(t0, 200)));
    assert_eq!(speakers.chosen(), &[1, 4]);
    assert_eq!(speakers.audible(ms(t0, 200)), [1, 4, 2]);
    // Silence (-127, or DTX's few packets) is not speech.
    speak(&mut speakers, 2, -127, t0, 200, 400);
    assert!(!speakers.rank(&everyone, 3, ms(t0, 400)));
}

#[test]
fn a_new_speaker_replaces_the_longest_silent_one_only_after_the_hold() {
    let t0 = Instant::now();
    let mut speakers = Speakers::default();
    let everyone = [pupil(1), pupil(2), pupil(3)];
    speak(&mut speakers, 1, -30, t0, 0, 1000);
    speak(&mut speakers, 2, -30, t0, 0, 1000);
    speakers.rank(&everyone, 2, ms(t0, 1000));
    assert_eq!(speakers.chosen(), &[1, 2]);
    // 2 stops at 1000 ms, 3 starts at the same level: 2 keeps its place during the hold...
    speak(&mut speakers, 1, -30, t0, 1000, 3000);
    speak(&mut speakers, 3, -30, t0, 1000, 1300);
    assert!(!speakers.rank(&everyone, 2, ms(t0, 1300)), "no flap within the hold");
    // ...though the highlight shows at once who speaks now.
    assert_eq!(speakers.speaking_now([1, 2, 3].into_iter(), ms(t0, 1390)), [1, 3]);
    // ...and loses it after.
    speak(&mut speakers, 3, -30, t0, 1300, 1600);
    assert!(speakers.rank(&everyone, 2, ms(t0, 1600)));
    assert_eq!(speakers.chosen(), &[1, 3], "3 takes 2's place; 1 keeps its own");
}

#[test]
fn a_much_louder_newcomer_takes_the_quietest_place_at_once() {
    let t0 = Instant::now();
    let mut speakers = Speakers::default();
    let everyone = [pupil(1), pupil(2), pupil(3)];
    speak(&mut speakers, 1, -45, t0, 0, 500);
    speak(&mut speakers, 2, -40, t0, 0, 500);
    speakers.rank(&everyone, 2, ms(t0, 500));
    speak(&mut speakers, 1, -45, t0, 500, 1000);
    speak(&mut speakers, 2, -40, t0, 500, 1000);
    speak(&mut speakers, 3, -10, t0, 500, 1000);
    assert!(speakers.rank(&everyone, 2, ms(t0, 1000)));
    assert_eq!(speakers.chosen(), &[2, 3], "3 takes the place of 1, the quietest");
}

#[test]
fn muted_and_departed_participants_lose_their_place() {
    let t0 = Instant::now();
    let mut speakers = Speakers::default();
    let teacher = AudioCandidate { key: 1, moderator: true };
    speak(&mut speakers, 2, -20, t0, 0, 300);
    speak(&mut speakers, 3, -20, t0, 0, 300);
    speakers.rank(&[teacher, pupil(2), pupil(3)], 3, ms(t0, 300));
    assert_eq!(speakers.chosen(), &[1, 2, 3]);
    // A moderator mutes 2: the room no longer lists it as a candidate, however loud it is.
    speak(&mut speakers, 2, -5, t0, 300, 600);
    assert!(speakers.rank(&[teacher, pupil(3)], 3, ms(t0, 600)));
    assert_eq!(speakers.chosen(), &[1, 3]);
    speakers.forget(3);
    assert_eq!(speakers.chosen(), &[1]);
    assert!(!speakers.is_speaking(3, ms(t0, 600)));
}

#[test]
fn speakers_who_fell_silent_make_way_in_what_receivers_hear_first() {
    let t0 = Instant::now();
    let mut speakers = Speakers::default();
    let teacher = AudioCandidate { key: 1, moderator: true };
    let everyone: Vec<AudioCandidate> = std::iter::once(teacher).chain((2..=8).map(pupil)).collect();
    // 2, 3, 4 and 5 speak: with room for 5 (four slots and one spare), all are chosen.
    for key in 2..=5 {
        speak(&mut speakers, key, -30, t0, 0, 1000);
    }
    speakers.rank(&everyone, 5, ms(t0, 1000));
    assert_eq!(speakers.chosen(), &[1, 2, 3, 4, 5]);
    // 2, 3 and 4 stop; 6, 7 and 8 start. After the hold, the three newcomers take the places of
    // the three who stopped first; 5 stays chosen but, silent, comes after the three speaking,
    // so that a receiver with four audio slots hears the teacher and 6, 7, 8.
    speak(&mut speakers, 5, -30, t0, 1000, 1300);
    for key in 6..=8 {
        speak(&mut speakers, key, -30, t0, 1200, 2500);
    }
    speakers.rank(&everyone, 5, ms(t0, 2000));
    let audible = speakers.audible(ms(t0, 2000));
    let mut first_four = audible[..4].to_vec();
    first_four.sort();
    assert_eq!((audible[0], first_four), (1, vec![1, 6, 7, 8]), "{audible:?}");
}
