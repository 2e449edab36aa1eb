//! Sign-in with OpenID Connect: the authorization code flow with PKCE against any standard
//! provider (`[[identity.oidc]]`). Discovery, the token exchange and the ID token's checks
//! (signature against the provider's published keys, issuer, audience, expiry, nonce) are
//! the `openidconnect` crate's; this module decides what a verified sign-in means here:
//! which account (linked by the provider's subject, created just in time, or refused), its
//! profile and groups (through the [`Directory`]), and the session.
//!
//! The flow, each step single-use and kept in the database so any node may serve it:
//! 1. `start`: a random state, nonce and PKCE verifier are stored (under the state's digest)
//!    and the browser is sent to the provider.
//! 2. `finish` (the provider's redirect back): the state is taken (unknown, used or
//!    expired: refused), the code exchanged with the verifier, the ID token verified, the
//!    account found or made, and a one-time ticket issued — the browser gets the ticket in
//!    the URL's fragment, never tokens.
//! 3. `redeem`: the web client trades the ticket (once, within a minute) for a session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

use crate::accounts::{Accounts, UserName};
use crate::audit::{self, Action, Actor, Subject};
use crate::auth::TokenPair;
use crate::config::{IdentityConfig, OidcProvider};
use crate::directory::{Directory, Profile};
use crate::error::{ApiError, Result};
use crate::ids::{random_token, sha256_hex};
use crate::store::{ExternalIdentity, Store, User, now_millis};

/// How long a hand-over ticket may wait for the web client.
const TICKET_TTL: Duration = Duration::from_secs(60);
/// How long a provider's discovered metadata (and so its signing keys) is trusted before it
/// is fetched again; a token signed with a key not in it makes an earlier refetch.
const METADATA_TTL: Duration = Duration::from_secs(600);
/// Most groups one sign-in's claim may name; more are refused, not cut.
pub const MAX_GROUPS_CLAIM: usize = 1000;
/// The kinds of one-time values this module keeps.
const STATE: &str = "oidc_state";
const TICKET: &str = "login_ticket";

/// Why a sign-in failed, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no sign-in provider `{0}` is configured")]
    UnknownProvider(String),
    #[error("the identity provider cannot be reached")]
    Unavailable(String),
    #[error("this sign-in is unknown, was already used or took too long; start again")]
    InvalidState,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the identity provider did not accept the sign-in code")]
    ExchangeFailed(String),
    #[error("the identity provider's ID token is not valid: {0}")]
    InvalidIdToken(String),
    #[error("the sign-in ticket is unknown, used or expired")]
    InvalidTicket,
}

impl OidcError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProvider(_) => "unknown_provider",
            Self::Unavailable(_) => "provider_unavailable",
            Self::InvalidState => "invalid_state",
            Self::Refused(_) => "provider_refused",
            Self::ExchangeFailed(_) => "code_exchange_failed",
            Self::InvalidIdToken(_) => "invalid_id_token",
            Self::InvalidTicket => "invalid_ticket",
        }
    }
}

impl From<OidcError> for ApiError {
    fn from(err: OidcError) -> Self {
        // What the provider or the crate said in detail goes to the log, not the client.
        if let OidcError::Unavailable(detail) | OidcError::ExchangeFailed(detail) = &err {
            tracing::warn!(code = err.code(), %detail, "OpenID sign-in failed");
        }
        let message = err.to_string();
        match err {
            OidcError::UnknownProvider(_) => ApiError::not_found(err.code(), message),
            OidcError::Unavailable(_) => ApiError::unavailable(err.code(), message),
            _ => ApiError::unauthenticated(err.code(), message),
        }
    }
}

/// Who signed in, as the verified ID token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The provider's stable id for the person (`sub`).
    pub subject: String,
    pub user_name: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// `None` when the provider sends no groups claim (group memberships stay as they are).
    pub groups: Option<Vec<String>>,
}

/// A sign-in in flight, kept under its state's digest.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    provider: String,
    nonce: String,
    verifier: String,
}

/// A finished sign-in waiting for the web client, kept under the ticket's digest.
#[derive(Debug, Serialize, Deserialize)]
struct Ticket {
    user: i64,
    method: String,
}

/// A provider's public face, for the sign-in page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    pub id: String,
    pub display_name: String,
}

pub struct Oidc {
    config: IdentityConfig,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    directory: Arc<Directory>,
    accounts: Arc<Accounts>,
    metadata: tokio::sync::Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>,
    /// Sign-ins started per client address.
    starts: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").finish_non_exhaustive()
    }
}

impl Oidc {
    pub fn new(
        config: IdentityConfig,
        store: Arc<dyn Store>,
        directory: Arc<Directory>,
        accounts: Arc<Accounts>,
    ) -> anyhow::Result<Self> {
        let per_minute = std::num::NonZeroU32::new(config.oidc_starts_per_address_per_minute)
            .ok_or_else(|| {
                anyhow::anyhow!("oidc_starts_per_address_per_minute must be positive")
            })?;
        Ok(Self {
            starts: RateLimiter::keyed(Quota::per_minute(per_minute)),
            http: http_client(Duration::from_millis(config.oidc_timeout_ms))?,
            config,
            store,
            directory,
            accounts,
            metadata: tokio::sync::Mutex::default(),
        })
    }

    /// The configured providers, for a "Sign in with …" button each.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.config
            .oidc
            .iter()
            .map(|p| ProviderInfo {
                id: p.id.clone(),
                display_name: p.display_name.clone(),
            })
            .collect()
    }

    /// Begin a sign-in from `client`: the URL to send the browser to.
    pub async fn start(&self, provider_id: &str, client: IpAddr) -> Result<String> {
        let provider = self.provider(provider_id)?;
        if self.starts.len() > 10_000 {
            self.starts.retain_recent();
        }
        if self.starts.check_key(&client).is_err() {
            return Err(ApiError::TooManyRequests {
                code: "too_many_sign_ins",
                message: "too many sign-ins started from this address; try again in a minute"
                    .into(),
                retry_after_ms: 60_000,
            });
        }
        let metadata = self.metadata(provider, false).await?;
        let client = self.client(provider, metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in provider.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let pending = Pending {
            provider: provider.id.clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        };
        self.store
            .put_once(
                &sha256_hex(state.secret()),
                STATE,
                &serde_json::to_string(&pending).map_err(ApiError::internal)?,
                now_millis() - self.state_ttl_ms(),
            )
            .await?;
        Ok(url.to_string())
    }

    /// The provider sent the browser back with `code` and `state`: check everything, find
    /// or make the account, and issue the one-time ticket. Every failure is an
    /// `auth.login_failed` record.
    pub async fn finish(
        &self,
        provider_id: &str,
        code: &str,
        state: &str,
        client: IpAddr,
    ) -> Result<String> {
        let outcome = self.finish_inner(provider_id, code, state).await;
        match outcome {
            Ok((user, method)) => {
                let ticket = random_token(32);
                let payload = serde_json::to_string(&Ticket {
                    user: user.id,
                    method,
                })
                .map_err(ApiError::internal)?;
                self.store
                    .put_once(
                        &sha256_hex(&ticket),
                        TICKET,
                        &payload,
                        now_millis() - self.state_ttl_ms(),
                    )
                    .await?;
                Ok(ticket)
            }
            Err(err) => {
                self.record_failure(
                    provider_id,
                    client,
                    serde_json::json!({ "reason": err.code() }),
                )
                .await;
                Err(err)
            }
        }
    }

    /// The provider answered the authorization request with an error (the person cancelled,
    /// or the provider refused them): the state is used up and the failure on record.
    pub async fn refused(
        &self,
        provider_id: &str,
        state: Option<&str>,
        error: &str,
        client: IpAddr,
    ) -> ApiError {
        if let Some(state) = state {
            let _ = self.store.take_once(&sha256_hex(state), STATE).await;
        }
        // The provider's code as the URL carried it: whoever sent the browser here chose it,
        // so only a short, printable form goes on record and back to the page.
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        let detail = serde_json::json!({ "reason": "provider_refused", "error": error });
        self.record_failure(provider_id, client, detail).await;
        OidcError::Refused(error).into()
    }

    /// A failed sign-in, on record as any failed login is (`auth.login_failed`).
    async fn record_failure(&self, provider_id: &str, client: IpAddr, detail: serde_json::Value) {
        audit::record(
            self.store.as_ref(),
            Actor::Address(client),
            Action::LoginFailed,
            Subject::Account(&format!("oidc:{provider_id}")),
            detail,
        )
        .await;
    }

    async fn finish_inner(
        &self,
        provider_id: &str,
        code: &str,
        state: &str,
    ) -> Result<(User, String)> {
        let provider = self.provider(provider_id)?;
        let (payload, created_at) = self
            .store
            .take_once(&sha256_hex(state), STATE)
            .await?
            .ok_or(OidcError::InvalidState)?;
        let pending: Pending =
            serde_json::from_str(&payload).map_err(|_| OidcError::InvalidState)?;
        if pending.provider != provider.id || now_millis() - created_at > self.state_ttl_ms() {
            return Err(OidcError::InvalidState.into());
        }
        let metadata = self.metadata(provider, false).await?;
        let client = self.client(provider, metadata)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::ExchangeFailed(e.to_string()))?;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::InvalidIdToken("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(pending.nonce);
        let signed_in = match self.verify(provider, id_token, &nonce, false).await {
            // Signed with a key published since the metadata was read: read it again once.
            Err(OidcError::InvalidIdToken(_)) => {
                self.verify(provider, id_token, &nonce, true).await?
            }
            other => other?,
        };
        let source = source_of(provider);
        let user = self.account_for(provider, &source, &signed_in).await?;
        if let Some(groups) = &signed_in.groups {
            self.directory
                .set_user_groups(&source, user.id, groups, self.config.scim.max_group_members)
                .await?;
        }
        Ok((user, source))
    }

    async fn verify(
        &self,
        provider: &OidcProvider,
        id_token: &CoreIdToken,
        nonce: &Nonce,
        refresh: bool,
    ) -> std::result::Result<SignedIn, OidcError> {
        let metadata = self
            .metadata(provider, refresh)
            .await
            .map_err(|_| OidcError::Unavailable("refreshing the provider's keys".into()))?;
        let client = self
            .client(provider, metadata)
            .map_err(|_| OidcError::Unavailable("the provider's metadata".into()))?;
        verified_sign_in(&client.id_token_verifier(), id_token, nonce, provider)
    }

    /// Trade a ticket for a session (once, within a minute of the sign-in).
    pub async fn redeem(&self, ticket: &str, client: IpAddr) -> Result<TokenPair> {
        let (payload, created_at) = self
            .store
            .take_once(&sha256_hex(ticket), TICKET)
            .await?
            .ok_or(OidcError::InvalidTicket)?;
        let ticket: Ticket =
            serde_json::from_str(&payload).map_err(|_| OidcError::InvalidTicket)?;
        if now_millis() - created_at > i64::try_from(TICKET_TTL.as_millis()).unwrap_or(60_000) {
            return Err(OidcError::InvalidTicket.into());
        }
        let user = self
            .store
            .user_by_id(ticket.user)
            .await?
            .ok_or(OidcError::InvalidTicket)?;
        self.accounts
            .login_verified(user, &ticket.method, client)
            .await
    }

    /// The account a verified sign-in belongs to: the one linked to its subject; else an
    /// account of the same name that may be linked (one without a local password — made by
    /// a provider — or any, if the operator allows); else a new one, if allowed.
    async fn account_for(
        &self,
        provider: &OidcProvider,
        source: &str,
        signed_in: &SignedIn,
    ) -> Result<User> {
        let identity = ExternalIdentity {
            external_id: Some(signed_in.subject.clone()),
            email: signed_in.email.clone(),
        };
        if let Some(user) = self
            .store
            .user_by_external_id(source, &signed_in.subject)
            .await?
        {
            let profile = Profile {
                name: user.name.clone(),
                display_name: signed_in.display_name.clone(),
                external_id: identity.external_id,
                email: identity.email,
                active: user.active,
            };
            return self.directory.update_user(source, &user, profile).await;
        }
        let claimed = signed_in.user_name.as_deref().ok_or_else(|| {
            ApiError::unauthenticated(
                "missing_claim",
                format!(
                    "the identity provider sent no `{}` claim to name the account",
                    provider.user_name_claim
                ),
            )
        })?;
        let name = UserName::parse(user_name_of(claimed, provider.strip_domain))?;
        if let Some((existing, password)) = self.store.user_by_name(name.as_str()).await? {
            if existing.is_bot || (password.is_some() && !provider.link_existing_accounts) {
                return Err(ApiError::conflict(
                    "account_not_linked",
                    format!(
                        "an account named `{}` exists and is not linked to this identity \
                         provider; an admin can allow it (identity.oidc.link_existing_accounts)",
                        name.as_str()
                    ),
                ));
            }
            self.store
                .set_external_identity(existing.id, source, &identity)
                .await?;
            audit::record(
                self.store.as_ref(),
                Actor::Directory(source),
                Action::UserUpdate,
                Subject::User(existing.id),
                serde_json::json!({ "changed": ["identity"], "linked": true }),
            )
            .await;
            return Ok(existing);
        }
        if !provider.create_accounts {
            return Err(ApiError::forbidden(
                "no_account",
                "there is no account for you here; ask an admin to create one",
            ));
        }
        self.directory
            .create_user(
                source,
                Profile {
                    name: name.as_str().to_string(),
                    display_name: signed_in.display_name.clone(),
                    external_id: identity.external_id,
                    email: identity.email,
                    active: true,
                },
            )
            .await
    }

    fn provider(&self, id: &str) -> std::result::Result<&OidcProvider, OidcError> {
        self.config
            .oidc
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| OidcError::UnknownProvider(id.chars().take(64).collect()))
    }

    fn state_ttl_ms(&self) -> i64 {
        i64::try_from(self.config.oidc_login_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The provider's discovery document (cached; `refresh` reads it again).
    async fn metadata(
        &self,
        provider: &OidcProvider,
        refresh: bool,
    ) -> std::result::Result<CoreProviderMetadata, OidcError> {
        let mut cache = self.metadata.lock().await;
        if !refresh
            && let Some((read_at, metadata)) = cache.get(&provider.id)
            && read_at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(provider.issuer.clone())
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        cache.insert(provider.id.clone(), (Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(
        &self,
        provider: &OidcProvider,
        metadata: CoreProviderMetadata,
    ) -> std::result::Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(format!(
            "{}/api/v1/auth/oidc/{}/callback",
            self.config.public_url.trim_end_matches('/'),
            provider.id
        ))
        .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            provider
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(redirect))
    }
}

/// An HTTP client for talking to providers: no redirects followed (a provider's endpoint
/// must not bounce the server elsewhere), bounded time.
fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()?)
}

/// The directory source a provider's accounts and groups are kept under.
fn source_of(provider: &OidcProvider) -> String {
    format!("oidc:{}", provider.id)
}

/// A provider's user name as ours: lower-cased (names are compared that way), and with
/// `strip_domain` the part before an `@` (Entra ID's and Okta's are e-mail-shaped).
pub fn user_name_of(claimed: &str, strip_domain: bool) -> String {
    let name = claimed.trim().to_lowercase();
    match name.split_once('@') {
        Some((local, _)) if strip_domain => local.to_string(),
        _ => name,
    }
}

/// Check an ID token with `verifier` (signature, issuer, audience, expiry) and `nonce`, and
/// read who signed in. The claims beyond the standard ones (the groups) come from the same,
/// verified token.
fn verified_sign_in(
    verifier: &openidconnect::core::CoreIdTokenVerifier<'_>,
    id_token: &CoreIdToken,
    nonce: &Nonce,
    provider: &OidcProvider,
) -> std::result::Result<SignedIn, OidcError> {
    let claims = id_token
        .claims(verifier, nonce)
        .map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
    let raw = raw_claims(&id_token.to_string())
        .ok_or_else(|| OidcError::InvalidIdToken("the payload is not a JSON object".into()))?;
    let text = |name: &str| {
        raw.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .filter(|s| !s.trim().is_empty())
    };
    let groups = match &provider.groups_claim {
        None => None,
        Some(claim) => match raw.get(claim) {
            None | Some(serde_json::Value::Null) => Some(Vec::new()),
            Some(serde_json::Value::Array(values)) => {
                if values.len() > MAX_GROUPS_CLAIM {
                    return Err(OidcError::InvalidIdToken(format!(
                        "the `{claim}` claim names more than {MAX_GROUPS_CLAIM} groups"
                    )));
                }
                Some(
                    values
                        .iter()
                        .filter_map(serde_json::Value::as_str)
                        .map(str::to_string)
                        .collect(),
                )
            }
            Some(_) => {
                return Err(OidcError::InvalidIdToken(format!(
                    "the `{claim}` claim is not a list of group names"
                )));
            }
        },
    };
    Ok(SignedIn {
        subject: claims.subject().as_str().to_string(),
        user_name: text(&provider.user_name_claim),
        display_name: text(&provider.display_name_claim),
        email: text(&provider.email_claim),
        groups,
    })
}

/// The payload of a compact JWS as JSON (no checks: only for a token already verified).
fn raw_claims(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn provider_user_names_become_ours() {
        assert_eq!(user_name_of("Alice.Smith@Contoso.com", true), "alice.smith");
        assert_eq!(
            user_name_of("alice@contoso.com", false),
            "alice@contoso.com"
        );
        assert_eq!(user_name_of(" bob ", true), "bob");
    }

    #[test]
    fn raw_claims_read_the_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"x","groups":["a"]}"#);
        let claims = raw_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(claims["groups"], serde_json::json!(["a"]));
        assert!(raw_claims("not a jwt").is_none());
        assert!(
            raw_claims("e30.W10.sig").is_none(),
            "an array is not a claims object"
        );
    }
}
