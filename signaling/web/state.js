// What the page knows, shared by its modules, and the small helpers every one of them uses.
// `call` is also the debug hook the browser tests read (window.klassCall).

import { S } from './strings.js';

const $ = (id) => document.getElementById(id);

// Module scripts run after the document is parsed: every element below exists.
export const ui = {
  status: $('status'), alert: $('alert'), speakerNow: $('speaker-now'), controls: $('controls'),
  stage: $('stage'), grid: $('grid'), unpin: $('btn-unpin'), audioSink: $('audio-sink'),
  roster: $('roster'), rosterCount: $('roster-count'),
  mic: $('btn-mic'), cam: $('btn-cam'), sound: $('btn-sound'), leave: $('btn-leave'),
  modControls: $('moderator-controls'), muteAll: $('btn-mute-all'), lock: $('btn-lock'),
  share: $('btn-share'), end: $('btn-end'), timer: $('timer'), timerValue: $('timer-value'),
  lockIndicator: $('lock-indicator'), bandwidthNotice: $('bandwidth-notice'),
  networkNotice: $('network-notice'), view: $('btn-view'),
  prompt: $('unmute-prompt'), promptText: $('unmute-text'), promptAccept: $('unmute-accept'),
  promptIgnore: $('unmute-ignore'),
  security: $('security'), securityText: $('security-text'), safetyCode: $('safety-code'),
  safetyCodeValue: $('safety-code-value'),
};

export const call = {
  pc: null,
  ws: null,
  participantId: null,
  role: null,
  state: 'starting',
  /** participant_id -> {participant_id, display_name, role, audio_muted, video_off} */
  participants: {},
  /** track_id -> {track_id, participant_id, kind, source}, as announced by the server */
  tracks: {},
  /** mid -> {mid, kind, participant_id, source, csrc}: our receive slots, from `slots` messages */
  slots: {},
  /** `slots` messages received so far: how often the server switched what we see. */
  nSlotsMessages: 0,
  /** Who speaks now, loudest first (the latest `speakers` message). */
  speakers: [],
  /** When each `speakers` message came (wall clock, ms) and what it said; the last 500. */
  speakersLog: [],
  /** The participant we pinned on our stage, or null. */
  pinned: null,
  /** Raised hands, oldest first (the latest `hands`), who was last given the floor, and when
   * each `hands` and `floor_given` came (hands.js). */
  hands: [],
  floor: null,
  handsLog: [],
  /** Weak connections (netquality.js): ours, and per participant id. */
  weak: { self: false, participants: {} },
  /** 'stage' or 'grid' (remembered in localStorage). */
  view: 'stage',
  locked: false,
  maxParticipants: null,
  maxAudioSlots: null,
  maxThumbnailSlots: null,
  remainingSeconds: null,
  errorCode: null,
  leftReason: null,
  mediaMode: null,
  timings: { start: performance.now() },
  log: [],
  send,
};
window.klassCall = call;

export const local = {
  stream: null,
  audioTrack: null,
  videoTrack: null,
  /** [{transceiver, source, active}] for what we publish */
  senders: [],
  audioMuted: false,
  videoOff: false,
  /** {entry, track} while sharing the screen */
  share: null,
};

export function trace(what) {
  call.log.push(`${Math.round(performance.now())} ${what}`);
  if (call.log.length > 200) call.log.shift();
}

export function setState(state) {
  call.state = state;
  document.body.dataset.state = state;
  trace(`state ${state}`);
}

export function setStatus(text) {
  ui.status.textContent = text;
}

export function showAlert(text, code) {
  ui.alert.textContent = text;
  ui.alert.dataset.code = code || '';
  ui.alert.classList.toggle('warning', code === 'time_warning');
  ui.alert.hidden = false;
}

export function hideAlert() {
  ui.alert.hidden = true;
  ui.alert.textContent = '';
  ui.alert.dataset.code = '';
}

export function send(msg) {
  const ws = call.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(msg));
  return true;
}

/** A new element with these classes (and, for a button, `type="button"`). */
export function el(tag, className = '') {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (tag === 'button') element.type = 'button';
  return element;
}

export function isModerator() {
  return call.role === 'teacher' || call.role === 'admin';
}

export function isSelf(pid) {
  return pid !== null && pid !== undefined && pid === call.participantId;
}

/** The name shown for a participant: theirs, "Vous" for oneself. */
export function displayName(pid) {
  if (isSelf(pid)) return S.you;
  const p = call.participants[pid];
  return p ? p.display_name : S.someone;
}

// Views register here; `render()` brings them all up to date with `call` and `local`.
const renderers = [];

export function onRender(fn) {
  renderers.push(fn);
}

export function render() {
  for (const fn of renderers) fn();
}

/** Puts a participant on our own stage (`null`: back to the server's choice). */
export function pin(pid) {
  const target = pid && !isSelf(pid) ? pid : null;
  if (!send({ type: 'pin', participant_id: target })) return;
  call.pinned = target;
  trace(`pin ${target}`);
  render();
}
