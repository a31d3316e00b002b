//! `signaling/tests/e2ee-vectors.json`: fixed inputs and what docs/e2ee.md makes of them, checked
//! here against this implementation and by the page's tests against its own. Each entry says what
//! it is in its `description`.
//!
//! Regenerate it (after a deliberate change of the specification only) with
//! `KLASS_WRITE_E2EE_VECTORS=1 cargo test -p loadtest e2ee::vectors`.

use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::keys::{self, Identity, MediaKey};
use super::safety;
use super::sframe::{self, FrameKind};

/// RFC 5903 §8.1's two P-256 private keys, so that the ECDH below is a known answer as well.
const SCALAR_A: &str = "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433";
const SCALAR_B: &str = "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53";
const SCALAR_C: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const SEAL_IV: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../signaling/tests/e2ee-vectors.json")
}

fn identity(scalar: &str) -> Identity {
    Identity::from_scalar(&hex::decode(scalar).unwrap().try_into().unwrap()).unwrap()
}

fn media_key() -> MediaKey {
    MediaKey {
        key_id: 0x0a0b_0c0d,
        step: 3,
        key: hex::decode("00112233445566778899aabbccddeeff").unwrap().try_into().unwrap(),
    }
}

fn keyframe() -> Vec<u8> {
    // Frame tag (P = 0: a keyframe, show_frame, first partition size), start code, 640 x 360,
    // then 38 bytes standing for the compressed data.
    let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
    frame.extend((0..38u8).map(|i| i.wrapping_mul(7)));
    frame
}

fn delta_frame() -> Vec<u8> {
    let mut frame = vec![0x31, 0x01, 0x00];
    frame.extend((0..27u8).map(|i| 0xf0 ^ i));
    frame
}

fn audio_frame() -> Vec<u8> {
    let mut frame = vec![0x78];
    frame.extend((0..20u8).map(|i| i.wrapping_mul(13)));
    frame
}

fn frame_entry(description: &str, kind: FrameKind, kind_name: &str, frame: &[u8], ctr: u64) -> Value {
    let key = media_key();
    let kid = key.kid();
    let (sframe_key, sframe_salt) = sframe::derive_key_salt(&key.key, kid);
    let wire = sframe::protect(&key.frame_key(), kid, ctr, kind, frame).unwrap();
    let prefix_len = sframe::clear_prefix_len(kind, frame);
    let mut header = Vec::new();
    sframe::encode_header(kid, ctr, &mut header);
    json!({
        "description": description,
        "kind": kind_name,
        "media_key_hex": hex::encode(key.key),
        "kid": kid,
        "ctr": ctr,
        "frame_hex": hex::encode(frame),
        "clear_prefix_len": prefix_len,
        "sframe_key_hex": hex::encode(sframe_key),
        "sframe_salt_hex": hex::encode(sframe_salt),
        "header_hex": hex::encode(&header),
        "wire_hex": hex::encode(&wire),
    })
}

/// The whole file, from the fixed inputs above.
fn generate() -> Value {
    let (a, b, c) = (identity(SCALAR_A), identity(SCALAR_B), identity(SCALAR_C));
    let public = |identity: &Identity| keys::parse_public_key(identity.public_key()).unwrap();
    let shared = a.shared_secret(&public(&b));
    let wrap_a_b = keys::wrap_key(&shared, "pA", "pB");
    let wrap_b_a = keys::wrap_key(&shared, "pB", "pA");
    let key = media_key();
    let sealed = keys::seal_with_iv(&wrap_a_b, "pA", "pB", &key, SEAL_IV);
    let mut plaintext = vec![0x01];
    plaintext.extend_from_slice(&key.kid().to_be_bytes()[2..]);
    plaintext.extend_from_slice(&key.key);

    let ratchet_base = MediaKey { key_id: 0x0102_0304, step: 0, key: [0x42; 16] };
    let mut steps = Vec::new();
    let mut step_key = ratchet_base.clone();
    for _ in 0..3 {
        step_key = step_key.ratchet().unwrap();
        steps.push(
            json!({ "step": step_key.step, "kid": step_key.kid(), "key_hex": hex::encode(step_key.key) }),
        );
    }

    let listed = [("pC", c.public_key()), ("pA", a.public_key()), ("pB", b.public_key())];
    let input = safety::safety_input(listed);
    let number = safety::safety_number(&input);

    let participant = |scalar: &str, identity: &Identity, id: &str| {
        json!({
            "description": format!(
                "Participant {id}: its P-256 private key as a 32-byte big-endian scalar (hex), \
                 and its public key as `join.e2ee.public_key` carries it: base64url without \
                 padding of the uncompressed point 0x04 || X || Y (65 bytes)."
            ),
            "participant_id": id,
            "private_scalar_hex": scalar,
            "public_key": identity.public_key(),
            "public_key_hex": hex::encode(URL_SAFE_NO_PAD.decode(identity.public_key()).unwrap()),
        })
    };
    let wrap_entry = |from: &str, to: &str, wrap: &[u8; 16]| {
        json!({
            "description": format!(
                "Wrap key of sender {from} for recipient {to}: HKDF-SHA256(ikm = ecdh_shared_hex, \
                 salt = `salt`, info = `info`, L = 16), an AES-128-GCM key."
            ),
            "from": from,
            "to": to,
            "ecdh_shared_hex": hex::encode(shared),
            "salt": "klass-e2ee-v1",
            "info": format!("klass e2ee wrap|{from}|{to}"),
            "key_hex": hex::encode(wrap),
        })
    };
    json!({
        "description": "Vectors of docs/e2ee.md (end-to-end encrypted calls), generated by \
            loadtest/src/e2ee/vectors.rs and checked there and by the page's tests. Byte strings \
            are lowercase hex (`_hex`) or base64url without padding (public keys, sealed keys); \
            KIDs and counters are JSON numbers (below 2^53). Participant ids are `pA`, `pB`, `pC`.",
        "participants": {
            "description": "Two participants (RFC 5903 §8.1's key pairs, whose ECDH is a known \
                answer), and a third for the safety code.",
            "pA": participant(SCALAR_A, &a, "pA"),
            "pB": participant(SCALAR_B, &b, "pB"),
            "pC": participant(SCALAR_C, &c, "pC"),
        },
        "wrap_key": wrap_entry("pA", "pB", &wrap_a_b),
        "wrap_key_b_to_a": wrap_entry("pB", "pA", &wrap_b_a),
        "sealed_key": {
            "description": "Media key sealed by pA for pB (an `e2ee_keys` entry {to: pB, sealed}, \
                relayed to pB as `e2ee_key` {from: pA, sealed}): `sealed` is base64url of iv || \
                AES-128-GCM(wrap_key.key_hex, iv, aad, plaintext) with its 16-byte tag; plaintext \
                = 0x01 || KID (6 bytes big-endian) || media key (16 bytes). The IV is fixed here; \
                a page draws it at random. pB opens it with its own wrap key for pA→pB.",
            "from": "pA",
            "to": "pB",
            "iv_hex": hex::encode(SEAL_IV),
            "aad": "klass e2ee key|pA|pB",
            "key_id": key.key_id,
            "step": key.step,
            "kid": key.kid(),
            "media_key_hex": hex::encode(key.key),
            "plaintext_hex": hex::encode(&plaintext),
            "sealed": sealed,
        },
        "ratchet": {
            "description": "Three ratchet steps of a media key: next = HKDF-SHA256(ikm = key, salt = \
                empty, info = \"klass e2ee ratchet\", L = 16); each step keeps the key_id and adds \
                1 to the step, so the KID (key_id × 65536 + step) grows by 1.",
            "key_id": ratchet_base.key_id,
            "step": ratchet_base.step,
            "kid": ratchet_base.kid(),
            "key_hex": hex::encode(ratchet_base.key),
            "steps": steps,
        },
        "frames": [
            frame_entry(
                "A VP8 keyframe (frame tag's P bit 0) encrypted with SFrame AES_128_GCM_SHA256_128 \
                 (RFC 9605): wire = first 10 bytes in clear || SFrame header || ciphertext || tag; \
                 the clear prefix is the SFrame metadata (aad = header || prefix). sframe_key and \
                 sframe_salt are RFC 9605's derivation from the media key and the KID; nonce = \
                 salt XOR ctr. The KID and media key are those of sealed_key.",
                FrameKind::Vp8, "video", &keyframe(), 0,
            ),
            frame_entry(
                "A VP8 delta frame (P bit 1): 3 bytes (the frame tag) in clear. Same key and KID as \
                 the keyframe, the sender's next counters (one counter per KID, shared by all its \
                 tracks).",
                FrameKind::Vp8, "video", &delta_frame(), 7,
            ),
            frame_entry(
                "An Opus audio frame: no clear prefix, the whole frame is encrypted. Same KID; a \
                 counter of two bytes in the header.",
                FrameKind::Audio, "audio", &audio_frame(), 300,
            ),
        ],
        "safety_code": {
            "description": "The safety code of a call of pC, pA and pB (listed unsorted): input = \
                \"klass-e2ee-safety-v1\\n\" then `participant_id public_key\\n` per participant \
                sorted by id; number = first 5 bytes (big-endian) of PBKDF2-HMAC-SHA256(input, \
                salt \"klass-e2ee-safety\", 100000 iterations, 8 bytes) mod 10^12; code = its 12 \
                digits in groups of 3.",
            "participants": listed.iter().map(|(id, public_key)| json!({
                "participant_id": id, "public_key": public_key,
            })).collect::<Vec<_>>(),
            "input": input,
            "number": number,
            "code": safety::format_code(number),
        },
    })
}

#[test]
fn the_vectors_file_matches_this_implementation() {
    let generated = generate();
    if std::env::var_os("KLASS_WRITE_E2EE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
    }
    let text = std::fs::read_to_string(path()).expect("signaling/tests/e2ee-vectors.json");
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file, generated, "regenerate with KLASS_WRITE_E2EE_VECTORS=1 if the change is deliberate");
}

/// What the page's test does with the file: from its inputs alone, open the sealed key as pB and
/// decrypt the frames.
#[test]
fn the_vectors_file_opens_and_decrypts() {
    let text = std::fs::read_to_string(path()).expect("signaling/tests/e2ee-vectors.json");
    let file: Value = serde_json::from_str(&text).unwrap();
    let str_of = |value: &Value| value.as_str().unwrap().to_owned();
    let b = identity(&str_of(&file["participants"]["pB"]["private_scalar_hex"]));
    let a_public = keys::parse_public_key(&str_of(&file["participants"]["pA"]["public_key"])).unwrap();
    let wrap = keys::wrap_key(&b.shared_secret(&a_public), "pA", "pB");
    let key = keys::unseal(&wrap, "pA", "pB", &str_of(&file["sealed_key"]["sealed"])).unwrap();
    assert_eq!(key.kid(), file["sealed_key"]["kid"].as_u64().unwrap());
    assert_eq!(hex::encode(key.key), str_of(&file["sealed_key"]["media_key_hex"]));
    assert!(keys::unseal(&wrap, "pA", "pC", &str_of(&file["sealed_key"]["sealed"])).is_err());

    let frames = file["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    for frame in frames {
        let kind = if frame["kind"] == "audio" { FrameKind::Audio } else { FrameKind::Vp8 };
        let wire = hex::decode(str_of(&frame["wire_hex"])).unwrap();
        let frame_key = key.frame_key();
        let plain = sframe::unprotect(kind, &wire, |kid| (kid == key.kid()).then_some(&frame_key)).unwrap();
        assert_eq!(hex::encode(plain), str_of(&frame["frame_hex"]));
    }
    assert!(hex::decode(str_of(&frames[0]["frame_hex"])).unwrap().len() >= 40);

    let safety = &file["safety_code"];
    let number = safety::safety_number(&str_of(&safety["input"]));
    assert_eq!(number, safety["number"].as_u64().unwrap());
    assert_eq!(safety::format_code(number), str_of(&safety["code"]));
}
