// A Firefox page and a Chromium page in one call: each decodes the other's video and receives its
// audio. Debian's Firefox ESR is driven over WebDriver BiDi (firefox.mjs) in a network namespace
// of its own (netns.mjs: Firefox gathers no ICE candidate on loopback); the SFU binds the lab's hub
// address, which the Chromium page (root namespace) reaches too.
//
// The class allows unencrypted calls and neither page has encoded transforms (deleted before the
// page's scripts run), so this holds the two browsers' media and our SFU together, encryption
// aside. It prints the simulcast layers each browser sends and the size its stage shows.
// FIREFOX_FIRST=1 makes Firefox the teacher, who opens the call.
//
// Needs root, iproute2, iptables, `netimpair` (netns.mjs checks the lab) and `firefox-esr`
// (FIREFOX_BIN); skipped otherwise.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  launchBrowser,
  logTail,
  mintJwt,
  noEncodedTransforms,
  openPage,
  seedClass,
  server,
  shutdown,
  sleep,
  startServer,
  waitForState,
} from './harness.mjs';
import { enterCall, firefoxUnavailable, launchFirefox } from './firefox.mjs';
import { createLab, netnsUnavailable } from './netns.mjs';

const CLASS = 'browser-test-firefox';
const TEACHER = { user: 'teacher-ff', name: 'Mme Lefèvre', role: 'teacher' };
const PARENT = { user: 'parent-ff', name: 'Alice Martin', role: 'parent' };
/** From 360 lines the pages send simulcast: both browsers' layers go through the SFU. */
const CAMERA = { width: 640, height: 480 };
const FIREFOX_FIRST = process.env.FIREFOX_FIRST === '1';

const unavailable = netnsUnavailable() || firefoxUnavailable();

/**
 * What a page receives, per remote participant (from `getStats()` inbound-rtp, by slot), what it
 * sends (its video layers) and the size of its stage. Runs in Chromium and in Firefox.
 */
const sample = async () => {
  const c = window.klassCall;
  if (!c || !c.pc) return { state: c && c.state, inbound: {} };
  const midOfTrack = {};
  for (const t of c.pc.getTransceivers()) if (t.mid !== null) midOfTrack[t.receiver.track.id] = t.mid;
  const inbound = {};
  const sent = [];
  (await c.pc.getStats()).forEach((s) => {
    const kind = s.kind || s.mediaType;
    if (s.type === 'outbound-rtp' && kind === 'video') sent.push(`${s.rid || '-'}:${s.frameWidth || 0}x${s.frameHeight || 0}`);
    if (s.type !== 'inbound-rtp') return;
    const slot = c.slots[s.mid !== undefined ? s.mid : midOfTrack[s.trackIdentifier]];
    if (!slot || !slot.participant_id) return;
    const p = (inbound[slot.participant_id] ||= { videoFrames: 0, audioPackets: 0 });
    if (kind === 'video') p.videoFrames += s.framesDecoded || 0;
    if (kind === 'audio') p.audioPackets += s.packetsReceived || 0;
  });
  const widths = {};
  for (const tile of document.querySelectorAll('.tile[data-participant-id]:not([data-slot-kind="self"])')) {
    const video = tile.querySelector('video');
    if (tile.dataset.participantId && video) widths[tile.dataset.participantId] = Math.max(widths[tile.dataset.participantId] || 0, video.videoWidth);
  }
  const stage = document.querySelector('.tile[data-slot-kind="stage"] video');
  return {
    state: c.state,
    participantId: c.participantId,
    e2ee: c.e2ee ? { supported: c.e2ee.supported } : null,
    inbound,
    widths,
    sent: sent.sort(),
    stage: stage ? `${stage.videoWidth}x${stage.videoHeight}` : '-',
  };
};

if (unavailable) {
  test('(ff) a Firefox page and a Chromium page in one call', { skip: `skipped: ${unavailable}` }, () => {});
} else {
  let lab = null;
  let firefox = null;

  before(async () => {
    lab = createLab();
    await startServer({ sfuIp: lab.hubIp });
    await seedClass(CLASS, 'CM2 (test Firefox)', [TEACHER, PARENT], { options: { visio_allow_unencrypted: true } });
    await launchBrowser();
  });

  after(async () => {
    if (firefox) await firefox.close();
    await shutdown();
    if (lab) await lab.cleanup();
  });

  test('(ff) a Firefox page and a Chromium page in one call decode each other\'s video and receive each other\'s audio', { timeout: 120_000 }, async () => {
    const client = lab.addClient('ff');
    firefox = await launchFirefox({ client, lab, serverPort: server.httpPort });
    const [ffMember, crMember] = FIREFOX_FIRST ? [TEACHER, PARENT] : [PARENT, TEACHER];

    const openFirefox = async () => {
      const page = await firefox.open(`${firefox.base}/call/${CLASS}#token=${mintJwt(ffMember.user)}`, { preloadScripts: [noEncodedTransforms] });
      await enterCall(page);
      await page.waitForFunction(() => {
        const c = window.klassCall;
        return c && (c.state === 'admitted' || c.state === 'refused' || c.state === 'left') && c.state;
      }, null, { timeout: 30_000 });
      const state = await page.evaluate(() => ({ state: window.klassCall.state, error: window.klassCall.errorCode, log: window.klassCall.log.slice(-20) }));
      assert.equal(state.state, 'admitted', `Firefox's page: ${JSON.stringify(state)}\n${logTail(30)}`);
      return page;
    };
    const openChromium = async () => {
      const entry = await openPage(CLASS, crMember, { camera: CAMERA, initScripts: [noEncodedTransforms] });
      await waitForState(entry, 'admitted');
      return entry.page;
    };
    // Firefox's fake camera is 640x480 already.
    const ffPage = FIREFOX_FIRST ? await openFirefox() : null;
    const crPage = await openChromium();
    const ff = ffPage || (await openFirefox());
    const pages = [['firefox', ff], ['chromium', crPage]];

    // Both decode the other's video and get its audio (the first frames take a keyframe or two).
    const ids = {};
    for (const [name, page] of pages) ids[name] = (await page.evaluate(sample)).participantId;
    const other = { firefox: ids.chromium, chromium: ids.firefox };
    for (const [name, page] of pages) {
      await page.waitForFunction(({ pid }) => {
        const c = window.klassCall;
        const tile = [...document.querySelectorAll('.tile:not([data-slot-kind="self"])')].find((t) => t.dataset.participantId === pid);
        return c && tile && tile.querySelector('video').videoWidth > 0;
      }, { pid: other[name] }, { timeout: 30_000 });
    }
    const first = await Promise.all(pages.map(([, page]) => page.evaluate(sample)));
    await sleep(3000);
    const second = await Promise.all(pages.map(([, page]) => page.evaluate(sample)));

    pages.forEach(([name], i) => {
      const a = first[i].inbound[other[name]] || { videoFrames: 0, audioPackets: 0 };
      const b = second[i].inbound[other[name]] || { videoFrames: 0, audioPackets: 0 };
      const s = second[i];
      console.log(`(ff) ${name} (${name === 'firefox' ? ffMember.role : crMember.role}): state ${s.state}, e2ee ${JSON.stringify(s.e2ee)}, ` +
        `video frames decoded from the other ${a.videoFrames} -> ${b.videoFrames}, audio packets ${a.audioPackets} -> ${b.audioPackets}, ` +
        `its tile ${s.widths[other[name]]} px wide; sends ${s.sent.join(' ')}; its stage shows ${s.stage}`);
      assert.equal(s.state, 'admitted', `${name}: state ${s.state}`);
      assert.ok(!s.e2ee || !s.e2ee.supported, `${name}'s page can encrypt: ${JSON.stringify(s.e2ee)}`);
      assert.ok(s.widths[other[name]] > 0, `${name} shows no picture of the other`);
      assert.ok(b.videoFrames > a.videoFrames, `${name} decodes no video from the other (${a.videoFrames} -> ${b.videoFrames})`);
      assert.ok(b.audioPackets > a.audioPackets, `${name} receives no audio from the other (${a.audioPackets} -> ${b.audioPackets})`);
    });
  });
}
