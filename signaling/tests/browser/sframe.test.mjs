// The page's cryptography (signaling/web/sframe.js) in Node, which has the same WebCrypto: RFC 9605's
// test vectors, the cross-implementation vectors of the loadtest's Rust implementation
// (signaling/tests/e2ee-vectors.json), and what must fail.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  encodeHeader, decodeHeader, deriveSFrame, sframeEncrypt, encryptFrame, decryptFrame, parseFrame,
  generateIdentity, importPublicKey, wrapKey, seal, unseal, ratchet, safetyCode, kidOf, splitKid,
  parseRed, buildRed,
} from '../../web/sframe.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const hex = (s) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) || [], (b) => parseInt(b, 16));
const toHex = (b) => Buffer.from(b).toString('hex');

test('SFrame headers as in RFC 9605 (test vectors, appendix C.1)', () => {
  const vectors = [
    [0, 0, '00'], [0, 1, '01'], [0, 0xff, '08ff'], [0, 0x100, '090100'], [0, 0xffff, '09ffff'],
    [0, 0x10000, '0a010000'], [0, 0xffffff, '0affffff'], [1, 0, '10'], [7, 7, '77'], [8, 0, '8008'],
    [0xff, 0xff, '88ffff'], [0x123, 0x4567, '9901234567'],
    [0xffffffffffff, 0xffffffffffff, 'ddffffffffffffffffffffffff'],
  ];
  for (const [kid, ctr, header] of vectors) {
    assert.equal(toHex(encodeHeader(kid, ctr)), header, `kid ${kid} ctr ${ctr}`);
    const back = decodeHeader(hex(header));
    assert.deepEqual(back, { kid, ctr, length: header.length / 2 });
  }
  assert.equal(decodeHeader(new Uint8Array(0)), null);
  assert.equal(decodeHeader(hex('99012345')), null, 'a header cut short');
});

test('SFrame encryption of RFC 9605 (AES_128_GCM_SHA256_128, appendix C.5)', async () => {
  const ctx = await deriveSFrame(hex('000102030405060708090a0b0c0d0e0f'), 0x123);
  assert.equal(toHex(ctx.keyBytes), 'd34f547f4ca4f9a7447006fe7fcbf768');
  assert.equal(toHex(ctx.salt), '75234edefe07819026751816');
  const ct = await sframeEncrypt(ctx, 0x123, 0x4567, hex('4945544620534672616d65205747'), hex('64726166742d696574662d736672616d652d656e63'));
  assert.equal(toHex(ct), '9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb');
});

test('frames: video keeps its VP8 tag in clear, audio is encrypted whole, and nothing else decrypts', async () => {
  const kid = kidOf(0xdeadbeef, 3);
  assert.deepEqual(splitKid(kid), { keyId: 0xdeadbeef, step: 3 });
  const ctx = await deriveSFrame(hex('00112233445566778899aabbccddeeff'), kid);
  const keyframe = Uint8Array.from({ length: 200 }, (_, i) => (i === 0 ? 0x10 : i * 7));
  const delta = Uint8Array.from({ length: 90 }, (_, i) => (i === 0 ? 0x31 : i * 3));
  const audio = Uint8Array.from({ length: 60 }, (_, i) => i);

  const k = await encryptFrame(ctx, kid, 0, 'video', keyframe);
  assert.deepEqual(k.subarray(0, 10), keyframe.subarray(0, 10), 'a keyframe keeps 10 bytes in clear');
  assert.notDeepEqual(k.subarray(10 + 8, 40), keyframe.subarray(10, 32));
  assert.deepEqual(await decryptFrame(ctx, 'video', k), keyframe);
  const d = await encryptFrame(ctx, kid, 1, 'video', delta);
  assert.deepEqual(d.subarray(0, 3), delta.subarray(0, 3), 'a delta frame keeps its 3-byte tag');
  assert.deepEqual(await decryptFrame(ctx, 'video', d), delta);
  const a = await encryptFrame(ctx, kid, 2, 'audio', audio);
  assert.equal(parseFrame('audio', a).prefix, 0);
  assert.equal(parseFrame('audio', a).header.kid, kid);
  assert.deepEqual(await decryptFrame(ctx, 'audio', a), audio);

  // The clear prefix is authenticated, as are the header and the ciphertext.
  for (const at of [1, 12, k.length - 1]) {
    const bad = k.slice();
    bad[at] ^= 0x01;
    await assert.rejects(decryptFrame(ctx, 'video', bad));
  }
  const other = await deriveSFrame(hex('ffeeddccbbaa99887766554433221100'), kid);
  await assert.rejects(decryptFrame(other, 'video', k), 'another key');
  assert.equal(await encryptFrame(ctx, kid, 3, 'video', keyframe.subarray(0, 5)), null, 'a keyframe shorter than its prefix');
  assert.equal(parseFrame('video', keyframe.subarray(0, 20)), null);
});

test('RED payloads come apart into their blocks and back (RFC 2198)', () => {
  // A redundant block of 3 bytes, 960 samples before, and the primary of 2 bytes, Opus PT 111.
  const red = hex('ef 0f 00 03 6f aabbcc ddee');
  const blocks = parseRed(red);
  assert.deepEqual(blocks.map((b) => [b.pt, b.tsOffset, toHex(b.data)]), [[111, 960, 'aabbcc'], [111, 0, 'ddee']]);
  assert.equal(toHex(buildRed(blocks)), toHex(red));
  assert.deepEqual(parseRed(hex('6f0102')).map((b) => toHex(b.data)), ['0102'], 'a primary alone');
  assert.equal(parseRed(hex('ef03c0ff6f00')), null, 'a block longer than the payload');
  assert.equal(parseRed(hex('ef03')), null, 'headers cut short');
  assert.equal(parseRed(new Uint8Array(0)), null);
  assert.equal(buildRed([{ pt: 111, tsOffset: 960, data: new Uint8Array(1024) }, { pt: 111, tsOffset: 0, data: new Uint8Array(1) }]), null);
});

test('sealed keys open for their recipient only, and the ratchet goes one way', async () => {
  const a = await generateIdentity();
  const b = await generateIdentity();
  const c = await generateIdentity();
  const [pa, pb, pc] = await Promise.all([a, b, c].map((i) => importPublicKey(i.publicKey)));
  const key = hex('0f0e0d0c0b0a09080706050403020100');
  const sealed = await seal(await wrapKey(a.privateKey, pb, 'pA', 'pB'), 'pA', 'pB', kidOf(77, 0), key);
  assert.equal(sealed.length, 68);
  const opened = await unseal(await wrapKey(b.privateKey, pa, 'pA', 'pB'), 'pA', 'pB', sealed);
  assert.deepEqual(opened, { kid: kidOf(77, 0), key });
  // Relayed to C instead, or said to come from C, or to be for C: it does not open.
  await assert.rejects(unseal(await wrapKey(c.privateKey, pa, 'pA', 'pC'), 'pA', 'pC', sealed));
  await assert.rejects(unseal(await wrapKey(b.privateKey, pc, 'pC', 'pB'), 'pC', 'pB', sealed));
  await assert.rejects(unseal(await wrapKey(b.privateKey, pa, 'pA', 'pC'), 'pA', 'pC', sealed));
  await assert.rejects(importPublicKey('AAAA'), 'not a P-256 point');

  const r1 = await ratchet(key);
  const r2 = await ratchet(r1);
  assert.notDeepEqual(r1, key);
  assert.notDeepEqual(r2, r1);
  assert.deepEqual(await ratchet(key), r1, 'deterministic');
});

test('the safety code depends on who is in the call and their keys, not on order', async () => {
  const ids = await Promise.all([1, 2, 3].map(() => generateIdentity()));
  const entries = ids.map((id, i) => ({ participantId: `p${i}`, publicKey: id.publicKey }));
  const code = await safetyCode(entries);
  assert.match(code, /^\d{3} \d{3} \d{3} \d{3}$/);
  assert.equal(await safetyCode([...entries].reverse()), code);
  const substituted = [...entries];
  substituted[1] = { participantId: 'p1', publicKey: (await generateIdentity()).publicKey };
  assert.notEqual(await safetyCode(substituted), code);
  assert.notEqual(await safetyCode(entries.slice(0, 2)), code);
});

test('the same results as the Rust implementation (signaling/tests/e2ee-vectors.json)', async (t) => {
  const file = path.join(here, '..', 'e2ee-vectors.json');
  const vectors = JSON.parse(fs.readFileSync(file, 'utf8'));
  t.diagnostic(`vectors: ${Object.keys(vectors).join(', ')}`);
  await checkVectors(vectors);
});

async function checkVectors(v) {
  for (const f of v.frames) {
    const ctx = await deriveSFrame(hex(f.media_key_hex), f.kid);
    assert.equal(toHex(ctx.keyBytes), f.sframe_key_hex);
    assert.equal(toHex(ctx.salt), f.sframe_salt_hex);
    const wire = await encryptFrame(ctx, f.kid, f.ctr, f.kind, hex(f.frame_hex));
    assert.equal(toHex(wire), f.wire_hex, f.description);
    assert.equal(toHex(await decryptFrame(ctx, f.kind, hex(f.wire_hex))), f.frame_hex);
  }
  let key = hex(v.ratchet.key_hex);
  for (const step of v.ratchet.steps) {
    key = await ratchet(key);
    assert.equal(toHex(key), step.key_hex, `ratchet step ${step.step}`);
  }
  // Sealed key: pA's private key from its scalar (JWK), pB's public key as the page gets it.
  const a = v.participants.pA;
  const raw = hex(a.public_key_hex);
  const jwk = {
    kty: 'EC', crv: 'P-256', ext: true,
    x: Buffer.from(raw.subarray(1, 33)).toString('base64url'),
    y: Buffer.from(raw.subarray(33, 65)).toString('base64url'),
    d: Buffer.from(hex(a.private_scalar_hex)).toString('base64url'),
  };
  const privateA = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const sk = v.sealed_key;
  const wrap = await wrapKey(privateA, await importPublicKey(v.participants.pB.public_key), sk.from, sk.to);
  assert.equal(await seal(wrap, sk.from, sk.to, sk.kid, hex(sk.media_key_hex), hex(sk.iv_hex)), sk.sealed);
  assert.deepEqual(await unseal(wrap, sk.from, sk.to, sk.sealed), { kid: sk.kid, key: hex(sk.media_key_hex) });
  const entries = v.safety_code.participants.map((p) => ({ participantId: p.participant_id, publicKey: p.public_key }));
  assert.equal(await safetyCode(entries), v.safety_code.code);
}
