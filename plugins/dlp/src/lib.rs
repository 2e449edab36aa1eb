//! Switchboard's DLP filter plugin: checks every message before it is stored for payment
//! cards, US SSNs, IBANs, e-mail addresses, secrets and operator-defined patterns, and
//! blocks, redacts or flags it per the operator's policy (see `dlp-core`).
//!
//! Findings are recorded without the sensitive value: a log line naming the detectors and
//! counts, per-detector counters in `kv` (`findings/<detector>/<action>`), and for flagged
//! or redacted messages a `dlp.flagged` / `dlp.redacted` metadata entry stored with the
//! message. A policy that does not parse makes every message fail closed with
//! `dlp_misconfigured`: a typo must not switch DLP off.
//!
//! Uploaded files (`file-pre-upload`, interface 0.3) get the same detectors and actions:
//! text files (CSV, JSON, source, plain text) are scanned in bounded windows and, for
//! redact-findings, rewritten with the values masked; the text of DOCX/XLSX/PPTX files is
//! extracted and scanned (a redact-finding there rejects: an Office file is not
//! rewritten); other types get `files.unscannable`. Flag-findings quarantine the file for
//! review by default. The reason a user sees names the detectors, never the values.
//!
//! Settings (`[settings]` in the manifest):
//! - `action.card|ssn|iban|email|secret = "block" | "redact" | "flag" | "off"`
//! - `pattern.<name> = "<regex>"` and optionally `action.<name>` (default `block`).
//! - `files.*`: see `dlp_core::files` (scan on/off, size limits, unscannable types, flags).

use dlp_core::files::{Fallback, FileFindings, FilePolicy, FileVerdict};
use dlp_core::{Action, Policy, Verdict};
use switchboard_plugin_api::upload::Upload;
use switchboard_plugin_api::{
    FileInfo, FileUploadOutcome, HookSet, Message, Plugin, PreSendOutcome, config, export_plugin,
    kv, log, meta_set,
};

/// The plugin: the parsed policies, or why they could not be parsed.
pub struct Dlp {
    policy: Result<(Policy, FilePolicy), String>,
}

impl Dlp {
    /// Parse the policy from `(key, value)` settings.
    pub fn from_settings(settings: &[(String, String)]) -> Self {
        let pairs = || settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        Self {
            policy: Policy::from_settings(pairs())
                .and_then(|policy| Ok((policy, FilePolicy::from_settings(pairs())?))),
        }
    }

    /// Decide on one uploaded file, reading it from `content`; shared with native tests.
    pub fn check_file<R: std::io::Read + std::io::Seek>(
        &self,
        file: &FileInfo,
        content: &mut R,
    ) -> (FileUploadOutcome, Option<FileFindings>) {
        let (policy, files) = match &self.policy {
            Ok(policies) => policies,
            Err(_) => {
                return (
                    FileUploadOutcome::reject(
                        "dlp_misconfigured",
                        "the DLP policy is misconfigured; files are refused",
                    ),
                    None,
                );
            }
        };
        if !files.scan {
            return (FileUploadOutcome::Allow, None);
        }
        let (verdict, findings) = dlp_core::files::scan(
            policy,
            files,
            &file.content_type,
            &file.name,
            file.size,
            content,
        );
        let fallback = |fallback: Fallback, why: String| match fallback {
            Fallback::Allow => FileUploadOutcome::Allow,
            Fallback::Quarantine => FileUploadOutcome::Quarantine(format!(
                "held for review by the data-loss-prevention policy: {why}"
            )),
            Fallback::Reject => FileUploadOutcome::reject(
                "dlp_unscannable",
                format!("file refused by the data-loss-prevention policy: {why}"),
            ),
        };
        let outcome = match verdict {
            FileVerdict::Clean | FileVerdict::Flagged { quarantine: false } => {
                FileUploadOutcome::Allow
            }
            FileVerdict::Flagged { quarantine: true } => FileUploadOutcome::Quarantine(format!(
                "held for review by the data-loss-prevention policy: contains {}",
                describe(&findings.detectors(Action::Flag))
            )),
            FileVerdict::Blocked => FileUploadOutcome::reject(
                "dlp_blocked",
                format!(
                    "file blocked by the data-loss-prevention policy: contains {}",
                    describe(&findings.detectors(Action::Block))
                ),
            ),
            FileVerdict::Redacted(content) => FileUploadOutcome::replace(content, None),
            FileVerdict::Unredactable(why) => FileUploadOutcome::reject(
                "dlp_blocked",
                format!(
                    "file blocked by the data-loss-prevention policy: contains {}, and {why}",
                    describe(&findings.detectors(Action::Redact))
                ),
            ),
            FileVerdict::Oversize(how) => fallback(
                how,
                format!(
                    "its text is larger than the {} bytes the scan reads",
                    files.max_scan_bytes
                ),
            ),
            FileVerdict::Unscannable(how, why) => fallback(how, why),
        };
        (outcome, Some(findings))
    }

    /// Decide on one message body; the pure part of the hook, shared with native tests.
    pub fn check(&self, msg: Message) -> (PreSendOutcome, Option<Verdict>) {
        let policy = match &self.policy {
            Ok((policy, _)) => policy,
            Err(_) => {
                return (
                    PreSendOutcome::reject(
                        "dlp_misconfigured",
                        "the DLP policy is misconfigured; messages are held",
                    ),
                    None,
                );
            }
        };
        let verdict = policy.evaluate(&msg.body);
        let outcome = match verdict.action {
            Action::Off => PreSendOutcome::Continue,
            Action::Block => PreSendOutcome::reject(
                "dlp_blocked",
                format!(
                    "message blocked by the data-loss-prevention policy: contains {}",
                    describe(&verdict.detectors(Action::Block))
                ),
            ),
            Action::Redact | Action::Flag => {
                let mut metadata = msg.metadata;
                let redacted = verdict.detectors(Action::Redact);
                if !redacted.is_empty() {
                    meta_set(&mut metadata, "dlp.redacted", redacted);
                }
                let flagged = verdict.detectors(Action::Flag);
                if !flagged.is_empty() {
                    meta_set(&mut metadata, "dlp.flagged", flagged);
                }
                let body = verdict.redacted.clone().unwrap_or(msg.body);
                PreSendOutcome::modify(body, metadata)
            }
        };
        (outcome, Some(verdict))
    }
}

fn describe(detectors: &str) -> String {
    let names: Vec<&str> = detectors
        .split(',')
        .map(|d| match d {
            "card" => "a payment card number",
            "ssn" => "a social security number",
            "iban" => "a bank account number (IBAN)",
            "email" => "an e-mail address",
            "secret" => "a secret (key or token)",
            other => other,
        })
        .collect();
    names.join(", ")
}

/// Record a verdict without the sensitive values: counters in kv, one log line.
fn record(msg_room: i64, msg_sender: i64, verdict: &Verdict) {
    record_findings(
        "message",
        msg_room,
        msg_sender,
        verdict.action,
        &verdict.findings,
    );
}

fn record_findings(
    what: &str,
    room: i64,
    sender: i64,
    action: Action,
    findings: &std::collections::BTreeMap<String, (Action, usize)>,
) {
    if findings.is_empty() {
        return;
    }
    let mut summary = Vec::new();
    for (detector, (action, count)) in findings {
        let _ = kv::increment(
            &format!("findings/{detector}/{}", action.as_str()),
            *count as i64,
        );
        summary.push(format!("{detector}={count}({})", action.as_str()));
    }
    let _ = log::warn(&format!(
        "dlp: {what} {} in room {room} from user {sender}: {}",
        action.as_str(),
        summary.join(" ")
    ));
}

impl Plugin for Dlp {
    const HOOKS: HookSet = HookSet::MESSAGE_PRE_SEND.union(HookSet::FILE_PRE_UPLOAD);

    fn new() -> Self {
        let settings = config::all().unwrap_or_default();
        let dlp = Self::from_settings(&settings);
        if let Err(e) = &dlp.policy {
            let _ = log::error(&format!(
                "dlp: invalid policy, every message will be held: {e}"
            ));
        }
        dlp
    }

    fn message_pre_send(&self, msg: Message) -> PreSendOutcome {
        let (room, sender) = (msg.room_id, msg.sender_id);
        let (outcome, verdict) = self.check(msg);
        if let Some(verdict) = verdict {
            record(room, sender, &verdict);
        }
        outcome
    }

    fn file_pre_upload(&self, file: FileInfo) -> FileUploadOutcome {
        let (outcome, findings) = self.check_file(&file, &mut Upload::new(file.size));
        if let Some(findings) = findings {
            let action = findings.action.unwrap_or(Action::Off);
            record_findings(
                "file",
                file.room_id,
                file.uploader.id,
                action,
                &findings.findings,
            );
        }
        outcome
    }
}

export_plugin!(Dlp);

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> Message {
        Message {
            room_id: 1,
            sender_id: 2,
            sender_name: "a".into(),
            client_msg_id: "c".into(),
            editing: None,
            body: body.into(),
            metadata: Vec::new(),
            thread_root: None,
        }
    }

    #[test]
    fn block_reason_names_the_detector_not_the_value() {
        let dlp = Dlp::from_settings(&[]);
        match dlp.check(msg("card 4111111111111111")).0 {
            PreSendOutcome::Reject(r) => {
                assert_eq!(r.code, "dlp_blocked");
                assert!(r.reason.contains("payment card"));
                assert!(!r.reason.contains("4111"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_policy_holds_every_message() {
        let dlp = Dlp::from_settings(&[("action.card".into(), "sometimes".into())]);
        assert!(
            matches!(dlp.check(msg("hello")).0, PreSendOutcome::Reject(r) if r.code == "dlp_misconfigured")
        );
    }
}
