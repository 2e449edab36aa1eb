//! Accounts: creating them, signing in (a password or a plugin-checked credential, then the
//! `on-login` policy), changing and resetting passwords, deactivating and logging out. The
//! HTTP API, the command line and first start all go through here, so the rules (names,
//! password policy, display names), the audit records and the end of sessions are the same
//! whichever door was used.
//!
//! Ending sessions always closes their sockets on every node ([`Hub::end_sessions`]); a
//! process without a hub (the command line) ends them in the store, and running nodes close
//! the sockets at their next session re-check.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::{self, Action, Actor, Subject};
use crate::auth::{
    Auth, LoginAttempt, TokenPair, check_password_policy, hash_password, verify_password,
};
use crate::config::AuthConfig;
use crate::error::{ApiError, Result};
use crate::hub::Hub;
use crate::names;
use crate::router::hooks::{AuthOutcome, AuthRequest, Decision, HookKind, Hooks};
use crate::store::{NewUser, Store, User, UserId};

/// Longest plugin credential accepted.
pub const MAX_CREDENTIAL: usize = 4096;
/// Longest password accepted (argon2 hashes anything; this bounds the work).
pub const MAX_PASSWORD: usize = 1024;

/// A user name that follows the rule ([`names::is_user_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if names::is_user_name(&name) {
            Ok(Self(name))
        } else {
            Err(ApiError::bad_request(
                "invalid_user_name",
                "a user name has 1 to 32 characters: a-z, 0-9, '.', '_' or '-', starting with \
                 a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a new account needs.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub password: String,
    pub display_name: Option<String>,
    pub admin: bool,
}

/// Validate and create an account: the name rule, the password policy, the display-name
/// rule; then the audit record naming `actor`.
pub async fn create(
    store: &dyn Store,
    policy: &AuthConfig,
    account: NewAccount,
    actor: Actor<'_>,
) -> Result<User> {
    let name = UserName::parse(account.name)?;
    check_password_policy(policy, name.as_str(), &account.password)?;
    let display_name = account
        .display_name
        .unwrap_or_else(|| name.as_str().to_string());
    check_display_name(&display_name)?;
    let hash = hash_password(account.password).await?;
    let user = store
        .create_user(NewUser {
            name: name.0,
            display_name,
            password_hash: Some(hash),
            is_admin: account.admin,
            is_bot: false,
        })
        .await?;
    audit::record(
        store,
        actor,
        Action::UserCreate,
        Subject::User(user.id),
        serde_json::json!({ "name": user.name, "admin": user.is_admin }),
    )
    .await;
    Ok(user)
}

/// Deactivate or reactivate an account. Deactivating ends every session in the store and
/// returns their ids (for the caller's hub, if it has one, to close their sockets).
pub async fn set_active(
    store: &dyn Store,
    user: UserId,
    active: bool,
    actor: Actor<'_>,
) -> Result<Vec<String>> {
    store.set_user_active(user, active).await?;
    let ended = if active {
        Vec::new()
    } else {
        store.revoke_user_sessions(user).await?
    };
    let action = if active {
        Action::UserActivate
    } else {
        Action::UserDeactivate
    };
    audit::record(
        store,
        actor,
        action,
        Subject::User(user),
        serde_json::json!({ "sessions_ended": ended.len() }),
    )
    .await;
    Ok(ended)
}

/// Grant or take away the compliance role: an admin's act (or an operator's at the command
/// line), on record.
pub async fn set_compliance(
    store: &dyn Store,
    user: UserId,
    compliance: bool,
    actor: Actor<'_>,
) -> Result<()> {
    store.set_user_compliance(user, compliance).await?;
    let action = if compliance {
        Action::ComplianceGrant
    } else {
        Action::ComplianceRevoke
    };
    audit::record(
        store,
        actor,
        action,
        Subject::User(user),
        serde_json::json!({}),
    )
    .await;
    Ok(())
}

/// 1 to 100 characters, something visible, and no control, bidi-override or zero-width
/// characters: those let one user's name render as another's (or reverse the text after
/// it). Look-alike letters stay allowed (names are written in every script), which is why
/// clients show the unique user name beside the display name.
pub fn check_display_name(display_name: &str) -> Result<()> {
    let hidden = |c: char| c.is_control() || crate::names::is_invisible_or_bidi(c);
    if display_name.trim().is_empty() || display_name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "a display name has 1 to 100 characters, not all blank",
        ));
    }
    if display_name.chars().any(hidden) {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "a display name may not contain control, bidirectional-override or zero-width \
             characters",
        ));
    }
    Ok(())
}

/// How someone signs in.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A user name and password, checked by the server.
    Password { username: String, password: String },
    /// A credential a plugin's `authenticate` hook checks (`api-key`, …).
    Plugin {
        method: String,
        username: Option<String>,
        credential: String,
    },
}

/// The account operations that need the running server: sessions, plugins, sockets.
pub struct Accounts {
    store: Arc<dyn Store>,
    auth: Arc<Auth>,
    hub: Arc<Hub>,
    hooks: Arc<dyn Hooks>,
    policy: AuthConfig,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    pub fn new(
        store: Arc<dyn Store>,
        auth: Arc<Auth>,
        hub: Arc<Hub>,
        hooks: Arc<dyn Hooks>,
        policy: AuthConfig,
    ) -> Self {
        Self {
            store,
            auth,
            hub,
            hooks,
            policy,
        }
    }

    /// Create an account (see [`create`]).
    pub async fn create(&self, account: NewAccount, actor: Actor<'_>) -> Result<User> {
        create(self.store.as_ref(), &self.policy, account, actor).await
    }

    /// Sign in from `client`, then let the `on-login` policy decide. The session is opened
    /// before the policy runs (it needs the user), and closed again if the policy denies.
    ///
    /// Every successful sign-in is on record (`auth.login`, with the method and address);
    /// failures are recorded where they are decided (`auth.login_failed`).
    pub async fn login(&self, credentials: Credentials, client: IpAddr) -> Result<TokenPair> {
        let (pair, method) = match credentials {
            Credentials::Password { username, password } => {
                if username.len() > names::MAX_USER_NAME * 2 || password.len() > MAX_PASSWORD {
                    return Err(ApiError::unauthenticated(
                        "invalid_credentials",
                        "wrong user name or password",
                    ));
                }
                if !self.policy.local_password_allowed(&username) {
                    // Decided by the configuration alone, before any lookup: the answer
                    // tells nothing about whether the account exists.
                    let attempt = self.auth.take_login_attempt(&username, client).await?;
                    attempt.failed("local_passwords_disabled").await;
                    return Err(local_passwords_disabled());
                }
                let pair = self.auth.login(&username, &password, client).await?;
                (pair, "password".to_string())
            }
            Credentials::Plugin {
                method,
                username,
                credential,
            } => {
                let pair = self
                    .plugin_login(method.clone(), username, credential, client)
                    .await?;
                (pair, method)
            }
        };
        self.after_sign_in(pair, &method, client).await
    }

    /// Open a session for a user whose identity another party established (an OpenID
    /// provider's signed ID token), with the same checks and record as any sign-in: an
    /// active person (`user_deactivated`, `bot_account`), the `on-login` policy, `auth.login`.
    pub async fn login_verified(
        &self,
        user: User,
        method: &str,
        client: IpAddr,
    ) -> Result<TokenPair> {
        let pair = self.auth.login_as(user).await?;
        self.after_sign_in(pair, method, client).await
    }

    /// The `on-login` policy (closing the session again if it denies), then the record.
    async fn after_sign_in(
        &self,
        pair: TokenPair,
        method: &str,
        client: IpAddr,
    ) -> Result<TokenPair> {
        if self.hooks.implements(HookKind::OnLogin)
            && let Decision::Deny { plugin, reason } = self.hooks.on_login(&pair.user).await
        {
            if let Some((session_id, _)) = pair.refresh_token.split_once('.') {
                self.auth.logout(session_id).await?;
            }
            return Err(ApiError::Rejected {
                plugin,
                code: "login_denied".into(),
                reason,
            });
        }
        audit::record(
            self.store.as_ref(),
            Actor::User(pair.user.id),
            Action::Login,
            Subject::User(pair.user.id),
            serde_json::json!({ "method": method, "address": client.to_string() }),
        )
        .await;
        Ok(pair)
    }

    /// A login whose credentials a plugin checks (`authenticate` hook). The plugin maps
    /// them to an existing user; the session is an ordinary one. Failures count against the
    /// same login budgets as passwords (keyed by method and user name, and by address).
    async fn plugin_login(
        &self,
        method: String,
        username: Option<String>,
        credential: String,
        client: IpAddr,
    ) -> Result<TokenPair> {
        if !names::is_identifier(&method, names::MAX_LOGIN_METHOD)
            || credential.is_empty()
            || credential.len() > MAX_CREDENTIAL
        {
            return Err(ApiError::bad_request(
                "invalid_login_request",
                format!(
                    "a `method` login needs a `credential` of 1 to {MAX_CREDENTIAL} bytes (no \
                     `password`), and the method 1 to {} characters of [a-z0-9_-]",
                    names::MAX_LOGIN_METHOD
                ),
            ));
        }
        if username
            .as_ref()
            .is_some_and(|u| u.len() > names::MAX_USER_NAME * 2)
        {
            return Err(ApiError::bad_request(
                "invalid_login_request",
                "a user name has at most 64 bytes",
            ));
        }
        let budget_key = format!("{method}:{}", username.as_deref().unwrap_or(""));
        let attempt = self.auth.take_login_attempt(&budget_key, client).await?;
        let outcome = if self.hooks.implements(HookKind::Authenticate) {
            self.hooks
                .authenticate(AuthRequest {
                    method: method.clone(),
                    username,
                    credential,
                })
                .await
        } else {
            AuthOutcome::Unhandled
        };
        match outcome {
            AuthOutcome::Accept { plugin, user_name } => {
                let Some((user, _)) = self.store.user_by_name(&user_name).await? else {
                    tracing::warn!(%plugin, user = %user_name, "authenticate accepted an unknown user");
                    attempt.failed("unknown_account").await;
                    return Err(ApiError::unauthenticated(
                        "invalid_credentials",
                        "the credentials do not belong to an account",
                    ));
                };
                attempt.succeeded();
                self.auth.login_as(user).await
            }
            AuthOutcome::Reject { plugin, reason } => {
                attempt.failed("credentials_rejected").await;
                Err(ApiError::Rejected {
                    plugin,
                    code: "credentials_rejected".into(),
                    reason,
                })
            }
            AuthOutcome::Unhandled => {
                attempt.failed("unsupported_method").await;
                Err(ApiError::unauthenticated(
                    "unsupported_login_method",
                    format!("no login method `{method}` is configured"),
                ))
            }
        }
    }

    /// A user changes their own password, proving the current one (wrong guesses count
    /// against the login budgets). Every session of the account ends, the caller's
    /// included, and their sockets close on every node; the answer is a fresh pair for the
    /// caller, so whoever holds a copied token is out and the user is not.
    pub async fn change_password(
        &self,
        user: User,
        current: &str,
        new: String,
        client: IpAddr,
    ) -> Result<TokenPair> {
        if !self.policy.local_password_allowed(&user.name) {
            return Err(local_passwords_disabled());
        }
        let attempt = self.auth.take_login_attempt(&user.name, client).await?;
        let current_hash = match self.store.user_by_name(&user.name).await? {
            Some((_, Some(hash))) if current.len() <= MAX_PASSWORD => hash,
            _ => return Err(wrong_current_password(attempt).await),
        };
        if !verify_password(current.to_string(), current_hash).await? {
            return Err(wrong_current_password(attempt).await);
        }
        attempt.succeeded();
        check_password_policy(&self.policy, &user.name, &new)?;
        if new == current {
            return Err(ApiError::bad_request(
                "same_password",
                "the new password is the current one",
            ));
        }
        self.replace_password(
            user.id,
            new,
            Actor::User(user.id),
            Action::UserPasswordChange,
        )
        .await?;
        self.auth.open_session(user).await
    }

    /// An admin sets a user's password: whoever knew the old one may hold a session, so
    /// every session of the user ends, everywhere.
    pub async fn reset_password(&self, user: &User, new: String, admin: UserId) -> Result<()> {
        if !self.policy.local_password_allowed(&user.name) {
            return Err(local_passwords_disabled());
        }
        check_password_policy(&self.policy, &user.name, &new)?;
        self.replace_password(user.id, new, Actor::User(admin), Action::UserPasswordReset)
            .await
    }

    /// Deactivate or reactivate; deactivating ends every session and closes their sockets
    /// on every node.
    pub async fn set_active(&self, user: UserId, active: bool, admin: UserId) -> Result<()> {
        if !active && user == admin {
            return Err(ApiError::bad_request(
                "cannot_deactivate_self",
                "an admin cannot deactivate their own account",
            ));
        }
        self.set_active_by(user, active, Actor::User(admin)).await
    }

    /// Deactivate or reactivate on behalf of `actor` (an admin, an identity provider);
    /// deactivating ends every session and closes their sockets on every node.
    pub async fn set_active_by(&self, user: UserId, active: bool, actor: Actor<'_>) -> Result<()> {
        let ended = set_active(self.store.as_ref(), user, active, actor).await?;
        self.hub.end_sessions(user, &ended);
        Ok(())
    }

    /// Grant or take away the compliance role (see [`set_compliance`]).
    pub async fn set_compliance(
        &self,
        user: UserId,
        compliance: bool,
        admin: UserId,
    ) -> Result<()> {
        set_compliance(self.store.as_ref(), user, compliance, Actor::User(admin)).await
    }

    /// Whether this session may open a live connection: the `on-connect` policy.
    pub async fn may_connect(&self, user: &User, session_id: &str) -> Result<()> {
        if self.hooks.implements(HookKind::OnConnect)
            && let Decision::Deny { plugin, reason } = self.hooks.on_connect(user, session_id).await
        {
            return Err(ApiError::Rejected {
                plugin,
                code: "connect_denied".into(),
                reason,
            });
        }
        Ok(())
    }

    /// End one session (logout): its tokens stop working and its sockets close on every
    /// node.
    pub async fn logout(&self, user: UserId, session_id: &str) -> Result<()> {
        self.auth.logout(session_id).await?;
        self.hub
            .end_sessions(user, std::slice::from_ref(&session_id.to_string()));
        Ok(())
    }

    /// Store a new (checked) password, end every session of the user everywhere, and put
    /// it on record.
    async fn replace_password(
        &self,
        user: UserId,
        new: String,
        actor: Actor<'_>,
        action: Action,
    ) -> Result<()> {
        self.store
            .set_password_hash(user, &hash_password(new).await?)
            .await?;
        let ended = self.end_sessions(user).await?;
        audit::record(
            self.store.as_ref(),
            actor,
            action,
            Subject::User(user),
            serde_json::json!({ "sessions_ended": ended }),
        )
        .await;
        Ok(())
    }

    /// End every session of `user` in the store and close their sockets on every node;
    /// returns how many ended.
    async fn end_sessions(&self, user: UserId) -> Result<usize> {
        let ended = self.store.revoke_user_sessions(user).await?;
        self.hub.end_sessions(user, &ended);
        Ok(ended.len())
    }
}

/// A local password for an account that signs in through the identity provider only.
fn local_passwords_disabled() -> ApiError {
    ApiError::forbidden(
        "local_passwords_disabled",
        "local passwords are turned off for this account; sign in through your organisation's \
         identity provider",
    )
}

async fn wrong_current_password(attempt: LoginAttempt<'_>) -> ApiError {
    attempt.failed("wrong_password").await;
    ApiError::forbidden("wrong_password", "the current password is wrong")
}
