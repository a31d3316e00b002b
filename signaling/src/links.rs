//! Signed, expiring links to published files: what a member's browser fetches in `<img>` and
//! `<video>`, where no `Authorization` header can be sent.
//!
//! A link names one file of one version of one medium, its expiry and whether it downloads, and
//! carries an HMAC-SHA256 of all of that. The server checks the signature and the expiry, nothing
//! else: whoever was allowed to see the file when the link was made may use it until it expires
//! (10 minutes by default), so links are short-lived and made fresh with each answer.

use hmac::{Hmac, Mac};
use models::{ClassId, MediaId};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Files a link may name: the outputs members see. `faces.json` is for teachers, through the API.
pub const LINKABLE_FILES: [&str; 4] = ["media.mp4", "photo.jpg", "poster.jpg", "thumb.jpg"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link has expired; reload the page for a fresh one")]
    Expired,
    #[error("this link is not valid")]
    BadSignature,
}

#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
    ttl_secs: i64,
}

/// One file of one version of one medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTarget {
    pub class_id: ClassId,
    pub media_id: MediaId,
    pub version: u32,
    pub file: String,
}

impl LinkTarget {
    pub fn path(&self) -> String {
        format!("/media-files/{}/{}/v{}/{}", self.class_id, self.media_id, self.version, self.file)
    }

    pub fn object_key(&self) -> String {
        media_worker::queue::output_key(&self.class_id, &self.media_id, self.version, &self.file)
    }
}

impl LinkSigner {
    /// `key`: the configured link key, else one derived from the API key (so that every replica
    /// agrees without another secret to deploy).
    pub fn new(link_key: Option<&str>, api_key: &str, ttl_secs: u64) -> LinkSigner {
        let key = match link_key {
            Some(key) => key.as_bytes().to_vec(),
            None => {
                let mut mac =
                    HmacSha256::new_from_slice(api_key.as_bytes()).expect("HMAC takes any key length");
                mac.update(b"klass media links v1");
                mac.finalize().into_bytes().to_vec()
            }
        };
        LinkSigner { key, ttl_secs: ttl_secs as i64 }
    }

    fn signature(&self, target: &LinkTarget, expires_at: i64, download: bool) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{}\n{expires_at}\n{}", target.path(), u8::from(download)).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A link valid until `now + ttl`; returns it with its expiry.
    pub fn sign(&self, target: &LinkTarget, download: bool, now: i64) -> (String, i64) {
        let expires_at = now + self.ttl_secs;
        let signature = self.signature(target, expires_at, download);
        let link = format!("{}?exp={expires_at}&dl={}&sig={signature}", target.path(), u8::from(download));
        (link, expires_at)
    }

    pub fn verify(
        &self,
        target: &LinkTarget,
        expires_at: i64,
        download: bool,
        signature: &str,
        now: i64,
    ) -> Result<(), LinkError> {
        let expected = self.signature(target, expires_at, download);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return Err(LinkError::BadSignature);
        }
        if now > expires_at {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> LinkTarget {
        LinkTarget {
            class_id: ClassId::new("c").unwrap(),
            media_id: MediaId::new("m").unwrap(),
            version: 2,
            file: "media.mp4".into(),
        }
    }

    fn query(link: &str, name: &str) -> String {
        let query = link.split_once('?').unwrap().1;
        query.split('&').find_map(|pair| pair.strip_prefix(&format!("{name}="))).unwrap().to_owned()
    }

    #[test]
    fn a_link_works_until_it_expires_and_only_as_signed() {
        let signer = LinkSigner::new(None, "api-key-0123456789", 600);
        let (link, expires_at) = signer.sign(&target(), false, 1_000);
        assert_eq!(expires_at, 1_600);
        assert!(link.starts_with("/media-files/c/m/v2/media.mp4?"));
        let signature = query(&link, "sig");
        assert_eq!(signer.verify(&target(), expires_at, false, &signature, 1_600), Ok(()));
        assert_eq!(signer.verify(&target(), expires_at, false, &signature, 1_601), Err(LinkError::Expired));
        // A view link does not download, a later expiry is not ours, nor is another file or version.
        assert_eq!(
            signer.verify(&target(), expires_at, true, &signature, 1_000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify(&target(), expires_at + 60, false, &signature, 1_000),
            Err(LinkError::BadSignature)
        );
        let other = LinkTarget { version: 1, ..target() };
        assert_eq!(signer.verify(&other, expires_at, false, &signature, 1_000), Err(LinkError::BadSignature));
        // Another server's key does not verify.
        let stranger = LinkSigner::new(None, "another-api-key-xyz", 600);
        assert_eq!(
            stranger.verify(&target(), expires_at, false, &signature, 1_000),
            Err(LinkError::BadSignature)
        );
    }
}
