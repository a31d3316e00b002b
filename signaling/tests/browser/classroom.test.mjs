// The classroom path, as people take it, in Chromium: the demo school's home page (`serve --demo`)
// → the teacher's call link → the pre-join screen (name and role from the server, camera preview,
// microphone level, devices, microphone off before entering) → in the call with two parents (one on
// a phone) → the teacher mutes everyone → a parent raises a hand, then the other → everyone sees
// the queue in order → a parent's attempt to give the floor is refused → the teacher gives the floor
// → that parent's microphone turns on and the teacher receives their audio again, and the hand is
// gone everywhere → grid view, remembered → keyboard → the teacher lowers the last hand → a
// browser that prefers English gets the pre-join screen in English.
// axe-core runs on the pre-join screen and in the call, desktop and phone; no serious or critical
// violation. KLASS_DOC_SCREENSHOTS=1 writes the pictures of docs/screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
  HERE, enterCall, get, inboundByParticipant, launchBrowser, logTail, openFromHome, shutdown,
  sleep, startServer, waitForState,
} from './harness.mjs';
import { runAxe, seriousViolations } from './axe.mjs';

const CLASS = 'demo-standard';
const TEACHER = { user: 'teacher-standard', name: 'Mme Lefèvre' };
const PARENT1 = { user: 'parent-standard-1', name: 'Camille Durand' };
const PARENT2 = { user: 'parent-standard-2', name: 'Sami Benali' };
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const SCREENSHOTS = process.env.KLASS_DOC_SCREENSHOTS ? path.resolve(HERE, '../../../docs/screenshots') : null;

/** `show`: an element scrolled into view first (on a phone, the queue is below the videos). */
async function picture(entry, file, { show = null } = {}) {
  if (!SCREENSHOTS) return;
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  if (show) await entry.page.locator(show).evaluate((e) => e.scrollIntoView({ block: 'center' }));
  await entry.page.screenshot({ path: path.join(SCREENSHOTS, file) });
  console.log(`screenshot ${path.join(SCREENSHOTS, file)}`);
}

async function assertAxe(entry, label) {
  const violations = await runAxe(entry.page, label);
  assert.deepEqual(seriousViolations(violations), [], `axe on ${label}: no serious or critical violation`);
}

const handsOf = (entry) => entry.page.evaluate(() => window.klassCall.hands);

/** Waits until `entry`'s page shows exactly `ids` as the queue (state and DOM). */
async function waitForQueue(entry, ids, timeout = 10_000) {
  await entry.page.waitForFunction((want) => {
    const c = window.klassCall;
    const dom = [...document.querySelectorAll('#hands > li')].map((li) => li.dataset.participantId);
    return JSON.stringify(c.hands) === JSON.stringify(want) && JSON.stringify(dom) === JSON.stringify(want)
      && document.getElementById('hands-panel').hidden === (want.length === 0);
  }, ids, { timeout });
}

before(async () => {
  await startServer({ demo: true });
  await launchBrowser();
});

after(async () => {
  await shutdown();
});

test('(cl) home → pre-join → a parent raises a hand → the teacher gives the floor', { timeout: 300_000 }, async () => {
  // ---- the teacher, from the home page, through the pre-join screen ----
  const teacher = await openFromHome(TEACHER.user, { viewport: DESKTOP });
  assert.match(teacher.page.url(), new RegExp(`/call/${CLASS}$`), 'the token left the address bar');
  await teacher.page.waitForFunction(() => window.klassCall && window.klassCall.state === 'prejoin', null, { timeout: 30_000 });
  const who = await teacher.page.locator('#prejoin-who').textContent();
  assert.match(who, /Mme Lefèvre/);
  assert.match(who, /Enseignant/);
  // The fake microphone beeps: the level meter moves.
  await teacher.page.waitForFunction(() => window.klassCall.prejoin.maxLevel > 0.05, null, { timeout: 10_000 });
  const devices = await teacher.page.evaluate(() => ({
    cameras: [...document.querySelectorAll('#prejoin-camera option')].map((o) => o.value),
    mics: [...document.querySelectorAll('#prejoin-mic option')].map((o) => o.value),
    level: document.getElementById('prejoin-level').value,
    previewWidth: document.getElementById('prejoin-video').videoWidth,
  }));
  console.log(`pre-join: ${devices.cameras.length} camera(s), ${devices.mics.length} microphone(s), preview ${devices.previewWidth} px wide`);
  assert.ok(devices.cameras.length >= 1 && devices.mics.length >= 1, JSON.stringify(devices));
  assert.ok(devices.previewWidth > 0, 'the camera preview plays');
  if (devices.mics.length > 1) {
    // Another microphone: the call uses the one chosen.
    const chosen = devices.mics[devices.mics.length - 1];
    await teacher.page.selectOption('#prejoin-mic', chosen);
    await teacher.page.waitForFunction((id) => window.klassCall.prejoin.micDeviceId === id
      && !document.getElementById('prejoin-enter').disabled, chosen, { timeout: 10_000 });
    const used = await teacher.page.evaluate(() => window.klassCall.prejoin.micDeviceId);
    assert.equal(used, chosen, 'the chosen microphone is the one in use');
  }
  await assertAxe(teacher, 'pre-join, desktop');
  if (SCREENSHOTS) await teacher.page.waitForFunction(() => document.getElementById('prejoin-level').value > 0.15, null, { polling: 20, timeout: 10_000 });
  await picture(teacher, 'prejoin-desktop.png');
  await teacher.page.getByRole('button', { name: 'Entrer dans la visio' }).click();
  await waitForState(teacher, 'admitted');
  if (devices.mics.length > 1) {
    const inCall = await teacher.page.evaluate(() => window.klassCall.prejoin.micDeviceId);
    assert.equal(inCall, devices.mics[devices.mics.length - 1]);
  }

  // ---- two parents: one at a desk, one on a phone who enters with the microphone off ----
  const parent1 = await openFromHome(PARENT1.user, { viewport: DESKTOP });
  await enterCall(parent1.page);
  const parent2 = await openFromHome(PARENT2.user, { viewport: PHONE });
  await parent2.page.waitForFunction(() => window.klassCall && window.klassCall.state === 'prejoin', null, { timeout: 30_000 });
  assert.match(await parent2.page.locator('#prejoin-who').textContent(), /Sami Benali.*Parent/);
  await assertAxe(parent2, 'pre-join, phone');
  await picture(parent2, 'prejoin-phone.png');
  await parent2.page.getByLabel('Micro activé en entrant').uncheck();
  await parent2.page.getByRole('button', { name: 'Entrer dans la visio' }).click();
  for (const e of [parent1, parent2]) await waitForState(e, 'admitted');
  const ids = {};
  for (const e of [teacher, parent1, parent2]) ids[e.user] = await e.page.evaluate(() => window.klassCall.participantId);
  await teacher.page.waitForFunction((pid) => {
    const li = document.querySelector(`#roster > li[data-participant-id="${pid}"]`);
    return li && li.dataset.audioMuted === 'true';
  }, ids[PARENT2.user], { timeout: 10_000 });
  console.log('the parent who entered with the microphone off is shown muted to the teacher');

  // ---- the teacher mutes everyone: the parents' audio stops ----
  await teacher.page.getByRole('button', { name: 'Couper tous les micros' }).click();
  await parent1.page.waitForFunction(() => window.klassCall.participants && document.getElementById('btn-mic').getAttribute('aria-pressed') === 'true', null, { timeout: 10_000 });

  // ---- parent 1 raises a hand, then parent 2 (with the keyboard, on the phone) ----
  await parent1.page.evaluate(() => document.getElementById('btn-hand')
    .addEventListener('click', () => { window.handClickedAt = Date.now(); }, { once: true }));
  await parent1.page.getByRole('button', { name: 'Lever la main' }).click();
  await waitForQueue(teacher, [ids[PARENT1.user]]);
  const raisedAt = await parent1.page.evaluate(() => window.handClickedAt);
  const seenAt = await teacher.page.evaluate(() => window.klassCall.handsLog.find((h) => h.type === 'hands' && h.ids.length > 0).at);
  console.log(`raise: from the parent's click to the queue at the teacher's page: ${seenAt - raisedAt} ms`);
  assert.match(await teacher.page.locator('#announcer').textContent(), /Camille Durand lève la main/);
  await parent2.page.focus('#btn-cam');
  await parent2.page.keyboard.press('Tab');
  const focused = await parent2.page.evaluate(() => {
    const a = document.activeElement;
    return { id: a.id, visible: a.matches(':focus-visible'), outline: getComputedStyle(a).outlineStyle };
  });
  assert.equal(focused.id, 'btn-hand', 'Tab from the camera button reaches the hand button');
  assert.ok(focused.visible && focused.outline !== 'none', `visible focus: ${JSON.stringify(focused)}`);
  await parent2.page.keyboard.press('Enter');
  const queue = [ids[PARENT1.user], ids[PARENT2.user]];
  for (const e of [teacher, parent1, parent2]) await waitForQueue(e, queue);
  const rosterHands = await teacher.page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('#roster > li')].map((li) => [li.dataset.participantId, li.dataset.hand])));
  assert.equal(rosterHands[ids[PARENT1.user]], '1');
  assert.equal(rosterHands[ids[PARENT2.user]], '2');
  assert.equal(await parent2.page.locator('#btn-hand').textContent(), 'Baisser la main');

  // ---- a parent cannot give the floor: refused, the call goes on ----
  await parent2.page.evaluate((target) => window.klassCall.send({ type: 'give_floor', target }), ids[PARENT2.user]);
  await parent2.page.waitForFunction(() => window.klassCall.errorCode === 'forbidden_role', null, { timeout: 10_000 });
  assert.equal((await parent2.page.evaluate(() => window.klassCall.state)), 'admitted');
  assert.match(await parent2.page.locator('#alert').textContent(), /rôle/);
  assert.equal(await parent2.page.locator('#hands-panel button[data-action="give_floor"]:visible').count(), 0, 'no floor button for parents');
  assert.deepEqual(await handsOf(teacher), queue, 'the refused attempt changed nothing');

  await assertAxe(teacher, 'call with the hand queue, desktop (teacher)');
  await assertAxe(parent2, 'call with the hand queue, phone (parent)');
  await picture(teacher, 'call-desktop.png');
  await picture(parent2, 'call-phone.png', { show: '#hands-panel' });
  const overflow = await parent2.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `nothing wider than the phone's screen (${overflow} px over)`);

  // ---- the teacher gives the floor to the first hand ----
  const p1 = ids[PARENT1.user];
  const before = get(await inboundByParticipant(teacher), p1, 'audio', 'packetsReceived');
  await sleep(3000);
  const stillMuted = get(await inboundByParticipant(teacher), p1, 'audio', 'packetsReceived');
  assert.equal(stillMuted, before, 'no audio from the muted parent');
  await teacher.page.evaluate(() => document.getElementById('hands')
    .addEventListener('click', () => { window.floorClickedAt = Date.now(); }, { capture: true, once: true }));
  await teacher.page.locator('#hands').getByRole('button', { name: 'Donner la parole : Camille Durand' }).click();
  await parent1.page.waitForFunction(() => window.klassCall.floor !== null && !window.klassCall.hands.includes(window.klassCall.participantId), null, { timeout: 10_000 });
  const floorAt = await teacher.page.evaluate(() => window.floorClickedAt);
  const floorMs = (await parent1.page.evaluate(() => window.klassCall.handsLog.find((h) => h.type === 'floor_given').at)) - floorAt;
  for (const e of [teacher, parent1, parent2]) await waitForQueue(e, [ids[PARENT2.user]]);
  assert.match(await parent1.page.locator('#alert').textContent(), /Vous avez la parole/);
  assert.equal(await parent1.page.evaluate(() => document.getElementById('btn-mic').getAttribute('aria-pressed')), 'false', 'the microphone is on');
  assert.match(await parent2.page.locator('#announcer').textContent(), /Camille Durand a la parole/);
  // A slot's counters go on across participants: count only while the parent holds one.
  await teacher.page.waitForFunction((pid) => Object.values(window.klassCall.slots)
    .some((slot) => slot.kind === 'audio' && slot.participant_id === pid), p1, { timeout: 20_000 });
  const inSlotMs = Date.now() - floorAt;
  const from = get(await inboundByParticipant(teacher), p1, 'audio', 'packetsReceived');
  await sleep(3000);
  const heard = get(await inboundByParticipant(teacher), p1, 'audio', 'packetsReceived') - from;
  console.log(`give the floor: from the teacher's click to the parent's page: ${floorMs} ms; the parent's audio in a slot of the teacher's ${inSlotMs} ms after the click; then ${heard} audio packets in 3 s`);
  // Muted, not one packet came through over 3 s; the fake microphone beeps (Opus with DTX in the
  // gaps): 40 to 140 packets in 3 s once heard.
  assert.ok(heard > 20, `the teacher receives the parent's audio after the floor (${heard} packets in 3 s)\n${logTail(20)}`);
  // The other parent is still held by the teacher's mute.
  await parent2.page.evaluate(() => document.getElementById('btn-mic').click());
  await parent2.page.waitForFunction(() => window.klassCall.errorCode === 'muted_by_moderator', null, { timeout: 10_000 });

  // ---- the grid view, remembered; the speaker highlight stays ----
  await teacher.page.getByRole('button', { name: 'Vue en grille' }).click();
  const grid = await teacher.page.evaluate(() => {
    const tiles = [...document.querySelectorAll('.tile:not([hidden])')].map((t) => `${t.dataset.slotKind}:${t.dataset.participantId}:${Math.round(t.getBoundingClientRect().width)}:${t.parentElement.id}:${getComputedStyle(t).display}:${getComputedStyle(t.parentElement).display}`);
    return { view: document.body.dataset.view, pressed: document.getElementById('btn-view').getAttribute('aria-pressed'), stored: localStorage.getItem('klass-call-view'), tiles };
  });
  console.log(`grid view: tile widths ${grid.tiles.join(', ')} px`);
  assert.deepEqual([grid.view, grid.pressed, grid.stored], ['grid', 'true', 'grid']);
  const widths = grid.tiles.map((t) => Number(t.split(':')[2]));
  assert.ok(Math.max(...widths) - Math.min(...widths) <= 2, `every tile the same size: ${grid.tiles}`);
  await teacher.page.waitForFunction(() => {
    const t = document.querySelector('.tile[data-speaking="true"]:not([hidden])');
    return t && getComputedStyle(t).outlineStyle === 'solid';
  }, null, { timeout: 20_000 });
  const playing = await teacher.page.evaluate(() => [...document.querySelectorAll('.tile:not([hidden])')]
    .filter((t) => t.offsetParent !== null)
    .map((t) => { const v = t.querySelector('video'); return `${t.dataset.slotKind}:${v.videoWidth}x${v.videoHeight}:${v.paused ? 'paused' : 'playing'}:${v.currentTime.toFixed(1)}:${t.dataset.quality || ''}`; }));
  console.log(`grid view videos: ${playing.join(', ')}`);
  assert.ok(playing.every((p) => !p.includes(':0x0:') && p.includes(':playing:')), 'every tile plays in the grid');
  // The videos' new boxes are painted at their next frames.
  if (SCREENSHOTS) await sleep(1500);
  await picture(teacher, 'call-grid-desktop.png');
  await teacher.page.getByRole('button', { name: 'Vue en grille' }).click();
  assert.equal(await teacher.page.evaluate(() => localStorage.getItem('klass-call-view')), 'stage');

  // ---- the teacher lowers the last hand from the list of people ----
  await teacher.page.locator('#roster').getByRole('button', { name: 'Baisser la main : Sami Benali' }).click();
  for (const e of [teacher, parent1, parent2]) await waitForQueue(e, []);
  assert.equal(await parent2.page.locator('#btn-hand').textContent(), 'Lever la main');

  // ---- English, when the browser asks ----
  const english = await openFromHome('parent-standard-3', { english: true, viewport: PHONE });
  await english.page.waitForFunction(() => window.klassCall && window.klassCall.state === 'prejoin', null, { timeout: 30_000 });
  assert.match(await english.page.locator('#prejoin-who').textContent(), /You will join as Jeanne Morel \(Parent\)/);
  assert.equal(await english.page.getByRole('button', { name: 'Join the call' }).count(), 1);
  assert.equal(await english.page.getByLabel('Microphone on when I join').count(), 1);
  await english.page.close();
});
