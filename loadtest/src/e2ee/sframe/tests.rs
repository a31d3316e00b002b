use super::*;

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text.replace([' ', '\n'], "")).unwrap()
}

/// RFC 9605 Appendix C.1 (the final header format, config byte `X|K|Y|C`): a selection of the
/// vectors, with every form of header and every length of KID and CTR.
const HEADERS: &[(u64, u64, &str)] = &[
    (0x0, 0x0, "00"),
    (0x0, 0x1, "01"),
    (0x0, 0xff, "08ff"),
    (0x0, 0x100, "090100"),
    (0x0, 0xffff, "09ffff"),
    (0x0, 0x10000, "0a010000"),
    (0x0, 0xffffff, "0affffff"),
    (0x0, 0x1000000, "0b01000000"),
    (0x0, 0xffffffff, "0bffffffff"),
    (0x0, 0x100000000, "0c0100000000"),
    (0x0, 0xffffffffff, "0cffffffffff"),
    (0x1, 0xff, "18ff"),
    (0x1, 0x10000000000, "1d010000000000"),
    (0xff, 0x100, "89ff0100"),
    (0xff, 0xffffffffffff, "8dffffffffffffff"),
    (0x100, 0xffff, "990100ffff"),
    (0x100, 0x1000000000000, "9e010001000000000000"),
    (0xffff, 0x10000, "9affff010000"),
    (0xffff, 0xffffffffffffff, "9effffffffffffffffff"),
    (0x10000, 0xffffff, "aa010000ffffff"),
    (0x10000, 0x100000000000000, "af0100000100000000000000"),
    (0xffffff, 0x1000000, "abffffff01000000"),
    (0xffffff, 0xffffffffffffffff, "afffffffffffffffffffffff"),
    (0x1000000, 0xffffffff, "bb01000000ffffffff"),
    (0xffffffff, 0x0, "b0ffffffff"),
    (0xffffffff, 0x100000000, "bcffffffff0100000000"),
    (0x100000000, 0x1, "c10100000000"),
    (0x100000000, 0xffffffffff, "cc0100000000ffffffffff"),
    (0xffffffffff, 0xff, "c8ffffffffffff"),
    (0xffffffffff, 0x10000000000, "cdffffffffff010000000000"),
    (0x10000000000, 0x100, "d90100000000000100"),
    (0x10000000000, 0xffffffffffff, "dd010000000000ffffffffffff"),
    (0xffffffffffff, 0xffff, "d9ffffffffffffffff"),
    (0xffffffffffff, 0x1000000000000, "deffffffffffff01000000000000"),
    (0x1000000000000, 0x10000, "ea01000000000000010000"),
    (0x1000000000000, 0xffffffffffffff, "ee01000000000000ffffffffffffff"),
    (0xffffffffffffff, 0xffffff, "eaffffffffffffffffffff"),
    (0xffffffffffffff, 0x100000000000000, "efffffffffffffff0100000000000000"),
    (0x100000000000000, 0x1000000, "fb010000000000000001000000"),
    (0x100000000000000, 0xffffffffffffffff, "ff0100000000000000ffffffffffffffff"),
    (0xffffffffffffffff, 0xffffffff, "fbffffffffffffffffffffffff"),
];

#[test]
fn rfc9605_headers_encode_and_decode() {
    for (kid, ctr, expected) in HEADERS {
        let mut header = Vec::new();
        encode_header(*kid, *ctr, &mut header);
        assert_eq!(hex::encode(&header), *expected, "kid {kid:#x} ctr {ctr:#x}");
        let mut bytes = unhex(expected);
        let decoded = decode_header(&bytes).unwrap();
        assert_eq!(decoded, Header { kid: *kid, ctr: *ctr, len: bytes.len() }, "{expected}");
        // A truncated header is refused, one followed by more bytes is read alone.
        if bytes.len() > 1 {
            assert_eq!(decode_header(&bytes[..bytes.len() - 1]), Err(FrameError::Malformed), "{expected}");
        }
        bytes.extend_from_slice(&[0xaa; 4]);
        assert_eq!(decode_header(&bytes).unwrap().len, bytes.len() - 4);
    }
    assert_eq!(decode_header(&[]), Err(FrameError::Malformed));
    // Around the edge of the config byte's 3 bits (not in the RFC's list).
    for (kid, ctr, expected) in [(7, 7, "77"), (7, 8, "7808"), (8, 7, "8708"), (8, 8, "880808")] {
        let mut header = Vec::new();
        encode_header(kid, ctr, &mut header);
        assert_eq!(hex::encode(&header), expected);
        assert_eq!(decode_header(&header).unwrap(), Header { kid, ctr, len: header.len() });
    }
}

/// RFC 9605 Appendix C.3, cipher suite 0x0004 (`AES_128_GCM_SHA256_128`).
#[test]
fn rfc9605_aes_128_gcm_sha256_128() {
    let kid = 0x0123;
    let ctr = 0x4567;
    let base_key: [u8; 16] = unhex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
    let (key, salt) = derive_key_salt(&base_key, kid);
    assert_eq!(hex::encode(key), "d34f547f4ca4f9a7447006fe7fcbf768");
    assert_eq!(hex::encode(salt), "75234edefe07819026751816");
    let frame_key = FrameKey::derive(&base_key, kid);
    assert_eq!(hex::encode(frame_key.nonce(ctr)), "75234edefe07819026755d71");

    let metadata = unhex("4945544620534672616d65205747");
    let plaintext = unhex("64726166742d696574662d736672616d 652d656e63");
    let expected =
        unhex("9901234567b7412c2513a1b66dbb4884 1bbaf17f598751176ad847681a69c6d0 b091c07018ce4adb34eb");
    let mut ciphertext = Vec::new();
    frame_key.encrypt(kid, ctr, &metadata, &plaintext, &mut ciphertext);
    assert_eq!(hex::encode(&ciphertext), hex::encode(&expected));

    let header = decode_header(&expected).unwrap();
    assert_eq!((header.kid, header.ctr), (kid, ctr));
    assert_eq!(frame_key.decrypt(&header, &metadata, &expected).unwrap(), plaintext);
    assert_eq!(frame_key.decrypt(&header, b"other metadata", &expected), Err(FrameError::Auth));
}

fn key() -> FrameKey {
    FrameKey::derive(&[7; 16], 0x1234_0001)
}

fn keyframe() -> Vec<u8> {
    let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
    frame.extend((0..200).map(|i| i as u8));
    frame
}

#[test]
fn frames_round_trip_with_their_clear_prefix() {
    let key = key();
    let kid = 0x1234_0001;
    let delta = [0x31, 0x00, 0x00, 1, 2, 3, 4, 5];
    let audio = [0x78, 1, 2, 3];
    for (kind, frame, prefix_len) in [
        (FrameKind::Vp8, keyframe(), 10),
        (FrameKind::Vp8, delta.to_vec(), 3),
        (FrameKind::Audio, audio.to_vec(), 0),
    ] {
        let wire = protect(&key, kid, 9, kind, &frame).unwrap();
        assert_eq!(wire[..prefix_len], frame[..prefix_len], "the prefix stays in clear");
        assert_eq!(frame_header(kind, &wire).unwrap(), Header { kid, ctr: 9, len: 6 });
        assert_eq!(wire.len(), frame.len() + 6 + TAG_LEN);
        assert_eq!(unprotect(kind, &wire, |k| (k == kid).then_some(&key)).unwrap(), frame);
        assert_eq!(unprotect(kind, &wire, |_| None), Err(FrameError::NoKey(kid)));
    }
    // The SFU still sees a keyframe.
    let wire = protect(&key, kid, 0, FrameKind::Vp8, &keyframe()).unwrap();
    let packets = crate::ivf::packetize(1, &wire);
    assert!(str0m::format::detect_vp8_keyframe(&packets[0]));
    // Empty frames pass unchanged; a video frame shorter than its prefix is dropped.
    assert_eq!(protect(&key, kid, 1, FrameKind::Vp8, &[]), Some(Vec::new()));
    assert_eq!(unprotect(FrameKind::Audio, &[], |_| None), Ok(Vec::new()));
    assert_eq!(protect(&key, kid, 1, FrameKind::Vp8, &[0x10, 0, 0, 0x9d]), None);
    assert_eq!(protect(&key, kid, 1, FrameKind::Vp8, &[0x31, 0]), None);
}

#[test]
fn tampering_is_refused() {
    let key = key();
    let kid = 0x1234_0001;
    let wire = protect(&key, kid, 3, FrameKind::Vp8, &keyframe()).unwrap();
    let open = |wire: &[u8]| unprotect(FrameKind::Vp8, wire, |_| Some(&key));
    assert!(open(&wire).is_ok());
    // Every single bit flipped anywhere: the prefix (metadata), the header, the ciphertext, the
    // tag. A flipped KID or CTR reads as another frame that does not verify either.
    for byte_idx in 0..wire.len() {
        for bit in [0x01, 0x80] {
            let mut tampered = wire.clone();
            tampered[byte_idx] ^= bit;
            assert!(open(&tampered).is_err(), "byte {byte_idx} bit {bit:#x}");
        }
    }
    assert_eq!(open(&wire[..wire.len() - 1]), Err(FrameError::Auth));
    assert_eq!(open(&wire[..10 + 5 + TAG_LEN - 1]), Err(FrameError::Malformed));
    assert_eq!(open(&wire[..10]), Err(FrameError::Malformed));
    // Another key for the same KID.
    let other = FrameKey::derive(&[8; 16], kid);
    assert_eq!(unprotect(FrameKind::Vp8, &wire, |_| Some(&other)), Err(FrameError::Auth));
}
