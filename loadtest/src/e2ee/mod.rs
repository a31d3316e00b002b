//! End-to-end encryption as docs/e2ee.md specifies it, for load participants that pages in the
//! same call decode and that load the server with E2EE's real traffic.
//!
//! - [`sframe`]: RFC 9605 with `AES_128_GCM_SHA256_128`: headers, key and salt derivation, frames
//!   with their clear prefix as metadata.
//! - [`keys`]: identity key pairs (ECDH P-256), wrap keys, sealed media keys, the ratchet, a
//!   receiver's store of each sender's keys.
//! - [`safety`]: the safety code pages show.
//! - [`session`]: one participant's keys and the rules of joins and leaves, sans-IO.
//!
//! `signaling/tests/e2ee-vectors.json` holds vectors that this implementation and the page's
//! check ([`vectors`]).

pub mod keys;
pub mod safety;
pub mod session;
pub mod sframe;
#[cfg(test)]
mod vectors;

pub use session::{E2eeSession, Received};
pub use sframe::FrameKind;
