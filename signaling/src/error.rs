//! `AppError`: what handlers return. Client mistakes become a 4xx with a code and a message; anything
//! else becomes a 500 "Something went wrong" whose cause is logged by the `observe` middleware, not here.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use models::{ApiError, ErrorCode};

use crate::auth::AuthError;
use crate::directory::DirectoryError;

#[derive(Debug)]
pub enum AppError {
    /// The client's mistake or a refusal: answered as is, not logged as an error.
    Client(ApiError),
    /// A dependency is down: 503, logged.
    Unavailable(anyhow::Error),
    /// A bug or unexpected failure: 500, logged, never explained to the client.
    Internal(anyhow::Error),
}

impl AppError {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError::Client(ApiError::new(code, message))
    }

    /// The one answer for "not an approved member", whether the class exists or not.
    pub fn not_a_member() -> AppError {
        AppError::client(ErrorCode::NotAMember, "you are not an approved member of this class")
    }
}

/// The cause of a 5xx, left on the response for the `observe` middleware to log.
#[derive(Clone)]
pub struct ErrorCause(pub Arc<anyhow::Error>);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (body, cause) = match self {
            AppError::Client(body) => (body, None),
            AppError::Unavailable(err) => {
                (ApiError::new(ErrorCode::Unavailable, "Service temporarily unavailable"), Some(err))
            }
            AppError::Internal(err) => {
                (ApiError::new(ErrorCode::Internal, "Something went wrong"), Some(err))
            }
        };
        // Every code maps to a valid status; INTERNAL_SERVER_ERROR is only a safety net.
        let status =
            StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(body)).into_response();
        if let Some(err) = cause {
            response.extensions_mut().insert(ErrorCause(Arc::new(err)));
        }
        response
    }
}

impl From<DirectoryError> for AppError {
    fn from(err: DirectoryError) -> AppError {
        match err {
            DirectoryError::ClassNotFound => AppError::client(ErrorCode::NotFound, "class not found"),
            DirectoryError::MemberLimitReached { .. } => {
                AppError::client(ErrorCode::MemberLimitReached, err.to_string())
            }
            DirectoryError::AdminLimitReached { .. } => {
                AppError::client(ErrorCode::AdminLimitReached, err.to_string())
            }
            DirectoryError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => AppError::Unavailable(err.into()),
            DirectoryError::Database(_) | DirectoryError::CorruptRow(_) => AppError::Internal(err.into()),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(err: AuthError) -> AppError {
        AppError::client(ErrorCode::Unauthorized, err.to_string())
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> AppError {
        let code = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidRequest,
            _ => ErrorCode::MalformedRequest,
        };
        AppError::client(code, rejection.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> AppError {
        AppError::client(ErrorCode::InvalidRequest, rejection.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> AppError {
        AppError::client(ErrorCode::InvalidRequest, rejection.body_text())
    }
}

impl From<BytesRejection> for AppError {
    fn from(rejection: BytesRejection) -> AppError {
        let code = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::MalformedRequest,
        };
        AppError::client(code, rejection.body_text())
    }
}

/// A plain HTTP request to a WebSocket endpoint.
impl From<WebSocketUpgradeRejection> for AppError {
    fn from(rejection: WebSocketUpgradeRejection) -> AppError {
        AppError::client(
            ErrorCode::MalformedRequest,
            format!("this endpoint takes WebSocket upgrades only: {}", rejection.body_text()),
        )
    }
}
