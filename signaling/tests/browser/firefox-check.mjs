// Manual check, not part of `node --test`: one Firefox ESR page and one Chromium page in one call
// through the real server, each decoding the other's video and receiving its audio.
//
// Firefox is driven over WebDriver BiDi (its own remote protocol; Playwright's Firefox needs a
// patched build). Firefox gathers no ICE candidate on loopback, so this runs in a network namespace
// of its own with a veth pair and a default route, and the SFU advertises the veth address:
//
//   apt-get install firefox-esr
//   unshare -n sh -c 'ip link set lo up; ip link add v0 type veth peer name v1;
//     ip addr add 10.99.0.1/24 dev v0; ip addr add 10.99.0.2/24 dev v1; ip link set v0 up;
//     ip link set v1 up; ip route add default via 10.99.0.2 dev v0;
//     SFU_IP=10.99.0.1 node --experimental-websocket firefox-check.mjs'
//
// Options: SIGNALING_BIN, FIREFOX_BIN (default /usr/bin/firefox-esr), FIREFOX_FIRST=1 (Firefox is the
// teacher who starts the call, Chromium the parent who joins).

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const BIN = process.env.SIGNALING_BIN || path.join(os.homedir(), '.cache/klass/target/debug/signaling');
const FIREFOX = process.env.FIREFOX_BIN || '/usr/bin/firefox-esr';
const SFU_IP = process.env.SFU_IP || '127.0.0.1';
const API_KEY = 'firefox-check-api-key-0123456789';
const SECRET = 'firefox-check-jwt-secret-0123456789abcdefghij';
const PORT = 20000 + Math.floor(Math.random() * 10000) * 4;

function jwt(sub) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${crypto.createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

async function launchFirefox() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-firefox-'));
  const prefs = {
    'media.navigator.streams.fake': true,
    'media.navigator.permission.disabled': true,
    'media.peerconnection.ice.obfuscate_host_addresses': false,
    'media.autoplay.default': 0,
    'browser.shell.checkDefaultBrowser': false,
    'datareporting.policy.dataSubmissionEnabled': false,
    'app.update.enabled': false,
  };
  fs.writeFileSync(path.join(profile, 'user.js'),
    Object.entries(prefs).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join('\n'));
  const bidiPort = PORT + 3;
  const proc = spawn(FIREFOX, ['--headless', '--no-remote', '--profile', profile, `--remote-debugging-port=${bidiPort}`, 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  for (let i = 0; i < 150 && !stderr.includes('WebDriver BiDi listening'); i++) await sleep(200);
  const ws = new WebSocket(`ws://127.0.0.1:${bidiPort}/session`);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  let next = 0;
  const pending = new Map();
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    const p = m.id && pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.type === 'error') p.reject(new Error(`${m.error}: ${m.message}`));
    else p.resolve(m.result);
  };
  const cmd = (method, params = {}) => new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params }));
  });
  await cmd('session.new', { capabilities: {} });
  return {
    async open(url) {
      const { context } = await cmd('browsingContext.create', { type: 'tab' });
      await cmd('browsingContext.navigate', { context, url, wait: 'complete' });
      return {
        async evaluate(fn) {
          const r = await cmd('script.evaluate', {
            expression: `(async () => JSON.stringify(await (${fn})()))()`, target: { context }, awaitPromise: true,
          });
          if (r.type === 'exception') throw new Error(JSON.stringify(r.exceptionDetails).slice(0, 400));
          return JSON.parse(r.result.value);
        },
      };
    },
    async close() {
      await cmd('session.end').catch(() => {});
      proc.kill('SIGTERM');
      await sleep(300);
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

const inbound = async () => {
  const c = window.klassCall;
  const out = {};
  if (!c || !c.pc) return { state: c && c.state, out };
  // Protocol v2: each inbound stream is a receive slot; `slots` says who is in it.
  const midOfTrack = {};
  for (const t of c.pc.getTransceivers()) if (t.mid !== null) midOfTrack[t.receiver.track.id] = t.mid;
  const sent = [];
  (await c.pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') sent.push(`${s.rid || '-'}:${s.frameWidth || 0}x${s.frameHeight || 0}`);
    if (s.type !== 'inbound-rtp') return;
    const slot = c.slots[s.mid !== undefined ? s.mid : midOfTrack[s.trackIdentifier]];
    if (!slot || !slot.participant_id) return;
    const key = `${slot.participant_id}/${s.kind}`;
    const prev = out[key] || { packets: 0, frames: 0 };
    out[key] = { packets: prev.packets + (s.packetsReceived || 0), frames: prev.frames + (s.framesDecoded || 0) };
  });
  const stage = document.querySelector('.tile[data-slot-kind="stage"] video');
  return { state: c.state, participantId: c.participantId, out, sent: sent.sort(), stage: stage ? `${stage.videoWidth}x${stage.videoHeight}` : '-' };
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-ffcheck-'));
const log = fs.openSync(path.join(tmp, 'signaling.log'), 'a');
const server = spawn(BIN, ['serve'], {
  env: {
    ...process.env,
    KLASS_HTTP_ADDR: `127.0.0.1:${PORT}`, KLASS_API_KEY: API_KEY, KLASS_JWT_SECRET: SECRET,
    KLASS_DATA_DIR: path.join(tmp, 'data'), KLASS_SFU_UDP_ADDR: `${SFU_IP}:${PORT + 1}`,
    KLASS_SFU_TCP_ADDR: `${SFU_IP}:${PORT + 2}`, KLASS_SFU_ADVERTISED_IP: SFU_IP,
  },
  stdio: ['ignore', log, log],
});
const base = `http://localhost:${PORT}`;
let firefox = null;
let chromiumCtx = null;
let ok = false;
try {
  for (let i = 0; i < 300; i++) {
    try { if ((await fetch(`${base}/healthz`)).ok) break; } catch { /* not yet */ }
    await sleep(200);
  }
  const put = async (p, body) => {
    const r = await fetch(base + p, { method: 'PUT', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
  };
  await put('/v1/classes/ff-check', { name: 'Firefox check', tier: 'standard' });
  await put('/v1/classes/ff-check/members/teacher', { display_name: 'Mme Lefèvre', role: 'teacher', approved: true });
  await put('/v1/classes/ff-check/members/parent', { display_name: 'Alice Martin', role: 'parent', approved: true });

  firefox = await launchFirefox();
  chromiumCtx = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(tmp, 'chromium-')), {
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: false,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection'],
  });
  const openChromium = async (user) => {
    const page = await chromiumCtx.newPage();
    await page.goto(`${base}/call/ff-check#token=${jwt(user)}`);
    return { evaluate: (fn) => page.evaluate(fn) };
  };
  const openFirefox = (user) => firefox.open(`${base}/call/ff-check#token=${jwt(user)}`);
  const firefoxFirst = process.env.FIREFOX_FIRST === '1';
  const first = firefoxFirst ? await openFirefox('teacher') : await openChromium('teacher');
  await sleep(2000);
  const second = firefoxFirst ? await openChromium('parent') : await openFirefox('parent');
  const names = firefoxFirst ? ['firefox (teacher)', 'chromium (parent)'] : ['chromium (teacher)', 'firefox (parent)'];

  await sleep(6000);
  const s1 = [await first.evaluate(inbound), await second.evaluate(inbound)];
  await sleep(3000);
  const s2 = [await first.evaluate(inbound), await second.evaluate(inbound)];
  ok = true;
  for (let i = 0; i < 2; i++) {
    const other = s2[1 - i].participantId;
    const a = s1[i].out;
    const b = s2[i].out;
    const video = [a[`${other}/video`]?.frames ?? 0, b[`${other}/video`]?.frames ?? 0];
    const audio = [a[`${other}/audio`]?.packets ?? 0, b[`${other}/audio`]?.packets ?? 0];
    const good = s2[i].state === 'admitted' && video[1] > video[0] && audio[1] > audio[0];
    ok &&= good;
    console.log(`${good ? 'ok' : 'FAIL'} ${names[i]}: state ${s2[i].state}, video frames decoded ${video[0]} -> ${video[1]}, audio packets ${audio[0]} -> ${audio[1]}; sends ${s2[i].sent.join(' ')}; its stage shows ${s2[i].stage}`);
  }
} finally {
  if (chromiumCtx) await chromiumCtx.close().catch(() => {});
  if (firefox) await firefox.close().catch(() => {});
  server.kill('SIGTERM');
  await sleep(500);
  if (!ok) console.log(`server log: ${path.join(tmp, 'signaling.log')}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
