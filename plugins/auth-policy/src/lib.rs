//! Login policy and API-key logins.
//!
//! `on-login` (every login, whatever the method) allows a user only if every configured
//! rule holds; users listed in `exempt` skip the rules (keep an administrator there).
//!
//! - **E-mail domains**: `allowed_domains = ["example.com"]`. Switchboard accounts have no
//!   e-mail address, so the operator maps them here: `"email.<user>" = "a@example.com"`, or
//!   `default_domain = "example.com"` for everyone else (`<user>@example.com`). A user
//!   with no address is denied while `allowed_domains` is set.
//! - **Groups**: `"group.<name>" = ["alice", "bob"]` defines groups; `allowed_groups =
//!   ["staff"]` lets in members of any listed group only.
//! - **Login hours**: `login_hours = "08:00-18:00"` (start inclusive, end exclusive; may wrap
//!   midnight, e.g. `22:00-06:00`; `24:00` is the end of the day) in UTC shifted by
//!   `utc_offset_minutes` (default 0).
//!
//! `authenticate` takes method `api-key`: `"api_key.<sha256 hex of the key>" = "<user>"`
//! maps a key to a user (only hashes are configured, never keys). An unknown key is
//! rejected; other methods are deferred to the next plugin.
//!
//! Grant it `config` (and `log`). A policy that cannot be parsed denies every login
//! (fail closed) with a reason saying which setting is wrong.

use sha2::{Digest, Sha256};
use switchboard_plugin_api::{
    AuthOutcome, Credentials, Decision, HookSet, Plugin, User, config, export_plugin,
};

#[derive(Debug, Default)]
pub struct Policy {
    exempt: Vec<String>,
    emails: Vec<(String, String)>,
    default_domain: Option<String>,
    allowed_domains: Vec<String>,
    groups: Vec<(String, Vec<String>)>,
    allowed_groups: Vec<String>,
    /// Minutes since midnight: `[start, end)`.
    hours: Option<(u32, u32)>,
    utc_offset_minutes: i64,
    api_keys: Vec<(String, String)>,
}

fn list(value: &str) -> Vec<String> {
    value
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect()
}

fn parse_time(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

/// Lower-case hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Policy {
    /// Build from `(key, value)` settings; an error names the bad setting.
    pub fn from_settings(settings: &[(String, String)]) -> Result<Self, String> {
        let mut p = Policy::default();
        for (key, value) in settings {
            match key.as_str() {
                "exempt" => p.exempt = list(value),
                "default_domain" => p.default_domain = Some(value.trim().to_lowercase()),
                "allowed_domains" => p.allowed_domains = list(value),
                "allowed_groups" => p.allowed_groups = list(value),
                "login_hours" => {
                    let (a, b) = value
                        .split_once('-')
                        .and_then(|(a, b)| Some((parse_time(a)?, parse_time(b)?)))
                        .ok_or_else(|| format!("login_hours {value:?}: use HH:MM-HH:MM"))?;
                    p.hours = Some((a, b));
                }
                "utc_offset_minutes" => {
                    p.utc_offset_minutes = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|m: &i64| m.abs() <= 14 * 60)
                        .ok_or_else(|| format!("utc_offset_minutes {value:?}: minutes, ±840"))?;
                }
                _ => {
                    if let Some(user) = key.strip_prefix("email.") {
                        p.emails
                            .push((user.to_lowercase(), value.trim().to_lowercase()));
                    } else if let Some(group) = key.strip_prefix("group.") {
                        p.groups.push((group.to_lowercase(), list(value)));
                    } else if let Some(hash) = key.strip_prefix("api_key.") {
                        p.api_keys
                            .push((hash.to_lowercase(), value.trim().to_string()));
                    } else {
                        return Err(format!("unknown setting {key:?}"));
                    }
                }
            }
        }
        Ok(p)
    }

    fn email(&self, user: &str) -> Option<String> {
        self.emails
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, e)| e.clone())
            .or_else(|| self.default_domain.as_ref().map(|d| format!("{user}@{d}")))
    }

    /// Allow or deny `user` logging in at `minute_of_day_utc`.
    pub fn decide(&self, user: &str, minute_of_day_utc: u32) -> Result<(), String> {
        let user = user.to_lowercase();
        if self.exempt.contains(&user) {
            return Ok(());
        }
        if !self.allowed_domains.is_empty() {
            let domain = self
                .email(&user)
                .and_then(|e| e.rsplit_once('@').map(|(_, d)| d.to_string()));
            match domain {
                Some(d) if self.allowed_domains.contains(&d) => {}
                Some(d) => return Err(format!("e-mail domain {d} may not log in")),
                None => return Err("no e-mail address on record for this account".into()),
            }
        }
        if !self.allowed_groups.is_empty() {
            let member = self
                .groups
                .iter()
                .any(|(g, users)| self.allowed_groups.contains(g) && users.contains(&user));
            if !member {
                return Err("this account is in none of the groups allowed to log in".into());
            }
        }
        if let Some((start, end)) = self.hours {
            let local = (i64::from(minute_of_day_utc) + self.utc_offset_minutes).rem_euclid(1440);
            let now = u32::try_from(local).unwrap_or(0);
            let inside = if start <= end {
                (start..end).contains(&now)
            } else {
                now >= start || now < end
            };
            if !inside {
                return Err("logins are not allowed at this hour".into());
            }
        }
        Ok(())
    }

    /// The user an API key belongs to.
    pub fn api_key_user(&self, key: &str) -> Option<&str> {
        let hash = sha256_hex(key);
        self.api_keys
            .iter()
            .find(|(h, _)| *h == hash)
            .map(|(_, u)| u.as_str())
    }
}

pub struct AuthPolicy {
    policy: Result<Policy, String>,
}

fn minute_of_day_utc() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from((secs / 60) % 1440).unwrap_or(0)
}

impl Plugin for AuthPolicy {
    const HOOKS: HookSet = HookSet::ON_LOGIN.union(HookSet::AUTHENTICATE);

    fn new() -> Self {
        let settings = config::all().unwrap_or_default();
        AuthPolicy {
            policy: Policy::from_settings(&settings),
        }
    }

    fn on_login(&self, user: User) -> Decision {
        match &self.policy {
            Ok(policy) => match policy.decide(&user.name, minute_of_day_utc()) {
                Ok(()) => Decision::Allow,
                Err(reason) => Decision::deny(reason),
            },
            Err(e) => Decision::deny(format!("login policy misconfigured: {e}")),
        }
    }

    fn authenticate(&self, creds: Credentials) -> AuthOutcome {
        if creds.method != "api-key" {
            return AuthOutcome::Defer;
        }
        let Ok(policy) = &self.policy else {
            return AuthOutcome::Reject("login policy misconfigured".into());
        };
        match policy.api_key_user(&creds.credential) {
            // A key names its user; a user name sent along must match it.
            Some(user) if creds.username.as_deref().is_none_or(|u| u == user) => {
                AuthOutcome::Accept(user.to_string())
            }
            _ => AuthOutcome::Reject("unknown API key".into()),
        }
    }
}

export_plugin!(AuthPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Policy {
        let settings: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Policy::from_settings(&settings).expect("valid policy")
    }

    #[test]
    fn domains_groups_and_exemptions() {
        let p = policy(&[
            ("allowed_domains", "example.com"),
            ("default_domain", "example.com"),
            ("email.eve", "eve@evil.test"),
            ("allowed_groups", "staff"),
            ("group.staff", "alice\neve"),
            ("exempt", "admin"),
        ]);
        assert!(p.decide("alice", 600).is_ok());
        assert!(
            p.decide("eve", 600)
                .expect_err("denied")
                .contains("evil.test")
        );
        assert!(p.decide("bob", 600).expect_err("denied").contains("groups"));
        assert!(p.decide("admin", 600).is_ok());
    }

    #[test]
    fn login_hours_wrap_midnight_and_shift() {
        let p = policy(&[("login_hours", "22:00-06:00")]);
        assert!(p.decide("a", 23 * 60).is_ok());
        assert!(p.decide("a", 5 * 60).is_ok());
        assert!(p.decide("a", 12 * 60).is_err());
        let p = policy(&[
            ("login_hours", "09:00-17:00"),
            ("utc_offset_minutes", "120"),
        ]);
        assert!(p.decide("a", 7 * 60).is_ok(), "07:00 UTC is 09:00 local");
        assert!(p.decide("a", 15 * 60).is_err(), "15:00 UTC is 17:00 local");
        assert!(Policy::from_settings(&[("login_hours".into(), "9-5".into())]).is_err());
        assert!(Policy::from_settings(&[("colour".into(), "red".into())]).is_err());
    }

    #[test]
    fn api_keys_are_matched_by_hash() {
        let p = policy(&[(&format!("api_key.{}", sha256_hex("sk-123")), "alice")]);
        assert_eq!(p.api_key_user("sk-123"), Some("alice"));
        assert_eq!(p.api_key_user("sk-124"), None);
    }
}
