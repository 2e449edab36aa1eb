//! The audit vocabulary: who acted, what happened, and to what, as types. A compliance
//! export, the admin console and an operator's SIEM rules match on these strings, so each
//! is spelled in exactly one place; the store keeps them as text.
//!
//! Writing a record never fails the action it records: a failure to write is logged at
//! `warn` with the action (the caller's work is done by then, and refusing it afterwards
//! would not undo it).

use std::fmt;
use std::net::IpAddr;

use crate::store::{RoomId, Store, UserId};

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    /// A signed-in user (`user:<id>`).
    User(UserId),
    /// A plugin, by name (`plugin:<name>`).
    Plugin(&'a str),
    /// A client not signed in, by address (`address:<ip>`): failed logins, registrations.
    Address(IpAddr),
    /// The server itself (`system`): first start.
    System,
    /// An operator at the command line (`system:cli`).
    Cli,
}

impl fmt::Display for Actor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Plugin(name) => write!(f, "plugin:{name}"),
            Self::Address(ip) => write!(f, "address:{ip}"),
            Self::System => f.write_str("system"),
            Self::Cli => f.write_str("system:cli"),
        }
    }
}

/// What the record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// An account (`user:<id>`).
    User(UserId),
    /// An account by the name someone tried (`account:<name>`; it may not exist).
    Account(&'a str),
    /// A room (`room:<id>`).
    Room(RoomId),
    /// A plugin (`plugin:<name>`).
    Plugin(&'a str),
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Account(name) => write!(f, "account:{name}"),
            Self::Room(id) => write!(f, "room:{id}"),
            Self::Plugin(name) => write!(f, "plugin:{name}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    UserCreate,
    UserActivate,
    UserDeactivate,
    /// An admin set a user's password.
    UserPasswordReset,
    /// A user changed their own password.
    UserPasswordChange,
    LoginFailed,
    /// A login budget ran out (once per budget and minute).
    Lockout,
    /// A plugin rejected a message.
    PluginReject,
    /// A plugin flagged a message (`….flagged` metadata).
    PluginFlag,
    /// A plugin redacted a message (`….redacted` metadata).
    PluginRedact,
    /// A plugin's output broke the message rules.
    PluginInvalidOutput,
    PluginInstall,
    PluginUninstall,
    PluginReload,
    PluginEnable,
    PluginDisable,
    PluginChange,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UserCreate => "user.create",
            Self::UserActivate => "user.activate",
            Self::UserDeactivate => "user.deactivate",
            Self::UserPasswordReset => "user.password_reset",
            Self::UserPasswordChange => "user.password_change",
            Self::LoginFailed => "auth.login_failed",
            Self::Lockout => "auth.lockout",
            Self::PluginReject => "plugin.reject",
            Self::PluginFlag => "plugin.flag",
            Self::PluginRedact => "plugin.redact",
            Self::PluginInvalidOutput => "plugin.invalid_output",
            Self::PluginInstall => "plugin.install",
            Self::PluginUninstall => "plugin.uninstall",
            Self::PluginReload => "plugin.reload",
            Self::PluginEnable => "plugin.enable",
            Self::PluginDisable => "plugin.disable",
            Self::PluginChange => "plugin.change",
        }
    }

    /// The action when the operator's attempt failed (`plugin.install.failed`).
    pub fn failed(self) -> String {
        format!("{}.failed", self.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Write one record (see the module header for why a failure is only logged).
pub async fn record(
    store: &dyn Store,
    actor: Actor<'_>,
    action: Action,
    subject: Subject<'_>,
    detail: serde_json::Value,
) {
    record_as(store, actor, action.as_str(), subject, detail).await;
}

/// [`record`] with the action spelled out: for an outcome such as [`Action::failed`].
pub async fn record_as(
    store: &dyn Store,
    actor: Actor<'_>,
    action: &str,
    subject: Subject<'_>,
    detail: serde_json::Value,
) {
    let written = store
        .append_audit(&actor.to_string(), action, &subject.to_string(), &detail)
        .await;
    if let Err(err) = written {
        tracing::warn!(error = %err, action, %actor, %subject, "could not write an audit record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_spelled_as_the_docs_say() {
        let ip: IpAddr = [203, 0, 113, 9].into();
        assert_eq!(Actor::User(7).to_string(), "user:7");
        assert_eq!(Actor::Plugin("dlp").to_string(), "plugin:dlp");
        assert_eq!(Actor::Address(ip).to_string(), "address:203.0.113.9");
        assert_eq!(Actor::Cli.to_string(), "system:cli");
        assert_eq!(Subject::Account("alice").to_string(), "account:alice");
        assert_eq!(Subject::Room(3).to_string(), "room:3");
        assert_eq!(Action::LoginFailed.as_str(), "auth.login_failed");
        assert_eq!(Action::PluginInstall.failed(), "plugin.install.failed");
    }
}
