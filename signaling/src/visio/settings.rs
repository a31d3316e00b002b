//! The class's call settings that its teachers and admins choose themselves, without the class
//! backend: for now, whether calls admit browsers that cannot encrypt end to end
//! (`ClassOptions::visio_allow_unencrypted`, which the class backend's `PUT` of the class also
//! sets; the latest write wins). Calls already running keep who is in them; the setting applies
//! to the next joins.

use axum::extract::State;
use axum::Json;
use models::api::VisioSettings;
use models::{ApiError, ClassId};

use crate::api::require_administrator;
use crate::error::AppError;
use crate::extract::{AppJson, ClassPath, User};
use crate::AppState;

const SETTINGS_REFUSAL: &str = "only teachers and admins see and change the class's call settings";

/// The class's call settings. Teachers and admins only.
#[utoipa::path(
    get, path = "/v1/classes/{class_id}/visio/settings", tag = "user",
    params(("class_id" = ClassId, Path)),
    responses(
        (status = 200, body = VisioSettings),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member, or forbidden_role for parents", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn get_settings(
    User(user_id): User,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
) -> Result<Json<VisioSettings>, AppError> {
    let (member, _, options) =
        state.directory.approved_member(&class_id, &user_id).await?.ok_or_else(AppError::not_a_member)?;
    require_administrator(&member, SETTINGS_REFUSAL)?;
    Ok(Json(VisioSettings { allow_unencrypted: options.visio_allow_unencrypted }))
}

/// Changes the class's call settings. `allow_unencrypted: true` admits browsers that cannot
/// encrypt end to end (without WebRTC encoded transforms): while one is in a call, the call is
/// not end-to-end encrypted, and every page says so. Teachers and admins only.
#[utoipa::path(
    put, path = "/v1/classes/{class_id}/visio/settings", tag = "user",
    params(("class_id" = ClassId, Path)),
    request_body = VisioSettings,
    responses(
        (status = 200, description = "The settings, as changed", body = VisioSettings),
        (status = 401, body = ApiError),
        (status = 403, description = "not_a_member, or forbidden_role for parents", body = ApiError),
    ),
    security(("user_jwt" = []))
)]
pub async fn put_settings(
    User(user_id): User,
    State(state): State<AppState>,
    ClassPath(class_id): ClassPath,
    AppJson(settings): AppJson<VisioSettings>,
) -> Result<Json<VisioSettings>, AppError> {
    let (member, _, _) =
        state.directory.approved_member(&class_id, &user_id).await?.ok_or_else(AppError::not_a_member)?;
    require_administrator(&member, SETTINGS_REFUSAL)?;
    // The class was deleted since: its members are gone with it.
    if !state.directory.set_visio_allow_unencrypted(&class_id, settings.allow_unencrypted).await? {
        return Err(AppError::not_a_member());
    }
    tracing::info!(%class_id, %user_id, allow_unencrypted = settings.allow_unencrypted, "call settings changed");
    Ok(Json(settings))
}
