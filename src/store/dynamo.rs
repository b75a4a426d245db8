//! The release items of design.md §3 in DynamoDB (table `UPDRAFT_TABLE`, keys `app_id` + `sk`).
//! An update check costs one Query: the app's `app` and `release#…` items come back together,
//! so a warm Lambda answers after a single round trip (fewer when the cache is warm).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TableStatus, TransactWriteItem, Update,
};

use crate::aws::{ConfigError, env_required};
use crate::domain::history::{HistoryEntry, REVISION_ATTR, history_partition};
use crate::domain::release::{
    APP_SK, AppSnapshot, AttrValue, DEVICE_OVERRIDES_SK, Item, describes_an_app,
};
use crate::store::dynamo_history::{Outcome, transaction_outcome};
use crate::store::{
    ItemWriter, PauseRequest, ReleaseControl, ReleaseStore, ResumeRequest, StoreError, now_micros,
    pause_entry, resume_entry,
};

/// Partition key: the app's reverse-domain id.
pub const PARTITION_KEY: &str = "app_id";
/// Sort key: `app`, `release#<channel>#<platform>`, `bundle#<version>`, …
pub const SORT_KEY: &str = "sk";

/// Release items in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

pub(crate) fn unavailable(what: &str, e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(format!("DynamoDB {what}: {}", DisplayErrorContext(e)))
}

/// The outcome of a conditional write: `Ok(true)` when it applied, `Ok(false)` when its
/// condition did not hold, an error for anything else.
pub(crate) fn conditional_write<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    what: &str,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(unavailable(what, e)),
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The table named by `UPDRAFT_TABLE`, with a client built from `conf`.
    pub fn from_env(conf: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let table = env_required("UPDRAFT_TABLE")?;
        Ok(Self::new(crate::aws::dynamo_client(conf), table))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The attribute's type code, for messages and `AttrValue::Unsupported`.
fn type_code(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::B(_) => "B",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        AttributeValue::Null(_) => "NULL",
        _ => "an unknown type",
    }
}

/// One DynamoDB value as the items use it. Other types are kept as `Unsupported`, so a
/// hand-written `paused` of type `S` or `L` is refused by name rather than read as "absent".
pub fn attr_from_dynamo(v: &AttributeValue) -> AttrValue {
    match v {
        AttributeValue::S(s) => AttrValue::S(s.clone()),
        AttributeValue::Bool(b) => AttrValue::Bool(*b),
        // DynamoDB allows 38 digits; a number JSON cannot hold is unusable to us as well.
        AttributeValue::N(n) => match n.parse::<serde_json::Number>() {
            Ok(n) => AttrValue::N(n),
            Err(_) => AttrValue::Unsupported("N".into()),
        },
        other => AttrValue::Unsupported(type_code(other).into()),
    }
}

/// The DynamoDB form of an attribute; `None` for a value that only exists when read.
pub fn attr_to_dynamo(v: &AttrValue) -> Option<AttributeValue> {
    match v {
        AttrValue::S(s) => Some(AttributeValue::S(s.clone())),
        AttrValue::Bool(b) => Some(AttributeValue::Bool(*b)),
        AttrValue::N(n) => Some(AttributeValue::N(n.to_string())),
        AttrValue::Unsupported(_) => None,
    }
}

/// Splits a DynamoDB item into its sort key and its attributes; `None` without an `S` sort key.
pub(crate) fn from_dynamo(raw: &HashMap<String, AttributeValue>) -> Option<(String, Item)> {
    let sk = raw.get(SORT_KEY)?.as_s().ok()?.clone();
    let item = raw
        .iter()
        .filter(|(k, _)| k.as_str() != PARTITION_KEY && k.as_str() != SORT_KEY)
        .map(|(k, v)| (k.clone(), attr_from_dynamo(v)))
        .collect();
    Some((sk, item))
}

/// A full DynamoDB item: the keys (which win over attributes of the same name) and `item`.
pub(crate) fn to_dynamo(
    app_id: &str,
    sk: &str,
    item: &Item,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut raw = HashMap::with_capacity(item.len() + 2);
    for (name, value) in item {
        let v = attr_to_dynamo(value).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "item {sk}: attribute {name} has a type that cannot be written"
            ))
        })?;
        raw.insert(name.clone(), v);
    }
    raw.insert(PARTITION_KEY.into(), AttributeValue::S(app_id.to_owned()));
    raw.insert(SORT_KEY.into(), AttributeValue::S(sk.to_owned()));
    Ok(raw)
}

#[async_trait]
impl ReleaseStore for DynamoStore {
    async fn load_app(&self, app_id: &str) -> Result<Option<AppSnapshot>, StoreError> {
        let mut items: Vec<(String, Item)> = Vec::new();
        let mut start = None;
        // One request unless the partition holds over 1 MB of bundle items: the filter
        // drops them server-side, but they still count toward the page size.
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :a")
                .filter_expression("#sk = :app OR #sk = :ovr OR begins_with(#sk, :rel)")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":a", AttributeValue::S(app_id.to_owned()))
                .expression_attribute_values(":app", AttributeValue::S(APP_SK.to_owned()))
                .expression_attribute_values(
                    ":ovr",
                    AttributeValue::S(DEVICE_OVERRIDES_SK.to_owned()),
                )
                .expression_attribute_values(":rel", AttributeValue::S("release#".to_owned()))
                .consistent_read(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", e))?;
            items.extend(page.items().iter().filter_map(from_dynamo));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
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

#[async_trait]
impl ItemWriter for DynamoStore {
    async fn get_item(&self, app_id: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(app_id.to_owned()))
            .key(SORT_KEY, AttributeValue::S(sk.to_owned()))
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

impl DynamoStore {
    /// The Put of a history entry, which never overwrites another.
    pub(crate) fn history_put(
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

    /// Sends an Update of a release item together with its history entry.
    pub(crate) async fn update_with_history(
        &self,
        update: Update,
        app_id: &str,
        entry: &HistoryEntry,
    ) -> Result<Outcome, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(self.history_put(app_id, entry)?)
            .send()
            .await;
        transaction_outcome(result)
    }
}

/// Pausing and resuming in one conditional transaction each (the Update of the release item
/// and the Put of its history entry), so a pause decided on counts of one version can never land
/// on a release item that meanwhile serves another, and every applied change has its entry.
#[async_trait]
impl ReleaseControl for DynamoStore {
    async fn pause_release(
        &self,
        app_id: &str,
        sk: &str,
        pause: &PauseRequest,
    ) -> Result<bool, StoreError> {
        let cutoff = pause.now.saturating_sub(pause.cooldown_secs);
        let update = Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(app_id.to_owned()))
            .key(SORT_KEY, AttributeValue::S(sk.to_owned()))
            .update_expression(
                "SET #paused = :true, #reason = :reason, #paused_at = :now, \
                 #rev = if_not_exists(#rev, :zero) + :one",
            )
            .condition_expression(
                "attribute_exists(#sk) AND #version = :v \
                 AND (attribute_not_exists(#paused) OR #paused = :false) \
                 AND (attribute_not_exists(#resumed_at) OR #resumed_at <= :cutoff)",
            )
            .expression_attribute_names("#sk", SORT_KEY)
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#paused", "paused")
            .expression_attribute_names("#reason", "pause_reason")
            .expression_attribute_names("#paused_at", "paused_at")
            .expression_attribute_names("#resumed_at", "resumed_at")
            .expression_attribute_names("#rev", REVISION_ATTR)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":reason", AttributeValue::S(pause.reason.clone()))
            .expression_attribute_values(":now", AttributeValue::N(pause.now.to_string()))
            .expression_attribute_values(":v", AttributeValue::S(pause.version.clone()))
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .build()
            .map_err(|e| unavailable("TransactWriteItems", e))?;
        let entry = pause_entry(sk, pause, now_micros());
        Ok(matches!(
            self.update_with_history(update, app_id, &entry).await?,
            Outcome::Applied
        ))
    }

    async fn resume_release(
        &self,
        app_id: &str,
        sk: &str,
        resume: &ResumeRequest,
    ) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(app_id.to_owned()))
            .key(SORT_KEY, AttributeValue::S(sk.to_owned()))
            .update_expression(
                "SET #paused = :false, #resumed_at = :now, #bi = :i, #bf = :f, \
                 #rev = if_not_exists(#rev, :zero) + :one \
                 REMOVE #reason, #paused_at",
            )
            // Without it, UpdateItem would create a bare item under a mistyped key.
            .condition_expression("attribute_exists(#sk) AND #version = :v")
            .expression_attribute_names("#sk", SORT_KEY)
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#paused", "paused")
            .expression_attribute_names("#resumed_at", "resumed_at")
            .expression_attribute_names("#bi", "pause_baseline_installs")
            .expression_attribute_names("#bf", "pause_baseline_failures")
            .expression_attribute_names("#reason", "pause_reason")
            .expression_attribute_names("#paused_at", "paused_at")
            .expression_attribute_names("#rev", REVISION_ATTR)
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", AttributeValue::N(resume.now.to_string()))
            .expression_attribute_values(":v", AttributeValue::S(resume.version.clone()))
            .expression_attribute_values(
                ":i",
                AttributeValue::N(resume.baseline.installs.to_string()),
            )
            .expression_attribute_values(
                ":f",
                AttributeValue::N(resume.baseline.failures.to_string()),
            )
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .build()
            .map_err(|e| unavailable("TransactWriteItems", e))?;
        let entry = resume_entry(sk, resume, now_micros());
        Ok(matches!(
            self.update_with_history(update, app_id, &entry).await?,
            Outcome::Applied
        ))
    }
}

/// How long `create_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// Creates the release table (on-demand billing, keys `app_id` + `sk`) and waits until it is
/// ACTIVE. An existing table is accepted if its keys match; returns whether it was created.
pub async fn create_table(client: &Client, name: &str) -> Result<bool, StoreError> {
    create_keyed_table(client, name, PARTITION_KEY, SORT_KEY).await
}

/// Creates an on-demand table keyed by two strings, `hash` + `range`, and waits until it is
/// ACTIVE. An existing table is accepted if its keys match; returns whether it was created.
pub(crate) async fn create_keyed_table(
    client: &Client,
    name: &str,
    hash: &str,
    range: &str,
) -> Result<bool, StoreError> {
    let key = |attr: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attr)
            .key_type(kind)
            .build()
            .map_err(|e| unavailable("CreateTable", e))
    };
    let def = |attr: &str| {
        AttributeDefinition::builder()
            .attribute_name(attr)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| unavailable("CreateTable", e))
    };
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def(hash)?)
        .attribute_definitions(def(range)?)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .send()
        .await;
    let created = match created {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            false
        }
        Err(e) => return Err(unavailable("CreateTable", e)),
    };

    let deadline = Instant::now() + TABLE_ACTIVE_WAIT;
    loop {
        let table = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| unavailable("DescribeTable", e))?
            .table
            .ok_or_else(|| StoreError::Unavailable(format!("DescribeTable {name}: no table")))?;
        if table.table_status == Some(TableStatus::Active) {
            check_key_schema(name, table.key_schema(), hash, range)?;
            return Ok(created);
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {name} is still {:?} after {} s",
                table.table_status,
                TABLE_ACTIVE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Refuses a table whose keys differ from design.md §3: every read and write would fail.
fn check_key_schema(
    name: &str,
    schema: &[KeySchemaElement],
    hash: &str,
    range: &str,
) -> Result<(), StoreError> {
    let has = |attr: &str, kind: KeyType| {
        schema
            .iter()
            .any(|k| k.attribute_name() == attr && *k.key_type() == kind)
    };
    if schema.len() == 2 && has(hash, KeyType::Hash) && has(range, KeyType::Range) {
        Ok(())
    } else {
        let found: Vec<String> = schema
            .iter()
            .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
            .collect();
        Err(StoreError::Conflict(format!(
            "table {name} has keys [{}]; updraft needs {hash} (HASH) and {range} (RANGE), both strings",
            found.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_keeps_unknown_types_visible() {
        assert_eq!(
            attr_from_dynamo(&AttributeValue::S("x".into())),
            AttrValue::S("x".into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::N("42".into())),
            AttrValue::N(42.into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::N("1e999".into())),
            AttrValue::Unsupported("N".into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::L(vec![])),
            AttrValue::Unsupported("L".into())
        );
        assert_eq!(
            attr_from_dynamo(&AttributeValue::Null(true)),
            AttrValue::Unsupported("NULL".into())
        );
        assert_eq!(attr_to_dynamo(&AttrValue::Unsupported("L".into())), None);
        assert_eq!(
            attr_to_dynamo(&AttrValue::N(7.into())),
            Some(AttributeValue::N("7".into()))
        );
    }

    #[test]
    fn unsupported_values_never_reach_the_embedded_store() {
        // The embedded store's JSON form is unchanged, and refuses what it could not read back.
        let json = |v: &AttrValue| serde_json::to_string(v).ok();
        assert_eq!(json(&AttrValue::S("x".into())).as_deref(), Some("\"x\""));
        assert_eq!(json(&AttrValue::Bool(true)).as_deref(), Some("true"));
        assert_eq!(json(&AttrValue::N(3.into())).as_deref(), Some("3"));
        assert_eq!(json(&AttrValue::Unsupported("L".into())), None);
    }

    #[test]
    fn keys_win_over_attributes() {
        let mut item = Item::new();
        item.insert("sk".into(), AttrValue::S("evil".into()));
        item.insert("paused".into(), AttrValue::Bool(true));
        let raw = to_dynamo("com.example.app", "app", &item).unwrap();
        assert_eq!(raw["sk"], AttributeValue::S("app".into()));
        let (sk, back) = from_dynamo(&raw).unwrap();
        assert_eq!(sk, "app");
        assert_eq!(back.len(), 1);
    }
}
