// What the end-to-end encryption tests read of a page (Chromium through Playwright, Firefox through
// firefox.mjs: both have `page.evaluate`): e2ee.test.mjs and firefox_e2ee.test.mjs.

import assert from 'node:assert/strict';

import { logTail, sleep } from './harness.mjs';
import { audioFrames, decodeCheck, decodeOpus, decodes, describeCheck, streamsOf } from './tap.mjs';

/** `window.klassCall.e2ee` of `entry.page`, its worker's counters and what the page shows. */
export async function e2eeState(entry) {
  return entry.page.evaluate(async () => {
    const e = window.klassCall.e2ee;
    return {
      supported: e.supported,
      encrypted: e.encrypted,
      safetyCode: e.safetyCode,
      unencryptedBy: e.unencryptedBy,
      keysReceived: e.keysReceived,
      keysRejected: e.keysRejected,
      rotations: e.rotations,
      stats: await e.stats(),
      shown: document.getElementById('security').hidden ? null : document.getElementById('security').innerText,
    };
  });
}

export async function waitFor(what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last.ok) return last;
    await sleep(250);
  }
  throw new Error(`${what}: ${JSON.stringify(last)}\nserver log:\n${logTail(30)}`);
}

/**
 * Per publisher (by the slot it is in), what a page decoded: video frames, and audio samples,
 * concealed samples (what the decoder made up for frames that never came or did not decrypt)
 * and energy. Chromium and Firefox alike (Firefox's inbound-rtp may lack `mid`).
 */
export async function mediaCounters(entry) {
  return entry.page.evaluate(async () => {
    const c = window.klassCall;
    const midOfTrack = {};
    for (const t of c.pc.getTransceivers()) if (t.mid !== null) midOfTrack[t.receiver.track.id] = t.mid;
    const out = {};
    (await c.pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const slot = c.slots[s.mid !== undefined ? s.mid : midOfTrack[s.trackIdentifier]];
      if (!slot || !slot.participant_id) return;
      const p = (out[slot.participant_id] ||= { videoFrames: 0, samples: 0, concealed: 0, energy: 0 });
      if ((s.kind || s.mediaType) === 'video') p.videoFrames += s.framesDecoded || 0;
      else {
        p.samples += s.totalSamplesReceived || 0;
        p.concealed += s.concealedSamples || 0;
        p.energy += s.totalAudioEnergy || 0;
      }
    });
    return out;
  });
}

/**
 * Over `ms`, every page decodes video from every other and hears it: audio samples that are not
 * concealment (frames that did not decrypt are dropped, and concealed). Returns the figures.
 */
export async function assertMediaPlays(entries, ids, ms = 6000) {
  const before = await Promise.all(entries.map(mediaCounters));
  await sleep(ms);
  const after = await Promise.all(entries.map(mediaCounters));
  const lines = [];
  const zero = { videoFrames: 0, samples: 0, concealed: 0, energy: 0 };
  entries.forEach((r, i) => {
    for (const p of entries) {
      if (p === r) continue;
      const pid = ids[p.user];
      const [b, a] = [before[i][pid] || zero, after[i][pid] || zero];
      const d = {
        frames: a.videoFrames - b.videoFrames, samples: a.samples - b.samples,
        concealed: a.concealed - b.concealed, energy: a.energy - b.energy,
      };
      lines.push(`${r.user} <- ${p.user}: ${JSON.stringify(d)}`);
      assert.ok(d.frames > ms / 1000 * 5, `${r.user} decodes ${p.user}'s video: ${JSON.stringify(d)}`);
      assert.ok(d.samples > (ms / 1000) * 24_000, `${r.user} receives ${p.user}'s audio: ${JSON.stringify(d)}`);
      assert.ok(d.concealed / d.samples < 0.2, `${r.user} decodes ${p.user}'s audio, not concealment: ${JSON.stringify(d)}`);
      assert.ok(d.energy > 1e-5, `${r.user} hears ${p.user}: ${JSON.stringify(d)}`);
    }
  });
  return lines;
}

/**
 * What the SFU forwarded of each of `entries` between `since` and `until` (the tap): video that
 * does not decode as VP8 (after a keyframe) and audio that does not decode as Opus into the
 * publisher's test tone (`toneHz(entry)`), neither RED's primary nor the whole payload.
 */
export async function assertTapUnreadable(t, streams, entries, ids, { since, until, toneHz }) {
  for (const p of entries) {
    const mine = streamsOf(streams, ids[p.user]);
    assert.ok(mine.some((s) => s.kind === 'video') && mine.some((s) => s.kind === 'audio'), `tap has ${p.user}'s media`);
    let judged = 0;
    for (const s of mine) {
      const c = await decodeCheck(s, { since, until, toneHz: toneHz(p) });
      t.diagnostic(`${p.user} ${s.kind} ${s.rid ?? ''}: ${describeCheck(c)}`);
      assert.equal(decodes(c), false, `${p.user}'s ${s.kind} decodes at the SFU: ${describeCheck(c)}`);
      if (s.kind === 'video') {
        if (c.usable > 20) judged += 1;
        // libvpx conceals some garbage into pictures (that jump about): errors say what it is.
        assert.ok(c.decoded < 0.5 * c.usable || c.errors >= 0.5 * c.usable, `${p.user}'s video at the SFU fails to decode: ${describeCheck(c)}`);
      } else {
        assert.ok(c.frames > 100 && c.toneRatio < 0.05, `no tone in ${p.user}'s audio at the SFU: ${describeCheck(c)}`);
        // RED's block headers are encrypted too (Chromium adds RED before the transform): the
        // whole payload, taken as one Opus packet, does not decode into the tone either.
        const frames = audioFrames(s.packets).filter((f) => f.t_ms >= since && f.t_ms <= until).map((f) => ({ ...f, primary: f.raw }));
        const raw = { kind: 'audio', ...(await decodeOpus(frames, { toneHz: toneHz(p) })) };
        t.diagnostic(`${p.user} audio, whole payloads as Opus: ${describeCheck(raw)}`);
        assert.equal(decodes(raw), false);
        assert.ok(raw.toneRatio < 0.05, `no tone in ${p.user}'s whole audio payloads: ${describeCheck(raw)}`);
      }
    }
    assert.ok(judged > 0, `a layer of ${p.user}'s video had enough frames after a keyframe to judge`);
  }
}
