// Raised hands (« lever la main »): our own hand button, the queue the server keeps (`hands`,
// oldest first) shown above the list of people with the teacher's "give the floor" and "lower the
// hand", and what a screen reader hears. Teachers (and the one who raised it) hear "X lève la
// main"; the one given the floor gets "Vous avez la parole" (an alert: their microphone turns on),
// everyone else "X a la parole".
//
// The server enforces every rule (docs/protocol.md, "Raised hands"); the page only asks.

import { S } from './strings.js';
import { call, local, el, isModerator, isSelf, displayName, send, showAlert, render, onRender } from './state.js';

const $ = (id) => document.getElementById(id);
const view = {
  panel: $('hands-panel'), list: $('hands'), count: $('hands-count'), button: $('btn-hand'),
  announcer: $('announcer'),
};

/** participant_id -> <li> of the queue; kept, never rebuilt, so that focus stays on its buttons. */
const entries = new Map();
let applySelfMute = () => {};

/** 1 for the oldest raised hand, 0 for a hand that is down. */
export function handPosition(pid) {
  return call.hands.indexOf(pid) + 1;
}

function announce(text) {
  view.announcer.textContent = text;
}

export function onHands(ids) {
  const before = call.hands;
  call.hands = ids || [];
  call.handsLog.push({ at: Date.now(), type: 'hands', ids: call.hands });
  for (const pid of call.hands.filter((id) => !before.includes(id))) {
    if (isSelf(pid)) announce(S.youRaisedHand);
    else if (isModerator()) announce(S.handRaisedBy(displayName(pid)));
  }
  const selfLowered = before.includes(call.participantId) && !call.hands.includes(call.participantId);
  if (selfLowered && call.floor !== call.participantId) announce(S.youLoweredHand);
  render();
}

export function onFloorGiven(pid) {
  call.floor = pid;
  call.handsLog.push({ at: Date.now(), type: 'floor_given', pid });
  if (isSelf(pid)) {
    // We asked to speak: the floor turns our microphone on (the server lifted any mute).
    if (local.audioTrack && local.audioMuted) {
      applySelfMute('audio', false);
      send({ type: 'set_muted', kind: 'audio', muted: false });
    }
    showAlert(S.floorYou, 'floor_given');
  } else {
    announce(S.floorTo(displayName(pid)));
  }
  render();
}

function makeEntry(pid) {
  const li = el('li', 'hand-entry');
  li.dataset.participantId = pid;
  const name = el('span', 'hand-name');
  li.append(name);
  const actions = el('span', 'hand-actions');
  for (const [action, label] of [['give_floor', 'actionGiveFloor'], ['lower_hand', 'actionLowerHand']]) {
    const b = el('button');
    b.dataset.action = action;
    b.dataset.label = label;
    b.addEventListener('click', () => {
      if (isModerator()) send({ type: action, target: pid });
    });
    actions.append(b);
  }
  li.append(actions);
  return li;
}

function renderHands() {
  const ids = call.hands.filter((pid) => isSelf(pid) || call.participants[pid]);
  for (const [pid, li] of entries) {
    if (!ids.includes(pid)) {
      li.remove();
      entries.delete(pid);
    }
  }
  for (const pid of ids) {
    if (!entries.has(pid)) entries.set(pid, makeEntry(pid));
    const li = entries.get(pid);
    const name = displayName(pid);
    li.querySelector('.hand-name').textContent = name;
    const actions = li.querySelector('.hand-actions');
    actions.hidden = !isModerator();
    for (const b of actions.querySelectorAll('button')) {
      b.textContent = S[b.dataset.label];
      b.setAttribute('aria-label', S.actionFor(S[b.dataset.label], name));
    }
  }
  const current = [...view.list.children].map((li) => li.dataset.participantId);
  if (current.join('\n') !== ids.join('\n')) ids.forEach((pid) => view.list.append(entries.get(pid)));
  view.count.textContent = String(ids.length);
  view.panel.hidden = ids.length === 0;

  const raised = handPosition(call.participantId) > 0;
  view.button.textContent = raised ? S.lowerHand : S.raiseHand;
  view.button.dataset.raised = String(raised);
  view.button.disabled = call.state !== 'admitted';
}

export function clearHands() {
  entries.clear();
  view.list.textContent = '';
  view.panel.hidden = true;
  call.hands = [];
}

export function wireHands({ onSelfMute }) {
  applySelfMute = onSelfMute;
  view.button.addEventListener('click', () => {
    const raised = handPosition(call.participantId) > 0;
    send(raised ? { type: 'lower_hand' } : { type: 'raise_hand' });
  });
  onRender(renderHands);
  renderHands();
}
