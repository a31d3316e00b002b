use super::*;

fn identity(hex_scalar: &str) -> Identity {
    Identity::from_scalar(&hex::decode(hex_scalar).unwrap().try_into().unwrap()).unwrap()
}

/// RFC 5903 §8.1: the initiator's and responder's private keys, public keys and shared secret.
const I: &str = "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433";
const R: &str = "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53";

#[test]
fn ecdh_matches_rfc5903_both_ways() {
    let (a, b) = (identity(I), identity(R));
    let public = |identity: &Identity| hex::encode(URL_SAFE_NO_PAD.decode(identity.public_key()).unwrap());
    assert_eq!(
        public(&a),
        "04dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180\
         5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3"
    );
    assert_eq!(
        public(&b),
        "04d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63\
         56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab"
    );
    let shared = "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de";
    let a_b = a.shared_secret(&parse_public_key(b.public_key()).unwrap());
    let b_a = b.shared_secret(&parse_public_key(a.public_key()).unwrap());
    assert_eq!(hex::encode(a_b), shared);
    assert_eq!(a_b, b_a);
}

#[test]
fn public_keys_are_uncompressed_points_in_base64url() {
    let a = identity(I);
    assert_eq!(a.public_key().len(), 87, "65 bytes, no padding");
    assert!(parse_public_key(a.public_key()).is_ok());
    let bytes = URL_SAFE_NO_PAD.decode(a.public_key()).unwrap();
    let compressed = p256::PublicKey::from_sec1_bytes(&bytes).unwrap().to_encoded_point(true);
    for bad in [
        URL_SAFE_NO_PAD.encode(compressed.as_bytes()),
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        URL_SAFE_NO_PAD.encode(&bytes[..64]),
        URL_SAFE_NO_PAD.encode([&[0x04][..], &[0x11; 64]].concat()),
        String::new(),
    ] {
        assert_eq!(parse_public_key(&bad).err(), Some(KeyError::BadPublicKey), "{bad}");
    }
}

#[test]
fn sealed_keys_open_for_their_recipient_only() {
    let (a, b, c) = (identity(I), identity(R), Identity::generate());
    let pk = |identity: &Identity| parse_public_key(identity.public_key()).unwrap();
    let a_to_b = wrap_key(&a.shared_secret(&pk(&b)), "pA", "pB");
    assert_eq!(a_to_b, wrap_key(&b.shared_secret(&pk(&a)), "pA", "pB"), "both ends derive it");
    assert_ne!(a_to_b, wrap_key(&b.shared_secret(&pk(&a)), "pB", "pA"), "one key per direction");

    let key = MediaKey::generate();
    let sealed = seal(&a_to_b, "pA", "pB", &key);
    assert_eq!(sealed.len(), 68);
    assert_eq!(unseal(&a_to_b, "pA", "pB", &sealed), Ok(key.clone()));
    assert_ne!(sealed, seal(&a_to_b, "pA", "pB", &key), "a fresh IV each time");

    // C cannot open it, with its own ECDH with A, nor can B when it is replayed as if for C or
    // from C.
    let a_to_c = wrap_key(&c.shared_secret(&pk(&a)), "pA", "pC");
    assert_eq!(unseal(&a_to_c, "pA", "pC", &sealed), Err(KeyError::Unsealed));
    assert_eq!(unseal(&a_to_b, "pA", "pC", &sealed), Err(KeyError::Unsealed));
    assert_eq!(unseal(&a_to_b, "pC", "pB", &sealed), Err(KeyError::Unsealed));
    // Tampered, or of the wrong form.
    let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
    for idx in 0..bytes.len() {
        bytes[idx] ^= 0x20;
        assert_eq!(unseal(&a_to_b, "pA", "pB", &URL_SAFE_NO_PAD.encode(&bytes)), Err(KeyError::Unsealed));
        bytes[idx] ^= 0x20;
    }
    assert_eq!(unseal(&a_to_b, "pA", "pB", &sealed[..67]), Err(KeyError::Malformed));
    assert_eq!(unseal(&a_to_b, "pA", "pB", "not base64!"), Err(KeyError::Malformed));
}

#[test]
fn sealed_keys_of_another_version_or_key_id_zero_are_refused() {
    let wrap = [9; 16];
    let seal_raw = |plaintext: &[u8]| {
        let cipher = Aes128Gcm::new(&wrap.into());
        let iv = [1u8; 12];
        let aad = seal_aad("pA", "pB");
        let sealed = cipher.encrypt(Nonce::from_slice(&iv), Payload { msg: plaintext, aad: &aad }).unwrap();
        URL_SAFE_NO_PAD.encode([&iv[..], &sealed].concat())
    };
    let mut plaintext = vec![0x01, 0, 0, 0, 5, 0, 2];
    plaintext.extend_from_slice(&[3; 16]);
    assert_eq!(
        unseal(&wrap, "pA", "pB", &seal_raw(&plaintext)),
        Ok(MediaKey { key_id: 5, step: 2, key: [3; 16] })
    );
    plaintext[0] = 0x02;
    assert_eq!(unseal(&wrap, "pA", "pB", &seal_raw(&plaintext)), Err(KeyError::BadPlaintext));
    plaintext[0] = 0x01;
    plaintext[4] = 0;
    assert_eq!(unseal(&wrap, "pA", "pB", &seal_raw(&plaintext)), Err(KeyError::BadPlaintext));
}

#[test]
fn kids_and_the_ratchet() {
    assert_eq!(kid(1, 0), 65536);
    assert_eq!(kid(0xffff_ffff, 0xffff), 0xffff_ffff_ffff);
    let key = MediaKey { key_id: 0x0102_0304, step: 0, key: [0x11; 16] };
    let next = key.ratchet().unwrap();
    assert_eq!((next.key_id, next.step, next.kid()), (key.key_id, 1, 0x0102_0304_0001));
    assert_eq!(next.key, ratchet(&key.key));
    assert_ne!(next.key, key.key);
    assert_ne!(next.ratchet().unwrap().key, next.key);
    assert_eq!(MediaKey { step: u16::MAX, ..key.clone() }.ratchet(), None);
    let fresh = MediaKey::generate();
    assert_ne!(fresh.key_id, 0);
    assert_eq!(fresh.step, 0);
}

#[test]
fn a_receiver_derives_later_steps_but_not_earlier_ones() {
    let step0 = MediaKey::generate();
    let mut steps = vec![step0.clone()];
    for _ in 0..70 {
        steps.push(steps.last().unwrap().ratchet().unwrap());
    }
    let mut ring = KeyRing::default();
    ring.insert(steps[2].clone());
    let open = |ring: &mut KeyRing, step: usize| {
        let key = &steps[step];
        let wire = super::super::sframe::protect(
            &key.frame_key(),
            key.kid(),
            0,
            super::super::sframe::FrameKind::Audio,
            b"hi",
        )
        .unwrap();
        super::super::sframe::unprotect(super::super::sframe::FrameKind::Audio, &wire, |kid| {
            ring.frame_key(kid)
        })
        .is_ok()
    };
    assert!(open(&mut ring, 2));
    assert!(open(&mut ring, 3));
    assert!(open(&mut ring, 2 + 64));
    assert!(!open(&mut ring, 0), "nobody goes back");
    assert!(!open(&mut ring, 1));
    let mut far = KeyRing::default();
    far.insert(steps[2].clone());
    assert!(!open(&mut far, 2 + 65), "at most 64 steps ahead");
    assert!(ring.frame_key(kid(step0.key_id.wrapping_add(1), 2)).is_none(), "another key id");
}

#[test]
fn a_receiver_keeps_the_last_three_key_ids() {
    let mut ring = KeyRing::default();
    let keys: Vec<MediaKey> =
        (1..=4).map(|key_id| MediaKey { key_id, step: 0, key: [key_id as u8; 16] }).collect();
    for key in &keys {
        ring.insert(key.clone());
    }
    assert!(!ring.holds(1));
    assert!(ring.frame_key(keys[0].kid()).is_none());
    for key in &keys[1..] {
        assert!(ring.holds(key.key_id));
        assert!(ring.frame_key(key.kid()).is_some());
    }
    // Another step of a held key id does not push one out.
    ring.insert(keys[1].ratchet().unwrap());
    assert!(ring.holds(2) && ring.holds(3) && ring.holds(4));
}

#[test]
fn a_receiver_follows_the_joins_and_keeps_the_steps_it_was_given() {
    let given = MediaKey::generate();
    let mut ring = KeyRing::default();
    ring.insert(given.clone());
    let mut latest = given.clone();
    for _ in 0..100 {
        ring.advance();
        latest = latest.ratchet().unwrap();
    }
    assert!(ring.frame_key(latest.kid()).is_some(), "100 steps on, followed join by join");
    assert!(ring.frame_key(kid(given.key_id, 70)).is_none(), "only the last derived steps are kept");
    assert!(ring.frame_key(given.kid()).is_some(), "the given step is");
    assert!(ring.frame_key(kid(given.key_id, 50)).is_some(), "and steps within 64 of it");
}
