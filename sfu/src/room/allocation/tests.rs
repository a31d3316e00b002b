use std::time::Duration;

use super::*;

const A: SlotKind = SlotKind::Audio;
const T: SlotKind = SlotKind::Thumbnail;
const S: SlotKind = SlotKind::Stage;

fn cam() -> Mid {
    Mid::from("v")
}

fn mic() -> Mid {
    Mid::from("a")
}

fn screen() -> Mid {
    Mid::from("s")
}

/// Participants 1..=n with cameras and microphones; 1 is the teacher; `spoke[i]` ms ago.
fn room(t0: Instant, n: u64, spoke: &[(PeerKey, u64)], speakers: Vec<PeerKey>) -> RoomView {
    let video = (1..=n)
        .map(|key| VideoPublisher {
            key,
            moderator: key == 1,
            joined_at: t0 + Duration::from_secs(key),
            last_spoke: spoke
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, ms)| t0 + Duration::from_secs(100) - Duration::from_millis(*ms)),
            camera: Some(cam()),
            screen: None,
        })
        .collect();
    let microphones = (1..=n).map(|key| (key, mic())).collect();
    RoomView::new(speakers, microphones, video, None, t0 + Duration::from_secs(100))
}

const LIMITS: SlotLimits = SlotLimits { audio: 2, thumbnails: 3 };

fn keys(slots: &[Option<TrackKey>]) -> Vec<Option<PeerKey>> {
    slots.iter().map(|s| s.map(|(k, _)| k)).collect()
}

#[test]
fn each_receiver_gets_speakers_the_teacher_on_stage_and_ranked_thumbnails_never_itself() {
    let t0 = Instant::now();
    let view = room(t0, 8, &[(5, 100), (7, 300)], vec![1, 5, 7]);
    let kinds = [A, A, S, T, T, T];
    let empty = [None; 6];
    // A pupil: teacher and 5 speak; the teacher on stage; thumbnails 5, 7 (latest speakers), then 2.
    let slots = allocate(&view, &Receiver { key: 4, pin: None, kinds: &kinds, current: &empty }, LIMITS);
    assert_eq!(keys(&slots), [Some(1), Some(5), Some(1), Some(5), Some(7), Some(2)]);
    assert_eq!(slots[0], Some((1, mic())));
    assert_eq!(slots[2], Some((1, cam())));
    // The teacher: never its own voice or camera.
    let slots = allocate(&view, &Receiver { key: 1, pin: None, kinds: &kinds, current: &empty }, LIMITS);
    assert_eq!(keys(&slots), [Some(5), Some(7), Some(5), Some(7), Some(2), Some(3)]);
}

#[test]
fn slots_are_sticky_and_a_new_speaker_moves_one_thumbnail() {
    let t0 = Instant::now();
    let kinds = [T, T, T];
    let view = room(t0, 8, &[(5, 100), (7, 300)], vec![]);
    let first = allocate(&view, &Receiver { key: 4, pin: None, kinds: &kinds, current: &[None; 3] }, LIMITS);
    assert_eq!(keys(&first), [Some(1), Some(5), Some(7)]);
    // 8 speaks now: 7, the least recent, makes room; 1 and 5 stay where they are, though 8
    // now ranks before 5.
    let view = room(t0, 8, &[(5, 100), (7, 300), (8, 0)], vec![]);
    let second = allocate(&view, &Receiver { key: 4, pin: None, kinds: &kinds, current: &first }, LIMITS);
    assert_eq!(keys(&second), [Some(1), Some(5), Some(8)]);
}

#[test]
fn pin_and_screen_share_take_the_stage() {
    let t0 = Instant::now();
    let mut view = room(t0, 4, &[], vec![]);
    let kinds = [S, T, T, T];
    let empty = [None; 4];
    let pinned = allocate(&view, &Receiver { key: 4, pin: Some(3), kinds: &kinds, current: &empty }, LIMITS);
    assert_eq!(pinned[0], Some((3, cam())));
    assert!(!pinned[1..].contains(&Some((3, cam()))), "the stage's camera is not repeated");
    // 2 shares its screen: on everyone's stage, with 2's camera among the thumbnails.
    view.video.iter_mut().find(|p| p.key == 2).unwrap().screen = Some(screen());
    view.latest_screen = Some((2, screen()));
    let shared = allocate(&view, &Receiver { key: 4, pin: None, kinds: &kinds, current: &empty }, LIMITS);
    assert_eq!(shared[0], Some((2, screen())));
    assert!(shared.contains(&Some((2, cam()))));
    // The sharer itself sees the teacher on its stage, and a pin beats the share.
    let sharer = allocate(&view, &Receiver { key: 2, pin: None, kinds: &kinds, current: &empty }, LIMITS);
    assert_eq!(sharer[0], Some((1, cam())));
    let pinned = allocate(&view, &Receiver { key: 4, pin: Some(3), kinds: &kinds, current: &empty }, LIMITS);
    assert_eq!(pinned[0], Some((3, cam())));
}

#[test]
fn slots_beyond_the_limits_and_missing_publishers_stay_empty() {
    let t0 = Instant::now();
    let view = room(t0, 3, &[], vec![2, 3]);
    // Three audio slots for a limit of two; five thumbnails for two other cameras.
    let kinds = [A, A, A, T, T, T, T, T];
    let slots = allocate(&view, &Receiver { key: 1, pin: None, kinds: &kinds, current: &[None; 8] }, LIMITS);
    assert_eq!(keys(&slots), [Some(2), Some(3), None, Some(2), Some(3), None, None, None]);
    // A departed publisher's slot empties; the others keep their place.
    let view = room(t0, 3, &[], vec![3]);
    let mut view_without_2 = view;
    view_without_2.video.retain(|p| p.key != 2);
    view_without_2.microphones.remove(&2);
    let after =
        allocate(&view_without_2, &Receiver { key: 1, pin: None, kinds: &kinds, current: &slots }, LIMITS);
    assert_eq!(keys(&after), [None, Some(3), None, None, Some(3), None, None, None]);
}

#[test]
fn a_speaker_ranked_before_a_silent_one_takes_its_audio_slot() {
    let t0 = Instant::now();
    let kinds = [A, A];
    // The teacher and 2 (silent, filling a free place) are heard; 5 starts speaking and ranks
    // before 2: 2's slot goes to 5, the teacher's stays.
    let before = room(t0, 5, &[], vec![1, 2]);
    let first =
        allocate(&before, &Receiver { key: 4, pin: None, kinds: &kinds, current: &[None; 2] }, LIMITS);
    assert_eq!(keys(&first), [Some(1), Some(2)]);
    let after = room(t0, 5, &[(5, 0)], vec![1, 5, 2]);
    let second = allocate(&after, &Receiver { key: 4, pin: None, kinds: &kinds, current: &first }, LIMITS);
    assert_eq!(keys(&second), [Some(1), Some(5)]);
}

#[test]
fn a_speaker_on_the_teachers_stage_holds_it_while_speaking_in_turns() {
    let t0 = Instant::now();
    let kinds = [S, T, T];
    // The teacher's stage: 3 spoke last (100 ms ago), 2 a second ago.
    let view = room(t0, 3, &[(3, 100), (2, 1000)], vec![]);
    let first = allocate(&view, &Receiver { key: 1, pin: None, kinds: &kinds, current: &[None; 3] }, LIMITS);
    assert_eq!(first[0], Some((3, cam())));
    // 2 speaks again now: 3, who spoke 1 s ago, keeps the stage.
    let view = room(t0, 3, &[(3, 1000), (2, 0)], vec![]);
    let second = allocate(&view, &Receiver { key: 1, pin: None, kinds: &kinds, current: &first }, LIMITS);
    assert_eq!(second[0], Some((3, cam())), "held");
    // 3 has been silent past the hold: the stage goes to 2.
    let view = room(t0, 3, &[(3, STAGE_HOLD.as_millis() as u64 + 1), (2, 0)], vec![]);
    let third = allocate(&view, &Receiver { key: 1, pin: None, kinds: &kinds, current: &second }, LIMITS);
    assert_eq!(third[0], Some((2, cam())));
}
