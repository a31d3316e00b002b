//! The OpenAPI document served at `/openapi.json`: what each handler's `#[utoipa::path]` says, plus
//! the answers every operation shares, added here in one place so that no handler forgets them.
//!
//! The shared answers come from the extractors and layers all handlers go through: a bad id in the
//! path (422), missing credentials (401), a body that is not JSON or too large (400, 413), too many
//! requests (429) and an unavailable dependency or a full node (503). Ids and free text carry the
//! `pattern` and `maxLength` the server checks (`models::ids`, `models::names`), so a request the
//! document accepts is not refused for its shape.

use axum::Json;
use models::{ApiError, ClassId, ErrorCode, MediaId, PostId, SessionId, UserId};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Klass visio and media server",
        description = "Class directory sync for the class backend, and what users may do in their classes. \
                       Errors are always JSON `{code, message}` with a stable `code`. Every operation may \
                       answer 429 `rate_limited` with `Retry-After`; a method an endpoint does not have \
                       is answered 405 `method_not_allowed` with `Allow`."
    ),
    paths(
        crate::api::put_class, crate::api::get_class, crate::api::delete_class, crate::api::put_member,
        crate::api::delete_member, crate::api::capabilities, crate::api::healthz, crate::api::readyz,
        crate::api::metrics, openapi_json,
        crate::api_media::create_post, crate::api_media::announce_media, crate::api_media::media_status,
        crate::api_media::put_chunk, crate::api_media::get_post, crate::api_media::publish_post,
        crate::api_media::media_faces, crate::api_media::put_regions, crate::api_media::list_posts,
        crate::tus::options, crate::tus::create, crate::tus::head, crate::tus::patch,
        crate::tus::terminate, crate::api::sessions, crate::api::attendance,
        crate::privacy::erase_user, crate::privacy::scheduled, crate::visio::visio_ws,
        crate::turn::ice_servers_endpoint, crate::visio::settings::get_settings,
        crate::visio::settings::put_settings
    ),
    components(schemas(ApiError, ErrorCode, ClassId, UserId, PostId, MediaId, SessionId)),
    modifiers(&SecuritySchemes, &SharedResponses, &LinkNames),
    tags(
        (name = "sync", description = "Class backend → server. Bearer KLASS_API_KEY."),
        (name = "user", description = "Users, with a JWT minted by the class backend."),
        (name = "media", description = "Posts, photos and videos: resumable uploads (tus 1.0 or Content-Range \
                                         chunks) checked against the tier, \
                                         processing jobs, the faces preview, publishing and signed links."),
        (name = "ops", description = "Probes, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

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

/// Responses link to the operations their ids feed (a new post to its media, a new medium to its
/// upload), so that clients and schemathesis' stateful phase can follow them. utoipa 5.5
/// serializes a link's `operationId` as `operation_id`; this moves it under its OpenAPI name.
struct LinkNames;

impl Modify for LinkNames {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for response in operation.responses.responses.values_mut() {
                    let RefOr::T(response) = response else { continue };
                    for link in response.links.values_mut() {
                        let RefOr::T(link) = link else { continue };
                        if !link.operation_id.is_empty() {
                            let id = std::mem::take(&mut link.operation_id);
                            link.extensions
                                .get_or_insert_with(Default::default)
                                .insert("operationId".to_owned(), id.into());
                        }
                    }
                }
            }
        }
    }
}

/// Operations that answer only from memory: no database, no store, no admission control.
const NEVER_UNAVAILABLE: [&str; 2] = ["/healthz", "/openapi.json"];

/// A shared answer: its status, the component it is stored under, and when an operation has it.
struct Shared {
    status: &'static str,
    name: &'static str,
    applies: fn(&str, &Operation) -> bool,
    response: fn() -> Response,
}

const SHARED: [Shared; 6] = [
    Shared { status: "400", name: "MalformedRequest", applies: has_json_body, response: malformed },
    Shared { status: "401", name: "Unauthorized", applies: is_secured, response: unauthorized },
    Shared { status: "413", name: "PayloadTooLarge", applies: has_json_body, response: too_large },
    Shared { status: "422", name: "InvalidRequest", applies: has_input, response: invalid },
    Shared { status: "429", name: "RateLimited", applies: always, response: rate_limited },
    Shared { status: "503", name: "Unavailable", applies: may_be_unavailable, response: unavailable },
];

/// Adds the [`SHARED`] answers to every operation they apply to, as references to
/// `#/components/responses`. An operation that documents a status itself keeps its own text.
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut used = std::collections::BTreeSet::new();
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations(item) {
                let applicable: Vec<&Shared> =
                    SHARED.iter().filter(|shared| (shared.applies)(path, operation)).collect();
                let responses = &mut operation.responses.responses;
                for shared in applicable {
                    if !responses.contains_key(shared.status) {
                        responses.insert(
                            shared.status.to_owned(),
                            RefOr::Ref(Ref::from_response_name(shared.name)),
                        );
                        used.insert(shared.name);
                    }
                }
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        for shared in SHARED.iter().filter(|shared| used.contains(shared.name)) {
            components.responses.insert(shared.name.to_owned(), RefOr::T((shared.response)()));
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn always(_: &str, _: &Operation) -> bool {
    true
}

fn is_secured(_: &str, operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|security| !security.is_empty())
}

fn has_json_body(_: &str, operation: &Operation) -> bool {
    operation.request_body.as_ref().is_some_and(|body| body.content.contains_key("application/json"))
}

/// Ids in the path, query parameters or a JSON body: each can be refused as invalid.
fn has_input(path: &str, operation: &Operation) -> bool {
    let has_parameters = operation.parameters.as_ref().is_some_and(|parameters| {
        parameters
            .iter()
            .any(|parameter| matches!(parameter.parameter_in, ParameterIn::Path | ParameterIn::Query))
    });
    has_parameters || has_json_body(path, operation)
}

fn may_be_unavailable(path: &str, _: &Operation) -> bool {
    !NEVER_UNAVAILABLE.contains(&path)
}

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(Ref::from_schema_name("ApiError"))).build(),
    )
}

fn retry_after() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
        .description(Some("Seconds to wait before trying again"))
        .build()
}

fn malformed() -> Response {
    error_response("malformed_request: the body is not JSON, or not sent as application/json").build()
}

fn unauthorized() -> Response {
    error_response("unauthorized: missing, malformed, forged or expired credentials").build()
}

fn too_large() -> Response {
    error_response("payload_too_large: the body is larger than the server accepts").build()
}

fn invalid() -> Response {
    error_response(
        "invalid_request: a parameter or a field is invalid, e.g. an id outside its pattern or \
         longer than its maxLength",
    )
    .build()
}

fn rate_limited() -> Response {
    error_response(
        "rate_limited: too many requests from this address or user, try again after Retry-After \
         seconds; too_many_uploads: the class already has the most files uploading at once",
    )
    .header("Retry-After", retry_after())
    .build()
}

fn unavailable() -> Response {
    error_response(
        "unavailable: a dependency (database, object store) is unreachable; server_busy: this node \
         admits no more calls for now, try again after Retry-After seconds",
    )
    .header("Retry-After", retry_after())
    .build()
}
