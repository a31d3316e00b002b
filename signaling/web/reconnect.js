// Calls that survive cuts and network changes (docs/protocol.md, "Reconnecting").
//
// - The WebSocket breaks: we open new ones and `resume` the session with the token of `joined`
//   (after 0.5 s, 1 s, 2 s, then every 2 s; an attempt not answered within 4 s is dropped) until
//   the server's grace period has passed; the server then sends what we missed. After that, the
//   call went on without us: we say so.
// - The media link fails (ICE `disconnected` for 2 s, or `failed`), or our address changed:
//   we restart ICE with a new offer. The WebSocket is suspect too (after a cut, TCP takes up to
//   a minute to retransmit; after a change of address it is dead without knowing it): a fresh
//   one resumes the session meanwhile, and the old one stays the call's until it does.
// Meanwhile the page says what is happening, and the others see us as "reconnecting" (the
// server's `connection` message). `call.state` does not change: we are still in the call.

import { S } from './strings.js';
import { call, trace, showAlert, hideAlert } from './state.js';
import {
  openSocket, requestIceRestart, isLocalOfferInFlight, rollbackLocalOffer, enqueue, maybeSendLocalOffer, watchNetwork,
} from './connection.js';

const RETRY_DELAYS_MS = [500, 1000, 2000];
const RETRY_EVERY_MS = 2000;
/** A resume attempt that got no answer this long is dropped (its TCP handshake may hang). */
const ATTEMPT_TIMEOUT_MS = 4000;
/** ICE `disconnected` this long (it often comes back by itself) before we restart it. */
const ICE_PATIENCE_MS = 2000;
/** At most one ICE restart this often while the media link stays down. */
const ICE_RESTART_EVERY_MS = 4000;
/** We ping the server this often; a socket that brought nothing back for SILENT_SOCKET_MS is
 *  suspect (a dead TCP connection can look open for many minutes). */
const PING_EVERY_MS = 4000;
const SILENT_SOCKET_MS = 9000;

const link = {
  socketUp: true,
  mediaUp: true,
  /** When the current trouble started (ms, performance.now()), or null. */
  since: null,
  attempts: 0,
  retryTimer: null,
  /** The WebSocket of the resume attempt under way, or null. */
  pending: null,
  pingTimer: null,
  iceTimer: null,
  lastIceRestart: -Infinity,
  /** The page's handlers for a resumed socket: set by `start`. */
  classId: null,
  token: null,
  onMessage: null,
  onGiveUp: null,
};
call.link = 'ok';
call.reconnections = { socket: 0, ice: 0 };

/** The page's call: where to reconnect and what to do with messages, or when it is too late. */
export function watchLinks({ classId, token, onMessage, onGiveUp }) {
  link.classId = classId;
  link.token = token;
  link.onMessage = onMessage;
  link.onGiveUp = onGiveUp;
}

/** `joined`: what a later `resume` needs. */
export function rememberSession(msg) {
  call.resumeToken = msg.resume_token || null;
  call.graceSeconds = msg.reconnect_grace_seconds || 30;
  call.lastHeardAt = performance.now();
  if (!link.pingTimer) link.pingTimer = setInterval(heartbeat, PING_EVERY_MS);
}

function heartbeat() {
  if (['left', 'refused', 'disconnected'].includes(call.state)) {
    clearInterval(link.pingTimer);
    return;
  }
  if (!link.socketUp || link.pending) return;
  call.send({ type: 'ping' });
  if (performance.now() - call.lastHeardAt > SILENT_SOCKET_MS) {
    trace('socket silent: resuming on a new one');
    call.offersHeld = true;
    link.attempts = 0;
    resume();
  }
}

function refresh() {
  const trouble = !link.socketUp || !link.mediaUp;
  if (trouble && link.since === null) link.since = performance.now();
  const state = trouble ? 'reconnecting' : 'ok';
  if (state === call.link) return;
  call.link = state;
  document.body.dataset.link = state;
  trace(`link ${state}`);
  if (trouble) {
    showAlert(S.reconnecting, 'reconnecting');
  } else {
    link.since = null;
    if (document.getElementById('alert').dataset.code === 'reconnecting') {
      showAlert(S.reconnected, 'reconnected');
      setTimeout(() => {
        if (document.getElementById('alert').dataset.code === 'reconnected') hideAlert();
      }, 3000);
    }
  }
}

function tooLate() {
  // A little beyond the server's grace period: its answer (`resume_failed`) is the authority.
  return link.since !== null && performance.now() - link.since > (call.graceSeconds + 10) * 1000;
}

/** The call's WebSocket closed while we are in the call. Returns false when it cannot be resumed. */
export function socketLost() {
  if (!call.resumeToken) return false;
  link.socketUp = false;
  refresh();
  if (!link.pending) scheduleResume();
  return true;
}

function scheduleResume() {
  clearTimeout(link.retryTimer);
  if (tooLate()) {
    link.onGiveUp('resume_failed');
    return;
  }
  const delay = link.attempts < RETRY_DELAYS_MS.length ? RETRY_DELAYS_MS[link.attempts] : RETRY_EVERY_MS;
  link.attempts += 1;
  link.retryTimer = setTimeout(resume, delay);
}

/** One attempt: a new socket that asks to carry our session. */
function resume() {
  if (link.pending || ['left', 'refused', 'disconnected'].includes(call.state)) return;
  trace(`resume attempt ${link.attempts}`);
  const ws = openSocket(link.classId, {
    pending: true,
    onOpen: (socket) => socket.send(JSON.stringify({ type: 'resume', token: link.token, resume_token: call.resumeToken })),
    onMessage: link.onMessage,
    onClose: (_opened, socket) => {
      if (socket === call.ws) {
        // It had become the call's socket, and broke in turn.
        if (['left', 'refused', 'disconnected'].includes(call.state)) return;
        socketLost();
        return;
      }
      if (socket !== link.pending) return;
      link.pending = null;
      if (['left', 'refused', 'disconnected'].includes(call.state)) return;
      scheduleResume();
    },
  });
  link.pending = ws;
  setTimeout(() => {
    if (link.pending === ws && call.ws !== ws) {
      trace('resume attempt timed out');
      ws.close();
    }
  }, ATTEMPT_TIMEOUT_MS);
}

/** `resumed`: the new socket carries our session; what we missed follows. */
export async function socketResumed() {
  call.reconnections.socket += 1;
  call.offersHeld = false;
  link.socketUp = true;
  link.pending = null;
  link.attempts = 0;
  clearTimeout(link.retryTimer);
  // An offer sent on the broken socket was never answered: offer again.
  if (isLocalOfferInFlight()) {
    await rollbackLocalOffer();
    requestIceRestart();
  }
  if (!link.mediaUp) restartIce();
  enqueue(maybeSendLocalOffer);
  refresh();
}

/** The peer connection's ICE state changed. */
export function iceStateChanged(state) {
  clearTimeout(link.iceTimer);
  if (state === 'connected' || state === 'completed') {
    link.mediaUp = true;
    refresh();
    return;
  }
  // Only a link that worked once is reconnected; one that never did is the firewall's
  // (`mediaFailed`).
  if (call.timings.connected === undefined) return;
  if (state === 'failed') {
    link.mediaUp = false;
    refresh();
    restartIce();
  } else if (state === 'disconnected') {
    link.iceTimer = setTimeout(() => {
      link.mediaUp = false;
      refresh();
      restartIce();
    }, ICE_PATIENCE_MS);
  }
}

function restartIce() {
  const now = performance.now();
  if (now - link.lastIceRestart < ICE_RESTART_EVERY_MS) {
    clearTimeout(link.iceTimer);
    link.iceTimer = setTimeout(restartIce, ICE_RESTART_EVERY_MS - (now - link.lastIceRestart));
    return;
  }
  if (link.mediaUp || !call.pc || call.pc.connectionState === 'closed') return;
  link.lastIceRestart = now;
  call.reconnections.ice += 1;
  trace('ice restart');
  requestIceRestart();
  // The socket is suspect too: a fresh one resumes the session, and the offer waits for it
  // (an answer lost on the old one would leave us with ICE credentials the server dropped).
  if (!link.pending && call.resumeToken) {
    call.offersHeld = true;
    link.attempts = 0;
    resume();
  }
  // Still down a while later (the network is still cut): again.
  link.iceTimer = setTimeout(restartIce, ICE_RESTART_EVERY_MS * 2);
}

/**
 * A new network (the page came back online, or the browser gathered a candidate on a new
 * address): the old ICE pairs and the socket may be dead without knowing it yet.
 */
function newNetwork(why) {
  if (call.timings.connected === undefined || ['left', 'refused', 'disconnected'].includes(call.state)) return;
  trace(`new network (${why})`);
  link.mediaUp = false;
  link.lastIceRestart = -Infinity;
  refresh();
  restartIce();
}

window.addEventListener('online', () => newNetwork('online'));
watchNetwork(() => newNetwork('new address'));
