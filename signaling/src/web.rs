//! The browser call page, compiled into the binary: no build step, no other file to deploy.
//!
//! The page is split into ES modules by job (`call.js` wires them: `prejoin.js`, `connection.js`,
//! `tiles.js`, `roster.js`, `hands.js`, `netquality.js`, `moderation.js`, `strings.js`, `state.js`,
//! `e2ee.js` and its worker `e2ee-worker.js`); they load from this same origin, which the
//! Content-Security-Policy allows and nothing else (workers included: `worker-src` falls back to
//! `default-src 'self'`).

use axum::extract::Path;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const CALL_HTML: &str = include_str!("../web/call.html");
const MEDIA_HTML: &str = include_str!("../web/media.html");

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file under `/web/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("call.js", JAVASCRIPT, include_str!("../web/call.js")),
    ("page.js", JAVASCRIPT, include_str!("../web/page.js")),
    ("state.js", JAVASCRIPT, include_str!("../web/state.js")),
    ("strings.js", JAVASCRIPT, include_str!("../web/strings.js")),
    ("connection.js", JAVASCRIPT, include_str!("../web/connection.js")),
    ("tiles.js", JAVASCRIPT, include_str!("../web/tiles.js")),
    ("roster.js", JAVASCRIPT, include_str!("../web/roster.js")),
    ("moderation.js", JAVASCRIPT, include_str!("../web/moderation.js")),
    ("ice.js", JAVASCRIPT, include_str!("../web/ice.js")),
    ("reconnect.js", JAVASCRIPT, include_str!("../web/reconnect.js")),
    ("e2ee.js", JAVASCRIPT, include_str!("../web/e2ee.js")),
    ("e2ee-worker.js", JAVASCRIPT, include_str!("../web/e2ee-worker.js")),
    ("sframe.js", JAVASCRIPT, include_str!("../web/sframe.js")),
    ("prejoin.js", JAVASCRIPT, include_str!("../web/prejoin.js")),
    ("hands.js", JAVASCRIPT, include_str!("../web/hands.js")),
    ("netquality.js", JAVASCRIPT, include_str!("../web/netquality.js")),
    ("call.css", CSS, include_str!("../web/call.css")),
    ("media.js", JAVASCRIPT, include_str!("../web/media.js")),
    ("media-upload.js", JAVASCRIPT, include_str!("../web/media-upload.js")),
    ("media-review.js", JAVASCRIPT, include_str!("../web/media-review.js")),
    ("media-strings.js", JAVASCRIPT, include_str!("../web/media-strings.js")),
    ("media.css", CSS, include_str!("../web/media.css")),
    ("home.css", CSS, include_str!("../web/home.css")),
];

/// The page loads nothing but itself: no third-party script can read the token in the fragment,
/// and no referrer carries the page's URL elsewhere.
pub(crate) const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-cache"),
];

/// `/call/{class_id}`: the same page for every class; the page reads the class from its URL and the
/// user's token from the fragment, which browsers never send to the server.
pub async fn call_page(Path(_class_id): Path<String>) -> Response {
    (SECURITY_HEADERS, Html(CALL_HTML)).into_response()
}

/// `/media/{class_id}`: the class's photos and videos (`media.html`: `media.js` wires
/// `media-upload.js`, a tus client, `media-review.js`, faces and regions, and `media-strings.js`).
/// Like the call page, the same page for every class, the token in the fragment.
pub async fn media_page(Path(_class_id): Path<String>) -> Response {
    (SECURITY_HEADERS, Html(MEDIA_HTML)).into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    (SECURITY_HEADERS, [(header::CONTENT_TYPE, *content_type)], *body).into_response()
}
