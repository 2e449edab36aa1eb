//! SCIM Users: the account resource, its filters, and changes to it (PATCH paths as Entra ID
//! and Okta send them).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{
    DOC_ERROR, DOC_PATCH, DOC_USER, DOC_USER_BODY, ListQuery, Op, Provisioner, SOURCE, ScimBody,
    ScimErrorBody, ScimQuery, ScimResult, USER_IGNORED, USER_SCHEMA, attribute, bad, boolean,
    check_attributes, each_change, list_response, operations, optional_text, parse_filter,
    resource_id, scim_response,
};
use crate::api::{AppPath, AppState};
use crate::directory::Profile;
use crate::error::{ApiError, ErrorBody};
use crate::store::rfc3339;
use crate::store::{ExternalIdentity, User};

fn user_resource(user: &User, identity: &ExternalIdentity) -> Value {
    let mut resource = json!({
        "schemas": [USER_SCHEMA],
        "id": user.id.to_string(),
        "userName": user.name,
        "displayName": user.display_name,
        "name": { "formatted": user.display_name },
        "active": user.active,
        "meta": {
            "resourceType": "User",
            "created": rfc3339(user.created_at),
            "location": format!("/scim/v2/Users/{}", user.id),
        },
    });
    if let Some(external_id) = &identity.external_id {
        resource["externalId"] = external_id.clone().into();
    }
    if let Some(email) = &identity.email {
        resource["emails"] = json!([{ "value": email, "type": "work", "primary": true }]);
    }
    resource
}

/// The user name a provider's `userName` stands for: SCIM compares user names
/// case-insensitively, Switchboard keeps them lower-case.
fn user_name(value: &str) -> String {
    value.trim().to_lowercase()
}

/// A full User resource (POST, PUT) as a profile. The display name is `displayName`, else
/// `name.formatted`, else the given and family names.
fn profile_of(body: &Map<String, Value>) -> ScimResult<Profile> {
    let mut known = vec!["username", "displayname", "name", "emails", "active"];
    known.extend_from_slice(USER_IGNORED);
    check_attributes(body, USER_SCHEMA, &known)?;
    let name = match attribute(body, "userName") {
        Some(Value::String(name)) => user_name(name),
        _ => {
            return Err(bad(
                "invalid_value",
                "`userName` is required and must be a string",
            ));
        }
    };
    let mut profile = Profile {
        name,
        display_name: None,
        external_id: optional_text(attribute(body, "externalId"), "externalId")?,
        email: None,
        active: match attribute(body, "active") {
            None | Some(Value::Null) => true,
            Some(value) => boolean(value, "active")?,
        },
    };
    profile.display_name = optional_text(attribute(body, "displayName"), "displayName")?;
    if profile.display_name.is_none()
        && let Some(name) = attribute(body, "name")
    {
        profile.display_name = display_name_of(name)?;
    }
    if let Some(emails) = attribute(body, "emails") {
        profile.email = email_of(emails)?;
    }
    Ok(profile)
}

/// `name.formatted`, or the given and family names joined.
fn display_name_of(name: &Value) -> ScimResult<Option<String>> {
    let Value::Object(name) = name else {
        return Err(bad("invalid_value", "`name` must be an object"));
    };
    if let Some(formatted) = optional_text(attribute(name, "formatted"), "name.formatted")? {
        return Ok(Some(formatted));
    }
    let given = optional_text(attribute(name, "givenName"), "name.givenName")?;
    let family = optional_text(attribute(name, "familyName"), "name.familyName")?;
    let joined: Vec<String> = given.into_iter().chain(family).collect();
    Ok((!joined.is_empty()).then(|| joined.join(" ")))
}

/// The primary e-mail address, else the first.
fn email_of(emails: &Value) -> ScimResult<Option<String>> {
    let Value::Array(emails) = emails else {
        return Err(bad("invalid_value", "`emails` must be an array"));
    };
    let value = |email: &Value| optional_text(email.get("value"), "emails.value");
    let primary = emails
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
    match primary.or_else(|| emails.first()) {
        Some(email) => value(email),
        None => Ok(None),
    }
}

async fn load_user(state: &AppState, id: &str) -> ScimResult<User> {
    let id = resource_id(id)?;
    match state.store.user_by_id(id).await? {
        Some(user) if !user.is_bot => Ok(user),
        _ => Err(ApiError::not_found("not_found", "no such user").into()),
    }
}

/// The account as a SCIM User, with its identity at the provider.
async fn resource_of(state: &AppState, user: &User) -> ScimResult<Value> {
    let identity = state.directory.identity(SOURCE, user.id).await?;
    Ok(user_resource(user, &identity))
}

async fn user_response(state: &AppState, status: StatusCode, user: &User) -> ScimResult<Response> {
    let mut response = scim_response(status, resource_of(state, user).await?);
    if status == StatusCode::CREATED
        && let Ok(location) = format!("/scim/v2/Users/{}", user.id).parse()
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List accounts, a page at a time, or find one by `userName`, `externalId` or `id`.
#[utoipa::path(get, path = "/scim/v2/Users", tag = "scim", operation_id = "scim_list_users",
    security(("scim_token" = [])), params(ListQuery),
    responses(
        (status = 200, description = "A SCIM ListResponse (RFC 7644 §3.4.2): `schemas` (the \
            ListResponse URN), `totalResults`, `startIndex`, `itemsPerPage` and `Resources`, \
            the page of Users (bots are not listed), each as `GET /scim/v2/Users/{id}` \
            answers it. A filter finds at most one.",
            body = serde_json::Value, content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn list_users(
    _: Provisioner,
    State(state): State<AppState>,
    ScimQuery(query): ScimQuery<ListQuery>,
) -> ScimResult<Response> {
    let (offset, limit) = query.window(state.config.identity.scim.max_page);
    let Some(filter) = &query.filter else {
        let (total, users) = state.store.people_page(offset, limit).await?;
        let mut resources = Vec::with_capacity(users.len());
        for user in &users {
            resources.push(resource_of(&state, user).await?);
        }
        return Ok(list_response(total, offset, resources));
    };
    let (attribute, value) = parse_filter(filter, &["userName", "externalId", "id"])?;
    let found = match attribute.as_str() {
        "username" => state
            .store
            .user_by_name(&user_name(&value))
            .await?
            .map(|(user, _)| user),
        "externalid" => state.store.user_by_external_id(SOURCE, &value).await?,
        _ => match value.parse() {
            Ok(id) => state.store.user_by_id(id).await?,
            Err(_) => None,
        },
    };
    let mut resources = Vec::new();
    if let Some(user) = found.filter(|u| !u.is_bot) {
        resources.push(resource_of(&state, &user).await?);
    }
    let total = i64::try_from(resources.len()).unwrap_or(0);
    if offset > 0 || limit == 0 {
        resources.clear();
    }
    Ok(list_response(total, offset, resources))
}

/// Create an account the provider manages.
#[utoipa::path(post, path = "/scim/v2/Users", tag = "scim", operation_id = "scim_create_user",
    security(("scim_token" = [])),
    request_body(content = serde_json::Value, content_type = "application/scim+json",
        description = DOC_USER_BODY),
    responses(
        (status = 201, description = DOC_USER, body = serde_json::Value,
            content_type = "application/scim+json",
            headers(("location" = String, description = "`/scim/v2/Users/{id}`"))),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn create_user(
    _: Provisioner,
    State(state): State<AppState>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let profile = profile_of(&body)?;
    let user = state.directory.create_user(SOURCE, profile).await?;
    user_response(&state, StatusCode::CREATED, &user).await
}

/// One account as a SCIM User.
#[utoipa::path(get, path = "/scim/v2/Users/{id}", tag = "scim", operation_id = "scim_get_user",
    security(("scim_token" = [])),
    params(("id" = String, Path, description = "The account id (a non-number names nothing)")),
    responses(
        (status = 200, description = DOC_USER, body = serde_json::Value,
            content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn get_user(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> ScimResult<Response> {
    let user = load_user(&state, &id).await?;
    user_response(&state, StatusCode::OK, &user).await
}

/// Replace an account's attributes with the User sent.
#[utoipa::path(put, path = "/scim/v2/Users/{id}", tag = "scim",
    operation_id = "scim_replace_user", security(("scim_token" = [])),
    params(("id" = String, Path, description = "The account id")),
    request_body(content = serde_json::Value, content_type = "application/scim+json",
        description = DOC_USER_BODY),
    responses(
        (status = 200, description = DOC_USER, body = serde_json::Value,
            content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn replace_user(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let user = load_user(&state, &id).await?;
    let profile = profile_of(&body)?;
    let user = state.directory.update_user(SOURCE, &user, profile).await?;
    user_response(&state, StatusCode::OK, &user).await
}

/// Apply one user attribute change to `profile` (paths are case-insensitive). Attributes of
/// the core schema that Switchboard does not keep, and those of the enterprise extension,
/// are accepted and ignored.
fn patch_user_attribute(
    profile: &mut Profile,
    op: Op,
    path: &str,
    value: Option<&Value>,
) -> ScimResult<()> {
    let lower = path.to_ascii_lowercase();
    let text = |what: &str| match op {
        Op::Remove => Ok(None),
        _ => optional_text(value, what),
    };
    match lower.as_str() {
        "active" => match (op, value) {
            (Op::Remove, _) | (_, None) => {
                return Err(bad("invalid_value", "`active` cannot be removed"));
            }
            (_, Some(value)) => profile.active = boolean(value, "active")?,
        },
        "displayname" => profile.display_name = text("displayName")?,
        "name.formatted" => profile.display_name = text("name.formatted")?,
        "name" => {
            profile.display_name = match (op, value) {
                (Op::Remove, _) | (_, None) => None,
                (_, Some(name)) => display_name_of(name)?,
            }
        }
        "externalid" => profile.external_id = text("externalId")?,
        "username" => {
            let name = text("userName")?.ok_or_else(|| {
                bad(
                    "user_name_immutable",
                    "an account's user name cannot be removed",
                )
            })?;
            profile.name = user_name(&name);
        }
        "emails" => {
            profile.email = match (op, value) {
                (Op::Remove, _) | (_, None) => None,
                (_, Some(emails)) => email_of(emails)?,
            }
        }
        _ if lower.starts_with("emails[") => {
            // `emails[type eq "work"].value`: the one address Switchboard keeps.
            profile.email = text("emails.value")?;
        }
        "name.givenname" | "name.familyname" => {}
        _ if USER_IGNORED.contains(&lower.split(['.', '[']).next().unwrap_or_default()) => {}
        _ if lower.starts_with("urn:ietf:params:scim:schemas:extension:") => {}
        _ => {
            return Err(bad(
                "invalid_path",
                format!("`{path}` is not an attribute of a User"),
            ));
        }
    }
    Ok(())
}

/// Change some of an account's attributes; `active: false` deactivates it everywhere.
///
/// Paths: `active`, `displayName`, `name`, `name.formatted`, `externalId`, `userName`,
/// `emails` and `emails[…].value`; the core schema's other attributes and extension
/// attributes are accepted and ignored.
#[utoipa::path(patch, path = "/scim/v2/Users/{id}", tag = "scim",
    operation_id = "scim_patch_user", security(("scim_token" = [])),
    params(("id" = String, Path, description = "The account id")),
    request_body(content = serde_json::Value, content_type = "application/scim+json",
        description = DOC_PATCH),
    responses(
        (status = 200, description = DOC_USER, body = serde_json::Value,
            content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn patch_user(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let user = load_user(&state, &id).await?;
    let operations = operations(&body, state.config.identity.scim.max_patch_operations)?;
    let identity = state.directory.identity(SOURCE, user.id).await?;
    let mut profile = Profile {
        name: user.name.clone(),
        display_name: Some(user.display_name.clone()),
        external_id: identity.external_id,
        email: identity.email,
        active: user.active,
    };
    each_change(&operations, |op, path, value| {
        patch_user_attribute(&mut profile, op, path, value)
    })?;
    let user = state.directory.update_user(SOURCE, &user, profile).await?;
    user_response(&state, StatusCode::OK, &user).await
}

/// Deactivate an account (accounts are never deleted: their messages are records).
#[utoipa::path(delete, path = "/scim/v2/Users/{id}", tag = "scim",
    operation_id = "scim_delete_user", security(("scim_token" = [])),
    params(("id" = String, Path, description = "The account id")),
    responses(
        (status = 204, description = "Deactivated (or already inactive)"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn delete_user(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> ScimResult<StatusCode> {
    let user = load_user(&state, &id).await?;
    if user.active {
        state.directory.set_active(SOURCE, user.id, false).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
