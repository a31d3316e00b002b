//! One participant's end-to-end encryption, as a page does it (docs/e2ee.md): its identity key,
//! its own media key and the rules that ratchet, rotate and seal it, the keys others sealed for
//! it, and the frames it encrypts and decrypts. Sans-IO: time comes in as arguments, and what to
//! send comes out as return values.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use models::visio::{ClientMessage, E2eeHello, Participant, SealedKey, MAX_E2EE_KEYS_PER_MESSAGE};

use super::keys::{self, Identity, KeyRing, MediaKey};
use super::sframe::{self, FrameError, FrameKey, FrameKind};
use crate::timeline::{ms_since, E2eeLog, RosterChange};

/// After a leave, how long a sender waits before it encrypts with its fresh key: the time for
/// the sealed keys to arrive.
pub const ROTATION_DELAY: Duration = Duration::from_secs(1);
/// `e2ee_key` messages kept while their sender is not known yet (its `participant_joined` may
/// come after them).
const STASH_LEN: usize = 64;

/// A media key this participant encrypts with, and the next counter of its KID.
struct OwnKey {
    key: MediaKey,
    frame_key: FrameKey,
    next_ctr: u64,
}

impl OwnKey {
    fn new(key: MediaKey) -> OwnKey {
        OwnKey { frame_key: key.frame_key(), key, next_ctr: 0 }
    }
}

/// What this participant knows of another.
struct Other {
    /// `None`: a browser that cannot encrypt (or a key that is not a P-256 point).
    public_key: Option<String>,
    /// Wrap keys this participant → the other (to seal), and the other → this one (to open).
    wrap_to: Option<[u8; 16]>,
    wrap_from: Option<[u8; 16]>,
    ring: KeyRing,
}

/// What became of a received frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Decrypted, or passed through in clear while the call is not end-to-end encrypted.
    Frame(Vec<u8>),
    /// Dropped, as a page drops it: it could not be decrypted in an encrypted call.
    Dropped(FrameError),
}

pub struct E2eeSession {
    /// Whether this participant joined with a public key (`--no-e2ee` turns it off).
    enabled: bool,
    identity: Identity,
    own_id: Option<String>,
    others: BTreeMap<String, Other>,
    current: OwnKey,
    /// A fresh key after a leave, sealed already, used from the given time on.
    pending: Option<(Instant, OwnKey)>,
    /// `e2ee_key`s from senders not known yet.
    stash: Vec<(String, String)>,
    epoch: Instant,
    log: E2eeLog,
}

impl E2eeSession {
    pub fn new(enabled: bool, epoch: Instant) -> E2eeSession {
        E2eeSession {
            enabled,
            identity: Identity::generate(),
            own_id: None,
            others: BTreeMap::new(),
            current: OwnKey::new(MediaKey::generate()),
            pending: None,
            stash: Vec::new(),
            epoch,
            log: E2eeLog { enabled, ..E2eeLog::default() },
        }
    }

    /// What this participant recorded.
    pub fn into_log(self) -> E2eeLog {
        self.log
    }

    /// `join.e2ee`.
    pub fn hello(&self) -> Option<E2eeHello> {
        self.enabled.then(|| E2eeHello { public_key: self.identity.public_key().to_owned() })
    }

    /// `joined`: this participant's id, which names it in wrap keys and sealed keys.
    pub fn joined(&mut self, participant_id: &str, now: Instant) {
        self.own_id = Some(participant_id.to_owned());
        if self.enabled {
            let public_key = Some(self.identity.public_key().to_owned());
            self.log_roster(now, participant_id, public_key);
        }
    }

    /// Whether frames go out encrypted: this participant and everyone else in the call have a
    /// public key.
    pub fn encrypting(&self) -> bool {
        self.enabled && self.others.values().all(|other| other.public_key.is_some())
    }

    /// `admitted`: the others in the session. This participant seals its key for each of them
    /// that has a public key.
    pub fn admitted(&mut self, participants: &[Participant], now: Instant) -> Vec<SealedKey> {
        let mut sealed = Vec::new();
        for participant in participants {
            if self.add(participant, now) {
                sealed.extend(self.seal_for(&participant.participant_id, &[&self.current.key]));
            }
        }
        self.count_sealed(&sealed);
        sealed
    }

    /// `participant_joined`: ratchet this participant's key and seal the new step for the
    /// newcomer only (and the key waiting to be used after a leave, which it does not have), if
    /// the newcomer has a public key. Every join ratchets, with a public key or without.
    pub fn participant_joined(&mut self, participant: &Participant, now: Instant) -> Vec<SealedKey> {
        // Every sender already here ratchets: follow them, newcomer excluded.
        for other in self.others.values_mut() {
            other.ring.advance();
        }
        let seals = self.add(participant, now);
        if !self.enabled {
            return Vec::new();
        }
        let newcomer = participant.participant_id.as_str();
        let mut sealed = Vec::new();
        let mut keys_for_newcomer = vec![];
        match self.current.key.ratchet() {
            Some(next) => {
                self.current = OwnKey::new(next);
                keys_for_newcomer.extend(self.pending.as_ref().map(|(_, pending)| &pending.key));
            }
            // The last step of this key id: a fresh key for everyone (the newcomer included), as
            // after a leave; the newcomer gets the current key meanwhile.
            None => sealed.extend(self.rotate(now)),
        }
        if seals {
            keys_for_newcomer.insert(0, &self.current.key);
            sealed.extend(self.seal_for(newcomer, &keys_for_newcomer));
        }
        self.count_sealed(&sealed);
        sealed
    }

    /// `participant_left`: a fresh key, sealed for every remaining participant, used
    /// [`ROTATION_DELAY`] later. Every leave makes one, also while another waits.
    pub fn participant_left(&mut self, participant_id: &str, now: Instant) -> Vec<SealedKey> {
        let Some(other) = self.others.remove(participant_id) else { return Vec::new() };
        if other.public_key.is_some() {
            self.log_roster(now, participant_id, None);
        }
        if !self.enabled {
            return Vec::new();
        }
        let sealed = self.rotate(now);
        self.count_sealed(&sealed);
        sealed
    }

    /// `e2ee_key`: a key `from` sealed for this participant. One that does not open is ignored.
    pub fn e2ee_key(&mut self, from: &str, sealed: &str) {
        let Some(other) = self.others.get_mut(from) else {
            if self.stash.len() < STASH_LEN {
                self.stash.push((from.to_owned(), sealed.to_owned()));
            }
            return;
        };
        let (Some(own_id), Some(wrap_from)) = (self.own_id.as_deref(), other.wrap_from) else {
            self.log.keys_rejected += 1;
            return;
        };
        match keys::unseal(&wrap_from, from, own_id, sealed) {
            Ok(key) => {
                other.ring.insert(key);
                self.log.keys_received += 1;
            }
            Err(_) => self.log.keys_rejected += 1,
        }
    }

    /// The `e2ee_keys` messages that carry `sealed`, in order: at most
    /// [`MAX_E2EE_KEYS_PER_MESSAGE`] keys each, and each recipient named once in a message (the
    /// server refuses a message that names one twice).
    pub fn key_messages(&mut self, sealed: Vec<SealedKey>) -> Vec<ClientMessage> {
        let mut batches: Vec<Vec<SealedKey>> = Vec::new();
        for key in sealed {
            let fits = batches.last().is_some_and(|batch| {
                batch.len() < MAX_E2EE_KEYS_PER_MESSAGE && batch.iter().all(|other| other.to != key.to)
            });
            match batches.last_mut() {
                Some(batch) if fits => batch.push(key),
                _ => batches.push(vec![key]),
            }
        }
        self.log.key_messages_sent += batches.len() as u64;
        batches.into_iter().map(|keys| ClientMessage::E2eeKeys { keys }).collect()
    }

    /// Video frames given up before they could be decrypted, for want of some of their packets.
    pub fn record_incomplete(&mut self, n_frames: u64) {
        self.log.incomplete_frames += n_frames;
    }

    /// When the key waiting after a leave is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(at, _)| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pending.as_ref().is_some_and(|(at, _)| *at <= now) {
            // Checked just above.
            let (_, pending) = self.pending.take().expect("a pending key");
            self.current = pending;
        }
    }

    /// An encoded frame about to be packetised: encrypted with the current key and the next
    /// counter of its KID while the call is end-to-end encrypted, as it is otherwise. `None`: a
    /// video frame too short for its clear prefix, dropped.
    pub fn protect(&mut self, kind: FrameKind, frame: Vec<u8>) -> Option<Vec<u8>> {
        if !self.encrypting() {
            self.log.frames_sent_clear += 1;
            return Some(frame);
        }
        let current = &mut self.current;
        let wire = sframe::protect(&current.frame_key, current.key.kid(), current.next_ctr, kind, &frame)?;
        current.next_ctr += 1;
        self.log.frames_encrypted += 1;
        Some(wire)
    }

    /// A frame as it came off the wire from `sender` (the publisher the `slots` messages named
    /// for its CSRC; `None` when not known yet: the key is then looked for by KID among
    /// everyone's).
    pub fn unprotect(
        &mut self,
        sender: Option<&str>,
        kind: FrameKind,
        wire: &[u8],
        now: Instant,
    ) -> Received {
        let encrypting = self.encrypting();
        let sender = sender.and_then(|id| self.others.get_mut(id));
        if sender.as_ref().is_some_and(|other| other.public_key.is_none()) {
            // A browser that cannot encrypt always sends in clear.
            self.log.frames_received_clear += 1;
            return Received::Frame(wire.to_vec());
        }
        let result = match sender {
            Some(other) => sframe::unprotect(kind, wire, |kid| other.ring.frame_key(kid)),
            None => {
                let others = &mut self.others;
                sframe::unprotect(kind, wire, |kid| {
                    let key_id = (kid >> 16) as u32;
                    others.values_mut().find(|other| other.ring.holds(key_id))?.ring.frame_key(kid)
                })
            }
        };
        let at = ms_since(self.epoch, now);
        match result {
            Ok(frame) => {
                self.log.frames_decrypted += 1;
                Received::Frame(frame)
            }
            Err(_) if !encrypting => {
                self.log.frames_received_clear += 1;
                Received::Frame(wire.to_vec())
            }
            Err(err @ FrameError::NoKey(_)) => {
                self.log.no_key.push(at);
                Received::Dropped(err)
            }
            Err(err) => {
                self.log.failed.push(at);
                Received::Dropped(err)
            }
        }
    }

    /// Adds someone in the session; says whether this participant seals keys for them.
    fn add(&mut self, participant: &Participant, now: Instant) -> bool {
        let participant_id = participant.participant_id.clone();
        let public_key = participant.e2ee_public_key.as_deref();
        let point = public_key.and_then(|text| keys::parse_public_key(text).ok());
        let wraps = match (&point, &self.own_id) {
            (Some(point), Some(own_id)) if self.enabled => {
                let shared = self.identity.shared_secret(point);
                Some((
                    keys::wrap_key(&shared, own_id, &participant_id),
                    keys::wrap_key(&shared, &participant_id, own_id),
                ))
            }
            _ => None,
        };
        let public_key = point.is_some().then(|| public_key.unwrap_or_default().to_owned());
        if let Some(public_key) = &public_key {
            self.log_roster(now, &participant_id, Some(public_key.clone()));
        }
        let other = Other {
            public_key,
            wrap_to: wraps.map(|w| w.0),
            wrap_from: wraps.map(|w| w.1),
            ring: KeyRing::default(),
        };
        self.others.insert(participant_id.clone(), other);
        let stashed: Vec<(String, String)> = std::mem::take(&mut self.stash);
        for (from, sealed) in stashed {
            if from == participant_id {
                self.e2ee_key(&from, &sealed);
            } else {
                self.stash.push((from, sealed));
            }
        }
        wraps.is_some()
    }

    /// A fresh key waiting [`ROTATION_DELAY`], sealed for everyone with a public key.
    fn rotate(&mut self, now: Instant) -> Vec<SealedKey> {
        let fresh = OwnKey::new(MediaKey::generate());
        let recipients: Vec<String> = self
            .others
            .iter()
            .filter(|(_, other)| other.wrap_to.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let sealed = recipients.iter().flat_map(|to| self.seal_for(to, &[&fresh.key])).collect();
        self.pending = Some((now + ROTATION_DELAY, fresh));
        self.log.rotations += 1;
        sealed
    }

    fn seal_for(&self, to: &str, keys: &[&MediaKey]) -> Vec<SealedKey> {
        let (Some(own_id), Some(wrap_to)) = (&self.own_id, self.others.get(to).and_then(|o| o.wrap_to))
        else {
            return Vec::new();
        };
        keys.iter()
            .map(|key| SealedKey { to: to.to_owned(), sealed: keys::seal(&wrap_to, own_id, to, key) })
            .collect()
    }

    fn count_sealed(&mut self, sealed: &[SealedKey]) {
        self.log.keys_sealed += sealed.len() as u64;
    }

    fn log_roster(&mut self, now: Instant, participant_id: &str, public_key: Option<String>) {
        let at = ms_since(self.epoch, now);
        self.log.roster.push(RosterChange { at, participant_id: participant_id.to_owned(), public_key });
    }
}

#[cfg(test)]
mod tests;
