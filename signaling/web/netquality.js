// Connection quality, from the statistics the peer connection already keeps, every 2 s while in
// the session:
// - ours is weak when the server reports that more than 5 % of what we send is lost, or when the
//   round trip passes 600 ms; the page then says so (#network-notice). (Not the browser's
//   `qualityLimitationReason`: its bandwidth estimate starts low and climbs, so it says
//   "bandwidth" on good links too.)
// - another participant's is weak when more than 5 % of their packets on our slots are lost over
//   the interval: a "connexion faible" badge on their tile and in the list. When our own link is
//   weak, or every participant we measure looks weak, the trouble is ours: nobody else is marked.
// A weak mark goes after three good intervals in a row, so that it does not blink. The server's
// own signals stay as they were: `connection` (reconnecting) and paused videos (bandwidth notice).

import { call, ui, render } from './state.js';

const INTERVAL_MS = 2000;
const SELF_LOSS = 0.05;
const PEER_LOSS = 0.05;
const MAX_RTT_S = 0.6;
/** Fewer packets than this in an interval say nothing about loss. */
const MIN_PACKETS = 20;
const GOOD_TO_CLEAR = 3;

/** inbound-rtp stats id -> {pid, lost, received}; key -> consecutive good intervals. */
const previous = new Map();
const goodRuns = new Map();
let timer = null;

function mark(key, weakNow) {
  if (weakNow) {
    goodRuns.set(key, 0);
    return true;
  }
  const run = (goodRuns.get(key) || 0) + 1;
  goodRuns.set(key, run);
  const wasWeak = key === 'self' ? call.weak.self : !!call.weak.participants[key];
  return wasWeak && run < GOOD_TO_CLEAR;
}

async function sample() {
  const pc = call.pc;
  if (!pc || call.state !== 'admitted' || pc.connectionState === 'closed') return;
  const report = await pc.getStats();
  let selfTrouble = false;
  const lossByPid = {};
  report.forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime > MAX_RTT_S) selfTrouble = true;
    if (s.type === 'remote-inbound-rtp' && s.fractionLost > SELF_LOSS) selfTrouble = true;
    if (s.type !== 'inbound-rtp') return;
    const slot = call.slots[s.mid];
    const pid = slot && slot.participant_id;
    const before = previous.get(s.id);
    const now = { pid, lost: s.packetsLost || 0, received: s.packetsReceived || 0 };
    previous.set(s.id, now);
    // A slot that changed publisher measures the new one from the next interval.
    if (!pid || !before || before.pid !== pid) return;
    const lost = Math.max(0, now.lost - before.lost);
    const total = lost + Math.max(0, now.received - before.received);
    if (total < MIN_PACKETS) return;
    lossByPid[pid] = Math.max(lossByPid[pid] || 0, lost / total);
  });
  const measured = Object.keys(lossByPid);
  const lossy = measured.filter((pid) => lossByPid[pid] > PEER_LOSS);
  const allLossy = measured.length >= 2 && lossy.length === measured.length;
  const weakSelf = mark('self', selfTrouble || allLossy);
  const participants = {};
  for (const pid of Object.keys(call.participants)) {
    if (mark(pid, !weakSelf && lossy.includes(pid)) && !weakSelf) participants[pid] = true;
  }
  const changed = weakSelf !== call.weak.self
    || JSON.stringify(participants) !== JSON.stringify(call.weak.participants);
  call.weak = { self: weakSelf, participants };
  if (changed) {
    ui.networkNotice.hidden = !weakSelf;
    render();
  }
}

export function watchQuality() {
  if (timer) return;
  timer = setInterval(() => { sample().catch(() => {}); }, INTERVAL_MS);
}

export function stopQuality() {
  clearInterval(timer);
  timer = null;
  ui.networkNotice.hidden = true;
}
