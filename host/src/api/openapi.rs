//! The OpenAPI 3.1 description of the HTTP API, generated from the code.
//!
//! Every resource module registers its routes through utoipa-axum's `OpenApiRouter`: its
//! `routes!` takes a handler's `#[utoipa::path]` annotation as the route's method and path, so
//! a route and its description are one declaration and no route is served undescribed (the
//! `every_route_is_registered_with_its_description` test below refuses a bare `.route(`).
//! This module adds what all operations share: the document's title and version, the two
//! bearer schemes, and the error body every operation may answer with (`default`).
//!
//! The description is served at `GET /api/v1/openapi.json`, printed by `switchboard openapi`,
//! rendered by the admin console's API reference, and the end-to-end tests validate every
//! response their HTTP client receives against it.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::matrix::MatrixErrorBody;
use super::{AppState, AuthUser};
use crate::error::ErrorBody;

/// The security scheme of the API's access tokens (`POST /api/v1/auth/login`).
pub const BEARER: &str = "bearer";
/// The security scheme of SCIM provisioning tokens (`/scim/v2`).
pub const SCIM_TOKEN: &str = "scim_token";
/// The security scheme of the Matrix surface's access tokens (`/_matrix/client/v3/login`).
pub const MATRIX_TOKEN: &str = "matrix_token";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Switchboard HTTP API",
        description = "The HTTP API of the Switchboard messaging server. Every error answer has \
                       the `ErrorBody` shape: a stable `code` and a human `message`. Real-time \
                       events travel over the WebSocket at `/api/v1/ws` (docs/protocol.md).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "auth", description = "Sign-in, tokens and the caller's own account"),
        (name = "users", description = "Accounts (admins create and change them)"),
        (name = "rooms", description = "Rooms, members, messages, threads and read cursors"),
        (name = "reactions", description = "Reactions and pinned messages"),
        (name = "search", description = "Full-text search over the rooms the caller may read"),
        (name = "mentions", description = "Messages that mention the caller"),
        (name = "presence", description = "Who is online"),
        (name = "files", description = "File uploads, downloads and resumable uploads"),
        (name = "realtime", description = "The WebSocket"),
        (name = "admin", description = "Server administration"),
        (name = "plugins", description = "Installing and managing plugins (admins)"),
        (name = "llm", description = "The governed language model behind plugins"),
        (name = "compliance", description = "Audit log, legal holds, retention and exports"),
        (name = "scim", description = "SCIM 2.0 provisioning (RFC 7644) for identity providers"),
        (name = "oidc", description = "Sign-in with OpenID Connect providers"),
        (name = "webhooks", description = "Incoming webhooks: Slack-compatible posts into a room"),
        (name = "matrix", description = "A subset of the Matrix client-server API, for Matrix bots"),
        (name = "operations", description = "Health, readiness, metrics and this description"),
        (name = "web", description = "The web client and admin console pages"),
    )
)]
struct Document;

/// Every route of the HTTP API with its description (`super::app` serves the routes).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Document::openapi()).routes(routes!(openapi_json))
}

/// The finished description: what the routes registered plus what all operations share.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, described) =
            super::described_routes(&crate::config::Config::default()).split_for_parts();
        finish(described)
    })
}

/// The description as JSON text, made once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serialising a tree of plain maps and strings cannot fail; an empty object would
        // only hide a bug, so say so in the text instead.
        document()
            .to_pretty_json()
            .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
    })
}

/// Add the version, the security schemes and the shared error answer.
fn finish(mut document: OpenApi) -> OpenApi {
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token from `POST /api/v1/auth/login` (or a refresh).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        SCIM_TOKEN,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The SCIM provisioning token the operator configured (`scim.token`).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        MATRIX_TOKEN,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The `access_token` of `POST /_matrix/client/v3/login` (`mx_…`).",
                ))
                .build(),
        ),
    );
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.schemas.insert(
        MatrixErrorBody::name().into_owned(),
        MatrixErrorBody::schema(),
    );
    // Operations that say nothing about security take an access token; public ones say
    // `security(())` in their annotation.
    document.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    for item in document.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
        ]
        .into_iter()
        .flatten()
        {
            add_error_answer(operation);
            let is_matrix = operation
                .tags
                .as_ref()
                .is_some_and(|tags| tags.iter().any(|t| t == "matrix"));
            // Matrix operations that say nothing about security take a Matrix token.
            if is_matrix && operation.security.is_none() {
                operation.security = Some(vec![SecurityRequirement::new(
                    MATRIX_TOKEN,
                    Vec::<String>::new(),
                )]);
            }
        }
    }
    document
}

/// `default`: any status the operation does not list answers with an [`ErrorBody`] (the
/// Matrix operations: a [`MatrixErrorBody`]).
fn add_error_answer(operation: &mut Operation) {
    if operation.responses.responses.contains_key("default") {
        return;
    }
    let is_matrix = operation
        .tags
        .as_ref()
        .is_some_and(|tags| tags.iter().any(|t| t == "matrix"));
    let (description, schema) = if is_matrix {
        (
            "A Matrix error: `errcode`, `error`, and Switchboard's own `switchboard_code`.",
            MatrixErrorBody::name(),
        )
    } else {
        (
            "An error: a stable `code` and a human `message` (docs/protocol.md).",
            ErrorBody::name(),
        )
    };
    let error = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name(schema))))
                .build(),
        )
        .build();
    operation
        .responses
        .responses
        .insert("default".into(), RefOr::T(error));
}

/// This description, as OpenAPI 3.1 JSON.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API",
        content_type = "application/json", body = serde_json::Value)),
)]
async fn openapi_json(AuthUser(_): AuthUser) -> Response {
    ([(CONTENT_TYPE, "application/json")], document_json()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route added with a bare `.route(` or `.route_service(` would be served without a
    /// description; every api module registers its routes with `routes!` instead.
    #[test]
    fn every_route_is_registered_with_its_description() {
        let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut offenders = Vec::new();
        let mut pending = vec![api.clone(), api.with_extension("rs")];
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read src/api") {
                    pending.push(entry.expect("entry").path());
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                // The calls are spelled out here without their dot so this file passes.
                if ["route", "route_service", "nest", "nest_service"]
                    .iter()
                    .any(|name| code.contains(&format!(".{name}(")))
                {
                    offenders.push(format!(
                        "{}:{}: {}",
                        path.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "routes registered without a description (use `routes!` with a \
             #[utoipa::path] handler):\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn the_description_is_openapi_3_1_with_every_operation_answering_errors_in_one_shape() {
        let json: serde_json::Value =
            serde_json::from_str(document_json()).expect("the description is JSON");
        assert_eq!(json["openapi"], "3.1.0");
        assert_eq!(json["info"]["version"], env!("CARGO_PKG_VERSION"));
        let paths = json["paths"].as_object().expect("paths");
        assert!(paths.len() > 60, "only {} paths described", paths.len());
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("path item") {
                let default = &operation["responses"]["default"]["content"]["application/json"];
                // Matrix clients read Matrix's error shape; everything else reads ours.
                let shape = if path.starts_with("/_matrix/") {
                    "#/components/schemas/MatrixErrorBody"
                } else {
                    "#/components/schemas/ErrorBody"
                };
                assert_eq!(default["schema"]["$ref"], shape, "{method} {path}");
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_string()), "operationId {id} used twice");
                assert!(
                    operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                    "{method} {path} has no tag"
                );
            }
        }
    }
}
