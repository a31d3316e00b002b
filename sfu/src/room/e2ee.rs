//! End-to-end encryption, the room's part: relaying sealed media keys (docs/e2ee.md).
//!
//! Each page seals its media key for each other participant with a key only the two pages can
//! derive; the room never reads what it relays. It only decides who may send and who receives,
//! from the membership it owns: a key goes from an admitted participant that joined with a public
//! key to the one participant it names, if that one is admitted to this room's session with a key
//! of its own. Anyone else (a waiting participant, one that left a moment ago, one of another
//! room, a browser that cannot encrypt) is skipped silently: the sender cannot know who left
//! while its keys were on their way.

use std::collections::HashSet;

use crate::error::SfuError;
use crate::proto::{ParticipantEvent, ParticipantId, SealedKey};

use super::{Room, RoomOutput};

impl Room {
    pub(super) fn relay_e2ee_keys(
        &mut self,
        from: &ParticipantId,
        keys: Vec<SealedKey>,
    ) -> Result<(), SfuError> {
        let idx = self.index_of_id(from).ok_or(SfuError::ParticipantNotFound)?;
        let sender = &self.participants[idx];
        if sender.e2ee_public_key.is_none() {
            return Err(SfuError::E2eeKeysRefused("you joined without end-to-end encryption"));
        }
        if !sender.active {
            return Err(SfuError::E2eeKeysRefused("you are not admitted to the session yet"));
        }
        // One walk over the participants per message, not one per key: a leave in a 70-person
        // call brings 69 messages of 69 keys each.
        let recipients: HashSet<&ParticipantId> = self
            .participants
            .iter()
            .filter(|p| p.active && p.e2ee_public_key.is_some() && p.id != *from)
            .map(|p| &p.id)
            .collect();
        for SealedKey { to, sealed } in keys {
            if recipients.contains(&to) {
                let event = ParticipantEvent::E2eeKey { from: from.clone(), sealed };
                self.outputs.push_back(RoomOutput::ToParticipant(to, event));
                self.stats.e2ee_keys_relayed += 1;
            } else {
                self.stats.e2ee_keys_skipped += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
