//! The incoming side of one published track.

use std::time::{Duration, Instant};

use crate::proto::{MediaKind, TrackSource};

use super::keyframe::{KeyframeThrottle, VideoCodec};

/// What the forwarding code needs to know of one incoming RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketView {
    /// Extended sequence number, as str0m unrolls it.
    pub seq_no: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub keyframe_start: bool,
    pub arrival: Instant,
}

/// One published track: whether it is forwarded at all, and its keyframe requests.
#[derive(Debug)]
pub struct Buffer {
    pub kind: MediaKind,
    pub source: TrackSource,
    /// Known once the first packet names its payload type.
    pub codec: Option<VideoCodec>,
    forwarding: bool,
    /// Bumped each time forwarding resumes, so that every `DownTrack` re-bases its sequence
    /// numbers instead of showing subscribers the gap we made on purpose.
    generation: u32,
    keyframes: KeyframeThrottle,
}

impl Buffer {
    pub fn new(kind: MediaKind, source: TrackSource, keyframe_interval: Duration) -> Buffer {
        Buffer {
            kind,
            source,
            codec: None,
            forwarding: true,
            generation: 0,
            keyframes: KeyframeThrottle::new(keyframe_interval),
        }
    }

    pub fn is_forwarding(&self) -> bool {
        self.forwarding
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Turns forwarding off (mute, camera off, publisher not admitted) or back on. Resuming video
    /// asks the publisher for a keyframe, since subscribers cannot decode until one arrives.
    pub fn set_forwarding(&mut self, forwarding: bool) {
        if forwarding && !self.forwarding {
            self.generation = self.generation.wrapping_add(1);
            if self.kind == MediaKind::Video {
                self.keyframes.request();
            }
        }
        self.forwarding = forwarding;
    }

    /// A subscriber needs a keyframe (new subscription, PLI or FIR).
    pub fn request_keyframe(&mut self) {
        if self.kind == MediaKind::Video {
            self.keyframes.request();
        }
    }

    /// Whether to send a keyframe request to the publisher now.
    pub fn poll_keyframe_request(&mut self, now: Instant) -> bool {
        self.keyframes.poll(now)
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.keyframes.next_timeout()
    }
}

#[cfg(test)]
mod tests;
