// End-to-end encryption between Firefox and Chromium (docs/e2ee.md): a Firefox ESR page (WebDriver
// BiDi, firefox.mjs, in a network namespace of its own) and two Chromium pages in one encrypted
// call. Each decodes the others' video and hears them (decoded audio, not concealment), all three
// show the same safety code, and what the SFU forwarded of each (its test tap) decodes neither as
// VP8 nor as Opus. Firefox runs `RTCRtpScriptTransform`; one Chromium page the same API, the other
// Chromium's older encoded streams.
//
// Needs root, iproute2, iptables, `netimpair` (netns.mjs), `firefox-esr` and ffmpeg with libvpx
// and libopus; skipped otherwise.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  launchBrowser, logTail, mintJwt, openPage, seedClass, server, shutdown, startServer, waitForState,
} from './harness.mjs';
import { enterCall, firefoxUnavailable, launchFirefox } from './firefox.mjs';
import { createLab, netnsUnavailable } from './netns.mjs';
import { ffmpegUnavailable, makeToneWav, readTap } from './tap.mjs';
import { assertMediaPlays, assertTapUnreadable, e2eeState, waitFor } from './e2ee-checks.mjs';

const CLASS = 'browser-test-ff-e2ee';
const TEACHER = { user: 'teacher-ffe', name: 'Mme Perrin', role: 'teacher' };
const PARENT = { user: 'parent-ffe', name: 'Lina Robert', role: 'parent' };
const PARENT_FF = { user: 'parent-ffe-firefox', name: 'Tom Morel', role: 'parent' };
/** Chromium's fake microphone plays this WAV; Firefox's fake one is a 1 kHz tone. */
const CHROMIUM_TONE_HZ = 440;
const FIREFOX_TONE_HZ = 1000;

const unavailable = netnsUnavailable() || firefoxUnavailable();

if (unavailable) {
  test('(fe) Firefox and Chromium in an encrypted call', { skip: `skipped: ${unavailable}` }, () => {});
} else {
  let lab = null;
  let firefox = null;
  let tmp = null;
  let tapDir = null;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-ff-e2ee-'));
    tapDir = path.join(tmp, 'tap');
    fs.mkdirSync(tapDir);
    lab = createLab();
    await startServer({ sfuIp: lab.hubIp, env: { KLASS_SFU_TEST_TAP: tapDir } });
    await seedClass(CLASS, 'CM1 (test chiffrement Firefox)', [TEACHER, PARENT, PARENT_FF]);
    const wav = await makeToneWav(path.join(tmp, 'tone.wav'), { hz: CHROMIUM_TONE_HZ, seconds: 10 });
    await launchBrowser({ extraArgs: [`--use-file-for-fake-audio-capture=${wav}`] });
  });

  after(async () => {
    if (firefox) await firefox.close();
    await shutdown();
    if (lab) await lab.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('(fe) a Firefox page and two Chromium pages in an encrypted call: media plays, one safety code, the SFU reads nothing', { timeout: 180_000 }, async (t) => {
    if (await ffmpegUnavailable()) return t.skip('ffmpeg with libvpx and libopus is needed to check the tap');
    const teacher = await openPage(CLASS, TEACHER, { camera: { width: 640, height: 480 } });
    await waitForState(teacher, 'admitted');
    const parent = await openPage(CLASS, PARENT, { initScripts: [() => { delete window.RTCRtpScriptTransform; }] });
    await waitForState(parent, 'admitted');

    firefox = await launchFirefox({ client: lab.addClient('ffe'), lab, serverPort: server.httpPort });
    const ffPage = await firefox.open(`${firefox.base}/call/${CLASS}#token=${mintJwt(PARENT_FF.user)}`);
    await enterCall(ffPage);
    await ffPage.waitForFunction(() => {
      const c = window.klassCall;
      return c && ['admitted', 'refused', 'left'].includes(c.state) && c.state;
    }, null, { timeout: 30_000 });
    const ff = { user: PARENT_FF.user, page: ffPage };
    const ffState = await ffPage.evaluate(() => ({ state: window.klassCall.state, error: window.klassCall.errorCode, log: window.klassCall.log.slice(-20) }));
    assert.equal(ffState.state, 'admitted', `Firefox's page: ${JSON.stringify(ffState)}\n${logTail(30)}`);

    const all = [teacher, parent, ff];
    const ids = {};
    for (const e of all) ids[e.user] = await e.page.evaluate(() => window.klassCall.participantId);

    const states = await waitFor('one safety code on the three pages', async () => {
      const s = await Promise.all(all.map(e2eeState));
      return { ok: s.every((x) => x.encrypted && x.safetyCode && x.safetyCode === s[0].safetyCode), s };
    }, 40_000);
    t.diagnostic(`safety code ${states.s[0].safetyCode}`);
    assert.match(states.s[2].shown, new RegExp(states.s[0].safetyCode), 'Firefox shows the code');

    // Firefox's first frames need a keyframe after the keys came: wait for pictures everywhere.
    await waitFor('pictures everywhere', async () => {
      const tiles = await Promise.all(all.map((e) => e.page.evaluate((others) => others.every((pid) => {
        const tile = [...document.querySelectorAll('.tile:not([data-slot-kind="self"])')].find((x) => x.dataset.participantId === pid);
        return tile && tile.querySelector('video') && tile.querySelector('video').videoWidth > 0;
      }), Object.values(ids).filter((pid) => pid !== ids[e.user]))));
      return { ok: tiles.every(Boolean), tiles };
    }, 60_000);

    const since = Date.now();
    for (const line of await assertMediaPlays(all, ids)) t.diagnostic(line);
    const until = Date.now();
    for (const e of all) {
      const { stats } = await e2eeState(e);
      t.diagnostic(`${e.user} worker: ${JSON.stringify(stats)}`);
      assert.ok(stats.encrypted > 100 && stats.decrypted > 100 && stats.sentClear === 0, `${e.user}: ${JSON.stringify(stats)}`);
    }

    const streams = readTap(tapDir);
    assert.equal(streams.dropped, 0, 'the tap recorded everything');
    await assertTapUnreadable(t, streams, all, ids, {
      since, until, toneHz: (e) => (e === ff ? FIREFOX_TONE_HZ : CHROMIUM_TONE_HZ),
    });
  });
}
