//! Server configuration: built-in defaults, then `switchboard.toml`, then `SWITCHBOARD_*`
//! environment variables (nested keys with `__`, e.g. `SWITCHBOARD_LIMITS__MAX_BODY_BYTES`).
//!
//! Every limit the server enforces lives here, with its default, so an operator can see and
//! change all of them in one place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::store::SqliteSync;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded database, the generated JWT secret and the plugin cache live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data_dir>/switchboard.db`.
    pub database_url: Option<Secret>,
    /// Password for the `admin` account created on first start with an empty database.
    /// When absent, a random one is generated and printed once.
    pub initial_admin_password: Option<Secret>,
    pub log_format: LogFormat,
    /// Bearer token a Prometheus scraper sends to read `/metrics` (admins may always).
    pub metrics_token: Option<Secret>,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub store: StoreConfig,
    pub plugins: PluginsConfig,
    pub cluster: ClusterConfig,
    pub compliance: ComplianceConfig,
    pub files: FilesConfig,
    pub presence: PresenceConfig,
    pub identity: IdentityConfig,
    pub llm: LlmConfig,
    pub webhooks: WebhooksConfig,
    pub matrix: MatrixConfig,
}

/// Accounts and groups that an identity provider manages (`[identity]`): how its groups map
/// to rooms and roles, and the SCIM endpoint it provisions through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// What membership of a provider's group gives: rooms to be a member of and server
    /// roles. Matched on the group's name, whichever provider it comes from.
    pub groups: Vec<GroupMapping>,
    pub scim: ScimConfig,
    /// Where people's browsers reach this server (`https://chat.example.com`): sign-in
    /// redirect URIs are made from it (`<public_url>/api/v1/auth/oidc/<id>/callback`).
    pub public_url: String,
    /// OpenID Connect providers to sign in with (`[[identity.oidc]]`).
    pub oidc: Vec<OidcProvider>,
    /// How long a sign-in may take between leaving for the provider and coming back.
    pub oidc_login_timeout_secs: u64,
    /// Longest wait for a provider's discovery, keys or token endpoint.
    pub oidc_timeout_ms: u64,
    /// Sign-ins one client address may start per minute (each keeps a little state until
    /// it finishes or expires; this bounds what a client can make the server keep).
    pub oidc_starts_per_address_per_minute: u32,
    /// An LDAP directory or Active Directory: password sign-in by bind, and a periodic sync
    /// of accounts (disabled ones are deactivated) and groups. Unset: none.
    pub ldap: Option<LdapConfig>,
}

/// `[identity.ldap]`: the directory's address, the service account that searches it, and
/// where people and groups are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// The service account that searches the directory (read-only is enough).
    pub bind_dn: String,
    pub bind_password: Secret,
    /// Where people are.
    pub user_base: String,
    /// Finds one person by user name; `{name}` is replaced by the escaped name.
    /// Active Directory: `(&(objectClass=user)(sAMAccountName={name}))`.
    #[serde(default = "default_ldap_user_filter")]
    pub user_filter: String,
    #[serde(default = "default_ldap_user_name_attribute")]
    pub user_name_attribute: String,
    #[serde(default = "default_ldap_display_name_attribute")]
    pub display_name_attribute: String,
    #[serde(default = "default_ldap_email_attribute")]
    pub email_attribute: String,
    /// Matches people whose directory account is disabled; they are refused and
    /// deactivated. Active Directory: `(userAccountControl:1.2.840.113556.1.4.803:=2)`;
    /// OpenLDAP with ppolicy: `(pwdAccountLockedTime=*)`. Empty: none is disabled.
    #[serde(default)]
    pub disabled_filter: String,
    /// Where groups are (empty: groups are not read).
    #[serde(default)]
    pub group_base: String,
    #[serde(default = "default_ldap_group_filter")]
    pub group_filter: String,
    #[serde(default = "default_ldap_group_name_attribute")]
    pub group_name_attribute: String,
    /// The group attribute listing its members' DNs.
    #[serde(default = "default_ldap_member_attribute")]
    pub group_member_attribute: String,
    /// How often accounts and groups are read again (a leaver is out within this).
    #[serde(default = "default_ldap_sync_interval")]
    pub sync_interval_secs: u64,
    /// Longest wait for the directory.
    #[serde(default = "default_ldap_timeout")]
    pub timeout_ms: u64,
    /// Make the account at the first sign-in of someone the directory knows.
    #[serde(default = "yes")]
    pub create_accounts: bool,
}

fn default_ldap_user_filter() -> String {
    "(&(objectClass=inetOrgPerson)(uid={name}))".into()
}

fn default_ldap_user_name_attribute() -> String {
    "uid".into()
}

fn default_ldap_display_name_attribute() -> String {
    "cn".into()
}

fn default_ldap_email_attribute() -> String {
    "mail".into()
}

fn default_ldap_group_filter() -> String {
    "(objectClass=groupOfNames)".into()
}

fn default_ldap_group_name_attribute() -> String {
    "cn".into()
}

fn default_ldap_member_attribute() -> String {
    "member".into()
}

fn default_ldap_sync_interval() -> u64 {
    300
}

fn default_ldap_timeout() -> u64 {
    5_000
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            scim: ScimConfig::default(),
            public_url: String::new(),
            oidc: Vec::new(),
            oidc_login_timeout_secs: 600,
            oidc_timeout_ms: 10_000,
            oidc_starts_per_address_per_minute: 30,
            ldap: None,
        }
    }
}

/// One OpenID Connect provider (`[[identity.oidc]]`): Entra ID, Okta, Keycloak, Google
/// Workspace, … anything with discovery and the authorization code flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// Short name in URLs and records (`oidc:<id>`): 1 to 32 of `a-z 0-9 _ -`.
    pub id: String,
    /// The button's text: "Sign in with <display_name>".
    pub display_name: String,
    /// The issuer URL; its `/.well-known/openid-configuration` is read.
    pub issuer: String,
    pub client_id: String,
    /// For a confidential client (the usual case for a server).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names the account.
    #[serde(default = "default_user_name_claim")]
    pub user_name_claim: String,
    #[serde(default = "default_display_name_claim")]
    pub display_name_claim: String,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// The claim listing the person's groups (mapped by `[[identity.groups]]`); unset:
    /// sign-in does not change group memberships.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Take the part of the user name before an `@` (Entra ID and Okta send e-mail-shaped
    /// names).
    #[serde(default = "yes")]
    pub strip_domain: bool,
    /// Create an account at the first sign-in of someone the provider vouches for.
    #[serde(default = "yes")]
    pub create_accounts: bool,
    /// Link the first sign-in to an existing account of the same name that has a local
    /// password. Off: only accounts without one (made by a provider) are linked by name.
    #[serde(default)]
    pub link_existing_accounts: bool,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

fn default_user_name_claim() -> String {
    "preferred_username".into()
}

fn default_display_name_claim() -> String {
    "name".into()
}

fn default_email_claim() -> String {
    "email".into()
}

fn yes() -> bool {
    true
}

/// One group's rooms and roles (`[[identity.groups]]`). Joining the group joins its rooms
/// and grants its roles; leaving it leaves those rooms and takes the roles back, unless
/// another of the user's groups still gives them. Rooms and roles an admin gave by hand
/// are not touched unless a mapping names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMapping {
    /// The group's name as the provider spells it (SCIM `displayName`), compared exactly.
    pub name: String,
    /// Group rooms (by id) its members are put in.
    #[serde(default)]
    pub rooms: Vec<i64>,
    /// Members are server admins.
    #[serde(default)]
    pub admin: bool,
    /// Members hold the compliance role.
    #[serde(default)]
    pub compliance: bool,
}

/// SCIM 2.0 provisioning (`/scim/v2/…`), for identity providers that push accounts and
/// groups (Entra ID, Okta, Keycloak with a SCIM extension).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScimConfig {
    pub enabled: bool,
    /// The bearer token the provider sends; required when enabled (at least 32 characters).
    pub token: Option<Secret>,
    /// Most members one group may have; a request that would make it larger is refused
    /// whole.
    pub max_group_members: usize,
    /// Largest page of a list (`count` is clamped to it).
    pub max_page: usize,
    /// Most operations in one PATCH request.
    pub max_patch_operations: usize,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token: None,
            max_group_members: 10_000,
            max_page: 200,
            max_patch_operations: 100,
        }
    }
}

impl IdentityConfig {
    /// Refuse a configuration that cannot work, before the server starts.
    pub fn validate(&self, auth: &AuthConfig) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for group in &self.groups {
            if group.name.trim().is_empty() || group.name.len() > 256 {
                return Err("identity.groups: a group name has 1 to 256 bytes".into());
            }
            if !names.insert(group.name.as_str()) {
                return Err(format!(
                    "identity.groups: the group `{}` is mapped twice",
                    group.name
                ));
            }
        }
        if self.scim.enabled {
            match &self.scim.token {
                Some(token) if token.expose().len() >= 32 => {}
                _ => {
                    return Err(
                        "identity.scim.token must be set, with at least 32 characters, when \
                         identity.scim.enabled is on"
                            .into(),
                    );
                }
            }
            if self.scim.max_group_members == 0
                || self.scim.max_page == 0
                || self.scim.max_patch_operations == 0
            {
                return Err("identity.scim limits must be positive".into());
            }
        }
        let mut ids = std::collections::HashSet::new();
        for provider in &self.oidc {
            if !crate::names::is_identifier(&provider.id, 32) {
                return Err(format!(
                    "identity.oidc: `{}` is not a provider id (1 to 32 of a-z 0-9 _ -)",
                    provider.id
                ));
            }
            if !ids.insert(provider.id.as_str()) {
                return Err(format!(
                    "identity.oidc: the id `{}` is used twice",
                    provider.id
                ));
            }
            let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
            if !provider.issuer.starts_with("https://")
                && !local.iter().any(|l| provider.issuer.starts_with(l))
            {
                return Err(format!(
                    "identity.oidc `{}`: the issuer must be an https:// URL",
                    provider.id
                ));
            }
            if provider.client_id.is_empty() || provider.display_name.trim().is_empty() {
                return Err(format!(
                    "identity.oidc `{}`: client_id and display_name are required",
                    provider.id
                ));
            }
        }
        let public_url_set =
            self.public_url.starts_with("https://") || self.public_url.starts_with("http://");
        if !self.oidc.is_empty() && !public_url_set {
            return Err(
                "identity.public_url (where browsers reach this server) is required for \
                 OpenID Connect sign-in"
                    .into(),
            );
        }
        if self.oidc_login_timeout_secs == 0
            || self.oidc_timeout_ms == 0
            || self.oidc_starts_per_address_per_minute == 0
        {
            return Err("identity.oidc_login_timeout_secs, oidc_timeout_ms and \
                 oidc_starts_per_address_per_minute must be positive"
                .into());
        }
        if let Some(ldap) = &self.ldap {
            if !ldap.url.starts_with("ldap://") && !ldap.url.starts_with("ldaps://") {
                return Err("identity.ldap.url must be an ldap:// or ldaps:// URL".into());
            }
            if !ldap.user_filter.contains("{name}") {
                return Err("identity.ldap.user_filter must contain {name}".into());
            }
            if ldap.sync_interval_secs == 0 || ldap.timeout_ms == 0 {
                return Err(
                    "identity.ldap.sync_interval_secs and timeout_ms must be positive".into(),
                );
            }
        }
        for name in &auth.break_glass_accounts {
            if !crate::names::is_user_name(name) {
                return Err(format!(
                    "auth.break_glass_accounts: `{name}` is not a valid user name"
                ));
            }
        }
        if auth.local_passwords == LocalPasswords::BreakGlass && auth.open_registration {
            return Err(
                "auth.open_registration needs auth.local_passwords = \"everyone\": accounts \
                 registered with a password could not sign in"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The language model plugins reach through the `llm` capability (`[llm]`): an
/// OpenAI-compatible chat-completions endpoint, and the governance of every call to it.
/// With no `base_url`, the capability answers `unavailable`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// The endpoint's base, up to and including `/v1` (`http://127.0.0.1:11434/v1` for
    /// Ollama); requests go to `<base_url>/chat/completions`.
    pub base_url: String,
    /// The model name sent with every request.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<Secret>,
    /// Stream replies (server-sent events). Off for a back-end that streams badly: replies
    /// then arrive whole.
    pub stream: bool,
    /// Ask for token counts in the stream (`stream_options.include_usage`); off for a
    /// back-end that rejects the option (counts are then estimated from the text).
    pub stream_usage: bool,
    /// The request field that caps the answer's tokens: `max_tokens` (most back-ends) or
    /// `max_completion_tokens` (OpenAI's reasoning models refuse `max_tokens`).
    pub max_tokens_field: MaxTokensField,
    pub connect_timeout_ms: u64,
    /// The longest one call may take, tool rounds included.
    pub timeout_secs: u64,
    /// The longest wait for the next piece of a streamed reply.
    pub idle_timeout_secs: u64,
    /// Most answer tokens one request asks for (a plugin may ask for fewer).
    pub max_output_tokens: u32,
    /// The largest prompt sent (messages, context and tool results), in bytes.
    pub max_prompt_bytes: usize,
    /// The largest reply kept, in bytes; a longer one is cut and marked.
    pub max_reply_bytes: usize,
    /// Most messages one context source may add.
    pub max_context_messages: u32,
    /// Most rounds of tool calls in one call.
    pub max_tool_rounds: u32,
    /// Calls to the model running at once on this node; more wait.
    pub max_concurrent_calls: usize,
    /// What the audit record keeps of the prompt besides its SHA-256: `none`, `redacted`
    /// (as sent, after DLP) or `full` (before DLP: only where policy allows).
    pub prompt_log: PromptLog,
    /// Per detector (`card`, `ssn`, `iban`, `email`, `secret`, or a `pattern.<name>`
    /// regex): `redact` (the value leaves as a token such as `[CARD_1]`), `block` (the
    /// call is refused) or `off`. The same detectors mask the model's reply.
    pub dlp: std::collections::BTreeMap<String, String>,
    /// Put a person's own redacted values back into a reply only they see.
    pub restore_redacted: bool,
    /// Per tool (`read_room`, `search`, `post`): `allow`, `ask` (the person approves in
    /// chat) or `deny`.
    pub tools: std::collections::BTreeMap<String, String>,
    /// How long a tool call waits for a person's approval.
    pub approval_timeout_secs: u64,
    /// Tokens (in + out) one person may use per UTC day; 0: no limit.
    pub user_daily_tokens: u64,
    /// Tokens one room's calls may use per UTC day; 0: no limit.
    pub room_daily_tokens: u64,
    /// How often a streamed room reply is edited as text arrives.
    pub stream_edit_interval_ms: u64,
    /// Characters of a streamed reply held back until more arrives, so a value split
    /// across pieces is whole (and masked) before anyone sees it.
    pub stream_holdback_chars: usize,
}

/// How a request names its token cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    MaxTokens,
    MaxCompletionTokens,
}

impl MaxTokensField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxTokens => "max_tokens",
            Self::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// What an audit record keeps of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromptLog {
    None,
    Redacted,
    Full,
}

impl Default for LlmConfig {
    fn default() -> Self {
        let dlp = [
            ("card", "redact"),
            ("ssn", "redact"),
            ("iban", "redact"),
            ("email", "off"),
            ("secret", "block"),
        ];
        let tools = [("read_room", "allow"), ("search", "allow"), ("post", "ask")];
        Self {
            base_url: String::new(),
            model: String::new(),
            api_key: None,
            stream: true,
            stream_usage: true,
            max_tokens_field: MaxTokensField::MaxTokens,
            connect_timeout_ms: 5_000,
            timeout_secs: 120,
            idle_timeout_secs: 30,
            max_output_tokens: 1_024,
            max_prompt_bytes: 256 * 1024,
            max_reply_bytes: 32 * 1024,
            max_context_messages: 200,
            max_tool_rounds: 4,
            max_concurrent_calls: 8,
            prompt_log: PromptLog::None,
            dlp: dlp
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            restore_redacted: true,
            tools: tools
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            approval_timeout_secs: 120,
            user_daily_tokens: 200_000,
            room_daily_tokens: 1_000_000,
            stream_edit_interval_ms: 1_000,
            stream_holdback_chars: 64,
        }
    }
}

/// Incoming webhooks (`POST /hooks/{key}`, Slack's payload): their limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Off: no hook can be made and every post is answered `webhooks_disabled`.
    pub enabled: bool,
    /// Sustained posts per minute through one hook (besides its bot's per-user limit).
    pub messages_per_minute: u32,
    /// Posts one hook may send at once before the sustained rate applies.
    pub burst: u32,
    /// Largest post body in bytes (JSON or `payload=` form); the rendered text must also fit
    /// `limits.max_message_bytes`.
    pub max_payload_bytes: usize,
    /// Live (not revoked) hooks one room may have.
    pub max_per_room: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            messages_per_minute: 60,
            burst: 20,
            max_payload_bytes: 64 * 1024,
            max_per_room: 20,
        }
    }
}

/// The Matrix client–server subset under `/_matrix/client` (docs/integrations.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatrixConfig {
    /// Off: every `/_matrix` request is answered `M_UNRECOGNIZED` (404).
    pub enabled: bool,
    /// The server part of Matrix ids: `@alice:<server_name>`, `!12:<server_name>`.
    pub server_name: String,
    /// The longest a `/sync` long poll is held, whatever `timeout` the client asks for.
    pub sync_timeout_max_ms: u64,
    /// Events per room in a first sync (older ones through `/messages`).
    pub timeline_limit: u32,
    /// Events per room in one incremental sync (the rest come in the next).
    pub sync_events_max: u32,
    /// Largest `/messages` page.
    pub messages_limit_max: u32,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            server_name: "localhost".into(),
            sync_timeout_max_ms: 30_000,
            timeline_limit: 20,
            sync_events_max: 100,
            messages_limit_max: 100,
        }
    }
}

/// Presence (online / away / offline), derived from live sockets and activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Off: nobody's presence is tracked or shown (everyone reads as offline).
    pub enabled: bool,
    /// A user whose sockets sent nothing for this long (or whose clients all said they are
    /// away: a hidden tab) is `away`.
    pub away_after_secs: u64,
    /// How long a user with no socket left stays as they were before turning `offline`, so
    /// a page reload or a reconnect does not flicker.
    pub offline_grace_ms: u64,
    /// How often each node re-announces its users to the cluster; another node forgets what
    /// a node said after three of these without news (a node that died).
    pub heartbeat_secs: u64,
    /// How often idle users are checked (away, grace over, a silent node forgotten).
    pub tick_ms: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            away_after_secs: 300,
            offline_grace_ms: 5_000,
            heartbeat_secs: 30,
            tick_ms: 1_000,
        }
    }
}

/// Files uploaded to rooms: how large, and where they are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// The largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Keep files in S3-compatible object storage instead of `<data_dir>/files`.
    pub s3: Option<S3Config>,
    /// How often the bytes of deleted messages' files are purged from storage (they are out
    /// of users' reach the moment the message is deleted).
    pub purge_interval_secs: u64,
    /// How long an uploaded file may stay unattached to any message before it is deleted
    /// (a composer closed before sending leaves such files behind). 0: kept forever.
    pub unattached_ttl_secs: u64,
    /// Scan every upload with ClamAV's `clamd` while it streams in.
    pub clamav: Option<ClamavConfig>,
    /// What happens to images: pixel limit, metadata, thumbnails.
    pub images: ImagesConfig,
    /// Uploads sent in chunks, resumable after a broken connection.
    pub resumable: ResumableConfig,
}

/// Resumable uploads (`POST /api/v1/rooms/{id}/uploads`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumableConfig {
    /// The largest chunk one request may carry.
    pub max_chunk_bytes: u64,
    /// How long an unfinished upload is kept (from its start) before it is removed.
    pub ttl_secs: u64,
}

impl Default for ResumableConfig {
    fn default() -> Self {
        Self {
            max_chunk_bytes: 64 * 1024 * 1024,
            ttl_secs: 24 * 60 * 60,
        }
    }
}

/// Images (PNG, JPEG, WebP, GIF) among uploads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// The most pixels (width × height) an image may declare; more is refused before
    /// decoding (decompression bombs). Making a thumbnail holds 4 bytes per pixel.
    pub max_pixels: u64,
    /// The largest image processed (it is read whole to strip its metadata); a larger one
    /// is refused, so no image escapes stripping.
    pub max_bytes: u64,
    /// Remove EXIF metadata (GPS position, camera, times), keeping only the orientation.
    pub strip_exif: bool,
    /// The longest side of a thumbnail, in pixels.
    pub thumbnail_px: u32,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            max_bytes: 50 * 1024 * 1024,
            strip_exif: true,
            thumbnail_px: 320,
        }
    }
}

/// A `clamd` every upload is streamed to (its `INSTREAM` command) as it arrives. Scanning
/// fails closed: an upload the scanner could not judge is refused, with the reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClamavConfig {
    /// `host:port` of clamd's `TCPSocket`, or `unix:/path` of its `LocalSocket`.
    pub address: String,
    /// clamd's `StreamMaxLength` (its default is 25 MiB). A file longer than this cannot be
    /// scanned, so the server refuses to start when `files.max_upload_bytes` is larger...
    pub stream_max_bytes: u64,
    /// ...unless this is `warn` (then such files are refused at upload, with the reason).
    pub on_limit_mismatch: LimitMismatch,
    /// How long to wait for clamd's verdict after the last byte, in milliseconds.
    pub verdict_timeout_ms: u64,
}

impl Default for ClamavConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:3310".into(),
            stream_max_bytes: 25 * 1024 * 1024,
            on_limit_mismatch: LimitMismatch::Refuse,
            verdict_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMismatch {
    Refuse,
    Warn,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            s3: None,
            purge_interval_secs: 60,
            unattached_ttl_secs: 24 * 60 * 60,
            clamav: None,
            images: ImagesConfig::default(),
            resumable: ResumableConfig::default(),
        }
    }
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage, s3s-fs, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// The service's URL; unset: AWS for `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Allow a plain-HTTP endpoint (a private network, or tests on loopback).
    #[serde(default)]
    pub allow_http: bool,
    /// Keys start with this (several servers may share a bucket).
    #[serde(default)]
    pub prefix: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// The compliance record: the audit chain's signed checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComplianceConfig {
    /// Sign a checkpoint of the audit chain's head at least this often (when it moved).
    pub checkpoint_every_secs: u64,
    /// ... and as soon as this many records were appended since the last one.
    pub checkpoint_every_records: u64,
    /// Also append every checkpoint, one JSON line each, to this file: put it where the
    /// database's administrators cannot write (another disk, a write-once mount), so a
    /// rewritten database cannot take its checkpoints along.
    pub checkpoint_file: Option<PathBuf>,
    /// The ed25519 key that signs checkpoints (`ed25519-secret:<base64 seed>`, as
    /// `switchboard plugin keygen` writes). Default: generated once into
    /// `<data_dir>/audit.key`. Several nodes must share one.
    pub audit_key: Option<Secret>,
    /// Keep the original of every edited or deleted message for compliance (firms under
    /// SEC 17a-4 must be able to re-create it), not only under a legal hold. Users still
    /// see the message as edited or deleted.
    pub preserve_deleted: bool,
    /// How long a legal hold's release waits before it takes effect, unless a second
    /// compliance user confirms it sooner.
    pub hold_release_delay_secs: u64,
    /// Erase messages older than this many days (0: keep them forever); a room's own
    /// policy overrides it. Held messages are never erased.
    pub retention_days: u32,
    /// The shortest retention a room's policy may set.
    pub retention_min_days: u32,
    /// How often retention runs, in seconds (at least 60).
    pub retention_interval_secs: u64,
    /// Messages erased per transaction.
    pub retention_batch: usize,
    /// Export every room into this directory on a schedule (a series of signed batches, see
    /// `switchboard export verify`). Unset: no scheduled export.
    pub export_dir: Option<PathBuf>,
    /// How often the scheduled export writes a batch, in seconds (default: daily). Each
    /// batch covers the time since the previous one's end, so an interrupted run resumes
    /// where the last successful batch stopped.
    pub export_every_secs: u64,
    /// Archives know people by e-mail address: in the Actiance XML, Global Relay e-mails
    /// and CSV of an export, a user appears as `<name>@<export_email_domain>`.
    pub export_email_domain: String,
}

impl Default for ComplianceConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_secs: 60,
            checkpoint_every_records: 1000,
            checkpoint_file: None,
            audit_key: None,
            preserve_deleted: false,
            hold_release_delay_secs: 24 * 3600,
            retention_days: 0,
            retention_min_days: 1,
            retention_interval_secs: 3600,
            retention_batch: 1000,
            export_dir: None,
            export_every_secs: 24 * 3600,
            export_email_domain: "switchboard.invalid".into(),
        }
    }
}

/// Running several nodes: they share a PostgreSQL database and fan out through NATS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://host:4222`; unset runs a single node with in-process fan-out.
    pub nats_url: Option<Secret>,
    /// This node's name in logs and on the bus; default: random per start.
    pub node_id: Option<String>,
    /// Subject prefix, so several clusters can share one NATS.
    pub subject_prefix: String,
    /// Messages waiting to be published before new ones are dropped (and counted).
    pub publish_queue: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            node_id: None,
            subject_prefix: "switchboard".into(),
            publish_queue: 65_536,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            initial_admin_password: None,
            log_format: LogFormat::Plain,
            metrics_token: None,
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            store: StoreConfig::default(),
            plugins: PluginsConfig::default(),
            cluster: ClusterConfig::default(),
            compliance: ComplianceConfig::default(),
            files: FilesConfig::default(),
            presence: PresenceConfig::default(),
            webhooks: WebhooksConfig::default(),
            matrix: MatrixConfig::default(),
            llm: LlmConfig::default(),
            identity: IdentityConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Plain,
    Json,
}

/// Connections: how many, and how long a client may take. Every timeout here exists because
/// a client that sends slowly (one header line every few seconds) or not at all would
/// otherwise hold a connection, and its file descriptor, forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Open connections (HTTP and WebSocket together). One more is answered
    /// `503 too_many_connections` and closed.
    pub max_connections: usize,
    /// A request's head (request line and headers) must arrive within this time of the
    /// connection opening, or of the previous response on a kept-alive connection: this is
    /// also how long an idle kept-alive connection stays open.
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this time of its head, plus one second for every
    /// `body_min_bytes_per_sec` that has arrived (so a large upload at a fair rate finishes,
    /// and a body dripping in a byte at a time does not hold the connection).
    pub body_read_timeout_ms: u64,
    /// The slowest upload rate still given more time (see `body_read_timeout_ms`).
    pub body_min_bytes_per_sec: u64,
    /// Peers allowed to say who the client is (a reverse proxy). Only when the connection
    /// comes from one of these addresses is `client_address_header` believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The header a trusted proxy puts the client's address in. For `X-Forwarded-For`, the
    /// rightmost address that is not itself a trusted proxy is taken.
    pub client_address_header: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout_ms: 15_000,
            body_read_timeout_ms: 30_000,
            body_min_bytes_per_sec: 16 * 1024,
            trusted_proxies: Vec::new(),
            client_address_header: "x-forwarded-for".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 signing secret. When absent, one is generated on first start and kept in
    /// `<data_dir>/jwt.secret`; several nodes must share one, so set it explicitly there.
    pub jwt_secret: Option<Secret>,
    /// Lifetime of an access token, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token (and so of a session without activity), in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Let anyone create an account with `POST /api/v1/users`. Off: only admins may.
    pub open_registration: bool,
    /// Login attempts one client address may make against one account per minute before
    /// further tries from that address are refused. An attempt is counted before the
    /// password is checked, and given back if it succeeds. Keyed by the address too, so an
    /// attacker cannot lock the real user out from elsewhere.
    pub login_attempts_per_minute: u32,
    /// Failed login attempts one client address may make per minute across all accounts
    /// (stops one client spraying passwords over every account).
    pub login_attempts_per_address_per_minute: u32,
    /// Shortest password accepted, in characters.
    pub password_min_chars: usize,
    /// Refuse passwords found in the built-in list of common passwords, or equal to the
    /// user name.
    pub password_reject_common: bool,
    /// Who signs in with a local password: `everyone`, or, once sign-in goes through single
    /// sign-on or a directory, only the `break_glass_accounts` (an emergency admin for when
    /// the identity provider is down).
    pub local_passwords: LocalPasswords,
    /// The accounts that keep their local password under `local_passwords = "break_glass"`.
    pub break_glass_accounts: Vec<String>,
}

/// Who may sign in with a local password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalPasswords {
    Everyone,
    BreakGlass,
}

impl AuthConfig {
    /// Whether `user` may sign in with (or change) a local password.
    pub fn local_password_allowed(&self, user: &str) -> bool {
        match self.local_passwords {
            LocalPasswords::Everyone => true,
            LocalPasswords::BreakGlass => self.break_glass_accounts.iter().any(|a| a == user),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            open_registration: false,
            login_attempts_per_minute: 10,
            login_attempts_per_address_per_minute: 30,
            password_min_chars: 8,
            password_reject_common: true,
            local_passwords: LocalPasswords::Everyone,
            break_glass_accounts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest HTTP request body accepted.
    pub max_body_bytes: usize,
    /// Largest WebSocket frame accepted from a client.
    pub max_frame_bytes: usize,
    /// Largest message body, in bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Longest `client_msg_id`.
    pub max_client_msg_id_len: usize,
    /// Longest room name or topic.
    pub max_room_name_len: usize,
    /// Sustained messages (sends, edits, deletes) per second per user, across all sessions.
    pub messages_per_second: u32,
    /// Burst allowance on top of the sustained rate.
    pub message_burst: u32,
    /// Largest history page; asking for more is clamped to this.
    pub history_page_max: u32,
    /// Longest search query, in characters.
    pub search_query_max_chars: usize,
    /// Words, phrases and filters in one search query.
    pub search_terms_max: usize,
    /// Largest page of search results; asking for more is clamped to this.
    pub search_page_max: u32,
    /// A search whose words are all shorter than three characters (no index serves it) looks
    /// only at the newest this many events, so it stays a bounded scan.
    pub search_short_scan_events: u64,
    /// A search naming senders (`from:`) walks those senders' messages, newest first,
    /// instead of the word index when they have at most this many live messages together:
    /// the word index would hand back every message with the word, most of them from
    /// others. 0 always uses the word index. (PostgreSQL's planner makes this choice itself
    /// from its statistics; the setting applies to SQLite.)
    pub search_sender_scan_max: u64,
    /// Distinct `@name`s one message may mention (`too_many_mentions` beyond).
    pub mentions_per_message_max: usize,
    /// In rooms with more members than this, only owners and admins may say `@room`.
    pub room_mention_members_max: usize,
    /// Different emoji one message may carry as reactions (`too_many_reactions` beyond;
    /// adding to an emoji already there is always possible).
    pub reactions_per_message_max: u32,
    /// Messages one room may have pinned at once (`too_many_pins` beyond).
    pub pins_per_room_max: u32,
    /// Events queued for one WebSocket session before it is disconnected as a slow consumer.
    pub ws_send_queue: usize,
    /// How often the server pings an idle WebSocket, in seconds.
    pub ws_heartbeat_secs: u64,
    /// A WebSocket silent (no frame, no pong) this long is closed, in seconds.
    pub ws_idle_timeout_secs: u64,
    /// Events sent in one resume catch-up per room before the client must page history.
    pub resume_max_events: u32,
    /// Frames of any kind one WebSocket connection may send per second (typing, read, …);
    /// messages are limited further by `messages_per_second`.
    pub ws_frames_per_second: u32,
    /// How long a new connection holds live events back waiting for its `sync` frame.
    pub ws_sync_grace_ms: u64,
    /// Members in one group room.
    pub max_room_members: usize,
    /// Rooms one `sync` frame may name.
    pub max_sync_rooms: usize,
    /// How often a WebSocket checks that its session is still live, in seconds (0: never).
    /// Ending a session closes its sockets at once through the hub and the cluster bus; this
    /// is the safety net for a bus message lost while NATS was down.
    pub ws_session_recheck_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 16 * 1024,
            max_client_msg_id_len: 64,
            max_room_name_len: 200,
            messages_per_second: 20,
            message_burst: 40,
            history_page_max: 200,
            search_query_max_chars: 500,
            search_terms_max: 16,
            search_page_max: 100,
            search_short_scan_events: 200_000,
            search_sender_scan_max: 50_000,
            mentions_per_message_max: 20,
            room_mention_members_max: 100,
            reactions_per_message_max: 20,
            pins_per_room_max: 50,
            ws_send_queue: 1024,
            ws_heartbeat_secs: 15,
            ws_idle_timeout_secs: 45,
            resume_max_events: 1000,
            ws_frames_per_second: 100,
            ws_sync_grace_ms: 1000,
            max_room_members: 10_000,
            max_sync_rooms: 1000,
            ws_session_recheck_secs: 60,
        }
    }
}

impl Limits {
    pub fn ws_heartbeat(&self) -> Duration {
        Duration::from_secs(self.ws_heartbeat_secs.max(1))
    }
    pub fn ws_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_idle_timeout_secs.max(2))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Reader connections (SQLite) or pool size (PostgreSQL).
    pub max_connections: u32,
    /// SQLite durability: `full` (default; an acknowledged message survives power loss) or
    /// `normal` (survives a process crash only).
    pub sqlite_synchronous: SqliteSync,
    /// SQLite: how often (ms) a connection of its own copies the WAL back into the
    /// database file with a passive checkpoint, which never blocks the writer. 0 leaves it
    /// to SQLite, which checkpoints inside the commit that fills 1,000 pages and so makes
    /// that commit's senders wait for it.
    pub sqlite_checkpoint_ms: u64,
    /// Most writes committed in one transaction by the group-commit writer.
    pub commit_batch_max: usize,
    /// Writes waiting for the group-commit writer before senders are told to retry.
    pub commit_queue: usize,
    /// Keep every message's search text and index it (default). Off, messages cost less
    /// to store (on SQLite the trigram index is most of a message's write cost) and
    /// search answers `503 search_disabled`; turned on again, the server indexes what it
    /// missed in the background.
    pub search_index: bool,
    /// SQLite: how many pages of the search index the group-commit writer merges per step,
    /// taken while no write is waiting (at the latest every 32 commits). FTS5 would
    /// otherwise merge inside whichever commit crosses its threshold, and that commit's
    /// senders would wait for the merge. 0 leaves merging to FTS5, inside commits. At most
    /// 65,536.
    pub search_merge_pages: u32,
    /// SQLite: most message keys `(sender, client_msg_id)` the in-memory retry filter
    /// holds, about 1.2 bytes each once full. With a `message-pre-send` plugin loaded, the
    /// filter answers "not a retry" for a new message without reading the database. Past
    /// this many stored messages, every retry check reads the database. 0: no filter.
    pub sqlite_retry_filter_keys: u64,
}

impl StoreConfig {
    /// The most pages a search index merge step may take (`search_merge_pages`).
    pub const SEARCH_MERGE_PAGES_MAX: u32 = 65_536;

    /// Refuse a store configuration that cannot work, before the server starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.search_merge_pages > Self::SEARCH_MERGE_PAGES_MAX {
            return Err(format!(
                "store.search_merge_pages must be between 0 and {}",
                Self::SEARCH_MERGE_PAGES_MAX
            ));
        }
        Ok(())
    }

    /// `sqlite_checkpoint_ms` as the store takes it: `None` for 0.
    pub fn sqlite_checkpoint_interval(&self) -> Option<Duration> {
        (self.sqlite_checkpoint_ms > 0).then(|| Duration::from_millis(self.sqlite_checkpoint_ms))
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_synchronous: SqliteSync::Full,
            sqlite_checkpoint_ms: 100,
            commit_batch_max: 512,
            commit_queue: 16_384,
            search_index: true,
            search_merge_pages: 16,
            sqlite_retry_filter_keys: 50_000_000,
        }
    }
}

/// A string that never shows in `Debug` output or logs.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Operator configuration of the plugin layer (`[plugins]` in `switchboard.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory with one sub-directory per plugin (`plugin.toml` + component `.wasm`).
    /// `None`: no plugins.
    pub dir: Option<PathBuf>,
    /// Limits for plugins whose manifest does not set its own.
    pub limits: LimitsConfig,
    /// Granularity of the CPU deadline: the ticker thread advances the engine's epoch this
    /// often. A runaway call is stopped within its deadline (rounded up to a tick).
    pub epoch_tick_ms: u64,
    /// Use wasmtime's pooling allocator (falls back to on-demand allocation when the
    /// address space for the pool cannot be reserved).
    pub pooling: bool,
    /// Instances the pool can hold at once, across all plugins.
    pub pool_instances: u32,
    /// Idle warm instances kept per plugin.
    pub max_idle_instances: usize,
    /// Replace an instance after this many calls, so slow leaks in a guest stay bounded.
    pub recycle_after_calls: u64,
    /// Events waiting for one observer plugin's `message-delivered` calls (each observer
    /// has its own queue); beyond this its events are dropped and counted against it.
    pub observer_queue: usize,
    /// Circuit breaker: this many failures ...
    pub breaker_failures: u32,
    /// ... within this many seconds open a circuit (the plugin is no longer called there) ...
    pub breaker_window_secs: u64,
    /// ... for this many seconds, after which one trial call decides (0 = until restart).
    pub breaker_cooldown_secs: u64,
    /// Failures are counted per room and per sender first: a room's or sender's circuit
    /// opens on this many of its own failures, and only that room or sender is cut off.
    pub breaker_scope_failures: u32,
    /// The whole plugin's circuit opens only when `breaker_failures` failures came from at
    /// least this many different rooms and senders, so one room or one member cannot take
    /// a plugin offline for everyone.
    pub breaker_min_scopes: u32,
    /// The largest wall-clock budget (`limits.wall_timeout_ms`,
    /// `limits.observer_timeout_ms`) a plugin's manifest may ask for.
    pub max_wall_timeout_ms: u64,
    /// How long shutdown waits for observers to finish their queues before it abandons
    /// what is left (whatever the plugins do, shutdown ends within this).
    pub shutdown_timeout_ms: u64,
    /// Cache compiled components (a Python or JavaScript component takes seconds to compile;
    /// a cached one loads in milliseconds). Artifacts of versions no longer installed are
    /// removed at start and after every install, upgrade or uninstall.
    pub compile_cache: bool,
    /// Where; default `<data_dir>/plugin-cache`.
    pub compile_cache_dir: Option<PathBuf>,
    /// Largest component the admin API accepts for an install.
    pub max_component_bytes: usize,
    /// How long a reload, disable or uninstall waits for calls still running on the old
    /// version to finish before it reports back (the old version finishes them either way).
    pub drain_timeout_ms: u64,
    /// Public keys (`ed25519:<base64>`) whose signatures are trusted. Empty: signatures are
    /// not checked. Otherwise only components with a valid `<component>.sig` by one of them
    /// load (see [`crate::signing`]).
    pub trusted_keys: crate::signing::TrustedKeys,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            limits: LimitsConfig::default(),
            epoch_tick_ms: 2,
            pooling: true,
            pool_instances: 128,
            max_idle_instances: 4,
            recycle_after_calls: 100_000,
            observer_queue: 1024,
            breaker_failures: 10,
            breaker_window_secs: 60,
            breaker_cooldown_secs: 300,
            breaker_scope_failures: 3,
            breaker_min_scopes: 3,
            max_wall_timeout_ms: 30_000,
            shutdown_timeout_ms: 5_000,
            compile_cache: true,
            compile_cache_dir: None,
            max_component_bytes: 32 * 1024 * 1024,
            drain_timeout_ms: 10_000,
            trusted_keys: crate::signing::TrustedKeys::default(),
        }
    }
}

/// Resource limits of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time one hook call may spend running its own code (waits in host imports such as
    /// `http` do not count here; they count against `wall_timeout_ms`).
    pub timeout_ms: u64,
    /// Wall-clock budget of one call of a hook someone waits for (`message-pre-send`,
    /// `command`, `on-login`, `on-connect`, `authenticate`): computing, WASI waits (clocks,
    /// polls) and host-import waits (`http`, `rooms`, `bot`) all count. When it runs out the
    /// call ends, its instance is discarded and the failure policy decides. Never shorter
    /// than `timeout_ms` (a manifest that raises only `timeout_ms` keeps working).
    pub wall_timeout_ms: u64,
    /// The same budget for one `message-delivered` call, which nobody waits for (it runs
    /// from the plugin's own queue).
    pub observer_timeout_ms: u64,
    /// Calls of this plugin running at once (each holds an instance); further calls wait
    /// for a slot within their wall-clock budget, so one plugin cannot take another's.
    pub max_concurrent_calls: u32,
    /// Of those, how many one sender's calls may hold; a call over this share fails at
    /// once (`overloaded`, its failure policy decides) instead of queueing, so a member
    /// cannot occupy a plugin's slots with stuck calls until their circuit opens.
    pub max_concurrent_calls_per_sender: u32,
    /// Plugin time one sender's calls may use per second (the plugin's own running time,
    /// not its waits in host imports); over it, that sender's further calls fail at once
    /// (`overloaded`) until the second is over. Bounds what a flood of expensive messages
    /// costs everyone else. `message-delivered` is not counted (nobody waits for it).
    pub sender_time_ms_per_second: u32,
    /// Log lines, and bytes, the plugin may write per second; the rest is dropped and
    /// counted.
    pub log_lines_per_second: u32,
    pub log_bytes_per_second: usize,
    /// Linear memory one instance may grow to.
    pub memory_mib: u64,
    /// Largest answer a hook may return (body plus metadata of a modification, reason of a
    /// rejection or denial).
    pub max_output_bytes: usize,
    /// Keys the plugin's `kv` namespace may hold.
    pub kv_max_keys: usize,
    pub kv_max_key_bytes: usize,
    pub kv_max_value_bytes: usize,
    /// Bytes (keys plus values) the plugin's `kv` namespace may hold in all: what bounds
    /// the memory it takes.
    pub kv_max_bytes: usize,
    /// Largest single `wasi:random` request (`get-random-bytes`); a larger one traps the
    /// call instead of making the host generate it.
    pub max_random_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 50,
            wall_timeout_ms: 1_000,
            observer_timeout_ms: 5_000,
            max_concurrent_calls: 16,
            max_concurrent_calls_per_sender: 4,
            sender_time_ms_per_second: 200,
            log_lines_per_second: 100,
            log_bytes_per_second: 64 * 1024,
            memory_mib: 32,
            max_output_bytes: 256 * 1024,
            kv_max_keys: 10_000,
            kv_max_key_bytes: 256,
            kv_max_value_bytes: 64 * 1024,
            kv_max_bytes: 4 * 1024 * 1024,
            max_random_bytes: 64 * 1024,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err("limits.timeout_ms must be between 1 and 60000".into());
        }
        if self.memory_mib == 0 || self.memory_mib > 4096 {
            return Err("limits.memory_mib must be between 1 and 4096".into());
        }
        if self.max_output_bytes == 0 {
            return Err("limits.max_output_bytes must be positive".into());
        }
        if self.kv_max_key_bytes == 0 || self.kv_max_value_bytes == 0 || self.kv_max_bytes == 0 {
            return Err(
                "limits.kv_max_key_bytes, kv_max_value_bytes and kv_max_bytes must be positive"
                    .into(),
            );
        }
        if self.wall_timeout_ms == 0 || self.observer_timeout_ms == 0 {
            return Err("limits.wall_timeout_ms and observer_timeout_ms must be positive".into());
        }
        if self.max_concurrent_calls == 0 || self.max_concurrent_calls > 1024 {
            return Err("limits.max_concurrent_calls must be between 1 and 1024".into());
        }
        if self.max_concurrent_calls_per_sender == 0
            || self.max_concurrent_calls_per_sender > self.max_concurrent_calls
        {
            return Err(
                "limits.max_concurrent_calls_per_sender must be between 1 and \
                 max_concurrent_calls"
                    .into(),
            );
        }
        if self.sender_time_ms_per_second == 0 {
            return Err("limits.sender_time_ms_per_second must be positive".into());
        }
        if self.log_lines_per_second == 0 || self.log_bytes_per_second == 0 {
            return Err(
                "limits.log_lines_per_second and log_bytes_per_second must be positive".into(),
            );
        }
        if self.max_random_bytes == 0 {
            return Err("limits.max_random_bytes must be positive".into());
        }
        Ok(())
    }

    /// The wall-clock budgets in force: never shorter than the CPU deadline.
    pub fn wall_budgets(&self) -> (u64, u64) {
        (
            self.wall_timeout_ms.max(self.timeout_ms),
            self.observer_timeout_ms.max(self.timeout_ms),
        )
    }

    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Defaults, then `file` (or `./switchboard.toml` if present), then `SWITCHBOARD_*` env.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("switchboard.toml")),
        }
        // `SWITCHBOARD_CONFIG` names the file (a CLI flag), it is not a setting.
        figment = figment.merge(
            Env::prefixed("SWITCHBOARD_")
                .ignore(&["config"])
                .split("__"),
        );
        figment.extract().map_err(|e| ConfigError(Box::new(e)))
    }

    /// The database URL in force (explicit, or SQLite under the data directory).
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_string(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join("switchboard.db").display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\n[limits]\nmax_message_bytes = 1234\n[auth]\nopen_registration = true\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.limits.max_message_bytes, 1234);
        assert!(config.auth.open_registration);
        assert_eq!(
            config.limits.history_page_max,
            Limits::default().history_page_max
        );
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, "[limits]\nmax_mesage_bytes = 10\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("max_mesage_bytes"), "{err}");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = Config {
            database_url: Some(Secret("postgres://u:hunter2@db/x".into())),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
