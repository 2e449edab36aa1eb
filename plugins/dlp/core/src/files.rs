//! DLP for uploaded files: which files can be read, how their text is got at, and what the
//! policy makes of it.
//!
//! Text files (plain text, CSV, JSON, source code: whatever the server sniffed as
//! `text/plain`) are scanned in windows of [`WINDOW`] bytes that overlap by [`OVERLAP`], so
//! memory stays bounded whatever the file's size and a finding on a window boundary is
//! still seen whole. Office Open XML files (DOCX, XLSX, PPTX) are ZIP archives: the text
//! of their document, header, footer, sheet and slide parts is extracted (tags dropped,
//! paragraphs kept apart) with the `zip` crate, under a cap on the bytes decompressed so an
//! archive bomb cannot exhaust the plugin. Everything else (images, PDF, other binaries)
//! is "unscannable" and gets the operator's `files.unscannable` action.
//!
//! Settings (`files.*` in the plugin's `[settings]`; unknown `files.*` keys are errors):
//! - `files.scan = "on" | "off"`: whether files are checked at all (default on).
//! - `files.max_scan_bytes`: the most text one file may have (default 16 MiB); a larger
//!   file gets `files.oversize` (`reject`, the default, `quarantine` or `allow`).
//! - `files.max_redact_bytes`: the largest text file that is redacted in place (default
//!   4 MiB: the redacted copy is held in the plugin's memory); a larger one that needs
//!   redaction is rejected. Office files are never rewritten: redaction there rejects.
//! - `files.unscannable = "allow" | "quarantine" | "reject"` (default allow).
//! - `files.on_flag = "quarantine" | "allow"`: a file with flag-only findings is held for
//!   review (the default) or let through (the findings are still counted).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use crate::{Action, Policy, Verdict};

/// Bytes of text scanned at once.
pub const WINDOW: usize = 1 << 20;
/// Bytes each window repeats of the one before: longer than any finding the detectors make.
pub const OVERLAP: usize = 4096;

/// What to do with a file the scan cannot judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    Allow,
    Quarantine,
    Reject,
}

impl Fallback {
    fn parse(key: &str, value: &str, allowed: &[Fallback]) -> Result<Self, String> {
        let parsed = match value {
            "allow" => Self::Allow,
            "quarantine" => Self::Quarantine,
            "reject" => Self::Reject,
            _ => None.ok_or_else(|| format!("{key}: unknown value {value:?}"))?,
        };
        if allowed.contains(&parsed) {
            Ok(parsed)
        } else {
            Err(format!("{key}: {value:?} is not allowed here"))
        }
    }
}

/// The `files.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePolicy {
    pub scan: bool,
    pub max_scan_bytes: u64,
    pub max_redact_bytes: u64,
    pub oversize: Fallback,
    pub unscannable: Fallback,
    /// Quarantine files whose strongest finding is a flag.
    pub quarantine_flagged: bool,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            scan: true,
            max_scan_bytes: 16 << 20,
            max_redact_bytes: 4 << 20,
            oversize: Fallback::Reject,
            unscannable: Fallback::Allow,
            quarantine_flagged: true,
        }
    }
}

impl FilePolicy {
    /// Parse the `files.*` settings, ignoring every other key (the message policy's).
    pub fn from_settings<'a>(
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        use Fallback::{Allow, Quarantine, Reject};
        let mut policy = Self::default();
        for (key, value) in settings {
            let Some(name) = key.strip_prefix("files.") else {
                continue;
            };
            let bytes = || {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{key}: expected a positive number of bytes"))
            };
            match name {
                "scan" => {
                    policy.scan = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(format!("{key}: expected on or off")),
                    }
                }
                "max_scan_bytes" => policy.max_scan_bytes = bytes()?,
                "max_redact_bytes" => policy.max_redact_bytes = bytes()?,
                "oversize" => {
                    policy.oversize = Fallback::parse(key, value, &[Allow, Quarantine, Reject])?
                }
                "unscannable" => {
                    policy.unscannable = Fallback::parse(key, value, &[Allow, Quarantine, Reject])?
                }
                "on_flag" => {
                    policy.quarantine_flagged =
                        Fallback::parse(key, value, &[Allow, Quarantine])? == Quarantine
                }
                _ => return Err(format!("unknown setting {key:?}")),
            }
        }
        Ok(policy)
    }
}

/// How a file's content is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// DOCX, XLSX, PPTX (or any ZIP holding such parts).
    OfficeXml,
    Unscannable,
}

impl Kind {
    /// From the type the server sniffed (and the name, to tell an Office file from a ZIP).
    pub fn of(content_type: &str, name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if content_type == "text/plain" || content_type.starts_with("text/") {
            Self::Text
        } else if content_type.starts_with("application/vnd.openxmlformats-officedocument.")
            || (content_type == "application/zip"
                && [".docx", ".xlsx", ".pptx", ".docm", ".xlsm", ".pptm"]
                    .iter()
                    .any(|ext| lower.ends_with(ext)))
        {
            Self::OfficeXml
        } else {
            Self::Unscannable
        }
    }
}

/// What the scan of one file decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileVerdict {
    /// Nothing the policy acts on (findings of action `off` aside).
    Clean,
    /// Findings only to record; `quarantine` per `files.on_flag`.
    Flagged { quarantine: bool },
    /// Block-findings: refuse it; the reason names the detectors.
    Blocked,
    /// Redact-findings in a text file small enough: this content instead.
    Redacted(Vec<u8>),
    /// Redact-findings where the content cannot be rewritten (too large, Office file).
    Unredactable(String),
    /// The text is larger than `files.max_scan_bytes`.
    Oversize(Fallback),
    /// A type the scan cannot read, or one that does not parse as what it claims.
    Unscannable(Fallback, String),
}

/// The findings of a file's scan: per detector, the action and count (never the values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFindings {
    pub findings: BTreeMap<String, (Action, usize)>,
    pub action: Option<Action>,
}

impl FileFindings {
    fn add(&mut self, verdict: &Verdict) {
        for (name, (action, count)) in &verdict.findings {
            self.findings.entry(name.clone()).or_insert((*action, 0)).1 += count;
        }
        if verdict.action != Action::Off {
            self.action = Some(
                self.action
                    .map_or(verdict.action, |a| a.max(verdict.action)),
            );
        }
    }

    /// Names of the detectors whose findings got `action`, comma-separated.
    pub fn detectors(&self, action: Action) -> String {
        crate::detectors(&self.findings, action)
    }
}

/// Scan the `size` bytes of `content` (a file of sniffed type `content_type` and name
/// `name`) against `policy` and `files`.
pub fn scan<R: Read + Seek>(
    policy: &Policy,
    files: &FilePolicy,
    content_type: &str,
    name: &str,
    size: u64,
    content: &mut R,
) -> (FileVerdict, FileFindings) {
    let mut findings = FileFindings::default();
    let verdict = match Kind::of(content_type, name) {
        Kind::Unscannable => FileVerdict::Unscannable(
            files.unscannable,
            format!("files of type {content_type} cannot be read by the DLP scan"),
        ),
        Kind::Text if size > files.max_scan_bytes => FileVerdict::Oversize(files.oversize),
        Kind::Text => match scan_text(policy, content, &mut findings) {
            Ok(()) => decide_text(policy, files, size, content, &findings),
            Err(e) => FileVerdict::Unscannable(files.unscannable, format!("reading failed: {e}")),
        },
        Kind::OfficeXml => match office_text(content, files.max_scan_bytes) {
            Ok(Extracted::Text(text)) => {
                findings.add(&policy.evaluate(&text));
                match findings.action {
                    Some(Action::Redact) => FileVerdict::Unredactable(
                        "redaction is not possible inside an Office document".into(),
                    ),
                    _ => decide(files, &findings),
                }
            }
            Ok(Extracted::TooLarge) => FileVerdict::Oversize(files.oversize),
            Err(e) => FileVerdict::Unscannable(files.unscannable, e),
        },
    };
    (verdict, findings)
}

fn decide(files: &FilePolicy, findings: &FileFindings) -> FileVerdict {
    match findings.action {
        None | Some(Action::Off) => FileVerdict::Clean,
        Some(Action::Flag) => FileVerdict::Flagged {
            quarantine: files.quarantine_flagged,
        },
        Some(Action::Block) => FileVerdict::Blocked,
        // Handled by the caller, which knows whether the content can be rewritten.
        Some(Action::Redact) => FileVerdict::Unredactable("cannot be rewritten".into()),
    }
}

/// Scan a text stream window by window.
fn scan_text<R: Read>(
    policy: &Policy,
    content: &mut R,
    findings: &mut FileFindings,
) -> std::io::Result<()> {
    let mut window: Vec<u8> = Vec::with_capacity(WINDOW + OVERLAP);
    // Findings wholly inside the repeated overlap were counted with the window before.
    let mut carried = 0usize;
    loop {
        let before = window.len();
        let read = content
            .by_ref()
            .take((WINDOW + OVERLAP - before) as u64)
            .read_to_end(&mut window)?;
        if read == 0 && before <= carried {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&window);
        let verdict = policy.evaluate(&text);
        let fresh = if carried == 0 {
            verdict
        } else {
            // Count only what ends past the carried bytes: evaluate the overlap alone and
            // subtract its findings (they were counted in the previous window).
            let old = policy.evaluate(&String::from_utf8_lossy(&window[..carried]));
            subtract(verdict, &old)
        };
        findings.add(&fresh);
        if read == 0 {
            return Ok(());
        }
        let keep = window.len().min(OVERLAP);
        window.drain(..window.len() - keep);
        carried = keep;
    }
}

fn subtract(mut all: Verdict, old: &Verdict) -> Verdict {
    for (name, (_, count)) in &old.findings {
        if let Some(entry) = all.findings.get_mut(name) {
            entry.1 = entry.1.saturating_sub(*count);
        }
    }
    all.findings.retain(|_, (_, count)| *count > 0);
    all.action = all
        .findings
        .values()
        .map(|(action, _)| *action)
        .max()
        .unwrap_or(Action::Off);
    all
}

fn decide_text<R: Read + Seek>(
    policy: &Policy,
    files: &FilePolicy,
    size: u64,
    content: &mut R,
    findings: &FileFindings,
) -> FileVerdict {
    if findings.action != Some(Action::Redact) {
        return decide(files, findings);
    }
    if size > files.max_redact_bytes {
        return FileVerdict::Unredactable(format!(
            "the file is larger than the {} bytes that can be redacted",
            files.max_redact_bytes
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    let read = content
        .seek(SeekFrom::Start(0))
        .and_then(|_| content.take(size).read_to_end(&mut bytes));
    if let Err(e) = read {
        return FileVerdict::Unscannable(files.unscannable, format!("reading failed: {e}"));
    }
    // Rewriting needs text: a file that is not UTF-8 is not rewritten.
    let Ok(text) = String::from_utf8(bytes) else {
        return FileVerdict::Unredactable("the text is not UTF-8".into());
    };
    match policy.evaluate(&text).redacted {
        Some(redacted) => FileVerdict::Redacted(redacted.into_bytes()),
        None => decide(files, findings),
    }
}

enum Extracted {
    Text(String),
    TooLarge,
}

/// The parts of an Office Open XML file that hold what people wrote.
fn is_text_part(name: &str) -> bool {
    let xml = name.ends_with(".xml");
    xml && (name == "word/document.xml"
        || name.starts_with("word/header")
        || name.starts_with("word/footer")
        || name == "word/footnotes.xml"
        || name == "word/comments.xml"
        || name == "xl/sharedStrings.xml"
        || name.starts_with("xl/worksheets/sheet")
        || name.starts_with("ppt/slides/slide")
        || name.starts_with("ppt/notesSlides/"))
}

/// The text of an Office file's parts, at most `max` bytes of XML decompressed in all.
fn office_text<R: Read + Seek>(content: &mut R, max: u64) -> Result<Extracted, String> {
    content
        .seek(SeekFrom::Start(0))
        .map_err(|e| format!("reading failed: {e}"))?;
    let mut archive =
        zip::ZipArchive::new(content).map_err(|e| format!("not a readable Office file: {e}"))?;
    let mut text = String::new();
    let mut budget = max;
    let mut found = false;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("not a readable Office file: {e}"))?;
        // A name that is not valid text is no part of an Office document.
        if !entry.name().is_ok_and(|name| is_text_part(&name)) {
            continue;
        }
        found = true;
        // The declared size is not trusted: the decompressed bytes are counted.
        let mut xml = Vec::new();
        (&mut entry)
            .take(budget + 1)
            .read_to_end(&mut xml)
            .map_err(|e| format!("not a readable Office file: {e}"))?;
        if xml.len() as u64 > budget {
            return Ok(Extracted::TooLarge);
        }
        budget -= xml.len() as u64;
        xml_text(&String::from_utf8_lossy(&xml), &mut text);
        text.push('\n');
    }
    if !found {
        return Err("an archive without Office document parts".into());
    }
    Ok(Extracted::Text(text))
}

/// The character data of an XML part: tags dropped (runs of one paragraph join up, so a
/// number split across formatting runs is seen whole), paragraph, cell and break ends as
/// line breaks, the five predefined entities and numeric references decoded.
pub fn xml_text(xml: &str, out: &mut String) {
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        decode_entities(&rest[..open], out);
        let Some(close) = rest[open..].find('>') else {
            return;
        };
        let tag = &rest[open + 1..open + close];
        let name = tag
            .trim_start_matches('/')
            .split([' ', '/'])
            .next()
            .unwrap_or("");
        if matches!(
            name,
            "w:p" | "w:br" | "w:tab" | "a:p" | "row" | "si" | "c" | "w:tc"
        ) && (tag.starts_with('/') || tag.ends_with('/'))
        {
            out.push(if name == "c" || name == "w:tab" || name == "w:tc" {
                '\t'
            } else {
                '\n'
            });
        }
        rest = &rest[open + close + 1..];
    }
    decode_entities(rest, out);
}

fn decode_entities(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';').filter(|n| *n <= 10) else {
            out.push('&');
            rest = after;
            continue;
        };
        let entity = &after[..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => {
                out.push('&');
                out.push_str(entity);
                out.push(';');
            }
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write as _};

    fn scan_bytes(
        policy: &Policy,
        files: &FilePolicy,
        ty: &str,
        name: &str,
        bytes: &[u8],
    ) -> (FileVerdict, FileFindings) {
        scan(
            policy,
            files,
            ty,
            name,
            bytes.len() as u64,
            &mut Cursor::new(bytes),
        )
    }

    fn docx(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in parts {
            zip.start_file(*name, options).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn a_csv_with_a_card_is_blocked_and_one_without_is_clean() {
        let policy = Policy::default();
        let files = FilePolicy::default();
        let csv = b"name,card\nalice,4111 1111 1111 1111\n";
        let (verdict, findings) = scan_bytes(&policy, &files, "text/plain", "cards.csv", csv);
        assert_eq!(verdict, FileVerdict::Blocked);
        assert_eq!(findings.findings["card"], (Action::Block, 1));
        let (verdict, _) = scan_bytes(
            &policy,
            &files,
            "text/plain",
            "ok.csv",
            b"name,team\nalice,red\n",
        );
        assert_eq!(verdict, FileVerdict::Clean);
    }

    #[test]
    fn redaction_rewrites_small_text_and_refuses_large() {
        let policy = Policy::from_settings([("action.card", "redact")]).unwrap();
        let csv = b"alice,4111111111111111\n";
        let (verdict, _) = scan_bytes(&policy, &FilePolicy::default(), "text/plain", "c.csv", csv);
        assert_eq!(
            verdict,
            FileVerdict::Redacted(b"alice,************1111\n".to_vec())
        );
        let small = FilePolicy {
            max_redact_bytes: 8,
            ..FilePolicy::default()
        };
        let (verdict, _) = scan_bytes(&policy, &small, "text/plain", "c.csv", csv);
        assert!(
            matches!(verdict, FileVerdict::Unredactable(_)),
            "{verdict:?}"
        );
    }

    #[test]
    fn findings_across_window_boundaries_are_seen_once() {
        let policy = Policy::default();
        let files = FilePolicy::default();
        // One card straddling the first window's end, one well inside the second.
        let mut text = vec![b'x'; WINDOW - 8];
        text.extend_from_slice(b" 4111111111111111 ");
        text.extend(std::iter::repeat_n(b'y', 10_000));
        text.extend_from_slice(b" 5500005555555559 ");
        let (verdict, findings) = scan_bytes(&policy, &files, "text/plain", "big.txt", &text);
        assert_eq!(verdict, FileVerdict::Blocked);
        assert_eq!(
            findings.findings["card"],
            (Action::Block, 2),
            "{findings:?}"
        );
    }

    #[test]
    fn office_text_is_read_across_runs_and_bombs_are_refused() {
        let policy = Policy::default();
        let files = FilePolicy::default();
        let doc = docx(&[(
            "word/document.xml",
            "<w:document><w:body><w:p><w:r><w:t>card 4111</w:t></w:r><w:r><w:t>111111111111</w:t></w:r></w:p></w:body></w:document>",
        )]);
        let (verdict, _) = scan_bytes(&policy, &files, "application/zip", "memo.docx", &doc);
        assert_eq!(verdict, FileVerdict::Blocked);
        // 64 MiB of zeros compress to almost nothing; the cap stops the read.
        let bomb = docx(&[("word/document.xml", &"0".repeat(64 << 20))]);
        assert!(bomb.len() < 1 << 20);
        let (verdict, _) = scan_bytes(&policy, &files, "application/zip", "bomb.docx", &bomb);
        assert_eq!(verdict, FileVerdict::Oversize(Fallback::Reject));
    }

    #[test]
    fn other_types_get_the_unscannable_action() {
        let files = FilePolicy::from_settings([("files.unscannable", "quarantine")]).unwrap();
        let (verdict, _) = scan_bytes(&Policy::default(), &files, "image/png", "a.png", b"\x89PNG");
        assert!(matches!(
            verdict,
            FileVerdict::Unscannable(Fallback::Quarantine, _)
        ));
        assert!(FilePolicy::from_settings([("files.on_flag", "reject")]).is_err());
        assert!(FilePolicy::from_settings([("files.typo", "1")]).is_err());
        assert_eq!(
            FilePolicy::from_settings([("action.card", "block")]),
            Ok(FilePolicy::default())
        );
    }

    #[test]
    fn xml_entities_and_breaks() {
        let mut out = String::new();
        xml_text(
            "<w:p><w:t>a &amp; b &#65;&#x42;</w:t></w:p><w:p><w:t>c</w:t></w:p>",
            &mut out,
        );
        assert_eq!(out, "a & b AB\nc\n");
    }
}
