use super::*;

fn config(detect_interval: u32, hold_frames: u32) -> TrackConfig {
    TrackConfig { detect_interval, hold_frames, enlarge: 1.0, size_smoothing: 0.5 }
}

/// Runs detections (frame index, boxes) through a tracker and checks the boxes of each listed
/// frame: `expected` holds (frame index, number of boxes).
fn check(config: TrackConfig, detections: &[(u64, Vec<Rect>)], expected: &[(u64, usize)]) {
    let mut tracker = FaceTracker::new(config);
    for (frame_idx, boxes) in detections {
        tracker.push_detections(*frame_idx, boxes);
    }
    tracker.finish();
    for (frame_idx, n_boxes) in expected {
        assert_eq!(tracker.boxes_at(*frame_idx).len(), *n_boxes, "frame {frame_idx}");
    }
}

fn face(x: f32) -> Rect {
    Rect::new(x, 10.0, 20.0, 20.0)
}

#[test]
fn a_face_seen_once_is_blurred_before_and_after() {
    check(
        config(5, 6),
        &[(0, vec![]), (5, vec![]), (10, vec![face(0.0)]), (15, vec![]), (20, vec![]), (25, vec![])],
        &[(3, 0), (4, 1), (10, 1), (16, 1), (17, 0)],
    );
}

#[test]
fn hold_is_never_shorter_than_the_detection_interval() {
    check(
        config(10, 2),
        &[(0, vec![]), (10, vec![face(0.0)]), (20, vec![]), (30, vec![])],
        &[(0, 1), (1, 1), (19, 1), (20, 1), (21, 0)],
    );
}

#[test]
fn a_moving_face_is_followed_between_detections() {
    let mut tracker = FaceTracker::new(config(4, 4));
    tracker.push_detections(0, &[face(0.0)]);
    tracker.push_detections(4, &[face(8.0)]);
    tracker.finish();
    assert_eq!(tracker.n_tracks(), 1);
    let boxes = tracker.boxes_at(2);
    assert_eq!(boxes.len(), 1);
    assert!((boxes[0].x - 4.0).abs() < 1e-4, "{boxes:?}");
}

#[test]
fn two_faces_make_two_tracks() {
    let mut tracker = FaceTracker::new(config(5, 5));
    tracker.push_detections(0, &[face(0.0), face(200.0)]);
    tracker.push_detections(5, &[face(202.0), face(2.0)]);
    assert_eq!(tracker.n_tracks(), 2);
    tracker.finish();
    assert_eq!(tracker.boxes_at(3).len(), 2);
}

#[test]
fn frames_are_ready_once_detections_are_far_enough_ahead() {
    let mut tracker = FaceTracker::new(config(5, 10));
    tracker.push_detections(0, &[]);
    tracker.push_detections(5, &[]);
    assert!(!tracker.is_ready(0));
    tracker.push_detections(10, &[]);
    assert!(tracker.is_ready(0));
    assert!(!tracker.is_ready(1));
    tracker.finish();
    assert!(tracker.is_ready(1000));
}

#[test]
fn boxes_shrink_slowly_and_grow_at_once() {
    let small = Rect::new(0.0, 0.0, 10.0, 10.0);
    let big = Rect::new(0.0, 0.0, 30.0, 30.0);
    assert_eq!(smooth(&small, &big, 0.5).w, 30.0);
    assert_eq!(smooth(&big, &small, 0.5).w, 20.0);
}

#[test]
fn pruning_keeps_what_later_frames_need() {
    let mut tracker = FaceTracker::new(config(5, 5));
    tracker.push_detections(0, &[face(0.0)]);
    tracker.push_detections(5, &[face(1.0)]);
    tracker.push_detections(10, &[face(2.0)]);
    tracker.prune(7);
    tracker.finish();
    assert_eq!(tracker.boxes_at(7).len(), 1);
    tracker.prune(16);
    assert_eq!(tracker.n_tracks(), 0);
}
