//! The tus resumable upload protocol 1.0 (<https://tus.io/protocols/resumable-upload>): core and
//! the `creation` and `termination` extensions, over the same uploads as `POST .../media` and `PUT .../content`.
//!
//! - `OPTIONS /v1/classes/{class_id}/posts/{post_id}/uploads`: what the server speaks.
//! - `POST` there (creation): `Upload-Length` and `Upload-Metadata` (`kind`, or a `filetype` to
//!   tell it from; `duration_seconds`; `blur_faces`) announce a file exactly as `announce_media`
//!   does, tier checks included; `Location` is the medium's `.../content` URL.
//! - `HEAD .../content`: `Upload-Offset`, where to resume.
//! - `PATCH .../content` with `Content-Type: application/offset+octet-stream` and `Upload-Offset`:
//!   the next bytes, stored like a `PUT` chunk; the last one queues the processing job.
//!
//! - `DELETE .../content` (termination): an upload in progress given up, its bytes deleted; it no
//!   longer counts against the tier.
//!
//! Nothing here keeps state of its own: an upload is a row of `media`, so a file started with one
//! protocol may be finished with the other. Requests are checked from their head (token, role,
//! `Tus-Resumable`) before the body is read, as for `PUT`. `filename` is read and dropped: the
//! server keeps no name a parent could see.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use models::media::{MediaKind, MediaState, MediaUpload, MediaView};
use models::{ApiError, ClassId, ErrorCode, MediaId, PostId};

use crate::api_media::{announce, append, complete_upload, publisher, upload_url, Appended};
use crate::error::AppError;
use crate::extract::{MediaPath, PostPath, User};
use crate::uploads::MediaRecord;
use crate::AppState;

pub const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

static TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
static UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
static UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
static UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");

/// Every answer of a tus operation says which version it speaks, refusals included (a middleware
/// on the tus routes, so extractors' refusals carry it too).
pub async fn tus_resumable_header(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(TUS_RESUMABLE.clone(), HeaderValue::from_static(TUS_VERSION));
    response
}

/// The largest file any kind accepts.
fn max_size(state: &AppState) -> u64 {
    let storage = &state.config.storage;
    storage.max_upload_bytes(MediaKind::Photo).max(storage.max_upload_bytes(MediaKind::Video))
}

/// A tus request in another version than ours: `412` with the versions we speak.
fn version_refusal(headers: &HeaderMap) -> Option<Response> {
    if headers.get(&TUS_RESUMABLE).and_then(|v| v.to_str().ok()) == Some(TUS_VERSION) {
        return None;
    }
    let mut response = AppError::client(
        ErrorCode::InvalidRequest,
        format!("this server speaks tus {TUS_VERSION}: send Tus-Resumable: {TUS_VERSION}"),
    )
    .into_response();
    *response.status_mut() = StatusCode::PRECONDITION_FAILED;
    response.headers_mut().insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    Some(response)
}

fn number_header(headers: &HeaderMap, name: &HeaderName) -> Result<u64, AppError> {
    let raw = headers
        .get(name)
        .ok_or_else(|| AppError::client(ErrorCode::InvalidRequest, format!("{name} is missing")))?;
    raw.to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| AppError::client(ErrorCode::InvalidRequest, format!("{name} is not a whole number")))
}

/// The server's tus capabilities. Answers without a token: it says nothing about the class.
#[utoipa::path(
    options, path = "/v1/classes/{class_id}/posts/{post_id}/uploads", tag = "media",
    params(("class_id" = ClassId, Path), ("post_id" = PostId, Path)),
    responses(
        (status = 204, description = "The tus versions, extensions and largest file accepted", headers(
            ("Tus-Resumable" = String, description = "1.0.0"),
            ("Tus-Version" = String, description = "1.0.0"),
            ("Tus-Extension" = String, description = "creation,termination"),
            ("Tus-Max-Size" = u64, description = "Largest Upload-Length accepted, in bytes (videos; photos are smaller)"),
        )),
    )
)]
pub async fn options(State(state): State<AppState>, _path: PostPath) -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (HeaderName::from_static("tus-version"), HeaderValue::from_static(TUS_VERSION)),
            (HeaderName::from_static("tus-extension"), HeaderValue::from_static(TUS_EXTENSIONS)),
            (HeaderName::from_static("tus-max-size"), HeaderValue::from(max_size(&state))),
        ],
    )
        .into_response()
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs (a key alone has no value).
fn parse_metadata(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        let value = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("Upload-Metadata {key}: not base64"))?;
        let value = String::from_utf8(value).map_err(|_| format!("Upload-Metadata {key}: not UTF-8"))?;
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

/// What a tus creation announces: the kind from `kind`, else from the `filetype` a browser gives
/// (`image/*` or `video/*`).
fn media_upload(size_bytes: u64, metadata: &[(String, String)]) -> Result<MediaUpload, String> {
    let get = |key: &str| metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let kind = match (get("kind"), get("filetype")) {
        (Some(kind), _) => kind.parse::<MediaKind>()?,
        (None, Some(filetype)) if filetype.starts_with("image/") => MediaKind::Photo,
        (None, Some(filetype)) if filetype.starts_with("video/") => MediaKind::Video,
        _ => return Err("Upload-Metadata needs kind (photo or video) or an image/ or video/ filetype".into()),
    };
    let duration_seconds = get("duration_seconds")
        .map(|raw| {
            raw.parse::<f64>().map_err(|_| "Upload-Metadata duration_seconds: not a number".to_owned())
        })
        .transpose()?;
    let blur_faces = match get("blur_faces") {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err("Upload-Metadata blur_faces: true or false".into()),
    };
    Ok(MediaUpload { kind, size_bytes, duration_seconds, blur_faces })
}

/// tus creation: announce a photo or video as `announce_media` does (same roles, same tier
/// checks before any byte is stored), then send it with `PATCH` to `Location`.
#[utoipa::path(
    post, path = "/v1/classes/{class_id}/posts/{post_id}/uploads", tag = "media",
    params(
        ("class_id" = ClassId, Path), ("post_id" = PostId, Path),
        ("Tus-Resumable" = String, Header, description = "1.0.0", pattern = r"^1\.0\.0$"),
        ("Upload-Length" = String, Header, description = "The file's exact size in bytes",
         pattern = r"^[0-9]{1,19}$"),
        ("Upload-Metadata" = Option<String>, Header,
         description = "tus metadata: `kind` (photo or video) or `filetype` (a MIME type), optional \
                        `duration_seconds` and `blur_faces` (true or false), values in base64",
         pattern = r"^[a-z_]{1,32}( [A-Za-z0-9+/]*={0,2})?(,[a-z_]{1,32}( [A-Za-z0-9+/]*={0,2})?)*$"),
    ),
    responses(
        (status = 201, description = "Announced; PATCH the bytes to Location", body = MediaView, headers(
            ("Location" = String, description = "The upload's URL: .../media/{media_id}/content"),
            ("Tus-Resumable" = String, description = "1.0.0"),
            ("Upload-Offset" = u64, description = "0"),
        )),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member or forbidden_role (parents)", body = ApiError),
        (status = 404, description = "No such post in this class", body = ApiError),
        (status = 409, description = "too_many_photos, too_many_videos or storage_quota_exceeded", body = ApiError),
        (status = 412, description = "Tus-Resumable is not 1.0.0 (see Tus-Version)", body = ApiError,
         headers(("Tus-Version" = String, description = "1.0.0"))),
        (status = 413, description = "media_too_large: Upload-Length over the kind's limit", body = ApiError),
        (status = 422, description = "video_too_long, or Upload-Length or Upload-Metadata invalid", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn create(
    User(user_id): User,
    State(state): State<AppState>,
    PostPath(class_id, post_id): PostPath,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    publisher(&state, &class_id, &user_id).await?;
    if let Some(refusal) = version_refusal(&headers) {
        return Ok(refusal);
    }
    let size_bytes = number_header(&headers, &UPLOAD_LENGTH)?;
    let metadata = match headers.get(&UPLOAD_METADATA) {
        None => Vec::new(),
        Some(raw) => raw
            .to_str()
            .map_err(|_| "Upload-Metadata is not ASCII".to_owned())
            .and_then(parse_metadata)
            .map_err(|message| AppError::client(ErrorCode::InvalidRequest, message))?,
    };
    let upload = media_upload(size_bytes, &metadata)
        .map_err(|message| AppError::client(ErrorCode::InvalidRequest, message))?;
    let record = announce(&state, &class_id, &post_id, &upload).await?;
    let location = upload_url(&class_id, &record.media_id);
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    let view = record.view(Some(location.clone()), max_chunk);
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|err| AppError::Internal(err.into()))?,
    );
    headers.insert(UPLOAD_OFFSET.clone(), HeaderValue::from(0u64));
    Ok(response)
}

/// The medium of a `HEAD` or `PATCH`, checked from the request's head before any body is read:
/// the token, the role, then `Tus-Resumable` (a refusal in `head`).
pub struct TusUpload {
    head: Result<MediaRecord, Response>,
}

impl FromRequestParts<AppState> for TusUpload {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let User(user_id) = User::from_request_parts(parts, state).await?;
        let MediaPath(class_id, media_id) = MediaPath::from_request_parts(parts, state).await?;
        publisher(state, &class_id, &user_id).await?;
        if let Some(refusal) = version_refusal(&parts.headers) {
            return Ok(TusUpload { head: Err(refusal) });
        }
        Ok(TusUpload { head: Ok(state.uploads.media(&class_id, &media_id).await?) })
    }
}

fn offset_headers(record: &MediaRecord) -> [(HeaderName, HeaderValue); 3] {
    [
        (UPLOAD_OFFSET.clone(), HeaderValue::from(record.received_bytes)),
        (UPLOAD_LENGTH.clone(), HeaderValue::from(record.size_bytes)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// Where the upload stands: resume with a `PATCH` at `Upload-Offset`. An upload whose bytes all
/// arrived but that the server did not finish (it stopped in between) is finished by this call.
#[utoipa::path(
    head, path = "/v1/classes/{class_id}/media/{media_id}/content", tag = "media",
    params(
        ("class_id" = ClassId, Path), ("media_id" = MediaId, Path),
        ("Tus-Resumable" = String, Header, description = "1.0.0", pattern = r"^1\.0\.0$"),
    ),
    responses(
        (status = 200, description = "No body", headers(
            ("Upload-Offset" = u64, description = "Bytes received: where the next PATCH starts"),
            ("Upload-Length" = u64, description = "The announced size"),
            ("Tus-Resumable" = String, description = "1.0.0"),
        )),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member or forbidden_role", body = ApiError),
        (status = 404, description = "No such photo or video in this class", body = ApiError),
        (status = 412, description = "Tus-Resumable is not 1.0.0", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn head(
    State(state): State<AppState>,
    TusUpload { head }: TusUpload,
) -> Result<Response, AppError> {
    let mut record = match head {
        Ok(record) => record,
        Err(refusal) => return Ok(refusal),
    };
    if record.upload_state == MediaState::Uploading && record.received_bytes == record.size_bytes {
        // Every byte arrived but the server stopped before joining the chunks: join them now.
        complete_upload(&state, &record).await?;
        record = state.uploads.media(&record.class_id, &record.media_id).await?;
    }
    Ok((StatusCode::OK, offset_headers(&record)).into_response())
}

/// The body of a `PATCH`: any bytes (JSON Schema's binary string, not an array of numbers: every
/// body is data).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Only the document reads it.
pub struct OffsetBytes(Vec<u8>);

/// The next bytes of an upload, at `Upload-Offset`. Another offset than the upload's is refused
/// with `409 upload_offset_mismatch` and the right `Upload-Offset`; bytes past the announced size
/// with `422`. The last bytes complete the upload and queue its processing.
#[utoipa::path(
    patch, path = "/v1/classes/{class_id}/media/{media_id}/content", tag = "media",
    params(
        ("class_id" = ClassId, Path), ("media_id" = MediaId, Path),
        ("Tus-Resumable" = String, Header, description = "1.0.0", pattern = r"^1\.0\.0$"),
        ("Upload-Offset" = String, Header, description = "Where these bytes start", pattern = r"^[0-9]{1,19}$"),
    ),
    request_body(content = OffsetBytes, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored", headers(
            ("Upload-Offset" = u64, description = "Bytes received so far"),
            ("Tus-Resumable" = String, description = "1.0.0"),
        )),
        (status = 400, description = "malformed_request: the body could not be read", body = ApiError),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member or forbidden_role", body = ApiError),
        (status = 404, description = "No such photo or video in this class", body = ApiError),
        (status = 409, description = "upload_offset_mismatch (see Upload-Offset) or upload_closed", body = ApiError,
         headers(("Upload-Offset" = u64, description = "Where the next PATCH must start"))),
        (status = 412, description = "Tus-Resumable is not 1.0.0", body = ApiError),
        (status = 413, description = "More bytes than max_chunk_bytes in one PATCH", body = ApiError),
        (status = 415, description = "Content-Type is not application/offset+octet-stream", body = ApiError),
        (status = 422, description = "Upload-Offset invalid, or bytes past the announced size", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn patch(
    State(state): State<AppState>,
    // Before the body: a refused request's body is never read.
    TusUpload { head }: TusUpload,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let record = match head {
        Ok(record) => record,
        Err(refusal) => return Ok(refusal),
    };
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some(OFFSET_OCTET_STREAM) {
        let mut response = AppError::client(
            ErrorCode::InvalidRequest,
            format!("a tus PATCH is sent as {OFFSET_OCTET_STREAM}"),
        )
        .into_response();
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Ok(response);
    }
    let offset = number_header(&headers, &UPLOAD_OFFSET)?;
    let body = body?;
    match append(&state, record, offset, body).await? {
        Appended::Stored(record) => {
            Ok((StatusCode::NO_CONTENT, [(UPLOAD_OFFSET.clone(), HeaderValue::from(record.received_bytes))])
                .into_response())
        }
        Appended::Refused(response) => Ok(response),
    }
}

/// tus termination: give up an upload in progress. Its bytes are deleted and it no longer counts
/// against the post's photos or videos, the quota or the uploads in progress; its URL then
/// answers `404`. A complete upload is a photo or video of the post, not an upload: `409`.
#[utoipa::path(
    delete, path = "/v1/classes/{class_id}/media/{media_id}/content", tag = "media",
    params(
        ("class_id" = ClassId, Path), ("media_id" = MediaId, Path),
        ("Tus-Resumable" = String, Header, description = "1.0.0", pattern = r"^1\.0\.0$"),
    ),
    responses(
        (status = 204, description = "Terminated", headers(("Tus-Resumable" = String, description = "1.0.0"))),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member or forbidden_role", body = ApiError),
        (status = 404, description = "No such upload in this class (or terminated already)", body = ApiError),
        (status = 409, description = "upload_closed: the upload is complete", body = ApiError),
        (status = 412, description = "Tus-Resumable is not 1.0.0", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn terminate(
    State(state): State<AppState>,
    TusUpload { head }: TusUpload,
) -> Result<Response, AppError> {
    let record = match head {
        Ok(record) => record,
        Err(refusal) => return Ok(refusal),
    };
    if record.upload_state != MediaState::Uploading {
        return Err(crate::uploads::UploadError::Closed(record.state().as_str()).into());
    }
    for key in state.uploads.terminate(&record).await? {
        state.storage.delete(&object_store::path::Path::from(key)).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(value: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(value)
    }

    #[test]
    fn metadata_as_tus_clients_send_it() {
        let raw = format!("filename {},filetype {},is_confidential", b64("photo.jpg"), b64("image/jpeg"));
        let metadata = parse_metadata(&raw).unwrap();
        assert_eq!(metadata[0], ("filename".into(), "photo.jpg".into()));
        assert_eq!(metadata[2], ("is_confidential".into(), String::new()));
        let upload = media_upload(10, &metadata).unwrap();
        assert_eq!((upload.kind, upload.size_bytes, upload.blur_faces), (MediaKind::Photo, 10, true));

        let raw =
            format!("kind {},duration_seconds {},blur_faces {}", b64("video"), b64("12.5"), b64("false"));
        let upload = media_upload(10, &parse_metadata(&raw).unwrap()).unwrap();
        assert_eq!(
            (upload.kind, upload.duration_seconds, upload.blur_faces),
            (MediaKind::Video, Some(12.5), false)
        );
    }

    #[test]
    fn metadata_refusals() {
        assert!(parse_metadata("kind ***").is_err());
        assert!(media_upload(10, &[]).is_err());
        assert!(media_upload(10, &[("filetype".into(), "text/plain".into())]).is_err());
        assert!(media_upload(10, &[("kind".into(), "audio".into())]).is_err());
        assert!(media_upload(10, &[("kind".into(), "photo".into()), ("blur_faces".into(), "yes".into())])
            .is_err());
    }
}
