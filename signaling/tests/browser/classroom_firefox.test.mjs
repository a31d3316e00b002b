// The classroom path in Firefox: the demo school's home page → the teacher's call link (a Firefox
// tab) → the pre-join screen → in the (end-to-end encrypted) call with a parent in another Firefox
// tab, reached the same way, and a parent in Chromium → the teacher mutes everyone → the Firefox
// parent raises a hand → the teacher sees the queue and gives the floor → that parent's
// microphone turns on, the teacher receives its audio, and the hand is gone on every page.
// axe-core runs in Firefox on the pre-join screen and in the call. Firefox ESR runs over
// WebDriver BiDi in a network namespace (firefox.mjs), Chromium in the root namespace; the SFU
// binds the lab's hub address.
//
// Needs root, iproute2, iptables, `netimpair` (netns.mjs) and `firefox-esr`; skipped otherwise.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  enterCall as enterCallChromium, launchBrowser, logTail, openFromHome, server, shutdown, sleep,
  startServer, waitForState,
} from './harness.mjs';
import { enterCall, firefoxUnavailable, launchFirefox } from './firefox.mjs';
import { createLab, netnsUnavailable } from './netns.mjs';
import { runAxe, seriousViolations } from './axe.mjs';

const TEACHER = 'teacher-standard';
const PARENT_FF = 'parent-standard-1';
const PARENT_CR = 'parent-standard-2';

const unavailable = netnsUnavailable() || firefoxUnavailable();

/** Audio packets a page received from `pid` (getStats inbound-rtp, by slot). Runs in Firefox. */
const audioFrom = async (pid) => {
  const c = window.klassCall;
  const midOfTrack = {};
  for (const t of c.pc.getTransceivers()) if (t.mid !== null) midOfTrack[t.receiver.track.id] = t.mid;
  let packets = 0;
  (await c.pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp' || (s.kind || s.mediaType) !== 'audio') return;
    const slot = c.slots[s.mid !== undefined ? s.mid : midOfTrack[s.trackIdentifier]];
    if (slot && slot.participant_id === pid) packets += s.packetsReceived || 0;
  });
  return packets;
};

if (unavailable) {
  test('(clf) the classroom path in Firefox', { skip: `skipped: ${unavailable}` }, () => {});
} else {
  let lab = null;
  let firefox = null;

  before(async () => {
    lab = createLab();
    await startServer({ demo: true, sfuIp: lab.hubIp });
    await launchBrowser();
  });

  after(async () => {
    if (firefox) await firefox.close();
    await shutdown();
    if (lab) await lab.cleanup();
  });

  /** A Firefox tab on the home page that follows `user`'s call link, up to the pre-join screen. */
  async function fromHome(user) {
    const page = await firefox.open(`${firefox.base}/`);
    // The link, clicked in the page; the navigation replaces the document.
    await page.evaluate((u) => {
      setTimeout(() => document.querySelector(`a[data-kind="call"][data-user="${u}"]`).click(), 0);
      return true;
    }, user);
    await page.waitForFunction(() => location.pathname.startsWith('/call/') && window.klassCall && window.klassCall.state === 'prejoin', null, { timeout: 30_000 });
    return page;
  }

  /** A real click (BiDi input: a user activation) in the middle of the element `id`. */
  async function realClick(page, id) {
    const box = await page.evaluate((elementId) => {
      const r = document.getElementById(elementId).getBoundingClientRect();
      return { x: Math.round(r.x + r.width / 2), y: Math.round(r.y + r.height / 2) };
    }, id);
    await firefox.command('input.performActions', {
      context: page.context,
      actions: [{ type: 'pointer', id: 'mouse', actions: [
        { type: 'pointerMove', x: box.x, y: box.y }, { type: 'pointerDown', button: 0 }, { type: 'pointerUp', button: 0 },
      ] }],
    });
  }

  async function admitted(page, who) {
    await page.waitForFunction(() => ['admitted', 'refused', 'left'].includes(window.klassCall.state) && window.klassCall.state, null, { timeout: 30_000 });
    const state = await page.evaluate(() => ({ state: window.klassCall.state, error: window.klassCall.errorCode, id: window.klassCall.participantId, log: window.klassCall.log.slice(-15) }));
    assert.equal(state.state, 'admitted', `${who}'s Firefox page: ${JSON.stringify(state)}\n${logTail(30)}`);
    return state.id;
  }

  test('(clf) home → pre-join in Firefox → a parent (Firefox) raises a hand → the teacher (Firefox) gives the floor', { timeout: 240_000 }, async () => {
    // A mock sound card: Web Audio (the level meter) runs only with an output device, which this
    // machine lacks and every user's has.
    firefox = await launchFirefox({ client: lab.addClient('clf'), lab, serverPort: server.httpPort, prefs: { 'media.cubeb.force_mock_context': true } });

    // ---- the teacher, in Firefox ----
    const teacher = await fromHome(TEACHER);
    const prejoin = await teacher.evaluate(() => ({
      who: document.getElementById('prejoin-who').textContent,
      mics: document.querySelectorAll('#prejoin-mic option').length,
      cameras: document.querySelectorAll('#prejoin-camera option').length,
    }));
    console.log(`Firefox pre-join: ${JSON.stringify(prejoin)}`);
    assert.match(prejoin.who, /Mme Lefèvre.*Enseignant/);
    // Firefox runs no Web Audio before the person does something on the page: a real click on
    // the microphone's choice, as someone checking it would.
    await realClick(teacher, 'prejoin-mic');
    await teacher.waitForFunction(() => window.klassCall.prejoin.maxLevel > 0.05, null, { timeout: 10_000 }).catch(() => {});
    const meter = await teacher.evaluate(() => ({ max: window.klassCall.prejoin.maxLevel, meter: window.klassCall.prejoin.meter }));
    console.log(`Firefox's microphone level: ${JSON.stringify(meter)}`);
    assert.ok(meter.max > 0.05, 'the level meter moves');
    assert.deepEqual(seriousViolations(await runAxe(teacher, 'pre-join, Firefox')), []);
    await realClick(teacher, 'prejoin-enter');
    const teacherId = await admitted(teacher, 'the teacher');

    // ---- a parent in another Firefox tab, one in Chromium ----
    const parent = await fromHome(PARENT_FF);
    assert.match(await parent.evaluate(() => document.getElementById('prejoin-who').textContent), /Camille Durand/);
    await enterCall(parent);
    const parentId = await admitted(parent, 'the parent');
    const parentCr = await openFromHome(PARENT_CR);
    await enterCallChromium(parentCr.page);
    await waitForState(parentCr, 'admitted');
    await teacher.waitForFunction((n) => Object.keys(window.klassCall.participants).length >= n, 2, { timeout: 20_000 });

    // ---- the teacher mutes everyone; the Firefox parent raises its hand ----
    await teacher.evaluate(() => { document.getElementById('btn-mute-all').click(); return true; });
    await parent.waitForFunction(() => document.getElementById('btn-mic').getAttribute('aria-pressed') === 'true', null, { timeout: 10_000 });
    const raisedAt = await parent.evaluate(() => {
      const at = Date.now();
      document.getElementById('btn-hand').click();
      return at;
    });
    await teacher.waitForFunction((pid) => JSON.stringify(window.klassCall.hands) === JSON.stringify([pid])
      && document.querySelector(`#hands > li[data-participant-id="${pid}"]`)
      && /Camille Durand lève la main/.test(document.getElementById('announcer').textContent), parentId, { timeout: 10_000 });
    const seenAt = await teacher.evaluate(() => window.klassCall.handsLog.find((h) => h.type === 'hands' && h.ids.length > 0).at);
    console.log(`raise: from the Firefox parent's click to the queue at the Firefox teacher's page: ${seenAt - raisedAt} ms`);
    await parentCr.page.waitForFunction((pid) => window.klassCall.hands.includes(pid), parentId, { timeout: 10_000 });
    assert.deepEqual(seriousViolations(await runAxe(teacher, 'call with a raised hand, Firefox (teacher)')), []);
    assert.deepEqual(seriousViolations(await runAxe(parent, 'call with a raised hand, Firefox (parent)')), []);

    // ---- the teacher gives the floor: the hand goes down everywhere and the parent is heard ----
    const before = await teacher.evaluate(audioFrom, parentId);
    await sleep(3000);
    assert.equal(await teacher.evaluate(audioFrom, parentId), before, 'no audio from the muted parent');
    const floorAt = await teacher.evaluate((pid) => {
      const at = Date.now();
      document.querySelector(`#hands > li[data-participant-id="${pid}"] button[data-action="give_floor"]`).click();
      return at;
    }, parentId);
    await parent.waitForFunction(() => window.klassCall.floor === window.klassCall.participantId
      && window.klassCall.hands.length === 0 && document.getElementById('hands-panel').hidden
      && document.getElementById('btn-mic').getAttribute('aria-pressed') === 'false'
      && /Vous avez la parole/.test(document.getElementById('alert').textContent), null, { timeout: 10_000 });
    const floorMs = (await parent.evaluate(() => window.klassCall.handsLog.find((h) => h.type === 'floor_given').at)) - floorAt;
    await teacher.waitForFunction(() => window.klassCall.hands.length === 0 && document.getElementById('hands-panel').hidden, null, { timeout: 10_000 });
    await parentCr.page.waitForFunction(() => window.klassCall.hands.length === 0 && document.getElementById('hands-panel').hidden, null, { timeout: 10_000 });
    await teacher.waitForFunction((pid) => Object.values(window.klassCall.slots)
      .some((slot) => slot.kind === 'audio' && slot.participant_id === pid), parentId, { timeout: 20_000 });
    const from = await teacher.evaluate(audioFrom, parentId);
    await sleep(3000);
    const heard = (await teacher.evaluate(audioFrom, parentId)) - from;
    console.log(`give the floor: from the Firefox teacher's click to the Firefox parent's page: ${floorMs} ms; then ${heard} audio packets from that parent at the teacher's in 3 s`);
    assert.ok(heard > 20, `the teacher hears the parent after the floor (${heard} packets in 3 s)`);
    assert.ok(teacherId !== parentId);
  });
}
