// End-to-end encryption in the page (docs/e2ee.md): our identity key pair, our media key and who
// we sealed it for, the keys others sealed for us, the call's mode and its safety code. Frames
// are encrypted and decrypted in e2ee-worker.js, which gets the keys from here.
//
// Key rules: on admission we seal our media key for everyone; when someone joins we ratchet it
// and seal the new step for them only; when someone leaves we make a fresh one, seal it for
// those who stay and encrypt with it a second later.

import {
  generateIdentity, importPublicKey, wrapKey, seal, unseal, ratchet, randomMediaKey, randomKeyId,
  kidOf, splitKid, safetyCode,
} from './sframe.js';
import { call, trace } from './state.js';

/** Time for a fresh key, sealed for everyone, to arrive before frames use it. */
const ROTATION_DELAY_MS = 1000;

const state = {
  worker: null,
  /** 'script' (RTCRtpScriptTransform), 'streams' (Chromium's createEncodedStreams) or null. */
  api: null,
  identity: null,
  /** Our media key in use: {keyId, step, key}; `pending` is the fresh one of a rotation. */
  current: null,
  pending: null,
  rotationTimer: null,
  /** participant_id -> {publicKey, wrapOut: Promise<CryptoKey>, wrapIn: Promise<CryptoKey>} */
  peers: new Map(),
  safetyRun: 0,
};

/** What the tests and the page read: `window.klassCall.e2ee`. */
call.e2ee = {
  supported: false,
  /** Every participant encrypts: the call is end-to-end encrypted. */
  encrypted: false,
  /** Participants whose browser cannot encrypt (their ids). */
  unencryptedBy: [],
  safetyCode: null,
  keysReceived: 0,
  keysRejected: 0,
  rotations: 0,
  ratchets: 0,
  stats: () => workerStats(),
};

/** Which encoded-transform API this browser has, if any. */
export function transformApi() {
  if (typeof Worker === 'undefined') return null;
  if (typeof RTCRtpScriptTransform !== 'undefined') return 'script';
  if (typeof RTCRtpSender !== 'undefined' && RTCRtpSender.prototype.createEncodedStreams) return 'streams';
  return null;
}

/**
 * Starts encryption when the browser can: the worker, our identity and first media key. Returns
 * the `join` message's `e2ee` (null: this browser cannot encrypt).
 */
export async function startE2ee() {
  state.api = transformApi();
  call.e2ee.supported = state.api !== null;
  if (!state.api) {
    trace('e2ee: no encoded transforms in this browser');
    return null;
  }
  state.worker = new Worker('/web/e2ee-worker.js', { type: 'module', name: 'klass-e2ee' });
  state.worker.addEventListener('message', onWorkerMessage);
  state.identity = await generateIdentity();
  state.current = { keyId: randomKeyId(), step: 0, key: randomMediaKey() };
  useKey(state.current);
  trace(`e2ee: ${state.api}`);
  return { public_key: state.identity.publicKey };
}

/** The RTCPeerConnection's extra configuration: Chromium's encoded streams must be asked for. */
export function peerConfig() {
  return state.api === 'streams' ? { encodedInsertableStreams: true } : {};
}

function attach(endpoint, side, kind) {
  if (!state.worker) return;
  if (state.api === 'script') {
    // eslint-disable-next-line no-undef
    endpoint.transform = new RTCRtpScriptTransform(state.worker, { side, kind });
  } else {
    const { readable, writable } = endpoint.createEncodedStreams();
    state.worker.postMessage({ type: 'streams', readable, writable, side, kind }, [readable, writable]);
  }
}

/** Every sender and every receiver of the peer connection goes through the worker. */
export function attachSender(sender, kind) {
  attach(sender, 'send', kind);
}

export function attachReceiver(receiver, kind) {
  attach(receiver, 'recv', kind);
}

/** Once our peer connection is negotiated: the worker learns RED's payload type (if any). */
export function onNegotiated(pc) {
  if (!state.worker) return;
  for (const t of pc.getTransceivers()) {
    for (const endpoint of [t.sender, t.receiver]) {
      const codecs = (endpoint.getParameters && endpoint.getParameters().codecs) || [];
      const red = codecs.find((c) => String(c.mimeType).toLowerCase() === 'audio/red');
      if (red) {
        state.worker.postMessage({ type: 'red', pt: red.payloadType });
        return;
      }
    }
  }
}

function useKey(k) {
  state.worker.postMessage({ type: 'send-key', kid: kidOf(k.keyId, k.step), key: k.key });
}

// ---------- peers ----------

function peerFor(pid) {
  const p = call.participants[pid];
  const publicKey = p && p.e2ee_public_key;
  if (!publicKey || !state.identity || pid === call.participantId) return null;
  let peer = state.peers.get(pid);
  if (!peer || peer.publicKey !== publicKey) {
    const imported = importPublicKey(publicKey);
    peer = {
      publicKey,
      wrapOut: imported.then((pub) => wrapKey(state.identity.privateKey, pub, call.participantId, pid)),
      wrapIn: imported.then((pub) => wrapKey(state.identity.privateKey, pub, pid, call.participantId)),
    };
    // A key the browser refuses: nothing is sealed for that participant (and it shows in the code).
    peer.wrapOut.catch(() => {});
    peer.wrapIn.catch(() => {});
    state.peers.set(pid, peer);
  }
  return peer;
}

/** Seals each of `keys` ({keyId, step, key}) for each of `pids` and sends them in one message. */
async function sendKeys(pids, keys) {
  // One message per key: the server refuses a message that names a recipient twice.
  for (const k of keys) {
    const sealed = [];
    for (const pid of pids) {
      const peer = peerFor(pid);
      if (!peer) continue;
      try {
        sealed.push({ to: pid, sealed: await seal(await peer.wrapOut, call.participantId, pid, kidOf(k.keyId, k.step), k.key) });
      } catch (err) {
        trace(`e2ee: cannot seal for ${pid}: ${err && err.message}`);
      }
    }
    // The server takes at most 256 in one message.
    for (let i = 0; i < sealed.length; i += 200) call.send({ type: 'e2ee_keys', keys: sealed.slice(i, i + 200) });
  }
}

function others() {
  return Object.keys(call.participants).filter((pid) => pid !== call.participantId);
}

/** The keys a newcomer needs: the one we use, and a fresh one that replaces it in a moment. */
function keysToShare() {
  return state.pending ? [state.current, state.pending] : [state.current];
}

// ---------- the call's events (call.js) ----------

/** `admitted`: everyone gets our key. */
export function onAdmitted() {
  refreshMode();
  if (state.worker) sendKeys(others(), keysToShare());
}

/** `participant_joined`: ratchet, so that they cannot read what came before, and seal it for them. */
export async function onParticipantJoined(pid) {
  refreshMode();
  if (!state.worker || !call.participants[pid] || !call.participants[pid].e2ee_public_key) return;
  state.worker.postMessage({ type: 'joined' });
  const k = state.current;
  state.current = { keyId: k.keyId, step: k.step + 1, key: await ratchet(k.key) };
  call.e2ee.ratchets += 1;
  useKey(state.current);
  await sendKeys([pid], keysToShare());
}

/** `participant_left` (left, removed, or gone for good): a fresh key for those who stay. */
export async function onParticipantLeft(pid) {
  state.peers.delete(pid);
  refreshMode();
  if (!state.worker || call.state !== 'admitted') return;
  const fresh = { keyId: randomKeyId(), step: 0, key: randomMediaKey() };
  state.pending = fresh;
  call.e2ee.rotations += 1;
  await sendKeys(others(), [fresh]);
  clearTimeout(state.rotationTimer);
  state.rotationTimer = setTimeout(() => {
    if (state.pending !== fresh) return;
    state.current = fresh;
    state.pending = null;
    useKey(fresh);
  }, ROTATION_DELAY_MS);
}

/** `e2ee_key`: a sender's media key, sealed for us. */
export async function onSealedKey(from, sealedKey) {
  const peer = peerFor(from);
  try {
    if (!peer) throw new Error('no public key for the sender');
    const { kid, key } = await unseal(await peer.wrapIn, from, call.participantId, sealedKey);
    state.worker.postMessage({ type: 'receive-key', owner: from, kid, key });
    call.e2ee.keysReceived += 1;
    trace(`e2ee: key ${splitKid(kid).keyId}/${splitKid(kid).step} from ${from}`);
  } catch (err) {
    call.e2ee.keysRejected += 1;
    trace(`e2ee: key from ${from} rejected: ${err && err.message}`);
  }
}

// ---------- mode and safety code ----------

let onChange = () => {};

/** `fn` runs when the call's mode or safety code changes (the page's indicator). */
export function onSecurityChange(fn) {
  onChange = fn;
}

/** Encrypted when everyone (us included) can encrypt; the worker sends in clear otherwise. */
export function refreshMode() {
  const pids = Object.keys(call.participants);
  const unencryptedBy = pids.filter((pid) => !call.participants[pid].e2ee_public_key);
  if (!call.e2ee.supported && call.participantId && !unencryptedBy.includes(call.participantId)) {
    unencryptedBy.push(call.participantId);
  }
  const encrypted = call.e2ee.supported && unencryptedBy.length === 0;
  call.e2ee.unencryptedBy = unencryptedBy;
  if (encrypted !== call.e2ee.encrypted && state.worker) {
    state.worker.postMessage({ type: 'encrypted', encrypted });
  }
  call.e2ee.encrypted = encrypted;
  refreshSafetyCode();
  onChange();
}

function refreshSafetyCode() {
  const run = ++state.safetyRun;
  if (!call.e2ee.encrypted) {
    call.e2ee.safetyCode = null;
    return;
  }
  // The others as the server told us, and ours as we made it (`participants` has only the others).
  const entries = Object.values(call.participants)
    .filter((p) => p.participant_id !== call.participantId)
    .map((p) => ({ participantId: p.participant_id, publicKey: p.e2ee_public_key }));
  entries.push({ participantId: call.participantId, publicKey: state.identity.publicKey });
  safetyCode(entries).then((code) => {
    if (run !== state.safetyRun) return;
    call.e2ee.safetyCode = code;
    onChange();
  });
}

// ---------- stats (tests, and the page's trace) ----------

let statsId = 0;
const statsWaiting = new Map();

function onWorkerMessage(event) {
  const msg = event.data;
  if (msg && msg.type === 'stats' && statsWaiting.has(msg.id)) {
    statsWaiting.get(msg.id)(msg.stats);
    statsWaiting.delete(msg.id);
  }
}

function workerStats() {
  if (!state.worker) return Promise.resolve(null);
  const id = ++statsId;
  return new Promise((resolve) => {
    statsWaiting.set(id, resolve);
    state.worker.postMessage({ type: 'stats', id });
  });
}
