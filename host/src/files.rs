//! Files uploaded to rooms: where their bytes live and how an upload becomes a file.
//!
//! **Storage** is an [`object_store::ObjectStore`]: the local data directory by default
//! (`<data_dir>/files`), or an S3-compatible bucket (`[files.s3]`). Both take the bytes as a
//! multipart upload of bounded parts, so an upload of any size holds at most one part in
//! memory, and both serve byte ranges.
//!
//! **An upload** is written in three steps, so that no failure leaves a half file behind:
//! a row in `uploading` state naming the object's key; the bytes, streamed to storage while
//! their size is counted against the limit, their SHA-256 computed and their type sniffed
//! from the first bytes (never taken from the client); then the row marked `ready`. Any
//! error aborts the multipart upload and removes the row; a crash leaves an `uploading` row
//! that [`Files::sweep_unfinished`] removes, with any object, at the next start.
//!
//! With `[files.clamav]`, every upload is also streamed to clamd as it arrives ([`scan`]);
//! a file it flags, or cannot judge, is refused before the row becomes `ready`.

pub mod scan;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::config::{Config, FilesConfig};
use crate::store::{FileRecord, RoomId, Store, StoreError, UserId};

/// Bytes per part of a multipart upload: S3's minimum part size, and the most of a file
/// the server holds in memory at once (plus one part in flight).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Bytes looked at to tell a file's type.
const SNIFF_BYTES: usize = 8192;
/// The longest file name kept, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// Why an upload's body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the upload arrived too slowly")]
    TimedOut,
    #[error("{0}")]
    Broken(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload was cut off: {0}")]
    Interrupted(String),
    #[error("the upload took too long")]
    TimedOut,
    #[error("the virus scanner found {0}")]
    Infected(String),
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    #[error("file storage failed: {0}")]
    Storage(#[from] object_store::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where files are kept, and the limits on them.
#[derive(Debug, Clone)]
pub struct Files {
    objects: Arc<dyn ObjectStore>,
    /// Prepended to every key (a bucket shared by several servers).
    prefix: String,
    pub max_upload_bytes: u64,
    /// `local` or `s3`, for operators and logs.
    pub backend: &'static str,
    /// The local directory, when files are kept on this disk: an upload cut off by a crash
    /// leaves its staged bytes there (`<key>#<n>`), which only a directory listing finds.
    local_root: Option<std::path::PathBuf>,
    clamav: Option<crate::config::ClamavConfig>,
}

/// A finished upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub file: FileRecord,
}

/// A download: the bytes of the asked range, as they come from storage.
pub struct Download {
    pub stream: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, object_store::Error>> + Send>>,
    /// The byte range served (`start..end`).
    pub range: std::ops::Range<u64>,
}

impl Files {
    /// Open the storage the configuration names.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let FilesConfig {
            max_upload_bytes,
            s3,
            clamav,
            ..
        } = &config.files;
        if let Some(clamav) = clamav
            && *max_upload_bytes > clamav.stream_max_bytes
        {
            let problem = format!(
                "files.max_upload_bytes ({max_upload_bytes}) is above the virus scanner's stream \
                 limit (files.clamav.stream_max_bytes = {}, clamd's StreamMaxLength): larger \
                 files could not be scanned",
                clamav.stream_max_bytes
            );
            match clamav.on_limit_mismatch {
                crate::config::LimitMismatch::Refuse => anyhow::bail!(
                    "{problem}; raise StreamMaxLength (and stream_max_bytes) or lower the upload \
                     limit, or set files.clamav.on_limit_mismatch = \"warn\" to refuse such files \
                     at upload instead"
                ),
                crate::config::LimitMismatch::Warn => {
                    tracing::warn!("{problem}; such files will be refused at upload")
                }
            }
        }
        let local_root = s3.is_none().then(|| config.data_dir.join("files"));
        let (objects, prefix, backend): (Arc<dyn ObjectStore>, String, _) = match s3 {
            Some(s3) => {
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(s3.access_key_id.expose())
                    .with_secret_access_key(s3.secret_access_key.expose())
                    .with_allow_http(s3.allow_http);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                (Arc::new(builder.build()?), s3.prefix.clone(), "s3")
            }
            None => {
                let dir = config.data_dir.join("files");
                create_private_dir(&dir)?;
                crate::private_files::tighten(&dir, "the files directory")?;
                (
                    Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir)?),
                    String::new(),
                    "local",
                )
            }
        };
        Ok(Self {
            objects,
            prefix,
            max_upload_bytes: *max_upload_bytes,
            backend,
            local_root,
            clamav: clamav.clone(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.prefix))
    }

    /// Take an upload's bytes into a new file of `room`. `name` is the client's name for it
    /// (made safe here); `declared` is the length the client announced, if any.
    pub async fn upload<S>(
        &self,
        store: &dyn Store,
        room: RoomId,
        uploader: UserId,
        name: &str,
        declared: Option<u64>,
        body: S,
    ) -> Result<Uploaded, FileError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send,
    {
        if let Some(declared) = declared
            && declared > self.max_upload_bytes
        {
            return Err(FileError::TooLarge {
                limit: self.max_upload_bytes,
            });
        }
        let key = format!("rooms/{room}/{}", crate::ids::random_token(16));
        let record = store
            .create_file(room, uploader, &safe_name(name), &key)
            .await?;
        match self.write(&key, declared, body).await {
            Ok((size, sha256, content_type)) => {
                store
                    .finish_file(record.id, size as i64, &sha256, &content_type)
                    .await?;
                let file = store
                    .file(record.id)
                    .await?
                    .ok_or_else(|| FileError::Interrupted("the file vanished".into()))?;
                Ok(Uploaded { file })
            }
            Err(err) => {
                // The object was never completed (aborted below); the row goes too.
                if let Err(cleanup) = store.delete_file(record.id).await {
                    tracing::warn!(error = %cleanup, file = record.id, "removing a failed upload's row failed; the next start removes it");
                }
                Err(err)
            }
        }
    }

    async fn write<S>(
        &self,
        key: &str,
        declared: Option<u64>,
        body: S,
    ) -> Result<(u64, String, String), FileError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send,
    {
        let mut scanner = match &self.clamav {
            Some(config) => Some(scan::Session::start(config).await?),
            None => None,
        };
        let upload = self.objects.put_multipart(&self.path(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut body = std::pin::pin!(body);
        let outcome: Result<(), FileError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| match e {
                    BodyError::TimedOut => FileError::TimedOut,
                    BodyError::Broken(why) => FileError::Interrupted(why),
                })?;
                size += chunk.len() as u64;
                if size > self.max_upload_bytes {
                    return Err(FileError::TooLarge {
                        limit: self.max_upload_bytes,
                    });
                }
                if head.len() < SNIFF_BYTES {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(&chunk);
                if let Some(scanner) = &mut scanner {
                    scanner.feed(&chunk).await;
                }
                // At most two parts in flight: memory stays bounded whatever the file's size.
                writer.wait_for_capacity(2).await?;
                writer.put(chunk);
            }
            if let Some(declared) = declared
                && declared != size
            {
                return Err(FileError::Interrupted(format!(
                    "{size} bytes arrived, {declared} were announced"
                )));
            }
            if let Some(scanner) = scanner.take() {
                match scanner.verdict().await? {
                    scan::Verdict::Clean => {}
                    scan::Verdict::Infected(signature) => {
                        return Err(FileError::Infected(signature));
                    }
                }
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                writer.finish().await?;
                Ok((
                    size,
                    hex::encode(hasher.finalize()),
                    sniff(&head).to_string(),
                ))
            }
            Err(err) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, key, "aborting a failed upload failed");
                }
                Err(err)
            }
        }
    }

    /// The bytes of `file` in `range` (already checked against its size).
    pub async fn download(
        &self,
        file: &FileRecord,
        range: std::ops::Range<u64>,
    ) -> Result<Download, FileError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let got = if range.is_empty() {
            return Ok(Download {
                stream: Box::pin(futures_util::stream::empty()),
                range,
            });
        } else {
            self.objects
                .get_opts(&self.path(&file.storage_key), options)
                .await?
        };
        Ok(Download {
            stream: got.into_stream(),
            range,
        })
    }

    /// Remove a file's bytes and its row.
    pub async fn delete(&self, store: &dyn Store, file: &FileRecord) -> Result<(), FileError> {
        match self.objects.delete(&self.path(&file.storage_key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        if let Some(root) = &self.local_root {
            remove_staged(&root.join(&file.storage_key));
        }
        store.delete_file(file.id).await?;
        Ok(())
    }

    /// Remove what uploads cut off by a crash or a stop left: their rows, and any object
    /// that reached storage. Run at start, before requests are taken.
    pub async fn sweep_unfinished(&self, store: &dyn Store) -> Result<usize, FileError> {
        let unfinished = store.files_in_state("uploading").await?;
        for file in &unfinished {
            self.delete(store, file).await?;
        }
        if !unfinished.is_empty() {
            tracing::info!(
                count = unfinished.len(),
                "removed uploads a previous run did not finish"
            );
        }
        Ok(unfinished.len())
    }

    /// Say in the log whether the configured virus scanner answers (uploads fail closed
    /// while it does not, so an operator should hear of it at start, not from users).
    pub async fn check_scanner(&self) {
        if let Some(config) = &self.clamav {
            match scan::ping(config).await {
                Ok(()) => tracing::info!(address = %config.address, "virus scanner answers"),
                Err(err) => {
                    tracing::error!(error = %err, address = %config.address, "virus scanner does not answer: uploads are refused until it does")
                }
            }
        }
    }

    /// Purge the bytes of files whose message was deleted or erased (and not kept), then
    /// their rows. Run after start and then every `files.purge_interval_secs`.
    pub async fn purge_deleted(&self, store: &dyn Store) -> Result<usize, FileError> {
        let deleted = store.files_in_state("deleted").await?;
        for file in &deleted {
            self.delete(store, file).await?;
        }
        Ok(deleted.len())
    }

    /// Purge on a schedule (see [`purge_deleted`](Self::purge_deleted)).
    pub fn spawn_purger(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        every_secs: u64,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval(std::time::Duration::from_secs(every_secs.max(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match self.purge_deleted(store.as_ref()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(files = n, "purged the files of deleted messages"),
                    Err(err) => {
                        tracing::warn!(error = %err, "purging deleted files failed; the next run retries")
                    }
                }
            }
        })
    }

    /// How many objects storage holds under this server's prefix (operators; tests that
    /// check nothing was left behind).
    pub async fn object_count(&self) -> Result<usize, FileError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let mut listing = self.objects.list(prefix.as_ref());
        let mut count = 0;
        while let Some(meta) = listing.next().await {
            meta?;
            count += 1;
        }
        Ok(count)
    }
}

/// Create `dir` (and its parents) readable by this user only, like the data directory.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Remove what a multipart upload to the local directory staged beside `dest` (`dest#1`, …)
/// and never completed.
fn remove_staged(dest: &std::path::Path) {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let staged = format!("{name}#");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name
            .strip_prefix(&staged)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && let Err(err) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(error = %err, path = %entry.path().display(), "removing a staged upload failed");
        }
    }
}

/// A file name safe to store, show and offer as a download name: the last path component
/// only, without control, bidi or zero-width characters, without leading dots, at most 255
/// bytes (cut on a character boundary, keeping the extension), and never empty.
pub fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !crate::names::is_invisible_or_bidi(*c))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    if cleaned.is_empty() {
        return "file".into();
    }
    if cleaned.len() <= MAX_NAME_BYTES {
        return cleaned;
    }
    let (stem, extension) = match cleaned.rsplit_once('.') {
        Some((stem, ext)) if ext.len() <= 16 && !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (cleaned.as_str(), String::new()),
    };
    let mut cut = MAX_NAME_BYTES - extension.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{extension}", &stem[..cut])
}

/// A file's type, from its first bytes: a known signature (images, documents, archives, …),
/// else `text/plain` for UTF-8 text, else `application/octet-stream`.
pub fn sniff(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    if head.is_empty() {
        return "application/octet-stream";
    }
    // A UTF-8 text may be cut mid-character at the end of the sniffed bytes.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none() && err.valid_up_to() + 4 > head.len(),
    };
    if text && !head.contains(&0) {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_lose_paths_and_invisible_characters() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(safe_name("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(safe_name("..."), "file");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        let long = format!("{}.csv", "é".repeat(300));
        let cut = safe_name(&long);
        assert!(
            cut.len() <= MAX_NAME_BYTES && cut.ends_with(".csv"),
            "{cut}"
        );
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff(b"name,card\nalice,4111\n"), "text/plain");
        assert_eq!(sniff(b"\0\x01\x02binary"), "application/octet-stream");
        // UTF-8 cut in the middle of a character at the end of the sniffed bytes.
        assert_eq!(sniff("héllo".as_bytes().split_at(2).0), "text/plain");
    }

    proptest! {
        #[test]
        fn any_name_becomes_a_safe_one(name in ".{0,400}") {
            let safe = safe_name(&name);
            prop_assert!(!safe.is_empty());
            prop_assert!(safe.len() <= MAX_NAME_BYTES);
            prop_assert!(!safe.contains('/') && !safe.contains('\\'));
            prop_assert!(!safe.starts_with('.'));
            prop_assert!(!safe.chars().any(|c| c.is_control()));
        }
    }
}
