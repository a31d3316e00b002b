// Everyone in the call, whether or not a slot shows them: a count and a list (name, role, raised
// hand and its place in the queue, muted microphone, camera off, weak connection, who speaks),
// with "show large" (pin) and, for teachers and admins, moderation buttons (give the floor, lower
// the hand, mute, ...).
//
// Entries are kept and updated in place, never rebuilt: `speakers` comes up to five times a
// second, and a rebuilt list would take the keyboard focus away from its buttons.

import { S, roleText } from './strings.js';
import { call, local, ui, el, isModerator, isSelf, pin } from './state.js';
import { moderate, MODERATION_ACTIONS } from './moderation.js';
import { handPosition } from './hands.js';

/** participant_id -> <li> */
const entries = new Map();

function makeEntry(pid) {
  const li = el('li', 'roster-entry');
  li.dataset.participantId = pid;
  li.dataset.speaking = 'false';

  const who = el('div', 'roster-who');
  const name = el('span', 'roster-name');
  const role = el('span', 'roster-role');
  const state = el('span', 'roster-state');
  const speaking = el('span', 'roster-speaking');
  speaking.textContent = S.speaking;
  speaking.hidden = true;
  who.append(name, role, state, speaking);
  li.append(who);

  if (!isSelf(pid)) {
    const actions = el('div', 'roster-actions');
    const pinButton = el('button');
    pinButton.dataset.action = 'pin';
    pinButton.addEventListener('click', () => pin(call.pinned === pid ? null : pid));
    actions.append(pinButton);
    const mod = el('span', 'mod-actions');
    for (const { action } of MODERATION_ACTIONS) {
      const b = el('button');
      b.dataset.action = action;
      b.addEventListener('click', () => moderate(action, pid));
      mod.append(b);
    }
    actions.append(mod);
    li.append(actions);
  }
  return li;
}

function updateEntry(li, pid) {
  const p = call.participants[pid];
  const self = isSelf(pid);
  // The server does not list us among the participants: our own entry is "Vous".
  const name = p ? p.display_name : self ? S.you : S.someone;
  const roleId = self ? call.role : p ? p.role : '';
  li.dataset.role = roleId || '';
  li.querySelector('.roster-name').textContent = self && p ? S.youNamed(name) : name;
  const role = roleId && roleId !== 'parent' ? roleText(roleId) : '';
  li.querySelector('.roster-role').textContent = role;
  const states = [];
  const audioMuted = self ? local.audioMuted || !local.audioTrack : p && p.audio_muted;
  const videoOff = self ? local.videoOff || !local.videoTrack : p && p.video_off;
  const reconnecting = !self && !!(p && p.reconnecting);
  const hand = handPosition(pid);
  const weak = self ? call.weak.self : !!call.weak.participants[pid];
  if (hand) states.push(S.handBadge(hand));
  if (reconnecting) states.push(S.reconnectingBadge);
  else if (weak) states.push(S.weakBadge);
  if (audioMuted) states.push(S.micOff);
  if (videoOff) states.push(S.camOff);
  li.querySelector('.roster-state').textContent = states.join(', ');
  li.dataset.reconnecting = String(reconnecting);
  li.dataset.hand = String(hand);
  li.dataset.weak = String(weak);
  li.classList.toggle('hand-raised', hand > 0);
  li.dataset.audioMuted = String(!!audioMuted);
  li.dataset.videoOff = String(!!videoOff);
  const speaking = call.speakers.includes(pid);
  li.dataset.speaking = String(speaking);
  li.classList.toggle('speaking', speaking);
  li.querySelector('.roster-speaking').hidden = !speaking;
  const pinned = call.pinned === pid;
  li.dataset.pinned = String(pinned);
  const pinButton = li.querySelector('button[data-action="pin"]');
  if (pinButton) {
    pinButton.textContent = pinned ? S.pinned : S.pin;
    pinButton.setAttribute('aria-pressed', String(pinned));
    pinButton.setAttribute('aria-label', pinned ? S.unpinOf(name) : S.pinOf(name));
  }
  const mod = li.querySelector('.mod-actions');
  if (mod) {
    mod.hidden = !isModerator();
    for (const { action, label } of MODERATION_ACTIONS) {
      const b = mod.querySelector(`button[data-action="${action}"]`);
      b.hidden = action === 'lower_hand' && hand === 0;
      b.textContent = S[label];
      b.setAttribute('aria-label', S.actionFor(S[label], name));
    }
  }
}

// Oneself first, then teachers and admins, then by arrival (the order of `call.participants`).
function orderedIds() {
  const others = Object.keys(call.participants).filter((pid) => !isSelf(pid));
  const rank = (pid) => (['teacher', 'admin'].includes(call.participants[pid].role) ? 0 : 1);
  const sorted = others.map((pid, idx) => ({ pid, idx }))
    .sort((a, b) => rank(a.pid) - rank(b.pid) || a.idx - b.idx)
    .map((e) => e.pid);
  return call.participantId ? [call.participantId, ...sorted] : sorted;
}

export function renderRoster() {
  const ids = orderedIds();
  const wanted = new Set(ids);
  for (const [pid, li] of entries) {
    if (!wanted.has(pid)) {
      li.remove();
      entries.delete(pid);
    }
  }
  for (const pid of ids) {
    if (!entries.has(pid)) entries.set(pid, makeEntry(pid));
    updateEntry(entries.get(pid), pid);
  }
  // Moving a focused element would drop its focus: reorder only when the order changed.
  const current = [...ui.roster.children].map((li) => li.dataset.participantId);
  if (current.join('\n') !== ids.join('\n')) ids.forEach((pid) => ui.roster.append(entries.get(pid)));
  ui.rosterCount.textContent = String(ids.length);
  ui.roster.setAttribute('aria-label', S.count(ids.length));
}

export function clearRoster() {
  entries.clear();
  ui.roster.textContent = '';
  ui.rosterCount.textContent = '0';
}
