// Class visio client: one RTCPeerConnection to the SFU, one WebSocket to the signaling server.
// Protocol version 2 (docs/protocol.md). Plain ES modules, no build step, no external resources;
// standard APIs only, so that it runs in Chromium and Firefox alike.
//
// This module wires the others and handles the server's messages:
// - `prejoin.js`: the screen before joining (name and role, camera, microphone level, devices);
// - `strings.js`: every visible text, French or English;
// - `state.js`: what the page knows (`window.klassCall`) and small helpers;
// - `connection.js`: WebSocket, peer connection, the join's slots, our own renegotiation;
// - `tiles.js`: the stage, the thumbnails, the audio slots, our preview, who speaks;
// - `roster.js`: everyone in the call; `moderation.js`: teacher controls;
// - `hands.js`: raised hands and the floor; `netquality.js`: weak connections, ours and others';
// - `reconnect.js`: a broken WebSocket resumed, a failed media link restarted;
// - `ice.js`: TURN servers and their credentials;
// - `e2ee.js` (with `e2ee-worker.js` and `sframe.js`): end-to-end encryption, its safety code.

import { readToken } from './page.js';
import { S, applyStaticStrings, errorText, leftText } from './strings.js';
import {
  call, local, ui, trace, setState, setStatus, showAlert, hideAlert, send, isModerator, onRender,
  render, pin, displayName,
} from './state.js';
import {
  PROTOCOL_VERSION, stopLocalMedia, createPeer, applyJoinAnswer, openSocket,
  onServerAnswer, maybeSendLocalOffer, isLocalOfferInFlight, rollbackLocalOffer, closePeer, enqueue,
  setIceServers,
} from './connection.js';
import { watchLinks, rememberSession, socketLost, socketResumed, iceStateChanged } from './reconnect.js';
import { fetchIceServers, usableServers } from './ice.js';
import {
  startE2ee, onAdmitted as e2eeAdmitted, onParticipantJoined, onParticipantLeft, onSealedKey,
  onSecurityChange, refreshMode, onNegotiated,
} from './e2ee.js';
import { createSlotViews, showSelfPreview, renderTiles, playAudio, clearViews } from './tiles.js';
import { renderRoster, clearRoster } from './roster.js';
import { runPrejoin } from './prejoin.js';
import { wireHands, onHands, onFloorGiven, clearHands } from './hands.js';
import { watchQuality, stopQuality } from './netquality.js';
import {
  wireModeration, refreshLock, refreshModeratorControls, showUnmutePrompt, stopShare,
} from './moderation.js';

let deadline = null;
let timerHandle = null;

onRender(renderTiles);
onRender(renderRoster);
onRender(renderSecurity);
onSecurityChange(renderSecurity);

// ---------- end-to-end encryption ----------

/** Says whether the call is end-to-end encrypted, and its safety code, or because of whom not. */
function renderSecurity() {
  const e = call.e2ee;
  const inCall = call.state === 'admitted';
  ui.security.hidden = !inCall;
  if (!inCall) return;
  ui.security.dataset.encrypted = String(e.encrypted);
  if (e.encrypted) {
    ui.securityText.textContent = S.e2eeOn;
    ui.safetyCode.hidden = e.safetyCode === null;
    ui.safetyCodeValue.textContent = e.safetyCode || '';
  } else {
    const names = e.unencryptedBy.map((pid) => displayName(pid));
    ui.securityText.textContent = e.unencryptedBy.includes(call.participantId) ? S.e2eeOffSelf : S.e2eeOffBecause(names.join(', '));
    ui.safetyCode.hidden = true;
  }
}

// ---------- link ----------

function classIdFromPath() {
  const m = /^\/call\/([^/]+)\/?$/.exec(location.pathname);
  if (!m) return null;
  const id = decodeURIComponent(m[1]);
  return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : null;
}

// ---------- server messages ----------

async function handle(msg) {
  switch (msg.type) {
    case 'joined':
      return onJoined(msg);
    case 'waiting':
      setState('waiting');
      setStatus(S.waiting);
      return;
    case 'admitted':
      return onAdmitted(msg);
    case 'slots':
      call.slots = {};
      for (const slot of msg.slots || []) call.slots[slot.mid] = slot;
      call.nSlotsMessages += 1;
      if (call.timings.slots === undefined) call.timings.slots = performance.now();
      renderTiles();
      return;
    case 'speakers':
      call.speakers = msg.participant_ids || [];
      call.speakersLog.push({ at: Date.now(), ids: call.speakers });
      if (call.speakersLog.length > 500) call.speakersLog.shift();
      return render();
    case 'answer':
      return onServerAnswer(msg.sdp);
    case 'resumed':
      return socketResumed();
    case 'connection': {
      const p = call.participants[msg.participant_id];
      if (p) p.reconnecting = !!msg.reconnecting;
      return render();
    }
    case 'participant_joined':
      call.participants[msg.participant.participant_id] = msg.participant;
      render();
      announceCount();
      return onParticipantJoined(msg.participant.participant_id);
    case 'participant_left':
      delete call.participants[msg.participant_id];
      if (call.pinned === msg.participant_id) call.pinned = null;
      render();
      announceCount();
      return onParticipantLeft(msg.participant_id);
    case 'e2ee_key':
      return onSealedKey(msg.from, msg.sealed);
    case 'track_published':
      call.tracks[msg.track.track_id] = msg.track;
      return;
    case 'track_unpublished':
      delete call.tracks[msg.track_id];
      return;
    case 'mute_changed':
      return onMuteChanged(msg);
    case 'unmute_requested':
      return showUnmutePrompt(msg.kind);
    case 'lock_changed':
      call.locked = !!msg.locked;
      return refreshLock();
    case 'role_changed':
      return onRoleChanged(msg);
    case 'hands':
      return onHands(msg.participant_ids);
    case 'floor_given':
      return onFloorGiven(msg.participant_id);
    case 'time_warning':
      startCountdown(msg.remaining_seconds);
      showAlert(S.endsIn(formatMinutes(msg.remaining_seconds)), 'time_warning');
      return;
    case 'left':
      return onLeft(msg.reason);
    case 'error':
      return onError(msg.code, msg.message);
    default:
      trace(`unknown message type ${msg.type}`);
  }
}

async function onJoined(msg) {
  call.participantId = msg.participant_id;
  call.role = msg.role;
  call.maxParticipants = msg.max_participants;
  call.maxAudioSlots = msg.max_audio_slots;
  call.maxThumbnailSlots = msg.max_thumbnail_slots;
  call.timings.joined = performance.now();
  rememberSession(msg);
  setIceServers(usableServers(msg.ice_servers));
  if (msg.protocol_version !== PROTOCOL_VERSION) {
    trace(`server speaks protocol ${msg.protocol_version}, we speak ${PROTOCOL_VERSION}`);
  }
  setState('joined');
  setStatus(S.connectingCall);
  await applyJoinAnswer(msg.sdp, send);
  onNegotiated(call.pc);
  // What the pre-join screen turned off stays off, and the others see it so.
  if (local.audioTrack && local.audioMuted) send({ type: 'set_muted', kind: 'audio', muted: true });
  if (local.videoTrack && local.videoOff) send({ type: 'set_muted', kind: 'video', muted: true });
  ui.controls.hidden = false;
  refreshModeratorControls();
  render();
  playAudio().then((ok) => { ui.sound.hidden = ok; });
}

function onAdmitted(msg) {
  call.timings.admitted = performance.now();
  setState('admitted');
  hideAlert();
  for (const p of msg.participants || []) call.participants[p.participant_id] = p;
  for (const t of msg.tracks || []) call.tracks[t.track_id] = t;
  call.remainingSeconds = msg.remaining_seconds;
  if (msg.remaining_seconds !== null && msg.remaining_seconds !== undefined) {
    startCountdown(msg.remaining_seconds);
  }
  render();
  announceCount();
  e2eeAdmitted();
  watchQuality();
  enqueue(maybeSendLocalOffer);
}

function announceCount() {
  if (call.state !== 'admitted') return;
  const others = Object.keys(call.participants).filter((id) => id !== call.participantId).length;
  setStatus(others === 0 ? S.alone : S.withOthers(others));
}

function onRoleChanged(msg) {
  const p = call.participants[msg.participant_id];
  if (p) p.role = msg.role;
  if (msg.participant_id === call.participantId) {
    const wasModerator = isModerator();
    call.role = msg.role;
    refreshModeratorControls();
    if (wasModerator !== isModerator()) {
      showAlert(isModerator() ? S.promotedToTeacher : S.demoted, 'role_changed');
    }
  }
  render();
}

function onMuteChanged(msg) {
  const p = call.participants[msg.participant_id];
  if (p) {
    if (msg.kind === 'audio') p.audio_muted = msg.muted;
    else p.video_off = msg.muted;
  }
  if (msg.participant_id === call.participantId) {
    applySelfMute(msg.kind, msg.muted);
    if (msg.muted && msg.by_moderator) {
      showAlert(msg.kind === 'audio' ? S.mutedByModerator : S.cameraDisabledByModerator, 'muted_by_moderator');
    }
  }
  render();
}

function applySelfMute(kind, muted) {
  if (kind === 'audio') {
    local.audioMuted = !!muted;
    if (local.audioTrack) local.audioTrack.enabled = !muted;
  } else {
    local.videoOff = !!muted;
    if (local.videoTrack) local.videoTrack.enabled = !muted;
  }
  refreshSelfButtons();
  render();
}

function onLeft(reason) {
  call.leftReason = reason;
  setState('left');
  setStatus(leftText(reason));
  ui.status.dataset.reason = reason;
  teardown();
}

async function onError(code, message) {
  call.errorCode = code;
  if (code === 'resume_failed') return giveUp(code);
  if (call.state === 'connecting' || call.state === 'starting') {
    // A refused join: the server closes the socket after this. Busy: again a little later.
    if (retryJoinLater(code)) return;
    setState('refused');
    setStatus(errorText(code, message));
    ui.status.dataset.code = code;
    teardown();
    return;
  }
  if (isLocalOfferInFlight()) {
    // Our offer was refused (e.g. a screen share): back to the last agreed state.
    await rollbackLocalOffer();
    if (local.share) stopShare(false);
  }
  if (code === 'muted_by_moderator') applySelfMute('audio', true);
  showAlert(errorText(code, message), code);
}

// ---------- countdown ----------

function formatClock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

function formatMinutes(seconds) {
  const m = Math.round(seconds / 60);
  return m >= 1 ? S.minutes(m) : S.seconds(Math.round(seconds));
}

function startCountdown(remaining) {
  deadline = Date.now() + remaining * 1000;
  ui.timer.hidden = false;
  const tick = () => {
    const left = (deadline - Date.now()) / 1000;
    call.remainingSeconds = Math.max(0, Math.round(left));
    ui.timerValue.textContent = formatClock(left);
    ui.timer.classList.toggle('urgent', left <= 60);
  };
  tick();
  if (!timerHandle) timerHandle = setInterval(tick, 1000);
}

// ---------- own controls ----------

function refreshSelfButtons() {
  ui.mic.disabled = !local.audioTrack;
  ui.mic.textContent = !local.audioTrack ? S.noMic : local.audioMuted ? S.unmuteMe : S.muteMe;
  ui.mic.setAttribute('aria-pressed', String(local.audioMuted));
  ui.cam.disabled = !local.videoTrack;
  ui.cam.textContent = !local.videoTrack ? S.noCam : local.videoOff ? S.camOnMe : S.camOffMe;
  ui.cam.setAttribute('aria-pressed', String(local.videoOff));
}

function toggleSelf(kind) {
  const muted = kind === 'audio' ? !local.audioMuted : !local.videoOff;
  // Off takes effect at once, locally; on is confirmed or refused by the server
  // (muted_by_moderator), which also enforces it.
  applySelfMute(kind, muted);
  send({ type: 'set_muted', kind, muted });
}

function wireControls() {
  ui.mic.addEventListener('click', () => toggleSelf('audio'));
  ui.cam.addEventListener('click', () => toggleSelf('video'));
  ui.sound.addEventListener('click', () => {
    playAudio().then((ok) => { ui.sound.hidden = ok; });
  });
  ui.leave.addEventListener('click', () => {
    if (!send({ type: 'leave' })) onLeft('left');
  });
  ui.unpin.addEventListener('click', () => pin(null));
  ui.view.addEventListener('click', () => setView(call.view === 'grid' ? 'stage' : 'grid'));
  wireModeration({ onSelfMute: applySelfMute });
  wireHands({ onSelfMute: applySelfMute });
  window.addEventListener('pagehide', () => send({ type: 'leave' }));
}

/** The stage view (one large, the others small) or the grid (everyone the same size), remembered. */
function setView(view) {
  call.view = view === 'grid' ? 'grid' : 'stage';
  document.body.dataset.view = call.view;
  ui.view.setAttribute('aria-pressed', String(call.view === 'grid'));
  try {
    localStorage.setItem('klass-call-view', call.view);
  } catch (_) {
    // Storage may be disabled: the choice holds for this page.
  }
}

function rememberedView() {
  try {
    return localStorage.getItem('klass-call-view') || 'stage';
  } catch (_) {
    return 'stage';
  }
}

function teardown() {
  stopQuality();
  clearHands();
  stopLocalMedia();
  closePeer();
  if (timerHandle) clearInterval(timerHandle);
  timerHandle = null;
  ui.timer.hidden = true;
  ui.controls.hidden = true;
  ui.prompt.hidden = true;
  clearViews();
  clearRoster();
}

// ---------- start ----------

function onConnectionState(state) {
  if (state === 'connected' && ui.alert.dataset.code === 'media_failed') hideAlert();
  // A link that worked once is restarted (reconnect.js); one that never did is blocked.
  const neverConnected = call.timings.connected === undefined;
  if (state === 'failed' && neverConnected && ['joined', 'waiting', 'admitted'].includes(call.state)) {
    showAlert(S.mediaFailed, 'media_failed');
  }
}

/** The call went on without us (the grace period passed): say so, and stop. */
function giveUp(code) {
  setState('disconnected');
  setStatus(S.resumeFailed);
  ui.status.dataset.code = code;
  hideAlert();
  teardown();
}

async function start() {
  applyStaticStrings(document);
  setView(rememberedView());
  wireControls();
  refreshSelfButtons();
  const classId = classIdFromPath();
  const token = readToken();
  if (!classId || !token) {
    setState('refused');
    setStatus(S.linkIncomplete);
    return;
  }
  if (typeof RTCPeerConnection === 'undefined' || typeof WebSocket === 'undefined') {
    setState('refused');
    setStatus(S.noWebrtc);
    return;
  }

  const choice = await runPrejoin(classId, token);
  if (!choice) return;
  call.timings.media = performance.now();
  local.audioMuted = !!local.audioTrack && !choice.micOn;
  local.videoOff = !!local.videoTrack && !choice.camOn;
  call.mediaMode = local.videoTrack && local.audioTrack ? 'audio+video'
    : local.audioTrack ? 'audio' : local.videoTrack ? 'video' : 'receive-only';
  refreshSelfButtons();
  showSelfPreview();

  const e2ee = await startE2ee();
  refreshMode();
  watchLinks({ classId, token, onMessage: handle, onGiveUp: giveUp });
  await connect(classId, token, e2ee);
}

// ---------- joining, and joining again when the server is too busy ----------

/** Refusals a page meets on a Monday at 9:00: the server asks to come back later. */
const RETRYABLE = new Set(['server_busy', 'rate_limited', 'unavailable', 'not_accepted']);
/** Tries in all, waits of about 2, 4, 8, 16 then 30 s (x1 to x1.5, so that pages spread out). */
const JOIN_ATTEMPTS = 7;
const joining = { attempt: 0, timer: null, classId: null, token: null, e2ee: null };

async function connect(classId, token, e2ee) {
  Object.assign(joining, { classId, token, e2ee });
  joining.attempt += 1;
  const iceServers = await fetchIceServers(classId, token);
  const join = await createPeer({ onConnectionState, onIceState: iceStateChanged, iceServers });
  createSlotViews(join.transceivers);
  call.declaredSlots = join.slots;

  setState('connecting');
  setStatus(local.stream ? S.connectingServer : S.connectingReceiveOnly);
  openSocket(classId, {
    onOpen: () => send({ type: 'join', token, sdp: join.sdp, tracks: join.tracks, slots: join.slots, e2ee }),
    onMessage: handle,
    onClose: (opened, ws) => {
      // A socket that a resumed one replaced (reconnect.js).
      if (ws !== call.ws) return;
      if (['left', 'refused', 'disconnected', 'retrying'].includes(call.state)) return;
      // In the call: the session is resumed on a new socket (reconnect.js).
      if (['joined', 'waiting', 'admitted'].includes(call.state) && socketLost()) return;
      // Never opened: the server refused the connection itself (too many joins at once from
      // here, or a surge it answers with "busy"; a page cannot read the status) or could not be
      // reached. Try again a little later, as the server asks.
      if (!opened && retryJoinLater('not_accepted')) return;
      setState('disconnected');
      setStatus(opened ? S.lostConnection : S.notAccepted);
      teardown();
    },
  });
}

/**
 * A join the server could not take now: close this attempt (keeping camera and microphone),
 * say when the next one comes, and make it. False when the tries are used up.
 */
function retryJoinLater(code) {
  if (!RETRYABLE.has(code) || joining.attempt >= JOIN_ATTEMPTS) return false;
  const base = Math.min(30, 2 ** joining.attempt);
  let left = Math.ceil(base * (1 + Math.random() * 0.5));
  setState('retrying');
  ui.status.dataset.code = code;
  closePeer();
  clearViews();
  const tick = () => {
    if (call.state !== 'retrying') return;
    if (left <= 0) {
      joining.timer = null;
      connect(joining.classId, joining.token, joining.e2ee).catch((err) => {
        trace(`join again failed: ${err && (err.stack || err)}`);
        setState('refused');
        setStatus(S.startFailed(err && err.message ? err.message : err));
      });
      return;
    }
    setStatus(S.retryingIn(left));
    left -= 1;
    joining.timer = setTimeout(tick, 1000);
  };
  trace(`join refused (${code}): try ${joining.attempt + 1} of ${JOIN_ATTEMPTS} in ${left} s`);
  tick();
  return true;
}

start().catch((err) => {
  trace(`start failed: ${err && (err.stack || err)}`);
  setState('refused');
  setStatus(S.startFailed(err && err.message ? err.message : err));
});
