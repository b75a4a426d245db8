//! The DynamoDB operator side: listings by prefix (Query), the apps a table holds (Scan of keys
//! only), and changes that append their history entry in the same `TransactWriteItems`,
//! conditioned on the changed item's previous revision.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use crate::domain::history::{Expected, HistoryEntry, REVISION_ATTR, is_history_partition};
use crate::domain::release::Item;
use crate::store::dynamo::{
    DynamoStore, PARTITION_KEY, SORT_KEY, conditional_write, from_dynamo, to_dynamo, unavailable,
};
use crate::store::{HistoryStore, ItemQuery, StoreError, conflict};

/// How a transaction that changes one item and appends history ended.
pub(crate) enum Outcome {
    Applied,
    /// The changed item's condition did not hold (it changed meanwhile).
    ConditionFailed,
    /// A concurrent transaction held the item: also a lost race.
    Conflict,
}

/// Sorts out a `TransactWriteItems` result: a cancelled transaction wrote nothing.
pub(crate) fn transaction_outcome<R: std::fmt::Debug>(
    result: Result<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput,
        aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
    >,
) -> Result<Outcome, StoreError> {
    let e = match result {
        Ok(_) => return Ok(Outcome::Applied),
        Err(e) => e,
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(ex)) = e.as_service_error() {
        let codes: Vec<&str> = ex
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .collect();
        let message = ex.message().unwrap_or_default();
        if codes.contains(&"ConditionalCheckFailed")
            || (codes.is_empty() && message.contains("ConditionalCheckFailed"))
        {
            return Ok(Outcome::ConditionFailed);
        }
        if codes.contains(&"TransactionConflict") || message.contains("TransactionConflict") {
            return Ok(Outcome::Conflict);
        }
    }
    if e.code() == Some("TransactionConflictException") {
        return Ok(Outcome::Conflict);
    }
    Err(unavailable("TransactWriteItems", e))
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
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client()
                .query()
                .table_name(self.table())
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_values(":p", AttributeValue::S(pk.to_owned()))
                .scan_index_forward(!descending)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            query = if prefix.is_empty() {
                query.key_condition_expression("#pk = :p")
            } else {
                query
                    .key_condition_expression("#pk = :p AND begins_with(#sk, :pre)")
                    .expression_attribute_names("#sk", SORT_KEY)
                    .expression_attribute_values(":pre", AttributeValue::S(prefix.to_owned()))
            };
            if let Some(l) = limit {
                query = query.limit((l - out.len().min(l)).clamp(1, 1000) as i32);
            }
            let page = query.send().await.map_err(|e| unavailable("Query", e))?;
            out.extend(page.items().iter().filter_map(from_dynamo));
            if limit.is_some_and(|l| out.len() >= l) {
                out.truncate(limit.unwrap_or(usize::MAX));
                break;
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut apps = BTreeSet::new();
        let mut start = None;
        loop {
            let page = self
                .client()
                .scan()
                .table_name(self.table())
                .projection_expression("#pk")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Scan", e))?;
            for item in page.items() {
                if let Some(AttributeValue::S(pk)) = item.get(PARTITION_KEY)
                    && !is_history_partition(pk)
                    // Stats counter shards share the table; their keys carry a `#`.
                    && !pk.contains('#')
                {
                    apps.insert(pk.clone());
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(apps.into_iter().collect())
    }

    async fn delete_item(&self, pk: &str, sk: &str) -> Result<bool, StoreError> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .key(PARTITION_KEY, AttributeValue::S(pk.to_owned()))
            .key(SORT_KEY, AttributeValue::S(sk.to_owned()))
            .condition_expression("attribute_exists(#sk)")
            .expression_attribute_names("#sk", SORT_KEY)
            .send()
            .await;
        conditional_write(result, "DeleteItem")
    }
}

#[async_trait]
impl HistoryStore for DynamoStore {
    async fn change_with_history(
        &self,
        app_id: &str,
        sk: &str,
        expected: Expected,
        item: &Item,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(to_dynamo(app_id, sk, item)?));
        let put = match expected {
            Expected::Absent => put
                .condition_expression("attribute_not_exists(#sk)")
                .expression_attribute_names("#sk", SORT_KEY),
            // An item written before revisions existed (or by hand) counts as revision 0.
            Expected::Revision(0) => put
                .condition_expression(
                    "attribute_exists(#sk) AND (attribute_not_exists(#rev) OR #rev = :rev)",
                )
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_names("#rev", REVISION_ATTR)
                .expression_attribute_values(":rev", AttributeValue::N("0".into())),
            Expected::Revision(r) => put
                .condition_expression("#rev = :rev")
                .expression_attribute_names("#rev", REVISION_ATTR)
                .expression_attribute_values(":rev", AttributeValue::N(r.to_string())),
        };
        let put = put
            .build()
            .map_err(|e| unavailable("TransactWriteItems", e))?;
        let result = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(self.history_put(app_id, entry)?)
            .send()
            .await;
        match transaction_outcome(result)? {
            Outcome::Applied => Ok(()),
            Outcome::ConditionFailed | Outcome::Conflict => Err(conflict(app_id, sk)),
        }
    }
}
