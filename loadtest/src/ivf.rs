//! A real VP8 clip for `loadtest call --video-ivf`: an IVF file (as `ffmpeg -c:v libvpx -f ivf`
//! writes), played in a loop, so that browsers in the same call decode what load participants
//! send. Its payloads carry no packet counter (that would break the bitstream), so video delivery
//! is not counted in this mode; audio still is.
//!
//! IVF: a 32-byte header ("DKIF", version, header length, "VP80", width, height, rate, scale,
//! frame count), then per frame a 4-byte little-endian size, an 8-byte timestamp and the frame.

use std::path::Path;

use anyhow::Context;

#[derive(Debug)]
pub struct ClipFrame {
    pub keyframe: bool,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct Clip {
    pub frames: Vec<ClipFrame>,
}

impl Clip {
    pub fn read(path: &Path) -> anyhow::Result<Clip> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Clip::parse(&bytes).with_context(|| format!("{} is not a VP8 IVF file", path.display()))
    }

    pub fn parse(bytes: &[u8]) -> anyhow::Result<Clip> {
        anyhow::ensure!(bytes.len() >= 32 && &bytes[..4] == b"DKIF", "no IVF header");
        anyhow::ensure!(&bytes[8..12] == b"VP80", "not VP8");
        let header_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
        let mut at = header_len.max(32);
        let mut frames = Vec::new();
        while at + 12 <= bytes.len() {
            let size = u32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
            let data = bytes.get(at + 12..at + 12 + size).context("a frame runs past the end")?;
            anyhow::ensure!(!data.is_empty(), "an empty frame");
            // RFC 6386 9.1: the frame tag's lowest bit is 0 for a keyframe.
            frames.push(ClipFrame { keyframe: data[0] & 1 == 0, data: data.to_vec() });
            at += 12 + size;
        }
        anyhow::ensure!(frames.first().is_some_and(|f| f.keyframe), "the clip must start with a keyframe");
        Ok(Clip { frames })
    }

    /// The first keyframe at or after `from`, wrapping to the start (a keyframe).
    pub fn next_keyframe(&self, from: usize) -> usize {
        (from..self.frames.len()).find(|i| self.frames[*i].keyframe).unwrap_or(0)
    }
}

/// One VP8 frame as RTP payloads (RFC 7741), without packet counters.
#[cfg(test)]
pub fn packetize(picture_id: u16, frame: &[u8]) -> Vec<Vec<u8>> {
    crate::media::packetize(picture_id, frame, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MAX_VIDEO_PAYLOAD;

    fn ivf(frames: &[&[u8]]) -> Vec<u8> {
        let mut bytes = b"DKIF".to_vec();
        bytes.extend_from_slice(&[0, 0, 32, 0]);
        bytes.extend_from_slice(b"VP80");
        bytes.resize(32, 0);
        for frame in frames {
            bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&[0; 8]);
            bytes.extend_from_slice(frame);
        }
        bytes
    }

    #[test]
    fn frames_keyframes_and_packets() {
        let key = [0x50, 0x9d, 0x01, 0x2a, 1, 2, 3];
        let delta = [0x51, 7, 7];
        let clip = Clip::parse(&ivf(&[&key, &delta, &key])).unwrap();
        let kinds: Vec<bool> = clip.frames.iter().map(|f| f.keyframe).collect();
        assert_eq!(kinds, [true, false, true]);
        assert_eq!(clip.next_keyframe(1), 2);
        assert_eq!(clip.next_keyframe(3), 0);
        assert!(Clip::parse(&ivf(&[&delta])).is_err(), "must start with a keyframe");
        assert!(Clip::parse(b"RIFF0000").is_err());

        let big = vec![0x50u8; 3000];
        let packets = packetize(5, &big);
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[0][0], 0x90, "S on the first packet only");
        assert_eq!(packets[1][0], 0x80);
        assert!(packets.iter().all(|p| p.len() <= MAX_VIDEO_PAYLOAD));
        let rejoined: Vec<u8> = packets.iter().flat_map(|p| p[4..].to_vec()).collect();
        assert_eq!(rejoined, big);
        // The SFU's keyframe test, on the first packet.
        assert!(str0m::format::detect_vp8_keyframe(&packetize(1, &key)[0]));
    }
}
