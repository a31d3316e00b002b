// End-to-end test of the class visio: the real `signaling` binary (signaling + SFU) and headless
// Chromium pages running the real web client (signaling/web/*.js), with fake camera and microphone.
//
// Run: npm ci && node --test   (see README.md). Needs /usr/bin/chromium and a built binary.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  api,
  callState,
  closePage,
  get,
  inboundByParticipant,
  launchBrowser,
  logTail,
  measureServerCpu,
  mintJwt,
  openPage,
  outboundAudioPackets,
  pages,
  screenshot,
  seedClass,
  server,
  sleep,
  startServer,
  stopServer,
  waitForMediaEverywhere,
  waitForState,
  shutdown,
} from './harness.mjs';

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

after(shutdown);

const pA = () => [pages[TEACHER.user], pages[PARENTS[0].user], pages[PARENTS[1].user]];

test('(a) three pages in one Standard session decode video and receive audio from each other', { timeout: 300_000 }, async () => {
  // The teacher's camera is large enough for simulcast (two layers); the others' are not.
  const teacher = await openPage(CLASS_A, TEACHER, { camera: { width: 640, height: 480 } });
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
          videoHeight: video.videoHeight,
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

  // Simulcast: the teacher sends 640x480 and 320x240. A parent's stage gets the full layer; a
  // parent who pins the other parent gets the teacher in a thumbnail, from the half-size layer.
  const [, parent1, parent2] = trio;
  const tileOf = (tiles, pid, kind) => tiles.find((t) => t.participantId === pid && t.slotKind === kind);
  await waitForCondition(async () => {
    const tiles = await visibleTiles(parent1);
    return tileOf(tiles, teacherId, 'stage')?.videoWidth === 640;
  }, 20_000, `${parent1.user}'s stage gets the teacher's full layer (640x480)`);
  await parent2.page.locator(`#roster > li[data-participant-id="${ids[parent1.user]}"] button[data-action="pin"]`).click();
  let thumbnail = null;
  await waitForCondition(async () => {
    thumbnail = tileOf(await visibleTiles(parent2), teacherId, 'thumbnail');
    return thumbnail?.videoWidth === 320;
  }, 20_000, `${parent2.user}'s thumbnail gets the teacher's half-size layer (320x240)`);
  console.log(`simulcast: ${parent1.user}'s stage shows the teacher at 640x480, ${parent2.user}'s thumbnail at ${thumbnail.videoWidth}x${thumbnail.videoHeight}`);
  await parent2.page.locator('#btn-unpin').click();

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
  assert.equal(declared.filter((k) => k === 'audio').length, 4);
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
