//! PostgreSQL implementation of [`Store`](super::Store) (placeholder until implemented).

use super::{StoreError, StoreOptions, StoreResult};

#[derive(Debug)]
pub struct PgStore;

impl PgStore {
    pub async fn connect(url: &str, _options: &StoreOptions) -> StoreResult<Self> {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
