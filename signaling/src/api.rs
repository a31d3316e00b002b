//! HTTP handlers of the class directory sync, users' capabilities and attendance, and the probes.
//! The OpenAPI document that describes them is in [`crate::openapi`].

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use models::api::{validate_display_name, Capabilities, ClassUpsert, ClassView, MemberUpsert, MemberView};
use models::names::validate_class_name;
use models::{ApiError, ClassId, ErrorCode, SessionId, UserId};

use crate::directory::Written;
use crate::error::AppError;
use crate::extract::{AppJson, AppQuery, Backend, ClassPath, MemberPath, SessionPath, User};
use crate::AppState;

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
    params(("class_id" = ClassId, Path)),
    request_body = ClassUpsert,
    responses(
        (status = 200, description = "Class replaced", body = ClassView),
        (status = 201, description = "Class created", body = ClassView),
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
    validate_class_name(&class.name)
        .map_err(|err| AppError::client(ErrorCode::InvalidRequest, err.to_string()))?;
    let (written, view) = state.directory.upsert_class(&class_id, &class).await?;
    if !view.over_limits.is_empty() {
        tracing::info!(%class_id, over_limits = ?view.over_limits, "class is over its tier's limits");
    }
    Ok((written_status(written), Json(view)))
}

/// A class as the directory holds it, with its member counts.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}", tag = "sync",
    params(("class_id" = ClassId, Path)),
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
    params(("class_id" = ClassId, Path)),
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
    params(("class_id" = ClassId, Path), ("user_id" = UserId, Path)),
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
    params(("class_id" = ClassId, Path), ("user_id" = UserId, Path)),
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
    params(("class_id" = ClassId, Path)),
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

const ATTENDANCE_REFUSAL: &str = "only teachers and admins see attendance";

/// The class's call sessions, newest first. Teachers and admins only.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/sessions", tag = "user",
    params(("class_id" = ClassId, Path)),
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
    params(("class_id" = ClassId, Path), ("session_id" = SessionId, Path), ("format" = Option<String>, Query, description = "json (default) or csv")),
    responses(
        (status = 200, body = Vec<crate::attendance::AttendanceRecord>, content_type = "application/json"),
        (status = 200, description = "CSV: user_id,display_name,role,joined_at,left_at,leave_reason,e2ee", content_type = "text/csv"),
        (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 404, description = "No such session in this class", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn attendance(
    User(user_id): User,
    State(state): State<AppState>,
    SessionPath(class_id, session_id): SessionPath,
    AppQuery(query): AppQuery<AttendanceQuery>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, AppError> {
    administrator(&state, &class_id, &user_id, ATTENDANCE_REFUSAL).await?;
    let records = state
        .attendance
        .attendance(&class_id, session_id.as_str())
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
