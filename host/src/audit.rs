//! The audit vocabulary: who acted, what happened, and to what, as types. A compliance
//! export, the admin console and an operator's SIEM rules match on these strings, so each
//! is spelled in exactly one place; the store keeps them as text.
//!
//! Every record is a link in a hash chain (`store::chain`), and the server signs a
//! checkpoint of the chain's head now and then ([`spawn_checkpointer`]), so a record that
//! was changed, put in, or removed afterwards — or an end cut off — shows in [`verify`]
//! (`switchboard audit verify`).
//!
//! Writing a record never fails the action it records: a failure to write is logged at
//! `warn` with the action (the caller's work is done by then, and refusing it afterwards
//! would not undo it).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::config::ComplianceConfig;
use crate::signing::{KeyError, SecretKey};
use crate::store::{AuditCheckpoint, RoomId, Store, UserId, chain, now_millis};

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
    /// An identity provider, by source (`directory:scim`): provisioning and group sync.
    Directory(&'a str),
}

impl fmt::Display for Actor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Plugin(name) => write!(f, "plugin:{name}"),
            Self::Address(ip) => write!(f, "address:{ip}"),
            Self::System => f.write_str("system"),
            Self::Cli => f.write_str("system:cli"),
            Self::Directory(source) => write!(f, "directory:{source}"),
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
    /// A legal hold (`hold:<id>`).
    Hold(i64),
    /// A message (`message:<id>`).
    Message(i64),
    /// Retention (`retention`).
    Retention,
    /// The compliance export (`export`).
    Export,
    /// The audit log itself (`audit`): reads and verifications of it.
    AuditLog,
    /// An uploaded file (`file:<id>`).
    File(i64),
    /// Messages across rooms, searched by the compliance role (`messages`).
    Messages,
    /// A group an identity provider manages (`group:<id>`).
    Group(i64),
    /// The language model's governance (`llm`).
    Llm,
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Account(name) => write!(f, "account:{name}"),
            Self::Room(id) => write!(f, "room:{id}"),
            Self::Plugin(name) => write!(f, "plugin:{name}"),
            Self::AuditLog => f.write_str("audit"),
            Self::Hold(id) => write!(f, "hold:{id}"),
            Self::Message(id) => write!(f, "message:{id}"),
            Self::Retention => f.write_str("retention"),
            Self::Export => f.write_str("export"),
            Self::File(id) => write!(f, "file:{id}"),
            Self::Messages => f.write_str("messages"),
            Self::Group(id) => write!(f, "group:{id}"),
            Self::Llm => f.write_str("llm"),
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
    /// A provider changed an account's profile (display name, e-mail, external id).
    UserUpdate,
    /// Someone signed in (the method and address are in the detail).
    Login,
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
    /// Someone read the audit log (records are only ever read on the record).
    AuditRead,
    /// Someone verified the audit chain.
    AuditVerify,
    ComplianceGrant,
    ComplianceRevoke,
    HoldCreate,
    /// A release was asked for; it takes effect after the delay or a second confirmation.
    HoldReleaseRequest,
    /// The release took effect at once (a second compliance user confirmed it).
    HoldRelease,
    /// Someone read a message's kept earlier texts.
    VersionsRead,
    /// The compliance role searched messages across rooms (the query is in the detail).
    ComplianceSearch,
    /// A room's retention was set or cleared.
    RetentionSet,
    /// Retention erased messages (with counts).
    RetentionRun,
    /// A compliance export batch was written.
    ExportRun,
    /// A file of an export batch was downloaded.
    ExportDownload,
    /// An upload was refused for its content (a virus scanner's finding, a plugin's
    /// rejection or failure).
    FileRejected,
    /// A plugin replaced an upload's content (e.g. DLP redaction).
    FileReplaced,
    /// A plugin put an upload in quarantine.
    FileQuarantined,
    /// A reviewer released a quarantined file.
    FileReleased,
    /// A reviewer deleted a quarantined file.
    FileDiscarded,
    /// A reviewer downloaded a quarantined file.
    FileReviewed,
    /// A plugin denied a download.
    FileDownloadDenied,
    /// An identity provider created a group.
    GroupCreate,
    /// An identity provider renamed a group or changed its members.
    GroupChange,
    /// An identity provider deleted a group.
    GroupDelete,
    /// A change of a user's groups moved them into or out of mapped rooms or roles.
    GroupSync,
    /// A call to the language model on a person's behalf (`llm` capability): digest of
    /// the prompt, redactions, tool decisions, tokens, latency, outcome.
    LlmCall,
    /// An operator changed (or reset) the language model's governance.
    LlmSettings,
    /// A room owner or admin made an incoming webhook (its id, name and bot in the detail).
    WebhookCreate,
    /// An incoming webhook was revoked.
    WebhookRevoke,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UserCreate => "user.create",
            Self::UserActivate => "user.activate",
            Self::UserDeactivate => "user.deactivate",
            Self::UserPasswordReset => "user.password_reset",
            Self::UserPasswordChange => "user.password_change",
            Self::UserUpdate => "user.update",
            Self::Login => "auth.login",
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
            Self::AuditRead => "audit.read",
            Self::AuditVerify => "audit.verify",
            Self::ComplianceGrant => "user.compliance_grant",
            Self::ComplianceRevoke => "user.compliance_revoke",
            Self::HoldCreate => "hold.create",
            Self::HoldReleaseRequest => "hold.release_request",
            Self::HoldRelease => "hold.release",
            Self::VersionsRead => "message.versions_read",
            Self::ComplianceSearch => "compliance.search",
            Self::RetentionSet => "retention.set",
            Self::RetentionRun => "retention.run",
            Self::ExportRun => "export.run",
            Self::ExportDownload => "export.download",
            Self::FileRejected => "file.rejected",
            Self::FileReplaced => "file.replaced",
            Self::FileQuarantined => "file.quarantined",
            Self::FileReleased => "file.released",
            Self::FileDiscarded => "file.discarded",
            Self::FileReviewed => "file.reviewed",
            Self::FileDownloadDenied => "file.download_denied",
            Self::GroupCreate => "group.create",
            Self::GroupChange => "group.change",
            Self::GroupDelete => "group.delete",
            Self::GroupSync => "group.sync",
            Self::LlmCall => "llm.call",
            Self::LlmSettings => "llm.settings",
            Self::WebhookCreate => "webhook.create",
            Self::WebhookRevoke => "webhook.revoke",
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

// ---- the chain's checkpoints and its verification ----

/// The key that signs the audit chain's checkpoints: `compliance.audit_key`, else
/// `<data_dir>/audit.key`, generated (mode 0600) on first use.
pub fn load_or_create_key(
    config: &ComplianceConfig,
    data_dir: &Path,
) -> Result<SecretKey, AuditKeyError> {
    if let Some(secret) = &config.audit_key {
        return Ok(SecretKey::parse(secret.expose())?);
    }
    let path = data_dir.join("audit.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(SecretKey::parse(&text)?),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate()?;
            std::fs::create_dir_all(data_dir)?;
            crate::private_files::write_new(&path, key.to_file_text().as_bytes())?;
            Ok(key)
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("the audit key: {0}")]
    Key(#[from] KeyError),
    #[error("the audit key file: {0}")]
    Io(#[from] std::io::Error),
}

/// What a checkpoint's signature covers.
pub fn checkpoint_message(seq: i64, head_hash: &str, at: i64) -> Vec<u8> {
    format!("switchboard audit checkpoint v1\n{seq}\n{head_hash}\n{at}\n").into_bytes()
}

/// Sign the chain's head now, keep the checkpoint in the store, and append it to `sink` (a
/// JSON line) when one is configured. `None` when the chain is empty or the head has a
/// checkpoint already.
pub async fn checkpoint(
    store: &dyn Store,
    key: &SecretKey,
    sink: Option<&Path>,
) -> anyhow::Result<Option<AuditCheckpoint>> {
    let (seq, head_hash) = store.audit_head().await?;
    let last = store.audit_checkpoints().await?.last().map_or(0, |c| c.seq);
    if seq == 0 || seq <= last {
        return Ok(None);
    }
    let at = now_millis();
    let checkpoint = AuditCheckpoint {
        seq,
        signature: key.sign_message(&checkpoint_message(seq, &head_hash, at)),
        head_hash,
        at,
        key_id: key.public().id().to_string(),
    };
    store.add_audit_checkpoint(&checkpoint).await?;
    if let Some(path) = sink {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{}", serde_json::to_string(&checkpoint)?)?;
        file.sync_all()?;
    }
    Ok(Some(checkpoint))
}

/// Sign checkpoints for as long as the server runs: every `checkpoint_every_secs` when the
/// chain moved, and sooner once `checkpoint_every_records` records were appended.
pub fn spawn_checkpointer(
    store: std::sync::Arc<dyn Store>,
    key: SecretKey,
    config: ComplianceConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(config.checkpoint_every_secs.max(1));
        let poll = every.min(std::time::Duration::from_secs(5));
        let mut last_signed = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let due_by_time = last_signed.elapsed() >= every;
            let due_by_count = match (store.audit_head().await, store.audit_checkpoints().await) {
                (Ok((seq, _)), Ok(checkpoints)) => {
                    let last = checkpoints.last().map_or(0, |c| c.seq);
                    u64::try_from(seq - last).unwrap_or(0) >= config.checkpoint_every_records
                }
                _ => false,
            };
            if !(due_by_time || due_by_count) {
                continue;
            }
            match checkpoint(store.as_ref(), &key, config.checkpoint_file.as_deref()).await {
                Ok(_) => last_signed = tokio::time::Instant::now(),
                Err(err) => tracing::error!(error = %err, "signing an audit checkpoint failed"),
            }
        }
    })
}

/// What `switchboard audit verify` found.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub records: u64,
    /// The last record's `seq` and hash.
    pub head_seq: i64,
    pub head_hash: String,
    /// Records whose content no longer matches their hash.
    pub modified: Vec<i64>,
    /// Records put into the chain afterwards.
    pub inserted: Vec<i64>,
    /// Gaps: records removed between `after` and `before`.
    pub deleted: Vec<(i64, i64)>,
    /// The chain ends before a checkpoint's `seq` (records cut off the end).
    pub truncated: Option<Truncation>,
    /// Checkpoints whose record at that `seq` has another hash (the chain was rewritten up
    /// to there).
    pub checkpoint_mismatches: Vec<i64>,
    /// Checkpoints not signed by the audit key (forged or signed by another key).
    pub bad_signatures: Vec<i64>,
    pub checkpoints_checked: usize,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Truncation {
    pub chain_ends_at: i64,
    pub checkpoint_seq: i64,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.modified.is_empty()
            && self.inserted.is_empty()
            && self.deleted.is_empty()
            && self.truncated.is_none()
            && self.checkpoint_mismatches.is_empty()
            && self.bad_signatures.is_empty()
    }
}

/// Walk the whole chain and check it against every checkpoint (the store's and `extra`,
/// such as the lines of the external checkpoint file), with `key` for the signatures.
pub async fn verify(
    store: &dyn Store,
    key: &crate::signing::PublicKey,
    extra: Vec<AuditCheckpoint>,
) -> anyhow::Result<VerifyReport> {
    let mut checkpoints = store.audit_checkpoints().await?;
    checkpoints.extend(extra);
    checkpoints.sort_by_key(|c| c.seq);
    checkpoints.dedup_by(|a, b| a == b);
    let wanted: std::collections::BTreeSet<i64> = checkpoints.iter().map(|c| c.seq).collect();
    let mut hashes_at = std::collections::BTreeMap::new();
    let mut walker = chain::Walker::default();
    let mut after = 0;
    loop {
        let page = store.audit_chain(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            walker.next(record);
            if wanted.contains(&record.seq) {
                hashes_at.insert(record.seq, record.hash.clone().unwrap_or_default());
            }
        }
    }
    walker.finish();
    let (head_seq, head_hash) = walker.head();
    let mut report = VerifyReport {
        records: walker.records,
        head_seq,
        head_hash: head_hash.to_string(),
        checkpoints_checked: checkpoints.len(),
        ..VerifyReport::default()
    };
    for found in &walker.breaks {
        match *found {
            chain::Break::Modified { seq } => report.modified.push(seq),
            chain::Break::Inserted { seq } => report.inserted.push(seq),
            chain::Break::Deleted {
                after_seq,
                before_seq,
            } => report.deleted.push((after_seq, before_seq)),
        }
    }
    for checkpoint in &checkpoints {
        let message = checkpoint_message(checkpoint.seq, &checkpoint.head_hash, checkpoint.at);
        if !key.verifies(&message, &checkpoint.signature) {
            report.bad_signatures.push(checkpoint.seq);
            continue;
        }
        match hashes_at.get(&checkpoint.seq) {
            Some(hash) if *hash == checkpoint.head_hash => {}
            Some(_) => report.checkpoint_mismatches.push(checkpoint.seq),
            None if checkpoint.seq > head_seq => {
                let worst = report
                    .truncated
                    .as_ref()
                    .map_or(0, |t: &Truncation| t.checkpoint_seq);
                if checkpoint.seq > worst {
                    report.truncated = Some(Truncation {
                        chain_ends_at: head_seq,
                        checkpoint_seq: checkpoint.seq,
                    });
                }
            }
            // The record the checkpoint names is gone from the middle: a deletion, which
            // the walk reported.
            None => report.checkpoint_mismatches.push(checkpoint.seq),
        }
    }
    Ok(report)
}
