//! Turns face detections made every few frames into boxes for every frame.
//!
//! Sans-IO: frames are indexes and the tracker never sees pixels. Detections arrive in frame order;
//! a frame's boxes are final once detections far enough ahead of it have arrived
//! ([`FaceTracker::is_ready`]), so the video pipeline holds a few frames back (look-ahead). A face
//! found at frame `j` is blurred from `j - hold_frames` to `j + hold_frames`, and between two
//! detections of the same face its box moves linearly, so no frame between, just before or just
//! after a detection shows that face.

use crate::region::Rect;

#[derive(Debug, Clone)]
pub struct TrackConfig {
    /// Run the detector on one frame out of this many. 4 since the detector has its own thread:
    /// at 720p on 2 cores that is 38 frames/s with a recall of 0.987, where 5 was 36 frames/s
    /// (serial) with 0.976 (docs/benchmarks.md).
    pub detect_interval: u32,
    /// Frames before the first and after the last detection of a face that are still blurred.
    /// Never less than `detect_interval`, or frames between two detections would be left out.
    pub hold_frames: u32,
    /// Factor each box grows by around its center: detectors box the face tightly, hair and ears
    /// identify a child too.
    pub enlarge: f32,
    /// Weight (0..1) of the previous box size when a face is seen again. Boxes may grow at once but
    /// shrink slowly, which keeps them from flickering without ever uncovering the face.
    pub size_smoothing: f32,
}

impl Default for TrackConfig {
    fn default() -> Self {
        Self { detect_interval: 4, hold_frames: 15, enlarge: 1.5, size_smoothing: 0.6 }
    }
}

impl TrackConfig {
    /// Frames a pipeline must hold back before [`FaceTracker::boxes_at`] is final for them.
    pub fn look_ahead_frames(&self) -> u32 {
        self.hold_frames.max(self.detect_interval)
    }

    fn effective_hold(&self) -> u64 {
        u64::from(self.hold_frames.max(self.detect_interval))
    }
}

#[derive(Debug)]
struct Track {
    /// Detections of this face, in frame order: (frame index, smoothed box).
    keyframes: Vec<(u64, Rect)>,
}

impl Track {
    fn last(&self) -> (u64, Rect) {
        // A track is created with one keyframe and keyframes are only removed from the front
        // while more than one is left (see `prune`).
        *self.keyframes.last().expect("a track has at least one keyframe")
    }

    fn box_at(&self, frame_idx: u64, hold: u64) -> Option<Rect> {
        let (first_idx, first_box) = self.keyframes[0];
        let (last_idx, last_box) = self.last();
        if frame_idx < first_idx {
            return (first_idx - frame_idx <= hold).then_some(first_box);
        }
        if frame_idx >= last_idx {
            return (frame_idx - last_idx <= hold).then_some(last_box);
        }
        let after = self.keyframes.partition_point(|(idx, _)| *idx <= frame_idx);
        let (a_idx, a_box) = self.keyframes[after - 1];
        let (b_idx, b_box) = self.keyframes[after];
        let t = (frame_idx - a_idx) as f32 / (b_idx - a_idx) as f32;
        // Between two sightings the face moved from one box to the other; the enlargement absorbs
        // motion that was not linear.
        Some(a_box.lerp(&b_box, t))
    }
}

#[derive(Debug)]
pub struct FaceTracker {
    config: TrackConfig,
    tracks: Vec<Track>,
    last_detection_idx: Option<u64>,
    finished: bool,
}

impl FaceTracker {
    pub fn new(config: TrackConfig) -> Self {
        Self { config, tracks: Vec::new(), last_detection_idx: None, finished: false }
    }

    pub fn config(&self) -> &TrackConfig {
        &self.config
    }

    /// Whether `frame_idx` is a frame the detector should run on.
    pub fn wants_detection(&self, frame_idx: u64) -> bool {
        frame_idx.is_multiple_of(u64::from(self.config.detect_interval.max(1)))
    }

    /// Records the faces (tight boxes, in pixels) the detector found on `frame_idx`. Calls come
    /// in increasing frame order.
    pub fn push_detections(&mut self, frame_idx: u64, detections: &[Rect]) {
        let hold = self.config.effective_hold();
        let max_gap = hold + u64::from(self.config.detect_interval);
        let mut matched = vec![false; self.tracks.len()];
        for detection in detections {
            let best = self
                .tracks
                .iter()
                .enumerate()
                .filter(|(track_idx, track)| !matched[*track_idx] && frame_idx - track.last().0 <= max_gap)
                .map(|(track_idx, track)| (track_idx, similarity(&track.last().1, detection)))
                .filter(|(_, score)| *score > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((track_idx, _)) => {
                    matched[track_idx] = true;
                    let previous = self.tracks[track_idx].last().1;
                    let smoothed = smooth(&previous, detection, self.config.size_smoothing);
                    self.tracks[track_idx].keyframes.push((frame_idx, smoothed));
                }
                None => {
                    self.tracks.push(Track { keyframes: vec![(frame_idx, *detection)] });
                    // A face seen for the first time on this frame is not another face of it.
                    matched.push(true);
                }
            }
        }
        self.last_detection_idx = Some(frame_idx);
    }

    /// No more detections will come (end of the video): every frame is ready.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Whether the boxes of `frame_idx` can no longer change.
    pub fn is_ready(&self, frame_idx: u64) -> bool {
        self.finished
            || self.last_detection_idx.is_some_and(|last| last >= frame_idx + self.config.effective_hold())
    }

    /// Boxes to blur on `frame_idx`, enlarged, not clipped to the picture.
    pub fn boxes_at(&self, frame_idx: u64) -> Vec<Rect> {
        let hold = self.config.effective_hold();
        self.tracks
            .iter()
            .filter_map(|track| track.box_at(frame_idx, hold))
            .map(|rect| rect.enlarged(self.config.enlarge))
            .collect()
    }

    /// Forgets what no frame at or after `frame_idx` needs.
    pub fn prune(&mut self, frame_idx: u64) {
        let hold = self.config.effective_hold();
        self.tracks.retain(|track| track.last().0 + hold >= frame_idx);
        for track in &mut self.tracks {
            let n_before = track.keyframes.partition_point(|(idx, _)| *idx <= frame_idx);
            if n_before > 1 {
                track.keyframes.drain(..n_before - 1);
            }
        }
    }

    pub fn n_tracks(&self) -> usize {
        self.tracks.len()
    }
}

/// How likely two boxes are the same face: overlap, or centers close for their size. 0 means no.
fn similarity(a: &Rect, b: &Rect) -> f32 {
    let iou = a.iou(b);
    let (ax, ay) = a.center();
    let (bx, by) = b.center();
    let size = a.w.max(a.h).max(b.w).max(b.h);
    let distance = (ax - bx).hypot(ay - by);
    if iou > 0.05 || distance < size {
        iou + (1.0 - distance / size).max(0.0)
    } else {
        0.0
    }
}

/// New box of a face seen again: centered on the new detection, growing at once, shrinking slowly.
fn smooth(previous: &Rect, detection: &Rect, weight: f32) -> Rect {
    let w = detection.w.max(previous.w * weight + detection.w * (1.0 - weight));
    let h = detection.h.max(previous.h * weight + detection.h * (1.0 - weight));
    let (cx, cy) = detection.center();
    Rect::new(cx - w / 2.0, cy - h / 2.0, w, h)
}

#[cfg(test)]
mod tests;
