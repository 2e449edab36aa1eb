//! The directory: accounts and groups that an identity provider manages. SCIM provisioning
//! (`api::scim`) goes through here, and so will sign-in by OIDC and the LDAP sync: creating,
//! updating and deactivating accounts, and groups whose membership moves people into and out
//! of rooms and roles as the operator mapped them (`[[identity.groups]]`).
//!
//! Every change is on record under the provider's name (`directory:<source>`). A deactivated
//! account's sessions end and its sockets close on every node at once
//! ([`Accounts::set_active_by`], as for an admin's deactivation): a leaver leaves when the
//! provider says so.
//!
//! Accounts are never deleted: their messages are records a compliance officer may need. A
//! provider's delete deactivates.
//!
//! The break-glass accounts (`auth.break_glass_accounts`) are out of every provider's reach:
//! no provider may change, deactivate or regroup them (`403 protected_account`), so a
//! provider that is wrong or compromised cannot lock out the way in for when it is down.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::accounts::{Accounts, UserName, check_display_name};
use crate::audit::{self, Action, Actor, Subject};
use crate::config::GroupMapping;
use crate::error::{ApiError, Result};
use crate::router::Router;
use crate::store::{
    DirectoryGroup, ExternalIdentity, NewUser, RoomId, Store, StoreError, User, UserId,
};

/// Longest external id or e-mail address kept.
pub const MAX_EXTERNAL_TEXT: usize = 256;
/// Longest group name.
pub const MAX_GROUP_NAME: usize = 256;
/// Members whose rooms and roles a group change applies at once.
const SYNC_CONCURRENCY: usize = 32;

/// What a provider says about an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The account's user name (the provider's `userName`, lower-cased).
    pub name: String,
    pub display_name: Option<String>,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub active: bool,
}

/// The directory operations, for every provider.
pub struct Directory {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    accounts: Arc<Accounts>,
    mappings: Vec<GroupMapping>,
    /// The break-glass accounts' names.
    protected: Vec<String>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        accounts: Arc<Accounts>,
        mappings: Vec<GroupMapping>,
        protected: Vec<String>,
    ) -> Self {
        Self {
            store,
            router,
            accounts,
            mappings,
            protected,
        }
    }

    /// Refuse a change by a provider to a break-glass account.
    async fn check_unprotected(&self, users: &[UserId]) -> Result<()> {
        for name in &self.protected {
            if let Some((account, _)) = self.store.user_by_name(name).await?
                && users.contains(&account.id)
            {
                return Err(ApiError::forbidden(
                    "protected_account",
                    format!(
                        "`{name}` is a break-glass account (auth.break_glass_accounts): no \
                         identity provider may change it"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Create an account the provider announced. It has no local password: the person signs
    /// in through the provider. Checked whole before anything is written.
    pub async fn create_user(&self, source: &str, profile: Profile) -> Result<User> {
        let name = UserName::parse(profile.name.clone())?;
        let display_name = profile
            .display_name
            .clone()
            .unwrap_or_else(|| name.as_str().to_string());
        check_display_name(&display_name)?;
        check_external_texts(&profile)?;
        if let Some(external_id) = &profile.external_id
            && self
                .store
                .user_by_external_id(source, external_id)
                .await?
                .is_some()
        {
            return Err(identity_taken());
        }
        let user = self
            .store
            .create_user(NewUser {
                name: name.as_str().to_string(),
                display_name,
                password_hash: None,
                is_admin: false,
                is_bot: false,
            })
            .await?;
        self.store
            .set_external_identity(user.id, source, &identity_of(&profile))
            .await
            .map_err(identity_error)?;
        audit::record(
            self.store.as_ref(),
            Actor::Directory(source),
            Action::UserCreate,
            Subject::User(user.id),
            serde_json::json!({ "name": user.name, "external_id": profile.external_id }),
        )
        .await;
        if !profile.active {
            self.set_active(source, user.id, false).await?;
        }
        self.user(user.id).await
    }

    /// Bring an existing account in line with the provider's profile: display name,
    /// external id, e-mail, and active (deactivating ends its sessions everywhere). The user
    /// name is the account's handle and does not change.
    pub async fn update_user(&self, source: &str, user: &User, profile: Profile) -> Result<User> {
        self.check_unprotected(&[user.id]).await?;
        if profile.name != user.name {
            return Err(ApiError::bad_request(
                "user_name_immutable",
                "an account's user name cannot change",
            ));
        }
        check_external_texts(&profile)?;
        let display_name = profile
            .display_name
            .clone()
            .unwrap_or_else(|| user.display_name.clone());
        check_display_name(&display_name)?;
        let before = self.store.external_identity(user.id, source).await?;
        let identity = identity_of(&profile);
        if let Some(external_id) = &identity.external_id
            && let Some(holder) = self.store.user_by_external_id(source, external_id).await?
            && holder.id != user.id
        {
            return Err(identity_taken());
        }
        let mut changed = Vec::new();
        if display_name != user.display_name {
            self.store.set_display_name(user.id, &display_name).await?;
            changed.push("display_name");
        }
        if before.as_ref() != Some(&identity) {
            self.store
                .set_external_identity(user.id, source, &identity)
                .await
                .map_err(identity_error)?;
            changed.push("identity");
        }
        if !changed.is_empty() {
            audit::record(
                self.store.as_ref(),
                Actor::Directory(source),
                Action::UserUpdate,
                Subject::User(user.id),
                serde_json::json!({ "changed": changed }),
            )
            .await;
        }
        if profile.active != user.active {
            // Checked above: the account is not a protected one.
            self.accounts
                .set_active_by(user.id, profile.active, Actor::Directory(source))
                .await?;
        }
        self.user(user.id).await
    }

    /// Deactivate (every session ends and every socket closes, on every node) or
    /// reactivate an account.
    pub async fn set_active(&self, source: &str, user: UserId, active: bool) -> Result<()> {
        self.check_unprotected(&[user]).await?;
        self.accounts
            .set_active_by(user, active, Actor::Directory(source))
            .await
    }

    /// The account's identity at `source`.
    pub async fn identity(&self, source: &str, user: UserId) -> Result<ExternalIdentity> {
        Ok(self
            .store
            .external_identity(user, source)
            .await?
            .unwrap_or_default())
    }

    /// A group with its first members (at most `max_members`); the members join the rooms
    /// and get the roles its name maps to.
    pub async fn create_group(
        &self,
        source: &str,
        name: &str,
        external_id: Option<&str>,
        members: &[UserId],
        max_members: usize,
    ) -> Result<DirectoryGroup> {
        check_group_name(name)?;
        check_group_size(members.len(), max_members)?;
        if external_id.is_some_and(|id| id.len() > MAX_EXTERNAL_TEXT) {
            return Err(external_too_long());
        }
        let members: Vec<UserId> = members
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.check_unprotected(&members).await?;
        let befores = self.groups_before(&members, &[name]).await?;
        let group = self
            .store
            .create_group(source, name, external_id, &members)
            .await
            .map_err(|err| group_error(err, "a member names no account"))?;
        audit::record(
            self.store.as_ref(),
            Actor::Directory(source),
            Action::GroupCreate,
            Subject::Group(group.id),
            serde_json::json!({ "name": name, "members": members.len() }),
        )
        .await;
        self.sync_users(source, befores).await;
        Ok(group)
    }

    /// Add and remove members (all or nothing); those who came or went are moved into or out
    /// of the mapped rooms and roles.
    pub async fn change_members(
        &self,
        source: &str,
        group: &DirectoryGroup,
        add: &[UserId],
        remove: &[UserId],
        max_members: usize,
    ) -> Result<()> {
        let affected: Vec<UserId> = add
            .iter()
            .chain(remove)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.check_unprotected(&affected).await?;
        let befores = self
            .groups_before(&affected, &[group.name.as_str()])
            .await?;
        let (added, removed) = self
            .store
            .change_group_members(group.id, add, remove, max_members)
            .await
            .map_err(|err| group_error(err, "an added member names no account"))?;
        if added.is_empty() && removed.is_empty() {
            return Ok(());
        }
        self.record_member_change(source, group.id, &added, &removed)
            .await;
        let moved: BTreeSet<UserId> = added.into_iter().chain(removed).collect();
        self.sync_users(
            source,
            befores
                .into_iter()
                .filter(|(user, _)| moved.contains(user))
                .collect(),
        )
        .await;
        Ok(())
    }

    /// Rename a group or change its external id; a new name may map to other rooms.
    pub async fn update_group(
        &self,
        source: &str,
        group: &DirectoryGroup,
        name: &str,
        external_id: Option<&str>,
    ) -> Result<()> {
        check_group_name(name)?;
        if external_id.is_some_and(|id| id.len() > MAX_EXTERNAL_TEXT) {
            return Err(external_too_long());
        }
        if name == group.name && external_id == group.external_id.as_deref() {
            return Ok(());
        }
        let members = self.store.group_members(group.id).await?;
        let befores = self
            .groups_before(&members, &[group.name.as_str(), name])
            .await?;
        self.store
            .update_group(group.id, name, external_id)
            .await
            .map_err(|err| group_error(err, "no such group"))?;
        audit::record(
            self.store.as_ref(),
            Actor::Directory(source),
            Action::GroupChange,
            Subject::Group(group.id),
            serde_json::json!({ "name": name, "previous_name": group.name }),
        )
        .await;
        self.sync_users(source, befores).await;
        Ok(())
    }

    /// Delete a group: its members lose what it gave them.
    pub async fn delete_group(&self, source: &str, group: &DirectoryGroup) -> Result<()> {
        let members = self.store.group_members(group.id).await?;
        let befores = self.groups_before(&members, &[group.name.as_str()]).await?;
        self.store.delete_group(group.id).await?;
        audit::record(
            self.store.as_ref(),
            Actor::Directory(source),
            Action::GroupDelete,
            Subject::Group(group.id),
            serde_json::json!({ "name": group.name, "members": members.len() }),
        )
        .await;
        self.sync_users(source, befores).await;
        Ok(())
    }

    /// Make the user's groups at `source` exactly `names` (what a sign-in's groups claim
    /// says): groups not seen before are created, and the user joins and leaves them, then
    /// moves into and out of the mapped rooms and roles once.
    pub async fn set_user_groups(
        &self,
        source: &str,
        user: UserId,
        names: &[String],
        max_members: usize,
    ) -> Result<()> {
        self.check_unprotected(&[user]).await?;
        let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let current = self.store.user_groups(user, source).await?;
        let before = self.store.group_names_of(user).await?;
        let mut changed = false;
        for group in current.iter().filter(|g| !wanted.contains(g.name.as_str())) {
            self.store
                .change_group_members(group.id, &[], &[user], max_members)
                .await?;
            self.record_member_change(source, group.id, &[], &[user])
                .await;
            changed = true;
        }
        for name in wanted {
            if current.iter().any(|g| g.name == name) {
                continue;
            }
            check_group_name(name)?;
            let group = self.group_named_or_new(source, name).await?;
            self.store
                .change_group_members(group.id, &[user], &[], max_members)
                .await
                .map_err(|err| group_error(err, "no such account"))?;
            self.record_member_change(source, group.id, &[user], &[])
                .await;
            changed = true;
        }
        if changed {
            self.sync_user(source, user, &before).await?;
        }
        Ok(())
    }

    async fn group_named(&self, source: &str, name: &str) -> Result<Option<DirectoryGroup>> {
        let (_, mut groups) = self.store.groups_page(source, Some(name), 0, 1).await?;
        Ok(groups.pop())
    }

    /// The group of `source` named `name`, created (and put on record) if there is none yet.
    async fn group_named_or_new(&self, source: &str, name: &str) -> Result<DirectoryGroup> {
        if let Some(group) = self.group_named(source, name).await? {
            return Ok(group);
        }
        match self.store.create_group(source, name, None, &[]).await {
            Ok(group) => {
                audit::record(
                    self.store.as_ref(),
                    Actor::Directory(source),
                    Action::GroupCreate,
                    Subject::Group(group.id),
                    serde_json::json!({ "name": name, "members": 0 }),
                )
                .await;
                Ok(group)
            }
            // Created at the same moment by another sign-in: use that one.
            Err(StoreError::Conflict("group_exists")) => self
                .group_named(source, name)
                .await?
                .ok_or_else(|| ApiError::conflict("group_exists", "the group changed")),
            Err(err) => Err(err.into()),
        }
    }

    /// The groups each of `users` is in now, read before a change to groups named `names`;
    /// empty when no mapping names any of them (the change then moves nobody anywhere, and
    /// a group of thousands costs no per-member reads).
    async fn groups_before(
        &self,
        users: &[UserId],
        names: &[&str],
    ) -> Result<Vec<(UserId, Vec<String>)>> {
        if !names.iter().any(|name| self.mapping(name).is_some()) {
            return Ok(Vec::new());
        }
        let mut befores = Vec::with_capacity(users.len());
        for &user in users {
            befores.push((user, self.store.group_names_of(user).await?));
        }
        Ok(befores)
    }

    /// Apply a group change to each of its members, [`SYNC_CONCURRENCY`] at a time: the
    /// joins and leaves of many members then share group-commit transactions instead of
    /// each waiting for a commit of its own.
    async fn sync_users(&self, source: &str, befores: Vec<(UserId, Vec<String>)>) {
        use futures_util::StreamExt as _;
        futures_util::stream::iter(befores)
            .for_each_concurrent(SYNC_CONCURRENCY, |(user, before)| async move {
                if let Err(err) = self.sync_user(source, user, &before).await {
                    tracing::warn!(user, error = %err, "could not apply a group change to a user");
                }
            })
            .await;
    }

    /// Apply the mapped rooms and roles after the user's groups changed from `before` to
    /// what the store holds now. Joins every room the groups map to (so a missed join heals
    /// on the next change), leaves the rooms only the lost groups gave, and grants or takes
    /// back the roles the same way. A room that cannot be joined (gone, full, direct) is
    /// noted in the record and does not stop the rest.
    async fn sync_user(&self, source: &str, user: UserId, before: &[String]) -> Result<()> {
        let after = self.store.group_names_of(user).await?;
        let was = self.grants(before);
        let now = self.grants(&after);
        let mut joined = Vec::new();
        let mut left = Vec::new();
        let mut failed = Vec::new();
        for &room in &now.rooms {
            match self.router.directory_join(room, user).await {
                Ok(true) => joined.push(room),
                Ok(false) => {}
                Err(err) => failed.push(serde_json::json!({ "room": room, "code": err.code() })),
            }
        }
        for &room in was.rooms.difference(&now.rooms) {
            match self.router.directory_leave(room, user).await {
                Ok(true) => left.push(room),
                Ok(false) => {}
                Err(err) => failed.push(serde_json::json!({ "room": room, "code": err.code() })),
            }
        }
        let account = self.user(user).await?;
        let mut roles = serde_json::Map::new();
        if let Some(admin) = role_change(was.admin, now.admin, account.is_admin) {
            self.store.set_user_admin(user, admin).await?;
            roles.insert("admin".into(), admin.into());
        }
        if let Some(compliance) = role_change(was.compliance, now.compliance, account.is_compliance)
        {
            self.store.set_user_compliance(user, compliance).await?;
            roles.insert("compliance".into(), compliance.into());
        }
        if !joined.is_empty() || !left.is_empty() || !failed.is_empty() || !roles.is_empty() {
            audit::record(
                self.store.as_ref(),
                Actor::Directory(source),
                Action::GroupSync,
                Subject::User(user),
                serde_json::json!({
                    "groups": after,
                    "joined": joined,
                    "left": left,
                    "failed": failed,
                    "roles": roles,
                }),
            )
            .await;
        }
        Ok(())
    }

    async fn record_member_change(
        &self,
        source: &str,
        group: i64,
        added: &[UserId],
        removed: &[UserId],
    ) {
        audit::record(
            self.store.as_ref(),
            Actor::Directory(source),
            Action::GroupChange,
            Subject::Group(group),
            serde_json::json!({ "added": added, "removed": removed }),
        )
        .await;
    }

    fn mapping(&self, group: &str) -> Option<&GroupMapping> {
        self.mappings.iter().find(|m| m.name == group)
    }

    /// What a set of groups gives, by the mappings.
    fn grants(&self, groups: &[String]) -> Grants {
        let mut grants = Grants::default();
        for mapping in groups.iter().filter_map(|g| self.mapping(g)) {
            grants.rooms.extend(mapping.rooms.iter().copied());
            grants.admin |= mapping.admin;
            grants.compliance |= mapping.compliance;
        }
        grants
    }

    async fn user(&self, id: UserId) -> Result<User> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))
    }
}

#[derive(Debug, Default)]
struct Grants {
    rooms: BTreeSet<RoomId>,
    admin: bool,
    compliance: bool,
}

/// The role to set, if any: granted when a group now gives it, taken back when only lost
/// groups gave it (a role given by hand, which no mapping gave, stays).
fn role_change(was: bool, now: bool, has: bool) -> Option<bool> {
    match (was, now, has) {
        (_, true, false) => Some(true),
        (true, false, true) => Some(false),
        _ => None,
    }
}

fn identity_of(profile: &Profile) -> ExternalIdentity {
    ExternalIdentity {
        external_id: profile.external_id.clone(),
        email: profile.email.clone(),
    }
}

fn check_external_texts(profile: &Profile) -> Result<()> {
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > MAX_EXTERNAL_TEXT);
    if too_long(&profile.external_id) || too_long(&profile.email) {
        return Err(external_too_long());
    }
    Ok(())
}

fn external_too_long() -> ApiError {
    ApiError::bad_request(
        "invalid_value",
        format!("an external id or e-mail address has at most {MAX_EXTERNAL_TEXT} bytes"),
    )
}

fn check_group_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > MAX_GROUP_NAME || name.chars().any(|c| c.is_control())
    {
        return Err(ApiError::bad_request(
            "invalid_group_name",
            format!(
                "a group name has 1 to {MAX_GROUP_NAME} bytes, not all blank, and no control \
                 characters"
            ),
        ));
    }
    Ok(())
}

fn check_group_size(members: usize, max_members: usize) -> Result<()> {
    if members > max_members {
        return Err(group_too_large(max_members));
    }
    Ok(())
}

fn group_too_large(max_members: usize) -> ApiError {
    ApiError::bad_request(
        "group_too_large",
        format!("a group has at most {max_members} members (identity.scim.max_group_members)"),
    )
}

fn identity_taken() -> ApiError {
    ApiError::conflict(
        "identity_taken",
        "another account already has this external id",
    )
}

fn identity_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Conflict("identity_taken") => identity_taken(),
        other => other.into(),
    }
}

fn group_error(err: StoreError, not_found: &'static str) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::bad_request("unknown_member", not_found),
        StoreError::Conflict("group_exists") => {
            ApiError::conflict("group_exists", "a group with this name already exists")
        }
        StoreError::Conflict("group_too_large") => ApiError::bad_request(
            "group_too_large",
            "the change would make the group larger than identity.scim.max_group_members",
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::role_change;

    #[test]
    fn a_group_grants_a_role_and_takes_back_only_what_it_gave() {
        // Gained a granting group: granted, unless already held.
        assert_eq!(role_change(false, true, false), Some(true));
        assert_eq!(role_change(false, true, true), None);
        // Lost the only granting group: taken back.
        assert_eq!(role_change(true, false, true), Some(false));
        // Another group still grants it: kept.
        assert_eq!(role_change(true, true, true), None);
        // Given by hand, never by a group: untouched.
        assert_eq!(role_change(false, false, true), None);
    }
}
