// End-to-end test of the class visio: the real `signaling` binary (signaling + SFU) and headless
// Chromium pages running the real web client (signaling/web/call.js), with fake camera and microphone.
//
// Run: npm ci && node --test   (see README.md). Needs /usr/bin/chromium and a built binary.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SIGNALING_BIN =
  process.env.SIGNALING_BIN || path.join(os.homedir(), '.cache/klass/target/debug/signaling');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const API_KEY = 'browser-test-api-key-0123456789';
const JWT_SECRET = 'browser-test-jwt-secret-0123456789abcdefghij';
// Debug switch: serve /call/* and /web/* from signaling/web on disk instead of the binary, for a
// binary that embeds an older copy of the page. Off by default: the test checks what the server serves.
const WEB_FROM_DISK = process.env.CALL_WEB_FROM_DISK === '1';

const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

const CLASS_A = 'browser-test-std';
const CLASS_B = 'browser-test-wait';
const CLASS_FREE = 'browser-test-free';
const TEACHER = { user: 'teacher-a', name: 'Mme Lefèvre', role: 'teacher' };
const PARENTS = [
  ['parent-1', 'Alice Martin'],
  ['parent-2', 'Bruno Petit'],
  ['parent-3', 'Chloé Durand'],
  ['parent-4', 'David Leroy'],
  ['parent-5', 'Emma Moreau'],
  ['parent-6', 'Farid Simon'],
  ['parent-7', 'Gaëlle Michel'],
  ['parent-8', 'Hugo Laurent'],
].map(([user, name]) => ({ user, name, role: 'parent' }));
const TEACHER_B = { user: 'teacher-b', name: 'M. Bernard', role: 'teacher' };
const PARENT_B = { user: 'parent-b', name: 'Inès Garcia', role: 'parent' };
const PARENT_B2 = { user: 'parent-b2', name: 'Jules Roux', role: 'parent' };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** KLASS_SCREENSHOTS=dir: a debugging aid, pictures of the pages at a few moments. */
async function screenshot(entry, what) {
  const dir = process.env.KLASS_SCREENSHOTS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await entry.page.screenshot({ path: path.join(dir, `${what}-${entry.user}.png`), fullPage: true });
}

// ---------------------------------------------------------------------------------------------
// Server

let server = null; // { proc, base, logPath, tmp, exited }
let browser = null; // persistent context
let userDataDir = null;
const pages = {}; // user -> { page, openedAt, user, name }

async function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function logTail(lines = 80) {
  if (!server) return '';
  try {
    return fs.readFileSync(server.logPath, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function startServer() {
  if (!fs.existsSync(SIGNALING_BIN)) {
    throw new Error(`no signaling binary at ${SIGNALING_BIN}: build it (cargo build -p signaling) or set SIGNALING_BIN`);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-browser-'));
  const httpPort = await freeTcpPort();
  const udpPort = await freeUdpPort();
  const tcpPort = await freeTcpPort();
  const logPath = path.join(tmp, 'signaling.log');
  const log = fs.openSync(logPath, 'a');
  const proc = spawn(SIGNALING_BIN, ['serve'], {
    env: {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG || 'info',
      KLASS_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      KLASS_API_KEY: API_KEY,
      KLASS_JWT_SECRET: JWT_SECRET,
      KLASS_DATA_DIR: path.join(tmp, 'data'),
      KLASS_SFU_UDP_ADDR: `127.0.0.1:${udpPort}`,
      KLASS_SFU_TCP_ADDR: `127.0.0.1:${tcpPort}`,
      KLASS_SFU_ADVERTISED_IP: '127.0.0.1',
    },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  server = { proc, base: `http://localhost:${httpPort}`, pageBase: `http://localhost:${httpPort}`, logPath, tmp, exited: null };
  proc.on('exit', (code, signal) => {
    server.exited = { code, signal };
  });
  console.log(`signaling: ${SIGNALING_BIN} on 127.0.0.1:${httpPort}, SFU udp ${udpPort} tcp ${tcpPort}, log ${logPath}`);

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (server.exited) {
      throw new Error(`signaling exited early (${JSON.stringify(server.exited)}):\n${logTail()}`);
    }
    try {
      const res = await fetch(`${server.base}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`signaling did not answer /healthz in 60 s:\n${logTail()}`);
    await sleep(200);
  }
  if (WEB_FROM_DISK) {
    server.proxy = await startWebFromDiskProxy(httpPort);
    server.pageBase = `http://localhost:${server.proxy.address().port}`;
    console.log(`CALL_WEB_FROM_DISK: pages from signaling/web through ${server.pageBase}`);
  }
}

async function stopServer() {
  if (server && server.proxy) server.proxy.close();
  if (!server || server.exited) return;
  const { proc } = server;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  const killed = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!killed) {
    proc.kill('SIGKILL');
    await exited;
  }
}

/** CPU seconds (user + system) the server process has used so far, from /proc (Linux). */
function serverCpuSeconds() {
  try {
    const stat = fs.readFileSync(`/proc/${server.proc.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return NaN;
  }
}

/** Share of one core the server used over `ms`. */
async function measureServerCpu(ms) {
  const c0 = serverCpuSeconds();
  const t0 = Date.now();
  await sleep(ms);
  return ((serverCpuSeconds() - c0) / ((Date.now() - t0) / 1000)) * 100;
}

async function api(method, urlPath, body) {
  const res = await fetch(`${server.base}${urlPath}`, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function seedClass(classId, name, members) {
  await api('PUT', `/v1/classes/${classId}`, { name, tier: 'standard' });
  for (const m of members) {
    await api('PUT', `/v1/classes/${classId}/members/${m.user}`, {
      display_name: m.name,
      role: m.role,
      approved: true,
    });
  }
}

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 user token, as the class backend mints them: claims sub and exp. */
function mintJwt(sub, ttlSecs = 3600) {
  // A negative ttl gives an expired token.
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + ttlSecs }));
  const sig = crypto.createHmac('sha256', JWT_SECRET).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

// ---------------------------------------------------------------------------------------------
// Browser

// Runs in the page before its scripts: small video to spare the 2-core machine, and pages that
// "have no camera" (getUserMedia with video fails as it does without one), which the client
// answers by joining with audio only.
function mediaInitScript({ audioOnly }) {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return;
  const original = md.getUserMedia.bind(md);
  md.getUserMedia = (constraints = {}) => {
    if (constraints.video) {
      if (audioOnly) return Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));
      constraints = { ...constraints, video: { width: 320, height: 240, frameRate: 15 } };
    }
    return original(constraints);
  };
}

async function launchBrowser() {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: false, // --headless=new is in the args, as given
    args: CHROMIUM_ARGS,
    viewport: { width: 800, height: 600 },
    // The page speaks French unless the browser prefers English.
    locale: 'fr-FR',
  });
}

// CALL_WEB_FROM_DISK=1: a small proxy in front of the server serves the page and its files from
// signaling/web on disk and passes everything else through (HTTP and the WebSocket upgrade), so that
// the page keeps a real http://localhost origin.
async function startWebFromDiskProxy(targetPort) {
  const web = path.resolve(HERE, '../../web');
  const types = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
  const proxy = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    if (pathname.startsWith('/call/')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(fs.readFileSync(path.join(web, 'call.html')));
    }
    const file = /^\/web\/([a-z]+\.(js|css))$/.exec(pathname);
    if (file && fs.existsSync(path.join(web, file[1]))) {
      res.writeHead(200, { 'content-type': types[path.extname(file[1])] });
      return res.end(fs.readFileSync(path.join(web, file[1])));
    }
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, path: req.url, method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  proxy.on('upgrade', (req, socket, head) => {
    const upstream = net.connect(targetPort, '127.0.0.1', () => {
      const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n');
      upstream.write(`${req.method} ${req.url} HTTP/1.1\r\n${headers}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return proxy;
}

// A browser that prefers English (the context's locale is French).
function englishInitScript() {
  Object.defineProperty(navigator, 'languages', { get: () => ['en-GB', 'en'] });
}

async function openPage(classId, member, { audioOnly = false, token = null, viewport = null, english = false } = {}) {
  const page = await browser.newPage();
  if (viewport) await page.setViewportSize(viewport);
  await page.addInitScript(mediaInitScript, { audioOnly });
  if (english) await page.addInitScript(englishInitScript);
  page.on('pageerror', (err) => console.log(`[${member.user}] page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.log(`[${member.user}] console: ${msg.text()}`);
  });
  const openedAt = Date.now();
  const url = `${server.pageBase}/call/${classId}#token=${token || mintJwt(member.user)}`;
  const res = await page.goto(url);
  assert.equal(res.status(), 200, `GET /call/${classId}`);
  const entry = { page, openedAt, ...member, firstFrameMs: null, allFramesMs: null };
  pages[member.user] = entry;
  return entry;
}

async function closePage(user) {
  const entry = pages[user];
  if (!entry) return;
  delete pages[user];
  await entry.page.close().catch(() => {});
}

async function callState(entry) {
  return entry.page.evaluate(() => {
    const c = window.klassCall;
    return c
      ? {
          state: c.state,
          participantId: c.participantId,
          role: c.role,
          errorCode: c.errorCode,
          leftReason: c.leftReason,
          participants: c.participants,
          mediaMode: c.mediaMode,
          timings: c.timings,
          log: c.log.slice(-30),
        }
      : null;
  });
}

async function waitForState(entry, wanted, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await callState(entry);
    if (last && last.state === wanted) return last;
    if (last && ['refused', 'left', 'disconnected'].includes(last.state) && wanted !== last.state) break;
    await sleep(250);
  }
  throw new Error(
    `${entry.user}: state ${last && last.state} (error ${last && last.errorCode}, left ${last && last.leftReason}), ` +
      `wanted ${wanted}\npage log:\n${last ? last.log.join('\n') : '-'}\nserver log:\n${logTail(40)}`,
  );
}

/**
 * Per remote participant, from pc.getStats() inbound-rtp: audio packetsReceived, video
 * framesDecoded and packetsReceived. Each inbound stream is a receive slot (by its mid), mapped to
 * the participant the server last said is in it (`slots`): a slot's counters go on across changes
 * of participant, so figures are per participant only while slots are stable, as in these calls.
 */
async function inboundByParticipant(entry) {
  return entry.page.evaluate(async () => {
    const c = window.klassCall;
    if (!c || !c.pc || c.pc.connectionState === 'closed') return {};
    const midOfTrack = {};
    for (const t of c.pc.getTransceivers()) if (t.mid !== null) midOfTrack[t.receiver.track.id] = t.mid;
    const out = {};
    const report = await c.pc.getStats();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const mid = s.mid !== undefined ? s.mid : midOfTrack[s.trackIdentifier];
      const slot = c.slots[mid];
      if (!slot || !slot.participant_id) return;
      const kind = s.kind || s.mediaType;
      const p = (out[slot.participant_id] ||= {});
      const k = (p[kind] ||= { packetsReceived: 0, framesDecoded: 0 });
      k.packetsReceived += s.packetsReceived || 0;
      k.framesDecoded += s.framesDecoded || 0;
    });
    return out;
  });
}

async function outboundAudioPackets(entry) {
  return entry.page.evaluate(async () => {
    let n = 0;
    (await window.klassCall.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && (s.kind || s.mediaType) === 'audio') n += s.packetsSent || 0;
    });
    return n;
  });
}

const get = (stats, pid, kind, field) => (stats[pid] && stats[pid][kind] && stats[pid][kind][field]) || 0;

/**
 * Waits until every page in `receivers` decodes video (if `videoFrom` has them) and gets audio
 * from every other participant; records time from page open to first decoded frame.
 */
async function waitForMediaEverywhere(receivers, publishers, { video = true, audioFrom = null, timeoutMs = 120_000 } = {}) {
  const ids = {};
  for (const e of [...receivers, ...publishers]) ids[e.user] = (await callState(e)).participantId;
  const deadline = Date.now() + timeoutMs;
  let missing = [];
  while (Date.now() < deadline) {
    missing = [];
    for (const r of receivers) {
      const stats = await inboundByParticipant(r);
      let anyFrame = false;
      let allFrames = true;
      for (const p of publishers) {
        if (p === r) continue;
        const pid = ids[p.user];
        const frames = get(stats, pid, 'video', 'framesDecoded');
        const audio = get(stats, pid, 'audio', 'packetsReceived');
        if (frames > 0) anyFrame = true;
        else allFrames = false;
        if (video && frames === 0) missing.push(`${r.user}<-${p.user} video`);
        if (audio === 0 && (!audioFrom || audioFrom.includes(p))) missing.push(`${r.user}<-${p.user} audio`);
      }
      if (anyFrame && r.firstFrameMs === null) r.firstFrameMs = Date.now() - r.openedAt;
      if (allFrames && r.allFramesMs === null) r.allFramesMs = Date.now() - r.openedAt;
    }
    if (missing.length === 0) return ids;
    await sleep(500);
  }
  const dump = [];
  for (const r of receivers) dump.push(`${r.user}: ${JSON.stringify(await inboundByParticipant(r))}`);
  throw new Error(`no media after ${timeoutMs} ms: ${missing.join(', ')}\nids ${JSON.stringify(ids)}\n${dump.join('\n')}\nserver log:\n${logTail(40)}`);
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  await startServer();
  await seedClass(CLASS_A, 'CE2 B (test navigateur)', [TEACHER, ...PARENTS]);
  await seedClass(CLASS_B, 'CM1 A (test salle d\'attente)', [TEACHER_B, PARENT_B, PARENT_B2]);
  await api('PUT', `/v1/classes/${CLASS_FREE}`, { name: 'CP (formule gratuite)', tier: 'free' });
  await api('PUT', `/v1/classes/${CLASS_FREE}/members/${TEACHER_B.user}`, {
    display_name: TEACHER_B.name, role: 'teacher', approved: true,
  });
  await launchBrowser();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stopServer();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  if (server && process.env.KLASS_KEEP_LOG !== '1') fs.rmSync(server.tmp, { recursive: true, force: true });
});

const pA = () => [pages[TEACHER.user], pages[PARENTS[0].user], pages[PARENTS[1].user]];

test('(a) three pages in one Standard session decode video and receive audio from each other', { timeout: 300_000 }, async () => {
  const teacher = await openPage(CLASS_A, TEACHER);
  const t = await waitForState(teacher, 'admitted');
  assert.equal(t.role, 'teacher');
  assert.ok(t.timings.admitted !== undefined);
  // A Standard session shows a countdown.
  assert.equal(await teacher.page.locator('#timer').isVisible(), true, 'countdown shown on Standard');
  assert.equal(await teacher.page.locator('#moderator-controls').isVisible(), true, 'teacher controls shown');

  await openPage(CLASS_A, PARENTS[0]);
  await waitForState(pages[PARENTS[0].user], 'admitted');
  await openPage(CLASS_A, PARENTS[1]);
  const p2 = await waitForState(pages[PARENTS[1].user], 'admitted');
  assert.equal(p2.role, 'parent');
  assert.equal(await pages[PARENTS[1].user].page.locator('#moderator-controls').isVisible(), false, 'no teacher controls for parents');

  const trio = pA();
  const ids = await waitForMediaEverywhere(trio, trio);

  // Rising: two samples three seconds apart.
  const first = await Promise.all(trio.map(inboundByParticipant));
  await sleep(3000);
  const second = await Promise.all(trio.map(inboundByParticipant));
  trio.forEach((r, i) => {
    for (const p of trio) {
      if (p === r) continue;
      const pid = ids[p.user];
      for (const [kind, field] of [['video', 'framesDecoded'], ['video', 'packetsReceived'], ['audio', 'packetsReceived']]) {
        const a = get(first[i], pid, kind, field);
        const b = get(second[i], pid, kind, field);
        assert.ok(b > a, `${r.user} <- ${p.user}: ${kind} ${field} not rising (${a} -> ${b})`);
      }
    }
  });

  // Names in the tiles: each page shows the two others by display name.
  for (const r of trio) {
    for (const p of trio) {
      if (p === r) continue;
      const tile = r.page.locator(`.tile[data-participant-id="${ids[p.user]}"]:not([data-slot-kind="self"]) .tile-name`).first();
      assert.equal(await tile.textContent(), p.name, `${r.user} shows ${p.user}'s name`);
    }
  }

  for (const r of trio) {
    const s = await callState(r);
    console.log(
      `timing ${r.user}: open->joined ${Math.round(s.timings.joined)} ms, open->admitted ${Math.round(s.timings.admitted)} ms, ` +
        `open->ICE connected ${Math.round(s.timings.connected)} ms, open->first remote frame rendered ${Math.round(s.timings.firstFrame)} ms, ` +
        `open->frames decoded from all others ${r.allFramesMs} ms (500 ms polling)`,
    );
  }
  const cpu = await measureServerCpu(10_000);
  console.log(`server (signaling + SFU) CPU with 3 participants (3 cameras 320x240@15 + 3 microphones): ${cpu.toFixed(1)}% of one core over 10 s`);
});

/** What a page shows of the others: its visible slot tiles, with their video's decoding figures. */
async function visibleTiles(entry) {
  return entry.page.evaluate(() =>
    [...document.querySelectorAll('.tile[data-slot-kind="stage"], .tile[data-slot-kind="thumbnail"]')]
      .filter((tile) => !tile.hidden)
      .map((tile) => {
        const video = tile.querySelector('video');
        const quality = video.getVideoPlaybackQuality();
        return {
          mid: tile.dataset.slotMid,
          slotKind: tile.dataset.slotKind,
          participantId: tile.dataset.participantId,
          source: tile.dataset.source,
          name: tile.querySelector('.tile-name').textContent,
          label: tile.getAttribute('aria-label'),
          videoWidth: video.videoWidth,
          frames: quality.totalVideoFrames,
        };
      }));
}

test('(a2) each page shows the two others in decoding tiles, the teacher on the parents\' stage, and a roster of 3', { timeout: 120_000 }, async () => {
  const trio = pA();
  assert.ok(trio.every(Boolean), 'pages of (a)');
  const ids = {};
  for (const e of trio) ids[e.user] = (await callState(e)).participantId;
  const teacherId = ids[TEACHER.user];

  // The video elements' own figures: the picture has a size and its frame count goes up. On the
  // teacher's page the stage follows the latest speaker, so the parents may swap between the
  // stage and a thumbnail: frames are compared per tile, names checked in every sample.
  const nameOf = Object.fromEntries(trio.map((e) => [ids[e.user], e.name]));
  const checkNames = (r, tiles) => {
    for (const t of tiles) {
      assert.notEqual(t.participantId, ids[r.user], `${r.user} sees itself in slot ${t.mid}`);
      assert.equal(t.name, nameOf[t.participantId], `${r.user}: name on slot ${t.mid} (${t.participantId})`);
      assert.ok(t.label.startsWith(t.name), `${r.user}: accessible name of slot ${t.mid}: ${t.label}`);
    }
  };
  const showsAll = (r, tiles) => trio.every((p) => p === r
    || tiles.some((t) => t.participantId === ids[p.user] && t.videoWidth > 0 && t.frames > 0));
  let first = [];
  await waitForCondition(async () => {
    first = await Promise.all(trio.map(visibleTiles));
    return trio.every((r, i) => showsAll(r, first[i]));
  }, 30_000, 'every page has a decoding tile for each other');
  await sleep(2000);
  const second = await Promise.all(trio.map(visibleTiles));
  trio.forEach((r, i) => {
    checkNames(r, first[i]);
    checkNames(r, second[i]);
    assert.ok(showsAll(r, second[i]), `${r.user} shows both others: ${JSON.stringify(second[i])}`);
    for (const b of second[i]) {
      const a = first[i].find((t) => t.mid === b.mid);
      if (a) assert.ok(b.frames > a.frames, `${r.user}: slot ${b.mid} does not decode (${a.frames} -> ${b.frames} frames)`);
    }
  });

  const nSlots = await Promise.all(trio.map((e) => e.page.evaluate(() => window.klassCall.nSlotsMessages)));
  console.log(`slots messages received so far: ${trio.map((e, i) => `${e.user} ${nSlots[i]}`).join(', ')}`);

  // A parent's stage shows the teacher's camera (no pin, no screen share).
  for (const parent of trio.slice(1)) {
    const stage = second[trio.indexOf(parent)].find((t) => t.slotKind === 'stage');
    assert.ok(stage, `${parent.user} has a stage`);
    assert.equal(stage.participantId, teacherId, `${parent.user}'s stage shows the teacher`);
    assert.equal(stage.name, TEACHER.name);
    assert.equal(stage.source, 'camera');
  }

  // The roster lists the three, with their roles, oneself first.
  for (const r of trio) {
    assert.equal(await r.page.locator('#roster > li').count(), 3, `${r.user}'s roster`);
    assert.equal(await r.page.locator('#roster-count').textContent(), '3');
    const names = await r.page.locator('#roster .roster-name').allTextContents();
    assert.equal(names[0], 'Vous');
    for (const p of trio) {
      if (p === r) continue;
      const li = r.page.locator(`#roster > li[data-participant-id="${ids[p.user]}"]`);
      assert.equal(await li.locator('.roster-name').textContent(), p.name);
      assert.equal(await li.getAttribute('data-role'), p.role);
    }
  }

  for (const r of trio) await screenshot(r, 'a2');

  // Pin from the roster: the teacher puts a parent on its stage, then goes back to the default.
  const teacher = trio[0];
  const pinned = trio[2];
  await teacher.page.locator(`#roster > li[data-participant-id="${ids[pinned.user]}"] button[data-action="pin"]`).click();
  const tStage = teacher.page.locator('#stage .tile[data-slot-kind="stage"]');
  await waitForCondition(async () => (await tStage.getAttribute('data-participant-id')) === ids[pinned.user], 20_000,
    `the teacher's stage shows the pinned ${pinned.user}`);
  assert.equal(await tStage.locator('.tile-name').textContent(), pinned.name);
  await teacher.page.locator('#btn-unpin').click();
  assert.equal(await teacher.page.locator('#btn-unpin').isVisible(), false);

  // Someone speaks, someone is highlighted: the fake microphones beep.
  await waitForCondition(async () => (await teacher.page.locator('#roster > li[data-speaking="true"]').count()) > 0, 20_000,
    'a speaker is highlighted in the teacher\'s roster');
});

test('(b) a parent muted by the teacher stops reaching the others, video goes on', { timeout: 180_000 }, async () => {
  const [teacher, muted, other] = pA();
  assert.ok(teacher && muted && other, 'pages of (a)');
  const ids = {};
  for (const e of [teacher, muted, other]) ids[e.user] = (await callState(e)).participantId;
  const mutedId = ids[muted.user];

  // The teacher clicks "Couper le micro" on the parent's tile.
  await teacher.page.locator(`#roster li[data-participant-id="${mutedId}"] button[data-action="mute"]`).click();
  await waitForCondition(async () => (await callState(other)).participants[mutedId]?.audio_muted === true, 20_000,
    `${other.user} sees ${muted.user} muted (mute_changed)`);

  // Play a modified client: the muted page turns its microphone back on behind the server's back.
  // Its browser keeps sending audio; the SFU must drop it.
  await muted.page.evaluate(() => {
    for (const s of window.klassCall.pc.getSenders()) if (s.track && s.track.kind === 'audio') s.track.enabled = true;
  });
  await sleep(2000); // packets already in flight

  const sentBefore = await outboundAudioPackets(muted);
  const before = { t: await inboundByParticipant(teacher), o: await inboundByParticipant(other) };
  await sleep(4000);
  const sentAfter = await outboundAudioPackets(muted);
  const afterS = { t: await inboundByParticipant(teacher), o: await inboundByParticipant(other) };

  assert.ok(sentAfter > sentBefore, `the muted page still sends audio (${sentBefore} -> ${sentAfter})`);
  for (const [who, k] of [[teacher, 't'], [other, 'o']]) {
    const a0 = get(before[k], mutedId, 'audio', 'packetsReceived');
    const a1 = get(afterS[k], mutedId, 'audio', 'packetsReceived');
    assert.equal(a1, a0, `${who.user} still receives ${muted.user}'s audio after the mute (${a0} -> ${a1})`);
    const v0 = get(before[k], mutedId, 'video', 'framesDecoded');
    const v1 = get(afterS[k], mutedId, 'video', 'framesDecoded');
    assert.ok(v1 > v0, `${who.user}: ${muted.user}'s video stopped too (${v0} -> ${v1})`);
  }
  // Control: the teacher's audio still reaches the other parent.
  const c0 = get(before.o, ids[teacher.user], 'audio', 'packetsReceived');
  const c1 = get(afterS.o, ids[teacher.user], 'audio', 'packetsReceived');
  assert.ok(c1 > c0, `teacher's audio to ${other.user} stopped (${c0} -> ${c1})`);
  // The muted parent was told, and its page shows its microphone off.
  assert.equal(await muted.page.locator('#alert').getAttribute('data-code'), 'muted_by_moderator');
  assert.equal(await muted.page.locator('#btn-mic').textContent(), 'Réactiver mon micro');
  console.log(`mute: ${muted.user} sent ${sentAfter - sentBefore} audio packets in 4 s, others received 0`);
});

test('(b2) asked by the teacher, the muted parent unmutes and is heard again', { timeout: 120_000 }, async () => {
  const [teacher, muted, other] = pA();
  assert.ok(teacher && muted && other, 'pages of (a)');
  const mutedId = (await callState(muted)).participantId;
  await teacher.page.locator(`#roster li[data-participant-id="${mutedId}"] button[data-action="request_unmute"]`).click();
  const prompt = muted.page.locator('#unmute-prompt');
  await prompt.waitFor({ state: 'visible', timeout: 20_000 });
  await muted.page.locator('#unmute-accept').click();
  await waitForCondition(async () => (await callState(other)).participants[mutedId]?.audio_muted === false, 20_000,
    `${other.user} sees ${muted.user} unmuted`);
  await sleep(1000);
  const a0 = get(await inboundByParticipant(other), mutedId, 'audio', 'packetsReceived');
  await sleep(3000);
  const a1 = get(await inboundByParticipant(other), mutedId, 'audio', 'packetsReceived');
  assert.ok(a1 > a0, `${other.user} does not hear ${muted.user} again (${a0} -> ${a1})`);
});

async function waitForCondition(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await sleep(250);
  }
  throw new Error(`timed out: ${what}\nserver log:\n${logTail(30)}`);
}

test('(c) with 8 in the Standard session, a 9th is refused with room_full', { timeout: 400_000 }, async () => {
  assert.ok(pages[TEACHER.user], 'pages of (a)');
  const extra = PARENTS.slice(2, 7);
  for (const m of extra) {
    const e = await openPage(CLASS_A, m, { audioOnly: true });
    const s = await waitForState(e, 'admitted', 90_000);
    assert.equal(s.mediaMode, 'audio', `${m.user} joined audio-only`);
  }
  // Everyone sees the seven others.
  await waitForCondition(async () => {
    const s = await callState(pages[TEACHER.user]);
    return Object.keys(s.participants).filter((id) => id !== s.participantId).length === 7;
  }, 30_000, 'the teacher sees 7 others');
  const last = pages[extra[extra.length - 1].user];
  // Video from the three cameras (stage and thumbnails); audio from the teacher, who always has an
  // audio slot (the others' take turns in the slots as they speak).
  const [teacher] = pA();
  await waitForMediaEverywhere([last], pA(), { audioFrom: [teacher], timeoutMs: 120_000 });
  const ls = await callState(last);
  console.log(`timing ${last.user} (8th, audio-only): open->admitted ${Math.round(ls.timings.admitted)} ms, ` +
    `open->first slots ${Math.round(ls.timings.slots)} ms, open->first remote frame rendered ${Math.round(ls.timings.firstFrame)} ms; ` +
    `polling from the test: first decoded frame ${last.firstFrameMs} ms, from all 3 cameras ${last.allFramesMs} ms (500 ms polling)`);
  const cpu = await measureServerCpu(10_000);
  console.log(`server (signaling + SFU) CPU with 8 participants (3 cameras 320x240@15 + 8 microphones, 21 video and 56 audio forwards): ${cpu.toFixed(1)}% of one core over 10 s`);

  const ninth = await openPage(CLASS_A, PARENTS[7], { audioOnly: true });
  const s = await waitForState(ninth, 'refused', 60_000);
  assert.equal(s.errorCode, 'room_full');
  const status = ninth.page.locator('#status');
  assert.equal(await status.getAttribute('data-code'), 'room_full');
  assert.match(await status.textContent(), /complète/);
  assert.equal(await status.isVisible(), true);
  // The session goes on for the 8.
  assert.equal((await callState(pages[TEACHER.user])).state, 'admitted');
});

test('(d) a parent who arrives before the teacher waits, then is admitted when the teacher starts', { timeout: 240_000 }, async () => {
  // Free the machine: class A's pages leave.
  for (const user of Object.keys(pages)) await closePage(user);

  // The parent is on a phone, in portrait: fewer thumbnails, one column, nothing off the side.
  const parent = await openPage(CLASS_B, PARENT_B, { viewport: { width: 390, height: 844 } });
  await waitForState(parent, 'waiting', 60_000);
  const status = parent.page.locator('#status');
  assert.match(await status.textContent(), /pas encore démarré/);
  assert.equal(await status.isVisible(), true);
  const declared = await parent.page.evaluate(() => window.klassCall.declaredSlots.map((slot) => slot.kind));
  assert.deepEqual(declared.filter((k) => k === 'thumbnail').length, 4, `a phone declares 4 thumbnails: ${declared}`);
  assert.equal(declared.filter((k) => k === 'audio').length, 3);
  assert.equal(declared.filter((k) => k === 'stage').length, 1);
  await sleep(2000);
  assert.equal((await callState(parent)).state, 'waiting', 'still waiting without a teacher');

  const teacher = await openPage(CLASS_B, TEACHER_B);
  const teacherOpened = Date.now();
  await waitForState(teacher, 'admitted', 60_000);
  const ps = await waitForState(parent, 'admitted', 60_000);
  const admittedAfter = Date.now() - teacherOpened;
  assert.ok(Object.values(ps.participants).some((p) => p.display_name === TEACHER_B.name), 'the parent sees the teacher');
  await waitForMediaEverywhere([parent, teacher], [parent, teacher]);
  await screenshot(parent, 'd-phone');
  const offenders = await parent.page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    return [...document.querySelectorAll('body *')]
      .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > width + 0.5)
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className} right ${el.getBoundingClientRect().right} > ${width}`);
  });
  assert.deepEqual(offenders, [], 'elements wider than the phone screen');
  assert.equal(await parent.page.locator('#stage .tile[data-slot-kind="stage"] .tile-name').textContent(), TEACHER_B.name);
  assert.equal(await parent.page.locator('#btn-mic').isVisible(), true);
  // Keyboard: Tab reaches the controls, each with an accessible name.
  const unnamed = await parent.page.evaluate(() => [...document.querySelectorAll('button')]
    .filter((b) => !b.hidden && b.offsetParent !== null && !(b.getAttribute('aria-label') || b.textContent).trim())
    .map((b) => b.outerHTML));
  assert.deepEqual(unnamed, [], 'buttons without a name');
  await parent.page.locator('#btn-mic').focus();
  await parent.page.keyboard.press('Enter');
  await waitForCondition(async () => (await parent.page.locator('#btn-mic').textContent()) === 'Réactiver mon micro', 10_000,
    'Enter on the microphone button mutes');
  await parent.page.keyboard.press('Enter');
  await waitForCondition(async () => (await parent.page.locator('#btn-mic').textContent()) === 'Couper mon micro', 10_000,
    'Enter again unmutes');
  const ts = await callState(teacher);
  console.log(`timing waiting room: parent admitted ${admittedAfter} ms after the teacher's page opened; ` +
    `teacher open->admitted ${Math.round(ts.timings.admitted)} ms, open->first remote frame rendered ${Math.round(ts.timings.firstFrame)} ms`);
});

/** Per receive slot: who the server says is in it, what it shows, and its counters. */
async function inboundBySlot(entry) {
  return entry.page.evaluate(async () => {
    const c = window.klassCall;
    const out = [];
    if (!c || !c.pc || c.pc.connectionState === 'closed') return out;
    (await c.pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const slot = c.slots[s.mid];
      if (!slot) return;
      out.push({
        participantId: slot.participant_id,
        mid: s.mid,
        slotKind: slot.kind,
        kind: s.kind,
        source: slot.source,
        packetsReceived: s.packetsReceived || 0,
        framesDecoded: s.framesDecoded || 0,
      });
    });
    return out;
  });
}

test('(e) teacher controls: screen share, camera off, lock, remove, end session', { timeout: 240_000 }, async () => {
  const teacher = pages[TEACHER_B.user];
  const parent = pages[PARENT_B.user];
  assert.ok(teacher && parent, 'pages of (d)');
  const tid = (await callState(teacher)).participantId;
  const pid = (await callState(parent)).participantId;

  // Screen share: the teacher offers a new track (source screen_share); it takes the parent's
  // stage, whose frames go on being decoded.
  await teacher.page.locator('#btn-share').click();
  const stage = parent.page.locator('#stage .tile[data-slot-kind="stage"]');
  await waitForCondition(async () => {
    const slots = await inboundBySlot(parent);
    return slots.some((t) => t.participantId === tid && t.slotKind === 'stage' && t.source === 'screen_share' && t.framesDecoded > 0)
      && (await stage.getAttribute('data-source')) === 'screen_share';
  }, 60_000, 'the parent\'s stage shows the teacher\'s screen share');
  assert.equal(await stage.getAttribute('data-participant-id'), tid);
  assert.equal(await stage.locator('video').isVisible(), true, 'screen share on the stage');
  assert.equal(await stage.locator('.tile-name').textContent(), `Écran de ${TEACHER_B.name}`);
  await teacher.page.locator('#btn-share').click(); // stop sharing
  await waitForCondition(async () => (await stage.getAttribute('data-source')) === 'camera', 30_000,
    'the stage goes back to the teacher\'s camera');

  // Camera off by the teacher: the SFU stops forwarding the parent's video.
  await teacher.page.locator(`#roster li[data-participant-id="${pid}"] button[data-action="disable_camera"]`).click();
  await waitForCondition(async () => (await parent.page.locator('#btn-cam').textContent()) === 'Réactiver ma caméra',
    20_000, 'the parent is told its camera is off');
  await sleep(1500);
  const v0 = get(await inboundByParticipant(teacher), pid, 'video', 'packetsReceived');
  await sleep(3000);
  const v1 = get(await inboundByParticipant(teacher), pid, 'video', 'packetsReceived');
  assert.equal(v1, v0, `the parent's video still reaches the teacher (${v0} -> ${v1})`);

  // Lock: a newcomer is refused with session_locked; unlocked, they get in.
  await teacher.page.locator('#btn-lock').click();
  await parent.page.locator('#lock-indicator').waitFor({ state: 'visible', timeout: 20_000 });
  const late = await openPage(CLASS_B, PARENT_B2, { audioOnly: true });
  const refused = await waitForState(late, 'refused', 60_000);
  assert.equal(refused.errorCode, 'session_locked');
  assert.match(await late.page.locator('#status').textContent(), /verrouillé/);
  await closePage(PARENT_B2.user);
  await teacher.page.locator('#btn-lock').click();
  await parent.page.locator('#lock-indicator').waitFor({ state: 'hidden', timeout: 20_000 });
  const again = await openPage(CLASS_B, PARENT_B2, { audioOnly: true });
  const joined = await waitForState(again, 'admitted', 60_000);

  // Remove.
  await teacher.page.locator(`#roster li[data-participant-id="${joined.participantId}"] button[data-action="remove"]`).click();
  const removed = await waitForState(again, 'left', 30_000);
  assert.equal(removed.leftReason, 'removed_by_moderator');
  await waitForCondition(async () => (await teacher.page.locator(`#roster li[data-participant-id="${joined.participantId}"]`).count()) === 0,
    20_000, 'the removed parent\'s roster entry goes away');

  // End the session (two clicks: the button asks for confirmation).
  await teacher.page.locator('#btn-end').click();
  await teacher.page.locator('#btn-end').click();
  const ended = await waitForState(parent, 'left', 30_000);
  assert.equal(ended.leftReason, 'session_ended_by_moderator');
  assert.match(await parent.page.locator('#status').textContent(), /terminé la session/);
  assert.equal((await waitForState(teacher, 'left', 30_000)).leftReason, 'session_ended_by_moderator');
});

test('(f) refused joins are explained on the page: tier, not a member, bad token', { timeout: 120_000 }, async () => {
  const cases = [
    { classId: CLASS_FREE, member: TEACHER_B, token: null, code: 'tier_forbids_visio', text: /formule/ },
    { classId: CLASS_B, member: { user: 'stranger', name: 'Inconnu' }, token: null, code: 'not_a_member', text: /membre/ },
    { classId: CLASS_B, member: PARENT_B, token: mintJwt(PARENT_B.user, -3600), code: 'unauthorized', text: /expiré/ },
    // In English for a browser that prefers it.
    { classId: CLASS_B, member: PARENT_B, token: mintJwt(PARENT_B.user, -3600), code: 'unauthorized', text: /has expired/, english: true },
  ];
  for (const c of cases) {
    const entry = await openPage(c.classId, c.member, { audioOnly: true, token: c.token, english: c.english });
    const s = await waitForState(entry, 'refused', 30_000);
    assert.equal(s.errorCode, c.code, `${c.member.user} in ${c.classId}`);
    const status = entry.page.locator('#status');
    assert.equal(await status.getAttribute('data-code'), c.code);
    assert.match(await status.textContent(), c.text);
    await closePage(c.member.user);
  }
});
