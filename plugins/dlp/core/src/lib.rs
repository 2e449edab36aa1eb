//! The detection and redaction logic of Switchboard's DLP plugin, in plain Rust.
//!
//! It has no dependency on the plugin interface, so the same code runs inside the wasm
//! plugin and natively (the benchmark's baseline, and fast unit tests).
//!
//! A [`Policy`] says, per detector, what to do with a finding: [`Action::Block`] the
//! message, [`Action::Redact`] the finding (every letter and digit but the last four
//! become `*`), [`Action::Flag`] it (allow, but record), or [`Action::Off`]. Built-in
//! detectors are hand-written scanners (no regex), tuned for few false positives: card
//! numbers must pass Luhn and look like a card, IBANs must pass mod-97 and have their
//! country's length, SSNs must be in assignable ranges. Operators add their own patterns
//! as regular expressions.

pub mod files;
mod iban;
mod numbers;
mod text;

use std::collections::BTreeMap;

pub use iban::mod97_valid;
pub use numbers::luhn;

/// What found something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Detector {
    Card,
    Ssn,
    Iban,
    Email,
    /// Access keys and tokens.
    Secret,
    /// A PEM private-key block (configured, like other secrets, as `secret`).
    PrivateKey,
    /// The operator's pattern with this index in [`Policy`]'s custom list.
    Custom(usize),
}

/// One finding: a byte range of the scanned text. The value itself is never copied out, so
/// a report built from findings cannot leak it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub detector: Detector,
    pub start: usize,
    pub end: usize,
}

/// What to do with a detector's findings; ordered from mildest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Off,
    Flag,
    Redact,
    Block,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "off" => Some(Self::Off),
            "flag" => Some(Self::Flag),
            "redact" => Some(Self::Redact),
            "block" => Some(Self::Block),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Flag => "flag",
            Self::Redact => "redact",
            Self::Block => "block",
        }
    }
}

struct Custom {
    name: String,
    regex: regex::Regex,
    action: Action,
}

/// The operator's DLP policy.
pub struct Policy {
    card: Action,
    ssn: Action,
    iban: Action,
    email: Action,
    secret: Action,
    custom: Vec<Custom>,
}

impl Default for Policy {
    /// Block cards, SSNs and secrets; redact IBANs; flag e-mail addresses.
    fn default() -> Self {
        Self {
            card: Action::Block,
            ssn: Action::Block,
            iban: Action::Redact,
            email: Action::Flag,
            secret: Action::Block,
            custom: Vec::new(),
        }
    }
}

/// What the policy makes of one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The strongest action any finding calls for; `Off` when nothing was found.
    pub action: Action,
    /// Per detector name: the action taken and how many findings.
    pub findings: BTreeMap<String, (Action, usize)>,
    /// The text with every redact-finding masked, when there were any.
    pub redacted: Option<String>,
}

impl Verdict {
    /// Names of the detectors whose findings got `action`, comma-separated.
    pub fn detectors(&self, action: Action) -> String {
        detectors(&self.findings, action)
    }
}

/// Names of the detectors in `findings` whose findings got `action`, comma-separated.
pub fn detectors(findings: &BTreeMap<String, (Action, usize)>, action: Action) -> String {
    let names: Vec<&str> = findings
        .iter()
        .filter(|(_, (a, _))| *a == action)
        .map(|(n, _)| n.as_str())
        .collect();
    names.join(",")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Policy {
    /// Build a policy from the plugin's settings: `action.<detector> = block|redact|flag|off`
    /// for `card`, `ssn`, `iban`, `email`, `secret`; `pattern.<name> = <regex>` adds a
    /// detector (action `action.<name>`, default `block`). Unknown keys are errors, so a
    /// typo cannot silently weaken the policy.
    pub fn from_settings<'a>(
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut policy = Policy::default();
        let mut actions = BTreeMap::new();
        let mut patterns = BTreeMap::new();
        for (key, value) in settings {
            if let Some(name) = key.strip_prefix("action.") {
                let action = Action::parse(value).ok_or_else(|| {
                    format!("{key}: expected block, redact, flag or off, got {value:?}")
                })?;
                actions.insert(name.to_string(), action);
            } else if key.starts_with("files.") {
                // The file scan's settings (`files::FilePolicy`).
            } else if let Some(name) = key.strip_prefix("pattern.") {
                if !valid_name(name) {
                    return Err(format!("{key}: pattern names use [a-z0-9_-]"));
                }
                patterns.insert(name.to_string(), value.to_string());
            } else {
                return Err(format!("unknown setting {key:?}"));
            }
        }
        for (name, action) in &actions {
            match name.as_str() {
                "card" => policy.card = *action,
                "ssn" => policy.ssn = *action,
                "iban" => policy.iban = *action,
                "email" => policy.email = *action,
                "secret" => policy.secret = *action,
                other if patterns.contains_key(other) => {}
                other => return Err(format!("action.{other}: no such detector or pattern")),
            }
        }
        for (name, pattern) in patterns {
            let regex = regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("pattern.{name}: {e}"))?;
            let action = actions.get(&name).copied().unwrap_or(Action::Block);
            policy.custom.push(Custom {
                name,
                regex,
                action,
            });
        }
        Ok(policy)
    }

    /// What the policy does with `detector`'s findings.
    pub fn action(&self, detector: Detector) -> Action {
        match detector {
            Detector::Card => self.card,
            Detector::Ssn => self.ssn,
            Detector::Iban => self.iban,
            Detector::Email => self.email,
            Detector::Secret | Detector::PrivateKey => self.secret,
            Detector::Custom(i) => self.custom.get(i).map_or(Action::Off, |c| c.action),
        }
    }

    /// The configuration name of a detector (`card`, `secret`, a pattern's name...).
    pub fn name(&self, detector: Detector) -> &str {
        match detector {
            Detector::Card => "card",
            Detector::Ssn => "ssn",
            Detector::Iban => "iban",
            Detector::Email => "email",
            Detector::Secret | Detector::PrivateKey => "secret",
            Detector::Custom(i) => self.custom.get(i).map_or("custom", |c| c.name.as_str()),
        }
    }

    /// Every finding of every detector that is not off, without overlaps, in text order.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        if self.secret != Action::Off {
            text::find_secrets(text, &mut found);
        }
        if self.card != Action::Off || self.ssn != Action::Off {
            // Both detectors start from the same digit runs: find them once.
            let runs = numbers::digit_runs(text.as_bytes());
            if self.card != Action::Off {
                numbers::find_cards(text, &runs, &mut found);
            }
            if self.ssn != Action::Off {
                numbers::find_ssns(text, &runs, &mut found);
            }
        }
        if self.iban != Action::Off {
            iban::find_ibans(text, &mut found);
        }
        if self.email != Action::Off {
            text::find_emails(text, &mut found);
        }
        for (i, custom) in self.custom.iter().enumerate() {
            if custom.action != Action::Off {
                found.extend(
                    custom
                        .regex
                        .find_iter(text)
                        .filter(|m| !m.is_empty())
                        .map(|m| Finding {
                            detector: Detector::Custom(i),
                            start: m.start(),
                            end: m.end(),
                        }),
                );
            }
        }
        // Longest first at equal starts, then drop whatever overlaps a kept finding: a key
        // inside a PEM block is reported once, as the block.
        found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
        for f in found {
            if kept.last().is_none_or(|last| f.start >= last.end) {
                kept.push(f);
            }
        }
        kept
    }

    /// Scan `text` and decide.
    pub fn evaluate(&self, text: &str) -> Verdict {
        let findings = self.scan(text);
        let mut verdict = Verdict {
            action: Action::Off,
            findings: BTreeMap::new(),
            redacted: None,
        };
        for f in &findings {
            let action = self.action(f.detector);
            verdict.action = verdict.action.max(action);
            let entry = verdict
                .findings
                .entry(self.name(f.detector).to_string())
                .or_insert((action, 0));
            entry.1 += 1;
        }
        if verdict.action == Action::Redact {
            let mut out = String::with_capacity(text.len());
            let mut at = 0;
            for f in findings
                .iter()
                .filter(|f| self.action(f.detector) == Action::Redact)
            {
                out.push_str(&text[at..f.start]);
                mask(&text[f.start..f.end], f.detector, &mut out);
                at = f.end;
            }
            out.push_str(&text[at..]);
            verdict.redacted = Some(out);
        }
        verdict
    }
}

/// Mask every letter and digit but the last four; keep separators so the shape stays
/// readable (`**** **** **** 1111`). A private key is replaced whole.
pub fn mask(value: &str, detector: Detector, out: &mut String) {
    if detector == Detector::PrivateKey {
        out.push_str("[REDACTED PRIVATE KEY]");
        return;
    }
    let alnum = value.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    for c in value.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            out.push(if seen + 4 > alnum { c } else { '*' });
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_blocks_cards() {
        let v = Policy::default().evaluate("my card is 4111 1111 1111 1111, thanks");
        assert_eq!(v.action, Action::Block);
        assert_eq!(v.findings["card"], (Action::Block, 1));
    }

    #[test]
    fn redacts_all_but_last_four() {
        let p = Policy::from_settings([("action.card", "redact")]).expect("valid");
        let v = p.evaluate("card 4111-1111-1111-1111 ok");
        assert_eq!(v.redacted.as_deref(), Some("card ****-****-****-1111 ok"));
    }

    #[test]
    fn flags_without_changing_text() {
        let v = Policy::default().evaluate("write to ops@example.com");
        assert_eq!(v.action, Action::Flag);
        assert_eq!(v.redacted, None);
        assert_eq!(v.detectors(Action::Flag), "email");
    }

    #[test]
    fn custom_patterns_and_errors() {
        let p = Policy::from_settings([
            ("pattern.project", r"(?i)project\s+falcon"),
            ("action.project", "redact"),
        ])
        .expect("valid");
        let v = p.evaluate("about Project Falcon today");
        assert_eq!(v.redacted.as_deref(), Some("about ******* **lcon today"));
        assert!(Policy::from_settings([("action.cards", "block")]).is_err());
        assert!(Policy::from_settings([("action.card", "maybe")]).is_err());
        assert!(Policy::from_settings([("pattern.x", "(")]).is_err());
        assert!(Policy::from_settings([("colour", "red")]).is_err());
    }

    #[test]
    fn clean_text_is_clean() {
        let v = Policy::default()
            .evaluate("Order 1234567890123456 shipped on 2024-05-11, call 555-123-4567.");
        assert_eq!(v.action, Action::Off, "{v:?}");
    }

    /// A Luhn-valid 16-digit Visa-shaped number (`4`, 14 digits, the check digit).
    fn card_from(digits: &[u8]) -> String {
        let mut all: Vec<u8> = vec![4];
        all.extend_from_slice(digits);
        all.push(0);
        for check in 0..10 {
            all[15] = check;
            if luhn(&all) {
                break;
            }
        }
        all.iter().map(|d| char::from(b'0' + d)).collect()
    }

    proptest::proptest! {
        /// Whatever the text, scanning never panics and findings are in bounds, on character
        /// boundaries, and do not overlap.
        #[test]
        fn findings_are_well_formed(text in "\\PC{0,200}") {
            let policy = Policy::default();
            let mut last_end = 0;
            for f in policy.scan(&text) {
                proptest::prop_assert!(f.start < f.end && f.end <= text.len());
                proptest::prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
                proptest::prop_assert!(f.start >= last_end);
                last_end = f.end;
            }
            let _ = policy.evaluate(&text);
        }

        /// A valid card number anywhere in ordinary text is found; redacted, only its last
        /// four digits survive and the text around it is untouched.
        #[test]
        fn any_card_in_any_text_is_redacted(
            digits in proptest::collection::vec(0u8..10, 14),
            before in "[a-zA-Z ,.!?]{0,40}",
            after in "[a-zA-Z ,.!?]{0,40}",
        ) {
            let card = card_from(&digits);
            let text = format!("{before} {card} {after}");
            let policy = Policy::from_settings([("action.card", "redact")]).expect("valid");
            let verdict = policy.evaluate(&text);
            proptest::prop_assert_eq!(verdict.action, Action::Redact);
            let redacted = verdict.redacted.expect("redacted text");
            proptest::prop_assert!(!redacted.contains(&card[..12]), "{}", redacted);
            let masked = format!("{}{}", "*".repeat(12), &card[12..]);
            proptest::prop_assert_eq!(redacted, format!("{before} {masked} {after}"));
            proptest::prop_assert_eq!(Policy::default().evaluate(&text).action, Action::Block);
        }

        /// Masking keeps the shape: as many characters, separators in place, and only the
        /// last four letters or digits readable.
        #[test]
        fn masking_keeps_the_shape(value in "[0-9A-Za-z -]{0,40}") {
            let mut out = String::new();
            mask(&value, Detector::Iban, &mut out);
            proptest::prop_assert_eq!(out.chars().count(), value.chars().count());
            let alnum = value.chars().filter(|c| c.is_alphanumeric()).count();
            let visible = out.chars().filter(|c| c.is_alphanumeric()).count();
            proptest::prop_assert_eq!(visible, alnum.min(4));
        }
    }
}
