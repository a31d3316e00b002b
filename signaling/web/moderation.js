// Teacher and admin controls (give the floor, lower a hand, mute, ask to unmute, camera off,
// remove; mute all, lock, screen
// share, end session) and the prompt a participant gets when a moderator asks them to unmute.
// The server enforces every one of these; the page only asks.

import { S } from './strings.js';
import { call, local, ui, isModerator, send, showAlert, hideAlert, trace } from './state.js';
import { addSender, requestLocalOffer } from './connection.js';
import { showSelfScreen, hideSelfScreen } from './tiles.js';

/** The per-participant actions, in the roster; `label` is a key of the strings. */
export const MODERATION_ACTIONS = [
  { action: 'give_floor', label: 'actionGiveFloor' },
  { action: 'lower_hand', label: 'actionLowerHand' },
  { action: 'mute', label: 'actionMute' },
  { action: 'request_unmute', label: 'actionRequestUnmute' },
  { action: 'disable_camera', label: 'actionDisableCamera' },
  { action: 'remove', label: 'actionRemove' },
];

let endConfirmTimer = null;

export function moderate(action, target) {
  if (!isModerator()) return;
  if (action === 'request_unmute') send({ type: 'request_unmute', target, kind: 'audio' });
  else send({ type: action, target });
}

export function refreshLock() {
  ui.lock.textContent = call.locked ? S.unlock : S.lock;
  ui.lock.setAttribute('aria-pressed', String(call.locked));
  ui.lockIndicator.hidden = !call.locked;
}

export function refreshModeratorControls() {
  ui.modControls.hidden = !isModerator();
}

// ---------- asked to unmute ----------

/** `applySelfMute(kind, muted)` is the page's: it changes our tracks and buttons. */
let applySelfMute = () => {};

export function showUnmutePrompt(kind) {
  ui.promptText.textContent = kind === 'audio' ? S.askUnmuteAudio : S.askUnmuteVideo;
  ui.promptAccept.textContent = kind === 'audio' ? S.unmuteMe : S.camOnMe;
  ui.prompt.dataset.kind = kind;
  ui.prompt.hidden = false;
  ui.promptAccept.focus();
}

function answerUnmutePrompt(accept) {
  const kind = ui.prompt.dataset.kind;
  ui.prompt.hidden = true;
  if (!accept) return;
  applySelfMute(kind, false);
  send({ type: 'set_muted', kind, muted: false });
  hideAlert();
}

// ---------- screen share ----------

async function startShare() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
    showAlert(S.noShare, 'screen_share');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (err) {
    trace(`getDisplayMedia failed: ${err && err.name}`);
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (!track || !call.pc) return;
  const entry = addSender(track, 'screen_share', stream);
  local.share = { entry, track };
  track.addEventListener('ended', () => stopShare(true));
  showSelfScreen(track);
  ui.share.textContent = S.stopShare;
  ui.share.setAttribute('aria-pressed', 'true');
  requestLocalOffer();
}

/** Stops our screen share; `renegotiate`: tell the server (not when the call is over). */
export function stopShare(renegotiate) {
  const share = local.share;
  if (!share) return;
  local.share = null;
  share.track.stop();
  share.entry.active = false;
  try {
    share.entry.transceiver.sender.replaceTrack(null);
    share.entry.transceiver.direction = 'inactive';
  } catch (_) {
    // The connection may already be closed.
  }
  hideSelfScreen();
  ui.share.textContent = S.share;
  ui.share.setAttribute('aria-pressed', 'false');
  if (renegotiate) requestLocalOffer();
}

// ---------- end session ----------

function confirmEnd() {
  if (ui.end.dataset.confirm === '1') {
    clearTimeout(endConfirmTimer);
    send({ type: 'end_session' });
    return;
  }
  ui.end.dataset.confirm = '1';
  ui.end.textContent = S.endConfirm;
  endConfirmTimer = setTimeout(() => {
    ui.end.dataset.confirm = '';
    ui.end.textContent = S.end;
  }, 5000);
}

export function wireModeration({ onSelfMute }) {
  applySelfMute = onSelfMute;
  ui.muteAll.addEventListener('click', () => send({ type: 'mute_all' }));
  ui.lock.addEventListener('click', () => send({ type: 'lock', locked: !call.locked }));
  ui.share.addEventListener('click', () => (local.share ? stopShare(true) : startShare()));
  ui.end.addEventListener('click', confirmEnd);
  ui.promptAccept.addEventListener('click', () => answerUnmutePrompt(true));
  ui.promptIgnore.addEventListener('click', () => answerUnmutePrompt(false));
  refreshLock();
}
