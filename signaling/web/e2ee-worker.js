// The page's encryption worker: every encoded frame we send is encrypted here, every one we
// receive decrypted (docs/e2ee.md). Frames come through `RTCRtpScriptTransform`
// (`rtctransform` events) or, in a Chromium without it, as the streams of `createEncodedStreams`
// posted by e2ee.js. Keys come from e2ee.js by message; they never leave this worker and the page.

import {
  MAX_RATCHET_AHEAD, buildRed, deriveSFrame, encryptFrame, decryptFrame, parseFrame, parseRed,
  ratchet, splitKid,
} from './sframe.js';

/** How many key ids we keep for one sender: its current one and the ones before a rotation. */
const KEY_IDS_PER_SENDER = 3;

/** What we send with: `{kid, ctx}`; `ctr` counts per KID and is never reused. */
let sending = null;
const counters = new Map();
/** `encrypt`: the call is end-to-end encrypted; otherwise we send in clear (docs/e2ee.md). */
let encrypted = true;
/**
 * RED's payload type in our peer connection (e2ee.js tells it once negotiated). A RED frame is
 * encrypted block by block, its headers in clear, so that the SFU can take the primary out for a
 * receiver without RED (Firefox): Chromium adds RED before the transform, and after it on receipt.
 */
let redPt = null;

/** keyId -> {owner, steps: Map(step -> Promise<ctx>), base: {step, key}} */
const receiving = new Map();
/** owner -> [keyId], oldest first */
const byOwner = new Map();

const stats = {
  encrypted: 0, sentClear: 0, decrypted: 0, passedClear: 0, failed: 0, unknownKey: 0, dropped: 0,
};

/** Our sending contexts by KID: the current one and the few before it (a key handed again). */
const contexts = new Map();
const SEND_CONTEXTS_KEPT = 4;
function contextFor(kid, key) {
  let ctx = contexts.get(kid);
  if (!ctx) {
    ctx = deriveSFrame(key, kid);
    contexts.set(kid, ctx);
    while (contexts.size > SEND_CONTEXTS_KEPT) contexts.delete(contexts.keys().next().value);
  }
  return ctx;
}

function rememberReceiveKey(owner, kid, key) {
  const { keyId, step } = splitKid(kid);
  const known = receiving.get(keyId);
  // A key id belongs to the first sender that gave it: nobody takes over another's frames.
  if (known && known.owner !== owner) return;
  if (known && known.base.step >= step) return;
  receiving.set(keyId, { owner, base: { step, key }, steps: new Map([[step, deriveSFrame(key, kid)]]) });
  const ids = (byOwner.get(owner) || []).filter((id) => id !== keyId);
  ids.push(keyId);
  while (ids.length > KEY_IDS_PER_SENDER) receiving.delete(ids.shift());
  byOwner.set(owner, ids);
}

/** The SFrame context of a received KID, ratcheting forward from the step we hold; null if none. */
async function receiveContext(kid) {
  const { keyId, step } = splitKid(kid);
  const entry = receiving.get(keyId);
  if (!entry || step < entry.base.step || step > entry.base.step + MAX_RATCHET_AHEAD) return null;
  let ctx = entry.steps.get(step);
  if (!ctx) {
    ctx = (async () => {
      let key = await entry.base.key;
      for (let s = entry.base.step; s < step; s++) key = await ratchet(key);
      return deriveSFrame(key, kid);
    })();
    entry.steps.set(step, ctx);
    if (entry.steps.size > 8) entry.steps.delete(entry.steps.keys().next().value);
  }
  return ctx;
}

function frameKind(frame, kind) {
  // RTCEncodedVideoFrame has `type`; audio frames have none.
  return kind || (frame.type === undefined ? 'audio' : 'video');
}

async function encryptOne(frame, kind, controller) {
  const data = new Uint8Array(frame.data);
  if (data.length === 0) {
    controller.enqueue(frame);
    return;
  }
  if (!encrypted || !sending) {
    stats.sentClear += 1;
    controller.enqueue(frame);
    return;
  }
  const { kid } = sending;
  const ctx = await sending.ctx;
  const seal = (bytes) => {
    const ctr = counters.get(kid) || 0;
    counters.set(kid, ctr + 1);
    return encryptFrame(ctx, kid, ctr, kind, bytes);
  };
  const blocks = kind === 'audio' && isRed(frame) ? parseRed(data) : null;
  let out;
  if (blocks) {
    const sealed = [];
    for (const b of blocks) sealed.push({ ...b, data: await seal(b.data) });
    out = buildRed(sealed);
  } else {
    out = await seal(data);
  }
  if (!out) {
    stats.dropped += 1;
    return;
  }
  frame.data = out.buffer;
  stats.encrypted += 1;
  controller.enqueue(frame);
}

function isRed(frame) {
  if (redPt === null || typeof frame.getMetadata !== 'function') return false;
  return frame.getMetadata().payloadType === redPt;
}

/** The clear frame, or null when it does not decrypt (no key for its KID, or not authentic). */
async function decrypted(kind, data) {
  const parsed = parseFrame(kind, data);
  if (!parsed) return null;
  const ctx = await receiveContext(parsed.header.kid);
  if (!ctx) {
    stats.unknownKey += 1;
    return null;
  }
  try {
    return await decryptFrame(ctx, kind, data, parsed);
  } catch (_) {
    return null;
  }
}

/** A RED frame, each block decrypted; a redundant block that does not is left out. */
async function decryptedRed(data) {
  const blocks = parseRed(data);
  if (!blocks) return null;
  const primary = await decrypted('audio', blocks[blocks.length - 1].data);
  if (!primary) return null;
  const out = [];
  for (const b of blocks.slice(0, -1)) {
    const clear = await decrypted('audio', b.data);
    if (clear) out.push({ ...b, data: clear });
  }
  out.push({ ...blocks[blocks.length - 1], data: primary });
  return buildRed(out);
}

async function decryptOne(frame, kind, controller) {
  const data = new Uint8Array(frame.data);
  if (data.length === 0) {
    controller.enqueue(frame);
    return;
  }
  const clear = kind === 'audio' && isRed(frame) ? await decryptedRed(data) : await decrypted(kind, data);
  if (clear) {
    frame.data = clear.buffer;
    stats.decrypted += 1;
    controller.enqueue(frame);
    return;
  }
  if (!encrypted) {
    // A call with a participant that cannot encrypt: its frames (and ours) go in clear.
    stats.passedClear += 1;
    controller.enqueue(frame);
    return;
  }
  stats.failed += 1;
}

function pipe(readable, writable, side, kind) {
  const transform = new TransformStream({
    transform(frame, controller) {
      const k = frameKind(frame, kind);
      return side === 'send' ? encryptOne(frame, k, controller) : decryptOne(frame, k, controller);
    },
  });
  readable.pipeThrough(transform).pipeTo(writable).catch(() => { /* the transceiver stopped */ });
}

// RTCRtpScriptTransform: `options` are those e2ee.js gave the transform.
self.onrtctransform = (event) => {
  const { readable, writable, options } = event.transformer;
  pipe(readable, writable, options.side, options.kind);
};

self.onmessage = async (event) => {
  const msg = event.data;
  switch (msg.type) {
    case 'streams':
      pipe(msg.readable, msg.writable, msg.side, msg.kind);
      break;
    case 'send-key':
      sending = { kid: msg.kid, ctx: contextFor(msg.kid, msg.key) };
      break;
    case 'joined':
      // Someone joined: every sender ratchets its key, and so does our copy of each (a sender
      // we see no frame of for many joins stays within reach).
      for (const entry of receiving.values()) {
        const { step, key } = entry.base;
        // `key` may still be the promise of the previous join's ratchet.
        entry.base = { step: step + 1, key: Promise.resolve(key).then(ratchet) };
      }
      break;
    case 'receive-key':
      rememberReceiveKey(msg.owner, msg.kid, msg.key);
      break;
    case 'encrypted':
      encrypted = !!msg.encrypted;
      break;
    case 'red':
      redPt = msg.pt;
      break;
    case 'stats':
      self.postMessage({ type: 'stats', id: msg.id, stats: { ...stats, kid: sending && sending.kid, keyIds: [...receiving.keys()] } });
      break;
    default:
      break;
  }
};
