//! What may leave for the model, and what may come back: the DLP detectors applied to
//! prompts (a finding becomes a token such as `[CARD_1]`, or refuses the call) and to
//! replies (a finding is masked), and the safe prefix of a reply still streaming.

use std::collections::BTreeMap;

use dlp_core::{Action, Finding, Policy};

/// The egress policy: which detectors run, and what each does to a prompt.
pub(crate) struct EgressPolicy {
    policy: Policy,
}

impl EgressPolicy {
    /// From `[llm] dlp`: a detector name (`card`) or a pattern's name maps to `redact`,
    /// `block` or `off`; `pattern.<name>` maps to a regular expression.
    pub(crate) fn from_config(dlp: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut settings = Vec::new();
        for (key, value) in dlp {
            if key.starts_with("pattern.") {
                settings.push((key.clone(), value.clone()));
            } else {
                if !matches!(value.trim(), "redact" | "block" | "off") {
                    return Err(format!(
                        "llm.dlp.{key}: expected redact, block or off, got {value:?}"
                    ));
                }
                settings.push((format!("action.{key}"), value.clone()));
            }
        }
        let policy = Policy::from_settings(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| format!("llm.dlp: {e}"))?;
        Ok(Self { policy })
    }

    fn name(&self, finding: &Finding) -> &str {
        self.policy.name(finding.detector)
    }

    /// Mask every finding of a detector that is not off (a reply is never refused whole:
    /// what the model said around the value is kept). Returns the text and the counts.
    pub(crate) fn mask_reply(&self, text: &str) -> (String, BTreeMap<String, u32>) {
        let findings = self.policy.scan(text);
        let mut counts = BTreeMap::new();
        if findings.is_empty() {
            return (text.to_string(), counts);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in &findings {
            *counts.entry(self.name(f).to_string()).or_insert(0) += 1;
            out.push_str(&text[at..f.start]);
            dlp_core::mask(&text[f.start..f.end], f.detector, &mut out);
            at = f.end;
        }
        out.push_str(&text[at..]);
        (out, counts)
    }

    /// The part of a reply still streaming that may be shown now, masked: everything but
    /// the last `holdback` characters (a value may be arriving there), and never a cut
    /// through a value found whole.
    pub(crate) fn visible_prefix(&self, text: &str, holdback: usize) -> String {
        let mut cut = text
            .char_indices()
            .rev()
            .nth(holdback.saturating_sub(1))
            .map_or(0, |(i, _)| i);
        if holdback == 0 {
            cut = text.len();
        }
        for f in self.policy.scan(text) {
            if f.start < cut && cut < f.end {
                cut = f.start;
            }
        }
        self.mask_reply(&text[..cut]).0
    }
}

/// The findings of one call's prompt: the values replaced by tokens (so the same value gets
/// the same token, and a reply only its owner sees can have them back) and the counts.
#[derive(Default)]
pub(crate) struct Redactions {
    /// value → token
    tokens: BTreeMap<String, String>,
    /// Per detector name: the next token number.
    next: BTreeMap<String, u32>,
    /// Per detector name: findings redacted from the prompt.
    pub(crate) counts: BTreeMap<String, u32>,
}

/// A prompt held data the policy does not let leave (detector names, comma-separated).
#[derive(Debug)]
pub(crate) struct Blocked(pub(crate) String);

impl Redactions {
    /// `text` as it may leave: each `redact` finding replaced by its token; `Blocked` when
    /// a `block` detector found something.
    pub(crate) fn scrub(&mut self, policy: &EgressPolicy, text: &str) -> Result<String, Blocked> {
        let findings = policy.policy.scan(text);
        let blocked: Vec<&str> = findings
            .iter()
            .filter(|f| policy.policy.action(f.detector) == Action::Block)
            .map(|f| policy.name(f))
            .collect();
        if !blocked.is_empty() {
            let mut names: Vec<&str> = blocked;
            names.sort_unstable();
            names.dedup();
            return Err(Blocked(names.join(",")));
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in findings
            .iter()
            .filter(|f| policy.policy.action(f.detector) == Action::Redact)
        {
            let name = policy.name(f).to_string();
            out.push_str(&text[at..f.start]);
            let value = &text[f.start..f.end];
            let token = match self.tokens.get(value) {
                Some(token) => token.clone(),
                None => {
                    let n = self.next.entry(name.clone()).or_insert(0);
                    *n += 1;
                    let label: String = name
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() {
                                c.to_ascii_uppercase()
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    let token = format!("[{label}_{n}]");
                    self.tokens.insert(value.to_string(), token.clone());
                    token
                }
            };
            *self.counts.entry(name).or_insert(0) += 1;
            out.push_str(&token);
            at = f.end;
        }
        out.push_str(&text[at..]);
        Ok(out)
    }

    /// `reply` with this call's tokens put back (for the eyes of the person whose prompt
    /// held the values, and nobody else's).
    pub(crate) fn restore(&self, reply: &str) -> String {
        let mut out = reply.to_string();
        for (value, token) in &self.tokens {
            out = out.replace(token.as_str(), value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EgressPolicy {
        EgressPolicy::from_config(&crate::config::LlmConfig::default().dlp).expect("default policy")
    }

    #[test]
    fn prompts_leave_with_tokens_and_replies_get_them_back() {
        let policy = policy();
        let mut r = Redactions::default();
        let sent = r
            .scrub(
                &policy,
                "pay with 4111 1111 1111 1111 or 4111 1111 1111 1111, ssn 123-45-6789",
            )
            .expect("redact, not block");
        assert_eq!(sent, "pay with [CARD_1] or [CARD_1], ssn [SSN_1]");
        assert_eq!(r.counts["card"], 2);
        assert_eq!(r.counts["ssn"], 1);
        assert_eq!(
            r.restore("use [CARD_1] and [CARD_9]"),
            "use 4111 1111 1111 1111 and [CARD_9]"
        );
    }

    #[test]
    fn secrets_block_the_call() {
        let mut r = Redactions::default();
        let err = r
            .scrub(&policy(), "key AKIAIOSFODNN7EXAMPLE here")
            .expect_err("secrets block");
        assert_eq!(err.0, "secret");
    }

    #[test]
    fn replies_are_masked_and_streaming_never_shows_half_a_value() {
        let policy = policy();
        let (masked, counts) = policy.mask_reply("her SSN is 123-45-6789.");
        assert_eq!(masked, "her SSN is ***-**-6789.");
        assert_eq!(counts["ssn"], 1);
        // A value that may still be arriving is held back; one found whole is masked.
        let text = "her SSN is 123-45-6789";
        assert_eq!(policy.visible_prefix(text, 4), "her SSN is ");
        assert_eq!(policy.visible_prefix(text, 0), "her SSN is ***-**-6789");
        assert_eq!(policy.visible_prefix("short", 64), "");
    }

    #[test]
    fn bad_actions_are_refused() {
        let mut dlp = BTreeMap::new();
        dlp.insert("card".to_string(), "flag".to_string());
        assert!(EgressPolicy::from_config(&dlp).is_err());
        dlp.insert("card".to_string(), "redact".to_string());
        dlp.insert("cards".to_string(), "redact".to_string());
        assert!(EgressPolicy::from_config(&dlp).is_err());
    }
}
