// The browser tests' harness: the real `signaling` binary on free loopback ports, headless
// Chromium with fake camera and microphone, the pages of the call, and what they show.
// Used by call.test.mjs and large_call.test.mjs.

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

export const HERE = path.dirname(fileURLToPath(import.meta.url));
const SIGNALING_BIN =
  process.env.SIGNALING_BIN || path.join(os.homedir(), '.cache/klass/target/debug/signaling');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const API_KEY = 'browser-test-api-key-0123456789';
export const JWT_SECRET = 'browser-test-jwt-secret-0123456789abcdefghij';
// Debug switch: serve /call/* and /web/* from signaling/web on disk instead of the binary, for a
// binary that embeds an older copy of the page. Off by default: the test checks what the server serves.
const WEB_FROM_DISK = process.env.CALL_WEB_FROM_DISK === '1';

export const CHROMIUM_ARGS = [
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

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** KLASS_SCREENSHOTS=dir: a debugging aid, pictures of the pages at a few moments. */
export async function screenshot(entry, what) {
  const dir = process.env.KLASS_SCREENSHOTS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await entry.page.screenshot({ path: path.join(dir, `${what}-${entry.user}.png`), fullPage: true });
}

// ---------------------------------------------------------------------------------------------
// Server

export let server = null; // { proc, base, logPath, tmp, exited }
let browser = null; // persistent context
let userDataDir = null;
export const pages = {}; // user -> { page, openedAt, user, name }

export async function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function logTail(lines = 80) {
  if (!server) return '';
  try {
    return fs.readFileSync(server.logPath, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * `sfuIp`: the address the SFU binds (UDP and ICE-TCP) and advertises; loopback by default.
 * network.test.mjs uses an address that its network namespaces reach. `env`: more environment
 * variables for the server (e.g. KLASS_TURN_URLS), over the defaults. `demo`: `serve --demo`, the
 * demo school and its home page at `/`.
 */
export async function startServer({ sfuIp = '127.0.0.1', env = {}, demo = false } = {}) {
  if (!fs.existsSync(SIGNALING_BIN)) {
    throw new Error(`no signaling binary at ${SIGNALING_BIN}: build it (cargo build -p signaling) or set SIGNALING_BIN`);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-browser-'));
  const httpPort = await freeTcpPort();
  const udpPort = await freeUdpPort();
  const tcpPort = await freeTcpPort();
  const logPath = path.join(tmp, 'signaling.log');
  const log = fs.openSync(logPath, 'a');
  const proc = spawn(SIGNALING_BIN, demo ? ['serve', '--demo'] : ['serve'], {
    env: {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG || 'info',
      KLASS_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      KLASS_API_KEY: API_KEY,
      KLASS_JWT_SECRET: JWT_SECRET,
      KLASS_DATA_DIR: path.join(tmp, 'data'),
      KLASS_SFU_UDP_ADDR: `${sfuIp}:${udpPort}`,
      KLASS_SFU_TCP_ADDR: `${sfuIp}:${tcpPort}`,
      KLASS_SFU_ADVERTISED_IP: sfuIp,
      ...env,
    },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  server = { proc, base: `http://localhost:${httpPort}`, pageBase: `http://localhost:${httpPort}`, httpPort, udpPort, tcpPort, logPath, tmp, exited: null };
  proc.on('exit', (code, signal) => {
    server.exited = { code, signal };
  });
  console.log(`signaling: ${SIGNALING_BIN} on 127.0.0.1:${httpPort}, SFU ${sfuIp} udp ${udpPort} tcp ${tcpPort}, log ${logPath}`);

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

export async function stopServer() {
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
/**
 * A process's parent and CPU time so far (user + system, in clock ticks of USER_HZ 100), from
 * /proc/<pid>/stat; null when it is gone.
 */
export function procStat(pid) {
  let stat;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
}

export function serverCpuSeconds() {
  const stat = procStat(server.proc.pid);
  return stat ? stat.ticks / 100 : NaN;
}

/** Share of one core the server used over `ms`. */
export async function measureServerCpu(ms) {
  const c0 = serverCpuSeconds();
  const t0 = Date.now();
  await sleep(ms);
  return ((serverCpuSeconds() - c0) / ((Date.now() - t0) / 1000)) * 100;
}

export async function api(method, urlPath, body) {
  const res = await fetch(`${server.base}${urlPath}`, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** `options`: the class's `ClassOptions`, e.g. `{ visio_allow_unencrypted: true }`. */
export async function seedClass(classId, name, members, { tier = 'standard', options = undefined } = {}) {
  await api('PUT', `/v1/classes/${classId}`, { name, tier, options });
  for (const m of members) {
    await api('PUT', `/v1/classes/${classId}/members/${m.user}`, {
      display_name: m.name,
      role: m.role,
      approved: true,
    });
  }
}

export function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 user token, as the class backend mints them: claims sub and exp. */
export function mintJwt(sub, ttlSecs = 3600) {
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
export function mediaInitScript({ audioOnly, camera }) {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return;
  const original = md.getUserMedia.bind(md);
  md.getUserMedia = (constraints = {}) => {
    if (constraints.video) {
      if (audioOnly) return Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));
      // The device chosen on the pre-join screen stays chosen.
      const deviceId = typeof constraints.video === 'object' ? constraints.video.deviceId : undefined;
      constraints = { ...constraints, video: { deviceId, width: camera.width, height: camera.height, frameRate: 15 } };
    }
    return original(constraints);
  };
}

/**
 * Runs in a page before its scripts: no encoded transforms, as in a browser that cannot encrypt
 * (docs/e2ee.md), so the page sends in clear (in a class that allows unencrypted calls).
 */
export function noEncodedTransforms() {
  delete window.RTCRtpScriptTransform;
  if (window.RTCRtpSender) delete RTCRtpSender.prototype.createEncodedStreams;
  if (window.RTCRtpReceiver) delete RTCRtpReceiver.prototype.createEncodedStreams;
}

/** `extraArgs`: more Chromium switches, e.g. `--use-file-for-fake-audio-capture=<wav>`. */
export async function launchBrowser({ extraArgs = [] } = {}) {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: false, // --headless=new is in the args, as given
    args: [...CHROMIUM_ARGS, ...extraArgs],
    viewport: { width: 800, height: 600 },
    // The page speaks French unless the browser prefers English.
    locale: 'fr-FR',
  });
}

/** Closes the shared browser and removes its profile (shutdown() does it too), e.g. to launch afresh. */
export async function closeBrowser() {
  if (browser) await browser.close().catch(() => {});
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  browser = null;
  userDataDir = null;
}

/**
 * Another Chromium besides the shared one, e.g. inside a network namespace through a wrapper
 * script (`executablePath`). The caller closes it (`close()`).
 */
export async function launchExtraBrowser({ executablePath = CHROMIUM, extraArgs = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath,
    headless: false,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    viewport: { width: 800, height: 600 },
    locale: 'fr-FR',
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A Chromium inside a client namespace of netns.mjs, for pages that reach the server through the
 * lab: the server's web port is forwarded to the hub address, and that origin (http://10.x, not
 * "potentially trustworthy") is made a secure context, or Chromium would give it no
 * getUserMedia. `beforeLaunch(base)` runs first (a firewall that lets that port through).
 * Returns `{ base, browser }`; `browser.close()` is the caller's.
 */
export async function launchBrowserInNamespace(lab, client, { extraArgs = [], beforeLaunch = null } = {}) {
  const base = await lab.forwardTcp(server.httpPort);
  if (beforeLaunch) beforeLaunch(base);
  const browser = await launchExtraBrowser({
    executablePath: client.chromiumWrapper(),
    extraArgs: [`--unsafely-treat-insecure-origin-as-secure=${base}`, ...extraArgs],
  });
  return { base, browser };
}

// CALL_WEB_FROM_DISK=1: a small proxy in front of the server serves the page and its files from
// signaling/web on disk and passes everything else through (HTTP and the WebSocket upgrade), so that
// the page keeps a real http://localhost origin.
export async function startWebFromDiskProxy(targetPort) {
  const web = path.resolve(HERE, '../../web');
  const types = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
  const proxy = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    if (pathname.startsWith('/call/')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(fs.readFileSync(path.join(web, 'call.html')));
    }
    const file = /^\/web\/([a-z0-9-]+\.(js|css))$/.exec(pathname);
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
export function englishInitScript() {
  Object.defineProperty(navigator, 'languages', { get: () => ['en-GB', 'en'] });
}

/**
 * Opens the call page of `member` and enters the call from the pre-join screen (`enter: false`:
 * stays on it). `camera`: the fake camera's size. 320x240 spares the machine; from 360 lines the page sends
 * simulcast (two layers). `context` and `base`: another browser (`launchExtraBrowser`) and the
 * server's address as it sees it. `initScripts`: more functions to run in the page before its
 * scripts (e.g. `noEncodedTransforms`), each a function or `[function, argument]`.
 */
export async function openPage(classId, member, { audioOnly = false, token = null, viewport = null, english = false, camera = { width: 320, height: 240 }, context = null, base = null, initScripts = [], enter = true } = {}) {
  const page = await newPage(member.user, { audioOnly, viewport, english, camera, context, initScripts });
  const openedAt = Date.now();
  const url = `${base || server.pageBase}/call/${classId}#token=${token || mintJwt(member.user)}`;
  const res = await page.goto(url);
  assert.equal(res.status(), 200, `GET /call/${classId}`);
  const entry = { page, openedAt, ...member, firstFrameMs: null, allFramesMs: null };
  pages[member.user] = entry;
  if (enter) await enterCall(page);
  return entry;
}

/** A new tab with the fake media of `mediaInitScript` and the page's errors in the test output. */
async function newPage(user, { audioOnly = false, viewport = null, english = false, camera = { width: 320, height: 240 }, context = null, initScripts = [] } = {}) {
  const page = await (context || browser).newPage();
  if (viewport) await page.setViewportSize(viewport);
  await page.addInitScript(mediaInitScript, { audioOnly, camera });
  if (english) await page.addInitScript(englishInitScript);
  for (const script of initScripts) await page.addInitScript(...(Array.isArray(script) ? script : [script]));
  page.on('pageerror', (err) => console.log(`[${user}] page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.log(`[${user}] console: ${msg.text()}`);
  });
  return page;
}

/**
 * The demo school's way in (`startServer({ demo: true })`): opens the home page `/` and clicks the
 * link of `kind` (`call` or `media`) of user `user`, as a person does. Same options as `openPage`;
 * the page stays where the link leads (for a call, the pre-join screen: `enterCall`). Returns the
 * entry, registered in `pages` under `user`, with `name`: the link's text.
 */
export async function openFromHome(user, { kind = 'call', ...options } = {}) {
  const page = await newPage(user, options);
  const openedAt = Date.now();
  const res = await page.goto(`${server.pageBase}/`);
  assert.equal(res.status(), 200, 'GET /');
  const link = page.locator(`a[data-kind="${kind}"][data-user="${user}"]`);
  const name = (await link.textContent()).trim();
  await Promise.all([page.waitForURL((url) => url.pathname.startsWith(`/${kind}/`)), link.click()]);
  const entry = { page, openedAt, user, name, firstFrameMs: null, allFramesMs: null };
  pages[user] = entry;
  return entry;
}

/**
 * Clicks "Entrer dans la visio" on the pre-join screen, as a user does, once it is ready; does
 * nothing for a link the page refuses before it (not a member, bad token, no visio).
 */
export async function enterCall(page, { timeout = 30_000 } = {}) {
  const state = await page.waitForFunction(
    () => window.klassCall && window.klassCall.state !== 'starting' && window.klassCall.state,
    null,
    { timeout },
  );
  if ((await state.jsonValue()) !== 'prejoin') return;
  await page.click('#prejoin-enter', { timeout });
}

export async function closePage(user) {
  const entry = pages[user];
  if (!entry) return;
  delete pages[user];
  await entry.page.close().catch(() => {});
}

export async function callState(entry) {
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

export async function waitForState(entry, wanted, timeoutMs = 60_000) {
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
export async function inboundByParticipant(entry) {
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

export async function outboundAudioPackets(entry) {
  return entry.page.evaluate(async () => {
    let n = 0;
    (await window.klassCall.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && (s.kind || s.mediaType) === 'audio') n += s.packetsSent || 0;
    });
    return n;
  });
}

export const get = (stats, pid, kind, field) => (stats[pid] && stats[pid][kind] && stats[pid][kind][field]) || 0;

/**
 * Waits until every page in `receivers` decodes video (if `videoFrom` has them) and gets audio
 * from every other participant; records time from page open to first decoded frame.
 */
export async function waitForMediaEverywhere(receivers, publishers, { video = true, audioFrom = null, timeoutMs = 120_000 } = {}) {
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

/** Closes the browser and the server, and removes their files. */
export async function shutdown() {
  await closeBrowser();
  await stopServer();
  if (server && process.env.KLASS_KEEP_LOG !== '1') fs.rmSync(server.tmp, { recursive: true, force: true });
}
