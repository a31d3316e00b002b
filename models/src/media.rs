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

/// `GET /v1/classes/{class_id}/posts/{post_id}`: a post and its photos and videos. Parents see
/// published posts only, and in them only what is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostDetail {
    pub post_id: PostId,
    pub class_id: ClassId,
    /// Unix seconds; `None` until a teacher or admin publishes it.
    pub published_at: Option<i64>,
    pub media: Vec<MediaView>,
}

/// Signed links to a ready photo or video. They stop working at `expires_at`; ask for the post again
/// for fresh ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaLinks {
    /// Unix seconds.
    pub expires_at: i64,
    /// The MP4 or JPEG, to show in the page (`Content-Disposition: inline`).
    pub view: String,
    /// A frame of a video, to show before it plays.
    pub poster: Option<String>,
    pub thumbnail: String,
    /// The same file as an attachment: teachers and admins, and parents when the class has
    /// "Confort famille". `None` for everyone else.
    pub download: Option<String>,
}

/// A rectangle to blur whatever the detector finds: fractions (0 to 1) of the displayed picture,
/// from `start_s` to `end_s` seconds of a video (photos ignore the times).
///
/// Fractions are `f64` on the wire, checked before they are narrowed for the blur: an `f32` would
/// round `1.0000000001` to `1.0` and `1e-50` to `0.0`, accepting and refusing other values than the
/// schema says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlurRegion {
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub x: f64,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub y: f64,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub width: f64,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub height: f64,
    /// At most `end_s`.
    #[serde(default)]
    #[schema(minimum = 0.0)]
    pub start_s: f64,
    #[serde(default = "forever")]
    #[schema(minimum = 0.0)]
    pub end_s: f64,
}

fn forever() -> f64 {
    f64::MAX
}

/// Most manual regions on one photo or video.
pub const MAX_BLUR_REGIONS: usize = 200;

impl BlurRegion {
    pub fn validate(&self) -> Result<(), String> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !(unit(self.x) && unit(self.y) && unit(self.width) && unit(self.height)) {
            return Err("x, y, width and height are fractions of the picture, from 0 to 1".into());
        }
        if self.width <= 0.0 || self.height <= 0.0 {
            return Err("a region needs a positive width and height".into());
        }
        if !(self.start_s >= 0.0 && self.start_s <= self.end_s) {
            return Err("a region needs 0 <= start_s <= end_s".into());
        }
        Ok(())
    }
}

/// `PUT /v1/classes/{class_id}/media/{media_id}/regions`: the teacher's regions; the photo or
/// video is processed again with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionsUpdate {
    #[schema(schema_with = regions_schema)]
    pub regions: Vec<BlurRegion>,
}

fn regions_schema() -> utoipa::openapi::schema::ArrayBuilder {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(utoipa::openapi::Ref::from_schema_name("BlurRegion"))
        .max_items(Some(MAX_BLUR_REGIONS))
}

/// `GET /v1/classes/{class_id}/media/{media_id}/faces`: what the detector found, to check before
/// publishing, and the regions the teacher added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FacesView {
    pub media_id: MediaId,
    /// Processing version these faces come from; it grows each time regions change.
    pub version: u32,
    /// One entry per detection frame: `{time_s, boxes: [{x, y, w, h}], scores}`, boxes as
    /// fractions of the picture.
    #[schema(value_type = Object)]
    pub frames: serde_json::Value,
    pub manual_regions: Vec<BlurRegion>,
}

/// `POST /v1/classes/{class_id}/posts/{post_id}/media`: announce a file before sending its bytes,
/// so that tier limits are checked before anything is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaUpload {
    pub kind: MediaKind,
    /// Exact size of the file in bytes.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1)]
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

/// A non-negative JSON integer, also when written with a zero fraction (`1024.0`): JSON Schema's
/// `integer` is any number without a fractional part, so the document accepts both.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    use serde::de::{Error, Unexpected};

    struct WholeNumber;

    impl serde::de::Visitor<'_> for WholeNumber {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a non-negative whole number")
        }

        fn visit_u64<E: Error>(self, value: u64) -> Result<u64, E> {
            Ok(value)
        }

        fn visit_i64<E: Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
        }

        fn visit_f64<E: Error>(self, value: f64) -> Result<u64, E> {
            // Every whole f64 from 0 to below 2^64 is exactly a u64.
            if value.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&value) {
                Ok(value as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }

    deserializer.deserialize_u64(WholeNumber)
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
    /// Signed links, once `state` is `ready`, in answers that show the medium to members.
    pub links: Option<MediaLinks>,
}
