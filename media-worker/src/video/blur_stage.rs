//! Holds decoded frames back until the face tracker knows their boxes, then blurs them in place.

use std::collections::VecDeque;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::frame;

use super::detect_thread::DetectorThread;
use super::FaceFrame;
use crate::blur::{self, Plane};
use crate::error::Result;
use crate::face::{pack_i420, Detection, FaceDetector};
use crate::pipeline::FaceBlurConfig;
use crate::region::{ManualRegion, Rect};
use crate::track::FaceTracker;

/// Holds frames back until the tracker knows their boxes, then blurs them.
pub(super) struct BlurStage {
    faces: Option<(DetectorThread, FaceTracker)>,
    manual_regions: Vec<ManualRegion>,
    blocks_across: u32,
    pending: VecDeque<(u64, f64, frame::Video)>,
    n_frames_in: u64,
    last_sent_idx: Option<u64>,
    /// Frames held back beyond which the video thread waits for the detector rather than
    /// decoding further: the look-ahead the tracker needs, plus room for detections in flight.
    max_pending: usize,
    pub(super) n_detections: u64,
    pub(super) n_blurred_frames: u64,
    /// Every detection, for the preview.
    pub(super) found: Vec<FaceFrame>,
}

impl BlurStage {
    pub(super) fn new(face_blur: Option<&FaceBlurConfig>, manual_regions: &[ManualRegion]) -> Result<Self> {
        let faces = match face_blur {
            Some(config) => {
                Some((DetectorThread::start(config.face.clone())?, FaceTracker::new(config.track.clone())))
            }
            None => None,
        };
        let max_pending = face_blur.map_or(0, |config| {
            let look_ahead = config.track.look_ahead_frames() as usize;
            look_ahead + 3 * config.track.detect_interval.max(1) as usize + 2
        });
        let blocks_across = face_blur.map(|c| c.face.blocks_across).unwrap_or(blur::DEFAULT_BLOCKS_ACROSS);
        Ok(Self {
            faces,
            manual_regions: manual_regions.to_vec(),
            blocks_across,
            pending: VecDeque::new(),
            n_frames_in: 0,
            last_sent_idx: None,
            max_pending,
            n_detections: 0,
            n_blurred_frames: 0,
            found: Vec::new(),
        })
    }

    pub(super) fn push(&mut self, frame: frame::Video, time_s: f64) -> Result<()> {
        let frame_idx = self.n_frames_in;
        self.n_frames_in += 1;
        if let Some((detector, tracker)) = self.faces.as_mut() {
            if tracker.wants_detection(frame_idx) {
                detector.send(frame_idx, pack_frame(&frame), frame.width(), frame.height())?;
                self.last_sent_idx = Some(frame_idx);
            }
        }
        self.pending.push_back((frame_idx, time_s, frame));
        Ok(())
    }

    /// Detects on the last frame too, so that a face entering after the last regular detection is
    /// still found, waits for every detection, then releases every frame.
    pub(super) fn finish(&mut self) -> Result<()> {
        let Some((detector, _)) = self.faces.as_mut() else { return Ok(()) };
        if let Some((last_idx, _, last_frame)) = self.pending.back() {
            if self.last_sent_idx != Some(*last_idx) {
                detector.send(*last_idx, pack_frame(last_frame), last_frame.width(), last_frame.height())?;
                self.last_sent_idx = Some(*last_idx);
            }
        }
        while self.receive_detections(true)? {}
        if let Some((_, tracker)) = self.faces.as_mut() {
            tracker.finish();
        }
        Ok(())
    }

    /// Hands the detector's answers to the tracker, in frame order. With `wait`, blocks for one
    /// answer if none is there. Returns whether an answer was taken.
    fn receive_detections(&mut self, wait: bool) -> Result<bool> {
        let mut received = false;
        loop {
            let Some((detector, _)) = self.faces.as_mut() else { return Ok(false) };
            let Some(found) = detector.receive(wait && !received)? else { return Ok(received) };
            received = true;
            let detections = found.detections?;
            self.record(found.frame_idx, &detections);
        }
    }

    fn record(&mut self, frame_idx: u64, detections: &[Detection]) {
        let boxes: Vec<Rect> = detections.iter().map(|d| d.rect).collect();
        self.n_detections += boxes.len() as u64;
        if let Some((_, tracker)) = self.faces.as_mut() {
            tracker.push_detections(frame_idx, &boxes);
        }
        // The frame is still held: nothing leaves before the tracker has seen its detections.
        if let Some((_, time_s, frame)) = self.pending.iter().find(|(idx, _, _)| *idx == frame_idx) {
            self.found.push(FaceFrame::from_detections(*time_s, detections, frame.width(), frame.height()));
        }
    }

    /// The next frame whose boxes are final, blurred. Waits for the detector only when too many
    /// frames are held back.
    pub(super) fn pop_ready(&mut self) -> Result<Option<(f64, frame::Video)>> {
        self.receive_detections(false)?;
        loop {
            let Some((frame_idx, _, _)) = self.pending.front() else { return Ok(None) };
            let frame_idx = *frame_idx;
            let Some((detector, tracker)) = self.faces.as_mut() else { break };
            if tracker.is_ready(frame_idx) {
                break;
            }
            if self.pending.len() <= self.max_pending || !detector.has_in_flight() {
                return Ok(None);
            }
            self.receive_detections(true)?;
        }
        let mut boxes = Vec::new();
        if let Some((_, tracker)) = self.faces.as_mut() {
            // `front` was checked in the loop above.
            let frame_idx = self.pending.front().map_or(0, |(idx, _, _)| *idx);
            boxes = tracker.boxes_at(frame_idx);
            tracker.prune(frame_idx);
        }
        // The loop above returned unless the queue has a front.
        let (_, time_s, mut frame) = self.pending.pop_front().expect("front frame");
        let (width, height) = (frame.width(), frame.height());
        boxes.extend(
            self.manual_regions.iter().filter(|r| r.is_active_at(time_s)).map(|r| r.to_rect(width, height)),
        );
        if !boxes.is_empty() {
            self.n_blurred_frames += 1;
            blur_frame(&mut frame, &boxes, self.blocks_across);
        }
        Ok(Some((time_s, frame)))
    }
}

/// A packed copy of a yuv420p frame for the detector thread.
fn pack_frame(frame: &frame::Video) -> Vec<u8> {
    let planes = [
        (frame.data(0), frame.stride(0)),
        (frame.data(1), frame.stride(1)),
        (frame.data(2), frame.stride(2)),
    ];
    pack_i420(planes, frame.width(), frame.height())
}

pub(super) fn detect_in_frame(detector: &mut FaceDetector, frame: &frame::Video) -> Result<Vec<Detection>> {
    let planes = [
        (frame.data(0), frame.stride(0)),
        (frame.data(1), frame.stride(1)),
        (frame.data(2), frame.stride(2)),
    ];
    detector.detect_yuv420(planes, frame.width(), frame.height())
}

pub(super) fn blur_frame(frame: &mut frame::Video, boxes: &[Rect], blocks_across: u32) {
    // The filter graph may hand out a buffer the decoder still uses as a reference picture:
    // writing into it would smear the blur into later frames. Copy it first when shared.
    // SAFETY: the frame is a valid, allocated AVFrame owned by `frame`.
    let made_writable = unsafe { ffmpeg::ffi::av_frame_make_writable(frame.as_mut_ptr()) };
    if made_writable < 0 {
        tracing::error!(code = made_writable, "cannot make a frame writable; dropping its pixels");
    }
    let (width, height) = (frame.width(), frame.height());
    let strides = [frame.stride(0), frame.stride(1), frame.stride(2)];
    // SAFETY: the three planes of a yuv420p frame are distinct allocations (or disjoint parts of
    // one), so handing out one mutable slice per plane does not alias.
    let (y, u, v) = unsafe {
        let ptr = frame.as_mut_ptr();
        let plane = |idx: usize, rows: u32| {
            std::slice::from_raw_parts_mut((*ptr).data[idx], strides[idx] * rows as usize)
        };
        (plane(0, height), plane(1, height.div_ceil(2)), plane(2, height.div_ceil(2)))
    };
    let (chroma_w, chroma_h) = (width.div_ceil(2), height.div_ceil(2));
    blur::blur_yuv420(
        [
            Plane { data: y, stride: strides[0], width, height, channels: 1 },
            Plane { data: u, stride: strides[1], width: chroma_w, height: chroma_h, channels: 1 },
            Plane { data: v, stride: strides[2], width: chroma_w, height: chroma_h, channels: 1 },
        ],
        boxes,
        blocks_across,
    );
}
