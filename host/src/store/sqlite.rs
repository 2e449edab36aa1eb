//! SQLite implementation of [`Store`](super::Store) (placeholder until implemented).

use super::{StoreError, StoreOptions, StoreResult};

#[derive(Debug)]
pub struct SqliteStore;

impl SqliteStore {
    pub async fn open(url: &str, _options: &StoreOptions) -> StoreResult<Self> {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
