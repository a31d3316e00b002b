// End-to-end encrypted calls (docs/e2ee.md) in Chromium, through the real server with its SFU test
// tap (KLASS_SFU_TEST_TAP, debug builds only), which records every payload the SFU forwards.
//
// (e1) Three pages (one using Chromium's older `createEncodedStreams` instead of
//      `RTCRtpScriptTransform`) decode each other's video and hear each other's 440 Hz tone, all
//      say "end-to-end encrypted" with the same safety code; what the SFU forwarded does not
//      decode as VP8 nor as Opus (tap.mjs's checker, which tap.test.mjs holds to clear calls).
// (e2) The teacher removes a parent whose page is modified to keep every key it was given. The
//      others rotate their keys; what they send after the rotation (taken from the tap: the
//      removed page no longer receives it, an accomplice would have to give it) decrypts with
//      none of the kept keys, even ratcheted, while what they sent before does. The two who stay
//      go on seeing and hearing each other.
// (e3) A browser without encoded transforms: refused (`e2ee_required`) by a class that does not
//      allow it; admitted by one that does (set by its teacher through the settings endpoint),
//      and then every page says the call is not end-to-end encrypted and because of whom, media
//      flows in clear both ways, and the call is encrypted again once it has left.
//
// Firefox: firefox_e2ee.test.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  callState, launchBrowser, mintJwt, noEncodedTransforms, openPage, pages,
  seedClass, server, shutdown, sleep, startServer, waitForMediaEverywhere, waitForState,
} from './harness.mjs';
import {
  audioFrames, ffmpegUnavailable, makeToneWav, readTap, streamsOf, vp8Frames,
} from './tap.mjs';
import { MAX_RATCHET_AHEAD, decryptFrame, deriveSFrame, parseFrame, ratchet, splitKid } from '../../web/sframe.js';
import {
  assertMediaPlays, assertTapUnreadable, e2eeState, mediaCounters, waitFor,
} from './e2ee-checks.mjs';

const CLASS = 'browser-test-e2ee';
const CLASS_OPEN = 'browser-test-e2ee-open';
const TEACHER = { user: 'teacher-e2ee', name: 'Mme Rousseau', role: 'teacher' };
const PARENT_1 = { user: 'parent-e2ee-1', name: 'Nora Blanc', role: 'parent' };
const PARENT_2 = { user: 'parent-e2ee-2', name: 'Paul Girard', role: 'parent' };
const TEACHER_O = { user: 'teacher-e2ee-o', name: 'M. Fabre', role: 'teacher' };
const PARENT_O = { user: 'parent-e2ee-o', name: 'Sarah Mercier', role: 'parent' };
const PARENT_O2 = { user: 'parent-e2ee-o2', name: 'Yanis Caron', role: 'parent' };
const TONE_HZ = 440;

let tapDir = null;
let tmp = null;

/** Chromium's older encoded-streams API only, as before `RTCRtpScriptTransform` (Chromium < 141). */
function legacyEncodedStreamsOnly() {
  delete window.RTCRtpScriptTransform;
}

/**
 * A modified page: it keeps a copy of every media key the page hands its encryption worker
 * (what a removed participant would keep, whatever the page's code says).
 */
function keepEveryKey() {
  window.keptKeys = [];
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function keep(msg, transfer) {
    if (msg && (msg.type === 'receive-key' || msg.type === 'send-key')) {
      window.keptKeys.push({ type: msg.type, owner: msg.owner || null, kid: msg.kid, key: Array.from(msg.key) });
    }
    return post.call(this, msg, transfer);
  };
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-e2ee-'));
  tapDir = path.join(tmp, 'tap');
  fs.mkdirSync(tapDir);
  await startServer({ env: { KLASS_SFU_TEST_TAP: tapDir } });
  await seedClass(CLASS, 'CM2 A (test chiffrement)', [TEACHER, PARENT_1, PARENT_2]);
  await seedClass(CLASS_OPEN, 'CM2 B (test sans chiffrement)', [TEACHER_O, PARENT_O, PARENT_O2]);
  const wav = await makeToneWav(path.join(tmp, 'tone.wav'), { hz: TONE_HZ, seconds: 10 });
  await launchBrowser({ extraArgs: [`--use-file-for-fake-audio-capture=${wav}`] });
});

after(async () => {
  await shutdown();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('(e1) three Chromium pages in an encrypted call: media decodes in the pages, the same safety code, the SFU sees no VP8 or Opus', { timeout: 240_000 }, async (t) => {
  if (await ffmpegUnavailable()) return t.skip('ffmpeg with libvpx and libopus is needed to check the tap');
  const teacher = await openPage(CLASS, TEACHER, { camera: { width: 640, height: 480 } });
  await waitForState(teacher, 'admitted');
  const p1 = await openPage(CLASS, PARENT_1, { initScripts: [legacyEncodedStreamsOnly] });
  const p2 = await openPage(CLASS, PARENT_2, { initScripts: [keepEveryKey] });
  const all = [teacher, p1, p2];
  for (const e of all) await waitForState(e, 'admitted');
  const ids = await waitForMediaEverywhere(all, all, { timeoutMs: 60_000 });

  const states = await waitFor('the same safety code everywhere', async () => {
    const s = await Promise.all(all.map(e2eeState));
    return { ok: s.every((x) => x.encrypted && x.safetyCode && x.safetyCode === s[0].safetyCode), s };
  });
  const code = states.s[0].safetyCode;
  t.diagnostic(`safety code ${code}; worker stats ${states.s.map((s) => JSON.stringify(s.stats)).join(' | ')}`);
  for (const s of states.s) {
    assert.equal(s.supported, true);
    assert.match(s.shown, new RegExp(code), 'the page shows the code');
    assert.match(s.shown, /chiffrée de bout en bout/i);
  }

  // Media plays: frames decoded and the tone heard, not concealment.
  const since = Date.now();
  for (const line of await assertMediaPlays(all, ids)) t.diagnostic(line);
  const tapUntil = Date.now();
  for (const r of all) {
    const { stats: w } = await e2eeState(r);
    assert.ok(w.encrypted > 100 && w.decrypted > 100, `${r.user} worker: ${JSON.stringify(w)}`);
    assert.equal(w.sentClear, 0, `${r.user} sent nothing in clear`);
  }

  // What the SFU forwarded: no VP8, no Opus.
  const streams = readTap(tapDir);
  assert.equal(streams.dropped, 0, 'the tap recorded everything');
  await assertTapUnreadable(t, streams, all, ids, { since, until: tapUntil, toneHz: () => TONE_HZ });
});

/** Tries every kept key (ratcheted forward as a receiver may) on each frame; counts successes. */
async function decryptWithKept(frames, kind, kept) {
  const bases = new Map(); // keyId -> [{step, key}]
  for (const k of kept) {
    const { keyId, step } = splitKid(k.kid);
    if (!bases.has(keyId)) bases.set(keyId, []);
    bases.get(keyId).push({ step, key: Uint8Array.from(k.key) });
  }
  const contexts = new Map();
  let ok = 0;
  let knownKeyId = 0;
  for (const f of frames) {
    const data = new Uint8Array(f.data);
    const parsed = parseFrame(kind, data);
    if (!parsed) continue;
    const { keyId, step } = splitKid(parsed.header.kid);
    const candidates = bases.get(keyId) || [];
    if (candidates.length) knownKeyId += 1;
    for (const base of candidates) {
      if (step < base.step || step > base.step + MAX_RATCHET_AHEAD) continue;
      const id = `${parsed.header.kid}/${base.step}/${base.key.join(',')}`;
      if (!contexts.has(id)) {
        let key = base.key;
        for (let s = base.step; s < step; s++) key = await ratchet(key);
        contexts.set(id, await deriveSFrame(key, parsed.header.kid));
      }
      try {
        await decryptFrame(contexts.get(id), kind, data, parsed);
        ok += 1;
        break;
      } catch {
        // next candidate
      }
    }
  }
  return { frames: frames.length, ok, knownKeyId };
}

function framesOf(stream, since, until) {
  const frames = stream.kind === 'video' ? vp8Frames(stream.packets) : audioFrames(stream.packets).map((f) => ({ ...f, data: f.primary || f.raw }));
  return frames.filter((f) => f.t_ms >= since && f.t_ms <= until);
}

test('(e2) a removed participant that keeps its keys cannot decrypt what is sent after the rotation', { timeout: 180_000 }, async () => {
  const [teacher, p1, p2] = [pages[TEACHER.user], pages[PARENT_1.user], pages[PARENT_2.user]];
  assert.ok(teacher && p1 && p2, '(e1) left the three pages in the call');
  const ids = {};
  for (const e of [teacher, p1, p2]) ids[e.user] = (await callState(e)).participantId;
  const before = await Promise.all([teacher, p1].map(e2eeState));
  const beforeUntil = Date.now();
  const beforeSince = beforeUntil - 4000;

  await teacher.page.evaluate((target) => window.klassCall.send({ type: 'remove', target }), ids[p2.user]);
  const removedAt = Date.now();
  await waitForState(p2, 'left');
  const kept = await p2.page.evaluate(() => window.keptKeys);
  const keptFromOthers = kept.filter((k) => k.type === 'receive-key');
  assert.ok(keptFromOthers.some((k) => k.owner === ids[teacher.user]) && keptFromOthers.some((k) => k.owner === ids[p1.user]),
    `the removed page kept the others' keys: ${JSON.stringify(kept.map((k) => [k.type, k.owner, k.kid]))}`);

  // Both who stay rotate: a new key id, used once the second after has passed.
  const rotated = await waitFor('the rotation', async () => {
    const s = await Promise.all([teacher, p1].map(e2eeState));
    const changed = s.map((x, i) => splitKid(x.stats.kid).keyId !== splitKid(before[i].stats.kid).keyId);
    return { ok: changed.every(Boolean) && s.every((x) => x.rotations >= 1), s: s.map((x) => x.stats) };
  });
  const rotatedAt = Date.now();
  await sleep(5000);
  const afterUntil = Date.now();
  const afterSince = rotatedAt + 500;
  t_log(`removed at +0, rotation seen after ${rotatedAt - removedAt} ms; kept ${kept.length} keys; ${JSON.stringify(rotated.s)}`);

  const streams = readTap(tapDir);
  let beforeOk = 0;
  for (const p of [teacher, p1]) {
    const after = { audio: 0, video: 0 };
    for (const s of streamsOf(streams, ids[p.user])) {
      const pre = await decryptWithKept(framesOf(s, beforeSince, beforeUntil), s.kind, kept);
      const post = await decryptWithKept(framesOf(s, afterSince, afterUntil), s.kind, kept);
      t_log(`${p.user} ${s.kind} ${s.rid ?? ''}: before removal ${pre.ok}/${pre.frames} decrypt with the kept keys; after the rotation ${post.ok}/${post.frames} (${post.knownKeyId} under a kept key id)`);
      beforeOk += pre.ok;
      after[s.kind] += post.frames;
      assert.equal(post.ok, 0, `${p.user}'s ${s.kind} after the rotation decrypts with a kept key`);
      assert.equal(post.knownKeyId, 0, `${p.user}'s ${s.kind} after the rotation uses a key id the removed page knew`);
    }
    assert.ok(after.audio > 50 && after.video > 20, `frames of ${p.user} after the rotation: ${JSON.stringify(after)}`);
  }
  assert.ok(beforeOk > 50, `the kept keys did decrypt what was sent before the removal (${beforeOk} frames): the check can succeed`);

  // The two who stay still see and hear each other, with the new keys.
  const ids2 = await waitForMediaEverywhere([teacher, p1], [teacher, p1], { timeoutMs: 30_000 });
  for (const line of await assertMediaPlays([teacher, p1], ids2, 4000)) console.log(`after the rotation: ${line}`);
  const codes = await Promise.all([teacher, p1].map(e2eeState));
  assert.equal(codes[0].safetyCode, codes[1].safetyCode, 'a new common safety code');
});

function t_log(line) {
  console.log(line);
}

test('(e3) a browser that cannot encrypt: refused by default; where the teacher allows it, everyone is told', { timeout: 180_000 }, async () => {
  for (const e of Object.values(pages)) await e.page.close().catch(() => {});
  // Refused in a class that requires encryption.
  const refused = await openPage(CLASS, PARENT_1, { initScripts: [noEncodedTransforms] });
  const r = await waitForState(refused, 'refused');
  assert.equal(r.errorCode, 'e2ee_required');
  assert.match(await refused.page.locator('#status').innerText(), /ne sait pas chiffrer/);
  await refused.page.close();

  // The teacher allows such browsers in the class settings.
  const res = await fetch(`${server.base}/v1/classes/${CLASS_OPEN}/visio/settings`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${mintJwt(TEACHER_O.user)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ allow_unencrypted: true }),
  });
  assert.equal(res.status, 200, await res.text());

  const teacher = await openPage(CLASS_OPEN, TEACHER_O);
  await waitForState(teacher, 'admitted');
  const parent = await openPage(CLASS_OPEN, PARENT_O);
  const plain = await openPage(CLASS_OPEN, PARENT_O2, { initScripts: [noEncodedTransforms] });
  const all = [teacher, parent, plain];
  for (const e of all) await waitForState(e, 'admitted');
  const ids = await waitForMediaEverywhere(all, all, { timeoutMs: 60_000 });
  const states = await waitFor('everyone says who cannot encrypt', async () => {
    const s = await Promise.all(all.map(e2eeState));
    return { ok: s.every((x) => !x.encrypted && x.unencryptedBy.length === 1 && x.shown), s };
  });
  for (const [i, s] of states.s.entries()) {
    assert.deepEqual(s.unencryptedBy, [ids[PARENT_O2.user]]);
    assert.equal(s.safetyCode, null);
    assert.match(s.shown, i === 2 ? /votre navigateur ne sait pas chiffrer/ : new RegExp(`pas chiffrée de bout en bout.*${PARENT_O2.name}`));
  }
  // In clear both ways: the page that cannot decrypt decodes the others.
  const levels = await mediaCounters(plain);
  for (const p of [teacher, parent]) {
    const a = levels[ids[p.user]];
    assert.ok(a && a.samples > 0 && a.concealed / a.samples < 0.3, `${PARENT_O2.user} hears ${p.user}: ${JSON.stringify(a)}`);
  }

  // Once it leaves, the call is encrypted again, with a safety code.
  await plain.page.evaluate(() => window.klassCall.send({ type: 'leave' }));
  await waitFor('encrypted again', async () => {
    const s = await Promise.all([teacher, parent].map(e2eeState));
    return { ok: s.every((x) => x.encrypted && x.safetyCode) && s[0].safetyCode === s[1].safetyCode, s };
  });
});
