// A Monday at 9:00 from a family's side: the server turns a join away because too many arrive at
// once (here, the per-address join rate: the WebSocket's upgrade is answered 429 with
// Retry-After, which a page cannot read). The page says the server is busy, counts down, tries
// again by itself with growing waits and gets in, without a reload and keeping its camera.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { launchBrowser, openPage, seedClass, shutdown, startServer, waitForMediaEverywhere, waitForState } from './harness.mjs';

const CLASS = 'browser-test-busy';
const TEACHER = { user: 'teacher-busy', name: 'Mme Garnier', role: 'teacher' };
const PARENT = { user: 'parent-busy', name: 'Inès Faure', role: 'parent' };

before(async () => {
  // One join at once from an address, then one every 4 s: the second page is refused at first.
  await startServer({ env: { KLASS_CONFIG_BODY: 'limits: { joins_per_address: { per_minute: 15, burst: 1 } }' } });
  await seedClass(CLASS, 'CE1 (test affluence)', [TEACHER, PARENT]);
  await launchBrowser();
});

after(shutdown);

/** Every state the page goes through and every status it shows, from its first script on. */
function recordStates() {
  window.seen = { states: [], statuses: [] };
  new MutationObserver(() => {
    const s = document.body && document.body.dataset.state;
    if (s && window.seen.states[window.seen.states.length - 1] !== s) window.seen.states.push(s);
    const status = document.getElementById('status');
    const text = status && status.textContent;
    if (text && window.seen.statuses[window.seen.statuses.length - 1] !== text) window.seen.statuses.push(text);
  }).observe(document, { subtree: true, attributes: true, childList: true, characterData: true });
}

test('a join refused by a busy server is made again by the page, which gets in', { timeout: 120_000 }, async (t) => {
  const teacher = await openPage(CLASS, TEACHER);
  await waitForState(teacher, 'admitted');
  const started = Date.now();
  const parent = await openPage(CLASS, PARENT, { initScripts: [recordStates] });
  await waitForState(parent, 'admitted', 60_000);
  const ms = Date.now() - started;
  const seen = await parent.page.evaluate(() => window.seen);
  t.diagnostic(`in after ${ms} ms; states ${seen.states.join(' > ')}`);
  assert.ok(seen.states.includes('retrying'), `the page waited to try again: ${seen.states}`);
  assert.ok(seen.statuses.some((s) => /Nouvel essai automatique dans \d+ s/.test(s)), `it said so: ${seen.statuses}`);
  // The join made again carries media both ways, with the camera of the first try.
  await waitForMediaEverywhere([teacher, parent], [teacher, parent], { timeoutMs: 60_000 });
});
