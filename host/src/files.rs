//! Files uploaded to rooms: where their bytes live and how an upload becomes a file.
//!
//! **Storage** is an [`object_store::ObjectStore`]: the local data directory by default
//! (`<data_dir>/files`), or an S3-compatible bucket (`[files.s3]`). Both take the bytes as a
//! multipart upload of bounded parts, so an upload of any size holds at most one part in
//! memory, and both serve byte ranges.
//!
//! **An upload** is written in steps, so that no failure leaves a half file behind: a row
//! in `uploading` state naming the object's key; the bytes, streamed to storage while their
//! size is counted against the limit, their SHA-256 computed and their type sniffed from
//! the first bytes (never taken from the client) — [`Files::receive`]; the plugins'
//! `file-pre-upload` checks, which read the stored bytes back in ranges (done by the
//! caller, the API); then the row marked `ready` or `quarantined`, with a plugin's
//! replacement content written over the object first — [`Files::finish`] — or the object
//! and row removed — [`Files::discard`]. Any error aborts the multipart upload and removes
//! the row; a crash leaves an `uploading` row that [`Files::sweep_unfinished`] removes,
//! with any object, at the next start.
//!
//! With `[files.clamav]`, every upload is also streamed to clamd as it arrives ([`scan`]);
//! a file it flags, or cannot judge, is refused before the row becomes `ready`. Images are
//! checked against a pixel limit, stripped of their EXIF metadata and thumbnailed
//! ([`images`]) before any plugin sees them.

pub mod images;
mod resumable;
pub mod scan;

pub use resumable::ResumableStatus;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::config::{Config, FilesConfig};
use crate::store::{FileRecord, FinishedFile, RoomId, Store, StoreError, UserId};

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

impl From<BodyError> for FileError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TimedOut => Self::TimedOut,
            BodyError::Broken(why) => Self::Interrupted(why),
        }
    }
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
    #[error(transparent)]
    Image(#[from] images::ImageError),
    #[error("the upload stands at byte {expected}")]
    OffsetMismatch { expected: u64 },
    #[error("a chunk may have at most {limit} bytes here")]
    ChunkTooLarge { limit: u64 },
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
    images: crate::config::ImagesConfig,
    unattached_ttl_secs: u64,
    resumable: crate::config::ResumableConfig,
}

/// An upload whose bytes are all in storage, not yet checked by plugins: its row is still
/// `uploading`.
#[derive(Debug)]
pub struct Staged {
    pub record: FileRecord,
    pub size: u64,
    pub sha256: String,
    /// Sniffed from the bytes.
    pub content_type: String,
    /// An image whose thumbnail is stored beside it.
    pub thumbnail: bool,
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
            images,
            ..
        } = &config.files;
        if images.max_pixels == 0 || !(16..=4096).contains(&images.thumbnail_px) {
            anyhow::bail!(
                "files.images.max_pixels must be positive and files.images.thumbnail_px between 16 and 4096"
            );
        }
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
                    // Directories emptied by deletions go too (a resumable upload's
                    // `<key>.parts/`, a room's last file).
                    Arc::new(
                        object_store::local::LocalFileSystem::new_with_prefix(&dir)?
                            .with_automatic_cleanup(true),
                    ),
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
            images: images.clone(),
            unattached_ttl_secs: config.files.unattached_ttl_secs,
            resumable: config.files.resumable.clone(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.prefix))
    }

    /// Delete one object; one that is not there is fine.
    async fn remove_object(&self, path: &ObjectPath) -> Result<(), FileError> {
        match self.objects.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Take an upload's bytes into a new file of `room`, still `uploading`: the caller
    /// has the plugins check it, then [`finish`](Self::finish)es or
    /// [`discard`](Self::discard)s it. `name` is the client's name for it (made safe here);
    /// `declared` is the length the client announced, if any. On any error nothing is
    /// left behind.
    pub async fn receive<S>(
        &self,
        store: &dyn Store,
        room: RoomId,
        uploader: UserId,
        name: &str,
        declared: Option<u64>,
        body: S,
    ) -> Result<Staged, FileError>
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
        let key = new_key(room);
        let record = store
            .create_file(room, uploader, &safe_name(name), &key)
            .await?;
        self.take(store, record, declared, body).await
    }

    /// Write an upload's bytes to its (`uploading`) row's object, checking, scanning,
    /// hashing and sniffing them as they pass, then prepare an image. On any error the
    /// object, any thumbnail and parts, and the row are removed.
    async fn take<S>(
        &self,
        store: &dyn Store,
        record: FileRecord,
        declared: Option<u64>,
        body: S,
    ) -> Result<Staged, FileError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send,
    {
        let key = record.storage_key.clone();
        let (size, sha256, content_type) = match self.write(&key, declared, body).await {
            Ok(written) => written,
            Err(err) => {
                // The object was never completed (aborted in `write`); what else there is
                // (a resumable upload's parts) and the row go too.
                if let Err(cleanup) = self.delete(store, &record).await {
                    tracing::warn!(error = %cleanup, file = record.id, "removing a failed upload failed; the next start removes it");
                }
                return Err(err);
            }
        };
        let mut staged = Staged {
            record,
            size,
            sha256,
            content_type,
            thumbnail: false,
        };
        if images::is_image(&staged.content_type) {
            let prepared = async {
                if staged.size > self.images.max_bytes {
                    return Err(FileError::Image(images::ImageError::TooLarge {
                        limit: self.images.max_bytes,
                    }));
                }
                let bytes = self
                    .objects
                    .get(&self.path(&staged.record.storage_key))
                    .await?
                    .bytes()
                    .await?;
                self.prepare_image(&staged.record.storage_key, bytes).await
            }
            .await;
            match prepared {
                Ok(stripped) => {
                    if let Some(stripped) = stripped {
                        staged.size = stripped.len() as u64;
                        staged.sha256 = hex::encode(Sha256::digest(&stripped));
                    }
                    staged.thumbnail = true;
                }
                Err(err) => {
                    self.discard(store, staged).await;
                    return Err(err);
                }
            }
        }
        Ok(staged)
    }

    /// Check an image, write its metadata-stripped bytes over the object (when it had
    /// metadata) and its thumbnail beside it; the stripped bytes are returned.
    async fn prepare_image(&self, key: &str, bytes: Bytes) -> Result<Option<Bytes>, FileError> {
        let config = self.images.clone();
        let processed = tokio::task::spawn_blocking(move || images::process(bytes, &config))
            .await
            .map_err(|e| images::ImageError::Unreadable(format!("processing stopped: {e}")))??;
        if let Some(stripped) = &processed.stripped {
            self.objects
                .put(&self.path(key), stripped.clone().into())
                .await?;
        }
        self.objects
            .put(&self.thumbnail_path(key), processed.thumbnail.into())
            .await?;
        Ok(processed.stripped)
    }

    fn thumbnail_path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}.thumb", self.prefix))
    }

    /// Make a checked upload a file: with a plugin's `replacement` content (and name) if
    /// one replaced it, and `quarantined` (plugin, reason) if one asked for review.
    pub async fn finish(
        &self,
        store: &dyn Store,
        staged: Staged,
        replacement: Option<(Bytes, Option<String>)>,
        quarantine: Option<(String, String)>,
    ) -> Result<FileRecord, FileError> {
        let id = staged.record.id;
        let mut finished = FinishedFile {
            size: staged.size as i64,
            sha256: staged.sha256.clone(),
            content_type: staged.content_type.clone(),
            name: None,
            quarantine,
            thumbnail: staged.thumbnail,
        };
        if let Some((content, name)) = replacement {
            // A plugin's content obeys the rules an upload does: an image is checked,
            // stripped and thumbnailed like any.
            let key = staged.record.storage_key.clone();
            let replaced = async {
                let mut content = content;
                let content_type = sniff(&content).to_string();
                let mut thumbnail = false;
                if images::is_image(&content_type) {
                    if let Some(stripped) = self.prepare_image(&key, content.clone()).await? {
                        content = stripped;
                    }
                    thumbnail = true;
                } else {
                    match self.objects.delete(&self.thumbnail_path(&key)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(err) => return Err(FileError::from(err)),
                    }
                }
                // Overwritten in place: the key (and so the sweep of an unfinished upload)
                // stays the same.
                self.objects
                    .put(&self.path(&key), content.clone().into())
                    .await?;
                Ok::<_, FileError>((content, content_type, thumbnail))
            }
            .await;
            match replaced {
                Ok((content, content_type, thumbnail)) => {
                    finished.size = content.len() as i64;
                    finished.sha256 = hex::encode(Sha256::digest(&content));
                    finished.content_type = content_type;
                    finished.thumbnail = thumbnail;
                    finished.name = name.map(|n| safe_name(&n));
                }
                Err(err) => {
                    self.discard(store, staged).await;
                    return Err(err);
                }
            }
        }
        if let Err(err) = store.finish_file(id, &finished).await {
            self.discard(store, staged).await;
            return Err(err.into());
        }
        store
            .file(id)
            .await?
            .ok_or_else(|| FileError::Interrupted("the file vanished".into()))
    }

    /// Drop an upload the checks refused: its bytes and its row. A failure here is logged;
    /// the row stays `uploading`, so the next start removes both.
    pub async fn discard(&self, store: &dyn Store, staged: Staged) {
        if let Err(err) = self.delete(store, &staged.record).await {
            tracing::warn!(error = %err, file = staged.record.id, "removing a refused upload failed; the next start removes it");
        }
    }

    /// Up to `len` bytes of a stored object from `offset` (fewer at its end, none past it).
    pub async fn read_range(
        &self,
        storage_key: &str,
        size: u64,
        offset: u64,
        len: u32,
    ) -> Result<Bytes, FileError> {
        let end = offset.saturating_add(u64::from(len)).min(size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        Ok(self
            .objects
            .get_range(&self.path(storage_key), offset..end)
            .await?)
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
                let chunk = chunk?;
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

    /// The PNG thumbnail of an image file.
    pub async fn thumbnail(&self, file: &FileRecord) -> Result<Bytes, FileError> {
        Ok(self
            .objects
            .get(&self.thumbnail_path(&file.storage_key))
            .await?
            .bytes()
            .await?)
    }

    /// Remove a file's bytes (its thumbnail, a resumable upload's parts) and its row.
    pub async fn delete(&self, store: &dyn Store, file: &FileRecord) -> Result<(), FileError> {
        for path in [
            self.path(&file.storage_key),
            self.thumbnail_path(&file.storage_key),
        ] {
            self.remove_object(&path).await?;
        }
        self.remove_parts(&file.storage_key).await?;
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

    /// Purge the bytes of files whose message was deleted or erased (and not kept), that
    /// a reviewer or their uploader deleted, or that stayed unattached longer than
    /// `files.unattached_ttl_secs`; then their rows. Run after start and then every
    /// `files.purge_interval_secs`.
    pub async fn purge_deleted(&self, store: &dyn Store) -> Result<usize, FileError> {
        if self.unattached_ttl_secs > 0 {
            let ttl =
                i64::try_from(self.unattached_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let before = crate::store::now_millis().saturating_sub(ttl);
            let abandoned = store.discard_unattached_files(before).await?;
            if abandoned > 0 {
                tracing::info!(files = abandoned, "deleting uploads no message took");
            }
        }
        let expired = self.expire_resumable(store).await?;
        if expired > 0 {
            tracing::info!(
                uploads = expired,
                "removed resumable uploads nobody finished"
            );
        }
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

/// A new file's storage key.
fn new_key(room: RoomId) -> String {
    format!("rooms/{room}/{}", crate::ids::random_token(16))
}

/// Remove what multipart uploads to the local directory staged beside `dest` and never
/// completed: `dest#1`, and the same for its thumbnail and parts (`dest.thumb#1`,
/// `dest.part-…#1`).
fn remove_staged(dest: &std::path::Path) {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let is_staged = |file_name: &str| {
        let Some(rest) = file_name.strip_prefix(name) else {
            return false;
        };
        let Some((object, n)) = rest.rsplit_once('#') else {
            return false;
        };
        let ours = object.is_empty()
            || object == ".thumb"
            || object
                .strip_prefix(".part-")
                .is_some_and(|o| o.bytes().all(|b| b.is_ascii_digit()));
        ours && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if is_staged(file_name)
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
    // Leading dots and spaces in any mix (`. .x` too): no hidden files, no `..`.
    let cleaned = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end()
        .to_string();
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
        assert_eq!(safe_name(". ."), "file");
        assert_eq!(safe_name(" . .env"), "env");
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
