//! `DynamoStore`, the releases table, and what an update check reads from it: one Query of
//! the app's partition returns its `app`, `device_overrides` and `release#…` items together,
//! so a warm Lambda answers after a single round trip (none when the cache is warm).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

use super::{PARTITION_KEY, SORT_KEY, from_dynamo, s, unavailable};
use crate::domain::keys::{APP_SK, DEVICE_OVERRIDES_SK, RELEASE_SK_PREFIX};
use crate::domain::snapshot::{AppSnapshot, describes_an_app};
use crate::store::{ReleaseStore, StoreError};

/// Release items (and bundles, history, counters) in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(super) client: Client,
    pub(super) table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl ReleaseStore for DynamoStore {
    async fn load_app(&self, app_id: &str) -> Result<Option<AppSnapshot>, StoreError> {
        // One page unless the partition holds over 1 MB of bundle items: the filter drops
        // them server-side, but they still count toward the page size.
        let raw = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :a")
            .filter_expression("#sk = :app OR #sk = :ovr OR begins_with(#sk, :rel)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#sk", SORT_KEY)
            .expression_attribute_values(":a", s(app_id))
            .expression_attribute_values(":app", s(APP_SK))
            .expression_attribute_values(":ovr", s(DEVICE_OVERRIDES_SK))
            .expression_attribute_values(":rel", s(RELEASE_SK_PREFIX))
            .consistent_read(false)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| unavailable("Query", e))?;
        let items: Vec<_> = raw.iter().filter_map(from_dynamo).collect();
        if !describes_an_app(items.iter().map(|(sk, _)| sk.as_str())) {
            return Ok(None);
        }
        let snap = AppSnapshot::from_items(items.iter().map(|(sk, i)| (sk.as_str(), i)));
        for problem in &snap.problems {
            tracing::warn!(app_id, table = %self.table, problem, "unreadable item");
        }
        Ok(Some(snap))
    }
}
