// The SFU's test tap and its checker (tap.mjs), on clear calls: the control for the end-to-end
// encryption test, which asserts the opposite.
//
// (t1) The checker alone, no server: a VP8 clip and an Opus tone made by ffmpeg's encoders, cut
//      into RTP packets as a browser does (VP8 payload descriptors, RED around Opus), come back
//      out of tap.mjs and decode (the tone is found); scrambled copies (random bytes after the
//      clear prefix of docs/e2ee.md) do not.
// (t2) Two Chromium pages in one call, through a server started with KLASS_SFU_TEST_TAP; the
//      class allows unencrypted calls and the pages have no encoded transforms, so they send in
//      clear. Their fake microphone plays a 440 Hz tone (a WAV made with ffmpeg). What the SFU
//      forwarded decodes: VP8 frames with few errors, Opus with the tone in it; and the same
//      frames scrambled do not.
//
// Needs ffmpeg with libvpx and libopus, and a debug build of `signaling` (the tap is compiled
// into debug builds only; a release build writes nothing and (t2) says so).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  launchBrowser,
  logTail,
  noEncodedTransforms,
  openPage,
  seedClass,
  shutdown,
  sleep,
  startServer,
  waitForMediaEverywhere,
  waitForState,
} from './harness.mjs';
import {
  FFMPEG,
  audioFrames,
  decodeCheck,
  decodeOpus,
  decodeVp8,
  decodes,
  describeCheck,
  describeStreams,
  ffmpegUnavailable,
  makeToneWav,
  rawMicrophone,
  readTap,
  scrambleAudio,
  scrambleVp8,
  streamsOf,
  vp8Frames,
  vp8Window,
} from './tap.mjs';

const CLASS = 'browser-test-tap';
const TEACHER = { user: 'teacher-tap', name: 'Mme Garnier', role: 'teacher' };
const PARENT = { user: 'parent-tap', name: 'Léo Fontaine', role: 'parent' };
const TONE_HZ = 440;
/** How long the call runs with the tap recording. */
const CALL_S = Number(process.env.TAP_CALL_S || 10);

const unavailable = await ffmpegUnavailable();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-tap-test-'));

after(async () => {
  await shutdown();
  if (process.env.KLASS_KEEP_LOG !== '1') fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// (t1) synthetic packets

/** The frames of an IVF file. */
function readIvf(buf) {
  const headerLen = buf.readUInt16LE(6);
  const frames = [];
  for (let o = headerLen; o + 12 <= buf.length;) {
    const len = buf.readUInt32LE(o);
    frames.push(buf.subarray(o + 12, o + 12 + len));
    o += 12 + len;
  }
  return frames;
}

/** The packets of an Ogg file's one logical stream, headers included. */
function readOgg(buf) {
  const packets = [];
  let pending = [];
  for (let o = 0; o + 27 <= buf.length;) {
    assert.equal(buf.toString('latin1', o, o + 4), 'OggS');
    const nSegments = buf[o + 26];
    const lacing = buf.subarray(o + 27, o + 27 + nSegments);
    let p = o + 27 + nSegments;
    for (const len of lacing) {
      pending.push(buf.subarray(p, p + len));
      p += len;
      if (len < 255) {
        packets.push(Buffer.concat(pending));
        pending = [];
      }
    }
    o = p;
  }
  return packets;
}

/**
 * Tap records of VP8 frames cut as a browser does: a descriptor with a 15-bit PictureID, S on the
 * first packet of a frame, the marker on its last, at most `mtu` bytes of frame per packet.
 */
function packetizeVp8(frames, { ssrc = 1111, mtu = 1000, t0 = 1_000_000 } = {}) {
  const packets = [];
  let seq = 5000;
  frames.forEach((frame, i) => {
    for (let o = 0; o < frame.length; o += mtu) {
      const descriptor = Buffer.from([0x80 | (o === 0 ? 0x10 : 0), 0x80, 0x80 | ((i >> 8) & 0x7f), i & 0xff]);
      packets.push({
        participant: 'p', track: 'p-v', kind: 'video', rid: null, ssrc, pt: 96, seq: seq++, ts: i * 6000,
        marker: o + mtu >= frame.length, red: false, t_ms: t0 + i * 66, payload: Buffer.concat([descriptor, frame.subarray(o, o + mtu)]),
      });
    }
  });
  return packets;
}

/** Tap records of Opus packets, in RED (the previous packet as redundancy) as Chromium sends them. */
function packetizeOpusRed(opus, { ssrc = 2222, t0 = 1_000_000 } = {}) {
  return opus.map((frame, i) => {
    const prev = i > 0 ? opus[i - 1] : null;
    const payload = prev
      ? Buffer.concat([Buffer.from([0x80 | 111, (960 >> 6) & 0xff, ((960 & 0x3f) << 2) | (prev.length >> 8), prev.length & 0xff, 111]), prev, frame])
      : Buffer.concat([Buffer.from([111]), frame]);
    return { participant: 'p', track: 'p-a', kind: 'audio', rid: null, ssrc, pt: 63, seq: 100 + i, ts: i * 960, marker: false, red: true, t_ms: t0 + i * 20, payload };
  });
}

test('(t1) the checker: VP8 and Opus cut into RTP decode, and the tone is found; scrambled copies do not', { skip: unavailable || false, timeout: 60_000 }, async () => {
  const ivfFile = path.join(tmp, 'clip.ivf');
  const opusFile = path.join(tmp, 'tone.opus');
  execFileSync(FFMPEG, ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=15:duration=4', '-c:v', 'libvpx', '-b:v', '300k', '-g', '30', ivfFile]);
  execFileSync(FFMPEG, ['-v', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=${TONE_HZ}:sample_rate=48000:duration=4`, '-c:a', 'libopus', '-b:a', '32k', opusFile]);
  const encoded = readIvf(fs.readFileSync(ivfFile));
  const opus = readOgg(fs.readFileSync(opusFile)).slice(2); // OpusHead, OpusTags

  // Shuffled arrival, a duplicate, and one frame with a packet lost.
  const packets = packetizeVp8(encoded);
  packets.push({ ...packets[10] });
  [packets[3], packets[4]] = [packets[4], packets[3]];
  const lost = packets.findIndex((p, i) => i > 20 && (p.payload[0] & 0x10) === 0); // not a frame's first
  const lostFrameTs = packets[lost].ts;
  const withLoss = packets.filter((p, i) => i !== lost);
  const frames = vp8Frames(withLoss);
  assert.equal(frames.incomplete, 1, 'the frame with a lost packet is skipped');
  assert.equal(frames.length, encoded.length - 1);
  assert.ok(!frames.some((f) => f.ts === lostFrameTs));
  assert.equal(frames[0].keyframe, true);
  assert.equal(`${frames[0].width}x${frames[0].height}`, '320x240');
  const whole = vp8Frames(packets);
  assert.ok(whole.every((f, i) => f.data.equals(encoded[i])), 'frames come back byte for byte');

  const video = await decodeVp8(whole);
  const scrambledVideo = await decodeVp8(scrambleVp8(whole));
  console.log(`(t1) clear   ${describeCheck({ kind: 'video', ...video })}`);
  console.log(`(t1) scrambled ${describeCheck({ kind: 'video', ...scrambledVideo })}`);
  assert.equal(video.decoded, encoded.length);
  assert.equal(video.errors, 0, video.errorLines.join('\n'));
  assert.ok(decodes({ kind: 'video', ...video }));
  assert.ok(!decodes({ kind: 'video', ...scrambledVideo }), `scrambled VP8 decodes: ${JSON.stringify({ ...scrambledVideo, errorLines: scrambledVideo.errorLines.slice(0, 5) })}`);

  const audio = audioFrames(packetizeOpusRed(opus));
  assert.equal(audio.unparsedRed, 0);
  assert.ok(audio.every((f, i) => f.primary.equals(opus[i])), 'RED primaries are the Opus frames');
  const clear = await decodeOpus(audio, { toneHz: TONE_HZ });
  const scrambled = await decodeOpus(scrambleAudio(audio), { toneHz: TONE_HZ });
  console.log(`(t1) clear   ${describeCheck({ kind: 'audio', ...clear })}`);
  console.log(`(t1) scrambled ${describeCheck({ kind: 'audio', ...scrambled })}`);
  assert.ok(clear.decoded > 0.95, `clear Opus decoded ${clear.decoded}`);
  assert.equal(clear.errors, 0, clear.errorLines.join('\n'));
  assert.ok(clear.toneRatio > 0.8, `tone ratio of the clear tone: ${clear.toneRatio}`);
  assert.ok(decodes({ kind: 'audio', ...clear }));
  assert.ok(scrambled.toneRatio < 0.05, `tone ratio of scrambled Opus: ${scrambled.toneRatio}`);
  assert.ok(!decodes({ kind: 'audio', ...scrambled }));
});

// ---------------------------------------------------------------------------------------------
// (t2) a real call

test('(t2) a clear call: what the SFU forwards decodes as VP8 and as Opus with the tone', { skip: unavailable || false, timeout: 120_000 }, async () => {
  const tapDir = path.join(tmp, 'tap');
  const wav = await makeToneWav(path.join(tmp, 'tone.wav'), { hz: TONE_HZ, seconds: 10 });
  await startServer({ env: { KLASS_SFU_TEST_TAP: tapDir } });
  await seedClass(CLASS, 'CE1 (test du tap)', [TEACHER, PARENT], { options: { visio_allow_unencrypted: true } });
  await launchBrowser({ extraArgs: [`--use-file-for-fake-audio-capture=${wav}`] });

  const options = { initScripts: [noEncodedTransforms, rawMicrophone] };
  const teacher = await openPage(CLASS, TEACHER, options);
  await waitForState(teacher, 'admitted');
  const parent = await openPage(CLASS, PARENT, options);
  await waitForState(parent, 'admitted');
  const everyone = [teacher, parent];
  const ids = await waitForMediaEverywhere(everyone, everyone, { timeoutMs: 60_000 });
  const e2ee = await Promise.all(everyone.map((e) => e.page.evaluate(() => window.klassCall.e2ee || null)));
  for (const [i, e] of everyone.entries()) {
    assert.ok(!e2ee[i] || !e2ee[i].supported, `${e.user}'s page can still encrypt: ${JSON.stringify(e2ee[i])}`);
  }

  // Frames from now on: the call is established, its first keyframes are behind.
  const since = Date.now();
  await sleep(CALL_S * 1000);
  const until = Date.now();
  const streams = readTap(tapDir);
  console.log(`(t2) tap streams:\n${describeStreams(streams)}`);
  assert.ok(streams.length > 0, `the tap wrote nothing in ${tapDir}: is ${process.env.SIGNALING_BIN || 'the server'} a debug build?\n${logTail(20)}`);
  assert.equal(streams.dropped, 0, 'the tap dropped records');

  for (const e of everyone) {
    const pid = ids[e.user];
    const mine = streamsOf(streams, pid);
    const video = mine.filter((s) => s.kind === 'video');
    const audio = mine.filter((s) => s.kind === 'audio');
    assert.ok(video.length > 0 && audio.length > 0, `${e.user}: the tap has ${mine.map((s) => s.kind)}`);
    for (const s of video) {
      const c = await decodeCheck(s, { since, until });
      console.log(`(t2) ${e.user} rid ${s.rid}: ${describeCheck(c)}`);
      // The fake camera's 15 fps over CALL_S seconds, give or take.
      assert.ok(c.frames >= CALL_S * 10, `${e.user}: ${c.frames} VP8 frames forwarded in ${CALL_S} s`);
      assert.equal(c.usable, c.frames, `${e.user}: no keyframe before or in the window`);
      assert.ok(decodes(c), `${e.user}: the forwarded VP8 does not decode: ${c.errorLines.slice(0, 5).join(' | ')}`);
      const window = vp8Window(vp8Frames(s.packets), { since, until });
      const scrambled = { kind: 'video', ...(await decodeVp8(scrambleVp8(window.frames), { from: window.from })) };
      console.log(`(t2) ${e.user} rid ${s.rid}, scrambled: ${describeCheck(scrambled)}`);
      assert.ok(!decodes(scrambled), `${e.user}: scrambled VP8 decodes`);
    }
    for (const s of audio) {
      const c = await decodeCheck(s, { since, until, toneHz: TONE_HZ });
      console.log(`(t2) ${e.user}: ${describeCheck(c)}`);
      assert.ok(c.frames >= CALL_S * 40, `${e.user}: ${c.frames} audio frames forwarded in ${CALL_S} s`);
      assert.ok(decodes(c), `${e.user}: the forwarded Opus does not decode with the tone: ${c.errorLines.slice(0, 5).join(' | ')}`);
      const frames = audioFrames(s.packets).filter((f) => f.t_ms >= since && f.t_ms <= until);
      const scrambled = { kind: 'audio', ...(await decodeOpus(scrambleAudio(frames), { toneHz: TONE_HZ })) };
      console.log(`(t2) ${e.user}, scrambled: ${describeCheck(scrambled)}`);
      assert.ok(!decodes(scrambled), `${e.user}: scrambled Opus passes as the tone`);
      assert.ok(scrambled.toneRatio < 0.1, `${e.user}: scrambled Opus still has the tone (${scrambled.toneRatio})`);
    }
  }
});
