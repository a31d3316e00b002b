//! Typed identifiers.
//!
//! Ids come from the class backend, so we accept its opaque strings but keep them to a safe alphabet:
//! they end up in URLs, object-store keys and log fields, and a restricted alphabet makes every one of
//! those uses trivially safe.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id we accept. UUIDs (36) and ULIDs (26) fit with room to spare.
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    #[error("id may only contain ASCII letters, digits, '-' and '_'")]
    BadCharacter,
}

fn validate_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, example = "c-42")]
        pub struct $name(String);

        impl $name {
            pub fn new(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                validate_id(&raw)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::new(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(raw: &str) -> Result<Self, IdError> {
                Self::new(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A class, as known by the class backend.
    ClassId
);
id_type!(
    /// A user (teacher, admin or parent), as known by the class backend. It is the JWT's `sub`.
    UserId
);
id_type!(
    /// One call room. A class has one room; its id is the class id.
    RoomId
);
id_type!(
    /// One participant in one room: one browser tab, one connection. A user who joins twice gets
    /// two ids (and the second join replaces the first).
    ParticipantId
);
id_type!(
    /// One published track: `<participant>-<mid>`. It is the `msid` track id subscribers see.
    TrackId
);
id_type!(
    /// A post of a class: photos and videos published together. Chosen by the server.
    PostId
);
id_type!(
    /// One uploaded photo or video. Chosen by the server.
    MediaId
);

impl From<&ClassId> for RoomId {
    fn from(class_id: &ClassId) -> Self {
        // A ClassId is validated with the same alphabet and length.
        RoomId(class_id.as_str().to_owned())
    }
}

impl TrackId {
    /// The id of the track a participant publishes on m-line `mid`. Mids are short tokens chosen
    /// by the client; only their first 16 alphanumeric characters are kept, so that the id stays
    /// inside our alphabet whatever they contain (it ends up in logs and in the SDP msid).
    pub fn for_track(participant_id: &ParticipantId, mid: &str) -> TrackId {
        let mid: String = mid.chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect();
        TrackId(format!("{participant_id}-{mid}"))
    }
}

#[cfg(test)]
mod tests;
