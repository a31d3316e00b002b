// Calls that survive a cut and a network change: one parent's page runs in a network namespace
// of its own (netns.mjs) whose network we cut for 20 s (netimpair drops everything both ways),
// then whose address we change (a phone moving from Wi-Fi to 4G). Each time the parent must come
// back by itself as the same participant (same participant id, one attendance row), while the
// teacher's page shows them as "reconnecting" rather than dropping their tile, and media must flow
// again both ways. Prints how long each recovery took.
//
// Needs root, iproute2, iptables and `netimpair` (NETIMPAIR_BIN); skipped otherwise.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  callState,
  get,
  inboundByParticipant,
  launchBrowser,
  launchBrowserInNamespace,
  logTail,
  mintJwt,
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

const CLASS = 'browser-test-reconnect';
const TEACHER = { user: 'teacher-r', name: 'M. Garnier', role: 'teacher' };
const PARENT = { user: 'parent-r1', name: 'Léa Fontaine', role: 'parent' };
const CUT_S = 20;

const unavailable = netnsUnavailable();

/** What the page says of its own link, and of others'. */
async function linkState(entry) {
  return entry.page.evaluate(() => {
    const c = window.klassCall;
    const alert = document.getElementById('alert');
    return {
      state: c.state,
      participantId: c.participantId,
      link: c.link,
      reconnections: c.reconnections,
      alertCode: alert.hidden ? '' : alert.dataset.code,
      reconnectingOthers: Object.values(c.participants).filter((p) => p.reconnecting).map((p) => p.participant_id),
      rosterReconnecting: [...document.querySelectorAll('#roster > li[data-reconnecting="true"]')].map((li) => li.dataset.participantId),
      log: c.log.slice(-60),
    };
  });
}

/** Waits until `receiver` decodes new video frames and gets new audio from `publisherId`. */
async function waitForFreshMedia(receiver, publisherId, timeoutMs, other) {
  const before = await inboundByParticipant(receiver);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await sleep(500);
    const now = await inboundByParticipant(receiver);
    const frames = get(now, publisherId, 'video', 'framesDecoded') - get(before, publisherId, 'video', 'framesDecoded');
    const audio = get(now, publisherId, 'audio', 'packetsReceived') - get(before, publisherId, 'audio', 'packetsReceived');
    if (frames >= 10 && audio >= 25) return Date.now();
  }
  const state = await linkState(receiver);
  const otherState = await linkState(other);
  throw new Error(
    `${receiver.user} gets no fresh media from ${publisherId}\npage log:\n${state.log.join('\n')}` +
      `\n${other.user}'s page log:\n${otherState.log.join('\n')}\nserver log:\n${logTail(40)}`,
  );
}

async function waitFor(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await check();
    if (last.ok) return last;
    await sleep(250);
  }
  throw new Error(`${what}: ${JSON.stringify(last)}\nserver log:\n${logTail(40)}`);
}

/** Back in the call as the same participant, the link mended, media flowing both ways. */
async function expectRecovered(what, teacher, parent, ids, since) {
  const state = await waitFor(`${what}: the parent's page back to a working link`, async () => {
    const s = await linkState(parent);
    return { ok: s.link === 'ok' && s.state === 'admitted', ...s };
  }, 60_000);
  assert.equal(state.participantId, ids[PARENT.user], `${what}: the parent is the same participant`);
  const linkMs = Date.now() - since;
  const [toTeacherAt, toParentAt] = await Promise.all([
    waitForFreshMedia(teacher, ids[PARENT.user], 30_000, parent),
    waitForFreshMedia(parent, ids[TEACHER.user], 30_000, teacher),
  ]);
  if (process.env.RECONNECT_VERBOSE) {
    console.log(`${what}: parent -> teacher ${toTeacherAt - since} ms, teacher -> parent ${toParentAt - since} ms`);
  }
  const recoveredMs = Date.now() - since;
  await waitFor(`${what}: the teacher no longer sees the parent reconnecting`, async () => {
    const s = await linkState(teacher);
    return { ok: !s.reconnectingOthers.includes(ids[PARENT.user]), ...s };
  }, 20_000);
  return { linkMs, recoveredMs, reconnections: state.reconnections };
}

if (unavailable) {
  test('(r) reconnection after a cut and a network change', { skip: `skipped: ${unavailable}` }, () => {});
} else {
  let lab = null;
  let client = null;
  let netBrowser = null;

  before(async () => {
    lab = createLab();
    client = lab.addClient('r1');
    await client.startImpair();
    await startServer({ sfuIp: lab.hubIp });
    await seedClass(CLASS, 'CE1 (test reconnexion)', [TEACHER, PARENT]);
    await launchBrowser();
  });

  after(async () => {
    if (netBrowser) await netBrowser.close();
    await shutdown();
    if (lab) await lab.cleanup();
  });

  test('(r) a parent cut off for 20 s, then moved to a new address, comes back by itself as the same participant', { timeout: 240_000 }, async () => {
    let base;
    ({ base, browser: netBrowser } = await launchBrowserInNamespace(lab, client));
    const teacher = await openPage(CLASS, TEACHER);
    await waitForState(teacher, 'admitted');
    const parent = await openPage(CLASS, PARENT, { context: netBrowser.context, base });
    await waitForState(parent, 'admitted');
    const ids = await waitForMediaEverywhere([teacher, parent], [teacher, parent], { timeoutMs: 60_000 });

    // A 20 s cut: longer than str0m's ICE timeout (15 s) and Chromium's, shorter than the
    // server's grace period (30 s).
    await client.cut(true);
    const cutAt = Date.now();
    const during = await waitFor('during the cut, the teacher sees the parent reconnecting', async () => {
      const s = await linkState(teacher);
      return { ok: s.reconnectingOthers.includes(ids[PARENT.user]) && s.rosterReconnecting.includes(ids[PARENT.user]), ...s };
    }, (CUT_S - 2) * 1000);
    const shownAfterMs = Date.now() - cutAt;
    const parentDuring = await waitFor('during the cut, the parent page says it is reconnecting', async () => {
      const s = await linkState(parent);
      return { ok: s.alertCode === 'reconnecting', ...s };
    }, Math.max(1000, CUT_S * 1000 - (Date.now() - cutAt) - 1000));
    assert.equal(parentDuring.state, 'admitted', 'the parent is still in the call, not "disconnected"');
    assert.ok(during.state === 'admitted');
    await sleep(Math.max(0, CUT_S * 1000 - (Date.now() - cutAt)));
    await client.cut(false);
    const restoredAt = Date.now();
    const afterCut = await expectRecovered('after the cut', teacher, parent, ids, restoredAt);

    // A network change: a new address, the old one gone (open sockets on it break).
    const changedAt = Date.now();
    const newIp = client.changeAddress();
    const afterChange = await expectRecovered('after the network change', teacher, parent, ids, changedAt);
    if (process.env.RECONNECT_VERBOSE) console.log((await linkState(parent)).log.join('\n'));

    // One attendance row for the parent, still open: never counted as gone.
    const auth = { authorization: `Bearer ${mintJwt(TEACHER.user)}` };
    const sessions = await (await fetch(`${server.base}/v1/classes/${CLASS}/sessions`, { headers: auth })).json();
    const records = await (await fetch(`${server.base}/v1/classes/${CLASS}/sessions/${sessions[0].session_id}/attendance`, { headers: auth })).json();
    const rows = records.filter((r) => r.user_id === PARENT.user);
    assert.equal(rows.length, 1, JSON.stringify(records));
    assert.equal(rows[0].left_at, null, JSON.stringify(rows[0]));
    assert.equal((await callState(parent)).participantId, ids[PARENT.user]);

    console.log(
      [
        `reconnection (r): teacher saw "reconnecting" ${(shownAfterMs / 1000).toFixed(1)} s into the ${CUT_S} s cut`,
        `  after the cut: the page's link mended ${(afterCut.linkMs / 1000).toFixed(1)} s, media both ways again ${(afterCut.recoveredMs / 1000).toFixed(1)} s after the network came back (page reconnections ${JSON.stringify(afterCut.reconnections)})`,
        `  network change to ${newIp}: link mended ${(afterChange.linkMs / 1000).toFixed(1)} s, media both ways again ${(afterChange.recoveredMs / 1000).toFixed(1)} s after (page reconnections ${JSON.stringify(afterChange.reconnections)})`,
      ].join('\n'),
    );
  });
}
