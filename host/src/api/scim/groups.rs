//! SCIM Groups: the group resource, member lists and the PATCH operations on them (Okta's
//! value lists, Entra ID's `members[value eq "…"]` paths), applied whole or not at all.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{
    DOC_ERROR, DOC_GROUP, DOC_GROUP_BODY, DOC_PATCH, GROUP_SCHEMA, ListQuery, Op, Provisioner,
    ResourceQuery, SOURCE, ScimBody, ScimErrorBody, ScimQuery, ScimResult, attribute, bad,
    check_attributes, each_change, excludes_members, list_response, operations, optional_text,
    parse_filter, resource_id, scim_response,
};
use crate::api::{AppPath, AppState};
use crate::error::{ApiError, ErrorBody};
use crate::store::rfc3339;
use crate::store::{DirectoryGroup, UserId};

async fn group_resource(
    state: &AppState,
    group: &DirectoryGroup,
    with_members: bool,
) -> ScimResult<Value> {
    let mut resource = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id.to_string(),
        "displayName": group.name,
        "meta": {
            "resourceType": "Group",
            "created": rfc3339(group.created_at),
            "location": format!("/scim/v2/Groups/{}", group.id),
        },
    });
    if let Some(external_id) = &group.external_id {
        resource["externalId"] = external_id.clone().into();
    }
    if with_members {
        let members: Vec<Value> = state
            .store
            .group_members(group.id)
            .await?
            .into_iter()
            .map(|id| json!({ "value": id.to_string(), "$ref": format!("/scim/v2/Users/{id}") }))
            .collect();
        resource["members"] = members.into();
    }
    Ok(resource)
}

async fn load_group(state: &AppState, id: &str) -> ScimResult<DirectoryGroup> {
    let id = resource_id(id)?;
    state
        .store
        .group(SOURCE, id)
        .await?
        .ok_or_else(|| ApiError::not_found("not_found", "no such group").into())
}

/// Member ids from `[{"value": "7"}, …]`, checked against the size limit before anything
/// else is read.
fn member_ids(value: &Value, max_members: usize) -> ScimResult<Vec<UserId>> {
    let Value::Array(members) = value else {
        return Err(bad("invalid_value", "`members` must be an array"));
    };
    if members.len() > max_members {
        return Err(bad(
            "group_too_large",
            format!("a group has at most {max_members} members (identity.scim.max_group_members)"),
        ));
    }
    members
        .iter()
        .map(|member| match member.get("value") {
            Some(Value::String(id)) => id.parse().map_err(|_| {
                bad(
                    "unknown_member",
                    format!("the member `{id}` is not a user id of this server"),
                )
            }),
            _ => Err(bad("invalid_value", "a member needs a string `value`")),
        })
        .collect()
}

/// `members[value eq "7"]`: the one member a remove names.
fn member_in_path(path: &str) -> ScimResult<Option<UserId>> {
    let Some(filter) = path
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("members["))
        .and_then(|_| path[8..].strip_suffix(']'))
    else {
        return Ok(None);
    };
    let (attribute, value) = parse_filter(filter, &["value"])?;
    debug_assert_eq!(attribute, "value");
    value.parse().map(Some).map_err(|_| {
        bad(
            "unknown_member",
            format!("the member `{value}` is not a user id of this server"),
        )
    })
}

/// List the groups the provider pushed, a page at a time, or find one by `displayName`.
#[utoipa::path(get, path = "/scim/v2/Groups", tag = "scim", operation_id = "scim_list_groups",
    security(("scim_token" = [])), params(ListQuery),
    responses(
        (status = 200, description = "A SCIM ListResponse (RFC 7644 §3.4.2): `schemas` (the \
            ListResponse URN), `totalResults`, `startIndex`, `itemsPerPage` and `Resources`, \
            the page of Groups, each as `GET /scim/v2/Groups/{id}` answers it (without \
            `members` when `excludedAttributes` names them).",
            body = serde_json::Value, content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn list_groups(
    _: Provisioner,
    State(state): State<AppState>,
    ScimQuery(query): ScimQuery<ListQuery>,
) -> ScimResult<Response> {
    let (offset, limit) = query.window(state.config.identity.scim.max_page);
    let name = match &query.filter {
        Some(filter) => Some(parse_filter(filter, &["displayName"])?.1),
        None => None,
    };
    let (total, groups) = state
        .store
        .groups_page(SOURCE, name.as_deref(), offset, limit)
        .await?;
    let mut resources = Vec::with_capacity(groups.len());
    for group in &groups {
        resources.push(
            group_resource(
                &state,
                group,
                !excludes_members(query.excluded_attributes.as_deref()),
            )
            .await?,
        );
    }
    Ok(list_response(total, offset, resources))
}

/// `displayName`, `externalId` and `members` of a full Group resource.
fn group_of(
    body: &Map<String, Value>,
    max_members: usize,
) -> ScimResult<(String, Option<String>, Vec<UserId>)> {
    check_attributes(body, GROUP_SCHEMA, &["displayname", "members"])?;
    let name = match attribute(body, "displayName") {
        Some(Value::String(name)) => name.clone(),
        _ => {
            return Err(bad(
                "invalid_value",
                "`displayName` is required and must be a string",
            ));
        }
    };
    let external_id = optional_text(attribute(body, "externalId"), "externalId")?;
    let members = match attribute(body, "members") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => member_ids(value, max_members)?,
    };
    Ok((name, external_id, members))
}

/// Create a group; its members join the rooms and get the roles its name maps to
/// (`identity.groups`).
#[utoipa::path(post, path = "/scim/v2/Groups", tag = "scim", operation_id = "scim_create_group",
    security(("scim_token" = [])),
    request_body(content = serde_json::Value, content_type = "application/scim+json",
        description = DOC_GROUP_BODY),
    responses(
        (status = 201, description = DOC_GROUP, body = serde_json::Value,
            content_type = "application/scim+json",
            headers(("location" = String, description = "`/scim/v2/Groups/{id}`"))),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn create_group(
    _: Provisioner,
    State(state): State<AppState>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let max_members = state.config.identity.scim.max_group_members;
    let (name, external_id, members) = group_of(&body, max_members)?;
    let group = state
        .directory
        .create_group(SOURCE, &name, external_id.as_deref(), &members, max_members)
        .await?;
    let mut response = scim_response(
        StatusCode::CREATED,
        group_resource(&state, &group, true).await?,
    );
    if let Ok(location) = format!("/scim/v2/Groups/{}", group.id).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// One group, with its members unless `excludedAttributes` names them.
#[utoipa::path(get, path = "/scim/v2/Groups/{id}", tag = "scim", operation_id = "scim_get_group",
    security(("scim_token" = [])),
    params(("id" = String, Path, description = "The group id (a non-number names nothing)"),
        ResourceQuery),
    responses(
        (status = 200, description = DOC_GROUP, body = serde_json::Value,
            content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn get_group(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    ScimQuery(query): ScimQuery<ResourceQuery>,
) -> ScimResult<Response> {
    let group = load_group(&state, &id).await?;
    let with_members = !excludes_members(query.excluded_attributes.as_deref());
    Ok(scim_response(
        StatusCode::OK,
        group_resource(&state, &group, with_members).await?,
    ))
}

/// Replace a group's name, external id and exact member set.
#[utoipa::path(put, path = "/scim/v2/Groups/{id}", tag = "scim",
    operation_id = "scim_replace_group", security(("scim_token" = [])),
    params(("id" = String, Path, description = "The group id")),
    request_body(content = serde_json::Value, content_type = "application/scim+json",
        description = DOC_GROUP_BODY),
    responses(
        (status = 200, description = DOC_GROUP, body = serde_json::Value,
            content_type = "application/scim+json"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn replace_group(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let group = load_group(&state, &id).await?;
    let max_members = state.config.identity.scim.max_group_members;
    let (name, external_id, members) = group_of(&body, max_members)?;
    apply_group_change(
        &state,
        &group,
        GroupChange {
            name: Some(name),
            external_id: Some(external_id),
            members: Some(members.into_iter().collect()),
            ..GroupChange::default()
        },
    )
    .await?;
    let group = load_group(&state, &id).await?;
    Ok(scim_response(
        StatusCode::OK,
        group_resource(&state, &group, true).await?,
    ))
}

/// What a PUT or PATCH asks of a group, gathered and checked before anything is applied.
#[derive(Debug, Default)]
struct GroupChange {
    name: Option<String>,
    external_id: Option<Option<String>>,
    /// The exact member set (replace).
    members: Option<BTreeSet<UserId>>,
    add: BTreeSet<UserId>,
    remove: BTreeSet<UserId>,
    remove_all: bool,
}

fn patch_group_attribute(
    change: &mut GroupChange,
    op: Op,
    path: &str,
    value: Option<&Value>,
    max_members: usize,
) -> ScimResult<()> {
    if let Some(member) = member_in_path(path)? {
        if op != Op::Remove {
            return Err(bad(
                "invalid_path",
                "a `members[value eq …]` path is only for remove",
            ));
        }
        change.add.remove(&member);
        change.remove.insert(member);
        return Ok(());
    }
    match (path.to_ascii_lowercase().as_str(), op) {
        ("displayname", Op::Add | Op::Replace) => match value {
            Some(Value::String(name)) => change.name = Some(name.clone()),
            _ => return Err(bad("invalid_value", "`displayName` must be a string")),
        },
        ("externalid", Op::Remove) => change.external_id = Some(None),
        ("externalid", _) => change.external_id = Some(optional_text(value, "externalId")?),
        ("members", Op::Add) => {
            for member in member_ids(value.unwrap_or(&Value::Null), max_members)? {
                change.remove.remove(&member);
                change.add.insert(member);
            }
        }
        ("members", Op::Remove) => match value {
            // Okta removes with the members as the value; no value removes them all.
            None => {
                change.remove_all = true;
                change.add.clear();
            }
            Some(value) => {
                for member in member_ids(value, max_members)? {
                    change.add.remove(&member);
                    change.remove.insert(member);
                }
            }
        },
        ("members", Op::Replace) => {
            let members = member_ids(value.unwrap_or(&Value::Null), max_members)?;
            change.members = Some(members.into_iter().collect());
            change.add.clear();
            change.remove.clear();
            change.remove_all = false;
        }
        ("displayname", Op::Remove) => {
            return Err(bad(
                "invalid_value",
                "a group's `displayName` cannot be removed",
            ));
        }
        ("id", _) => {}
        _ => {
            return Err(bad(
                "invalid_path",
                format!("`{path}` is not an attribute of a Group"),
            ));
        }
    }
    Ok(())
}

/// Change a group's name, external id or members, all or nothing.
///
/// Paths: `displayName`, `externalId`, `members` (add; remove with the members as the value,
/// or without a value to remove them all; replace) and `members[value eq "<id>"]` (remove
/// only).
#[utoipa::path(patch, path = "/scim/v2/Groups/{id}", tag = "scim",
    operation_id = "scim_patch_group", security(("scim_token" = [])),
    params(("id" = String, Path, description = "The group id")),
    request_body(content = serde_json::Value, content_type = "application/scim+json",
        description = DOC_PATCH),
    responses(
        (status = 204, description = "Changed"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn patch_group(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    ScimBody(body): ScimBody,
) -> ScimResult<StatusCode> {
    let group = load_group(&state, &id).await?;
    let scim = &state.config.identity.scim;
    let operations = operations(&body, scim.max_patch_operations)?;
    let mut change = GroupChange::default();
    each_change(&operations, |op, path, value| {
        patch_group_attribute(&mut change, op, path, value, scim.max_group_members)
    })?;
    apply_group_change(&state, &group, change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rename first (a clash refuses the whole request before members move), then change the
/// members in one transaction.
async fn apply_group_change(
    state: &AppState,
    group: &DirectoryGroup,
    change: GroupChange,
) -> ScimResult<()> {
    let max_members = state.config.identity.scim.max_group_members;
    if change.name.is_some() || change.external_id.is_some() {
        let name = change.name.as_deref().unwrap_or(&group.name);
        let external_id = match &change.external_id {
            Some(external_id) => external_id.as_deref(),
            None => group.external_id.as_deref(),
        };
        state
            .directory
            .update_group(SOURCE, group, name, external_id)
            .await?;
    }
    let current: BTreeSet<UserId> = state
        .store
        .group_members(group.id)
        .await?
        .into_iter()
        .collect();
    let (add, remove): (Vec<UserId>, Vec<UserId>) = match change.members {
        Some(wanted) => (
            wanted.difference(&current).copied().collect(),
            current.difference(&wanted).copied().collect(),
        ),
        None => {
            let remove = if change.remove_all {
                current.iter().copied().collect()
            } else {
                change.remove.into_iter().collect()
            };
            (change.add.into_iter().collect(), remove)
        }
    };
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    // Renamed above: the group as it is now decides which mapping applies.
    let group = load_group(state, &group.id.to_string()).await?;
    state
        .directory
        .change_members(SOURCE, &group, &add, &remove, max_members)
        .await?;
    Ok(())
}

/// Delete a group; its members lose what it gave them.
#[utoipa::path(delete, path = "/scim/v2/Groups/{id}", tag = "scim",
    operation_id = "scim_delete_group", security(("scim_token" = [])),
    params(("id" = String, Path, description = "The group id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "default", description = DOC_ERROR, content(
            (ScimErrorBody = "application/scim+json"), (ErrorBody = "application/json"))),
    ))]
pub(super) async fn delete_group(
    _: Provisioner,
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> ScimResult<StatusCode> {
    let group = load_group(&state, &id).await?;
    state.directory.delete_group(SOURCE, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::member_in_path;

    #[test]
    fn a_member_path_names_one_member() {
        assert_eq!(
            member_in_path(r#"members[value eq "42"]"#).unwrap(),
            Some(42)
        );
        assert_eq!(member_in_path("members").unwrap(), None);
        assert!(member_in_path(r#"members[value eq "x"]"#).is_err());
        assert!(member_in_path(r#"members[display eq "42"]"#).is_err());
    }
}
