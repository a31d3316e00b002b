// A call from a network that blocks UDP and lets only TLS on 443 through: the parent's page runs
// in a network namespace of its own (netns.mjs) whose firewall allows nothing but TCP to port 443
// of the hub (where a real coturn listens for TURN over TLS) and to the forwarded signaling HTTP
// port. UDP is dropped, and so is the SFU's ICE-TCP port, so the only way to the SFU is a TURN/TLS
// relay. The page is the normal page: it fetches its `iceServers` (GET .../visio/ice-servers,
// `turns:HUB:443?transport=tcp` with short-lived credentials from KLASS_TURN_SECRET, which coturn
// shares as `static-auth-secret`) and finds the relay path by itself, without `iceTransportPolicy:
// 'relay'`. The teacher's page stays on the normal network.
//
// Checks that media flows both ways, that the parent's selected candidate pair is local `relay`
// over `tls`, and that coturn logged a successful allocation. Prints the time to first frame and
// the selected pair.
//
// Needs root, iproute2, iptables, `netimpair` (NETIMPAIR_BIN), `turnserver` (coturn) and
// `openssl`; skipped otherwise.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import {
  closePage,
  freeTcpPort,
  get,
  inboundByParticipant,
  launchBrowser,
  launchBrowserInNamespace,
  logTail,
  openPage,
  seedClass,
  server,
  shutdown,
  sleep,
  startServer,
  waitForMediaEverywhere,
  waitForState,
} from './harness.mjs';
import { createLab, netnsUnavailable } from './netns.mjs';

const CLASS = 'browser-test-turn';
const TEACHER = { user: 'teacher-t', name: 'Mme Rivière', role: 'teacher' };
const PARENT = { user: 'parent-t1', name: 'Hugo Marchand', role: 'parent' };
const TURN_SECRET = crypto.randomBytes(24).toString('hex'); // 48 bytes
const TURN_TLS_PORT = 443;

function installed(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function unavailableReason() {
  const netns = netnsUnavailable();
  if (netns) return netns;
  if (!installed('turnserver')) return '`turnserver` (coturn) is not installed';
  if (!installed('openssl')) return '`openssl` is not installed';
  return null;
}

const unavailable = unavailableReason();

/** A self-signed certificate for coturn; returns the base64 SHA-256 of its public key (SPKI). */
function makeCertificate(dir) {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=turn.test', '-keyout', key, '-out', cert,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const pubkey = execFileSync('openssl', ['x509', '-in', cert, '-pubkey', '-noout'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pubkey, stdio: ['pipe', 'pipe', 'pipe'] });
  return { key, cert, spki: crypto.createHash('sha256').update(der).digest('base64') };
}

/** Can something bind `ip`:`port` (TCP)? Answers the error's code when not. */
function tcpBindable(ip, port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (err) => resolve(err.code || String(err)));
    s.listen(port, ip, () => s.close(() => resolve(null)));
  });
}

async function waitForTcp(ip, port, timeoutMs, turn) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (turn.exited) break;
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, ip);
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`turnserver does not listen on ${ip}:${port} (exit ${JSON.stringify(turn.exited)}):\n${turnLog(turn, 40)}`);
}

function turnLog(turn, lines = 80) {
  const read = (file) => { try { return fs.readFileSync(file, 'utf8'); } catch { return ''; } };
  return (read(turn.logFile) + read(turn.outFile)).split('\n').slice(-lines).join('\n');
}

/** coturn on the hub address: TURN over TLS on 443, relaying UDP from the hub address. */
async function startTurnServer(dir, hubIp, cert, taken) {
  let port = await freeTcpPort();
  while (taken.includes(port)) port = await freeTcpPort();
  const logFile = path.join(dir, 'coturn.log');
  const outFile = path.join(dir, 'coturn.out');
  const conf = path.join(dir, 'turnserver.conf');
  fs.writeFileSync(conf, [
    `listening-ip=${hubIp}`,
    `relay-ip=${hubIp}`,
    `listening-port=${port}`,
    `tls-listening-port=${TURN_TLS_PORT}`,
    'use-auth-secret',
    `static-auth-secret=${TURN_SECRET}`,
    'realm=klass.test',
    'fingerprint',
    'no-cli',
    'no-dtls',
    'no-rfc5780',
    'no-tcp-relay',
    `cert=${cert.cert}`,
    `pkey=${cert.key}`,
    `pidfile=${path.join(dir, 'turnserver.pid')}`,
    `userdb=${path.join(dir, 'turndb')}`,
    `log-file=${logFile}`,
    'simple-log',
    'verbose',
    '',
  ].join('\n'));
  const out = fs.openSync(outFile, 'a');
  const proc = spawn('turnserver', ['-c', conf], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const turn = { proc, port, logFile, outFile, exited: null };
  // Should the test process end without its after hook, coturn goes with it.
  const onExit = () => { if (!turn.exited) proc.kill('SIGKILL'); };
  process.on('exit', onExit);
  proc.on('exit', (code, signal) => {
    turn.exited = { code, signal };
    process.off('exit', onExit);
  });
  await waitForTcp(hubIp, TURN_TLS_PORT, 15_000, turn);
  return turn;
}

async function stopTurnServer(turn) {
  if (!turn || turn.exited) return;
  const exited = new Promise((resolve) => turn.proc.once('exit', resolve));
  turn.proc.kill('SIGTERM');
  // A timer cleared once coturn is gone, not one that keeps the test process up.
  const timer = setTimeout(() => turn.proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Waits (at most 5 s) until the lab's new links have their IPv6 link-local address (after
 * duplicate address detection, 1 to 2 s after they come up). Chromium watches the addresses of
 * the machine: one that appears while a page loads fails its requests with ERR_NETWORK_CHANGED.
 */
async function waitForLinksSettled(lab, client) {
  const links = [
    { dev: lab.hubLink, show: (...a) => execFileSync('ip', a, { encoding: 'utf8' }) },
    { dev: `${lab.hubLink.slice(0, -1)}g`, show: (...a) => execFileSync('ip', a, { encoding: 'utf8' }) },
    { dev: client.hostLink, show: (...a) => execFileSync('ip', a, { encoding: 'utf8' }) },
    { dev: 'eth0', show: (...a) => client.exec('ip', ...a), ns: client.ns },
  ];
  const settled = ({ dev, show, ns }) => {
    try {
      const disabled = ns
        ? client.exec('cat', `/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`)
        : fs.readFileSync(`/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`, 'utf8');
      if (disabled.trim() === '1') return true;
      const out = show('-6', '-o', 'addr', 'show', 'dev', dev, 'scope', 'link');
      return out.includes('inet6') && !out.includes('tentative');
    } catch {
      return true; // no IPv6 here
    }
  };
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !links.every(settled)) await sleep(100);
  await sleep(200);
}

/** The page's selected candidate pair, with both candidates, and what it decoded from whom. */
async function selectedPair(entry) {
  return entry.page.evaluate(async () => {
    const report = await window.klassCall.pc.getStats();
    const byId = {};
    report.forEach((s) => { byId[s.id] = s; });
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId[s.selectedCandidatePairId];
    });
    if (!pair) report.forEach((s) => { if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    if (!pair) return null;
    const cand = (c) => c && {
      candidateType: c.candidateType,
      protocol: c.protocol,
      relayProtocol: c.relayProtocol,
      address: c.address || c.ip,
      port: c.port,
      url: c.url,
    };
    return {
      state: pair.state,
      nominated: pair.nominated,
      bytesSent: pair.bytesSent,
      bytesReceived: pair.bytesReceived,
      rtt: pair.currentRoundTripTime,
      local: cand(byId[pair.localCandidateId]),
      remote: cand(byId[pair.remoteCandidateId]),
    };
  });
}

/**
 * openPage, then again (twice at most) if the page's script never started: a change of the
 * machine's network addresses while it loads (another test's namespaces coming or going) fails its
 * requests with ERR_NETWORK_CHANGED.
 */
async function openCallPage(member, options = {}) {
  for (let attempt = 1; ; attempt++) {
    const entry = await openPage(CLASS, member, options);
    const started = await entry.page
      .waitForFunction(() => window.klassCall && window.klassCall.state, null, { timeout: 10_000 })
      .then(() => true, () => false);
    if (started || attempt === 3) return entry;
    console.log(`[${member.user}] the page's script did not start; opening it again`);
    await closePage(member.user);
  }
}

const describePair = (p) =>
  `${p.local.candidateType}/${p.local.relayProtocol || p.local.protocol} ${p.local.address}:${p.local.port} (${p.local.url || '-'})` +
  ` -> ${p.remote.candidateType}/${p.remote.protocol} ${p.remote.address}:${p.remote.port}` +
  (p.rtt !== undefined ? `, rtt ${Math.round(p.rtt * 1000)} ms` : '');

if (unavailable) {
  test('(t) a call with UDP blocked and only a TURN/TLS path on 443 connects', { skip: `skipped: ${unavailable}` }, () => {});
} else {
  let lab = null;
  let client = null;
  let netBrowser = null;
  let turn = null;
  let dir = null;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-turn-'));
    lab = createLab();
    client = lab.addClient('t1');
    const busy = await tcpBindable(lab.hubIp, TURN_TLS_PORT);
    if (busy) throw new Error(`cannot bind ${lab.hubIp}:${TURN_TLS_PORT} for coturn (${busy}): something else holds port ${TURN_TLS_PORT}`);
    await startServer({
      sfuIp: lab.hubIp,
      env: { KLASS_TURN_URLS: `turns:${lab.hubIp}:${TURN_TLS_PORT}?transport=tcp`, KLASS_TURN_SECRET: TURN_SECRET },
    });
    const cert = makeCertificate(dir);
    await waitForLinksSettled(lab, client);
    // After the server: coturn's plain listening port (UDP and TCP on the hub address) must not
    // be one the SFU binds there.
    turn = await startTurnServer(dir, lab.hubIp, cert, [server.httpPort, server.udpPort, server.tcpPort]);
    turn.spki = cert.spki;
    await seedClass(CLASS, 'CM1 (test TURN)', [TEACHER, PARENT]);
    await launchBrowser();
  });

  after(async () => {
    try {
      if (netBrowser) await netBrowser.close();
      await shutdown();
    } finally {
      await stopTurnServer(turn);
      if (lab) await lab.cleanup();
      if (dir && process.env.KLASS_KEEP_LOG !== '1') fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('(t) a call with UDP blocked and only a TURN/TLS path on 443 connects', { timeout: 90_000 }, async () => {
    // Only TCP to coturn's 443 and to the signaling HTTP port: no UDP at all, and not the SFU's
    // ICE-TCP port either (else the call would connect over ICE-TCP).
    let base;
    ({ base, browser: netBrowser } = await launchBrowserInNamespace(lab, client, {
      beforeLaunch: (forwarded) => client.allowOnlyTcp([TURN_TLS_PORT, Number(new URL(forwarded).port)]),
      extraArgs: [`--ignore-certificate-errors-spki-list=${turn.spki}`],
    }));

    const teacher = await openCallPage(TEACHER);
    await waitForState(teacher, 'admitted');
    const parent = await openCallPage(PARENT, { context: netBrowser.context, base });
    await waitForState(parent, 'admitted');
    // The server handed the page the TURN server, with credentials.
    const ice = await parent.page.evaluate(() => window.klassCall.pc.getConfiguration().iceServers);
    assert.ok(
      ice.some((s) => [].concat(s.urls).some((u) => u.startsWith('turns:')) && s.username && s.credential),
      `the parent's RTCPeerConnection has a turns: server with credentials: ${JSON.stringify(ice.map((s) => s.urls))}`,
    );

    let ids;
    try {
      ids = await waitForMediaEverywhere([teacher, parent], [teacher, parent], { timeoutMs: 45_000 });
    } catch (err) {
      const log = await parent.page.evaluate(() => window.klassCall.log.slice(-40)).catch(() => []);
      throw new Error(`${err.message}\nparent page log:\n${log.join('\n')}\ncoturn log:\n${turnLog(turn, 40)}`);
    }

    const pair = await selectedPair(parent);
    assert.ok(pair, 'the parent has a selected candidate pair');
    assert.equal(pair.local.candidateType, 'relay', `the parent's selected pair goes through TURN: ${describePair(pair)}`);
    assert.equal(pair.local.relayProtocol, 'tls', `the parent reaches TURN over TLS: ${describePair(pair)}`);

    // Frames decoded from the teacher on the parent's page (waitForMediaEverywhere saw some; still
    // more now, over the relay).
    const framesFrom = async () => get(await inboundByParticipant(parent), ids[TEACHER.user], 'video', 'framesDecoded');
    const frames0 = await framesFrom();
    await sleep(2000);
    const frames1 = await framesFrom();
    assert.ok(frames0 > 0 && frames1 > frames0, `the parent decodes the teacher's video (${frames0} then ${frames1} frames)`);

    const coturnLog = turnLog(turn, 100_000);
    assert.match(coturnLog, /ALLOCATE processed, success/, `coturn allocated a relay:\n${turnLog(turn, 40)}\nserver log:\n${logTail(20)}`);

    console.log(
      [
        `turn (t): parent behind a firewall that allows only TCP ${TURN_TLS_PORT} (TURN/TLS) and the HTTP port`,
        `  first frame on the parent's page ${(parent.firstFrameMs / 1000).toFixed(1)} s after opening it (teacher's page: ${(teacher.firstFrameMs / 1000).toFixed(1)} s)`,
        `  parent's selected pair: ${describePair(pair)}`,
        `  parent decoded ${frames1} frames from the teacher (${((frames1 - frames0) / 2).toFixed(1)} fps over the last 2 s)`,
      ].join('\n'),
    );
  });
}
