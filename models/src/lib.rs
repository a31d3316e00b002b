//! Plain data shared by every service of the class visio and media server.
//!
//! # Layout
//! - [`ids`]: typed identifiers (`ClassId`, `UserId`, ...). No bare `String` ids elsewhere.
//! - [`names`]: the rules of the API's free text (class and display names), also as JSON Schema.
//! - [`tier`]: the offers as data: [`Tier`], [`TierPolicy`] and [`TierTable`], with the defaults of the
//!   product's offers and partial overrides from configuration.
//! - [`class`]: roles, class options and what a role may do ([`Role`], [`ClassOptions`]).
//! - [`visio`]: the WebSocket protocol of class calls (browser <-> signaling).
//! - [`error`]: [`ErrorCode`], the stable machine-readable codes every service answers with.
//! - [`api`]: request and response bodies of the HTTP API; [`media`]: those of posts and uploads.
//! - [`http_range`]: the `Content-Range` of upload chunks and the `Range` of downloads, parsed.
//!
//! # Design
//! This crate depends on nothing of ours and does no I/O: no clock, no sockets, no database. Anything
//! that needs the current time takes it as an argument.
//!
//! There is deliberately no email address or phone number anywhere in these types: members are known
//! by an opaque user id and a display name only.

pub mod api;
pub mod class;
pub mod error;
pub mod http_range;
pub mod ids;
pub mod media;
pub mod names;
pub mod tier;
pub mod visio;

pub use class::{ClassOptions, Role};
pub use error::{ApiError, ErrorCode};
pub use ids::{ClassId, IdError, MediaId, ParticipantId, PostId, RoomId, SessionId, TrackId, UserId};
pub use tier::{Tier, TierPolicy, TierPolicyOverride, TierTable, VisioPolicy};
