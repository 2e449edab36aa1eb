//! Resumable uploads: a large file sent as a series of chunks, each committed on its own,
//! so a broken connection costs only the chunk in flight and the upload continues from
//! the last committed byte — after a restart of the server too.
//!
//! A session is a file row in state `receiving` with the announced `size` and the bytes
//! `received` so far. Each chunk is streamed (in bounded parts, like any upload) into its
//! own object `<key>.parts/<offset>`, and only once the whole chunk is stored does the row's
//! `received` move on — by a compare-and-set on the offset the chunk started at, so two
//! clients racing on one session cannot both extend it. When the last byte arrives, the
//! parts are streamed in order through the same pipeline as a one-request upload (limit,
//! SHA-256, sniffing, the virus scanner, images), into the file's object; the row is
//! `uploading` while that runs, so a crash in the middle is swept at the next start, parts
//! and all. A session left alone for `files.resumable_ttl_secs` is removed with its parts.

use futures_util::TryStreamExt as _;
use serde::Serialize;

use super::*;

/// Where a resumable upload stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResumableStatus {
    /// The file the upload becomes (its id is also the session's).
    pub file_id: i64,
    pub room_id: RoomId,
    pub name: String,
    /// The announced size.
    pub size: u64,
    /// Bytes committed: the next chunk starts here.
    pub offset: u64,
    /// The largest chunk one request may carry.
    pub max_chunk_bytes: u64,
    /// When the session is removed if it has not finished (milliseconds since the epoch).
    pub expires_at: i64,
}

impl Files {
    fn parts_dir(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}.parts", self.prefix))
    }

    fn part_path(&self, key: &str, offset: u64) -> ObjectPath {
        ObjectPath::from(format!("{}{key}.parts/{offset:020}", self.prefix))
    }

    /// The committed parts of an upload, in order, as (offset, path, size).
    async fn parts(&self, key: &str) -> Result<Vec<(u64, ObjectPath, u64)>, FileError> {
        let dir = self.parts_dir(key);
        let mut parts: Vec<(u64, ObjectPath, u64)> = self
            .objects
            .list(Some(&dir))
            .map_ok(|meta| {
                let offset = meta.location.filename().and_then(|n| n.parse::<u64>().ok());
                (offset, meta.location, meta.size)
            })
            .try_filter_map(|(offset, location, size)| async move {
                Ok(offset.map(|o| (o, location, size)))
            })
            .try_collect()
            .await?;
        parts.sort_by_key(|(offset, _, _)| *offset);
        Ok(parts)
    }

    /// Remove an upload's parts, if it has any.
    pub(super) async fn remove_parts(&self, key: &str) -> Result<(), FileError> {
        for (_, path, _) in self.parts(key).await? {
            self.remove_object(&path).await?;
        }
        Ok(())
    }

    pub fn status(&self, file: &FileRecord) -> ResumableStatus {
        ResumableStatus {
            file_id: file.id,
            room_id: file.room_id,
            name: file.name.clone(),
            size: u64::try_from(file.size).unwrap_or(0),
            offset: u64::try_from(file.received).unwrap_or(0),
            max_chunk_bytes: self.resumable.max_chunk_bytes,
            expires_at: file.created_at.saturating_add(
                i64::try_from(self.resumable.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            ),
        }
    }

    /// Open a resumable upload of `size` bytes into `room`.
    pub async fn begin_resumable(
        &self,
        store: &dyn Store,
        room: RoomId,
        uploader: UserId,
        name: &str,
        size: u64,
    ) -> Result<ResumableStatus, FileError> {
        if size > self.max_upload_bytes {
            return Err(FileError::TooLarge {
                limit: self.max_upload_bytes,
            });
        }
        let record = store
            .create_resumable_file(
                room,
                uploader,
                &safe_name(name),
                &new_key(room),
                size as i64,
            )
            .await?;
        Ok(self.status(&record))
    }

    /// Store one chunk that starts at `offset` (which must be where the upload stands);
    /// the new offset. `declared` is the chunk's announced length, if any. A chunk that
    /// does not arrive whole changes nothing.
    pub async fn append_chunk<S>(
        &self,
        store: &dyn Store,
        file: &FileRecord,
        offset: u64,
        declared: Option<u64>,
        body: S,
    ) -> Result<u64, FileError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send,
    {
        let size = u64::try_from(file.size).unwrap_or(0);
        let received = u64::try_from(file.received).unwrap_or(0);
        if offset != received {
            return Err(FileError::OffsetMismatch { expected: received });
        }
        let room_left = size - received;
        let limit = room_left.min(self.resumable.max_chunk_bytes);
        if declared.is_some_and(|d| d > limit) {
            return Err(FileError::ChunkTooLarge { limit });
        }
        let path = self.part_path(&file.storage_key, offset);
        let upload = self.objects.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut length = 0u64;
        let mut body = std::pin::pin!(body);
        let outcome: Result<(), FileError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                length += chunk.len() as u64;
                if length > limit {
                    return Err(FileError::ChunkTooLarge { limit });
                }
                writer.wait_for_capacity(2).await?;
                writer.put(chunk);
            }
            if declared.is_some_and(|d| d != length) {
                return Err(FileError::Interrupted(format!(
                    "{length} bytes arrived, {} were announced",
                    declared.unwrap_or_default()
                )));
            }
            if length == 0 && room_left > 0 {
                return Err(FileError::Interrupted("the chunk was empty".into()));
            }
            Ok(())
        }
        .await;
        if let Err(err) = outcome {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "aborting a failed chunk failed");
            }
            return Err(err);
        }
        writer.finish().await?;
        let next = offset + length;
        if !store
            .advance_resumable_file(file.id, offset as i64, next as i64)
            .await?
        {
            // Another request moved the upload on meanwhile: this chunk is not part of it.
            self.remove_object(&path).await?;
            let now = store.file(file.id).await?.map_or(0, |f| f.received);
            return Err(FileError::OffsetMismatch {
                expected: u64::try_from(now).unwrap_or(0),
            });
        }
        Ok(next)
    }

    /// Assemble a complete resumable upload into its file, through the whole pipeline of a
    /// one-request upload; the staged file, for the plugins' checks.
    pub async fn assemble(&self, store: &dyn Store, file: FileRecord) -> Result<Staged, FileError> {
        let size = u64::try_from(file.size).unwrap_or(0);
        if !store.resumable_file_complete(file.id).await? {
            return Err(FileError::OffsetMismatch {
                expected: u64::try_from(file.received).unwrap_or(0),
            });
        }
        let parts = self.parts(&file.storage_key).await?;
        let mut expected = 0;
        for (offset, _, length) in &parts {
            if *offset != expected {
                let _ = self.delete(store, &file).await;
                return Err(FileError::Interrupted(format!(
                    "the part at byte {expected} is missing"
                )));
            }
            expected += length;
        }
        let objects = self.objects.clone();
        // Boxed (below): the handler's future must be `Send` for every lifetime, which the
        // compiler cannot see through the combinators' closure types.
        let body = futures_util::stream::iter(parts)
            .then(move |(_, path, _)| {
                let objects = objects.clone();
                async move { objects.get(&path).await }
            })
            .map_ok(|got| got.into_stream())
            .try_flatten()
            .map_err(|e| BodyError::Broken(format!("reading a stored part failed: {e}")))
            .boxed();
        let key = file.storage_key.clone();
        let staged = self.take(store, file, Some(size), body).await?;
        // The parts served their purpose. One left behind (a failure here, a crash) goes
        // when the file is deleted.
        if let Err(err) = self.remove_parts(&key).await {
            tracing::warn!(error = %err, "removing an assembled upload's parts failed");
        }
        Ok(staged)
    }

    /// Remove resumable uploads nobody finished within `files.resumable_ttl_secs`.
    pub async fn expire_resumable(&self, store: &dyn Store) -> Result<usize, FileError> {
        let ttl = i64::try_from(self.resumable.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let before = crate::store::now_millis().saturating_sub(ttl);
        let stale: Vec<FileRecord> = store
            .files_in_state("receiving")
            .await?
            .into_iter()
            .filter(|f| f.created_at < before)
            .collect();
        for file in &stale {
            self.delete(store, file).await?;
        }
        Ok(stale.len())
    }
}
