// Reads the SFU's test tap (sfu/src/forward/tap.rs: a debug build's server started with
// KLASS_SFU_TEST_TAP=<dir> writes every packet it forwards from a publisher, one JSON line each,
// one file per published track and layer) and checks whether what the SFU forwarded decodes:
// VP8 frames are put back together from RTP (RFC 7741) and decoded by `ffmpeg` from an IVF file;
// Opus frames (one per packet, the primary of RED, RFC 2198) are written into an Ogg Opus file
// (RFC 7845) and decoded to PCM, in which we look for a known test tone, since an Opus decoder
// turns most random bytes into noise without a word.
//
// Clear calls decode (tap.test.mjs holds that, the control); end-to-end encrypted calls must not.
//
//   const streams = readTap(dir);                      // [{ room, participant, track, kind, rid, packets }]
//   const s = streams.find((x) => x.participant === id && x.kind === 'video' && x.rid === 'f');
//   const frames = vp8Frames(s.packets).filter((f) => f.t_ms > since);
//   await decodeVp8(frames)      // { frames, keyframes, decoded, errors, errorLines, width, height }
//   await decodeOpus(audioFrames(a.packets), { toneHz: 440 })   // { frames, decoded, errors, toneRatio, rmsDb }
//   const c = await decodeCheck(s, { since, toneHz: 440 }) // either, by the stream's kind
//   decodes(c)                                          // true for a clear call, false for random bytes
//
// Needs `ffmpeg` (FFMPEG_BIN) with its native vp8 and opus decoders.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const FFMPEG = process.env.FFMPEG_BIN || 'ffmpeg';

// ---------------------------------------------------------------------------------------------
// The tap's files

/** The tapped streams (video layers and audio) of one participant. */
export function streamsOf(streams, pid) {
  return streams.filter((s) => s.participant === pid);
}

/**
 * Every stream in a tap directory: one per (room, participant, track, kind, rid), its packets
 * (the tap's records: t_ms, seq, ts, marker, red, ssrc, pt, receivers) in arrival order, payloads
 * as Buffers. `dropped`: records the tap could not write (its writer was
 * behind); 0 when all were written.
 */
export function readTap(dir) {
  const byKey = new Map();
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl')).sort()) {
    const text = fs.readFileSync(path.join(dir, name), 'utf8');
    for (const line of text.split('\n')) {
      // The server may be writing: a last line without its newline is not complete yet.
      if (!line.endsWith('}')) continue;
      const r = JSON.parse(line);
      const key = `${r.room}/${r.participant}/${r.track}/${r.kind}/${r.rid}`;
      let stream = byKey.get(key);
      if (!stream) {
        stream = { room: r.room, participant: r.participant, track: r.track, kind: r.kind, rid: r.rid, packets: [] };
        byKey.set(key, stream);
      }
      stream.packets.push({ ...r, payload: Buffer.from(r.payload, 'base64') });
    }
  }
  const streams = [...byKey.values()];
  for (const s of streams) s.packets.sort((a, b) => a.t_ms - b.t_ms || a.seq - b.seq);
  streams.dropped = tapDropped(dir);
  return streams;
}

/** How many records the tap dropped (its writer fell behind). */
export function tapDropped(dir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'tap-dropped.json'), 'utf8')).dropped;
  } catch {
    return 0;
  }
}

/** One line per stream, for a test's printout. */
export function describeStreams(streams) {
  return streams
    .map((s) => `${s.participant} ${s.kind}${s.rid ? ` rid ${s.rid}` : ''} (track ${s.track}): ${s.packets.length} packets` +
      `${s.packets.some((p) => p.red) ? ', RED' : ''}, pt ${[...new Set(s.packets.map((p) => p.pt))].join('/')}`)
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// VP8 (RFC 7741)

/**
 * The VP8 payload descriptor's length and its S bit and partition index; null when the payload
 * is too short for the descriptor it announces.
 */
export function vp8Descriptor(payload) {
  if (payload.length < 1) return null;
  const b0 = payload[0];
  const x = (b0 & 0x80) !== 0;
  const start = (b0 & 0x10) !== 0;
  const pid = b0 & 0x07;
  let len = 1;
  if (x) {
    if (payload.length < 2) return null;
    const b1 = payload[1];
    len = 2;
    if (b1 & 0x80) {
      // I: PictureID, 7 or 15 bits (M).
      if (payload.length < len + 1) return null;
      len += payload[len] & 0x80 ? 2 : 1;
    }
    if (b1 & 0x40) len += 1; // L: TL0PICIDX
    if (b1 & 0x30) len += 1; // T or K: TID, Y, KEYIDX
  }
  if (payload.length < len) return null;
  return { len, start, pid };
}

/** Keyframe and picture size from a VP8 frame's first bytes (RFC 6386 §9.1). */
export function vp8FrameInfo(frame) {
  if (frame.length < 3) return { keyframe: false };
  const keyframe = (frame[0] & 0x01) === 0;
  if (!keyframe || frame.length < 10) return { keyframe };
  const startCode = frame[3] === 0x9d && frame[4] === 0x01 && frame[5] === 0x2a;
  return {
    keyframe,
    startCode,
    width: frame.readUInt16LE(6) & 0x3fff,
    height: frame.readUInt16LE(8) & 0x3fff,
  };
}

/**
 * VP8 frames put back together from a stream's packets: per SSRC, in sequence order, a frame is
 * the packets of one RTP timestamp from one that starts partition 0 (S = 1, PID = 0) to the one
 * with the marker bit, with no sequence number missing. Incomplete frames are skipped (counted
 * in the returned array's `incomplete`). Each frame: { ts, seq (first packet), t_ms (arrival of
 * its last packet), t0_ms (of its first), keyframe, width, height, data }, in arrival order.
 */
export function vp8Frames(packets) {
  const frames = [];
  let incomplete = 0;
  const bySsrc = new Map();
  for (const p of packets) {
    if (!bySsrc.has(p.ssrc)) bySsrc.set(p.ssrc, []);
    bySsrc.get(p.ssrc).push(p);
  }
  for (const list of bySsrc.values()) {
    // Sequence order, duplicates (a retransmission that also arrived) once.
    const seen = new Set();
    const sorted = list.filter((p) => !seen.has(p.seq) && seen.add(p.seq)).sort((a, b) => a.seq - b.seq);
    let current = null;
    // The timestamp of the latest frame counted incomplete: its other packets are not counted again.
    let brokenTs = null;
    const finish = () => {
      if (current) {
        incomplete += 1;
        brokenTs = current.ts;
      }
      current = null;
    };
    for (const p of sorted) {
      const d = vp8Descriptor(p.payload);
      if (!d) {
        finish();
        continue;
      }
      if (current && (p.ts !== current.ts || p.seq !== current.lastSeq + 1)) finish();
      if (!current) {
        if (!(d.start && d.pid === 0)) {
          // The rest of a frame whose start we do not have.
          if (p.ts !== brokenTs) {
            incomplete += 1;
            brokenTs = p.ts;
          }
          continue;
        }
        current = { ts: p.ts, seq: p.seq, lastSeq: p.seq, t0_ms: p.t_ms, t_ms: p.t_ms, parts: [] };
      } else {
        current.lastSeq = p.seq;
        current.t_ms = Math.max(current.t_ms, p.t_ms);
      }
      current.parts.push(p.payload.subarray(d.len));
      if (p.marker) {
        const data = Buffer.concat(current.parts);
        frames.push({ ts: current.ts, seq: current.seq, t0_ms: current.t0_ms, t_ms: current.t_ms, ...vp8FrameInfo(data), data });
        current = null;
      }
    }
    finish();
  }
  frames.sort((a, b) => a.t_ms - b.t_ms || a.seq - b.seq);
  frames.incomplete = incomplete;
  return frames;
}

/** An IVF file (the container of libvpx's tools) of VP8 frames. */
export function ivf(frames, { width, height }) {
  const header = Buffer.alloc(32);
  header.write('DKIF', 0, 'latin1');
  header.writeUInt16LE(0, 4);
  header.writeUInt16LE(32, 6);
  header.write('VP80', 8, 'latin1');
  header.writeUInt16LE(width, 12);
  header.writeUInt16LE(height, 14);
  header.writeUInt32LE(30, 16); // time base: 1/30 s, one frame per unit (frames are numbered)
  header.writeUInt32LE(1, 20);
  header.writeUInt32LE(frames.length, 24);
  const parts = [header];
  frames.forEach((f, i) => {
    const h = Buffer.alloc(12);
    h.writeUInt32LE(f.data.length, 0);
    h.writeBigUInt64LE(BigInt(i), 4);
    parts.push(h, f.data);
  });
  return Buffer.concat(parts);
}

/**
 * Decodes VP8 frames with ffmpeg. The frames before `from` are context only (from the keyframe
 * the others need, see `decodeCheck`); decoding starts at the first keyframe. `frames`: the
 * frames from `from` on; `keyframes`: among them; `usable`: those from the first keyframe on;
 * `decoded`: of those, the pictures ffmpeg put out; `errors`: lines it logged at level error,
 * context included (each a frame it could not decode, or worse); `pictureDiff`: mean absolute
 * difference between consecutive pictures (0 to 255, on 64x48 grey thumbnails): a camera's
 * picture changes little from frame to frame, pictures made of random bytes jump.
 */
export async function decodeVp8(frames, { from = 0, keep = null } = {}) {
  const first = frames.findIndex((f) => f.keyframe);
  const usable = first < 0 ? [] : frames.slice(first);
  const counted = frames.slice(from);
  const keyframes = counted.filter((f) => f.keyframe);
  const size = frames.find((f) => f.keyframe && f.width && f.height) || { width: 0, height: 0 };
  const result = {
    frames: counted.length,
    context: from,
    keyframes: keyframes.length,
    usable: first < 0 ? 0 : frames.length - Math.max(first, from),
    width: size.width,
    height: size.height,
    decoded: 0,
    errors: 0,
    errorLines: [],
    pictureDiff: null,
  };
  if (usable.length === 0) return result;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-tap-vp8-'));
  try {
    const file = path.join(dir, 'video.ivf');
    const crcFile = path.join(dir, 'frames.crc');
    fs.writeFileSync(file, ivf(usable, { width: size.width || 320, height: size.height || 240 }));
    if (keep) fs.copyFileSync(file, keep);
    // Grey 64x48 pictures on stdout and a line per picture (its pts: the frame's index in the
    // file) in `crcFile`, from one decode; errors on stderr.
    const { stdout, stderr } = await runFfmpeg([
      '-v', 'error', '-c:v', 'vp8', '-i', file,
      '-map', '0:v', '-vf', 'scale=64:48:flags=area,format=gray', '-fps_mode', 'passthrough', '-f', 'rawvideo', '-',
      '-map', '0:v', '-fps_mode', 'passthrough', '-f', 'framecrc', crcFile,
    ]);
    const pictureSize = 64 * 48;
    const skipped = first < from ? from - first : 0; // context frames in the file
    const indexes = fs.existsSync(crcFile)
      ? fs.readFileSync(crcFile, 'utf8').split('\n').filter((l) => /^\d/.test(l)).map((l) => Number(l.split(',')[1]))
      : [];
    result.decoded = indexes.filter((i) => i >= skipped).length;
    result.errorLines = stderr.split('\n').filter((l) => l.trim());
    result.errors = result.errorLines.length;
    const pictures = Math.floor(stdout.length / pictureSize);
    if (pictures >= 2) {
      let sum = 0;
      for (let i = 1; i < pictures; i++) {
        const a = stdout.subarray((i - 1) * pictureSize, i * pictureSize);
        const b = stdout.subarray(i * pictureSize, (i + 1) * pictureSize);
        let d = 0;
        for (let k = 0; k < pictureSize; k++) d += Math.abs(a[k] - b[k]);
        sum += d / pictureSize;
      }
      result.pictureDiff = sum / (pictures - 1);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Opus (RFC 6716), RED (RFC 2198), Ogg (RFC 3533, RFC 7845)

/**
 * A RED payload's blocks: `primary` (the latest encoding) and `redundant` (older ones, oldest
 * first); null when its block headers run past its end.
 */
export function redBlocks(payload) {
  const headers = [];
  let offset = 0;
  for (;;) {
    if (offset >= payload.length) return null;
    const h = payload[offset];
    if ((h & 0x80) === 0) {
      headers.push({ pt: h & 0x7f, primary: true });
      offset += 1;
      break;
    }
    if (offset + 4 > payload.length) return null;
    headers.push({ pt: h & 0x7f, tsOffset: (payload[offset + 1] << 6) | (payload[offset + 2] >> 2), len: ((payload[offset + 2] & 0x03) << 8) | payload[offset + 3] });
    offset += 4;
  }
  const redundant = [];
  for (const h of headers.slice(0, -1)) {
    if (offset + h.len > payload.length) return null;
    redundant.push({ pt: h.pt, tsOffset: h.tsOffset, data: payload.subarray(offset, offset + h.len) });
    offset += h.len;
  }
  return { primary: payload.subarray(offset), redundant };
}

/**
 * Audio frames, one per packet, in arrival order: { ts, seq, t_ms, red, raw (the payload as
 * forwarded), primary (the Opus frame: the payload, or RED's primary block; null for a RED
 * payload whose headers do not parse) }. `unparsedRed` on the array counts those.
 */
export function audioFrames(packets) {
  let unparsedRed = 0;
  const frames = packets.map((p) => {
    let primary = p.payload;
    if (p.red) {
      const blocks = redBlocks(p.payload);
      primary = blocks ? blocks.primary : null;
      if (!blocks) unparsedRed += 1;
    }
    return { ts: p.ts, seq: p.seq, t_ms: p.t_ms, red: p.red, raw: p.payload, primary };
  });
  frames.unparsedRed = unparsedRed;
  return frames;
}

/** Samples (at 48 kHz) an Opus packet holds, from its TOC byte (RFC 6716 §3.1); 0 if invalid. */
export function opusPacketSamples(packet) {
  if (packet.length < 1) return 0;
  const toc = packet[0];
  const config = toc >> 3;
  let frameSamples;
  if (config < 12) frameSamples = [480, 960, 1920, 2880][config & 3]; // SILK: 10, 20, 40, 60 ms
  else if (config < 16) frameSamples = [480, 960][config & 1]; // Hybrid: 10, 20 ms
  else frameSamples = [120, 240, 480, 960][config & 3]; // CELT: 2.5, 5, 10, 20 ms
  const code = toc & 0x03;
  let count = 1;
  if (code === 1 || code === 2) count = 2;
  if (code === 3) {
    if (packet.length < 2) return 0;
    count = packet[1] & 0x3f;
  }
  const samples = frameSamples * count;
  return samples > 5760 ? 0 : samples; // at most 120 ms
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    table[i] = r >>> 0;
  }
  return table;
})();

/** Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0, no final xor. */
export function oggCrc(buf) {
  let crc = 0;
  for (const byte of buf) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ byte) & 0xff]) >>> 0;
  return crc >>> 0;
}

function oggPage(packet, { serial, seqNo, granule, bos = false, eos = false }) {
  const lacing = [];
  let left = packet.length;
  while (left >= 255) {
    lacing.push(255);
    left -= 255;
  }
  lacing.push(left); // a packet of a multiple of 255 bytes ends with a 0
  if (lacing.length > 255) throw new Error(`Ogg: a packet of ${packet.length} bytes does not fit one page`);
  const header = Buffer.alloc(27 + lacing.length);
  header.write('OggS', 0, 'latin1');
  header[4] = 0;
  header[5] = (bos ? 0x02 : 0) | (eos ? 0x04 : 0);
  header.writeBigInt64LE(BigInt(granule), 6);
  header.writeUInt32LE(serial, 14);
  header.writeUInt32LE(seqNo, 18);
  header.writeUInt32LE(0, 22);
  header[26] = lacing.length;
  Buffer.from(lacing).copy(header, 27);
  const page = Buffer.concat([header, packet]);
  page.writeUInt32LE(oggCrc(page), 22);
  return page;
}

/**
 * An Ogg Opus file (RFC 7845) of Opus packets, one per page: OpusHead (mono, no pre-skip, 48 kHz
 * mapping family 0), OpusTags, then the packets with their end's granule position. Packets whose
 * TOC is invalid are counted as 20 ms so that the granule always rises.
 */
export function oggOpus(packets, { channels = 1 } = {}) {
  const serial = 0x6b6c6173; // "klas"
  const head = Buffer.alloc(19);
  head.write('OpusHead', 0, 'latin1');
  head[8] = 1; // version
  head[9] = channels;
  head.writeUInt16LE(0, 10); // pre-skip
  head.writeUInt32LE(48000, 12);
  head.writeInt16LE(0, 16); // output gain
  head[18] = 0; // mapping family
  const vendor = Buffer.from('klass tap.mjs');
  const tags = Buffer.alloc(8 + 4 + vendor.length + 4);
  tags.write('OpusTags', 0, 'latin1');
  tags.writeUInt32LE(vendor.length, 8);
  vendor.copy(tags, 12);
  tags.writeUInt32LE(0, 12 + vendor.length);
  const pages = [oggPage(head, { serial, seqNo: 0, granule: 0, bos: true }), oggPage(tags, { serial, seqNo: 1, granule: 0 })];
  let granule = 0;
  packets.forEach((p, i) => {
    granule += opusPacketSamples(p) || 960;
    pages.push(oggPage(p, { serial, seqNo: i + 2, granule, eos: i === packets.length - 1 }));
  });
  return Buffer.concat(pages);
}

/**
 * Power of the `hz` component over the whole power of `pcm` (mono s16le, 48 kHz), over windows of
 * 100 ms (Goertzel); for a clean sine of that frequency close to 1, for noise about 1/2400 per
 * 10 Hz. Windows of digital silence (DTX) are left out. Returns { ratio, rmsDb, windows }.
 */
export function toneRatio(pcm, { hz = 440, rate = 48000 } = {}) {
  const n = rate / 10;
  const samples = new Int16Array(pcm.buffer, pcm.byteOffset, Math.floor(pcm.length / 2));
  const coeff = 2 * Math.cos((2 * Math.PI * hz) / rate);
  let tone = 0;
  let total = 0;
  let windows = 0;
  for (let start = 0; start + n <= samples.length; start += n) {
    let s1 = 0;
    let s2 = 0;
    let energy = 0;
    for (let i = 0; i < n; i++) {
      const x = samples[start + i] / 32768;
      energy += x * x;
      const s0 = x + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    if (energy / n < 1e-8) continue; // -80 dBFS: silence
    const power = s1 * s1 + s2 * s2 - coeff * s1 * s2; // |X(hz)|²
    tone += (2 * power) / (n * n); // the sine's mean square, A²/2
    total += energy / n;
    windows += 1;
  }
  return {
    ratio: total > 0 ? tone / total : 0,
    rmsDb: windows > 0 ? 10 * Math.log10(total / windows) : -Infinity,
    windows,
  };
}

/**
 * Decodes Opus frames (`audioFrames`: each frame's `primary`) with ffmpeg to 48 kHz mono PCM.
 * `decoded`: the 20 ms of audio the decoder put out, over the frames' total (so 1 when all
 * decode); `errors`: lines it logged at level error; `toneRatio` and `rmsDb` from `toneRatio`.
 * `invalidToc`: frames whose first byte is not a valid Opus TOC (or that are missing).
 */
export async function decodeOpus(frames, { toneHz = 440, keep = null } = {}) {
  const packets = frames.map((f) => f.primary).filter((p) => p && p.length > 0);
  const expectedSamples = packets.reduce((sum, p) => sum + (opusPacketSamples(p) || 960), 0);
  const result = {
    frames: frames.length,
    invalidToc: frames.length - packets.filter((p) => opusPacketSamples(p) > 0).length,
    unparsedRed: frames.unparsedRed || 0,
    decoded: 0,
    errors: 0,
    errorLines: [],
    toneRatio: 0,
    rmsDb: -Infinity,
  };
  if (packets.length === 0) return result;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-tap-opus-'));
  try {
    const file = path.join(dir, 'audio.opus');
    fs.writeFileSync(file, oggOpus(packets));
    if (keep) fs.copyFileSync(file, keep);
    const { stdout, stderr } = await runFfmpeg(['-v', 'error', '-c:a', 'opus', '-i', file, '-ac', '1', '-ar', '48000', '-f', 's16le', '-']);
    result.decoded = stdout.length / 2 / expectedSamples;
    result.errorLines = stderr.split('\n').filter((l) => l.trim());
    result.errors = result.errorLines.length;
    const tone = toneRatio(stdout, { hz: toneHz });
    result.toneRatio = tone.ratio;
    result.rmsDb = tone.rmsDb;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

/**
 * The VP8 frames that arrived between `since` and `until`, after those they need from the latest
 * keyframe before (a publisher sends keyframes only when asked): { frames, from (the index of the
 * first in the window), incomplete (frames skipped, in the whole stream) }.
 */
export function vp8Window(all, { since = -Infinity, until = Infinity } = {}) {
  const inWindow = all.map((f) => f.t_ms >= since && f.t_ms <= until);
  const firstIdx = inWindow.indexOf(true);
  if (firstIdx < 0) return { frames: [], from: 0, incomplete: 0 };
  const lastIdx = inWindow.lastIndexOf(true);
  let start = firstIdx;
  while (start > 0 && !all[start].keyframe) start -= 1;
  if (!all[start].keyframe) start = firstIdx;
  const frames = all.slice(start, lastIdx + 1);
  return { frames, from: firstIdx - start, incomplete: all.incomplete };
}

/**
 * Whether a tapped stream decodes as its kind says: VP8 for video, Opus for audio. `since` and
 * `until` (Unix ms, as the tap's `t_ms`) keep the frames that arrived in between.
 */
export async function decodeCheck(stream, { since = -Infinity, until = Infinity, toneHz = 440 } = {}) {
  const within = (f) => f.t_ms >= since && f.t_ms <= until;
  if (stream.kind === 'video') {
    const { frames, from, incomplete } = vp8Window(vp8Frames(stream.packets), { since, until });
    return { kind: 'video', incomplete, ...(await decodeVp8(frames, { from })) };
  }
  const all = audioFrames(stream.packets);
  const frames = all.filter(within);
  frames.unparsedRed = frames.filter((f) => f.red && !f.primary).length;
  return { kind: 'audio', ...(await decodeOpus(frames, { toneHz })) };
}

/**
 * The verdict on a check (`decodeCheck`, or `decodeVp8`/`decodeOpus` with `kind` added): does the
 * stream decode as VP8 or Opus as a clear call's does? Video: a keyframe to start from, at least
 * 90 % of the frames decoded, errors for at most 5 %. Audio: at least 95 % of the time decoded,
 * errors for at most 2 % of the frames, and the test tone at least half the decoded power (an
 * Opus decoder makes noise of most random bytes, silently). tap.test.mjs holds clear calls to it;
 * random bytes (`scrambleVp8`, `scrambleAudio`) fail it.
 */
export function decodes(c) {
  if (c.kind === 'video') return c.usable > 0 && c.decoded >= 0.9 * c.usable && c.errors <= 0.05 * c.usable;
  return c.frames > 0 && c.decoded >= 0.95 && c.errors <= 0.02 * c.frames && c.toneRatio >= 0.5;
}

/** A short line of a check's numbers, for a test's printout. */
export function describeCheck(c) {
  const n = (x, d = 2) => (x === null || x === undefined ? '-' : Number(x).toFixed(d));
  if (c.kind === 'video') {
    return `video: ${c.frames} frames (${c.incomplete ?? 0} incomplete skipped, ${c.context ?? 0} before as context), ${c.keyframes} keyframes, ${c.width}x${c.height}; ` +
      `ffmpeg decoded ${c.decoded} of ${c.usable}, ${c.errors} error lines; picture change ${n(c.pictureDiff, 1)}/255`;
  }
  return `audio: ${c.frames} frames (${c.unparsedRed} RED unparsed, ${c.invalidToc} invalid TOC); ffmpeg decoded ${n(100 * c.decoded, 0)}% ` +
    `of their time, ${c.errors} error lines; tone ratio ${n(c.toneRatio, 3)}, level ${n(c.rmsDb, 1)} dBFS`;
}

// ---------------------------------------------------------------------------------------------
// Scrambled copies: what an encrypting page would leave the SFU (the checker's own check)

/**
 * Copies of VP8 frames whose bytes after the clear prefix of docs/e2ee.md (10 bytes of a keyframe,
 * 3 of a delta frame) are random, 20 bytes longer (SFrame header and tag): what the SFU sees of an
 * encrypted call. The checker must not decode these.
 */
export function scrambleVp8(frames) {
  const out = frames.map((f) => {
    const prefix = f.keyframe ? 10 : 3;
    const data = Buffer.concat([f.data.subarray(0, prefix), crypto.randomBytes(Math.max(0, f.data.length - prefix) + 20)]);
    return { ...f, data };
  });
  out.incomplete = frames.incomplete;
  return out;
}

/** Copies of audio frames whose Opus frames are random bytes, 20 bytes longer. */
export function scrambleAudio(frames) {
  const out = frames.map((f) => {
    const primary = f.primary && crypto.randomBytes(f.primary.length + 20);
    return { ...f, raw: primary, red: false, primary };
  });
  out.unparsedRed = 0;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Test tone

/** A WAV file of a sine (48 kHz, mono, 16 bits), for Chromium's --use-file-for-fake-audio-capture. */
export async function makeToneWav(file, { hz = 440, seconds = 10, volume = 0.5 } = {}) {
  const { code, stderr } = await runFfmpeg(['-v', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=${hz}:sample_rate=48000:duration=${seconds}`,
    '-af', `volume=${volume}`, '-ac', '1', '-c:a', 'pcm_s16le', file]);
  if (code !== 0) throw new Error(`ffmpeg could not write ${file}: ${stderr}`);
  return file;
}

/**
 * A page init script (Playwright's `addInitScript`, harness.mjs `openPage({ initScripts })`): the
 * microphone without echo cancellation, noise suppression and gain control, which would take a
 * steady test tone for noise and lower it by 30 dB (still found, less surely).
 */
export function rawMicrophone() {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return;
  const original = md.getUserMedia.bind(md);
  md.getUserMedia = (constraints = {}) => {
    if (constraints.audio) {
      const audio = typeof constraints.audio === 'object' ? constraints.audio : {};
      constraints = { ...constraints, audio: { ...audio, echoCancellation: false, noiseSuppression: false, autoGainControl: false } };
    }
    return original(constraints);
  };
}

/** Whether `ffmpeg` runs here; a string saying why not, or null. */
export async function ffmpegUnavailable() {
  try {
    const { code, stderr } = await runFfmpeg(['-v', 'error', '-f', 'lavfi', '-i', 'anullsrc', '-t', '0.01', '-f', 'null', '-']);
    return code === 0 ? null : `ffmpeg fails (${FFMPEG}): ${stderr.split('\n')[0]}`;
  } catch (err) {
    return `ffmpeg does not run (${FFMPEG}): ${err.message}`;
  }
}

function runFfmpeg(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(FFMPEG, ['-nostdin', '-hide_banner', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    let stderr = '';
    proc.stdout.on('data', (d) => out.push(d));
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.on('error', reject);
    // Decode errors are counted by the callers, not failures: a run always resolves.
    proc.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}
