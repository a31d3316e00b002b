// End-to-end encryption's cryptography, as docs/e2ee.md specifies it: SFrame (RFC 9605, cipher
// suite AES_128_GCM_SHA256_128), the sealed media keys and their ratchet, the safety code.
//
// Pure functions over WebCrypto (`crypto.subtle`): the same module runs in the page, in its
// encryption worker and in Node (the tests decrypt what the SFU forwarded with it).

const subtle = globalThis.crypto.subtle;
const utf8 = (s) => new TextEncoder().encode(s);

export const CIPHER_SUITE = 0x0004;
const KEY_BYTES = 16;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** A KID is `key_id * KID_STEPS + step`. */
export const KID_STEPS = 65536;
/** How far ahead of the newest step it holds a receiver ratchets by itself. */
export const MAX_RATCHET_AHEAD = 64;
/** Clear bytes at the start of a VP8 frame: the frame tag, and for a keyframe the start code and size. */
const VP8_CLEAR_KEYFRAME = 10;
const VP8_CLEAR_DELTA = 3;
const SEALED_VERSION = 1;
const SAFETY_ITERATIONS = 100_000;

// ---------- bytes ----------

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function toBase64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64url(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text)) throw new Error('not base64url');
  const s = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/** `value` (an integer below 2^53) as `length` big-endian bytes. */
function bigEndian(value, length) {
  const out = new Uint8Array(length);
  let v = value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return out;
}

function readBigEndian(bytes, at, length) {
  let v = 0;
  for (let i = 0; i < length; i++) v = v * 256 + bytes[at + i];
  return v;
}

/** Fewest big-endian bytes that hold `value` (at least one). */
function minimalLength(value) {
  let n = 1;
  while (value >= 256 ** n) n += 1;
  return n;
}

async function hkdf(ikm, salt, info, length) {
  const base = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, base, length * 8);
  return new Uint8Array(bits);
}

// ---------- SFrame (RFC 9605) ----------

/** The SFrame header (§4.3): config byte X|K|Y|C, then the KID and CTR when they need bytes. */
export function encodeHeader(kid, ctr) {
  let config = 0;
  const parts = [];
  if (kid < 8) {
    config |= kid << 4;
  } else {
    const n = minimalLength(kid);
    config |= 0x80 | ((n - 1) << 4);
    parts.push(bigEndian(kid, n));
  }
  if (ctr < 8) {
    config |= ctr;
  } else {
    const n = minimalLength(ctr);
    config |= 0x08 | (n - 1);
    parts.push(bigEndian(ctr, n));
  }
  return concat(Uint8Array.of(config), ...parts);
}

/** `{kid, ctr, length}` of the header at `at`, or null when the bytes cannot hold one. */
export function decodeHeader(bytes, at = 0) {
  if (bytes.length <= at) return null;
  const config = bytes[at];
  let pos = at + 1;
  let kid = (config >> 4) & 0x07;
  if (config & 0x80) {
    const n = kid + 1;
    if (n > 6 || pos + n > bytes.length) return null;
    kid = readBigEndian(bytes, pos, n);
    pos += n;
  }
  let ctr = config & 0x07;
  if (config & 0x08) {
    const n = ctr + 1;
    if (n > 6 || pos + n > bytes.length) return null;
    ctr = readBigEndian(bytes, pos, n);
    pos += n;
  }
  return { kid, ctr, length: pos - at };
}

/** Key and salt of one KID (§4.4.2): `{key: CryptoKey, salt: Uint8Array}`. */
export async function deriveSFrame(baseKey, kid) {
  const secret = await subtle.sign('HMAC',
    await subtle.importKey('raw', new Uint8Array(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']),
    baseKey);
  const prk = await subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const suffix = concat(bigEndian(kid, 8), bigEndian(CIPHER_SUITE, 2));
  // HKDF-Expand with an output of one block: T(1) = HMAC(PRK, info || 0x01).
  const expand = async (label, length) => new Uint8Array(
    await subtle.sign('HMAC', prk, concat(utf8(label), suffix, Uint8Array.of(1))),
  ).slice(0, length);
  const keyBytes = await expand('SFrame 1.0 Secret key ', KEY_BYTES);
  const salt = await expand('SFrame 1.0 Secret salt ', NONCE_BYTES);
  const key = await subtle.importKey('raw', keyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
  return { key, salt, keyBytes };
}

function nonce(salt, ctr) {
  const out = bigEndian(ctr, NONCE_BYTES);
  for (let i = 0; i < NONCE_BYTES; i++) out[i] ^= salt[i];
  return out;
}

/** `header || AES-GCM(plaintext)` with `aad = header || metadata` (§4.4.3). */
export async function sframeEncrypt(ctx, kid, ctr, metadata, plaintext) {
  const header = encodeHeader(kid, ctr);
  const ct = await subtle.encrypt(
    { name: 'AES-GCM', iv: nonce(ctx.salt, ctr), additionalData: concat(header, metadata), tagLength: 128 },
    ctx.key, plaintext);
  return concat(header, new Uint8Array(ct));
}

/** The plaintext of `header || ciphertext` at `at` of `bytes`; throws when it does not authenticate. */
export async function sframeDecrypt(ctx, bytes, at, header, metadata) {
  const headerBytes = bytes.subarray(at, at + header.length);
  const pt = await subtle.decrypt(
    { name: 'AES-GCM', iv: nonce(ctx.salt, header.ctr), additionalData: concat(headerBytes, metadata), tagLength: 128 },
    ctx.key, bytes.subarray(at + header.length));
  return new Uint8Array(pt);
}

// ---------- frames ----------

/** Clear bytes at the start of a frame: a VP8 frame's tag (and a keyframe's start code and size). */
export function clearPrefixLength(kind, data) {
  if (kind !== 'video' || data.length === 0) return 0;
  return (data[0] & 0x01) === 0 ? VP8_CLEAR_KEYFRAME : VP8_CLEAR_DELTA;
}

/** A frame on the wire: `clear prefix || SFrame`. Null for a video frame shorter than its prefix. */
export async function encryptFrame(ctx, kid, ctr, kind, data) {
  const n = clearPrefixLength(kind, data);
  if (data.length < n) return null;
  const prefix = data.subarray(0, n);
  return concat(prefix, await sframeEncrypt(ctx, kid, ctr, prefix, data.subarray(n)));
}

/**
 * Where the SFrame of a frame on the wire starts and its header: `{prefix, header}`, or null
 * when it cannot be one. The header's KID says which key (`lookup`) decrypts it.
 */
export function parseFrame(kind, data) {
  const n = clearPrefixLength(kind, data);
  if (data.length < n + 1 + TAG_BYTES) return null;
  const header = decodeHeader(data, n);
  if (!header || data.length < n + header.length + TAG_BYTES) return null;
  return { prefix: n, header };
}

/** The clear frame, given the SFrame context of its KID; throws when it does not authenticate. */
export async function decryptFrame(ctx, kind, data, parsed = parseFrame(kind, data)) {
  if (!parsed) throw new Error('not an SFrame');
  const prefix = data.subarray(0, parsed.prefix);
  return concat(prefix, await sframeDecrypt(ctx, data, parsed.prefix, parsed.header, prefix));
}

// ---------- RED (RFC 2198) ----------

/**
 * A RED payload's blocks, oldest first, the primary last: [{pt, tsOffset, data}] (the primary's
 * `tsOffset` is 0); null when its headers do not fit its length.
 */
export function parseRed(payload) {
  const headers = [];
  let at = 0;
  for (;;) {
    if (at >= payload.length) return null;
    const b = payload[at];
    if ((b & 0x80) === 0) {
      headers.push({ pt: b & 0x7f, tsOffset: 0, length: null });
      at += 1;
      break;
    }
    if (at + 4 > payload.length) return null;
    headers.push({
      pt: b & 0x7f,
      tsOffset: (payload[at + 1] << 6) | (payload[at + 2] >> 2),
      length: ((payload[at + 2] & 0x03) << 8) | payload[at + 3],
    });
    at += 4;
  }
  const blocks = [];
  for (const h of headers) {
    const length = h.length === null ? payload.length - at : h.length;
    if (at + length > payload.length) return null;
    blocks.push({ pt: h.pt, tsOffset: h.tsOffset, data: payload.subarray(at, at + length) });
    at += length;
  }
  return blocks;
}

/** A RED payload of `blocks` (as `parseRed` gives them); null when a redundant block is too long. */
export function buildRed(blocks) {
  const parts = [];
  for (const [i, b] of blocks.entries()) {
    if (i === blocks.length - 1) {
      parts.push(Uint8Array.of(b.pt & 0x7f));
    } else {
      if (b.data.length > 1023) return null;
      parts.push(Uint8Array.of(0x80 | (b.pt & 0x7f), (b.tsOffset >> 6) & 0xff, ((b.tsOffset & 0x3f) << 2) | (b.data.length >> 8), b.data.length & 0xff));
    }
  }
  return concat(...parts, ...blocks.map((b) => b.data));
}

// ---------- media keys ----------

export function randomMediaKey() {
  return globalThis.crypto.getRandomValues(new Uint8Array(KEY_BYTES));
}

/** A fresh key id: 32 random bits, never 0. */
export function randomKeyId() {
  const [id] = globalThis.crypto.getRandomValues(new Uint32Array(1));
  return id || 1;
}

export function ratchet(key) {
  return hkdf(key, new Uint8Array(0), utf8('klass e2ee ratchet'), KEY_BYTES);
}

export const kidOf = (keyId, step) => keyId * KID_STEPS + step;
export const splitKid = (kid) => ({ keyId: Math.floor(kid / KID_STEPS), step: kid % KID_STEPS });

// ---------- identities and sealed keys ----------

/** The page's ephemeral ECDH key pair: `{privateKey, publicKey: base64url of the raw point}`. */
export async function generateIdentity() {
  const pair = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const raw = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: toBase64url(raw) };
}

export async function importPublicKey(b64) {
  const raw = fromBase64url(b64);
  if (raw.length !== 65 || raw[0] !== 4) throw new Error('not an uncompressed P-256 point');
  return subtle.importKey('raw', raw, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
}

/** The AES-GCM key with which `from` seals media keys for `to`. */
export async function wrapKey(privateKey, peerPublicKey, from, to) {
  const shared = new Uint8Array(await subtle.deriveBits({ name: 'ECDH', public: peerPublicKey }, privateKey, 256));
  const bytes = await hkdf(shared, utf8('klass-e2ee-v1'), utf8(`klass e2ee wrap|${from}|${to}`), KEY_BYTES);
  return subtle.importKey('raw', bytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/** `sealed` (base64url) of a media key and its KID, from `from` for `to`. */
export async function seal(wrap, from, to, kid, key, iv = globalThis.crypto.getRandomValues(new Uint8Array(12))) {
  const plaintext = concat(Uint8Array.of(SEALED_VERSION), bigEndian(kid, 6), key);
  const ct = await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: utf8(`klass e2ee key|${from}|${to}`) }, wrap, plaintext);
  return toBase64url(concat(iv, new Uint8Array(ct)));
}

/** `{kid, key}` of a sealed key; throws when it is not for us from them, or was changed. */
export async function unseal(wrap, from, to, sealed) {
  const bytes = fromBase64url(sealed);
  if (bytes.length !== 12 + 1 + 6 + KEY_BYTES + TAG_BYTES) throw new Error('sealed key of the wrong size');
  const pt = new Uint8Array(await subtle.decrypt(
    { name: 'AES-GCM', iv: bytes.subarray(0, 12), additionalData: utf8(`klass e2ee key|${from}|${to}`) },
    wrap, bytes.subarray(12)));
  if (pt[0] !== SEALED_VERSION) throw new Error('unknown sealed key version');
  return { kid: readBigEndian(pt, 1, 6), key: pt.slice(7) };
}

// ---------- safety code ----------

/**
 * The code every participant's page shows: the same on all when they all hold the same
 * participants with the same public keys. `entries`: [{participantId, publicKey}].
 */
export async function safetyCode(entries) {
  const lines = entries
    .map((e) => `${e.participantId} ${e.publicKey}\n`)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const input = utf8(`klass-e2ee-safety-v1\n${lines.join('')}`);
  const base = await subtle.importKey('raw', input, 'PBKDF2', false, ['deriveBits']);
  const bits = new Uint8Array(await subtle.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-256', salt: utf8('klass-e2ee-safety'), iterations: SAFETY_ITERATIONS }, base, 64));
  const digits = String(readBigEndian(bits, 0, 5) % 1e12).padStart(12, '0');
  return digits.replace(/(\d{3})(?=\d)/g, '$1 ');
}
