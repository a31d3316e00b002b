//! The outgoing side of one subscription: which packets to send and how to number them.

use std::time::{Duration, Instant};

use crate::proto::MediaKind;

use super::buffer::PacketView;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Forward { seq_no: u64, timestamp: u32 },
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A video subscriber cannot decode anything before a keyframe.
    WaitingForKeyframe,
    /// A late packet from before a re-base: its number would collide with ones already sent.
    BeforeResync,
}

#[derive(Debug, Clone, Copy)]
struct Sync {
    /// `out = in - seq_offset`, in wrapping arithmetic.
    seq_offset: u64,
    ts_offset: u32,
    ssrc: u32,
    /// First incoming sequence number of the current epoch.
    resync_in_seq: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    last_arrival: Instant,
}

/// Rewrites one publisher track for one subscriber.
///
/// Subscribers see one continuous stream per track: a sequence number space with no holes of our
/// making (holes from network loss stay, so that the subscriber NACKs them), starting below 2^16
/// so that no SRTP rollover counter needs signalling, and timestamps that keep running across a
/// change of the publisher's SSRC.
#[derive(Debug)]
pub struct DownTrack {
    kind: MediaKind,
    clock_rate: u32,
    sync: Option<Sync>,
    generation: u32,
    needs_resync: bool,
    /// The next packet comes from another publisher: its timestamps have their own origin even
    /// if its SSRC happens to equal the previous one's.
    new_source: bool,
    needs_keyframe: bool,
}

impl DownTrack {
    pub fn new(kind: MediaKind, generation: u32) -> DownTrack {
        let clock_rate = match kind {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        };
        DownTrack {
            kind,
            clock_rate,
            sync: None,
            generation,
            needs_resync: false,
            new_source: false,
            needs_keyframe: kind == MediaKind::Video,
        }
    }

    pub fn needs_keyframe(&self) -> bool {
        self.needs_keyframe
    }

    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        if clock_rate > 0 {
            self.clock_rate = clock_rate;
        }
    }

    /// The slot now carries another publisher's track, whose `generation` is given: its packets
    /// continue our sequence numbers and timestamps, and video waits for its keyframe.
    pub fn switch_source(&mut self, generation: u32) {
        self.generation = generation;
        self.needs_resync = true;
        self.new_source = true;
        if self.kind == MediaKind::Video {
            self.needs_keyframe = true;
        }
    }

    /// Decides what to do with `packet`; `generation` is the publisher track's current one.
    pub fn forward(&mut self, packet: &PacketView, generation: u32) -> Decision {
        if generation != self.generation {
            self.generation = generation;
            self.needs_resync = true;
            if self.kind == MediaKind::Video {
                self.needs_keyframe = true;
            }
        }
        if self.needs_keyframe {
            if !packet.keyframe_start {
                return Decision::Drop(DropReason::WaitingForKeyframe);
            }
            self.needs_keyframe = false;
        }

        let sync = match &mut self.sync {
            None => {
                let first_out = packet.seq_no & 0xffff;
                self.needs_resync = false;
                self.new_source = false;
                self.sync.insert(Sync {
                    seq_offset: packet.seq_no.wrapping_sub(first_out),
                    ts_offset: 0,
                    ssrc: packet.ssrc,
                    resync_in_seq: packet.seq_no,
                    last_out_seq: first_out,
                    last_out_ts: packet.timestamp,
                    last_arrival: packet.arrival,
                })
            }
            Some(sync) if self.needs_resync || packet.ssrc != sync.ssrc => {
                self.needs_resync = false;
                let next_out = sync.last_out_seq + 1;
                sync.seq_offset = packet.seq_no.wrapping_sub(next_out);
                sync.resync_in_seq = packet.seq_no;
                if packet.ssrc != sync.ssrc || std::mem::take(&mut self.new_source) {
                    // A new source has its own timestamp origin: continue ours by the wall-clock
                    // time that passed, as the subscriber's jitter buffer expects.
                    let elapsed = packet.arrival.saturating_duration_since(sync.last_arrival);
                    let ticks = media_ticks(elapsed, self.clock_rate).max(1);
                    let next_ts = sync.last_out_ts.wrapping_add(ticks);
                    sync.ts_offset = next_ts.wrapping_sub(packet.timestamp);
                    sync.ssrc = packet.ssrc;
                }
                sync
            }
            Some(sync) => {
                if packet.seq_no < sync.resync_in_seq {
                    return Decision::Drop(DropReason::BeforeResync);
                }
                sync
            }
        };

        let seq_no = packet.seq_no.wrapping_sub(sync.seq_offset);
        let timestamp = packet.timestamp.wrapping_add(sync.ts_offset);
        if seq_no > sync.last_out_seq || sync.resync_in_seq == packet.seq_no {
            sync.last_out_seq = seq_no;
            sync.last_out_ts = timestamp;
            sync.last_arrival = packet.arrival;
        }
        Decision::Forward { seq_no, timestamp }
    }
}

fn media_ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    // Truncation is fine: a session lasts hours at most, far below u32 ticks of wrap-around
    // arithmetic that the RTP timestamp uses anyway.
    (elapsed.as_micros() * clock_rate as u128 / 1_000_000) as u32
}

#[cfg(test)]
mod tests;
