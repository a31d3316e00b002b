//! Posts, photos and videos: the bodies of the upload API.

use serde::{Deserialize, Serialize};

use crate::{ClassId, MediaId, PostId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Photo,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
        }
    }
}

impl std::str::FromStr for MediaKind {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "photo" => Ok(MediaKind::Photo),
            "video" => Ok(MediaKind::Video),
            other => Err(format!("unknown media kind {other:?}")),
        }
    }
}

/// Where an uploaded file stands. Transitions only move forward, except `Failed`, which ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// Bytes are arriving in chunks.
    Uploading,
    /// All bytes are stored; the file waits for processing.
    Uploaded,
    /// A worker is transcoding it or blurring faces.
    Processing,
    /// The web versions exist; members may view it.
    Ready,
    /// Refused or failed; `error` says why. Its bytes no longer count against the quota.
    Failed,
}

impl MediaState {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaState::Uploading => "uploading",
            MediaState::Uploaded => "uploaded",
            MediaState::Processing => "processing",
            MediaState::Ready => "ready",
            MediaState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for MediaState {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        [
            MediaState::Uploading,
            MediaState::Uploaded,
            MediaState::Processing,
            MediaState::Ready,
            MediaState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == raw)
        .ok_or_else(|| format!("unknown media state {raw:?}"))
    }
}

/// `POST /v1/classes/{class_id}/posts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostView {
    pub post_id: PostId,
    pub class_id: ClassId,
    pub n_photos: u32,
    pub n_videos: u32,
}

/// `POST /v1/classes/{class_id}/posts/{post_id}/media`: announce a file before sending its bytes,
/// so that tier limits are checked before anything is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaUpload {
    pub kind: MediaKind,
    /// Exact size of the file in bytes.
    pub size_bytes: u64,
    /// Duration as the client knows it (videos); checked again after probing the file.
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    /// Blur faces before publishing.
    #[serde(default = "default_true")]
    pub blur_faces: bool,
}

fn default_true() -> bool {
    true
}

/// An uploaded file and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaView {
    pub media_id: MediaId,
    pub post_id: PostId,
    pub class_id: ClassId,
    pub kind: MediaKind,
    pub state: MediaState,
    pub size_bytes: u64,
    /// Bytes stored so far: the offset of the next chunk.
    pub received_bytes: u64,
    /// Processing progress, 0 to 100.
    pub progress_percent: u8,
    pub blur_faces: bool,
    /// Error code when `state` is `failed`.
    pub error: Option<crate::ErrorCode>,
    /// Where to `PUT` the next chunk (with `Content-Range`), while `state` is `uploading`.
    pub upload_url: Option<String>,
    /// Largest chunk the server takes in one request.
    pub max_chunk_bytes: u64,
}
