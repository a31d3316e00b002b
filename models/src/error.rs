//! Stable, machine-readable error codes shared by every service.
//!
//! A code never changes meaning once shipped: clients (the web page, the class backend, phones) switch
//! on it. The HTTP status belongs to the code so that every service answers the same way.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No credentials, or credentials that are malformed, forged or expired.
    Unauthorized,
    /// The user is not an approved member of the class, or the class does not exist: the same answer
    /// either way, so that nobody learns anything about other classes.
    NotAMember,
    /// The member's role does not allow this action.
    ForbiddenRole,
    /// The class's tier has no visio.
    TierForbidsVisio,
    /// The class already has the tier's number of approved members.
    MemberLimitReached,
    /// The class already has the tier's number of teachers and admins.
    AdminLimitReached,
    /// The session already has the tier's number of participants.
    RoomFull,
    /// A moderator locked the session: nobody new may join.
    SessionLocked,
    /// A `resume` whose session is gone: its grace period passed, or the token is not this
    /// user's. Join again.
    ResumeFailed,
    /// The class's calls are end-to-end encrypted and this browser cannot encrypt (no WebRTC
    /// encoded transforms); a teacher may allow such browsers in the class options.
    E2eeRequired,
    /// A moderator muted this participant, who may unmute only once asked to.
    MutedByModerator,
    /// A moderator removed this user from the session: they cannot join it again, whatever
    /// connection or tab they come back from.
    RemovedFromSession,
    /// The post already has the tier's number of photos.
    TooManyPhotos,
    /// The post already has the tier's number of videos.
    TooManyVideos,
    /// The upload would take the class over its tier's storage quota.
    StorageQuotaExceeded,
    /// A video is longer than the tier allows (10 minutes).
    VideoTooLong,
    /// The file is not a photo or video we can process, or not of the declared kind.
    UnsupportedMedia,
    /// The file is damaged or truncated.
    CorruptMedia,
    /// The photo or video is larger (bytes or pixels) than we accept.
    MediaTooLarge,
    /// A chunk does not start where the upload stands; the message and `Upload-Offset` tell where.
    UploadOffsetMismatch,
    /// The upload is complete or failed and takes no more bytes.
    UploadClosed,
    /// The photo or video is still uploading or being processed (or failed): it cannot be
    /// published, viewed or processed again yet.
    MediaNotReady,
    /// Processing failed on our side after every retry (not the file's fault).
    ProcessingFailed,
    /// The request body is not JSON, or not sent as JSON.
    MalformedRequest,
    /// The request is well-formed JSON but a field or a parameter is invalid (unknown tier, bad id).
    InvalidRequest,
    /// A well-formed request names something that does not exist (outside class membership checks).
    NotFound,
    /// The endpoint exists but not with this method; the `Allow` header lists those it has.
    MethodNotAllowed,
    /// The request is larger than the server accepts.
    PayloadTooLarge,
    /// Too many requests from this user or address: wait the `Retry-After` seconds.
    RateLimited,
    /// The user already has the most call connections open at once (other tabs or devices).
    TooManyConnections,
    /// The class already has the most uploads in progress at once; finish or wait for one.
    TooManyUploads,
    /// This server is admitting no more calls for now (a surge): try again after `Retry-After`.
    ServerBusy,
    /// A dependency (database, object store) is not reachable.
    Unavailable,
    /// A bug or an unexpected failure on our side. The message never says more.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::ForbiddenRole => "forbidden_role",
            ErrorCode::TierForbidsVisio => "tier_forbids_visio",
            ErrorCode::MemberLimitReached => "member_limit_reached",
            ErrorCode::AdminLimitReached => "admin_limit_reached",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::SessionLocked => "session_locked",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::E2eeRequired => "e2ee_required",
            ErrorCode::MutedByModerator => "muted_by_moderator",
            ErrorCode::RemovedFromSession => "removed_from_session",
            ErrorCode::TooManyPhotos => "too_many_photos",
            ErrorCode::TooManyVideos => "too_many_videos",
            ErrorCode::StorageQuotaExceeded => "storage_quota_exceeded",
            ErrorCode::VideoTooLong => "video_too_long",
            ErrorCode::UnsupportedMedia => "unsupported_media",
            ErrorCode::CorruptMedia => "corrupt_media",
            ErrorCode::MediaTooLarge => "media_too_large",
            ErrorCode::UploadOffsetMismatch => "upload_offset_mismatch",
            ErrorCode::UploadClosed => "upload_closed",
            ErrorCode::MediaNotReady => "media_not_ready",
            ErrorCode::ProcessingFailed => "processing_failed",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::TooManyUploads => "too_many_uploads",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status every service answers this code with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotAMember
            | ErrorCode::ForbiddenRole
            | ErrorCode::TierForbidsVisio
            | ErrorCode::SessionLocked
            | ErrorCode::E2eeRequired
            | ErrorCode::MutedByModerator
            | ErrorCode::RemovedFromSession => 403,
            ErrorCode::MalformedRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::MemberLimitReached
            | ErrorCode::AdminLimitReached
            | ErrorCode::RoomFull
            | ErrorCode::ResumeFailed
            | ErrorCode::TooManyPhotos
            | ErrorCode::TooManyVideos
            | ErrorCode::StorageQuotaExceeded
            | ErrorCode::UploadOffsetMismatch
            | ErrorCode::UploadClosed
            | ErrorCode::MediaNotReady => 409,
            ErrorCode::PayloadTooLarge | ErrorCode::MediaTooLarge => 413,
            ErrorCode::InvalidRequest
            | ErrorCode::VideoTooLong
            | ErrorCode::UnsupportedMedia
            | ErrorCode::CorruptMedia => 422,
            ErrorCode::RateLimited | ErrorCode::TooManyConnections | ErrorCode::TooManyUploads => 429,
            ErrorCode::Unavailable | ErrorCode::ServerBusy => 503,
            ErrorCode::Internal | ErrorCode::ProcessingFailed => 500,
        }
    }
}

/// The body of every error answer: `{ "code": "...", "message": "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_string() {
        for code in [
            ErrorCode::Unauthorized,
            ErrorCode::NotAMember,
            ErrorCode::ForbiddenRole,
            ErrorCode::TierForbidsVisio,
            ErrorCode::MemberLimitReached,
            ErrorCode::AdminLimitReached,
            ErrorCode::RoomFull,
            ErrorCode::SessionLocked,
            ErrorCode::ResumeFailed,
            ErrorCode::MutedByModerator,
            ErrorCode::RemovedFromSession,
            ErrorCode::TooManyPhotos,
            ErrorCode::TooManyVideos,
            ErrorCode::StorageQuotaExceeded,
            ErrorCode::VideoTooLong,
            ErrorCode::UnsupportedMedia,
            ErrorCode::CorruptMedia,
            ErrorCode::MediaTooLarge,
            ErrorCode::UploadOffsetMismatch,
            ErrorCode::UploadClosed,
            ErrorCode::MediaNotReady,
            ErrorCode::ProcessingFailed,
            ErrorCode::MalformedRequest,
            ErrorCode::InvalidRequest,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::TooManyConnections,
            ErrorCode::TooManyUploads,
            ErrorCode::ServerBusy,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{}\"", code.as_str()));
            assert!((400..600).contains(&code.http_status()));
        }
    }
}
