// A Plus call of 33: three Chromium pages (the teacher and two parents) and 30 participants of
// `loadtest call`, which send a real VP8 clip (made here with ffmpeg) and speak two at a time in
// turns of 5 s. Each page must decode the teacher and the current speakers under their names, and
// show a new speaker (the `speakers` message that drives the highlight) within one second of the
// turn's start.
//
// Needs the `loadtest` binary (LOADTEST_BIN, by default next to SIGNALING_BIN) and ffmpeg.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {
  API_KEY,
  JWT_SECRET,
  api,
  launchBrowser,
  logTail,
  openPage,
  server,
  shutdown,
  sleep,
  startServer,
  waitForState,
} from './harness.mjs';

const CLASS = 'browser-test-plus';
const TEACHER = { user: 'teacher-p', name: 'Mme Garnier', role: 'teacher' };
const PARENTS = [
  { user: 'parent-p1', name: 'Lina Bonnet', role: 'parent' },
  { user: 'parent-p2', name: 'Marc Fontaine', role: 'parent' },
];
const LOAD_PARTICIPANTS = 30;
const TURN_SECONDS = 5;
const SPEAKERS_AT_ONCE = 2;
/** A new speaker must be on every page within this of its turn's start. */
const SHOWN_WITHIN_MS = 1000;

function loadtestBin() {
  if (process.env.LOADTEST_BIN) return process.env.LOADTEST_BIN;
  const signaling = process.env.SIGNALING_BIN;
  return signaling ? path.join(path.dirname(signaling), 'loadtest') : 'loadtest';
}

/** A small VP8 clip, keyframes every second, that the load participants loop. */
function makeClip(dir) {
  const clip = path.join(dir, 'clip.ivf');
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=20', '-t', '6',
    '-c:v', 'libvpx', '-b:v', '120k', '-g', '20', '-keyint_min', '20',
    '-auto-alt-ref', '0', '-lag-in-frames', '0', '-deadline', 'realtime', '-cpu-used', '8',
    '-f', 'ivf', clip,
  ]);
  return clip;
}

/** What a page shows now: tiles (name, participant, decoded frames) and who it says speaks. */
async function pageView(entry) {
  return entry.page.evaluate(() => {
    const c = window.klassCall;
    const tiles = [...document.querySelectorAll('.tile[data-participant-id]')]
      .filter((t) => t.dataset.participantId && t.dataset.slotKind !== 'audio' && !t.hidden)
      .map((t) => {
        const video = t.querySelector('video');
        const quality = video && video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
        return {
          participantId: t.dataset.participantId,
          kind: t.dataset.slotKind,
          name: (t.querySelector('.tile-name') || {}).textContent || '',
          frames: quality ? quality.totalVideoFrames : 0,
          width: video ? video.videoWidth : 0,
        };
      });
    const names = {};
    for (const [id, p] of Object.entries(c.participants)) names[id] = p.display_name;
    return { tiles, names, speakersLog: c.speakersLog };
  });
}

before(async () => {
  await startServer();
  await api('PUT', `/v1/classes/${CLASS}`, { name: 'CM2 (visio Plus)', tier: 'plus' });
  for (const m of [TEACHER, ...PARENTS]) {
    await api('PUT', `/v1/classes/${CLASS}/members/${m.user}`, { display_name: m.name, role: m.role, approved: true });
  }
  await launchBrowser();
});

after(shutdown);

test('(g) Plus call of 3 pages and 30 load participants: names, decoding, and a new speaker shown within 1 s', { timeout: 300_000 }, async () => {
  const teacher = await openPage(CLASS, TEACHER);
  await waitForState(teacher, 'admitted');
  const parents = [];
  for (const p of PARENTS) {
    const entry = await openPage(CLASS, p);
    await waitForState(entry, 'admitted');
    parents.push(entry);
  }
  const everyPage = [teacher, ...parents];

  const dir = fs.mkdtempSync(path.join(server.tmp, 'load-'));
  const clip = makeClip(dir);
  const speakerLog = path.join(dir, 'speakers.jsonl');
  const loadOut = path.join(dir, 'loadtest.log');
  const seconds = 4 * TURN_SECONDS;
  const load = spawn(loadtestBin(), [
    'call', '--url', server.base, '--class', CLASS, '--tier', 'plus', '--no-teacher',
    '--participants', String(LOAD_PARTICIPANTS), '--speakers', String(SPEAKERS_AT_ONCE),
    '--speaker-period', String(TURN_SECONDS), '--video-ivf', clip, '--speaker-log', speakerLog,
    '--warmup', '2', '--seconds', String(seconds), '--join-interval-ms', '30', '--min-delivery', '0.9',
  ], {
    env: { ...process.env, KLASS_API_KEY: API_KEY, KLASS_JWT_SECRET: JWT_SECRET },
    stdio: ['ignore', fs.openSync(loadOut, 'w'), fs.openSync(loadOut, 'a')],
  });
  const loadExit = new Promise((resolve) => load.once('exit', (code) => resolve(code)));

  // While the load runs: every second, what the pages decode.
  const views = [];
  let loadCode = null;
  loadExit.then((code) => { loadCode = code; });
  while (loadCode === null) {
    const at = Date.now();
    views.push({ at, pages: await Promise.all(everyPage.map(pageView)) });
    await sleep(1000);
  }
  const report = fs.readFileSync(loadOut, 'utf8');
  console.log(report.split('\n').filter((l) => /admitted|delivery|ICE|join |to `|PASS|FAIL/.test(l)).join('\n'));
  assert.equal(loadCode, 0, `loadtest failed:\n${report}\nserver log:\n${logTail(40)}`);

  const turns = fs.readFileSync(speakerLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const last = views[views.length - 1].pages;
  // Turns that started while everyone was in: after the first view where a page listed 33, and
  // ended before the load stopped.
  const firstFull = views.find((v) => Object.keys(v.pages[0].names).length >= LOAD_PARTICIPANTS + 2);
  assert.ok(firstFull, 'the teacher\'s page never listed everyone');
  const endAt = views[views.length - 1].at - 2000;
  const checked = turns.filter((t, i) => i > 0 && t.at_unix_ms >= firstFull.at && t.at_unix_ms + TURN_SECONDS * 1000 <= endAt);
  assert.ok(checked.length >= 2, `at least two speaker changes with everyone in (turns ${JSON.stringify(turns.slice(0, 6))})`);

  const latencies = [];
  for (const [pageIdx, entry] of everyPage.entries()) {
    const { speakersLog } = last[pageIdx];
    // Everyone this page ever listed (the load participants leave at the end).
    const names = Object.assign({}, ...views.map((v) => v.pages[pageIdx].names));
    for (const turn of checked) {
      const previous = turns[turns.indexOf(turn) - 1].speakers;
      for (const name of turn.speakers.filter((n) => !previous.includes(n))) {
        const shown = speakersLog.find((m) => m.at >= turn.at_unix_ms && m.ids.some((id) => names[id] === name));
        assert.ok(shown, `${entry.user}: ${name} was never shown speaking in the turn at ${turn.at_unix_ms}`);
        latencies.push(shown.at - turn.at_unix_ms);
        assert.ok(shown.at - turn.at_unix_ms <= SHOWN_WITHIN_MS, `${entry.user}: ${name} shown ${shown.at - turn.at_unix_ms} ms after the change`);
      }
    }
  }
  latencies.sort((a, b) => a - b);
  console.log(`new speaker shown on the pages after: median ${latencies[latencies.length >> 1]} ms, max ${latencies[latencies.length - 1]} ms over ${latencies.length}`);

  // Decoding with the right names, in the view of the middle of a checked turn (speakers settled).
  const turn = checked[checked.length - 1];
  const mid = turn.at_unix_ms + (TURN_SECONDS * 1000) / 2;
  const i = views.findIndex((v) => v.at >= mid);
  assert.ok(i > 0 && i + 1 < views.length, 'views around the last checked turn');
  for (const [pageIdx, entry] of everyPage.entries()) {
    const before = views[i].pages[pageIdx];
    const after = views[i + 1].pages[pageIdx];
    const decoding = (who) => after.tiles.filter((t) => {
      if (t.name !== who || t.width === 0) return false;
      const earlier = before.tiles.find((b) => b.participantId === t.participantId && b.kind === t.kind);
      return earlier && t.frames > earlier.frames;
    });
    const expected = turn.speakers.slice();
    if (entry !== teacher) expected.push(TEACHER.name);
    for (const who of expected) {
      assert.ok(decoding(who).length > 0, `${entry.user} does not decode ${who}: ${JSON.stringify(after.tiles)}`);
    }
    if (entry !== teacher) {
      const stage = after.tiles.find((t) => t.kind === 'stage');
      assert.equal(stage && stage.name, TEACHER.name, `${entry.user}'s stage shows the teacher`);
    }
    // Every tile's name is the name of the participant the server put in it.
    for (const t of after.tiles) assert.equal(t.name, after.names[t.participantId] || t.name);
  }
});
