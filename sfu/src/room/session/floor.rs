//! Raised hands and the floor: the session's rules over the queue of `room::hands`. Anyone
//! admitted raises and lowers their own hand; only teachers and admins lower another's hand or
//! give the floor, which lowers that hand and lifts the moderator's hold on that participant's
//! microphone (for the user's next connections too), as a request to unmute does.

use std::time::Instant;

use models::Role;

use super::{Session, SessionEvent};
use crate::error::SfuError;
use crate::proto::{Command, ParticipantId};

impl Session {
    /// `RaiseHand`, `LowerHand` and `GiveFloor` from `from`, whose role and admission the caller
    /// looked up; a moderator-only command has already been refused to others by then.
    pub(super) fn floor_command(
        &mut self,
        now: Instant,
        from: &ParticipantId,
        issuer_role: Role,
        issuer_active: bool,
        command: Command,
    ) -> Result<(), SfuError> {
        match command {
            Command::RaiseHand => {
                if !issuer_active {
                    return Err(SfuError::NotAdmitted);
                }
                if self.hands.raise(from, now)? {
                    self.hands_changed();
                }
            }
            Command::LowerHand { participant } => {
                let target = participant.unwrap_or_else(|| from.clone());
                let changed = if &target == from {
                    self.hands.lower(from)
                } else if issuer_role.administers() {
                    self.require_member(&target)?;
                    self.hands.lower(&target)
                } else {
                    return Err(SfuError::ForbiddenRole);
                };
                if changed {
                    self.hands_changed();
                }
            }
            Command::GiveFloor { participant } => {
                let member = self.member_mut(&participant)?;
                // As a request to unmute: the moderator's hold goes, for this connection and
                // the user's next ones; the microphone itself is the participant's to turn on.
                member.audio.held_by_moderator = false;
                let user_id = member.user_id.clone();
                if let Some(holds) = self.holds.get_mut(&user_id) {
                    holds.audio = false;
                }
                if self.hands.lower(&participant) {
                    self.hands_changed();
                }
                self.outputs.push_back(SessionEvent::FloorGiven { participant_id: participant });
            }
            // The session's other commands have nothing to do with hands.
            _ => {}
        }
        Ok(())
    }

    pub(super) fn hands_changed(&mut self) {
        self.outputs.push_back(SessionEvent::HandsChanged { raised: self.hands.raised().to_vec() });
    }

    pub(super) fn forget_hand(&mut self, participant_id: &ParticipantId) {
        if self.hands.forget(participant_id) {
            self.hands_changed();
        }
    }
}

#[cfg(test)]
mod tests;
