// What the pages of a call see on a bad network: one parent's page runs in a network namespace
// of its own (netns.mjs) whose packets go through `netimpair` (NFQUEUE: delay, loss, rate
// limit), the teacher's and the other parent's pages stay on a clean network. For each scenario
// it measures, from `getStats()` over MEASURE_S seconds, on every page and for every other
// participant: video frames decoded per second, freezes (count and total time), stalls (seconds
// without a new frame), frames dropped, the received resolution (share of samples at each),
// packet loss; audio concealment (concealed samples that were not DTX silence, over samples
// received) and the jitter buffer's mean delay.
// It prints a table per scenario, to copy into docs.
//
//   (a) clean: every page on a clean link (parent-1 through netimpair, passing everything).
//   (b) parent-1: 150 ms delay and 8 % loss, each way.
//   (c) parent-1: 600 kbit/s each way, with an 80 ms drop-tail queue.
//
// The assertions hold what the SFU achieves since it adapts to each receiver's link (audio
// concealment under loss, the low layer that plays on 600 kbit/s, others unaffected) and sanity
// (media flows in every scenario); a `TARGET` comment says what is still wanted.
//
// Needs root, iproute2, iptables and `netimpair` (NETIMPAIR_BIN); skipped otherwise.
// NETWORK_SCENARIOS=b,c,b,c runs other scenarios in order (each letter once or more).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  callState,
  launchBrowser,
  launchBrowserInNamespace,
  logTail,
  openPage,
  seedClass,
  shutdown,
  sleep,
  startServer,
  waitForMediaEverywhere,
  waitForState,
} from './harness.mjs';
import { createLab, netnsUnavailable } from './netns.mjs';

const CLASS = 'browser-test-network';
const TEACHER = { user: 'teacher-n', name: 'Mme Perrin', role: 'teacher' };
const PARENT_1 = { user: 'parent-n1', name: 'Rose Lambert', role: 'parent' }; // the impaired one
const PARENT_2 = { user: 'parent-n2', name: 'Yann Caron', role: 'parent' };
/** Cameras of 480 lines: the pages send simulcast (640x480 and 320x240). */
const CAMERA = { width: 640, height: 480 };
const SETTLE_S = Number(process.env.NETWORK_SETTLE_S || 10);
const MEASURE_S = Number(process.env.NETWORK_MEASURE_S || 20);
/** Also the resolution of the stall figure (time without a new decoded frame). */
const SAMPLE_EVERY_MS = 1000;

const SCENARIOS = {
  a: { title: 'clean', up: '', down: '' },
  b: { title: '150 ms delay + 8 % loss each way on parent-1', up: 'delay=150,loss=8', down: 'delay=150,loss=8' },
  c: { title: '600 kbit/s each way on parent-1 (80 ms queue)', up: 'rate=600,limit-ms=80', down: 'rate=600,limit-ms=80' },
};
const RUN = (process.env.NETWORK_SCENARIOS || 'a,b,c').split(',').map((s) => s.trim()).filter(Boolean);

const unavailable = netnsUnavailable();

/** Every inbound stream of a page, its slot and who is in it; the selected pair; what it sends. */
async function sample(entry) {
  return entry.page.evaluate(async () => {
    const c = window.klassCall;
    if (!c || !c.pc) return null;
    const midOfTrack = {};
    for (const t of c.pc.getTransceivers()) if (t.mid !== null) midOfTrack[t.receiver.track.id] = t.mid;
    const inbound = [];
    const outbound = [];
    let pair = null;
    const report = await c.pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        const mid = s.mid !== undefined ? s.mid : midOfTrack[s.trackIdentifier];
        const slot = c.slots[mid] || {};
        inbound.push({
          mid,
          slotKind: slot.kind || null,
          participantId: slot.participant_id || null,
          kind: s.kind || s.mediaType,
          packetsReceived: s.packetsReceived || 0,
          packetsLost: s.packetsLost || 0,
          framesDecoded: s.framesDecoded || 0,
          framesDropped: s.framesDropped || 0,
          freezeCount: s.freezeCount || 0,
          totalFreezesDuration: s.totalFreezesDuration || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          nackCount: s.nackCount || 0,
          pliCount: s.pliCount || 0,
          totalSamplesReceived: s.totalSamplesReceived || 0,
          concealedSamples: s.concealedSamples || 0,
          silentConcealedSamples: s.silentConcealedSamples || 0,
          jitterBufferDelay: s.jitterBufferDelay || 0,
          jitterBufferEmittedCount: s.jitterBufferEmittedCount || 0,
        });
      } else if (s.type === 'outbound-rtp' && (s.kind || s.mediaType) === 'video') {
        outbound.push({ rid: s.rid || '-', frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0, framesEncoded: s.framesEncoded || 0, bytesSent: s.bytesSent || 0, limitation: s.qualityLimitationReason || '' });
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        pair = { rtt: s.currentRoundTripTime, availableOutgoingBitrate: s.availableOutgoingBitrate || 0 };
      }
    });
    return { at: performance.now(), state: c.state, inbound, outbound, pair };
  });
}

/** Figures over a window, per (receiver, remote participant), from samples taken in it. */
function summarize(samples, ids) {
  const names = Object.fromEntries(Object.entries(ids).map(([user, id]) => [id, user]));
  const first = samples[0];
  const last = samples[samples.length - 1];
  const seconds = (last.at - first.at) / 1000;
  const rows = {};
  const row = (from) => (rows[from] ||= { from, video: null, audio: null });
  for (const end of last.inbound) {
    const start = first.inbound.find((s) => s.mid === end.mid);
    if (!start || !end.participantId) continue;
    const d = (field) => end[field] - start[field];
    // Was the slot's participant the same all along? A switch mixes two publishers' figures.
    const stable = samples.every((smp) => (smp.inbound.find((s) => s.mid === end.mid) || {}).participantId === end.participantId);
    const from = names[end.participantId] || end.participantId;
    const lossShare = d('packetsLost') / Math.max(1, d('packetsLost') + d('packetsReceived'));
    if (end.kind === 'video') {
      if (d('framesDecoded') === 0 && d('packetsReceived') === 0 && row(from).video) continue;
      const sizes = {};
      for (const smp of samples.slice(1)) {
        const s = smp.inbound.find((x) => x.mid === end.mid);
        const size = s && s.frameWidth ? `${s.frameWidth}x${s.frameHeight}` : 'none';
        sizes[size] = (sizes[size] || 0) + 1;
      }
      const n = samples.length - 1;
      // Time between samples with no new decoded frame: unlike `totalFreezesDuration`, it counts a
      // freeze still going on at the window's end (a stream stalled throughout counts fully).
      let stalledMs = 0;
      for (let i = 1; i < samples.length; i++) {
        const before = samples[i - 1].inbound.find((x) => x.mid === end.mid);
        const after = samples[i].inbound.find((x) => x.mid === end.mid);
        if (before && after && after.framesDecoded === before.framesDecoded) stalledMs += samples[i].at - samples[i - 1].at;
      }
      row(from).video = {
        slot: end.slotKind,
        stable,
        fps: d('framesDecoded') / seconds,
        freezes: d('freezeCount'),
        freezeSeconds: d('totalFreezesDuration'),
        stalledSeconds: stalledMs / 1000,
        dropped: d('framesDropped'),
        sizes: Object.entries(sizes).sort((x, y) => y[1] - x[1]).map(([size, k]) => `${size} ${Math.round((100 * k) / n)}%`),
        lastSize: end.frameWidth ? `${end.frameWidth}x${end.frameHeight}` : 'none',
        loss: lossShare,
        nacks: d('nackCount'),
        plis: d('pliCount'),
        packets: d('packetsReceived'),
      };
    } else if (end.kind === 'audio') {
      const samplesReceived = d('totalSamplesReceived');
      row(from).audio = {
        stable,
        packets: d('packetsReceived'),
        concealment: (d('concealedSamples') - d('silentConcealedSamples')) / Math.max(1, samplesReceived),
        jitterBufferMs: (1000 * d('jitterBufferDelay')) / Math.max(1, d('jitterBufferEmittedCount')),
        loss: lossShare,
      };
    }
  }
  const sent = last.outbound.map((o) => `${o.rid}:${o.frameWidth}x${o.frameHeight}${o.limitation && o.limitation !== 'none' ? `(${o.limitation})` : ''}`).sort().join(' ');
  return { seconds, rows: Object.values(rows), sent, rtt: last.pair && last.pair.rtt, availableOut: last.pair && last.pair.availableOutgoingBitrate };
}

const pct = (x) => `${(100 * x).toFixed(1)}%`;

function printTable(letter, scenario, results, impairStats) {
  const lines = [`(${letter}) ${scenario.title}: ${results[0].summary.seconds.toFixed(0)} s`];
  lines.push('receiver    from        slot       fps  freezes  frozen s  stall s  dropped  resolution (share of samples)  v.loss  nack  pli | a.conceal  jb ms  a.loss');
  for (const { user, summary } of results) {
    for (const r of summary.rows) {
      const v = r.video;
      const a = r.audio;
      const video = v
        ? [
            (v.slot || '?').padEnd(9) + (v.stable ? ' ' : '*'),
            v.fps.toFixed(1).padStart(5),
            String(v.freezes).padStart(8),
            v.freezeSeconds.toFixed(2).padStart(9),
            v.stalledSeconds.toFixed(0).padStart(8),
            String(v.dropped).padStart(8),
            ' ' + v.sizes.join(', ').padEnd(30),
            pct(Math.max(0, v.loss)).padStart(7),
            String(v.nacks).padStart(5),
            String(v.plis).padStart(4),
          ].join('')
        : '-'.padEnd(105);
      const audio = a ? [pct(a.concealment).padStart(10), a.jitterBufferMs.toFixed(0).padStart(7), pct(Math.max(0, a.loss)).padStart(8)].join('') : '  -';
      lines.push(`${user.padEnd(12)}${r.from.padEnd(12)}${video} |${audio}`);
    }
  }
  for (const { user, summary } of results) {
    lines.push(`${user}: sends ${summary.sent || '-'}; rtt ${summary.rtt !== undefined && summary.rtt !== null ? (summary.rtt * 1000).toFixed(0) : '-'} ms; BWE out ${summary.availableOut ? Math.round(summary.availableOut / 1000) : '-'} kbit/s`);
  }
  if (impairStats) {
    for (const q of impairStats.queues) {
      const dir = q.queue === 10 ? 'up  ' : 'down';
      lines.push(
        `netimpair ${dir} (${q.settings || 'pass'}): in ${q.in}, out ${q.out}, lost ${q.dropped_loss}, queue full ${q.dropped_queue_full}, ` +
          `added delay mean ${q.mean_added_delay_ms.toFixed(0)} ms, max ${q.max_added_delay_ms.toFixed(0)} ms (late wake-ups: mean ${q.mean_late_ms.toFixed(1)}, max ${q.max_late_ms.toFixed(0)} ms)`,
      );
    }
  }
  lines.push('(frozen s: Chromium\'s totalFreezesDuration, ended freezes only; stall s: seconds without a new frame, 1 s samples; * the slot changed participant during the window)');
  console.log(lines.join('\n'));
}

if (unavailable) {
  test('(n) network impairment', { skip: `skipped: ${unavailable}` }, () => {});
} else {
  let lab = null;
  let client = null;
  let netBrowser = null;

  before(async () => {
    lab = createLab();
    client = lab.addClient('p1');
    await client.startImpair();
    await startServer({ sfuIp: lab.hubIp });
    await seedClass(CLASS, 'CM1 (test réseau)', [TEACHER, PARENT_1, PARENT_2]);
    await launchBrowser();
  });

  after(async () => {
    if (netBrowser) await netBrowser.close();
    await shutdown();
    if (lab) await lab.cleanup();
  });

  test('(n) pages on a clean, a lossy and a 600 kbit/s link: received video and audio figures', { timeout: 240_000 }, async () => {
    let base;
    ({ base, browser: netBrowser } = await launchBrowserInNamespace(lab, client));

    const teacher = await openPage(CLASS, TEACHER, { camera: CAMERA });
    await waitForState(teacher, 'admitted');
    const parent1 = await openPage(CLASS, PARENT_1, { camera: CAMERA, context: netBrowser.context, base });
    await waitForState(parent1, 'admitted');
    const parent2 = await openPage(CLASS, PARENT_2, { camera: CAMERA });
    await waitForState(parent2, 'admitted');
    const everyone = [teacher, parent1, parent2];
    const ids = await waitForMediaEverywhere(everyone, everyone, { timeoutMs: 60_000 });
    // The teacher pins parent-1: its stage then shows parent-1's camera (its best layer) all
    // along, instead of following whoever beeps last.
    await teacher.page.locator(`#roster > li[data-participant-id="${ids[PARENT_1.user]}"] button[data-action="pin"]`).click();

    const figures = {};
    for (const letter of RUN) {
      const scenario = SCENARIOS[letter];
      assert.ok(scenario, `unknown scenario ${letter}`);
      await client.setImpair({ up: scenario.up, down: scenario.down });
      await sleep(SETTLE_S * 1000);
      await client.resetImpairStats();
      const samples = { [TEACHER.user]: [], [PARENT_1.user]: [], [PARENT_2.user]: [] };
      const end = Date.now() + MEASURE_S * 1000;
      for (;;) {
        const now = await Promise.all(everyone.map(sample));
        everyone.forEach((e, i) => samples[e.user].push(now[i]));
        if (Date.now() >= end) break;
        await sleep(Math.min(SAMPLE_EVERY_MS, Math.max(0, end - Date.now())));
      }
      const impairStats = await client.impairStats();
      // What the pages say of connections (netquality.js): nothing on a clean network.
      const weak = await Promise.all(everyone.map((e) => e.page.evaluate(() => window.klassCall.weak)));
      const name = (pid) => Object.keys(ids).find((user) => ids[user] === pid) || pid;
      console.log(`(${letter}) weak connections shown: ${everyone.map((e, i) => `${e.user}: own ${weak[i].self}, others [${Object.keys(weak[i].participants).map(name).join(', ')}]`).join('; ')}`);
      if (letter === 'a') {
        assert.ok(weak.every((w) => !w.self && Object.keys(w.participants).length === 0), '(a) no weak connection shown on a clean network');
      }
      if (letter === 'b') {
        // 8 % loss each way: parent-1's page says its connection is weak and blames nobody else;
        // the others show "connexion faible" on parent-1 only.
        const [t, p1, p2] = weak;
        assert.ok(p1.self && Object.keys(p1.participants).length === 0, `(b) parent-1's own weak connection: ${JSON.stringify(p1)}`);
        for (const w of [t, p2]) {
          assert.ok(!w.self, '(b) the clean pages are not weak');
          assert.deepEqual(Object.keys(w.participants), [ids[PARENT_1.user]], '(b) parent-1 shown with a weak connection');
        }
      }
      const results = everyone.map((e) => ({ user: e.user, summary: summarize(samples[e.user], ids) }));
      printTable(letter, scenario, results, impairStats);
      figures[`${Object.keys(figures).length}${letter}`] = results;

      // Every page still in the call, receiving every other participant's audio, and their video
      // unless its own page shows that video paused for its bandwidth (parent-1 on 600 kbit/s).
      const paused = await parent1.page.evaluate(() => ({
        ids: Object.values(window.klassCall.slots).filter((s) => s.quality === 'paused').map((s) => s.participant_id),
        notice: !document.getElementById('bandwidth-notice').hidden,
      }));
      for (const e of everyone) {
        const state = await callState(e);
        assert.equal(state.state, 'admitted', `(${letter}) ${e.user} left the call (${state.leftReason}):\n${logTail(40)}`);
      }
      for (const { user, summary } of results) {
        for (const other of everyone.filter((e) => e.user !== user)) {
          const r = summary.rows.find((x) => x.from === other.user);
          assert.ok(r && r.audio && r.audio.packets > 0, `(${letter}) ${user} receives no audio from ${other.user}: ${JSON.stringify(r)}`);
          if (user === PARENT_1.user && paused.ids.includes(ids[other.user])) {
            assert.ok(letter === 'c', `(${letter}) parent-1 has ${other.user}'s video paused on a link with room for it`);
            assert.ok(paused.notice, '(c) the page says videos are paused for its bandwidth');
            continue;
          }
          assert.ok(r && r.video && r.video.packets > 0, `(${letter}) ${user} receives no video from ${other.user}: ${JSON.stringify(r)}`);
          assert.ok(r.video.fps > 0, `(${letter}) ${user} decodes no video from ${other.user}: ${JSON.stringify(r)}`);
        }
      }
      const rowOf = (user, from) => results.find((x) => x.user === user).summary.rows.find((x) => x.from === from);
      if (letter === 'a') {
        // The fake cameras run at 15 fps; a clean call shows nearly all of it.
        for (const { user, summary } of results) {
          for (const r of summary.rows) {
            assert.ok(r.video && r.video.fps >= 12, `(a) ${user} <- ${r.from}: ${r.video ? r.video.fps.toFixed(1) : "no"} fps on a clean network`);
          }
        }
        assert.equal(rowOf(PARENT_2.user, TEACHER.user).video.lastSize, '640x480', 'parent-2 sees the teacher in full size');
      }
      if (letter === 'b') {
        // RED and in-band FEC: before them, 4 to 8 % of the audio to and from parent-1 was
        // concealed (6 % on average over the four directions); since, 1 to 5 % (2 to 3 % on
        // average). Each direction varies from run to run: the average is held.
        const concealed = [];
        for (const other of [TEACHER, PARENT_2]) {
          concealed.push(rowOf(PARENT_1.user, other.user).audio.concealment);
          concealed.push(rowOf(other.user, PARENT_1.user).audio.concealment);
        }
        const mean = concealed.reduce((a, b) => a + b, 0) / concealed.length;
        const shown = concealed.map((c) => `${(c * 100).toFixed(1)} %`).join(', ');
        assert.ok(mean < 0.045 && Math.max(...concealed) < 0.07, `(b) audio concealed to and from parent-1: ${shown}`);
        // Still far from TARGET: video ≥ 10 fps with freezes < 1 s per 20 s on this link.
      }
      if (letter === 'c') {
        // Parent-1's link carries the teacher on the stage's low layer, playing; before, the SFU
        // sent it the full layer and it decoded 0 to 0.4 fps. One bad receiver lowers nobody
        // else: parent-2 keeps the teacher's full layer.
        const stage = rowOf(PARENT_1.user, TEACHER.user).video;
        assert.ok(stage.fps >= 10, `(c) parent-1 gets ${stage.fps.toFixed(1)} fps from the teacher on 600 kbit/s`);
        assert.ok(stage.freezeSeconds + stage.stalledSeconds < 3, `(c) parent-1's stage freezes: ${JSON.stringify(stage)}`);
        assert.equal(stage.lastSize, '320x240', '(c) parent-1 gets the teacher on the low layer');
        assert.equal(rowOf(PARENT_2.user, TEACHER.user).video.lastSize, '640x480', '(c) parent-2 keeps the teacher in full size');
      }
    }
    console.log(`network figures (JSON): ${JSON.stringify(Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, v.map((x) => ({ user: x.user, rows: x.summary.rows }))])))}`);
  });
}
