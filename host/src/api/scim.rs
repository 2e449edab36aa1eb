//! SCIM 2.0 provisioning (RFC 7643 and 7644): `/scim/v2/Users` and `/scim/v2/Groups` for
//! identity providers that push accounts and groups (Entra ID, Okta, …), with the bearer
//! token the operator configured (`[identity.scim]`). The protocol lives here; what a change
//! does (accounts, deactivation everywhere, group-mapped rooms and roles, audit) is the
//! [`Directory`](crate::directory::Directory)'s.
//!
//! Requests are checked whole before anything is written: an attribute the SCIM schemas do
//! not define (outside an extension the request declares), a malformed filter, a PATCH path
//! we do not know or a group past its size limit is refused with a SCIM error and changes
//! nothing. Attributes the core schema defines but Switchboard does not keep (titles, phone
//! numbers, addresses, passwords) are accepted and ignored, as providers send them.
//!
//! Accounts are never deleted (their messages are records): `DELETE /Users/{id}` deactivates.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppQuery, AppState, bearer_token, constant_time_eq, parse_json};
use crate::error::{ApiError, ErrorBody};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const CONTENT_TYPE: &str = "application/scim+json";
/// The directory source SCIM writes as.
const SOURCE: &str = "scim";
/// Longest filter accepted.
const MAX_FILTER: usize = 1024;

/// Core User attributes (RFC 7643 §4.1) besides those Switchboard keeps: accepted, ignored.
const USER_IGNORED: &[&str] = &[
    "nickname",
    "profileurl",
    "title",
    "usertype",
    "preferredlanguage",
    "locale",
    "timezone",
    "password",
    "phonenumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509certificates",
];

// What the OpenAPI description says of the SCIM documents. They are built as JSON here, not
// from types, so their shapes are described in words.
const DOC_ERROR: &str = "A SCIM error (RFC 7644 §3.12) as `application/scim+json`. A request \
    refused before SCIM sees it (a `%00` in the URL, a path that is not UTF-8) gets the API's \
    usual `ErrorBody` as `application/json`.";
const DOC_USER: &str = "A SCIM User (RFC 7643 §4.1): `schemas` (the core User URN), `id` (the \
    account id, as a string), `userName`, `displayName`, `name` (`formatted`: the display \
    name), `active`, `meta` (`resourceType` `User`, `created`, `location`); `externalId` and \
    `emails` (one address: `value`, `type` `work`, `primary` true) when the provider set them.";
const DOC_GROUP: &str = "A SCIM Group (RFC 7643 §4.2): `schemas` (the core Group URN), `id` (a \
    string), `displayName`, `meta` (`resourceType` `Group`, `created`, `location`); \
    `externalId` when the provider set it; `members` (each `value`: a user id as a string, \
    `$ref`: `/scim/v2/Users/{id}`) unless `excludedAttributes` names `members`.";
const DOC_USER_BODY: &str = "A full SCIM User (RFC 7643 §4.1), as `application/scim+json` (or \
    `application/json`). `schemas` must list the core User URN; `userName` is required. Kept: \
    `userName` (lower-cased), `displayName` (else `name.formatted`, else `name.givenName` and \
    `name.familyName`), `externalId`, `emails` (the primary address, else the first) and \
    `active` (default true). The core schema's other attributes (titles, phone numbers, \
    passwords, …) are accepted and ignored, as are an extension's attributes under its URN \
    when `schemas` lists it; any other attribute is refused (`unknown_attribute`).";
const DOC_GROUP_BODY: &str = "A full SCIM Group (RFC 7643 §4.2), as `application/scim+json` (or \
    `application/json`). `schemas` must list the core Group URN; `displayName` is required; \
    `externalId` and `members` (`[{\"value\": \"<user id>\"}]`, at most \
    `identity.scim.max_group_members`) are kept. An extension's attributes under its URN \
    are accepted and ignored when `schemas` lists it; any other attribute is refused \
    (`unknown_attribute`).";
const DOC_PATCH: &str = "A SCIM PatchOp (RFC 7644 §3.5.2), as `application/scim+json` (or \
    `application/json`): `schemas` lists the PatchOp URN and `Operations` holds at most \
    `identity.scim.max_patch_operations` operations `{\"op\": \"add\" | \"replace\" | \
    \"remove\" (any case), \"path\": …, \"value\": …}`. An operation without `path` has an \
    object `value` whose keys are the paths. All operations are checked before any applies.";

mod groups;
mod users;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(service_provider_config))
        .routes(routes!(resource_types))
        .routes(routes!(schemas))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::replace_user,
            users::patch_user,
            users::delete_user
        ))
        .routes(routes!(groups::list_groups, groups::create_group))
        .routes(routes!(
            groups::get_group,
            groups::replace_group,
            groups::patch_group,
            groups::delete_group
        ))
}

// ------------------------------------------------------------------ protocol plumbing

/// An error in SCIM's shape (RFC 7644 §3.12), with our stable code beside it.
#[derive(Debug)]
pub struct ScimError(ApiError);

impl From<ApiError> for ScimError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<crate::store::StoreError> for ScimError {
    fn from(err: crate::store::StoreError) -> Self {
        Self(err.into())
    }
}

/// An error as SCIM answers it (RFC 7644 §3.12), with Switchboard's stable `code` beside.
#[derive(Debug, Serialize, ToSchema)]
struct ScimErrorBody {
    /// Always `["urn:ietf:params:scim:api:messages:2.0:Error"]`.
    schemas: Vec<String>,
    /// The HTTP status, as a string (`"404"`).
    status: String,
    /// What went wrong, for people.
    detail: String,
    /// Switchboard's stable error code, as in every other error answer.
    code: String,
    /// SCIM's error type (`invalidFilter`, `uniqueness`, `mutability`, `invalidValue`, …);
    /// only on `400` and `409` answers.
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    scim_type: Option<String>,
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let body = self.0.body();
        let kind = scim_type(&body.code, status);
        let error = ScimErrorBody {
            schemas: vec![ERROR_SCHEMA.to_string()],
            status: status.as_u16().to_string(),
            detail: body.message,
            code: body.code,
            scim_type: kind.map(str::to_string),
        };
        scim_response(status, json!(error))
    }
}

/// SCIM's `scimType` for our codes (only defined for 400 and 409).
fn scim_type(code: &str, status: StatusCode) -> Option<&'static str> {
    Some(match code {
        "invalid_filter" => "invalidFilter",
        "invalid_path" => "invalidPath",
        "no_target" => "noTarget",
        "user_name_immutable" => "mutability",
        "user_exists" | "group_exists" | "identity_taken" => "uniqueness",
        "invalid_syntax"
        | "malformed_json"
        | "invalid_body"
        | "invalid_utf8"
        | "invalid_query"
        | "unsupported_media_type" => "invalidSyntax",
        "too_many_operations" => "tooMany",
        _ if status == StatusCode::BAD_REQUEST => "invalidValue",
        _ => return None,
    })
}

type ScimResult<T> = Result<T, ScimError>;

fn scim_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn bad(code: &'static str, message: impl Into<String>) -> ScimError {
    ScimError(ApiError::bad_request(code, message))
}

/// The provider, proven by the configured bearer token. SCIM that is not enabled answers
/// 404, as if the endpoint did not exist.
struct Provisioner;

impl FromRequestParts<AppState> for Provisioner {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ScimResult<Self> {
        let scim = &state.config.identity.scim;
        let Some(expected) = scim.token.as_ref().filter(|_| scim.enabled) else {
            return Err(
                ApiError::not_found("scim_disabled", "SCIM provisioning is not enabled").into(),
            );
        };
        match bearer_token(parts) {
            Some(given) if constant_time_eq(expected.expose().as_bytes(), given.as_bytes()) => {
                Ok(Self)
            }
            _ => Err(ApiError::unauthenticated(
                "invalid_scim_token",
                "send the configured SCIM token as `Authorization: Bearer …`",
            )
            .into()),
        }
    }
}

/// Query parameters whose parse failure (`startIndex=abc`) is answered as a SCIM error too.
struct ScimQuery<T>(T);

impl<T, S> FromRequestParts<S> for ScimQuery<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ScimResult<Self> {
        let AppQuery(query) = AppQuery::<T>::from_request_parts(parts, state).await?;
        Ok(Self(query))
    }
}

/// A JSON object sent as `application/scim+json` (or `application/json`).
struct ScimBody(Map<String, Value>);

impl FromRequest<AppState> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &AppState) -> ScimResult<Self> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.starts_with("application/scim+json") || v.starts_with("application/json")
            });
        if !is_json {
            return Err(bad(
                "unsupported_media_type",
                "send the body as `Content-Type: application/scim+json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(
                    "body_too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::bad_request("unreadable_body", "the request body could not be read")
            }
        })?;
        match parse_json::<Value>(&bytes)? {
            Value::Object(object) => Ok(Self(object)),
            _ => Err(bad("invalid_syntax", "the body must be a JSON object")),
        }
    }
}

/// `startIndex` (1-based), `count`, `filter` and `excludedAttributes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `attribute eq "value"`, the one form providers send to find a resource: on Users
    /// `userName`, `externalId` or `id`; on Groups `displayName` (at most 1024 bytes).
    filter: Option<String>,
    /// The 1-based index of the first result (default 1).
    start_index: Option<i64>,
    /// Results per page at most (default and ceiling: `identity.scim.max_page`).
    count: Option<i64>,
    /// Comma-separated attributes to leave out; only `members` (on Groups) has an effect.
    excluded_attributes: Option<String>,
}

impl ListQuery {
    /// Offset and limit, with `count` clamped to the configured page.
    fn window(&self, max_page: usize) -> (i64, i64) {
        let start = self.start_index.unwrap_or(1).max(1);
        let max = i64::try_from(max_page).unwrap_or(i64::MAX);
        let count = self.count.unwrap_or(max).clamp(0, max);
        (start - 1, count)
    }
}

/// Whether `excludedAttributes` leaves out a group's members (Entra ID asks so when it only
/// wants to know a group exists).
fn excludes_members(excluded: Option<&str>) -> bool {
    excluded.is_some_and(|a| {
        a.split(',')
            .any(|a| a.trim().eq_ignore_ascii_case("members"))
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ResourceQuery {
    /// Comma-separated attributes to leave out; only `members` has an effect.
    excluded_attributes: Option<String>,
}

/// A filter of the one form providers send to match a resource: `attribute eq "value"`.
fn parse_filter(filter: &str, allowed: &[&str]) -> ScimResult<(String, String)> {
    let unsupported = || {
        bad(
            "invalid_filter",
            format!(
                "only `attribute eq \"value\"` filters are supported, on {}",
                allowed.join(", ")
            ),
        )
    };
    if filter.len() > MAX_FILTER {
        return Err(bad(
            "invalid_filter",
            format!("a filter has at most {MAX_FILTER} bytes"),
        ));
    }
    let filter = filter.trim();
    let (attribute, rest) = filter
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let (operator, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let attribute = attribute.to_ascii_lowercase();
    if !operator.eq_ignore_ascii_case("eq")
        || !allowed.iter().any(|a| a.eq_ignore_ascii_case(&attribute))
    {
        return Err(unsupported());
    }
    let value: String = serde_json::from_str(value.trim()).map_err(|_| {
        bad(
            "invalid_filter",
            "the filter's value must be one double-quoted string",
        )
    })?;
    Ok((attribute, value))
}

fn list_response(total: i64, start: i64, resources: Vec<Value>) -> Response {
    scim_response(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start + 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

/// A resource id: ours are numbers; anything else names nothing.
fn resource_id(id: &str) -> ScimResult<i64> {
    id.parse()
        .map_err(|_| ApiError::not_found("not_found", "no such resource").into())
}

/// Refuse attributes the declared schemas do not define. `known` are lower-case core
/// attribute names; an extension's attributes sit under its URN, which `schemas` must list.
fn check_attributes(body: &Map<String, Value>, core: &str, known: &[&str]) -> ScimResult<()> {
    let schemas: Vec<&str> = match body.get("schemas") {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => {
            return Err(bad(
                "invalid_syntax",
                format!("`schemas` must be an array listing `{core}`"),
            ));
        }
    };
    if !schemas.iter().any(|s| s.eq_ignore_ascii_case(core)) {
        return Err(bad(
            "invalid_syntax",
            format!("`schemas` must list `{core}`"),
        ));
    }
    for key in body.keys() {
        let lower = key.to_ascii_lowercase();
        let common = matches!(lower.as_str(), "schemas" | "id" | "externalid" | "meta");
        let extension = schemas.iter().any(|s| s.eq_ignore_ascii_case(key));
        if !common && !extension && !known.contains(&lower.as_str()) {
            return Err(bad(
                "unknown_attribute",
                format!("`{key}` is not an attribute of the declared schemas"),
            ));
        }
    }
    Ok(())
}

/// An attribute by name, case-insensitively (SCIM attribute names are).
fn attribute<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn optional_text(value: Option<&Value>, what: &str) -> ScimResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(bad("invalid_value", format!("`{what}` must be a string"))),
    }
}

/// `active` as a boolean; Entra ID sends it as the string `"True"` or `"False"` in PATCH.
fn boolean(value: &Value, what: &str) -> ScimResult<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(bad(
            "invalid_value",
            format!("`{what}` must be true or false"),
        )),
    }
}

// ------------------------------------------------------------------ discovery

/// What this SCIM service supports (RFC 7643 §5).
#[utoipa::path(get, path = "/scim/v2/ServiceProviderConfig", tag = "scim",
    operation_id = "scim_service_provider_config", security(("scim_token" = [])),
    responses(
        (status = 200, description = "A SCIM ServiceProviderConfig (RFC 7643 §5): `patch` and \
            `filter` supported (`filter.maxResults`: `identity.scim.max_page`); `bulk`, \
            `changePassword`, `sort` and `etag` not; `authenticationSchemes`: one \
            `oauthbearertoken`; `documentationUri` and `meta`.",
            body = serde_json::Value, content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
async fn service_provider_config(_: Provisioner, State(state): State<AppState>) -> Response {
    let scim = &state.config.identity.scim;
    scim_response(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/switchboard/switchboard/blob/main/docs/operations.md",
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": scim.max_page },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": false },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "The token set in identity.scim.token",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig" },
        }),
    )
}

/// The resource types served: User and Group (RFC 7643 §6).
#[utoipa::path(get, path = "/scim/v2/ResourceTypes", tag = "scim",
    operation_id = "scim_resource_types", security(("scim_token" = [])),
    responses(
        (status = 200, description = "A SCIM ListResponse (RFC 7644 §3.4.2) of two ResourceTypes \
            (RFC 7643 §6): `User` at `/Users` and `Group` at `/Groups`, each with `schemas`, \
            `id`, `name`, `endpoint`, `schema` (its core schema URN) and `meta`.",
            body = serde_json::Value, content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
async fn resource_types(_: Provisioner) -> Response {
    let types = vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users", "schema": USER_SCHEMA,
            "meta": { "resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User" },
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "schema": GROUP_SCHEMA,
            "meta": { "resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/Group" },
        }),
    ];
    list_response(2, 0, types)
}

/// The attributes Switchboard keeps, described as RFC 7643 §7 asks.
#[utoipa::path(get, path = "/scim/v2/Schemas", tag = "scim", operation_id = "scim_schemas",
    security(("scim_token" = [])),
    responses(
        (status = 200, description = "A SCIM ListResponse (RFC 7644 §3.4.2) of two Schemas (RFC \
            7643 §7): the core User schema (`userName`, `displayName`, `active`, `emails`, \
            `name`) and the core Group schema (`displayName`, `members`), each with `id`, \
            `name`, `description`, `attributes` and `meta`.",
            body = serde_json::Value, content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
async fn schemas(_: Provisioner) -> Response {
    let attribute = |name: &str, kind: &str, required: bool, mutability: &str, uniqueness: &str| {
        json!({
            "name": name, "type": kind, "multiValued": false, "required": required,
            "caseExact": false, "mutability": mutability, "returned": "default",
            "uniqueness": uniqueness,
        })
    };
    let user = json!({
        "id": USER_SCHEMA, "name": "User", "description": "A Switchboard account",
        "attributes": [
            attribute("userName", "string", true, "immutable", "server"),
            attribute("displayName", "string", false, "readWrite", "none"),
            attribute("active", "boolean", false, "readWrite", "none"),
            {
                "name": "emails", "type": "complex", "multiValued": true, "required": false,
                "mutability": "readWrite", "returned": "default",
                "subAttributes": [attribute("value", "string", false, "readWrite", "none")],
            },
            {
                "name": "name", "type": "complex", "multiValued": false, "required": false,
                "mutability": "readWrite", "returned": "default",
                "subAttributes": [attribute("formatted", "string", false, "readWrite", "none")],
            },
        ],
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{USER_SCHEMA}") },
    });
    let group = json!({
        "id": GROUP_SCHEMA, "name": "Group", "description": "A group mapped to rooms and roles",
        "attributes": [
            attribute("displayName", "string", true, "readWrite", "server"),
            {
                "name": "members", "type": "complex", "multiValued": true, "required": false,
                "mutability": "readWrite", "returned": "default",
                "subAttributes": [attribute("value", "string", false, "immutable", "none")],
            },
        ],
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{GROUP_SCHEMA}") },
    });
    list_response(2, 0, vec![user, group])
}

// ------------------------------------------------------------------ PATCH

/// One PATCH operation (RFC 7644 §3.5.2): the op name is case-insensitive (Entra ID sends
/// `Replace`).
struct Operation {
    op: Op,
    path: Option<String>,
    value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

fn operations(body: &Map<String, Value>, max: usize) -> ScimResult<Vec<Operation>> {
    let schemas_ok = matches!(body.get("schemas"), Some(Value::Array(list))
        if list.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA))));
    if !schemas_ok {
        return Err(bad(
            "invalid_syntax",
            format!("a PATCH request's `schemas` must list `{PATCH_SCHEMA}`"),
        ));
    }
    if let Some(key) = body
        .keys()
        .find(|k| !k.eq_ignore_ascii_case("schemas") && !k.eq_ignore_ascii_case("Operations"))
    {
        return Err(bad(
            "unknown_attribute",
            format!("`{key}` is not part of a PATCH request"),
        ));
    }
    let Some(Value::Array(list)) = attribute(body, "Operations") else {
        return Err(bad("invalid_syntax", "`Operations` must be an array"));
    };
    if list.len() > max {
        return Err(bad(
            "too_many_operations",
            format!(
                "a PATCH request has at most {max} operations (identity.scim.max_patch_operations)"
            ),
        ));
    }
    list.iter()
        .map(|operation| {
            let Value::Object(operation) = operation else {
                return Err(bad("invalid_syntax", "an operation must be an object"));
            };
            if let Some(key) = operation.keys().find(|k| {
                !["op", "path", "value"]
                    .iter()
                    .any(|known| k.eq_ignore_ascii_case(known))
            }) {
                return Err(bad(
                    "unknown_attribute",
                    format!("`{key}` is not part of a PATCH operation"),
                ));
            }
            let op = match attribute(operation, "op").and_then(Value::as_str) {
                Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
                Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
                Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
                _ => {
                    return Err(bad(
                        "invalid_syntax",
                        "an operation's `op` is add, replace or remove",
                    ));
                }
            };
            let path = optional_text(attribute(operation, "path"), "path")?;
            let value = attribute(operation, "value").cloned();
            if op != Op::Remove && value.is_none() {
                return Err(bad("invalid_syntax", "add and replace need a `value`"));
            }
            if op == Op::Remove && path.is_none() {
                return Err(bad("no_target", "remove needs a `path`"));
            }
            Ok(Operation { op, path, value })
        })
        .collect()
}

/// Each attribute change the operations ask for, in order: an operation with a `path` is
/// one; one without is an object whose keys are the paths (RFC 7644 §3.5.2.1, .3).
fn each_change(
    operations: &[Operation],
    mut apply: impl FnMut(Op, &str, Option<&Value>) -> ScimResult<()>,
) -> ScimResult<()> {
    for operation in operations {
        match (&operation.path, &operation.value) {
            (Some(path), value) => apply(operation.op, path, value.as_ref())?,
            (None, Some(Value::Object(values))) => {
                for (path, value) in values {
                    apply(operation.op, path, Some(value))?;
                }
            }
            (None, _) => {
                return Err(bad(
                    "invalid_syntax",
                    "an operation without a `path` needs an object `value`",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn filters_of_the_form_providers_send_parse_and_others_are_refused() {
        let users = ["userName", "externalId", "id"];
        assert_eq!(
            parse_filter(r#"userName eq "Alice""#, &users).unwrap(),
            ("username".into(), "Alice".into())
        );
        assert_eq!(
            parse_filter(r#"externalId   EQ "a \"quoted\" id""#, &users).unwrap(),
            ("externalid".into(), "a \"quoted\" id".into())
        );
        for bad_filter in [
            r#"userName co "a""#,
            r#"title eq "x""#,
            r#"userName eq "a" and active eq true"#,
            r#"userName eq a"#,
            "userName",
            "",
        ] {
            let err = parse_filter(bad_filter, &users).unwrap_err();
            assert_eq!(err.0.code(), "invalid_filter", "{bad_filter}");
        }
        let long = format!(r#"userName eq "{}""#, "a".repeat(2000));
        assert_eq!(
            parse_filter(&long, &users).unwrap_err().0.code(),
            "invalid_filter"
        );
    }

    #[test]
    fn unknown_attributes_are_refused_and_declared_extensions_pass() {
        let body = |value: Value| value.as_object().unwrap().clone();
        let known = ["username", "displayname"];
        let extension = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        assert!(
            check_attributes(
                &body(
                    json!({ "schemas": [USER_SCHEMA, extension], "userName": "a", extension: {} })
                ),
                USER_SCHEMA,
                &known
            )
            .is_ok()
        );
        let unknown = check_attributes(
            &body(json!({ "schemas": [USER_SCHEMA], "userName": "a", "favouriteColour": "red" })),
            USER_SCHEMA,
            &known,
        )
        .unwrap_err();
        assert_eq!(unknown.0.code(), "unknown_attribute");
        let undeclared = check_attributes(
            &body(json!({ "schemas": [USER_SCHEMA], extension: {} })),
            USER_SCHEMA,
            &known,
        )
        .unwrap_err();
        assert_eq!(undeclared.0.code(), "unknown_attribute");
        let no_schemas =
            check_attributes(&body(json!({ "userName": "a" })), USER_SCHEMA, &known).unwrap_err();
        assert_eq!(no_schemas.0.code(), "invalid_syntax");
    }
}
