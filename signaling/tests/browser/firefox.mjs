// Debian's Firefox ESR for the browser tests, driven over WebDriver BiDi, its own remote protocol
// (Playwright drives only a patched Firefox; no geckodriver, nothing downloaded). Fake camera and
// microphone, no permission prompts; a fresh profile, removed at `close()`.
//
// Firefox gathers no ICE candidate on loopback, so it runs in a client namespace of netns.mjs
// (`launchFirefox({ client })`), where it has a real address; the server's SFU must bind and
// advertise the lab's hub address (startServer({ sfuIp: lab.hubIp })). A small forwarder (node,
// in the namespace) gives the test the BiDi port, which Firefox opens on the namespace's loopback
// only, and gives Firefox the server's web port on its own `localhost` (`firefox.base`), a secure
// context as on the real site (getUserMedia and WebCrypto need one).
//
//   const firefox = await launchFirefox({ client, lab, serverPort: server.httpPort });
//   const page = await firefox.open(`${firefox.base}/call/${classId}#token=...`, { preloadScripts: [fn] });
//   await enterCall(page);                             // "Entrer dans la visio" on the pre-join screen
//   await page.evaluate((arg) => ..., arg);            // JSON in, JSON out; async functions awaited
//   await page.waitForFunction((arg) => ..., arg, { timeout: 30_000 });
//   await page.close(); await firefox.close();
//
// Needs `firefox-esr` (FIREFOX_BIN), and for the namespace what netns.mjs needs (root).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { freeTcpPort } from './harness.mjs';

export const FIREFOX = process.env.FIREFOX_BIN || '/usr/bin/firefox-esr';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The `ws` client that playwright-core bundles (Node 20 has no WebSocket client without a flag,
 * and Node's own cannot set the Host header, which Firefox checks).
 */
async function webSocketClass() {
  const { ws } = await import('playwright-core/lib/utilsBundle');
  return ws;
}

/** Why Firefox cannot be used here (a string, for a skip message), or null. */
export function firefoxUnavailable() {
  if (!fs.existsSync(FIREFOX)) return `no Firefox at ${FIREFOX} (apt-get install firefox-esr, or set FIREFOX_BIN)`;
  return null;
}

/** Prefs of the test profile: fake media, no prompts, nothing that phones home. */
export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  'browser.shell.checkDefaultBrowser': false,
  'browser.startup.homepage_override.mstone': 'ignore',
  'browser.tabs.warnOnClose': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'datareporting.healthreport.uploadEnabled': false,
  'toolkit.telemetry.enabled': false,
  'app.update.enabled': false,
  'app.update.auto': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'extensions.update.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'intl.accept_languages': 'fr-FR, fr',
};

/**
 * A TCP forwarder in `client`'s namespace: for each `[listenHost, listenPort, targetHost,
 * targetPort]`, connections to the first are piped to the second. Resolves once it listens.
 */
async function forwardInNamespace(client, routes, logPath) {
  const script = `
    const net = require('node:net');
    const routes = ${JSON.stringify(routes)};
    let listening = 0;
    for (const [lh, lp, th, tp] of routes) {
      net.createServer((a) => {
        const b = net.connect(tp, th);
        a.pipe(b); b.pipe(a);
        a.on('error', () => b.destroy()); b.on('error', () => a.destroy());
        a.on('close', () => b.destroy()); b.on('close', () => a.destroy());
      }).listen(lp, lh, () => { if (++listening === routes.length) console.log('ready'); });
    }
    process.stdin.on('end', () => process.exit(0)); process.stdin.resume();
  `;
  // stdin is a pipe: when the test process goes, so does the forwarder.
  const proc = spawn('ip', ['netns', 'exec', client.ns, process.execPath, '-e', script], { stdio: ['pipe', 'pipe', fs.openSync(logPath, 'a')] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const deadline = Date.now() + 10_000;
  while (!out.includes('ready')) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`forwarder in ${client.ns} did not start: ${fs.readFileSync(logPath, 'utf8')}`);
    }
    await sleep(20);
  }
  return {
    async stop() {
      proc.stdin.end();
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(2000)]);
    },
  };
}

/**
 * Starts Firefox (headless) with a fresh profile. `client`, `lab`, `serverPort`: run it in that
 * netns.mjs client namespace, with the server's web port (`serverPort`, on 127.0.0.1 here)
 * reachable from it as `base` (http://localhost:<port>). Without `client` it runs here, where it
 * can load pages but finds no ICE candidate for a call. `prefs`: more prefs. `logPath`:
 * Firefox's output (default: in the profile, removed at close; printed if the launch fails).
 * Returns { base, command(method, params) (a raw BiDi command), open(url, options), close() }.
 */
export async function launchFirefox({ client = null, lab = null, serverPort = null, prefs = {}, logPath = null } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-firefox-'));
  const log = logPath || path.join(profile, 'firefox.log');
  const allPrefs = { ...FIREFOX_PREFS, ...prefs };
  fs.writeFileSync(path.join(profile, 'user.js'),
    Object.entries(allPrefs).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`).join(''));
  const bidiPort = await freeTcpPort();
  const args = ['--headless', '--no-remote', '--profile', profile, `--remote-debugging-port=${bidiPort}`, 'about:blank'];
  const [file, argv] = client ? ['ip', ['netns', 'exec', client.ns, FIREFOX, ...args]] : [FIREFOX, args];
  const proc = spawn(file, argv, { stdio: ['ignore', fs.openSync(log, 'a'), fs.openSync(log, 'a')], env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: '1' } });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  let forwarder = null;
  const fail = async (why) => {
    proc.kill('SIGKILL');
    const out = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-3000) : '';
    if (forwarder) await forwarder.stop();
    fs.rmSync(profile, { recursive: true, force: true });
    return new Error(`Firefox: ${why}\n${out}`);
  };
  const base = serverPort ? `http://localhost:${serverPort}` : null;
  const deadline = Date.now() + 60_000;
  while (!fs.readFileSync(log, 'utf8').includes('WebDriver BiDi listening')) {
    if (proc.exitCode !== null) throw await fail(`exited (${proc.exitCode}) before its BiDi server listened`);
    if (Date.now() > deadline) throw await fail('no BiDi server after 60 s');
    await sleep(100);
  }

  let wsUrl = `ws://127.0.0.1:${bidiPort}/session`;
  if (client) {
    // The BiDi port from here, through the client's address; the server's web port on the
    // namespace's localhost, through the hub (a forward of the lab).
    const routes = [[client.ip, bidiPort, '127.0.0.1', bidiPort]];
    if (serverPort) {
      if (!lab) throw await fail('serverPort in a namespace needs the lab');
      // A port of its own on the hub: another page of the lab may forward `serverPort` already.
      const hubBase = await lab.forwardTcp(serverPort, 0);
      const hubPort = Number(new URL(hubBase).port);
      routes.push(['127.0.0.1', serverPort, lab.hubIp, hubPort]);
    }
    forwarder = await forwardInNamespace(client, routes, path.join(profile, 'forwarder.log'));
    wsUrl = `ws://${client.ip}:${bidiPort}/session`;
  }

  const WebSocketClass = await webSocketClass();
  // Firefox answers only requests whose Host is its own (loopback) address.
  const ws = new WebSocketClass(wsUrl, { headers: { host: `127.0.0.1:${bidiPort}` } });
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    ws.addEventListener('error', (ev) => reject(new Error(`BiDi WebSocket ${wsUrl}: ${ev.message || ev.error || 'error'}`)), { once: true });
  }).catch(async (err) => { throw await fail(err.message); });

  let nextId = 0;
  const pending = new Map();
  let closed = false;
  ws.addEventListener('message', (ev) => {
    const m = JSON.parse(typeof ev.data === 'string' ? ev.data : ev.data.toString());
    const p = m.id !== undefined && pending.get(m.id);
    if (!p) return; // events: we subscribe to none
    pending.delete(m.id);
    if (m.type === 'error') p.reject(new Error(`${p.method}: ${m.error}: ${m.message}`));
    else p.resolve(m.result);
  });
  ws.addEventListener('close', () => {
    closed = true;
    for (const p of pending.values()) p.reject(new Error(`${p.method}: the BiDi connection closed`));
    pending.clear();
  });
  const command = (method, params = {}) => new Promise((resolve, reject) => {
    if (closed) return reject(new Error(`${method}: the BiDi connection is closed`));
    const id = ++nextId;
    pending.set(id, { resolve, reject, method });
    ws.send(JSON.stringify({ id, method, params }));
  });
  await command('session.new', { capabilities: {} });

  return {
    base,
    command,
    /**
     * A new tab at `url`. `preloadScripts`: functions run in it at each document start, before
     * the page's own scripts (BiDi `script.addPreloadScript`), e.g. one that deletes
     * `window.RTCRtpScriptTransform`.
     */
    async open(url, { preloadScripts = [] } = {}) {
      const { context } = await command('browsingContext.create', { type: 'tab' });
      for (const fn of preloadScripts) {
        await command('script.addPreloadScript', { functionDeclaration: fn.toString(), contexts: [context] });
      }
      await command('browsingContext.navigate', { context, url, wait: 'complete' });
      return firefoxPage(command, context);
    },
    async close() {
      if (!closed) {
        await Promise.race([command('browser.close').catch(() => {}), sleep(5000)]);
      }
      ws.close();
      // In a namespace, Firefox lingers after browser.close (waiting on a network that leads
      // nowhere); SIGTERM ends it at once.
      await Promise.race([exited, sleep(2000)]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
      // Firefox's own children (content processes) end with it.
      if (forwarder) await forwarder.stop();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Clicks "Entrer dans la visio" on a Firefox call page's pre-join screen once it is ready (a DOM
 * click, as the keyboard or a pointer would give); does nothing for a link the page refuses before
 * it. Returns the state the page was in.
 */
export async function enterCall(page, { timeout = 30_000 } = {}) {
  const state = await page.waitForFunction(
    () => window.klassCall && window.klassCall.state !== 'starting' && window.klassCall.state,
    null,
    { timeout },
  );
  if (state !== 'prejoin') return state;
  await page.waitForFunction(() => {
    const button = document.getElementById('prejoin-enter');
    if (!button || button.disabled) return false;
    button.click();
    return true;
  }, null, { timeout });
  return state;
}

function firefoxPage(command, context) {
  const page = {
    context,
    /** Runs `fn(arg)` in the page (awaited if async); `arg` and the result go through JSON. */
    async evaluate(fn, arg) {
      const expression = `(async () => JSON.stringify(await (${fn.toString()})(${JSON.stringify(arg)}) ?? null))()`;
      const r = await command('script.evaluate', { expression, target: { context }, awaitPromise: true, resultOwnership: 'none' });
      if (r.type === 'exception') {
        const d = r.exceptionDetails || {};
        throw new Error(`evaluate in Firefox: ${d.text || ''} ${JSON.stringify(d.exception || {}).slice(0, 300)}`);
      }
      return JSON.parse(r.result.value);
    },
    /** Polls `fn(arg)` until it returns something truthy, and returns that; throws after `timeout` ms. */
    async waitForFunction(fn, arg, { timeout = 30_000, polling = 250 } = {}) {
      const deadline = Date.now() + timeout;
      let last;
      for (;;) {
        try {
          last = await page.evaluate(fn, arg);
          if (last) return last;
        } catch (err) {
          // A navigation in progress destroys the realm: try again.
          last = err.message;
        }
        if (Date.now() > deadline) throw new Error(`waitForFunction timed out after ${timeout} ms (last: ${JSON.stringify(last)}): ${fn.toString().slice(0, 200)}`);
        await sleep(polling);
      }
    },
    async close() {
      await command('browsingContext.close', { context }).catch(() => {});
    },
  };
  return page;
}
