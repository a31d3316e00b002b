//! Posts and uploads: teachers and admins announce each file (checked against the tier before any
//! byte is stored), then send it in chunks that resume after a broken connection.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use models::api::MemberView;
use models::media::{MediaUpload, MediaView, PostView};
use models::{ApiError, ClassId, ErrorCode, MediaId, PostId, UserId};

use crate::api::administrator;
use crate::error::AppError;
use crate::extract::{parse_id, AppJson, User};
use crate::storage::Storage;
use crate::uploads::{random_token, UploadError, Uploads};
use crate::AppState;

impl From<UploadError> for AppError {
    fn from(err: UploadError) -> AppError {
        match err.code() {
            Some(code) => AppError::client(code, err.to_string()),
            None => AppError::Internal(err.into()),
        }
    }
}

impl From<crate::storage::StorageError> for AppError {
    fn from(err: crate::storage::StorageError) -> AppError {
        AppError::Unavailable(err.into())
    }
}

/// The member, if approved and allowed to publish in the class.
async fn publisher(state: &AppState, class_id: &ClassId, user_id: &UserId) -> Result<MemberView, AppError> {
    administrator(state, class_id, user_id, "only teachers and admins publish photos and videos").await
}

fn upload_url(class_id: &ClassId, media_id: &MediaId) -> String {
    format!("/v1/classes/{class_id}/media/{media_id}/content")
}

/// Create an empty post; photos and videos are then announced into it.
#[utoipa::path(
    post, path = "/v1/classes/{class_id}/posts", tag = "media",
    params(("class_id" = String, Path)),
    responses(
        (status = 201, body = PostView),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member or forbidden_role (parents)", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn create_post(
    User(user_id): User,
    State(state): State<AppState>,
    axum::extract::Path(class_raw): axum::extract::Path<String>,
) -> Result<(StatusCode, Json<PostView>), AppError> {
    let class_id = parse_id(class_raw, "class_id", ClassId::new)?;
    publisher(&state, &class_id, &user_id).await?;
    let post = state.uploads.create_post(&class_id, &user_id).await?;
    Ok((StatusCode::CREATED, Json(post)))
}

/// Announce a photo or video before sending it. Refused with `too_many_photos`, `too_many_videos`,
/// `video_too_long` (declared duration) or `storage_quota_exceeded` before any byte is stored. The
/// announced size is reserved against the quota until the upload fails.
#[utoipa::path(
    post, path = "/v1/classes/{class_id}/posts/{post_id}/media", tag = "media",
    params(("class_id" = String, Path), ("post_id" = String, Path)),
    request_body = MediaUpload,
    responses(
        (status = 201, body = MediaView),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, description = "No such post in this class", body = ApiError),
        (status = 409, description = "too_many_photos, too_many_videos or storage_quota_exceeded", body = ApiError),
        (status = 413, description = "media_too_large", body = ApiError),
        (status = 422, description = "video_too_long or an invalid field", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn announce_media(
    User(user_id): User,
    State(state): State<AppState>,
    axum::extract::Path((class_raw, post_raw)): axum::extract::Path<(String, String)>,
    AppJson(upload): AppJson<MediaUpload>,
) -> Result<(StatusCode, Json<MediaView>), AppError> {
    let class_id = parse_id(class_raw, "class_id", ClassId::new)?;
    let post_id = parse_id(post_raw, "post_id", PostId::new)?;
    publisher(&state, &class_id, &user_id).await?;
    if upload.size_bytes == 0 {
        return Err(AppError::client(ErrorCode::InvalidRequest, "size_bytes must be positive"));
    }
    let max_bytes = state.config.storage.max_upload_bytes(upload.kind);
    if upload.size_bytes > max_bytes {
        return Err(AppError::client(
            ErrorCode::MediaTooLarge,
            format!("a {} is at most {max_bytes} bytes", upload.kind.as_str()),
        ));
    }
    let record = state.uploads.announce(&class_id, &post_id, &upload).await?;
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    Ok((StatusCode::CREATED, Json(record.view(Some(upload_url(&class_id, &record.media_id)), max_chunk))))
}

/// Where an upload stands: `received_bytes` is the offset of the next chunk after a broken connection.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/media/{media_id}", tag = "media",
    params(("class_id" = String, Path), ("media_id" = String, Path)),
    responses((status = 200, body = MediaView), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("user_jwt" = []))
)]
pub async fn media_status(
    User(user_id): User,
    State(state): State<AppState>,
    axum::extract::Path((class_raw, media_raw)): axum::extract::Path<(String, String)>,
) -> Result<Json<MediaView>, AppError> {
    let class_id = parse_id(class_raw, "class_id", ClassId::new)?;
    let media_id = parse_id(media_raw, "media_id", MediaId::new)?;
    publisher(&state, &class_id, &user_id).await?;
    let record = state.uploads.media(&class_id, &media_id).await?;
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    Ok(Json(record.view(Some(upload_url(&class_id, &media_id)), max_chunk)))
}

/// `Content-Range: bytes START-END/TOTAL` (END inclusive).
fn parse_content_range(headers: &HeaderMap) -> Result<(u64, u64, u64), AppError> {
    let bad = || AppError::client(ErrorCode::InvalidRequest, "Content-Range must be 'bytes START-END/TOTAL'");
    let raw = headers.get(header::CONTENT_RANGE).ok_or_else(bad)?.to_str().map_err(|_| bad())?;
    let spec = raw.strip_prefix("bytes ").ok_or_else(bad)?;
    let (range, total) = spec.split_once('/').ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.parse().map_err(|_| bad())?;
    let end: u64 = end.parse().map_err(|_| bad())?;
    let total: u64 = total.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start, end, total))
}

/// Send the next chunk of an upload. A chunk that does not start at `received_bytes` is refused
/// with `upload_offset_mismatch` and the `Upload-Offset` header, so the client resumes from there.
/// The last chunk completes the upload.
#[utoipa::path(
    put, path = "/v1/classes/{class_id}/media/{media_id}/content", tag = "media",
    params(
        ("class_id" = String, Path), ("media_id" = String, Path),
        ("Content-Range" = String, Header, description = "bytes START-END/TOTAL"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Chunk stored; the body tells where the upload stands", body = MediaView),
        (status = 409, description = "upload_offset_mismatch (see Upload-Offset) or upload_closed", body = ApiError),
        (status = 413, description = "Chunk larger than max_chunk_bytes", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn put_chunk(
    User(user_id): User,
    State(state): State<AppState>,
    axum::extract::Path((class_raw, media_raw)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let class_id = parse_id(class_raw, "class_id", ClassId::new)?;
    let media_id = parse_id(media_raw, "media_id", MediaId::new)?;
    publisher(&state, &class_id, &user_id).await?;
    let (start, end, total) = parse_content_range(&headers)?;
    if end - start + 1 != body.len() as u64 {
        return Err(AppError::client(
            ErrorCode::InvalidRequest,
            "Content-Range does not match the body length",
        ));
    }
    let record = state.uploads.media(&class_id, &media_id).await?;
    if total != record.size_bytes {
        return Err(AppError::client(
            ErrorCode::InvalidRequest,
            "Content-Range total is not the announced size",
        ));
    }
    if let Err(err) = Uploads::check_chunk(&record, start, body.len() as u64) {
        return Ok(refusal_with_offset(err, record.received_bytes));
    }
    let key = Storage::chunk_key(&media_id, start, &random_token());
    state.storage.put(&key, body.clone()).await?;
    let new_offset = match state.uploads.accept_chunk(&record, start, body.len() as u64, key.as_ref()).await {
        Ok(offset) => offset,
        Err(err) => {
            // Another request took this offset first: our copy of the bytes is not referenced.
            state.storage.delete(&key).await?;
            let current = state.uploads.media(&class_id, &media_id).await?.received_bytes;
            return Ok(refusal_with_offset(err, current));
        }
    };
    if new_offset == record.size_bytes {
        complete_upload(&state, &class_id, &media_id).await?;
    }
    let record = state.uploads.media(&class_id, &media_id).await?;
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    Ok(Json(record.view(Some(upload_url(&class_id, &media_id)), max_chunk)).into_response())
}

fn refusal_with_offset(err: UploadError, offset: u64) -> Response {
    let mut response = AppError::from(err).into_response();
    response.headers_mut().insert("upload-offset", HeaderValue::from(offset));
    response
}

/// Joins the chunks into the original, then forgets them.
async fn complete_upload(state: &AppState, class_id: &ClassId, media_id: &MediaId) -> Result<(), AppError> {
    let keys: Vec<object_store::path::Path> =
        state.uploads.chunk_keys(media_id).await?.into_iter().map(object_store::path::Path::from).collect();
    let original = Storage::original_key(class_id, media_id);
    state.storage.concatenate(&keys, &original).await?;
    state.uploads.mark_uploaded(media_id, original.as_ref()).await?;
    for key in &keys {
        state.storage.delete(key).await?;
    }
    Ok(())
}
