// The WebSocket to the signaling server and the one RTCPeerConnection to the SFU.
//
// Protocol version 2 (docs/protocol.md): we negotiate once, at join: our microphone and camera
// (sendonly) and a fixed set of receive slots (recvonly): audio slots, one stage, thumbnails. The
// server switches other participants' media into those slots and says who is in which (`slots`);
// it never offers. Our only later offers are our own (a screen share), answered by the server.

import { call, local, trace } from './state.js';
import { attachSender, attachReceiver, peerConfig } from './e2ee.js';

export const PROTOCOL_VERSION = 2;
/** Audio slots we declare; the server fills at most `max_audio_slots` of them (4 by default). */
export const AUDIO_SLOTS = 4;
/** Thumbnails on a wide screen, and on a narrow one (a phone in portrait). */
export const THUMBNAILS_WIDE = 9;
export const THUMBNAILS_NARROW = 4;
// Ideal, not exact: any camera works; a class call does not need more than this.
const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } };

let candidateQueue = [];
let joinedAck = false;
let chain = Promise.resolve();
let wantLocalOffer = false;
let wantIceRestart = false;
let localOfferInFlight = false;

/** Runs tasks one after the other, in the order messages arrived. */
export function enqueue(task) {
  chain = chain.then(task).catch((err) => {
    trace(`error: ${err && (err.stack || err)}`);
    console.error('klass call:', err);
  });
  return chain;
}

export function thumbnailCount() {
  const narrow = window.matchMedia && window.matchMedia('(max-width: 600px)').matches;
  return narrow ? THUMBNAILS_NARROW : THUMBNAILS_WIDE;
}

// ---------- local media ----------

/**
 * The microphone and camera, or what there is of them (null: neither). `audioDeviceId` and
 * `videoDeviceId`: the devices chosen on the pre-join screen (prejoin.js).
 */
export async function getLocalMedia({ audioDeviceId = null, videoDeviceId = null } = {}) {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return null;
  const audio = audioDeviceId ? { deviceId: { exact: audioDeviceId } } : true;
  const video = videoDeviceId ? { ...VIDEO_CONSTRAINTS, deviceId: { exact: videoDeviceId } } : VIDEO_CONSTRAINTS;
  const attempts = [
    { audio, video },
    { audio, video: false },
    { audio: false, video },
  ];
  for (const constraints of attempts) {
    try {
      return await md.getUserMedia(constraints);
    } catch (err) {
      trace(`getUserMedia ${JSON.stringify(constraints)} failed: ${err && err.name}`);
    }
  }
  return null;
}

export function stopLocalMedia() {
  if (local.stream) local.stream.getTracks().forEach((t) => t.stop());
  if (local.share) local.share.track.stop();
}

// ---------- peer connection ----------

/**
 * The camera's simulcast encodings, lowest first: a half-size one for the others' thumbnails
 * and a full one for their stage. The server forwards to each slot the layer it needs and drops
 * a layer nobody receives. Only from a camera of at least SIMULCAST_MIN_HEIGHT lines: below,
 * Chromium keeps one layer, the half-size one, and the stage would get that.
 */
const SIMULCAST_MIN_HEIGHT = 360;
const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 200_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_000_000 },
];

function declarations() {
  return local.senders
    .filter((s) => s.transceiver.mid !== null && s.active)
    .map((s) => (s.layers ? { mid: s.transceiver.mid, source: s.source, layers: s.layers } : { mid: s.transceiver.mid, source: s.source }));
}

export function addSender(track, source, stream) {
  const init = { direction: 'sendonly', streams: [stream] };
  const simulcast = source === 'camera' && (track.getSettings().height || 0) >= SIMULCAST_MIN_HEIGHT;
  if (simulcast) init.sendEncodings = CAMERA_LAYERS;
  const transceiver = call.pc.addTransceiver(track, init);
  attachSender(transceiver.sender, track.kind);
  const entry = { transceiver, source, active: true, layers: simulcast ? CAMERA_LAYERS.map((l) => l.rid) : null };
  local.senders.push(entry);
  return entry;
}

/**
 * Creates the peer connection with our own tracks and the receive slots, and sets our offer.
 * Returns the `join` message's `sdp`, `tracks` and `slots`, and the slots' transceivers
 * ([{kind, transceiver}], in declaration order) for the views to attach their receivers.
 */
export async function createPeer({ onConnectionState, onIceState, iceServers }) {
  // TURN servers (ice.js) for networks that let only TLS on 443 through; the server's own
  // candidates (UDP, and ICE-TCP) come with its answer.
  // End-to-end encryption: every sender and receiver goes through e2ee.js's worker.
  const pc = new RTCPeerConnection({
    bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers: iceServers || [], ...peerConfig(),
  });
  call.pc = pc;
  pc.addEventListener('icecandidate', onLocalCandidate);
  pc.addEventListener('iceconnectionstatechange', () => {
    trace(`ice ${pc.iceConnectionState}`);
    onIceState(pc.iceConnectionState);
  });
  pc.addEventListener('connectionstatechange', () => {
    trace(`pc ${pc.connectionState}`);
    if (pc.connectionState === 'connected' && call.timings.connected === undefined) {
      call.timings.connected = performance.now();
    }
    onConnectionState(pc.connectionState);
  });
  if (local.audioTrack) addSender(local.audioTrack, 'microphone', local.stream);
  if (local.videoTrack) addSender(local.videoTrack, 'camera', local.stream);

  const slots = [];
  const addSlot = (kind) => {
    const transceiver = pc.addTransceiver(kind === 'audio' ? 'audio' : 'video', { direction: 'recvonly' });
    attachReceiver(transceiver.receiver, kind === 'audio' ? 'audio' : 'video');
    slots.push({ kind, transceiver });
  };
  for (let i = 0; i < AUDIO_SLOTS; i++) addSlot('audio');
  addSlot('stage');
  const nThumbnails = thumbnailCount();
  for (let i = 0; i < nThumbnails; i++) addSlot('thumbnail');

  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  // Mids are assigned by setLocalDescription.
  return {
    sdp: pc.localDescription.sdp,
    tracks: declarations(),
    slots: slots.map((s) => ({ mid: s.transceiver.mid, kind: s.kind })),
    transceivers: slots,
  };
}

/** Fresh TURN credentials from `joined`, for the ICE restarts to come. */
export function setIceServers(iceServers) {
  if (!call.pc || !iceServers || iceServers.length === 0) return;
  try {
    call.pc.setConfiguration({ ...call.pc.getConfiguration(), iceServers });
  } catch (err) {
    trace(`setConfiguration failed: ${err && err.name}`);
  }
}

/** `joined`: the server's answer to our join offer. */
export async function applyJoinAnswer(sdp, send) {
  await call.pc.setRemoteDescription({ type: 'answer', sdp });
  joinedAck = true;
  for (const c of candidateQueue) send({ type: 'candidate', candidate: c });
  candidateQueue = [];
}

/** Addresses of our host candidates so far: a new one once connected is a new network. */
const localAddresses = new Set();
let onNewNetwork = () => {};

/** `fn` is called when the browser gathers a candidate on an address it did not have. */
export function watchNetwork(fn) {
  onNewNetwork = fn;
}

function onLocalCandidate(ev) {
  // A null candidate or an empty one is the end of candidates: the server needs no signal for it.
  if (!ev.candidate || !ev.candidate.candidate) return;
  const address = ev.candidate.address;
  if (address && ev.candidate.type === 'host' && !localAddresses.has(address)) {
    localAddresses.add(address);
    if (call.timings.connected !== undefined) {
      trace(`new local address ${address}`);
      onNewNetwork();
    }
  }
  if (joinedAck) call.send({ type: 'candidate', candidate: ev.candidate.candidate });
  else candidateQueue.push(ev.candidate.candidate);
}

// ---------- our own renegotiation (screen share) ----------

/** Our publishing changed: offer again once the connection is stable and we are admitted. */
export function requestLocalOffer() {
  wantLocalOffer = true;
  enqueue(maybeSendLocalOffer);
}

/** Our media link failed: a new offer restarts ICE (new credentials, fresh candidates). */
export function requestIceRestart() {
  wantIceRestart = true;
  requestLocalOffer();
}

export async function maybeSendLocalOffer() {
  const pc = call.pc;
  if (!wantLocalOffer || !pc || localOfferInFlight || pc.signalingState !== 'stable') return;
  // A screen share waits for admission; an ICE restart only for the socket.
  if (call.state !== 'admitted' && !(wantIceRestart && ['joined', 'waiting'].includes(call.state))) return;
  if (!call.ws || call.ws.readyState !== WebSocket.OPEN || call.offersHeld) return;
  wantLocalOffer = false;
  localOfferInFlight = true;
  const iceRestart = wantIceRestart;
  wantIceRestart = false;
  // The slot transceivers are left as they are: recvonly, same mids.
  const offer = await pc.createOffer({ iceRestart });
  await pc.setLocalDescription(offer);
  if (!call.send({ type: 'offer', sdp: pc.localDescription.sdp, tracks: declarations() })) {
    // The socket broke meanwhile: offered again once it is resumed (reconnect.js).
    wantIceRestart = wantIceRestart || iceRestart;
  }
}

export async function onServerAnswer(sdp) {
  const pc = call.pc;
  if (!pc || pc.signalingState !== 'have-local-offer') return;
  await pc.setRemoteDescription({ type: 'answer', sdp });
  localOfferInFlight = false;
  await maybeSendLocalOffer();
}

export function isLocalOfferInFlight() {
  return localOfferInFlight;
}

/** Our offer was refused: back to the last agreed state. */
export async function rollbackLocalOffer() {
  const pc = call.pc;
  localOfferInFlight = false;
  if (pc && pc.signalingState === 'have-local-offer') {
    await pc.setLocalDescription({ type: 'rollback' });
  }
}

export function closePeer() {
  if (call.pc) {
    try { call.pc.close(); } catch (_) { /* already closed */ }
  }
  // A join made again (busy server) starts from a new peer connection and its own candidates.
  candidateQueue = [];
  joinedAck = false;
}

// ---------- WebSocket ----------

/**
 * Opens the call WebSocket; `onOpen`, `onMessage(msg)` and `onClose(opened)` are the page's. A
 * `pending` socket (a `resume` attempt, reconnect.js) becomes the call's socket only when the
 * server answers `resumed`; until then only its `error` is heard. Once another socket is the
 * call's, nothing from this one is: late messages of a replaced socket would repeat or reorder
 * what the new one replays.
 */
export function openSocket(classId, { onOpen, onMessage, onClose, pending = false }) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/v1/classes/${encodeURIComponent(classId)}/visio/ws`);
  if (!pending) call.ws = ws;
  let opened = false;
  ws.addEventListener('open', () => {
    opened = true;
    onOpen(ws);
  });
  ws.addEventListener('message', (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (_) {
      trace('unparsable message');
      return;
    }
    if (call.ws !== ws) {
      if (!pending) return;
      if (msg.type === 'resumed') call.ws = ws;
      else if (msg.type !== 'error') return;
    }
    call.lastHeardAt = performance.now();
    if (msg.type === 'pong') return;
    if (msg.type === 'error') trace(`<- error ${msg.code}: ${msg.message}`);
    else if (msg.type !== 'speakers') trace(`<- ${msg.type}`);
    enqueue(() => onMessage(msg));
  });
  ws.addEventListener('close', (ev) => {
    trace(`ws closed ${ev.code}${call.ws === ws ? '' : ' (not the current one)'}`);
    enqueue(() => onClose(opened, ws));
  });
  return ws;
}
