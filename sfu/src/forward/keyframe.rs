//! Keyframes: telling them apart in RTP payloads, and asking publishers for them sparingly.

use std::time::{Duration, Instant};

const H264_NALU_SPS: u8 = 7;

/// The video codecs whose keyframes we recognise. Anything else is forwarded without gating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Av1,
}

/// Whether this RTP payload is the first packet of a keyframe. Uses str0m's detectors, which read
/// only the payload descriptor and never panic on short or malformed input.
pub fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => str0m::format::detect_vp8_keyframe(payload),
        VideoCodec::Vp9 => str0m::format::detect_vp9_keyframe(payload),
        // Browsers send SPS and PPS in their own packet just before the IDR slices; starting at
        // the IDR would leave the decoder without them.
        VideoCodec::H264 => {
            str0m::format::detect_h264_nalu(payload, H264_NALU_SPS)
                || str0m::format::detect_h264_keyframe(payload)
        }
        VideoCodec::Av1 => str0m::format::detect_av1_keyframe(payload),
    }
}

/// At most one keyframe request per interval for one publisher track. A request that arrives
/// inside the interval is not lost: it is sent when the interval ends, so a subscriber that
/// joins right after another one still gets its keyframe.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    pub fn new(interval: Duration) -> KeyframeThrottle {
        KeyframeThrottle { interval, last_sent: None, pending: false }
    }

    pub fn request(&mut self) {
        self.pending = true;
    }

    /// Whether a request waits and may go now.
    pub fn is_due(&self, now: Instant) -> bool {
        self.pending && self.last_sent.is_none_or(|last| now >= last + self.interval)
    }

    /// Whether a request should go to the publisher now. Marks it sent.
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.is_due(now) {
            return false;
        }
        self.pending = false;
        self.last_sent = Some(now);
        true
    }

    /// When a held-back request becomes due. A request never held back is sent by the `poll`
    /// that follows `request`, so only throttled ones have a deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        self.last_sent.map(|last| last + self.interval)
    }
}

#[cfg(test)]
mod tests;
