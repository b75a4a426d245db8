//! Changes of a release (or `app`) item with their history entry: one `TransactWriteItems` of
//! the item's Put, conditioned on the revision the operator read, and the entry's Put, which
//! never overwrites another. The entries live in the app's history partition.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::releases::DynamoStore;
use super::{Outcome, SORT_KEY, n, to_dynamo, transaction_outcome, unavailable};
use crate::domain::history::{Expected, HistoryEntry, history_partition};
use crate::domain::item::{Item, attr};
use crate::store::{HistoryStore, StoreError, conflict};

impl DynamoStore {
    /// The Put of a history entry, which never overwrites another.
    fn history_put(
        &self,
        app_id: &str,
        entry: &HistoryEntry,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_dynamo(
                &history_partition(app_id),
                &entry.sort_key(),
                &entry.to_item(),
            )?))
            .condition_expression("attribute_not_exists(#sk)")
            .expression_attribute_names("#sk", SORT_KEY)
            .build()
            .map_err(|e| unavailable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
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
                .expression_attribute_names("#rev", attr::REVISION)
                .expression_attribute_values(":rev", n(0)),
            Expected::Revision(r) => put
                .condition_expression("#rev = :rev")
                .expression_attribute_names("#rev", attr::REVISION)
                .expression_attribute_values(":rev", n(r)),
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
