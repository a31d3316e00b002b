//! HTTP handlers of the JSON API, and the OpenAPI document that describes them.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use models::api::{validate_display_name, Capabilities, ClassUpsert, ClassView, MemberUpsert, MemberView};
use models::{ApiError, ErrorCode};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::directory::Written;
use crate::error::AppError;
use crate::extract::{parse_id, AppJson, Backend, ClassPath, MemberPath, User};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Klass visio and media server",
        description = "Class directory sync for the class backend, and what users may do in their classes. \
                       Errors are always JSON `{code, message}` with a stable `code`."
    ),
    paths(
        put_class, get_class, delete_class, put_member, delete_member, capabilities,
        healthz, readyz, metrics, openapi_json,
        crate::api_media::create_post, crate::api_media::announce_media, crate::api_media::media_status,
        crate::api_media::put_chunk, crate::api_media::get_post, crate::api_media::publish_post,
        crate::api_media::media_faces, crate::api_media::put_regions, sessions, attendance,
        crate::privacy::erase_user, crate::privacy::scheduled
    ),
    components(schemas(ApiError, ErrorCode)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "sync", description = "Class backend → server. Bearer KLASS_API_KEY."),
        (name = "user", description = "Users, with a JWT minted by the class backend."),
        (name = "media", description = "Posts, photos and videos: resumable uploads checked against the tier, \
                                         processing jobs, the faces preview, publishing and signed links."),
        (name = "ops", description = "Probes, metrics and this document."),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("KLASS_API_KEY of the class backend"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("User token: claims sub (user id) and exp"))
                    .build(),
            ),
        );
    }
}

fn written_status(written: Written) -> StatusCode {
    match written {
        Written::Created => StatusCode::CREATED,
        Written::Updated => StatusCode::OK,
    }
}

/// Create or replace a class. A downgrade below the current number of members is accepted; the
/// answer lists the limits the class is over in `over_limits`, and no new member is accepted until
/// the class is back under them.
#[utoipa::path(
    put, path = "/v1/classes/{class_id}", tag = "sync",
    params(("class_id" = String, Path, description = "Class id: letters, digits, '-' and '_'")),
    request_body = ClassUpsert,
    responses(
        (status = 200, description = "Class replaced", body = ClassView),
        (status = 201, description = "Class created", body = ClassView),
        (status = 400, description = "Body is not JSON", body = ApiError),
        (status = 401, description = "Missing or wrong API key", body = ApiError),
        (status = 422, description = "Invalid field, e.g. an unknown tier", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn put_class(
    _: Backend,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
    AppJson(class): AppJson<ClassUpsert>,
) -> Result<impl IntoResponse, AppError> {
    let name = class.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::client(ErrorCode::InvalidRequest, "name must have 1 to 200 characters"));
    }
    let (written, view) = state.directory.upsert_class(&class_id, &class).await?;
    if !view.over_limits.is_empty() {
        tracing::info!(%class_id, over_limits = ?view.over_limits, "class is over its tier's limits");
    }
    Ok((written_status(written), Json(view)))
}

/// A class as the directory holds it, with its member counts.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}", tag = "sync",
    params(("class_id" = String, Path)),
    responses(
        (status = 200, body = ClassView),
        (status = 401, body = ApiError),
        (status = 404, description = "No such class", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn get_class(
    _: Backend,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<Json<ClassView>, AppError> {
    let view = state.directory.class(&class_id).await?;
    view.map(Json).ok_or_else(|| AppError::client(ErrorCode::NotFound, "class not found"))
}

/// Delete a class and its members. Idempotent.
#[utoipa::path(
    delete, path = "/v1/classes/{class_id}", tag = "sync",
    params(("class_id" = String, Path)),
    responses((status = 204, description = "Deleted, or was not there"), (status = 401, body = ApiError)),
    security(("api_key" = []))
)]
pub async fn delete_class(
    _: Backend,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<StatusCode, AppError> {
    crate::privacy::erase_class(&state, &class_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add or update a member. Approving a member, or making one a teacher or admin, is refused with
/// `member_limit_reached` or `admin_limit_reached` when the tier's limit is reached.
#[utoipa::path(
    put, path = "/v1/classes/{class_id}/members/{user_id}", tag = "sync",
    params(("class_id" = String, Path), ("user_id" = String, Path)),
    request_body = MemberUpsert,
    responses(
        (status = 200, description = "Member updated", body = MemberView),
        (status = 201, description = "Member added", body = MemberView),
        (status = 400, body = ApiError),
        (status = 401, body = ApiError),
        (status = 404, description = "No such class", body = ApiError),
        (status = 409, description = "member_limit_reached or admin_limit_reached", body = ApiError),
        (status = 422, description = "Invalid field, e.g. a display name that looks like an email", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn put_member(
    _: Backend,
    State(state): State<AppState>,
    MemberPath(class_id, user_id): MemberPath,
    AppJson(member): AppJson<MemberUpsert>,
) -> Result<impl IntoResponse, AppError> {
    validate_display_name(&member.display_name)
        .map_err(|err| AppError::client(ErrorCode::InvalidRequest, err.to_string()))?;
    let (written, view) = state.directory.upsert_member(&class_id, &user_id, &member).await?;
    let room_id = sfu::RoomId::from(&class_id);
    if view.approved {
        // A teacher demoted to parent loses moderation in a running call at once, and a parent
        // promoted gains it.
        state.sfu.member_role_changed(&room_id, user_id.clone(), member.role).await;
    } else {
        // No longer approved: out of any call of the class at once, like a removed member.
        state.sfu.member_removed(&room_id, user_id.clone()).await;
    }
    Ok((written_status(written), Json(view)))
}

/// Remove a member. Idempotent.
#[utoipa::path(
    delete, path = "/v1/classes/{class_id}/members/{user_id}", tag = "sync",
    params(("class_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204, description = "Removed, or was not there"), (status = 401, body = ApiError)),
    security(("api_key" = []))
)]
pub async fn delete_member(
    _: Backend,
    State(state): State<AppState>,
    MemberPath(class_id, user_id): MemberPath,
) -> Result<StatusCode, AppError> {
    state.directory.delete_member(&class_id, &user_id).await?;
    state.sfu.member_removed(&sfu::RoomId::from(&class_id), user_id.clone()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// What the calling user may do in this class right now. Anyone who is not an approved member gets
/// the same 403 `not_a_member`, whether the class exists or not.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/capabilities", tag = "user",
    params(("class_id" = String, Path)),
    responses(
        (status = 200, body = Capabilities),
        (status = 401, description = "Missing, forged or expired token", body = ApiError),
        (status = 403, description = "not_a_member", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn capabilities(
    User(user_id): User,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<Json<Capabilities>, AppError> {
    let (member, tier, options) =
        state.directory.approved_member(&class_id, &user_id).await?.ok_or_else(AppError::not_a_member)?;
    let policy = state.directory.tiers().policy(tier);
    Ok(Json(Capabilities::for_member(&member, tier, policy, &options)))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "ok")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, body = ApiError))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.directory.ping().await.map_err(|err| AppError::Unavailable(err.into()))?;
    Ok("ready")
}

/// Prometheus metrics, text format 0.0.4.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, AppError> {
    for (tier, counts) in state.directory.counts_by_tier().await? {
        state.metrics.set_directory_counts(tier, counts.n_classes, counts.n_members);
    }
    state.metrics.set_sfu_queues(state.sfu.drops(), state.sfu.event_backlog());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode()))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

const ATTENDANCE_REFUSAL: &str = "only teachers and admins see attendance";

/// The class's call sessions, newest first. Teachers and admins only.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/sessions", tag = "user",
    params(("class_id" = String, Path)),
    responses(
        (status = 200, body = Vec<crate::attendance::SessionRecord>),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member, or forbidden_role for parents", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn sessions(
    User(user_id): User,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<Json<Vec<crate::attendance::SessionRecord>>, AppError> {
    administrator(&state, &class_id, &user_id, ATTENDANCE_REFUSAL).await?;
    let sessions =
        state.attendance.sessions(&class_id).await.map_err(|err| AppError::Internal(err.into()))?;
    Ok(Json(sessions))
}

#[derive(serde::Deserialize)]
pub struct AttendanceQuery {
    format: Option<String>,
}

/// Who attended a session, from when to when (Unix seconds). JSON, or CSV with `?format=csv` or
/// `Accept: text/csv`. Teachers and admins only.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/sessions/{session_id}/attendance", tag = "user",
    params(("class_id" = String, Path), ("session_id" = String, Path), ("format" = Option<String>, Query, description = "json (default) or csv")),
    responses(
        (status = 200, body = Vec<crate::attendance::AttendanceRecord>, content_type = "application/json"),
        (status = 200, description = "CSV: user_id,display_name,role,joined_at,left_at,leave_reason", content_type = "text/csv"),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, description = "No such session in this class", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn attendance(
    User(user_id): User,
    State(state): State<AppState>,
    axum::extract::Path((class_raw, session_id)): axum::extract::Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<AttendanceQuery>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, AppError> {
    let class_id = parse_id(class_raw, "class_id", models::ClassId::new)?;
    administrator(&state, &class_id, &user_id, ATTENDANCE_REFUSAL).await?;
    let records = state
        .attendance
        .attendance(&class_id, &session_id)
        .await
        .map_err(|err| AppError::Internal(err.into()))?
        .ok_or_else(|| AppError::client(ErrorCode::NotFound, "no such session in this class"))?;
    let wants_csv = query.format.as_deref() == Some("csv")
        || headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/csv"));
    Ok(if wants_csv {
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], crate::attendance::to_csv(&records))
            .into_response()
    } else {
        Json(records).into_response()
    })
}

/// The member, if approved and a teacher or admin of the class; `refusal` tells others why not.
pub(crate) async fn administrator(
    state: &AppState,
    class_id: &models::ClassId,
    user_id: &models::UserId,
    refusal: &str,
) -> Result<MemberView, AppError> {
    let (member, _, _) =
        state.directory.approved_member(class_id, user_id).await?.ok_or_else(AppError::not_a_member)?;
    require_administrator(&member, refusal)?;
    Ok(member)
}

/// Refuses with `forbidden_role` and `refusal` unless the member is a teacher or an admin.
pub(crate) fn require_administrator(member: &MemberView, refusal: &str) -> Result<(), AppError> {
    if !member.role.administers() {
        return Err(AppError::client(ErrorCode::ForbiddenRole, refusal));
    }
    Ok(())
}
