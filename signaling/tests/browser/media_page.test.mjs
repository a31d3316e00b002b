// The media page (/media/{class_id}) in Chromium, reached from the demo home page as a person
// would: the teacher of the Standard demo class uploads a photo with a face and a short video
// (tus, with one PATCH cut by the network and resumed from the server's offset), sees the faces
// drawn over them, draws a region on the photo with the mouse and types one on the video with the
// keyboard, blurs again, publishes; a parent sees the post (blurred outputs only) with a download
// button (Confort famille). In the Initial class (no Confort famille) the parent gets no button,
// and the server refuses a download link made from the view link. axe-core on each view.
// Firefox (mf): the parents' view and an upload, over WebDriver BiDi (firefox.mjs, no namespace:
// the page needs no ICE).
//
// KLASS_DOC_SCREENSHOTS set: docs/screenshots/media-teacher-review.png and media-parent.png.
// Needs the test media (scripts/install-deps.sh --test-media) and ffmpeg.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { HERE, logTail, server, shutdown, startServer } from './harness.mjs';
import { runAxe, seriousViolations } from './axe.mjs';
import { firefoxUnavailable, launchFirefox } from './firefox.mjs';
import { chromium } from 'playwright-core';

const MEDIA_DIR = path.join(process.env.KLASS_CACHE || path.join(os.homedir(), '.cache/klass'), 'test-media');
const PHOTO = path.join(MEDIA_DIR, 'astronaut.png');
const SCREENSHOT_DIR = path.join(HERE, '../../../docs/screenshots');
const CHUNK = 128 * 1024;

let tmp;
let video;
let context;

function makeVideo() {
  // Four seconds of Megamind (faces, sound) as a phone would send them: H.264 and AAC in MP4.
  const out = path.join(tmp, 'megamind-4s.mp4');
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-t', '4', '-i', path.join(MEDIA_DIR, 'Megamind.avi'),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-c:a', 'aac', '-movflags', '+faststart', out],
  // An AC3 frame cut at the start is reported on stderr, and skipped: quiet unless it fails.
  { stdio: 'pipe' });
  return out;
}

async function screenshotTo(page, name) {
  if (!process.env.KLASS_DOC_SCREENSHOTS) return;
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, name);
  const raw = path.join(tmp, name);
  await page.screenshot({ path: raw, fullPage: true, type: 'png' });
  // Kept small for the repository: three quarters of the size, 96 colours.
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-i', raw, '-vf',
    'scale=iw*0.75:-1:flags=lanczos,split[a][b];[a]palettegen=max_colors=96:stats_mode=full[p];[b][p]paletteuse=dither=none', file]);
  console.log(`screenshot: ${file} (${fs.statSync(file).size} bytes)`);
}

async function axeClean(page, label) {
  const violations = await runAxe(page, label);
  assert.deepEqual(seriousViolations(violations), [], `axe [${label}]: no serious or critical violation`);
}

/** Opens `/` and follows the media link of `user`, as a person clicks it. */
async function fromHome(page, user) {
  const res = await page.goto(`${server.base}/`);
  assert.equal(res.status(), 200, 'GET /');
  const link = page.locator(`a[data-kind="media"][data-user="${user}"]`);
  await link.click();
  await page.waitForURL(/\/media\//);
  await page.waitForFunction(() => document.body.dataset.state === 'ready' || document.body.dataset.state === 'error', null, { timeout: 30_000 });
  const state = await page.evaluate(() => ({ state: document.body.dataset.state, alert: document.getElementById('alert').textContent }));
  assert.equal(state.state, 'ready', `media page of ${user}: ${state.alert}`);
}

function newPage(name) {
  return context.newPage().then((page) => {
    page.on('pageerror', (err) => console.log(`[${name}] page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') console.log(`[${name}] console: ${msg.text()}`);
    });
    return page;
  });
}

/** Uploads `files` from the teacher's page; waits for every one to be ready; returns per-file timings. */
async function uploadAndProcess(page, files, { timeoutMs = 240_000 } = {}) {
  if (await page.locator('#start-post').isVisible()) await page.click('#start-post');
  const startedAt = Date.now();
  await page.setInputFiles('#files', files);
  await page.waitForFunction((n) => {
    const items = Object.values(window.klassMedia.items);
    return items.length === n && items.every((item) => item.li.dataset.state === 'ready' || item.li.dataset.state === 'failed');
  }, files.length, { timeout: timeoutMs });
  const items = await page.evaluate(() => Object.values(window.klassMedia.items).map((item) => ({
    mediaId: item.mediaId, name: item.name, kind: item.kind, state: item.li.dataset.state, retries: item.retries || 0,
  })));
  for (const item of items) assert.equal(item.state, 'ready', `${item.name} processed`);
  return { items, totalMs: Date.now() - startedAt };
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-media-page-'));
  assert.ok(fs.existsSync(PHOTO), `${PHOTO} is missing: run scripts/install-deps.sh --test-media`);
  video = makeVideo();
  await startServer({
    demo: true,
    env: { KLASS_CONFIG_BODY: `{ storage: { max_chunk_bytes: ${CHUNK} }, worker: { poll_interval_ms: 100 } }` },
  });
  // A browser of its own (the harness's is set up for calls): French, desktop size.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  context = await browser.newContext({ locale: 'fr-FR', viewport: { width: 1000, height: 800 }, acceptDownloads: true });
  context.closeBrowser = () => browser.close();
});

after(async () => {
  if (context) await context.closeBrowser().catch(() => {});
  await shutdown();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('media page: teacher uploads, reviews faces, draws a region, publishes; parents see it (Chromium)', { timeout: 600_000 }, async () => {
  try {
    const teacher = await newPage('teacher-standard');
    await fromHome(teacher, 'teacher-standard');
    assert.equal(await teacher.evaluate(() => window.klassMedia.role), 'teacher');
    assert.equal(await teacher.title(), 'Photos et vidéos de la classe');
    await axeClean(teacher, 'media, teacher, empty');

    // The network cuts the second PATCH of the photo once: the page asks HEAD and resumes.
    let cut = 0;
    let patches = 0;
    await teacher.route('**/v1/classes/*/media/*/content', async (route) => {
      if (route.request().method() === 'PATCH') {
        patches += 1;
        if (patches === 2 && cut === 0) {
          cut += 1;
          return route.abort('connectionreset');
        }
      }
      return route.continue();
    });
    const heads = [];
    teacher.on('request', (request) => {
      if (request.method() === 'HEAD') heads.push(request.url());
    });
    const { items, totalMs } = await uploadAndProcess(teacher, [PHOTO, video]);
    await teacher.unroute('**/v1/classes/*/media/*/content');
    const timings = await teacher.evaluate(() => window.klassMedia.timings);
    const photo = items.find((item) => item.kind === 'photo');
    const clip = items.find((item) => item.kind === 'video');
    assert.equal(cut, 1, 'one PATCH was cut');
    assert.ok(heads.length >= 1, 'the page asked the server where the upload stood (HEAD)');
    assert.ok(photo.retries >= 1, 'the photo upload resumed after the cut');
    for (const item of items) {
      const t = timings[`upload:${item.mediaId}`];
      const faces = timings[`faces:${item.mediaId}`];
      console.log(`${item.kind}: ${t.bytes} bytes uploaded in ${t.seconds.toFixed(2)} s (${(t.bytes / t.seconds / 1e6).toFixed(2)} MB/s, ` +
        `${Math.ceil(t.bytes / CHUNK)} PATCHes of ${CHUNK / 1024} KiB), faces shown ${((faces - t.startedAt) / 1000).toFixed(1)} s after its upload started`);
    }
    console.log(`both files from choosing them to both reviews: ${(totalMs / 1000).toFixed(1)} s`);

    // Faces drawn: boxes over the photo; over the video, boxes on the frame at its time.
    const photoReview = teacher.locator(`section.review[data-media-id="${photo.mediaId}"]`);
    const videoReview = teacher.locator(`section.review[data-media-id="${clip.mediaId}"]`);
    await photoReview.locator('img').evaluate((img) => img.decode());
    const photoFaces = Number(await photoReview.locator('.faces-summary').getAttribute('data-faces'));
    assert.ok(photoFaces >= 1, `faces found in the photo: ${photoFaces}`);
    assert.ok(await photoReview.locator('.box-face').count() >= 1, 'a face box over the photo');
    const videoFaces = Number(await videoReview.locator('.faces-summary').getAttribute('data-faces'));
    assert.ok(videoFaces >= 1, `faces found in the video: ${videoFaces}`);
    const firstFaceAt = await teacher.evaluate(async (mediaId) => {
      const res = await fetch(`/v1/classes/demo-standard/media/${mediaId}/faces`, {
        headers: { Authorization: `Bearer ${sessionStorage.getItem(`klass-token:${location.pathname}`)}` },
      });
      const faces = await res.json();
      return faces.frames.find((f) => f.boxes.length > 0).time_s;
    }, clip.mediaId);
    await videoReview.locator('video').evaluate((v, t) => new Promise((resolve) => {
      v.addEventListener('seeked', resolve, { once: true });
      v.currentTime = t;
    }), firstFaceAt);
    await teacher.waitForFunction((id) => Number(document.querySelector(`section.review[data-media-id="${id}"]`).dataset.facesShown) >= 1, clip.mediaId);
    console.log(`faces: photo ${photoFaces} box(es); video ${videoFaces} boxes over its detection frames, the first at ${firstFaceAt.toFixed(2)} s`);

    // A region drawn with the mouse on the photo.
    const overlay = photoReview.locator('.overlay');
    const box = await overlay.boundingBox();
    await teacher.mouse.move(box.x + box.width * 0.05, box.y + box.height * 0.70);
    await teacher.mouse.down();
    await teacher.mouse.move(box.x + box.width * 0.15, box.y + box.height * 0.78, { steps: 5 });
    await teacher.mouse.move(box.x + box.width * 0.25, box.y + box.height * 0.85, { steps: 5 });
    await teacher.mouse.up();
    assert.equal(await photoReview.getAttribute('data-regions'), '1', 'the drawn region is listed');
    assert.equal(await photoReview.locator('.box-region').count(), 1, 'and drawn');
    // One typed on the video with the keyboard alone: fields, then Enter.
    await videoReview.locator('input[name="x"]').focus();
    for (const [name, value] of [['x', '10'], ['y', '10'], ['width', '20'], ['height', '20'], ['start', '0'], ['end', '2']]) {
      await videoReview.locator(`input[name="${name}"]`).fill(value);
    }
    await videoReview.locator('input[name="end"]').press('Enter');
    assert.equal(await videoReview.getAttribute('data-regions'), '1', 'the typed region is listed');
    await screenshotTo(teacher, 'media-teacher-review.png');
    await axeClean(teacher, 'media, teacher, review');

    // Blur again with the region; the new version keeps it.
    await photoReview.locator('button.rerun').click();
    await teacher.waitForFunction((id) => {
      const item = window.klassMedia.items[id];
      return item.reviewed >= 2 && item.li.dataset.state === 'ready';
    }, photo.mediaId, { timeout: 180_000 });
    assert.equal(await teacher.locator(`section.review[data-media-id="${photo.mediaId}"]`).getAttribute('data-regions'), '1', 'the new version has the region');

    // Publish.
    await teacher.waitForFunction(() => !document.getElementById('publish').disabled);
    await teacher.click('#publish');
    await teacher.waitForFunction(() => window.klassMedia.published.length === 1);

    // A parent, from the home page: the post, its blurred photo and video, a download button.
    const parent = await newPage('parent-standard-1');
    await fromHome(parent, 'parent-standard-1');
    assert.equal(await parent.evaluate(() => window.klassMedia.role), 'parent');
    assert.equal(await parent.locator('#teacher').isVisible(), false, 'no teacher tools for a parent');
    await parent.waitForFunction(() => document.querySelectorAll('article.post figure.medium').length === 2);
    await parent.locator('article.post img').evaluate((img) => img.decode());
    const shown = await parent.evaluate(() => [...document.querySelectorAll('figure.medium')].map((f) => {
      const media = f.querySelector('img, video');
      return { kind: f.dataset.kind, src: media.getAttribute('src'), width: media.naturalWidth || 0, download: f.querySelector('a.download')?.getAttribute('href') || null };
    }));
    for (const item of shown) {
      assert.match(item.src, /^\/media-files\/demo-standard\/[0-9a-f]+\/v\d+\/(photo\.jpg|media\.mp4)\?/, `${item.kind}: the processed output`);
      assert.ok(!item.src.includes('original'), 'never the original');
      assert.ok(item.download, `${item.kind}: a download button (Confort famille)`);
    }
    assert.ok(shown.find((s) => s.kind === 'photo').width > 0, 'the photo is shown');
    const videoReady = await parent.locator('figure.medium video').evaluate((v) => new Promise((resolve) => {
      if (v.readyState >= 1) resolve(v.videoWidth);
      v.addEventListener('loadedmetadata', () => resolve(v.videoWidth), { once: true });
      v.addEventListener('error', () => resolve(-1), { once: true });
    }));
    assert.ok(videoReady > 0, `the video player loads the blurred video (${videoReady} px wide)`);
    const [download] = await Promise.all([parent.waitForEvent('download'), parent.locator('a.download').first().click()]);
    console.log(`download: ${download.suggestedFilename()}`);
    assert.match(download.suggestedFilename(), /\.(jpg|mp4)$/);
    await screenshotTo(parent, 'media-parent.png');
    await axeClean(parent, 'media, parent, Confort famille');

    // Initial (no Confort famille): a photo whose upload a reload interrupts, chosen again after
    // it: the upload goes on from the server's offset (HEAD), not from 0. Then published; the
    // parent gets no download button, and the server refuses a download link.
    const teacherInitial = await newPage('teacher-initial');
    await fromHome(teacherInitial, 'teacher-initial');
    await teacherInitial.click('#start-post');
    const sent = [];
    teacherInitial.on('request', (request) => {
      if (request.method() === 'PATCH') sent.push(Number(request.headers()['upload-offset']));
    });
    let reloading = null;
    await teacherInitial.route('**/v1/classes/*/media/*/content', async (route) => {
      // After two PATCHes, the third waits for the reload, and never arrives.
      if (route.request().method() === 'PATCH' && sent.length >= 3) {
        reloading ||= teacherInitial.reload();
        return;
      }
      return route.continue();
    });
    await teacherInitial.setInputFiles('#files', [PHOTO]);
    for (const deadline = Date.now() + 60_000; !reloading && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 100));
    assert.ok(reloading, 'the upload got to its third PATCH');
    await reloading;
    await teacherInitial.unroute('**/v1/classes/*/media/*/content');
    await teacherInitial.waitForFunction(() => document.body.dataset.state === 'ready');
    assert.equal(await teacherInitial.locator('#resume-hint').isVisible(), true, 'the page says an upload was interrupted');
    const beforeReload = sent.length;
    const { items: initialItems } = await uploadAndProcess(teacherInitial, [PHOTO]);
    const resumedAt = sent[beforeReload];
    console.log(`reload: ${beforeReload} PATCHes before it (offsets ${sent.slice(0, beforeReload).join(', ')}); after it the upload resumed at byte ${resumedAt} (${sent.length - beforeReload} PATCHes)`);
    assert.equal(initialItems.length, 1, 'the same upload, not a second one');
    assert.ok(resumedAt >= 2 * CHUNK, `resumed from the server's offset, not from 0 (${resumedAt})`);
    await teacherInitial.click('#publish');
    await teacherInitial.waitForFunction(() => window.klassMedia.published.length === 1);
    // A video whose upload the teacher cancels halfway (tus termination): gone from the page and
    // from the server.
    await teacherInitial.click('#start-post');
    let held = 0;
    await teacherInitial.route('**/v1/classes/*/media/*/content', async (route) => {
      if (route.request().method() === 'PATCH' && ++held >= 2) return; // the network stalls
      return route.continue();
    });
    await teacherInitial.setInputFiles('#files', [video]);
    await teacherInitial.waitForFunction(() => document.querySelector('li.upload[data-state="uploading"] .cancel-upload'));
    const cancelledId = await teacherInitial.evaluate(() => document.querySelector('li.upload').dataset.mediaId);
    await teacherInitial.click('li.upload .cancel-upload');
    await teacherInitial.waitForFunction(() => document.querySelectorAll('li.upload').length === 0);
    await teacherInitial.unroute('**/v1/classes/*/media/*/content');
    const afterCancel = await teacherInitial.evaluate(async (id) => {
      const auth = { Authorization: `Bearer ${sessionStorage.getItem(`klass-token:${location.pathname}`)}` };
      return (await fetch(`/v1/classes/demo-initial/media/${id}`, { headers: auth })).status;
    }, cancelledId);
    assert.equal(afterCancel, 404, 'the cancelled upload is gone from the server');
    console.log(`cancel: the video upload was terminated after ${held - 1} PATCH(es); the server answers 404 for it`);

    const parentInitial = await newPage('parent-initial-1');
    await fromHome(parentInitial, 'parent-initial-1');
    await parentInitial.waitForFunction(() => document.querySelectorAll('article.post figure.medium img').length === 1);
    assert.equal(await parentInitial.locator('a.download').count(), 0, 'no download button without Confort famille');
    const forged = await parentInitial.evaluate(async () => {
      const src = document.querySelector('figure.medium img').getAttribute('src');
      const view = await fetch(src);
      const download = await fetch(src.replace('dl=0', 'dl=1'));
      return { view: view.status, download: download.status, code: (await download.json()).code };
    });
    assert.deepEqual(forged, { view: 200, download: 401, code: 'unauthorized' }, 'the server refuses a download link it did not sign');
    await axeClean(parentInitial, 'media, parent, no Confort famille');

    // English when the browser asks; on a phone, nothing wider than the screen.
    const english = await context.browser().newContext({ locale: 'en-GB', viewport: { width: 390, height: 844 } });
    const englishPage = await english.newPage();
    await fromHome(englishPage, 'parent-standard-2');
    assert.equal(await englishPage.title(), 'Class photos and videos');
    await englishPage.waitForFunction(() => document.querySelectorAll('article.post figure.medium').length === 2);
    assert.ok(await englishPage.locator('a.download', { hasText: 'Download' }).count() >= 1);
    const widths = await englishPage.evaluate(() => ({ page: document.documentElement.scrollWidth, screen: window.innerWidth }));
    assert.ok(widths.page <= widths.screen, `phone: the page fits the screen (${widths.page} <= ${widths.screen})`);
    await axeClean(englishPage, 'media, parent, English, phone');
    await english.close();
  } catch (err) {
    console.log(`server log tail:\n${logTail(60)}`);
    throw err;
  }
});

// After (m): the Standard post it published is what the parent sees here.
test('media page in Firefox: a parent sees the published post, a teacher uploads (mf)', { timeout: 300_000, skip: firefoxUnavailable() || false }, async () => {
  const firefox = await launchFirefox({ serverPort: server.httpPort });
  try {
    const home = await firefox.open(`http://127.0.0.1:${server.httpPort}/`);
    const href = (user) => home.evaluate((u) => document.querySelector(`a[data-kind="media"][data-user="${u}"]`).getAttribute('href'), user);
    const parentHref = await href('parent-standard-3');
    const teacherHref = await href('teacher-plus');
    await home.close();

    const parent = await firefox.open(`http://127.0.0.1:${server.httpPort}${parentHref}`);
    const seen = await parent.waitForFunction(() => {
      const figures = [...document.querySelectorAll('article.post figure.medium')];
      const img = document.querySelector('article.post img');
      if (figures.length < 2 || !img || !img.complete || !img.naturalWidth) return null;
      const video = document.querySelector('article.post video');
      return { n: figures.length, imgWidth: img.naturalWidth, videoReady: video.readyState, downloads: document.querySelectorAll('a.download').length };
    }, null, { timeout: 30_000 });
    console.log(`Firefox parent: ${JSON.stringify(seen)}`);
    assert.equal(seen.downloads, 2, 'a download button per file (Confort famille)');
    await axeClean(parent, 'media, parent, Firefox');
    await parent.close();

    // The teacher of the Plus class uploads the photo (input.setFiles of WebDriver BiDi).
    const teacher = await firefox.open(`http://127.0.0.1:${server.httpPort}${teacherHref}`);
    await teacher.waitForFunction(() => document.body.dataset.state === 'ready');
    await teacher.evaluate(() => document.getElementById('start-post').click());
    await teacher.waitForFunction(() => !document.getElementById('editor').hidden);
    const found = await firefox.command('script.evaluate', {
      expression: 'document.getElementById("files")', target: { context: teacher.context }, awaitPromise: false, resultOwnership: 'root',
    });
    await firefox.command('input.setFiles', { context: teacher.context, element: { sharedId: found.result.sharedId }, files: [PHOTO] });
    const done = await teacher.waitForFunction(() => {
      const items = Object.values(window.klassMedia.items);
      const ready = items.length === 1 && items[0].li.dataset.state === 'ready' && document.querySelector('section.review .box-face');
      return ready ? { faces: document.querySelectorAll('section.review .box-face').length, timings: window.klassMedia.timings } : null;
    }, null, { timeout: 180_000 });
    console.log(`Firefox teacher: uploaded and reviewed, ${done.faces} face box(es)`);
    await axeClean(teacher, 'media, teacher review, Firefox');
    await teacher.close();
  } finally {
    await firefox.close();
  }
});
