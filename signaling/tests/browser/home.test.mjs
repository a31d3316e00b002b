// The home page `/` of `serve --demo` as a new user sees it: the demo school by tier, a call link
// per member of the classes with calls and a media link per member, each opening its page as that
// member; French by default, English when the browser asks; usable on a phone; no serious or
// critical axe-core violation. KLASS_DOC_SCREENSHOTS=1 writes docs/screenshots/home*.png.
//
// The whole path from here into a call and into the media page: classroom.test.mjs and
// media_page.test.mjs (Chromium), and their Firefox tests.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { CHROMIUM, CHROMIUM_ARGS, HERE, server, shutdown, startServer } from './harness.mjs';
import { runAxe, seriousViolations } from './axe.mjs';

const DOCS = path.resolve(HERE, '../../../docs/screenshots');
let browser = null;

before(async () => {
  await startServer({ demo: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: false, args: CHROMIUM_ARGS });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await shutdown();
});

async function open(locale, viewport) {
  const context = await browser.newContext({ locale, viewport });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  const res = await page.goto(`${server.pageBase}/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /^default-src 'self'/);
  return { context, page, errors };
}

async function links(page) {
  return page.$$eval('a[data-kind]', (as) => as.map((a) => ({
    kind: a.dataset.kind, user: a.dataset.user, href: a.getAttribute('href'), text: a.textContent.trim(),
  })));
}

test('demo home page: classes by tier, a call and a media link per member, French', async () => {
  const { context, page, errors } = await open('fr-FR', { width: 1280, height: 900 });
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  const headings = await page.$$eval('section.class h2', (hs) => hs.map((h) => h.textContent));
  assert.deepEqual(headings, ['CE2 démo (free)', 'CE2 démo (initial)', 'CE2 démo (standard)', 'CE2 démo (plus)']);
  const tiers = await page.$$eval('section.class .tier', (ps) => ps.map((p) => p.textContent));
  assert.match(tiers[0], /pas de visio/);
  assert.match(tiers[2], /visio : 8 personnes, 30 min/);
  assert.match(tiers[3], /visio : 70 personnes, sans limite de durée/);

  const all = await links(page);
  const calls = all.filter((l) => l.kind === 'call');
  const media = all.filter((l) => l.kind === 'media');
  assert.equal(media.length, 16, 'a media link per member');
  assert.deepEqual(calls.map((l) => l.user).sort(), [
    'parent-plus-1', 'parent-plus-2', 'parent-plus-3', 'parent-standard-1', 'parent-standard-2',
    'parent-standard-3', 'teacher-plus', 'teacher-standard',
  ], 'call links only where the tier has calls');
  for (const l of all) {
    const classId = l.user.replace(/^teacher-/, 'demo-').replace(/^parent-(\w+)-\d$/, 'demo-$1');
    assert.match(l.href, new RegExp(`^/${l.kind}/${classId}#token=[\\w-]+\\.[\\w-]+\\.[\\w-]+$`), l.href);
  }
  assert.match(calls.find((l) => l.user === 'teacher-plus').text, /Rejoindre la visio en tant que Mme Lefèvre/);

  // Each link opens its page as that member: the call page with a token the server accepts.
  const teacher = calls.find((l) => l.user === 'teacher-standard');
  const token = teacher.href.split('#token=')[1];
  const caps = await page.evaluate(async (t) => {
    const r = await fetch('/v1/classes/demo-standard/capabilities', { headers: { authorization: `Bearer ${t}` } });
    return { status: r.status, body: await r.json() };
  }, token);
  assert.equal(caps.status, 200);
  assert.equal(caps.body.visio.allowed, true);

  const violations = await runAxe(page, 'home, desktop');
  assert.deepEqual(seriousViolations(violations), [], 'no serious or critical violation');
  if (process.env.KLASS_DOC_SCREENSHOTS === '1') {
    fs.mkdirSync(DOCS, { recursive: true });
    await page.screenshot({ path: path.join(DOCS, 'home.png') });
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test('demo home page in English, on a phone, and with the keyboard', async () => {
  const { context, page, errors } = await open('en-GB', { width: 390, height: 844 });
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  assert.match(await page.textContent('h1'), /class calls and media/);
  const all = await links(page);
  assert.equal(all.length, 24);
  assert.match(all[0].text, /^Photos and videos as /);
  // Nothing wider than the phone's screen.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px`);
  // Tab reaches the first member link, with a visible focus ring.
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => {
    const el = document.activeElement;
    return { kind: el.dataset.kind, outline: getComputedStyle(el).outlineStyle };
  });
  assert.equal(focused.kind, 'media');
  assert.notEqual(focused.outline, 'none');
  const violations = await runAxe(page, 'home, phone, English');
  assert.deepEqual(seriousViolations(violations), [], 'no serious or critical violation');
  if (process.env.KLASS_DOC_SCREENSHOTS === '1') await page.screenshot({ path: path.join(DOCS, 'home-phone.png') });
  assert.deepEqual(errors, []);
  await context.close();
});
