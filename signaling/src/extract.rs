//! Extractors that answer with our JSON errors instead of axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use models::{ClassId, ErrorCode, MediaId, PostId, SessionId, UserId};
use serde::de::DeserializeOwned;

use crate::auth::bearer;
use crate::error::AppError;
use crate::AppState;

/// A JSON body; malformed, oversized or mistyped bodies get a 400, 413 or 422 with a code.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(AppJson(value))
    }
}

/// A query string; one that does not fit `T` gets a 422 with a code.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(AppQuery(value))
    }
}

/// The class backend, authenticated by `Authorization: Bearer <KLASS_API_KEY>`.
pub struct Backend;

impl FromRequestParts<AppState> for Backend {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let key = bearer(header)?;
        if !state.api_key.matches(key) {
            return Err(AppError::client(ErrorCode::Unauthorized, "invalid API key"));
        }
        Ok(Backend)
    }
}

/// A user, authenticated by a JWT from the class backend. Membership is checked by the handler.
pub struct User(pub UserId);

impl FromRequestParts<AppState> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = bearer(header)?;
        Ok(User(state.jwt.verify(token)?))
    }
}

/// An id from the path, validated; a bad one is a 422 naming the parameter.
pub fn parse_id<T>(
    raw: String,
    name: &str,
    parse: impl FnOnce(String) -> Result<T, models::IdError>,
) -> Result<T, AppError> {
    parse(raw).map_err(|err| AppError::client(ErrorCode::InvalidRequest, format!("{name}: {err}")))
}

/// `{class_id}` in the path, validated.
pub struct ClassPath(pub ClassId);

impl<S: Send + Sync> FromRequestParts<S> for ClassPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(ClassPath(parse_id(raw, "class_id", ClassId::new)?))
    }
}

/// `{class_id}` and a second id in the path, validated.
async fn class_and_id<T, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
    parse: impl FnOnce(String) -> Result<T, models::IdError>,
) -> Result<(ClassId, T), AppError> {
    let Path((class_raw, raw)) = Path::<(String, String)>::from_request_parts(parts, state).await?;
    Ok((parse_id(class_raw, "class_id", ClassId::new)?, parse_id(raw, name, parse)?))
}

/// `{class_id}/.../{user_id}` in the path, validated.
pub struct MemberPath(pub ClassId, pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let (class_id, user_id) = class_and_id(parts, state, "user_id", UserId::new).await?;
        Ok(MemberPath(class_id, user_id))
    }
}

/// `{class_id}/.../{post_id}` in the path, validated.
pub struct PostPath(pub ClassId, pub PostId);

impl<S: Send + Sync> FromRequestParts<S> for PostPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let (class_id, post_id) = class_and_id(parts, state, "post_id", PostId::new).await?;
        Ok(PostPath(class_id, post_id))
    }
}

/// `{class_id}/.../{media_id}` in the path, validated.
pub struct MediaPath(pub ClassId, pub MediaId);

impl<S: Send + Sync> FromRequestParts<S> for MediaPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let (class_id, media_id) = class_and_id(parts, state, "media_id", MediaId::new).await?;
        Ok(MediaPath(class_id, media_id))
    }
}

/// `{class_id}/sessions/{session_id}` in the path, validated.
pub struct SessionPath(pub ClassId, pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let (class_id, session_id) = class_and_id(parts, state, "session_id", SessionId::new).await?;
        Ok(SessionPath(class_id, session_id))
    }
}
