//! End-to-end encryption, the signaling server's part (docs/e2ee.md): the form of what pages send
//! (their public key in `join`, sealed media keys in `e2ee_keys`) and how often they may send
//! sealed keys. The keys stay opaque here: the SFU's room relays each sealed key to the one
//! participant it names, and decides who that may be.

use base64::Engine;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use models::visio::{E2eeHello, SealedKey, MAX_E2EE_FIELD_CHARS, MAX_E2EE_KEYS_PER_MESSAGE};
use models::ParticipantId;

use crate::limits::LimitsConfig;

/// An uncompressed P-256 point: `0x04 || X || Y`.
const PUBLIC_KEY_BYTES: usize = 65;

/// The public key of a `join`, if its form is right: base64url without padding of 65 bytes
/// starting with 0x04. Whether the point is on the curve is the pages' business (WebCrypto
/// refuses to import one that is not).
pub(super) fn public_key(hello: E2eeHello) -> Result<String, String> {
    let raw = hello.public_key;
    let refused = || {
        format!(
            "e2ee.public_key must be the base64url (no padding) of an uncompressed P-256 public key \
             ({PUBLIC_KEY_BYTES} bytes starting with 0x04)"
        )
    };
    if raw.len() > MAX_E2EE_FIELD_CHARS {
        return Err(refused());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&raw).map_err(|_| refused())?;
    if bytes.len() != PUBLIC_KEY_BYTES || bytes[0] != 0x04 {
        return Err(refused());
    }
    Ok(raw)
}

/// The sealed keys of an `e2ee_keys` message from `from`, if all are well-formed: at most
/// [`MAX_E2EE_KEYS_PER_MESSAGE`], each for a participant id other than `from`'s, each recipient
/// once, each `sealed` 1 to [`MAX_E2EE_FIELD_CHARS`] characters of base64url. One bad entry
/// refuses the whole message, so that a page's bug shows at once rather than as a silent
/// recipient who cannot decrypt.
pub(super) fn sealed_keys(keys: Vec<SealedKey>, from: &ParticipantId) -> Result<Vec<sfu::SealedKey>, String> {
    if keys.len() > MAX_E2EE_KEYS_PER_MESSAGE {
        return Err(format!("e2ee_keys: at most {MAX_E2EE_KEYS_PER_MESSAGE} keys in one message"));
    }
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.into_iter()
        .map(|SealedKey { to, sealed }| {
            let to = ParticipantId::new(to).map_err(|err| format!("e2ee_keys: `to` is not a participant id: {err}"))?;
            if to == *from {
                return Err("e2ee_keys: a key is never sealed for oneself".to_owned());
            }
            if !seen.insert(to.clone()) {
                return Err(format!("e2ee_keys: {to} is named twice in one message"));
            }
            if sealed.is_empty()
                || sealed.len() > MAX_E2EE_FIELD_CHARS
                || !sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "e2ee_keys: `sealed` must be 1 to {MAX_E2EE_FIELD_CHARS} characters of base64url without padding"
                ));
            }
            Ok(sfu::SealedKey { to, sealed })
        })
        .collect()
}

/// How often one participant may send `e2ee_keys`; `None` when rate limits are off (benchmarks).
pub(super) fn rate_limiter(limits: &LimitsConfig) -> Option<DefaultDirectRateLimiter> {
    limits.rate_limits.then(|| RateLimiter::direct(limits.e2ee_keys_per_participant.quota()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn check_public_key(raw: &str, accepted: bool) {
        let result = public_key(E2eeHello { public_key: raw.to_owned() });
        assert_eq!(result.is_ok(), accepted, "{raw:?}: {result:?}");
    }

    #[test]
    fn public_keys_are_65_bytes_of_base64url_starting_with_4() {
        let mut point = [7u8; 65];
        point[0] = 0x04;
        check_public_key(&key(&point), true);
        check_public_key(&format!("{}=", key(&point)), false);
        let mut high = [0xfbu8; 65];
        high[0] = 0x04;
        // The standard alphabet's `+` and `/` are not base64url.
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(high);
        assert!(standard.contains(['+', '/']));
        check_public_key(&standard, false);
        check_public_key(&key(&high), true);
        check_public_key(&key(&point[..64]), false);
        check_public_key(&key(&[0x04; 66]), false);
        check_public_key(&key(&[0x02; 65]), false);
        check_public_key("", false);
        check_public_key(&"A".repeat(MAX_E2EE_FIELD_CHARS + 4), false);
        check_public_key("not base64!", false);
        // A compressed point (33 bytes, 0x02 or 0x03) is not what pages export.
        check_public_key(&key(&[0x03; 33]), false);
    }

    fn sealed(to: &str, sealed: &str) -> SealedKey {
        SealedKey { to: to.to_owned(), sealed: sealed.to_owned() }
    }

    fn check_keys(keys: Vec<SealedKey>, accepted: bool) {
        let from = ParticipantId::new("p1").unwrap();
        let result = sealed_keys(keys.clone(), &from);
        assert_eq!(result.is_ok(), accepted, "{keys:?}: {result:?}");
    }

    #[test]
    fn sealed_keys_name_others_once_in_base64url() {
        let good = "a".repeat(68);
        check_keys(vec![], true);
        check_keys(vec![sealed("p2", &good), sealed("p3", "AZaz09-_")], true);
        check_keys(vec![sealed("p1", &good)], false);
        check_keys(vec![sealed("p2", &good), sealed("p2", &good)], false);
        check_keys(vec![sealed("../p2", &good)], false);
        check_keys(vec![sealed("", &good)], false);
        check_keys(vec![sealed("p2", "")], false);
        check_keys(vec![sealed("p2", "abc=")], false);
        check_keys(vec![sealed("p2", "ab+/")], false);
        check_keys(vec![sealed("p2", &"a".repeat(MAX_E2EE_FIELD_CHARS))], true);
        check_keys(vec![sealed("p2", &"a".repeat(MAX_E2EE_FIELD_CHARS + 1))], false);
        let many: Vec<SealedKey> =
            (0..=MAX_E2EE_KEYS_PER_MESSAGE).map(|idx| sealed(&format!("q{idx}"), &good)).collect();
        check_keys(many[..MAX_E2EE_KEYS_PER_MESSAGE].to_vec(), true);
        check_keys(many, false);
    }

    #[test]
    fn the_rate_allows_a_burst_of_100_then_about_20_a_second() {
        let limiter = rate_limiter(&LimitsConfig::default()).unwrap();
        assert!((0..100).all(|_| limiter.check().is_ok()));
        assert!(limiter.check().is_err());
        let off = LimitsConfig { rate_limits: false, ..LimitsConfig::default() };
        assert!(rate_limiter(&off).is_none());
    }
}
