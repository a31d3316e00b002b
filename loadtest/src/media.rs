//! What a simulated participant publishes, as RTP payloads: Opus-like audio and VP8-like video,
//! and who speaks when.
//!
//! - Audio: 20 ms packets of 80 to 120 bytes with an RFC 6464 level of -20 dBov and the voice flag
//!   while the participant speaks; while it is silent, DTX: one small packet every 400 ms at
//!   -127 dBov without the voice flag. The first packet of a talkspurt has the marker bit.
//! - Video: 20 frames a second, delta frames of 1 to 2 KB, a keyframe of 20 to 40 KB every 3 s
//!   and on request, split into packets of at most [`MAX_VIDEO_PAYLOAD`] bytes. Each packet
//!   starts with a VP8 payload descriptor (RFC 7741, with a 15-bit picture id as browsers send),
//!   and the first packet of a frame with a VP8 frame tag whose P bit tells keyframes apart: what
//!   the SFU's keyframe detection reads. The last packet of a frame has the marker bit.
//! - Every payload ends with the publisher's packet counter for its kind ([`read_counter`]), so a
//!   receiver knows exactly which of a publisher's packets reached it whatever the SFU renumbered.
//!   An audio frame is one packet and its counter is part of the frame; a video frame goes through
//!   `protect` (end-to-end encryption) whole before it is packetised, and each packet's counter is
//!   added after, outside the frame.
//!
//! Nothing here reads the clock: time comes in as arguments.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ivf::Clip;

pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// A silent Opus encoder with DTX sends one packet per this many frames (400 ms).
const DTX_FRAMES: u64 = 20;
pub const VIDEO_FRAME: Duration = Duration::from_millis(50);
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);
/// Largest video payload, as browsers packetise for a 1200-byte MTU.
pub const MAX_VIDEO_PAYLOAD: usize = 1100;
pub const SPEECH_DBOV: i8 = -20;
pub const SILENCE_DBOV: i8 = -127;
pub const COUNTER_LEN: usize = 4;
/// VP8 payload descriptor: X=1, then I=1, then a 15-bit picture id (M=1).
pub const DESCRIPTOR_LEN: usize = 4;
/// VP8 frame tag, then for keyframes the start code and the dimensions (RFC 6386 9.1).
const KEYFRAME_HEADER_LEN: usize = 10;
const INTERFRAME_HEADER_LEN: usize = 3;

/// The publisher's packet counter that ends every payload.
pub fn read_counter(payload: &[u8]) -> Option<u32> {
    let tail = payload.len().checked_sub(COUNTER_LEN)?;
    Some(u32::from_be_bytes(payload[tail..].try_into().ok()?))
}

fn write_counter(payload: &mut Vec<u8>, counter: u32) {
    payload.extend_from_slice(&counter.to_be_bytes());
}

/// A small xorshift: sizes need variety, not good randomness.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// A value in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + (self.0 % (high - low + 1) as u64) as usize
    }
}

/// Who speaks when: `n_speakers` participants at a time; every `period` the set moves on to the
/// next `n_speakers` (participant 0, the teacher, is in the first set). Without a period the
/// first set speaks all along.
#[derive(Debug, Clone)]
pub struct SpeakerSchedule {
    epoch: Instant,
    period: Option<Duration>,
    n_speakers: usize,
    n_participants: usize,
}

impl SpeakerSchedule {
    pub fn rotating(
        epoch: Instant,
        period: Duration,
        n_speakers: usize,
        n_participants: usize,
    ) -> SpeakerSchedule {
        SpeakerSchedule { epoch, period: Some(period), n_speakers, n_participants }
    }

    pub fn fixed(n_speakers: usize, n_participants: usize) -> SpeakerSchedule {
        SpeakerSchedule { epoch: Instant::now(), period: None, n_speakers, n_participants }
    }

    pub fn round_at(&self, at: Instant) -> u64 {
        match self.period {
            Some(period) => (at.saturating_duration_since(self.epoch).as_nanos() / period.as_nanos()) as u64,
            None => 0,
        }
    }

    /// When `round` starts (the epoch for a fixed schedule).
    pub fn round_start(&self, round: u64) -> Instant {
        let period = self.period.unwrap_or_default();
        self.epoch + Duration::from_nanos((period.as_nanos() * u128::from(round)) as u64)
    }

    pub fn speaks_in_round(&self, participant_idx: usize, round: u64) -> bool {
        let n = self.n_participants.max(1);
        if self.n_speakers >= n {
            return true;
        }
        let first = (round as usize % n) * self.n_speakers % n;
        (participant_idx + n - first) % n < self.n_speakers
    }

    pub fn speaks(&self, participant_idx: usize, at: Instant) -> bool {
        self.speaks_in_round(participant_idx, self.round_at(at))
    }

    /// The next moment the set of speakers changes after `at`.
    pub fn next_change(&self, at: Instant) -> Option<Instant> {
        self.period.map(|_| self.round_start(self.round_at(at) + 1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPacket {
    pub seq_no: u64,
    pub timestamp: u32,
    /// The first packet of a talkspurt.
    pub marker: bool,
    pub level: i8,
    pub voice: bool,
    pub payload: Vec<u8>,
}

/// An Opus encoder with DTX, on a 20 ms frame clock that starts at `start`.
#[derive(Debug)]
pub struct AudioSource {
    start: Instant,
    seq_no: u64,
    timestamp_base: u32,
    n_sent: u32,
    last_frame: Option<u64>,
    was_speaking: bool,
    jitter: Jitter,
}

impl AudioSource {
    pub fn new(start: Instant, seed: u64) -> AudioSource {
        let mut jitter = Jitter::new(seed);
        let timestamp_base = jitter.between(0, u32::MAX as usize / 2) as u32;
        AudioSource {
            start,
            seq_no: 1,
            timestamp_base,
            n_sent: 0,
            last_frame: None,
            was_speaking: false,
            jitter,
        }
    }

    fn frame_at(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.start).as_nanos() / AUDIO_FRAME.as_nanos()) as u64
    }

    /// When the next packet is due if the participant goes on speaking (or not).
    pub fn next_at(&self, speaking: bool) -> Instant {
        let next_frame = match self.last_frame {
            None => 0,
            Some(last) if speaking => last + 1,
            Some(last) => last + DTX_FRAMES,
        };
        self.start + AUDIO_FRAME * next_frame as u32
    }

    /// The packet due at `now`, if one is.
    pub fn poll(&mut self, now: Instant, speaking: bool) -> Option<AudioPacket> {
        let frame = self.frame_at(now);
        if let Some(last) = self.last_frame {
            let due = if speaking { last + 1 } else { last + DTX_FRAMES };
            if frame < due {
                return None;
            }
        }
        self.last_frame = Some(frame);
        let marker = speaking && !self.was_speaking;
        self.was_speaking = speaking;
        // Opus TOC byte (config 15: hybrid fullband, 20 ms, mono), then the coded frame; a DTX
        // packet carries nothing but the TOC (and our counter).
        let mut payload = vec![0x78];
        if speaking {
            let len = self.jitter.between(80, 120) - 1 - COUNTER_LEN;
            payload.resize(1 + len, 0xa5);
        }
        write_counter(&mut payload, self.n_sent);
        let packet = AudioPacket {
            seq_no: self.seq_no,
            timestamp: self.timestamp_base.wrapping_add((frame * 960) as u32),
            marker,
            level: if speaking { SPEECH_DBOV } else { SILENCE_DBOV },
            voice: speaking,
            payload,
        };
        self.seq_no += 1;
        self.n_sent += 1;
        Some(packet)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPacket {
    pub seq_no: u64,
    /// The last packet of its frame.
    pub marker: bool,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    pub timestamp: u32,
    pub keyframe: bool,
    pub packets: Vec<VideoPacket>,
}

/// A VP8 encoder at 20 fps on a frame clock that starts at `start`.
#[derive(Debug)]
pub struct VideoSource {
    start: Instant,
    seq_no: u64,
    timestamp_base: u32,
    picture_id: u16,
    n_sent: u32,
    last_frame: Option<u64>,
    last_keyframe: Option<Instant>,
    keyframe_requested: bool,
    jitter: Jitter,
    /// A real VP8 clip played in a loop instead of synthetic frames, and where in it we are.
    clip: Option<(Arc<Clip>, usize)>,
}

impl VideoSource {
    /// Plays `clip` in a loop (a request for a keyframe jumps to its next one).
    pub fn with_clip(start: Instant, seed: u64, clip: Option<Arc<Clip>>) -> VideoSource {
        VideoSource { clip: clip.map(|clip| (clip, 0)), ..VideoSource::new(start, seed) }
    }

    pub fn new(start: Instant, seed: u64) -> VideoSource {
        let mut jitter = Jitter::new(seed);
        let timestamp_base = jitter.between(0, u32::MAX as usize / 2) as u32;
        let picture_id = jitter.between(0, 0x7fff) as u16;
        VideoSource {
            start,
            seq_no: 1,
            timestamp_base,
            picture_id,
            n_sent: 0,
            last_frame: None,
            last_keyframe: None,
            keyframe_requested: false,
            jitter,
            clip: None,
        }
    }

    /// A receiver asked (PLI or FIR): the next frame is a keyframe.
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    pub fn next_at(&self) -> Instant {
        let next_frame = self.last_frame.map_or(0, |last| last + 1);
        self.start + VIDEO_FRAME * next_frame as u32
    }

    /// The frame due at `now`, if one is. A late call sends one frame, not the ones it missed,
    /// as an encoder that fell behind does. `protect` gets the encoded frame before it is
    /// packetised (end-to-end encryption, docs/e2ee.md) and may drop it (`None`).
    pub fn poll(
        &mut self,
        now: Instant,
        protect: impl FnOnce(Vec<u8>) -> Option<Vec<u8>>,
    ) -> Option<VideoFrame> {
        let frame = (now.saturating_duration_since(self.start).as_nanos() / VIDEO_FRAME.as_nanos()) as u64;
        if self.last_frame.is_some_and(|last| frame <= last) {
            return None;
        }
        self.last_frame = Some(frame);
        if let Some((clip, position)) = &mut self.clip {
            if std::mem::take(&mut self.keyframe_requested) {
                *position = clip.next_keyframe(*position);
            }
            let clip_frame = &clip.frames[*position];
            *position = (*position + 1) % clip.frames.len();
            let keyframe = clip_frame.keyframe;
            let data = protect(clip_frame.data.clone())?;
            // A real clip's payloads carry no counter: that would break the bitstream.
            let payloads = packetize(self.picture_id, &data, None);
            return Some(self.frame(frame, keyframe, payloads));
        }
        let keyframe = self.keyframe_requested
            || self.last_keyframe.is_none_or(|at| now.saturating_duration_since(at) >= KEYFRAME_INTERVAL);
        if keyframe {
            self.keyframe_requested = false;
            self.last_keyframe = Some(now);
        }
        let frame_len =
            if keyframe { self.jitter.between(20_000, 40_000) } else { self.jitter.between(1000, 2000) };
        let data = protect(synthetic_frame(keyframe, frame_len))?;
        let payloads = packetize(self.picture_id, &data, Some(self.n_sent));
        Some(self.frame(frame, keyframe, payloads))
    }

    fn frame(&mut self, frame: u64, keyframe: bool, payloads: Vec<Vec<u8>>) -> VideoFrame {
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let n_packets = payloads.len();
        let packets = payloads
            .into_iter()
            .enumerate()
            .map(|(packet_idx, payload)| {
                let packet =
                    VideoPacket { seq_no: self.seq_no, marker: packet_idx + 1 == n_packets, payload };
                self.seq_no += 1;
                self.n_sent += 1;
                packet
            })
            .collect();
        let timestamp = self.timestamp_base.wrapping_add((frame * 4500) as u32);
        VideoFrame { timestamp, keyframe, packets }
    }
}

/// A synthetic VP8 frame of about `frame_len` bytes: its frame tag (and for a keyframe the start
/// code and dimensions), then filler.
pub fn synthetic_frame(keyframe: bool, frame_len: usize) -> Vec<u8> {
    let header_len = if keyframe { KEYFRAME_HEADER_LEN } else { INTERFRAME_HEADER_LEN };
    let frame_len = frame_len.max(header_len);
    let mut frame = Vec::with_capacity(frame_len);
    frame.extend_from_slice(&frame_tag(keyframe, frame_len / 4));
    if keyframe {
        // Start code, then 640 x 360 without scaling.
        frame.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
    }
    frame.resize(frame_len, 0x5a);
    frame
}

/// One VP8 frame as RTP payloads of at most [`MAX_VIDEO_PAYLOAD`] bytes (RFC 7741): a descriptor
/// with a 15-bit picture id, S on the first packet, then the frame's bytes in order; with
/// `first_counter`, each payload ends with its packet counter (from `first_counter` on).
pub fn packetize(picture_id: u16, frame: &[u8], first_counter: Option<u32>) -> Vec<Vec<u8>> {
    let trailer_len = if first_counter.is_some() { COUNTER_LEN } else { 0 };
    frame
        .chunks(MAX_VIDEO_PAYLOAD - DESCRIPTOR_LEN - trailer_len)
        .enumerate()
        .map(|(packet_idx, chunk)| {
            let start = if packet_idx == 0 { 0x10 } else { 0x00 };
            let mut payload = Vec::with_capacity(DESCRIPTOR_LEN + chunk.len() + trailer_len);
            // X=1, S, PID=0; I=1; M=1 and the picture id's 15 bits.
            payload.extend_from_slice(&[
                0x80 | start,
                0x80,
                0x80 | (picture_id >> 8) as u8,
                picture_id as u8,
            ]);
            payload.extend_from_slice(chunk);
            if let Some(first) = first_counter {
                write_counter(&mut payload, first + packet_idx as u32);
            }
            payload
        })
        .collect()
}

/// A synthetic frame of about `frame_len` bytes, packetised with counters.
#[cfg(test)]
pub fn packetize_vp8(picture_id: u16, keyframe: bool, frame_len: usize, first_counter: u32) -> Vec<Vec<u8>> {
    packetize(picture_id, &synthetic_frame(keyframe, frame_len), Some(first_counter))
}

/// The VP8 frame tag: P (0 for a keyframe), version 0, show_frame, first partition size.
fn frame_tag(keyframe: bool, first_partition_len: usize) -> [u8; 3] {
    let size = (first_partition_len & 0x7_ffff) as u32;
    let bits = u32::from(!keyframe) | (1 << 4) | (size << 5);
    [bits as u8, (bits >> 8) as u8, (bits >> 16) as u8]
}

#[cfg(test)]
mod tests;
