//! Compliance export: a room's (or every room's) complete record, as archives take it.
//!
//! One run writes a **batch** directory: `events.jsonl` (every event in room and `seq`
//! order — messages with their kept earlier texts, whom they mention and the DLP decisions
//! plugins marked on them, edits, deletes, joins and leaves, reactions and pins),
//! `posts.csv` (the messages and their earlier texts, reactions and pins — a thread reply,
//! reaction or pin names its message as "Replied to Post Id" — in the column set archive
//! vendors import from other chat systems, see [`CSV_HEADER`]) and `manifest.json` (what was asked, counts,
//! the SHA-256 of every file, and the SHA-256 of the previous batch's manifest), signed
//! with the audit key (`manifest.sig`). Batches in one directory form a chain:
//! `switchboard export verify DIR` checks every signature, every file hash and every link.
//! Each batch also holds the archive formats ([`archive`]): `actiance.xml` and one
//! Global Relay e-mail per room (`globalrelay-<room>-<part>.eml`), hashed in the manifest
//! like the rest.

pub mod archive;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::signing::{PublicKey, SecretKey};
use crate::store::{
    Event, EventKind, EventVersion, Millis, Page, RoomId, Store, UserId, now_millis,
};

/// What to export (empty lists: every room, every sender).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ExportRequest {
    pub rooms: Vec<RoomId>,
    pub users: Vec<UserId>,
    pub from_at: Option<Millis>,
    pub until_at: Option<Millis>,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportLine {
    #[serde(flatten)]
    pub event: Event,
    /// For a message: its kept earlier texts (under a hold or `preserve_deleted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<EventVersion>,
    /// For a message: what plugins decided about it (`<plugin>.flagged` / `.redacted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dlp: Vec<DlpDecision>,
    /// For a message: the files it carried, and where their bytes are in the batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ExportAttachment>,
}

/// A file a message carried, as exported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportAttachment {
    pub id: i64,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    /// `ready`, `kept` (its message was deleted, a hold keeps it) or `deleted` (purged:
    /// listed, without bytes).
    pub state: String,
    /// The batch file with its bytes (`attachment-<id>-<name>`), unless purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DlpDecision {
    pub plugin: String,
    /// `flag` or `redact`.
    pub action: String,
    /// The plugin's detector names, as it wrote them.
    pub detectors: String,
}

/// The DLP decisions a message's metadata records.
pub fn dlp_decisions(event: &Event) -> Vec<DlpDecision> {
    event
        .metadata
        .iter()
        .filter_map(|(key, value)| {
            let (plugin, action) = key
                .strip_suffix(".flagged")
                .map(|p| (p, "flag"))
                .or_else(|| key.strip_suffix(".redacted").map(|p| (p, "redact")))?;
            Some(DlpDecision {
                plugin: plugin.to_string(),
                action: action.to_string(),
                detectors: value.clone(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Manifest {
    pub format: String,
    pub created_at: Millis,
    pub request: ExportRequest,
    pub events: u64,
    pub rooms: u64,
    pub files: Vec<FileEntry>,
    /// SHA-256 of the previous batch's `manifest.json`, in this directory.
    pub previous_manifest: Option<String>,
    /// The signing key's id.
    pub key_id: String,
}

const FORMAT: &str = "switchboard-export/1 jsonl+csv+actiance+eml";

/// The columns of `posts.csv`: the set archives import from Mattermost's compliance export
/// (teams do not exist here, so those columns stay empty).
pub const CSV_HEADER: [&str; 18] = [
    "Post Creation Time",
    "Team Id",
    "Team Name",
    "Team Display Name",
    "Channel Id",
    "Channel Name",
    "Channel Display Name",
    "Channel Type",
    "User Id",
    "User Email",
    "Username",
    "Post Id",
    "Edited By Post Id",
    "Replied to Post Id",
    "Post Message",
    "Post Type",
    "User Type",
    "Previews Post Id",
];

/// One CSV cell: quoted when it holds a separator, a quote or a line break, and kept from
/// being read as a spreadsheet formula (a leading `=`, `+`, `-`, `@`, tab or CR gets a `'`).
fn csv_cell(value: &str) -> String {
    let value = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv_row(cells: &[String]) -> String {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let bytes = std::fs::read(path)?;
    Ok((hex::encode(Sha256::digest(&bytes)), bytes.len() as u64))
}

/// The batch directories of a series, in order.
fn batches(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("batch-"))
            })
            .collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(err),
    };
    found.sort();
    Ok(found)
}

static WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How the archive formats name people and cut e-mails.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// Users appear to archives as `<name>@<email_domain>`.
    pub email_domain: String,
    /// A room's e-mail is cut into parts above this many bytes of text.
    pub eml_max_bytes: usize,
}

impl ArchiveSettings {
    pub fn from_config(config: &crate::config::ComplianceConfig) -> Self {
        Self {
            email_domain: config.export_email_domain.clone(),
            eml_max_bytes: archive::EML_MAX_BYTES,
        }
    }
}

/// Write the next batch of the series in `dir`.
pub async fn export(
    store: &dyn Store,
    files: &crate::files::Files,
    key: &SecretKey,
    request: &ExportRequest,
    dir: &Path,
    settings: &ArchiveSettings,
) -> anyhow::Result<(PathBuf, Manifest)> {
    use std::io::Write as _;
    // One writer per process: two batches numbered alike would fork the series. Across
    // processes `create_dir` below refuses the second (each node keeps its own series).
    let _one_writer = WRITER.lock().await;
    let previous = batches(dir)?;
    let previous_manifest = match previous.last() {
        Some(last) => Some(hex::encode(Sha256::digest(std::fs::read(
            last.join("manifest.json"),
        )?))),
        None => None,
    };
    let batch = dir.join(format!("batch-{:06}", previous.len() + 1));
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir(&batch)?;
    let rooms: Vec<RoomId> = if request.rooms.is_empty() {
        store
            .list_rooms()
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect()
    } else {
        for &room in &request.rooms {
            anyhow::ensure!(store.room(room).await?.is_some(), "no room {room}");
        }
        request.rooms.clone()
    };
    let in_range = |e: &Event| {
        request.from_at.is_none_or(|from| e.created_at >= from)
            && request.until_at.is_none_or(|until| e.created_at < until)
            && (request.users.is_empty() || request.users.contains(&e.sender_id))
    };
    let events_path = batch.join("events.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&events_path)?);
    let csv_path = batch.join("posts.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
    csv.write_all(csv_row(&CSV_HEADER.map(String::from)).as_bytes())?;
    let xml_path = batch.join("actiance.xml");
    let mut xml = std::io::BufWriter::new(std::fs::File::create(&xml_path)?);
    xml.write_all(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<FileDump xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n",
    )?;
    let exported_at = now_millis();
    let mut emails: Vec<String> = Vec::new();
    // A room's conversation goes out when it is complete or reaches the e-mail limit.
    let mut flush = |conversation: &archive::Conversation,
                     window_end: Option<Millis>,
                     xml: &mut std::io::BufWriter<std::fs::File>,
                     part: &mut usize|
     -> std::io::Result<()> {
        if conversation.is_empty() {
            return Ok(());
        }
        *part += 1;
        conversation.write_actiance(xml, window_end)?;
        let name = format!("globalrelay-{}-{:03}.eml", conversation.room_id(), part);
        let mut eml = std::io::BufWriter::new(std::fs::File::create(batch.join(&name))?);
        conversation.write_eml(&mut eml, window_end, exported_at, *part)?;
        eml.flush()?;
        emails.push(name);
        Ok(())
    };
    let users: std::collections::BTreeMap<UserId, crate::store::User> = store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let mut events = 0u64;
    let mut attachment_files: Vec<String> = Vec::new();
    for &room in &rooms {
        let Some(info) = store.room(room).await? else {
            continue;
        };
        let (channel_name, channel_type) = match info.kind {
            crate::store::RoomKind::Direct => ("direct".to_string(), "D"),
            crate::store::RoomKind::Group => (info.name.clone().unwrap_or_default(), "P"),
        };
        let mut conversation = archive::Conversation::new(
            room,
            info.name.clone().unwrap_or_default(),
            info.kind,
            request.from_at,
        );
        // The room's attached files, by message, read once.
        let mut attached: std::collections::HashMap<
            crate::store::EventId,
            Vec<crate::store::FileRecord>,
        > = std::collections::HashMap::new();
        for file in store.attached_files(room).await? {
            if let Some(message) = file.message_id {
                attached.entry(message).or_default().push(file);
            }
        }
        let mut part = 0;
        let mut after = 0;
        loop {
            let page = store.events(room, Page::After(after), 500).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for event in page.into_iter().filter(|e| in_range(e)) {
                let versions = if event.kind == EventKind::Message {
                    store.message_versions(event.id).await?
                } else {
                    Vec::new()
                };
                let mut attachments = Vec::new();
                let sender = users.get(&event.sender_id);
                // A thread reply names its root, a reaction or pin the message it is about.
                let replied_to = match event.kind {
                    EventKind::Message => event.thread_root,
                    EventKind::Reaction
                    | EventKind::ReactionRemoved
                    | EventKind::Pinned
                    | EventKind::Unpinned => event.target,
                    _ => None,
                }
                .map(|id| id.to_string())
                .unwrap_or_default();
                let row = |post: i64, edited_by: String, message: &str, kind: &str, at: i64| {
                    csv_row(&[
                        at.to_string(),
                        String::new(),
                        String::new(),
                        String::new(),
                        room.to_string(),
                        channel_name.clone(),
                        channel_name.clone(),
                        channel_type.to_string(),
                        event.sender_id.to_string(),
                        sender
                            .map(|u| format!("{}@{}", u.name, settings.email_domain))
                            .unwrap_or_default(),
                        sender.map(|u| u.name.clone()).unwrap_or_default(),
                        post.to_string(),
                        edited_by,
                        replied_to.clone(),
                        message.to_string(),
                        kind.to_string(),
                        if sender.is_some_and(|u| u.is_bot) {
                            "bot"
                        } else {
                            "user"
                        }
                        .to_string(),
                        String::new(),
                    ])
                };
                if matches!(
                    event.kind,
                    EventKind::Reaction
                        | EventKind::ReactionRemoved
                        | EventKind::Pinned
                        | EventKind::Unpinned
                ) {
                    csv.write_all(
                        row(
                            event.id,
                            String::new(),
                            event.body.as_deref().unwrap_or(""),
                            event.kind.as_str(),
                            event.created_at,
                        )
                        .as_bytes(),
                    )?;
                }
                if event.kind == EventKind::Message {
                    let kind = if event.deleted { "deleted" } else { "message" };
                    csv.write_all(
                        row(
                            event.id,
                            String::new(),
                            event.body.as_deref().unwrap_or(""),
                            kind,
                            event.created_at,
                        )
                        .as_bytes(),
                    )?;
                    for version in &versions {
                        csv.write_all(
                            row(
                                event.id,
                                event.id.to_string(),
                                version.body.as_deref().unwrap_or(""),
                                "previous_version",
                                version.replaced_at,
                            )
                            .as_bytes(),
                        )?;
                    }
                    for file in attached.remove(&event.id).unwrap_or_default() {
                        let copied = attachment(files, &batch, &file).await?;
                        if let Some(name) = &copied {
                            attachment_files.push(name.clone());
                            csv.write_all(
                                row(
                                    event.id,
                                    String::new(),
                                    name,
                                    "attachment",
                                    event.created_at,
                                )
                                .as_bytes(),
                            )?;
                        }
                        attachments.push(ExportAttachment {
                            id: file.id,
                            name: file.name,
                            content_type: file.content_type,
                            size: file.size,
                            sha256: file.sha256,
                            state: file.state,
                            file: copied,
                        });
                    }
                }
                conversation.push(&event, &versions, &users, &settings.email_domain);
                if conversation.bytes() >= settings.eml_max_bytes {
                    flush(&conversation, None, &mut xml, &mut part)?;
                    conversation = archive::Conversation::new(
                        room,
                        info.name.clone().unwrap_or_default(),
                        info.kind,
                        None,
                    );
                }
                let line = ExportLine {
                    dlp: dlp_decisions(&event),
                    versions,
                    attachments,
                    event,
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
                events += 1;
            }
        }
        flush(&conversation, request.until_at, &mut xml, &mut part)?;
    }
    xml.write_all(b"</FileDump>\n")?;
    xml.flush()?;
    drop(xml);
    out.flush()?;
    drop(out);
    csv.flush()?;
    drop(csv);
    let mut files = Vec::new();
    let named = [
        ("events.jsonl".to_string(), events_path),
        ("posts.csv".to_string(), csv_path),
        ("actiance.xml".to_string(), xml_path),
    ]
    .into_iter()
    .chain(emails.into_iter().chain(attachment_files).map(|name| {
        let path = batch.join(&name);
        (name, path)
    }));
    for (name, path) in named {
        let (sha256, bytes) = sha256_file(&path)?;
        files.push(FileEntry {
            name,
            sha256,
            bytes,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: now_millis(),
        request: request.clone(),
        events,
        rooms: rooms.len() as u64,
        files,
        previous_manifest,
        key_id: key.public().id().to_string(),
    };
    let text = serde_json::to_vec_pretty(&manifest)?;
    std::fs::write(batch.join("manifest.json"), &text)?;
    std::fs::write(batch.join("manifest.sig"), key.sign_message(&text))?;
    Ok((batch, manifest))
}

/// Copy a message's file into the batch as `attachment-<id>-<name>`, streamed; `None` for
/// a file whose bytes were purged (or are about to be).
async fn attachment(
    files: &crate::files::Files,
    batch: &Path,
    file: &crate::store::FileRecord,
) -> anyhow::Result<Option<String>> {
    use futures_util::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    if file.state != "ready" && file.state != "kept" {
        return Ok(None);
    }
    let name = format!(
        "attachment-{}-{}",
        file.id,
        crate::files::safe_name(&file.name)
    );
    let mut download = files
        .download(file, 0..u64::try_from(file.size).unwrap_or(0))
        .await?;
    let mut out = tokio::fs::File::create(batch.join(&name)).await?;
    while let Some(chunk) = download.stream.next().await {
        out.write_all(&chunk?).await?;
    }
    out.flush().await?;
    Ok(Some(name))
}

/// What `export verify` found.
#[derive(Debug, Default, Serialize)]
pub struct SeriesReport {
    pub batches: u64,
    pub events: u64,
    pub problems: Vec<String>,
}

/// Check every batch of the series in `dir`: its signature, its files' hashes, its link to
/// the batch before.
pub fn verify(dir: &Path, key: &PublicKey) -> anyhow::Result<SeriesReport> {
    let mut report = SeriesReport::default();
    let mut previous: Option<String> = None;
    for batch in batches(dir)? {
        let name = batch.display().to_string();
        let text = std::fs::read(batch.join("manifest.json"))?;
        let signature = std::fs::read_to_string(batch.join("manifest.sig")).unwrap_or_default();
        if !key.verifies(&text, signature.trim()) {
            report.problems.push(format!(
                "{name}: manifest.json is not signed by the audit key"
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&text)?;
        if manifest.previous_manifest != previous {
            report
                .problems
                .push(format!("{name}: does not follow the batch before it"));
        }
        for file in &manifest.files {
            match sha256_file(&batch.join(&file.name)) {
                Ok((sha, _)) if sha == file.sha256 => {}
                Ok(_) => report
                    .problems
                    .push(format!("{name}: {} was changed", file.name)),
                Err(_) => report
                    .problems
                    .push(format!("{name}: {} is missing", file.name)),
            }
        }
        // A file put into the batch afterwards is as much a change as one rewritten.
        for entry in std::fs::read_dir(&batch)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            if !holds_file(&manifest, &file) {
                report
                    .problems
                    .push(format!("{name}: {file} is not in the manifest"));
            }
        }
        previous = Some(hex::encode(Sha256::digest(&text)));
        report.batches += 1;
        report.events += manifest.events;
    }
    Ok(report)
}

/// The batches of the series in `dir`, with their manifests, in order.
pub fn list(dir: &Path) -> anyhow::Result<Vec<(String, Manifest)>> {
    batches(dir)?
        .into_iter()
        .map(|batch| {
            let name = batch
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let manifest = serde_json::from_slice(&std::fs::read(batch.join("manifest.json"))?)?;
            Ok((name, manifest))
        })
        .collect()
}

/// Whether `file` is one of the files of a batch whose manifest is `manifest`: the files
/// it lists, and the manifest and its signature.
pub fn holds_file(manifest: &Manifest, file: &str) -> bool {
    file == "manifest.json"
        || file == "manifest.sig"
        || manifest.files.iter().any(|f| f.name == file)
}

/// Where the series in `dir` stopped: the end of its last batch's window (`None`: no batch
/// yet, or the last one had no end).
pub fn cursor(dir: &Path) -> anyhow::Result<Option<Millis>> {
    let Some(last) = batches(dir)?.pop() else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(last.join("manifest.json"))?)?;
    Ok(manifest.request.until_at)
}

/// How far behind now a scheduled batch ends: an event takes its time when the group-commit
/// writer takes it, and is visible only once committed, so the newest moment may still be
/// filling. Seconds of margin against milliseconds of commit latency.
const SETTLE_MS: i64 = 2000;

/// Export every room into `dir` every `export_every_secs`: each batch covers from the end
/// of the previous batch (the cursor) to now, so nothing is missed or repeated, and a run
/// that failed is made up by the next.
pub fn spawn_scheduler(
    store: std::sync::Arc<dyn Store>,
    files: std::sync::Arc<crate::files::Files>,
    key: SecretKey,
    dir: PathBuf,
    every_secs: u64,
    settings: ArchiveSettings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(every_secs.max(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let request = match cursor(&dir) {
                Ok(from_at) => ExportRequest {
                    from_at,
                    until_at: Some(now_millis() - SETTLE_MS),
                    ..ExportRequest::default()
                },
                Err(err) => {
                    tracing::error!(error = %err, dir = %dir.display(), "reading the export series failed");
                    continue;
                }
            };
            match export(store.as_ref(), &files, &key, &request, &dir, &settings).await {
                Ok((batch, manifest)) => {
                    crate::audit::record(
                        store.as_ref(),
                        crate::audit::Actor::System,
                        crate::audit::Action::ExportRun,
                        crate::audit::Subject::Export,
                        serde_json::json!({
                            "batch": batch.display().to_string(), "events": manifest.events,
                            "rooms": manifest.rooms, "request": manifest.request,
                        }),
                    )
                    .await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "the scheduled export failed; the next run resumes from the last batch")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A room above the e-mail limit goes out as several e-mails (and as as many Actiance
    /// conversations), each listed and hashed in the manifest; nothing is lost between them.
    #[tokio::test]
    async fn a_large_room_is_cut_into_several_emails() {
        use crate::store::{NewEvent, NewRoom, NewUser, Role, RoomKind, StoreOptions};
        let store =
            crate::store::sqlite::SqliteStore::open("sqlite::memory:", &StoreOptions::default())
                .await
                .unwrap();
        let alice = store
            .create_user(NewUser {
                name: "alice".into(),
                display_name: "Alice".into(),
                password_hash: None,
                is_admin: false,
                is_bot: false,
            })
            .await
            .unwrap();
        let room = store
            .create_room(
                NewRoom {
                    kind: RoomKind::Group,
                    name: Some("big".into()),
                    topic: None,
                    created_by: alice.id,
                },
                &[(alice.id, Role::Owner)],
            )
            .await
            .unwrap();
        let batch: Vec<NewEvent> = (0..30)
            .map(|n| NewEvent::Message {
                room_id: room.id,
                sender_id: alice.id,
                client_msg_id: format!("m{n}"),
                body: format!("message number {n:02} {}", "x".repeat(100)),
                metadata: Default::default(),
                files: Vec::new(),
                thread: None,
                mentions: Default::default(),
            })
            .collect();
        for appended in store.append_events(&batch).await.unwrap() {
            appended.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate().unwrap();
        let settings = ArchiveSettings {
            email_domain: "corp.example".into(),
            eml_max_bytes: 3_000,
        };
        let data = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        };
        let files = crate::files::Files::open(&config).unwrap();
        let (batch, manifest) = export(
            &store,
            &files,
            &key,
            &ExportRequest::default(),
            dir.path(),
            &settings,
        )
        .await
        .unwrap();
        let emails: Vec<&FileEntry> = manifest
            .files
            .iter()
            .filter(|f| f.name.ends_with(".eml"))
            .collect();
        assert!(emails.len() >= 3, "{:?}", manifest.files);
        let mut seen = String::new();
        for email in &emails {
            let bytes = std::fs::read(batch.join(&email.name)).unwrap();
            let mail = mail_parser::MessageParser::default().parse(&bytes).unwrap();
            seen.push_str(&mail.body_text(0).unwrap());
        }
        for n in 0..30 {
            assert!(seen.contains(&format!("message number {n:02}")), "{n}");
        }
        let xml = std::fs::read_to_string(batch.join("actiance.xml")).unwrap();
        assert_eq!(xml.matches("<Conversation ").count(), emails.len());
        assert!(
            verify(dir.path(), &key.public())
                .unwrap()
                .problems
                .is_empty()
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_row(&["a".into(), "b,c".into()]), "a,\"b,c\"\r\n");
    }
}
