//! SFrame (RFC 9605) with the cipher suite `AES_128_GCM_SHA256_128`, and how docs/e2ee.md puts
//! it on the wire: `clear prefix || SFrame header || ciphertext || tag`, the clear prefix being
//! the SFrame `metadata`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// `AES_128_GCM_SHA256_128` in the IANA registry of SFrame cipher suites.
pub const CIPHER_SUITE: u16 = 0x0004;
pub const TAG_LEN: usize = 16;
/// Clear prefix of a VP8 keyframe: frame tag (3 bytes), start code (3), width and height (4).
pub const VP8_KEYFRAME_PREFIX: usize = 10;
/// Clear prefix of a VP8 delta frame: its frame tag.
pub const VP8_DELTA_PREFIX: usize = 3;

/// Why a frame was not decrypted. `NoKey` happens in normal operation (the sealed key is still on
/// its way, or was forgotten); the others mean a bug or tampering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Too short for its clear prefix, or no valid SFrame header after it.
    Malformed,
    /// No key for this KID.
    NoKey(u64),
    /// The AEAD tag did not verify.
    Auth,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Malformed => write!(f, "malformed SFrame"),
            FrameError::NoKey(kid) => write!(f, "no key for KID {kid}"),
            FrameError::Auth => write!(f, "SFrame authentication failed"),
        }
    }
}

/// The encoded header of RFC 9605 §4.3: config byte `X|K(3)|Y|C(3)`, then the KID and the CTR
/// when they do not fit in 3 bits, each in as few big-endian bytes as it takes.
pub fn encode_header(kid: u64, ctr: u64, out: &mut Vec<u8>) {
    fn field(value: u64) -> (u8, usize) {
        if value < 8 {
            (value as u8, 0)
        } else {
            let len = 8 - value.leading_zeros() as usize / 8;
            (0x08 | (len - 1) as u8, len)
        }
    }
    let (k, kid_len) = field(kid);
    let (c, ctr_len) = field(ctr);
    out.push(k << 4 | c);
    out.extend_from_slice(&kid.to_be_bytes()[8 - kid_len..]);
    out.extend_from_slice(&ctr.to_be_bytes()[8 - ctr_len..]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kid: u64,
    pub ctr: u64,
    /// Its length in bytes.
    pub len: usize,
}

/// Reads the header at the start of `bytes`. Values are not required to be minimally encoded:
/// RFC 9605 asks that of senders, and a receiver loses nothing by reading either.
pub fn decode_header(bytes: &[u8]) -> Result<Header, FrameError> {
    let config = *bytes.first().ok_or(FrameError::Malformed)?;
    let mut at = 1;
    let mut field = |bits: u8| -> Result<u64, FrameError> {
        if bits & 0x08 == 0 {
            return Ok(u64::from(bits));
        }
        let len = usize::from(bits & 0x07) + 1;
        let value = bytes.get(at..at + len).ok_or(FrameError::Malformed)?;
        at += len;
        Ok(value.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
    };
    let kid = field(config >> 4)?;
    let ctr = field(config & 0x0f)?;
    Ok(Header { kid, ctr, len: at })
}

/// The AEAD key and salt derived from a base key for one KID (RFC 9605 §4.4.2).
#[derive(Clone)]
pub struct FrameKey {
    cipher: Aes128Gcm,
    salt: [u8; 12],
}

/// `sframe_key` and `sframe_salt` of RFC 9605 §4.4.2.
pub fn derive_key_salt(base_key: &[u8], kid: u64) -> ([u8; 16], [u8; 12]) {
    let hkdf = Hkdf::<Sha256>::new(Some(&[]), base_key);
    let label = |what: &str| {
        let mut label = format!("SFrame 1.0 Secret {what} ").into_bytes();
        label.extend_from_slice(&kid.to_be_bytes());
        label.extend_from_slice(&CIPHER_SUITE.to_be_bytes());
        label
    };
    let mut key = [0u8; 16];
    let mut salt = [0u8; 12];
    // 16 and 12 bytes are far below HKDF-SHA256's limit of 8160.
    hkdf.expand(&label("key"), &mut key).expect("a short HKDF output");
    hkdf.expand(&label("salt"), &mut salt).expect("a short HKDF output");
    (key, salt)
}

impl FrameKey {
    pub fn derive(base_key: &[u8; 16], kid: u64) -> FrameKey {
        let (key, salt) = derive_key_salt(base_key, kid);
        FrameKey { cipher: Aes128Gcm::new(&key.into()), salt }
    }

    fn nonce(&self, ctr: u64) -> [u8; 12] {
        let mut nonce = self.salt;
        for (n, c) in nonce[4..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        nonce
    }

    /// RFC 9605 `encrypt`: `header || AEAD(key, nonce, aad = header || metadata, plaintext)`,
    /// appended to `out`.
    pub fn encrypt(&self, kid: u64, ctr: u64, metadata: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let header_at = out.len();
        encode_header(kid, ctr, out);
        let mut aad = out[header_at..].to_vec();
        aad.extend_from_slice(metadata);
        let nonce = self.nonce(ctr);
        // AES-GCM fails only on plaintexts of more than 64 GiB.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .expect("a frame far below AES-GCM's limit");
        out.extend_from_slice(&sealed);
    }

    /// RFC 9605 `decrypt` of an SFrame ciphertext whose header was read already.
    pub fn decrypt(&self, header: &Header, metadata: &[u8], sframe: &[u8]) -> Result<Vec<u8>, FrameError> {
        let (header_bytes, ciphertext) = sframe.split_at_checked(header.len).ok_or(FrameError::Malformed)?;
        if ciphertext.len() < TAG_LEN {
            return Err(FrameError::Malformed);
        }
        let mut aad = header_bytes.to_vec();
        aad.extend_from_slice(metadata);
        let nonce = self.nonce(header.ctr);
        self.cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| FrameError::Auth)
    }
}

/// What a frame is, for its clear prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Opus (or RED around it): no clear prefix.
    Audio,
    /// VP8: 10 clear bytes for a keyframe, 3 for a delta frame.
    Vp8,
}

/// How many bytes of `frame` stay in clear. A VP8 keyframe has its frame tag's P bit at 0.
pub fn clear_prefix_len(kind: FrameKind, frame: &[u8]) -> usize {
    match (kind, frame.first()) {
        (FrameKind::Audio, _) | (FrameKind::Vp8, None) => 0,
        (FrameKind::Vp8, Some(tag)) if tag & 1 == 0 => VP8_KEYFRAME_PREFIX,
        (FrameKind::Vp8, Some(_)) => VP8_DELTA_PREFIX,
    }
}

/// Encrypts one encoded frame as it goes on the wire. `None`: a video frame shorter than its
/// clear prefix, which is dropped. An empty frame passes unchanged.
pub fn protect(key: &FrameKey, kid: u64, ctr: u64, kind: FrameKind, frame: &[u8]) -> Option<Vec<u8>> {
    if frame.is_empty() {
        return Some(Vec::new());
    }
    let prefix_len = clear_prefix_len(kind, frame);
    let (prefix, plaintext) = frame.split_at_checked(prefix_len)?;
    let mut out = Vec::with_capacity(frame.len() + 1 + 8 + 8 + TAG_LEN);
    out.extend_from_slice(prefix);
    key.encrypt(kid, ctr, prefix, plaintext, &mut out);
    Some(out)
}

/// The header of a protected frame, or an error when it has none.
#[cfg(test)]
pub fn frame_header(kind: FrameKind, wire: &[u8]) -> Result<Header, FrameError> {
    let prefix_len = clear_prefix_len(kind, wire);
    let sframe = wire.get(prefix_len..).ok_or(FrameError::Malformed)?;
    decode_header(sframe)
}

/// Decrypts one frame as it came off the wire, with the key `key_of` gives for its KID. An empty
/// frame passes unchanged.
pub fn unprotect<'k>(
    kind: FrameKind,
    wire: &[u8],
    key_of: impl FnOnce(u64) -> Option<&'k FrameKey>,
) -> Result<Vec<u8>, FrameError> {
    if wire.is_empty() {
        return Ok(Vec::new());
    }
    let prefix_len = clear_prefix_len(kind, wire);
    let (prefix, sframe) = wire.split_at_checked(prefix_len).ok_or(FrameError::Malformed)?;
    let header = decode_header(sframe)?;
    let key = key_of(header.kid).ok_or(FrameError::NoKey(header.kid))?;
    let plaintext = key.decrypt(&header, prefix, sframe)?;
    let mut frame = Vec::with_capacity(prefix.len() + plaintext.len());
    frame.extend_from_slice(prefix);
    frame.extend_from_slice(&plaintext);
    Ok(frame)
}

#[cfg(test)]
mod tests;
