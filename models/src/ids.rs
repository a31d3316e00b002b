//! Typed identifiers.
//!
//! Ids come from the class backend, so we accept its opaque strings but keep them to a safe alphabet:
//! they end up in URLs, object-store keys and log fields, and a restricted alphabet makes every one of
//! those uses trivially safe.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id we accept. UUIDs (36) and ULIDs (26) fit with room to spare.
pub const MAX_ID_LEN: usize = 64;

/// [`validate_id`]'s rule as a regular expression, for the OpenAPI document: every id's schema (path
/// parameters and body fields alike) carries it, with `maxLength` [`MAX_ID_LEN`], so that a request
/// valid for the document is never refused for its ids. Tests check that it matches the code.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]+$";

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

/// The schema of an id type: a string under [`ID_PATTERN`] and [`MAX_ID_LEN`].
fn id_schema(description: &str, example: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some(ID_PATTERN))
        .examples([example])
        .into()
}

macro_rules! id_type {
    ($(#[doc = $doc:literal])* $name:ident, example = $example:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema(concat!($($doc),*).trim(), $example)
            }
        }

        impl utoipa::ToSchema for $name {}

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
    ClassId,
    example = "c-42"
);
id_type!(
    /// A user (teacher, admin or parent), as known by the class backend. It is the JWT's `sub`.
    UserId,
    example = "u-7"
);
id_type!(
    /// One call room. A class has one room; its id is the class id.
    RoomId,
    example = "c-42"
);
id_type!(
    /// One participant in one room: one browser tab, one connection. A user who joins twice gets
    /// two ids (and the second join replaces the first).
    ParticipantId,
    example = "p-3f9a"
);
id_type!(
    /// One published track: `<participant>-<mid>`. It is the `msid` track id subscribers see.
    TrackId,
    example = "p-3f9a-0"
);
id_type!(
    /// A post of a class: photos and videos published together. Chosen by the server.
    PostId,
    example = "9b2c4e0f1a7d4c3e8f6a5b4c3d2e1f00"
);
id_type!(
    /// One uploaded photo or video. Chosen by the server.
    MediaId,
    example = "4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c"
);
id_type!(
    /// One call session of a class, from its start by a teacher or admin to its end. Chosen by the
    /// server.
    SessionId,
    example = "0d9c4f3e2d1c0b9a8f7e6d5c4b3a2f1e"
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
