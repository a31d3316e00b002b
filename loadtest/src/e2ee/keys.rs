//! The keys of docs/e2ee.md: a page's identity key pair (ECDH P-256), the pairwise wrap keys,
//! media keys sealed for one recipient, the ratchet, and a receiver's store of each sender's keys.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand::RngCore;
use sha2::Sha256;

use super::sframe::FrameKey;

const WRAP_SALT: &[u8] = b"klass-e2ee-v1";
const WRAP_INFO: &str = "klass e2ee wrap|";
const SEAL_AAD: &str = "klass e2ee key|";
const RATCHET_INFO: &[u8] = b"klass e2ee ratchet";
const SEALED_VERSION: u8 = 0x01;
/// `iv (12) || AES-GCM(version (1) || KID (6) || key (16)) || tag (16)`.
pub const SEALED_LEN: usize = 12 + 1 + 6 + 16 + 16;
/// How far ahead of the step it holds a receiver derives a key itself.
pub const MAX_RATCHET_AHEAD: u16 = 64;
/// Key ids a receiver keeps per sender.
pub const KEY_IDS_KEPT: usize = 3;
/// Steps of one key id a receiver keeps derived, for frames that arrive out of order around a
/// ratchet.
const STEPS_KEPT: usize = 4;

/// Why a sealed key or a public key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not base64url, not 65 bytes, or not a point of P-256.
    BadPublicKey,
    /// Not base64url, or not 51 bytes.
    Malformed,
    /// Did not open: another wrap key, another sender or recipient, or tampered.
    Unsealed,
    /// Opened, but an unknown version or a KID of `key_id` 0.
    BadPlaintext,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyError::BadPublicKey => "not an uncompressed P-256 public key in base64url",
            KeyError::Malformed => "a sealed key of the wrong form",
            KeyError::Unsealed => "a sealed key that does not open",
            KeyError::BadPlaintext => "a sealed key of an unknown version or KID",
        })
    }
}

/// A page's ephemeral ECDH key pair for one call.
#[derive(Clone)]
pub struct Identity {
    secret: SecretKey,
    public_key: String,
}

impl Identity {
    pub fn generate() -> Identity {
        Identity::from_secret(SecretKey::random(&mut rand::rngs::OsRng))
    }

    /// From a fixed scalar (test vectors).
    #[cfg(test)]
    pub fn from_scalar(scalar: &[u8; 32]) -> Option<Identity> {
        SecretKey::from_slice(scalar).ok().map(Identity::from_secret)
    }

    fn from_secret(secret: SecretKey) -> Identity {
        let point = secret.public_key().to_encoded_point(false);
        Identity { public_key: URL_SAFE_NO_PAD.encode(point.as_bytes()), secret }
    }

    /// `join.e2ee.public_key`: base64url of the uncompressed point.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The x coordinate of ECDH with `peer` (what WebCrypto's `deriveBits(…, 256)` gives).
    pub fn shared_secret(&self, peer: &PublicKey) -> [u8; 32] {
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        (*shared.raw_secret_bytes()).into()
    }
}

/// `join.e2ee.public_key` or `participant.e2ee_public_key`: base64url without padding of an
/// uncompressed P-256 point.
pub fn parse_public_key(text: &str) -> Result<PublicKey, KeyError> {
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| KeyError::BadPublicKey)?;
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return Err(KeyError::BadPublicKey);
    }
    PublicKey::from_sec1_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)
}

/// The wrap key of sender `from` for recipient `to`, from their ECDH secret.
pub fn wrap_key(shared_secret: &[u8; 32], from: &str, to: &str) -> [u8; 16] {
    let hkdf = Hkdf::<Sha256>::new(Some(WRAP_SALT), shared_secret);
    let mut key = [0u8; 16];
    // 16 bytes are far below HKDF-SHA256's limit.
    hkdf.expand(format!("{WRAP_INFO}{from}|{to}").as_bytes(), &mut key).expect("a short HKDF output");
    key
}

/// A KID: `key_id × 65536 + step`.
pub fn kid(key_id: u32, step: u16) -> u64 {
    u64::from(key_id) << 16 | u64::from(step)
}

/// A media key (the SFrame base key) at one step of its ratchet.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaKey {
    /// Never 0.
    pub key_id: u32,
    pub step: u16,
    pub key: [u8; 16],
}

impl std::fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself stays out of logs.
        write!(f, "MediaKey({:#x}:{})", self.key_id, self.step)
    }
}

impl MediaKey {
    /// A fresh key: a random non-zero key id, step 0.
    pub fn generate() -> MediaKey {
        let mut rng = rand::rngs::OsRng;
        let mut key = [0u8; 16];
        rng.fill_bytes(&mut key);
        let key_id = loop {
            let key_id = rng.next_u32();
            if key_id != 0 {
                break key_id;
            }
        };
        MediaKey { key_id, step: 0, key }
    }

    pub fn kid(&self) -> u64 {
        kid(self.key_id, self.step)
    }

    /// The next step; `None` past the last one (a sender then makes a fresh key).
    pub fn ratchet(&self) -> Option<MediaKey> {
        Some(MediaKey { key_id: self.key_id, step: self.step.checked_add(1)?, key: ratchet(&self.key) })
    }

    pub fn frame_key(&self) -> FrameKey {
        FrameKey::derive(&self.key, self.kid())
    }
}

/// `HKDF-SHA256(ikm = key, salt = "", info = "klass e2ee ratchet", L = 16)`.
pub fn ratchet(key: &[u8; 16]) -> [u8; 16] {
    let hkdf = Hkdf::<Sha256>::new(Some(&[]), key);
    let mut next = [0u8; 16];
    // 16 bytes are far below HKDF-SHA256's limit.
    hkdf.expand(RATCHET_INFO, &mut next).expect("a short HKDF output");
    next
}

fn seal_aad(from: &str, to: &str) -> Vec<u8> {
    format!("{SEAL_AAD}{from}|{to}").into_bytes()
}

/// `key`, sealed by `from` for `to` under their wrap key, with a fresh random IV.
pub fn seal(wrap_key: &[u8; 16], from: &str, to: &str, key: &MediaKey) -> String {
    let mut iv = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    seal_with_iv(wrap_key, from, to, key, iv)
}

/// [`seal`] with a given IV (test vectors): base64url of `iv || AES-128-GCM(wrap key, iv,
/// aad = "klass e2ee key|" from "|" to, 0x01 || KID (6 bytes) || key)`.
pub fn seal_with_iv(wrap_key: &[u8; 16], from: &str, to: &str, key: &MediaKey, iv: [u8; 12]) -> String {
    let mut plaintext = Vec::with_capacity(23);
    plaintext.push(SEALED_VERSION);
    plaintext.extend_from_slice(&key.kid().to_be_bytes()[2..]);
    plaintext.extend_from_slice(&key.key);
    let cipher = Aes128Gcm::new(wrap_key.into());
    let aad = seal_aad(from, to);
    // 23 bytes are far below AES-GCM's limit.
    let sealed = cipher
        .encrypt(Nonce::from_slice(&iv), Payload { msg: &plaintext, aad: &aad })
        .expect("a short plaintext");
    let mut bytes = iv.to_vec();
    bytes.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Opens what `from` sealed for `to`.
pub fn unseal(wrap_key: &[u8; 16], from: &str, to: &str, sealed: &str) -> Result<MediaKey, KeyError> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| KeyError::Malformed)?;
    if bytes.len() != SEALED_LEN {
        return Err(KeyError::Malformed);
    }
    let (iv, ciphertext) = bytes.split_at(12);
    let cipher = Aes128Gcm::new(wrap_key.into());
    let aad = seal_aad(from, to);
    let plaintext = cipher
        .decrypt(Nonce::from_slice(iv), Payload { msg: ciphertext, aad: &aad })
        .map_err(|_| KeyError::Unsealed)?;
    // The length was checked above: 23 bytes.
    if plaintext[0] != SEALED_VERSION {
        return Err(KeyError::BadPlaintext);
    }
    let mut kid_bytes = [0u8; 8];
    kid_bytes[2..].copy_from_slice(&plaintext[1..7]);
    let kid = u64::from_be_bytes(kid_bytes);
    let key_id = (kid >> 16) as u32;
    if key_id == 0 {
        return Err(KeyError::BadPlaintext);
    }
    let key = plaintext[7..23].try_into().map_err(|_| KeyError::BadPlaintext)?;
    Ok(MediaKey { key_id, step: kid as u16, key })
}

/// One step held for a key id, with its SFrame key derived once.
struct HeldStep {
    key: MediaKey,
    frame_key: FrameKey,
    /// Sealed to this receiver, rather than derived: kept as long as its key id.
    given: bool,
}

/// What a receiver holds of one sender's media keys: the last [`KEY_IDS_KEPT`] key ids given
/// (sealed) to it, each at the steps given and the last few derived. Later steps it derives
/// itself, at most [`MAX_RATCHET_AHEAD`] ahead of one it holds; earlier ones it cannot.
///
/// The sender ratchets at every join, and a receiver may see none of its frames for a long time
/// (it is in none of the receiver's slots): [`KeyRing::advance`] follows the joins, so that a
/// call of more than 64 joins stays within reach.
#[derive(Default)]
pub struct KeyRing {
    /// Key ids in the order they were given, oldest first; per key id, its steps, lowest first.
    key_ids: Vec<(u32, Vec<HeldStep>)>,
}

impl KeyRing {
    /// A key sealed to this receiver.
    pub fn insert(&mut self, key: MediaKey) {
        let idx = match self.key_ids.iter().position(|(key_id, _)| *key_id == key.key_id) {
            Some(idx) => idx,
            None => {
                if self.key_ids.len() == KEY_IDS_KEPT {
                    self.key_ids.remove(0);
                }
                self.key_ids.push((key.key_id, Vec::new()));
                self.key_ids.len() - 1
            }
        };
        Self::hold(&mut self.key_ids[idx].1, key, true);
    }

    /// Holds `key`, then forgets the lowest derived step beyond [`STEPS_KEPT`] (never the one
    /// just held: it is about to be used).
    fn hold(steps: &mut Vec<HeldStep>, key: MediaKey, given: bool) {
        let step = key.step;
        match steps.binary_search_by_key(&step, |held| held.key.step) {
            Ok(at) => steps[at].given |= given,
            Err(at) => steps.insert(at, HeldStep { frame_key: key.frame_key(), key, given }),
        }
        if steps.iter().filter(|held| !held.given).count() > STEPS_KEPT {
            let lowest = steps.iter().position(|held| !held.given && held.key.step != step);
            if let Some(lowest) = lowest {
                steps.remove(lowest);
            }
        }
    }

    /// Whether a key id is held at all.
    pub fn holds(&self, key_id: u32) -> bool {
        self.key_ids.iter().any(|(id, _)| *id == key_id)
    }

    /// Someone joined, so the sender ratcheted: derive the next step of each key id held.
    pub fn advance(&mut self) {
        for (_, steps) in &mut self.key_ids {
            let next = steps.last().and_then(|held| held.key.ratchet());
            if let Some(next) = next {
                Self::hold(steps, next, false);
            }
        }
    }

    /// The SFrame key for `kid`, deriving later steps of a held key when needed.
    pub fn frame_key(&mut self, kid: u64) -> Option<&FrameKey> {
        let (key_id, step) = ((kid >> 16) as u32, kid as u16);
        if kid >> 48 != 0 {
            return None;
        }
        let steps = &mut self.key_ids.iter_mut().find(|(id, _)| *id == key_id)?.1;
        if !steps.iter().any(|held| held.key.step == step) {
            let base = steps.iter().rev().find(|held| held.key.step < step)?;
            if step - base.key.step > MAX_RATCHET_AHEAD {
                return None;
            }
            let mut key = base.key.clone();
            while key.step < step {
                key = key.ratchet()?;
            }
            Self::hold(steps, key, false);
        }
        steps.iter().find(|held| held.key.step == step).map(|held| &held.frame_key)
    }
}

#[cfg(test)]
mod tests;
