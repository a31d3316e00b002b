//! Errors of the SFU, each with the stable [`ErrorCode`] the signaling server answers with.

use models::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    #[error("the class's tier has no visio")]
    TierForbidsVisio,
    #[error("the session already has {max_participants} participants")]
    RoomFull { max_participants: u32 },
    #[error("the session is locked")]
    SessionLocked,
    #[error("only a teacher or an admin may do this")]
    ForbiddenRole,
    #[error("a moderator muted you: wait until you are asked to unmute")]
    MutedByModerator,
    #[error("a moderator removed you from this session")]
    RemovedFromSession,
    #[error("you are not in the session yet")]
    NotAdmitted,
    #[error("your hand went up and down too often: wait a few seconds")]
    TooManyHandChanges,
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("invalid track declaration: {0}")]
    InvalidTrack(String),
    /// Sealed keys (`Command::E2eeKeys`) from a participant that may not send them: why.
    #[error("end-to-end encryption keys refused: {0}")]
    E2eeKeysRefused(&'static str),
    #[error("no such room")]
    RoomNotFound,
    #[error("no such participant")]
    ParticipantNotFound,
    #[error("the room is closed")]
    RoomClosed,
    #[error("the SFU is shutting down")]
    Shutdown,
    /// Its call events wait for the database: no join until they are recorded (an SFU node's
    /// admission, as `signaling::limits` does for one process).
    #[error("the server is busy; try again in a few seconds")]
    Busy,
    #[error("io: {0}")]
    Io(String),
}

impl SfuError {
    /// The stable code a client switches on.
    pub fn code(&self) -> ErrorCode {
        match self {
            SfuError::TierForbidsVisio => ErrorCode::TierForbidsVisio,
            SfuError::RoomFull { .. } => ErrorCode::RoomFull,
            SfuError::SessionLocked => ErrorCode::SessionLocked,
            SfuError::MutedByModerator => ErrorCode::MutedByModerator,
            SfuError::RemovedFromSession => ErrorCode::RemovedFromSession,
            SfuError::ForbiddenRole => ErrorCode::ForbiddenRole,
            SfuError::TooManyHandChanges => ErrorCode::RateLimited,
            SfuError::NotAdmitted
            | SfuError::InvalidSdp(_)
            | SfuError::InvalidTrack(_)
            | SfuError::E2eeKeysRefused(_) => ErrorCode::InvalidRequest,
            SfuError::RoomNotFound | SfuError::ParticipantNotFound | SfuError::RoomClosed => {
                ErrorCode::NotFound
            }
            SfuError::Shutdown => ErrorCode::Unavailable,
            SfuError::Busy => ErrorCode::ServerBusy,
            SfuError::Io(_) => ErrorCode::Internal,
        }
    }
}

impl From<std::io::Error> for SfuError {
    fn from(err: std::io::Error) -> Self {
        SfuError::Io(err.to_string())
    }
}
