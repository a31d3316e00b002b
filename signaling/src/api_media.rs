//! Posts and uploads: teachers and admins announce each file (checked against the tier before any
//! byte is stored), then send it in chunks that resume after a broken connection.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use media_worker::ManualRegion;
use models::api::MemberView;
use models::http_range::{self, ContentRangeError, RangeNotSatisfiable};
use models::media::{
    BlurRegion, FacesView, MediaLinks, MediaState, MediaUpload, MediaView, PostDetail, PostView,
    RegionsUpdate, MAX_BLUR_REGIONS,
};
use models::{ApiError, ClassId, ClassOptions, ErrorCode, MediaId, PostId, UserId};

use crate::api::{administrator, require_administrator};
use crate::db::now_secs;
use crate::error::AppError;
use crate::extract::{AppJson, ClassPath, MediaPath, PostPath, User};
use crate::links::{LinkError, LinkTarget, LINKABLE_FILES};
use crate::storage::Storage;
use crate::uploads::{random_token, MediaRecord, UploadError, Uploads};
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

const PUBLISH_REFUSAL: &str = "only teachers and admins publish photos and videos";

/// The member, if approved and allowed to publish in the class.
pub(crate) async fn publisher(
    state: &AppState,
    class_id: &ClassId,
    user_id: &UserId,
) -> Result<MemberView, AppError> {
    administrator(state, class_id, user_id, PUBLISH_REFUSAL).await
}

pub(crate) fn upload_url(class_id: &ClassId, media_id: &MediaId) -> String {
    format!("/v1/classes/{class_id}/media/{media_id}/content")
}

/// Create an empty post; photos and videos are then announced into it.
#[utoipa::path(
    post, path = "/v1/classes/{class_id}/posts", tag = "media",
    params(("class_id" = ClassId, Path)),
    responses(
        (status = 201, body = PostView, links(
            ("announce_media" = (operation_id = "announce_media", parameters(
                ("class_id" = "$request.path.class_id"), ("post_id" = "$response.body#/post_id")))),
            ("get_post" = (operation_id = "get_post", parameters(
                ("class_id" = "$request.path.class_id"), ("post_id" = "$response.body#/post_id")))),
            ("publish_post" = (operation_id = "publish_post", parameters(
                ("class_id" = "$request.path.class_id"), ("post_id" = "$response.body#/post_id")))),
        )),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member or forbidden_role (parents)", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn create_post(
    User(user_id): User,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<(StatusCode, Json<PostView>), AppError> {
    publisher(&state, &class_id, &user_id).await?;
    let post = state.uploads.create_post(&class_id, &user_id).await?;
    Ok((StatusCode::CREATED, Json(post)))
}

/// Announce a photo or video before sending it. Refused with `too_many_photos`, `too_many_videos`,
/// `video_too_long` (declared duration) or `storage_quota_exceeded` before any byte is stored. The
/// announced size is reserved against the quota until the upload fails.
#[utoipa::path(
    post, path = "/v1/classes/{class_id}/posts/{post_id}/media", tag = "media",
    params(("class_id" = ClassId, Path), ("post_id" = PostId, Path)),
    request_body = MediaUpload,
    responses(
        (status = 201, body = MediaView, links(
            ("put_chunk" = (operation_id = "put_chunk", parameters(
                ("class_id" = "$request.path.class_id"), ("media_id" = "$response.body#/media_id")))),
            ("media_status" = (operation_id = "media_status", parameters(
                ("class_id" = "$request.path.class_id"), ("media_id" = "$response.body#/media_id")))),
            ("media_faces" = (operation_id = "media_faces", parameters(
                ("class_id" = "$request.path.class_id"), ("media_id" = "$response.body#/media_id")))),
            ("put_regions" = (operation_id = "put_regions", parameters(
                ("class_id" = "$request.path.class_id"), ("media_id" = "$response.body#/media_id")))),
        )),
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
    PostPath(class_id, post_id): PostPath,
    AppJson(upload): AppJson<MediaUpload>,
) -> Result<(StatusCode, Json<MediaView>), AppError> {
    publisher(&state, &class_id, &user_id).await?;
    let record = announce(&state, &class_id, &post_id, &upload).await?;
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    Ok((StatusCode::CREATED, Json(record.view(Some(upload_url(&class_id, &record.media_id)), max_chunk))))
}

/// Checks an announced file against its kind's size, then the tier (in [`Uploads::announce`]).
/// Shared by `announce_media` and the tus creation (`crate::tus`).
pub(crate) async fn announce(
    state: &AppState,
    class_id: &ClassId,
    post_id: &PostId,
    upload: &MediaUpload,
) -> Result<MediaRecord, AppError> {
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
    Ok(state.uploads.announce(class_id, post_id, upload).await?)
}

/// Where an upload stands: `received_bytes` is the offset of the next chunk after a broken connection.
/// An upload whose bytes all arrived but that the server did not finish (it stopped in between)
/// is finished by this call.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/media/{media_id}", tag = "media",
    params(("class_id" = ClassId, Path), ("media_id" = MediaId, Path)),
    responses(
        (status = 200, body = MediaView),
        (status = 403, description = "not_a_member or forbidden_role", body = ApiError),
        (status = 404, description = "No such photo or video in this class", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn media_status(
    User(user_id): User,
    State(state): State<AppState>,
    MediaPath(class_id, media_id): MediaPath,
) -> Result<Json<MediaView>, AppError> {
    publisher(&state, &class_id, &user_id).await?;
    let mut record = state.uploads.media(&class_id, &media_id).await?;
    if record.upload_state == MediaState::Uploading && record.received_bytes == record.size_bytes {
        // Every byte arrived but the server stopped before joining the chunks: join them now.
        complete_upload(&state, &record).await?;
        record = state.uploads.media(&class_id, &media_id).await?;
    }
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    Ok(Json(record.view(Some(upload_url(&class_id, &media_id)), max_chunk)))
}

/// Who sends a chunk and where it goes, checked from the request's head alone: the token, the
/// path, the membership and role, and the `Content-Range`. The body of a request refused here is
/// never read, so a stranger cannot make the server buffer megabytes before saying no.
pub struct ChunkUpload {
    class_id: ClassId,
    media_id: MediaId,
    range: (u64, u64, u64),
}

impl FromRequestParts<AppState> for ChunkUpload {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let User(user_id) = User::from_request_parts(parts, state).await?;
        let MediaPath(class_id, media_id) = MediaPath::from_request_parts(parts, state).await?;
        publisher(state, &class_id, &user_id).await?;
        let range = parse_content_range(&parts.headers)?;
        Ok(ChunkUpload { class_id, media_id, range })
    }
}

/// `Content-Range: bytes START-END/TOTAL`, parsed by `models::http_range`.
fn parse_content_range(headers: &HeaderMap) -> Result<(u64, u64, u64), AppError> {
    let refuse = |err: ContentRangeError| AppError::client(ErrorCode::InvalidRequest, err.to_string());
    let raw = headers
        .get(header::CONTENT_RANGE)
        .and_then(|value| value.to_str().ok())
        .ok_or(ContentRangeError::Malformed)
        .map_err(refuse)?;
    http_range::parse_content_range(raw).map_err(refuse)
}

/// Send the next chunk of an upload. A chunk that does not start at `received_bytes` is refused
/// with `upload_offset_mismatch` and the `Upload-Offset` header, so the client resumes from there.
/// The last chunk completes the upload.
#[utoipa::path(
    put, path = "/v1/classes/{class_id}/media/{media_id}/content", tag = "media",
    params(
        ("class_id" = ClassId, Path), ("media_id" = MediaId, Path),
        ("Content-Range" = String, Header, description = "bytes START-END/TOTAL, END inclusive",
         pattern = r"^bytes [0-9]{1,19}-[0-9]{1,19}/[0-9]{1,19}$"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Chunk stored; the body tells where the upload stands", body = MediaView),
        (status = 400, description = "malformed_request: the body could not be read", body = ApiError),
        (status = 403, description = "not_a_member or forbidden_role", body = ApiError),
        (status = 404, description = "No such photo or video in this class", body = ApiError),
        (status = 409, description = "upload_offset_mismatch (see Upload-Offset) or upload_closed", body = ApiError,
         headers(("Upload-Offset" = u64, description = "Where the next chunk must start"))),
        (status = 413, description = "Chunk larger than max_chunk_bytes", body = ApiError),
        (status = 422, description = "A Content-Range that is not START <= END < TOTAL, or that does not match \
                                      the body's length or the announced size", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn put_chunk(
    State(state): State<AppState>,
    // Before the body: a refused request's body is never read.
    ChunkUpload { class_id, media_id, range }: ChunkUpload,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body?;
    let (start, end, total) = range;
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
    let record = match append(&state, record, start, body).await? {
        Appended::Stored(record) => record,
        Appended::Refused(response) => return Ok(response),
    };
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    Ok(Json(record.view(Some(upload_url(&class_id, &media_id)), max_chunk)).into_response())
}

/// What became of a chunk: stored (the medium as it now stands, its job queued if that was the
/// last chunk), or refused with where the upload stands (`Upload-Offset`).
pub(crate) enum Appended {
    Stored(Box<MediaRecord>),
    Refused(Response),
}

/// Stores `body` at `offset` of an upload, the one path of both `PUT .../content` and tus's
/// `PATCH`: the offset and the end are checked before any byte is written, and the last chunk
/// joins the chunks and queues the job.
pub(crate) async fn append(
    state: &AppState,
    record: MediaRecord,
    offset: u64,
    body: Bytes,
) -> Result<Appended, AppError> {
    let (class_id, media_id) = (&record.class_id, &record.media_id);
    if let Err(err) = Uploads::check_chunk(&record, offset, body.len() as u64) {
        return Ok(Appended::Refused(refusal_with_offset(err, record.received_bytes)));
    }
    let n_bytes = body.len() as u64;
    let key = Storage::chunk_key(media_id, offset, &random_token());
    state.storage.put(&key, body).await?;
    let new_offset = match state.uploads.accept_chunk(&record, offset, n_bytes, key.as_ref()).await {
        Ok(new_offset) => new_offset,
        Err(err) => {
            // Another request took this offset first: our copy of the bytes is not referenced.
            state.storage.delete(&key).await?;
            let current = state.uploads.media(class_id, media_id).await?.received_bytes;
            return Ok(Appended::Refused(refusal_with_offset(err, current)));
        }
    };
    if new_offset == record.size_bytes {
        complete_upload(state, &record).await?;
    }
    Ok(Appended::Stored(Box::new(state.uploads.media(class_id, media_id).await?)))
}

fn refusal_with_offset(err: UploadError, offset: u64) -> Response {
    let mut response = AppError::from(err).into_response();
    response.headers_mut().insert("upload-offset", HeaderValue::from(offset));
    response
}

/// Joins the chunks into the original, then forgets them.
pub(crate) async fn complete_upload(state: &AppState, record: &MediaRecord) -> Result<(), AppError> {
    let (class_id, media_id) = (&record.class_id, &record.media_id);
    let keys: Vec<object_store::path::Path> =
        state.uploads.chunk_keys(media_id).await?.into_iter().map(object_store::path::Path::from).collect();
    let original = Storage::original_key(class_id, media_id);
    state.storage.concatenate(&keys, &original).await?;
    state.uploads.mark_uploaded(record, original.as_ref()).await?;
    for key in &keys {
        state.storage.delete(key).await?;
    }
    Ok(())
}

/// A member of the class (any role), with what the class lets them do.
async fn viewer(
    state: &AppState,
    class_id: &ClassId,
    user_id: &UserId,
) -> Result<(MemberView, ClassOptions), AppError> {
    let (member, _, options) =
        state.directory.approved_member(class_id, user_id).await?.ok_or_else(AppError::not_a_member)?;
    Ok((member, options))
}

/// Signed links to the outputs of a ready medium.
fn links(state: &AppState, record: &MediaRecord, download: bool, now: i64) -> Option<MediaLinks> {
    let (job, result) = record.ready_job()?;
    let target = |key: &str| LinkTarget {
        class_id: record.class_id.clone(),
        media_id: record.media_id.clone(),
        version: job.version,
        file: key.rsplit('/').next().unwrap_or(key).to_owned(),
    };
    let media = target(&result.files.media);
    let (view, expires_at) = state.links.sign(&media, false, now);
    Some(MediaLinks {
        expires_at,
        view,
        poster: result.files.poster.as_deref().map(|key| state.links.sign(&target(key), false, now).0),
        thumbnail: state.links.sign(&target(&result.files.thumbnail), false, now).0,
        download: download.then(|| state.links.sign(&media, true, now).0),
    })
}

/// The post as `member` may see it: parents see published posts, and in them what is ready.
async fn post_detail(
    state: &AppState,
    member: &MemberView,
    options: ClassOptions,
    class_id: &ClassId,
    post_id: &PostId,
) -> Result<PostDetail, AppError> {
    let (published_at, records) = state.uploads.post(class_id, post_id).await?;
    let administers = member.role.administers();
    if published_at.is_none() && !administers {
        // The same answer as for a post that does not exist.
        return Err(UploadError::PostNotFound.into());
    }
    let download = options.may_download_media(member.role);
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    let now = now_secs();
    let media = records
        .iter()
        .filter(|record| administers || record.state() == MediaState::Ready)
        .map(|record| {
            let upload = administers.then(|| upload_url(class_id, &record.media_id));
            MediaView { links: links(state, record, download, now), ..record.view(upload, max_chunk) }
        })
        .collect();
    Ok(PostDetail { post_id: post_id.clone(), class_id: class_id.clone(), published_at, media })
}

/// A post with its photos and videos and signed links to them. Parents see published posts only
/// (others answer `not_found`, like a post that does not exist), and only what is ready; the
/// `download` link is there for teachers and admins, and for parents when the class has
/// "Confort famille".
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/posts/{post_id}", tag = "media",
    params(("class_id" = ClassId, Path), ("post_id" = PostId, Path)),
    responses(
        (status = 200, body = PostDetail),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member", body = ApiError),
        (status = 404, description = "No such post, or not published yet (parents)", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn get_post(
    User(user_id): User,
    State(state): State<AppState>,
    PostPath(class_id, post_id): PostPath,
) -> Result<Json<PostDetail>, AppError> {
    let (member, options) = viewer(&state, &class_id, &user_id).await?;
    Ok(Json(post_detail(&state, &member, options, &class_id, &post_id).await?))
}

/// Most posts one listing returns.
const MAX_LISTED_POSTS: u32 = 50;

/// The class's posts, newest first (at most 50), each as `get_post` answers it: parents see the
/// published ones and in them what is ready; teachers and admins see every post, drafts included.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/posts", tag = "media",
    params(("class_id" = ClassId, Path)),
    responses(
        (status = 200, body = [PostDetail]),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn list_posts(
    User(user_id): User,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<Json<Vec<PostDetail>>, AppError> {
    let (member, options) = viewer(&state, &class_id, &user_id).await?;
    let published_only = !member.role.administers();
    let post_ids = state.uploads.post_ids(&class_id, published_only, MAX_LISTED_POSTS).await?;
    let mut posts = Vec::with_capacity(post_ids.len());
    for post_id in &post_ids {
        posts.push(post_detail(&state, &member, options, &class_id, post_id).await?);
    }
    Ok(Json(posts))
}

/// Publish a post to the class, once every photo and video in it is `ready` (processed and, when
/// asked, blurred). Refused with `media_not_ready` before that.
#[utoipa::path(
    post, path = "/v1/classes/{class_id}/posts/{post_id}/publish", tag = "media",
    params(("class_id" = ClassId, Path), ("post_id" = PostId, Path)),
    responses(
        (status = 200, body = PostDetail),
        (status = 403, description = "not_a_member or forbidden_role", body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "media_not_ready", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn publish_post(
    User(user_id): User,
    State(state): State<AppState>,
    PostPath(class_id, post_id): PostPath,
) -> Result<Json<PostDetail>, AppError> {
    let (member, options) = viewer(&state, &class_id, &user_id).await?;
    require_administrator(&member, PUBLISH_REFUSAL)?;
    state.uploads.publish(&class_id, &post_id).await?;
    Ok(Json(post_detail(&state, &member, options, &class_id, &post_id).await?))
}

/// The faces the detector found in a processed photo or video, per detection frame, and the
/// regions the teacher added: what to check before publishing.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/media/{media_id}/faces", tag = "media",
    params(("class_id" = ClassId, Path), ("media_id" = MediaId, Path)),
    responses(
        (status = 200, body = FacesView),
        (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "media_not_ready", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn media_faces(
    User(user_id): User,
    State(state): State<AppState>,
    MediaPath(class_id, media_id): MediaPath,
) -> Result<Json<FacesView>, AppError> {
    publisher(&state, &class_id, &user_id).await?;
    let record = state.uploads.media(&class_id, &media_id).await?;
    let Some((job, result)) = record.ready_job() else {
        return Err(UploadError::NotReady(format!(
            "the {} is {}",
            record.kind.as_str(),
            record.state().as_str()
        ))
        .into());
    };
    let bytes = state.storage.get(&object_store::path::Path::from(result.files.faces.as_str())).await?;
    let mut faces: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|err| AppError::Internal(anyhow::anyhow!("faces.json: {err}")))?;
    Ok(Json(FacesView {
        media_id,
        version: job.version,
        frames: faces["frames"].take(),
        manual_regions: job.spec.manual_regions.iter().copied().map(BlurRegion::from).collect(),
    }))
}

/// Replace the teacher's regions (rectangles blurred whatever the detector finds) and process the
/// photo or video again with them. It is `processing` until the new version is ready; the links
/// of the old version stop being given out at once.
#[utoipa::path(
    put, path = "/v1/classes/{class_id}/media/{media_id}/regions", tag = "media",
    params(("class_id" = ClassId, Path), ("media_id" = MediaId, Path)),
    request_body = RegionsUpdate,
    responses(
        (status = 202, description = "Queued for processing", body = MediaView),
        (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "media_not_ready: still uploading or processing", body = ApiError),
        (status = 422, description = "A region out of the picture or with end before start", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn put_regions(
    User(user_id): User,
    State(state): State<AppState>,
    MediaPath(class_id, media_id): MediaPath,
    AppJson(update): AppJson<RegionsUpdate>,
) -> Result<(StatusCode, Json<MediaView>), AppError> {
    publisher(&state, &class_id, &user_id).await?;
    // A medium that does not exist is that, whatever the regions.
    let record = state.uploads.media(&class_id, &media_id).await?;
    if update.regions.len() > MAX_BLUR_REGIONS {
        return Err(AppError::client(
            ErrorCode::InvalidRequest,
            format!("at most {MAX_BLUR_REGIONS} regions"),
        ));
    }
    for (i, region) in update.regions.iter().enumerate() {
        region.validate().map_err(|message| {
            AppError::client(ErrorCode::InvalidRequest, format!("regions[{i}]: {message}"))
        })?;
    }
    let regions = update.regions.iter().copied().map(ManualRegion::from).collect();
    state.uploads.reprocess(&record, regions).await?;
    let record = state.uploads.media(&class_id, &media_id).await?;
    let max_chunk = state.config.storage.max_chunk_bytes as u64;
    Ok((StatusCode::ACCEPTED, Json(record.view(None, max_chunk))))
}

#[derive(Debug, serde::Deserialize)]
pub struct LinkQuery {
    exp: i64,
    dl: u8,
    sig: String,
}

/// A file behind a signed link (see [`crate::links`]). No `Authorization`: the signature is the
/// permission. Single byte ranges are served (`206`), as video players and Safari require.
pub async fn media_file(
    State(state): State<AppState>,
    axum::extract::Path((class_raw, media_raw, version_raw, file)): axum::extract::Path<(
        String,
        String,
        String,
        String,
    )>,
    query: Result<axum::extract::Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let bad_link = || AppError::client(ErrorCode::Unauthorized, LinkError::BadSignature.to_string());
    let axum::extract::Query(query) = query.map_err(|_| bad_link())?;
    let version = version_raw.strip_prefix('v').and_then(|v| v.parse::<u32>().ok()).ok_or_else(bad_link)?;
    if !LINKABLE_FILES.contains(&file.as_str()) {
        return Err(bad_link());
    }
    let target = LinkTarget {
        class_id: ClassId::new(class_raw).map_err(|_| bad_link())?,
        media_id: MediaId::new(media_raw).map_err(|_| bad_link())?,
        version,
        file,
    };
    let now = now_secs();
    state
        .links
        .verify(&target, query.exp, query.dl == 1, &query.sig, now)
        .map_err(|err| AppError::client(ErrorCode::Unauthorized, err.to_string()))?;

    let key = object_store::path::Path::from(target.object_key());
    let gone = || AppError::client(ErrorCode::NotFound, "this file no longer exists");
    let size = match state.storage.size(&key).await {
        Ok(size) => size,
        Err(err) if err.is_not_found() => return Err(gone()),
        Err(err) => return Err(err.into()),
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(raw) => match http_range::parse_range(raw, size) {
            Ok(range) => range,
            Err(RangeNotSatisfiable) => {
                let mut response =
                    AppError::client(ErrorCode::InvalidRequest, "range not satisfiable").into_response();
                *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
                return Ok(response);
            }
        },
    };
    let ranged = match state.storage.get_range(&key, range.clone()).await {
        Ok(ranged) => ranged,
        Err(err) if err.is_not_found() => return Err(gone()),
        Err(err) => return Err(err.into()),
    };
    let content_type = if target.file.ends_with(".mp4") { "video/mp4" } else { "image/jpeg" };
    let disposition = if query.dl == 1 {
        format!(
            "attachment; filename=\"{}.{}\"",
            target.media_id,
            target.file.rsplit('.').next().unwrap_or("bin")
        )
    } else {
        "inline".to_owned()
    };
    let max_age = (query.exp - now).max(0);
    let mut response = Response::builder()
        .status(if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, ranged.range.end - ranged.range.start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::CACHE_CONTROL, format!("private, max-age={max_age}"))
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer");
    if range.is_some() {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", ranged.range.start, ranged.range.end - 1, ranged.size),
        );
    }
    response.body(axum::body::Body::from_stream(ranged.body)).map_err(|err| AppError::Internal(err.into()))
}
