//! Operators' item reads and writes on the releases table (`ItemWriter`), listings by sort-key
//! prefix, the apps the table holds, and deletes (`ItemQuery`). Never on the serving path.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::releases::DynamoStore;
use super::{PARTITION_KEY, SORT_KEY, conditional_write, from_dynamo, s, to_dynamo, unavailable};
use crate::domain::history::is_history_partition;
use crate::domain::item::Item;
use crate::store::{ItemQuery, ItemWriter, StoreError};

#[async_trait]
impl ItemWriter for DynamoStore {
    async fn get_item(&self, app_id: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(app_id))
            .key(SORT_KEY, s(sk))
            // Operators read what they just wrote (release, then rollback).
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(from_dynamo)
            .map(|(_, item)| item))
    }

    async fn put_item_if_absent(
        &self,
        app_id: &str,
        sk: &str,
        item: &Item,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_dynamo(app_id, sk, item)?))
            .condition_expression("attribute_not_exists(#sk)")
            .expression_attribute_names("#sk", SORT_KEY)
            .send()
            .await;
        conditional_write(result, "PutItem")
    }

    async fn put_item(&self, app_id: &str, sk: &str, item: &Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_dynamo(app_id, sk, item)?))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl ItemQuery for DynamoStore {
    async fn query_prefix(
        &self,
        pk: &str,
        prefix: &str,
        descending: bool,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Item)>, StoreError> {
        let mut query = self
            .client()
            .query()
            .table_name(self.table())
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_values(":p", s(pk))
            .scan_index_forward(!descending)
            .consistent_read(true);
        query = if prefix.is_empty() {
            query.key_condition_expression("#pk = :p")
        } else {
            query
                .key_condition_expression("#pk = :p AND begins_with(#sk, :pre)")
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":pre", s(prefix))
        };
        let mut pages = query.into_paginator();
        if let Some(l) = limit {
            pages = pages.page_size(l.clamp(1, 1000) as i32);
        }
        let mut items = pages.items().send();
        let mut out = Vec::new();
        while out.len() < limit.unwrap_or(usize::MAX)
            && let Some(raw) = items.next().await
        {
            let raw = raw.map_err(|e| unavailable("Query", e))?;
            out.extend(from_dynamo(&raw));
        }
        Ok(out)
    }

    async fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        let keys = self
            .client()
            .scan()
            .table_name(self.table())
            .projection_expression("#pk")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| unavailable("Scan", e))?;
        let mut apps = BTreeSet::new();
        for item in keys {
            if let Some(AttributeValue::S(pk)) = item.get(PARTITION_KEY)
                && !is_history_partition(pk)
                // Stats counter shards share the table; their keys carry a `#`.
                && !pk.contains('#')
            {
                apps.insert(pk.clone());
            }
        }
        Ok(apps.into_iter().collect())
    }

    async fn delete_item(&self, pk: &str, sk: &str) -> Result<bool, StoreError> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .key(PARTITION_KEY, s(pk))
            .key(SORT_KEY, s(sk))
            .condition_expression("attribute_exists(#sk)")
            .expression_attribute_names("#sk", SORT_KEY)
            .send()
            .await;
        conditional_write(result, "DeleteItem")
    }
}
