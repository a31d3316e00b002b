// What end-to-end encryption costs the pages: the CPU of one Chromium running three pages in a
// call, with encryption (the default) and without (the same pages with encoded transforms taken
// away, in a class that admits such browsers), the same media in both. A benchmark, not a test:
// it prints figures for docs/benchmarks.md.
//
//   cd signaling/tests/browser
//   SIGNALING_BIN=$CARGO_TARGET_DIR/debug/signaling node bench-e2ee.mjs [--seconds 30] [--rounds 2]
//
// Rounds alternate (encrypted, clear, encrypted, clear...) so that a machine that gets busier or
// quieter weighs on both. CPU is the user + system time of every process of the browser (browser,
// renderers, GPU, utility: the descendants of this Node process other than the server), read from
// /proc before and after the measured window.

import fs from 'node:fs';

import {
  closeBrowser, launchBrowser, mintJwt, noEncodedTransforms, openPage, procStat, seedClass, server, shutdown, sleep,
  startServer, waitForMediaEverywhere, waitForState,
} from './harness.mjs';
import { e2eeState, waitFor } from './e2ee-checks.mjs';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : dflt;
};
const SECONDS = arg('seconds', 30);
const ROUNDS = arg('rounds', 2);
const WIDTH = arg('width', 640);
const HEIGHT = arg('height', 360);
const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux

/** pid -> { ppid, ticks } for every process. */
function processes() {
  const out = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(name);
    if (stat) out.set(Number(name), stat); // else gone meanwhile
  }
  return out;
}

/** CPU ticks of each descendant of this process, the server and its descendants left out. */
function browserTicks() {
  const all = processes();
  const skip = server && server.proc ? server.proc.pid : -1;
  const mine = new Map();
  const isMine = (pid) => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = all.get(p)?.ppid ?? 0, hops += 1) {
      if (p === skip) return false;
      if (p === process.pid) return pid !== process.pid;
    }
    return false;
  };
  for (const [pid, { ticks }] of all) if (isMine(pid)) mine.set(pid, ticks);
  return mine;
}

/** Frames each page encoded and decoded so far, summed. */
async function frameCounts(entries) {
  let encoded = 0;
  let decoded = 0;
  for (const e of entries) {
    const n = await e.page.evaluate(async () => {
      let enc = 0;
      let dec = 0;
      (await window.klassCall.pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') enc += s.framesEncoded || 0;
        if (s.type === 'inbound-rtp' && s.kind === 'video') dec += s.framesDecoded || 0;
      });
      return { enc, dec };
    });
    encoded += n.enc;
    decoded += n.dec;
  }
  return { encoded, decoded };
}

async function round(encrypted, index) {
  const classId = `bench-e2ee-${index}`;
  const members = [
    { user: `teacher-bench-${index}`, name: 'Mme Perrin', role: 'teacher' },
    { user: `parent-bench-${index}-1`, name: 'Lina Roux', role: 'parent' },
    { user: `parent-bench-${index}-2`, name: 'Hugo Lambert', role: 'parent' },
  ];
  await seedClass(classId, `Banc d'essai ${index}`, members, { options: { confort_famille: false, visio_allow_unencrypted: true } });
  await launchBrowser();
  const initScripts = encrypted ? [] : [noEncodedTransforms];
  const camera = { width: WIDTH, height: HEIGHT };
  const entries = [];
  for (const m of members) {
    const e = await openPage(classId, m, { camera, initScripts, token: mintJwt(m.user) });
    await waitForState(e, 'admitted');
    entries.push(e);
  }
  await waitForMediaEverywhere(entries, entries, { timeoutMs: 90_000 });
  const states = await waitFor('the mode of the call', async () => {
    const s = await Promise.all(entries.map(e2eeState));
    return { ok: s.every((x) => x.encrypted === encrypted), s };
  });
  await sleep(5000); // past the start: layers settled, keys exchanged

  const t0 = Date.now();
  const before = browserTicks();
  const framesBefore = await frameCounts(entries);
  const workerBefore = await Promise.all(entries.map(e2eeState));
  await sleep(SECONDS * 1000);
  const after = browserTicks();
  const framesAfter = await frameCounts(entries);
  const workerAfter = await Promise.all(entries.map(e2eeState));
  const wall = (Date.now() - t0) / 1000;

  let ticks = 0;
  for (const [pid, t] of after) if (before.has(pid)) ticks += t - before.get(pid);
  const cpuSeconds = ticks / CLK_TCK;
  const sum = (list, f) => list.reduce((acc, s) => acc + ((s.stats && s.stats[f]) || 0), 0);
  const figures = {
    mode: encrypted ? 'encrypted' : 'clear',
    wall_s: Number(wall.toFixed(1)),
    browser_processes: after.size,
    cpu_s: Number(cpuSeconds.toFixed(2)),
    cores: Number((cpuSeconds / wall).toFixed(3)),
    frames_encoded_per_s: Number(((framesAfter.encoded - framesBefore.encoded) / wall).toFixed(1)),
    frames_decoded_per_s: Number(((framesAfter.decoded - framesBefore.decoded) / wall).toFixed(1)),
    sframe_encrypted_per_s: Number(((sum(workerAfter, 'encrypted') - sum(workerBefore, 'encrypted')) / wall).toFixed(1)),
    sframe_decrypted_per_s: Number(((sum(workerAfter, 'decrypted') - sum(workerBefore, 'decrypted')) / wall).toFixed(1)),
    sframe_failed: sum(workerAfter, 'failed'),
    safety_code: states.s[0].safetyCode || null,
  };
  console.log(JSON.stringify(figures));
  await closeBrowser();
  return figures;
}

await startServer();
const results = [];
try {
  for (let r = 0; r < ROUNDS; r += 1) {
    results.push(await round(true, 2 * r));
    results.push(await round(false, 2 * r + 1));
  }
} finally {
  await shutdown();
}
const mean = (mode, f) => {
  const xs = results.filter((x) => x.mode === mode).map((x) => x[f]);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
const enc = mean('encrypted', 'cores');
const clear = mean('clear', 'cores');
console.log(`\nthree pages, ${WIDTH}x${HEIGHT} cameras, ${SECONDS} s windows, ${ROUNDS} rounds each:`);
console.log(`  browser CPU, encrypted: ${enc.toFixed(3)} cores (${mean('encrypted', 'frames_decoded_per_s').toFixed(0)} video frames decoded/s)`);
console.log(`  browser CPU, clear:     ${clear.toFixed(3)} cores (${mean('clear', 'frames_decoded_per_s').toFixed(0)} video frames decoded/s)`);
console.log(`  encryption costs ${((enc / clear - 1) * 100).toFixed(1)} % (${((enc - clear) * 1000).toFixed(0)} millicores for three pages)`);
