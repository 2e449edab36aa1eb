//! An LDAP directory or Active Directory (`[identity.ldap]`): password sign-in by binding
//! as the person, and a periodic sync that deactivates accounts the directory disabled or
//! removed (their sessions end on every node) and keeps group memberships — and so the
//! mapped rooms and roles — in line with the directory's groups.
//!
//! Which password sign-ins go to the directory: names that have no account here yet, and
//! accounts the directory made or linked (no local password, or an `ldap` identity). A local
//! account with its own password (the break-glass admin) keeps signing in locally.
//!
//! A user name reaches a filter only after the name rule (no `*`, `(`, `)`, `\` or NUL can
//! pass it) *and* RFC 4515 escaping; an empty password is refused before any bind (an empty
//! simple bind is an anonymous bind, which many directories accept).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};

use crate::accounts::{Accounts, MAX_PASSWORD, UserName};
use crate::auth::{Auth, TokenPair};
use crate::config::{LdapConfig, ScimConfig};
use crate::directory::{Directory, Profile};
use crate::error::{ApiError, Result};
use crate::metrics::Metrics;
use crate::store::{ExternalIdentity, Store, User};

/// The directory source of LDAP accounts and groups.
pub const SOURCE: &str = "ldap";
/// Entries per page of a search: directories cap a plain search (slapd at 500 entries,
/// Active Directory at 1000), so every search that may list many is paged (RFC 2696).
const PAGE: i32 = 500;

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
#[error("the directory: {0}")]
pub struct LdapError(String);

impl From<ldap3::LdapError> for LdapError {
    fn from(err: ldap3::LdapError) -> Self {
        Self(err.to_string())
    }
}

impl From<LdapError> for ApiError {
    fn from(err: LdapError) -> Self {
        tracing::warn!(error = %err, "the LDAP directory did not answer");
        ApiError::unavailable(
            "directory_unavailable",
            "the directory cannot be reached; try again later",
        )
    }
}

/// A person as the directory has them.
#[derive(Debug, Clone)]
struct Person {
    dn: String,
    name: String,
    display_name: Option<String>,
    email: Option<String>,
}

pub struct Ldap {
    config: LdapConfig,
    max_group_members: usize,
    store: Arc<dyn Store>,
    auth: Arc<Auth>,
    accounts: Arc<Accounts>,
    directory: Arc<Directory>,
    metrics: Metrics,
}

impl std::fmt::Debug for Ldap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ldap").finish_non_exhaustive()
    }
}

impl Ldap {
    pub fn new(
        config: LdapConfig,
        scim: &ScimConfig,
        store: Arc<dyn Store>,
        auth: Arc<Auth>,
        accounts: Arc<Accounts>,
        directory: Arc<Directory>,
        metrics: Metrics,
    ) -> Self {
        Self {
            config,
            max_group_members: scim.max_group_members,
            store,
            auth,
            accounts,
            directory,
            metrics,
        }
    }

    /// Whether a password sign-in for `name` goes to the directory (see the module header).
    pub async fn handles(&self, name: &str) -> Result<bool> {
        let Some((user, password)) = self.store.user_by_name(name).await? else {
            return Ok(true);
        };
        Ok(password.is_none()
            || self
                .store
                .external_identity(user.id, SOURCE)
                .await?
                .is_some())
    }

    /// Sign in with the directory's password: find the person, refuse a disabled one, bind
    /// as them, then find or make the account, bring its groups in line, open the session.
    pub async fn login(&self, name: &str, password: &str, client: IpAddr) -> Result<TokenPair> {
        let invalid =
            || ApiError::unauthenticated("invalid_credentials", "wrong user name or password");
        let attempt = self.auth.take_login_attempt(name, client).await?;
        if UserName::parse(name).is_err() || password.is_empty() || password.len() > MAX_PASSWORD {
            attempt.failed("invalid_credentials").await;
            return Err(invalid());
        }
        let mut ldap = self.connect().await?;
        let Some(person) = self.find(&mut ldap, name).await? else {
            attempt.failed("unknown_account").await;
            return Err(invalid());
        };
        if self.is_disabled(&mut ldap, &person.dn).await? {
            attempt.failed("directory_account_disabled").await;
            return Err(ApiError::forbidden(
                "user_deactivated",
                "this account is disabled in the directory",
            ));
        }
        let bound = ldap
            .simple_bind(&person.dn, password)
            .await
            .map_err(LdapError::from)?;
        let groups = if bound.rc == 0 {
            // Back to the service account: the person may not read the groups.
            self.bind_service(&mut ldap).await?;
            self.groups_of(&mut ldap, &person.dn).await?
        } else {
            attempt.failed("wrong_password").await;
            let _ = ldap.unbind().await;
            return Err(invalid());
        };
        let _ = ldap.unbind().await;
        attempt.succeeded();
        let user = self.account_for(&person).await?;
        if let Some(groups) = groups {
            self.directory
                .set_user_groups(SOURCE, user.id, &groups, self.max_group_members)
                .await?;
        }
        self.accounts.login_verified(user, SOURCE, client).await
    }

    /// The account of a person the directory vouched for: the one linked to their DN, else
    /// the one of their name (it has no local password: `handles` said so), else a new one.
    async fn account_for(&self, person: &Person) -> Result<User> {
        let profile = |user_name: String, active: bool| Profile {
            name: user_name,
            display_name: person.display_name.clone(),
            external_id: Some(person.dn.clone()),
            email: person.email.clone(),
            active,
        };
        if let Some(user) = self.store.user_by_external_id(SOURCE, &person.dn).await? {
            let wanted = profile(user.name.clone(), user.active);
            return self.directory.update_user(SOURCE, &user, wanted).await;
        }
        if let Some((user, _)) = self.store.user_by_name(&person.name).await? {
            let wanted = profile(user.name.clone(), user.active);
            return self.directory.update_user(SOURCE, &user, wanted).await;
        }
        if !self.config.create_accounts {
            return Err(ApiError::forbidden(
                "no_account",
                "there is no account for you here; ask an admin to create one",
            ));
        }
        self.directory
            .create_user(SOURCE, profile(person.name.clone(), true))
            .await
    }

    /// Start the periodic sync on this node. Several nodes may each run it: every step is
    /// idempotent (deactivating a deactivated account, setting groups to what they are).
    pub fn spawn_sync(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let every = Duration::from_secs(self.config.sync_interval_secs);
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let outcome = match self.sync().await {
                    Ok(()) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        self.metrics
                            .ldap_last_sync
                            .set(i64::try_from(now).unwrap_or(i64::MAX));
                        "ok"
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "the LDAP sync did not finish");
                        "failed"
                    }
                };
                self.metrics
                    .ldap_syncs
                    .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
                    .inc();
            }
        })
    }

    /// One sync: every account linked to the directory is checked against it.
    pub async fn sync(&self) -> Result<()> {
        let linked = self.store.identities(SOURCE).await?;
        if linked.is_empty() {
            return Ok(());
        }
        let mut ldap = self.connect().await?;
        let everyone = self.people(&mut ldap, &self.filter_for("*")).await?;
        let disabled: BTreeSet<String> = if self.config.disabled_filter.is_empty() {
            BTreeSet::new()
        } else {
            let filter = format!("(&{}{})", self.filter_for("*"), self.config.disabled_filter);
            self.people(&mut ldap, &filter).await?.into_keys().collect()
        };
        let groups = self.all_groups(&mut ldap).await?;
        let _ = ldap.unbind().await;
        for (user, ExternalIdentity { external_id, .. }) in linked {
            let Some(dn) = external_id else { continue };
            // One account's trouble (a break-glass account, a room gone) does not stop the
            // others' sync.
            if let Err(err) = self
                .sync_one(&user, &dn, &everyone, &disabled, &groups)
                .await
            {
                tracing::warn!(user = %user.name, error = %err, "the LDAP sync skipped an account");
            }
        }
        Ok(())
    }

    /// Deactivate `user` if the directory disabled or removed `dn`, else set their groups.
    async fn sync_one(
        &self,
        user: &User,
        dn: &str,
        everyone: &BTreeMap<String, Person>,
        disabled: &BTreeSet<String>,
        groups: &Option<BTreeMap<String, Vec<String>>>,
    ) -> Result<()> {
        let key = dn.to_ascii_lowercase();
        if !everyone.contains_key(&key) || disabled.contains(&key) {
            if user.active {
                tracing::info!(user = %user.name, "the directory disabled or removed an account");
                self.directory.set_active(SOURCE, user.id, false).await?;
            }
            return Ok(());
        }
        if let Some(groups) = groups {
            let names = groups.get(&key).cloned().unwrap_or_default();
            self.directory
                .set_user_groups(SOURCE, user.id, &names, self.max_group_members)
                .await?;
        }
        Ok(())
    }

    async fn connect(&self) -> std::result::Result<ldap3::Ldap, LdapError> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(self.config.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url).await?;
        ldap3::drive!(conn);
        ldap.with_timeout(timeout);
        self.bind_service(&mut ldap).await?;
        Ok(ldap)
    }

    async fn bind_service(&self, ldap: &mut ldap3::Ldap) -> std::result::Result<(), LdapError> {
        ldap.simple_bind(&self.config.bind_dn, self.config.bind_password.expose())
            .await?
            .success()?;
        Ok(())
    }

    /// The user filter for one (escaped) name, or `*` for everyone.
    fn filter_for(&self, escaped: &str) -> String {
        self.config.user_filter.replace("{name}", escaped)
    }

    async fn find(
        &self,
        ldap: &mut ldap3::Ldap,
        name: &str,
    ) -> std::result::Result<Option<Person>, LdapError> {
        let people = self
            .people(ldap, &self.filter_for(&ldap_escape(name)))
            .await?;
        // More than one entry for one name is a directory we cannot trust for this name.
        Ok(match people.len() {
            1 => people.into_values().next(),
            _ => None,
        })
    }

    /// People matching `filter`, by lower-cased DN.
    async fn people(
        &self,
        ldap: &mut ldap3::Ldap,
        filter: &str,
    ) -> std::result::Result<BTreeMap<String, Person>, LdapError> {
        let config = &self.config;
        let attributes = [
            config.user_name_attribute.as_str(),
            config.display_name_attribute.as_str(),
            config.email_attribute.as_str(),
        ];
        let entries = search_all(ldap, &config.user_base, filter, attributes.to_vec()).await?;
        let first = |entry: &SearchEntry, attribute: &str| {
            entry
                .attrs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
                .and_then(|(_, values)| values.first().cloned())
        };
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let name = first(&entry, &config.user_name_attribute)?.to_lowercase();
                let person = Person {
                    name,
                    display_name: first(&entry, &config.display_name_attribute),
                    email: first(&entry, &config.email_attribute),
                    dn: entry.dn.clone(),
                };
                Some((entry.dn.to_ascii_lowercase(), person))
            })
            .collect())
    }

    async fn is_disabled(
        &self,
        ldap: &mut ldap3::Ldap,
        dn: &str,
    ) -> std::result::Result<bool, LdapError> {
        if self.config.disabled_filter.is_empty() {
            return Ok(false);
        }
        let (entries, _) = ldap
            .search(dn, Scope::Base, &self.config.disabled_filter, vec!["1.1"])
            .await?
            .success()?;
        Ok(!entries.is_empty())
    }

    /// The names of the groups `dn` is a member of; `None` when groups are not configured.
    async fn groups_of(
        &self,
        ldap: &mut ldap3::Ldap,
        dn: &str,
    ) -> std::result::Result<Option<Vec<String>>, LdapError> {
        if self.config.group_base.is_empty() {
            return Ok(None);
        }
        let filter = format!(
            "(&{}({}={}))",
            self.config.group_filter,
            self.config.group_member_attribute,
            ldap_escape(dn)
        );
        let entries = search_all(
            ldap,
            &self.config.group_base,
            &filter,
            vec![self.config.group_name_attribute.as_str()],
        )
        .await?;
        Ok(Some(
            entries
                .into_iter()
                .filter_map(|group| self.group_name(&group))
                .collect(),
        ))
    }

    /// Every group, as member DN (lower-cased) → group names; `None` when groups are not
    /// configured.
    async fn all_groups(
        &self,
        ldap: &mut ldap3::Ldap,
    ) -> std::result::Result<Option<BTreeMap<String, Vec<String>>>, LdapError> {
        if self.config.group_base.is_empty() {
            return Ok(None);
        }
        let entries = search_all(
            ldap,
            &self.config.group_base,
            &self.config.group_filter,
            vec![
                self.config.group_name_attribute.as_str(),
                self.config.group_member_attribute.as_str(),
            ],
        )
        .await?;
        let mut by_member: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for group in entries {
            let Some(name) = self.group_name(&group) else {
                continue;
            };
            let members = group
                .attrs
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(&self.config.group_member_attribute))
                .map(|(_, values)| values.clone())
                .unwrap_or_default();
            for member in members {
                by_member
                    .entry(member.to_ascii_lowercase())
                    .or_default()
                    .push(name.clone());
            }
        }
        Ok(Some(by_member))
    }

    fn group_name(&self, group: &SearchEntry) -> Option<String> {
        group
            .attrs
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(&self.config.group_name_attribute))
            .and_then(|(_, values)| values.first().cloned())
    }
}

/// Every entry under `base` matching `filter`, read page by page.
async fn search_all(
    ldap: &mut ldap3::Ldap,
    base: &str,
    filter: &str,
    attributes: Vec<&str>,
) -> std::result::Result<Vec<SearchEntry>, LdapError> {
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE)),
    ];
    let mut search = ldap
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attributes)
        .await?;
    let mut entries = Vec::new();
    while let Some(entry) = search.next().await? {
        entries.push(SearchEntry::construct(entry));
    }
    search.finish().await.success()?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use ldap3::ldap_escape;

    #[test]
    fn names_reach_a_filter_escaped() {
        // The name rule refuses these already; escaping is the second wall.
        assert_eq!(ldap_escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(ldap_escape("erin"), "erin");
    }
}
