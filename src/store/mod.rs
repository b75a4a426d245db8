//! Where release items live. Small traits, one capability each, with an embedded (SQLite)
//! implementation here and a DynamoDB one for AWS; the cache in front of reads is shared.

pub mod cache;
pub mod dynamo;
pub mod embedded;

use async_trait::async_trait;

use crate::release::{AppSnapshot, Item};

/// A store failure. The detail is for logs; devices only learn that the service is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the release store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
}

/// Reads what an update check needs: the app's settings and release items, in one round trip.
#[async_trait]
pub trait ReleaseStore: Send + Sync {
    /// `None` when the app has no items at all.
    async fn load_app(&self, app_id: &str) -> Result<Option<AppSnapshot>, StoreError>;
}

/// Writes items, for operators (`updraft release`); never reachable from the public API.
#[async_trait]
pub trait ItemWriter: Send + Sync {
    async fn get_item(&self, app_id: &str, sk: &str) -> Result<Option<Item>, StoreError>;
    /// Writes an item unless one with that key exists; `false` when it did.
    async fn put_item_if_absent(
        &self,
        app_id: &str,
        sk: &str,
        item: &Item,
    ) -> Result<bool, StoreError>;
    /// Writes (or replaces) an item.
    async fn put_item(&self, app_id: &str, sk: &str, item: &Item) -> Result<(), StoreError>;
}
